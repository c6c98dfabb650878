"""The prepared real-data cache: its layout, its files, how they are written (atomically) and read, and
the original's raw pair features to tensors and back, exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# The original's pair features (a dict of Python lists and numbers) to tensors and back, exactly.
#
# `ScorePerformPairData.features` (pyScoreParser/data_for_training.py) maps a feature name to a per-note list of
# numbers, a per-note list of equal-length lists, a global number (`qpm_primo`, `num_notes`) or a global list
# (`composer_vec`, `tempo_primo`); `note_location` is a dict of four per-note integer lists and `labels` is None.
# The original's FeatureConverter tells per-note from global by `isinstance(value, list) and len(value) ==
# num_notes`, so the kinds are kept and rebuilt as the same Python structures (ints stay ints, floats become
# Python floats: numpy float64 values inside the original's lists compute the same in float64).

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


# ----------------------------------------------------------------------------------------------------------
# The prepared real-data cache: its layout, its files and how they are written (atomically) and read.
#
#     CACHE/manifest.json                    what was made, from what, how; every segment and every failure
#     CACHE/corresp/<key>_infer_corresp.txt  the correspondence the original read (ours or the user's)
#     CACHE/raw/<key>.safetensors            stage 1: the original's unnormalised pair features of one performance
#     CACHE/segments/<key>.safetensors       stage 2: what a loader needs: input matrices, locations, labels, folds
#
# `raw/` holds `ScorePerformPairData.features` as the original left them: `raw/<feature>` per feature (per-note
# scalars (T,), per-note vectors (T, w), global values () or (w,), int64 or float64 as the Python values were),
# `location/<beat|measure|voice|section>` int64 (T,), and the kind of every feature in the metadata so the exact
# Python structure can be rebuilt for the original's FeatureConverter (`features.decode_features`).
# `segments/` holds `input/<key list>` float64 (T, W) as FeatureConverter wrote it, `output`, `beat`, `meas`
# (the performance targets), `location/*`, `label/<label set>` (19 float64) and `label_std`; its metadata
# carries the fold membership and the segment record. Keys are the label keys (file names without `.mid`).

FORMAT = "percepiano-parity-real-cache"
VERSION = 1
MANIFEST = "manifest.json"
RAW = "raw"
SEGMENTS = "segments"
CORRESP = "corresp"
DEFAULT_KEY_LIST = "published-splits"
DEFAULT_LABEL_SET = "labels"
LOCATION_KEYS = ("beat", "measure", "voice", "section")


class CacheError(ValueError):
    """A cache folder that cannot be read (missing, another format, a damaged file); one line."""


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so that it is either absent/old or complete: temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_tensors(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> str:
    """Save tensors with JSON metadata (each value JSON-encoded under its key) atomically; returns the sha256."""
    from safetensors.numpy import save

    data = save({k: v if v.flags.c_contiguous else v.copy() for k, v in tensors.items()},  # keeps 0-d arrays
                metadata={k: json.dumps(v, sort_keys=True) for k, v in metadata.items()})
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(tensors, metadata) of a file written by `write_tensors`; CacheError when it is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:
            metadata = {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except FileNotFoundError:
        raise CacheError(f"{path}: missing") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CacheError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return tensors, metadata


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of a tensors file, or None when it is missing or damaged (for the skip-what-is-done test)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:
            return {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
    except Exception:  # noqa: BLE001 - anything unreadable counts as not done
        return None


def read_manifest(cache: str | Path) -> dict[str, Any]:
    """The manifest of a prepared cache; CacheError with one line when the folder is not one."""
    folder = Path(cache).expanduser()
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CacheError(f"{folder}: no such folder")
    if not path.is_file():
        hint = " (it looks like the raw data: run `parity data prepare` on it first)" \
            if (folder / "performances").is_dir() else ""
        raise CacheError(f"{folder} is not a prepared cache: no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise CacheError(f"{path}: cache version {manifest.get('version')}, this tool reads {VERSION} (prepare "
                         "it again)")
    return manifest


def segment_path(cache: Path, key: str) -> Path:
    return cache / SEGMENTS / f"{key}.safetensors"


def raw_path(cache: Path, key: str) -> Path:
    return cache / RAW / f"{key}.safetensors"


def corresp_path(cache: Path, key: str) -> Path:
    return cache / CORRESP / f"{key}_infer_corresp.txt"
