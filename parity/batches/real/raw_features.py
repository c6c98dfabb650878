"""The original's pair features (a dict of Python lists and numbers) to tensors and back, exactly.

`ScorePerformPairData.features` (pyScoreParser/data_for_training.py) maps a feature name to a per-note list of
numbers, a per-note list of equal-length lists, a global number (`qpm_primo`, `num_notes`) or a global list
(`composer_vec`, `tempo_primo`); `note_location` is a dict of four per-note integer lists and `labels` is None.
The original's FeatureConverter tells per-note from global by `isinstance(value, list) and len(value) ==
num_notes`, so the kinds are kept and rebuilt as the same Python structures (ints stay ints, floats become
Python floats: numpy float64 values inside the original's lists compute the same in float64).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

NOTE, NOTE_VECTOR, GLOBAL, GLOBAL_VECTOR = "note", "note-vector", "global", "global-vector"
SKIPPED = ("labels",)  # None in the pair features (piece.labels is never set by the dataset scripts)


class FeatureEncodingError(ValueError):
    """A feature value of a kind the original's converter could not use either (None, strings, ragged lists)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral)  # bool and numpy integers included


def _array(values: list[Any], name: str) -> np.ndarray:
    flat = [v for row in values for v in row] if values and isinstance(values[0], list) else values
    for v in flat:
        if not isinstance(v, Real):
            raise FeatureEncodingError(f"feature {name!r} holds a {type(v).__name__} value ({v!r})")
    dtype = np.int64 if all(_is_int(v) for v in flat) else np.float64
    try:
        return np.asarray(values, dtype=dtype)
    except ValueError:
        raise FeatureEncodingError(f"feature {name!r} is a ragged list") from None


def encode_features(features: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, kinds): `raw/<name>` and `location/<key>` arrays, and each raw feature's kind."""
    num_notes = int(features["num_notes"])
    tensors: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name, value in features.items():
        if name in SKIPPED and value is None:
            continue
        if name == "note_location":
            for key, seq in value.items():
                tensors[f"location/{key}"] = _array(list(seq), f"note_location.{key}")
            continue
        if isinstance(value, list):
            per_note = len(value) == num_notes
            vector = bool(value) and isinstance(value[0], list)
            kinds[name] = (NOTE_VECTOR if vector else NOTE) if per_note else (GLOBAL_VECTOR if not vector else "")
            if not kinds[name]:
                raise FeatureEncodingError(f"feature {name!r} is a list of lists that is not per note")
            tensors[f"raw/{name}"] = _array(value, name)
        elif isinstance(value, Real):
            kinds[name] = GLOBAL
            tensors[f"raw/{name}"] = _array([value], name).reshape(())
        else:
            raise FeatureEncodingError(f"feature {name!r} is a {type(value).__name__}")
    return tensors, kinds


def _python(array: np.ndarray) -> Any:
    return array.tolist()


def decode_features(tensors: Mapping[str, np.ndarray], kinds: Mapping[str, str],
                    only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The pair-features dict the original built, from `encode_features`' output (optionally only some keys;
    `num_notes` is always included)."""
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        if only is not None and name not in only and name != "num_notes":
            continue
        array = tensors[f"raw/{name}"]
        out[name] = _python(array.reshape(()) if kind == GLOBAL else array)
    if only is None or "note_location" in only:
        out["note_location"] = {k.split("/", 1)[1]: _python(v) for k, v in tensors.items() if k.startswith("location/")}
    return out
