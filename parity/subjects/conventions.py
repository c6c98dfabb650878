"""Calling conventions of a user's model, as its adapter declares them (attributes of the adapter object).

The tool holds one canonical batch (`replica.batch.ModelInput`: a PackedSequence of note features, zero-padded
(N, T) int64 note locations, lengths). A replica written in another style takes something else; instead of a
hand-written `forward(model, model_input)` its adapter says what it takes, in plain attributes:

    input          "packed": a PackedSequence (the original's collate, default); "padded": a zero-padded
                   tensor (N, T, F), or (T, N, F) with batch_first = False.
    batch_first    for input="padded" (default True).
    location_base  0 (default): beat and measure numbers as the original's data has them (real notes numbered
                   from 0 up, 0 also in the padding); 1: real notes' beat and measure numbers shifted by +1, so
                   0 means padding only. Voices are passed as the original has them (1.. for real voices, 0 for
                   notes of no voice and for padding); sections are all 1. A mapping {key: base} sets it per key.
    mask           True: also pass a boolean (N, T) mask, True on real notes.
    lengths        True: also pass the (N,) int64 note counts.
    output         "logits" (default): the output is the logits; "predictions": sigmoid(logits), inverted by the
                   tool (logit(p) = log p - log(1 - p) in float64; the report says so). A dict output is read at
                   the key `output_key` (default: "logits", else "predictions"/"preds"/"probs").
    output_key     the key of a dict output to read.
    input_width    the number of feature columns the model takes (default: the reference's, 79); the reference's
                   columns come first, the extra ones are filled by `extra_columns`.
    extra_columns  "zeros" (default), or a function features (N, T, 79) -> (N, T, extra) float.
    arguments      the forward's parameters in order, named from "x", "note_locations", "mask", "lengths"
                   (default: read from the forward's signature).

Any attribute left out is probed on a tiny batch (`subjects.probe`) and the report says what was detected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from percepiano_parity.core.errors import UsageError

INPUTS = ("packed", "padded")
OUTPUTS = ("logits", "predictions")
ARGUMENTS = ("x", "note_locations", "mask", "lengths")
LOCATION_KEYS = ("beat", "measure", "voice", "section")
DECLARABLE = ("input", "batch_first", "location_base", "mask", "lengths", "output", "output_key", "input_width",
              "extra_columns", "arguments")


class ConventionError(UsageError):
    """An adapter declaration that cannot be used (wrong type or value): one line, exit code 2."""


@dataclass(frozen=True)
class Conventions:
    """How to call one model. `declared` names the attributes the adapter gave; `detected` holds, for the rest,
    what probing found and why (one short sentence each)."""

    input: str = "packed"
    batch_first: bool = True
    location_base: Mapping[str, int] = field(default_factory=lambda: {"beat": 0, "measure": 0, "voice": 0,
                                                                       "section": 0})
    mask: bool = False
    lengths: bool = False
    output: str = "logits"
    output_key: str | None = None
    input_width: int | None = None
    extra_columns: str | Callable[..., Any] = "zeros"
    arguments: tuple[str, ...] | None = None
    declared: frozenset[str] = frozenset()
    detected: Mapping[str, str] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Conventions:
        return replace(self, **changes)

    def describe(self) -> list[dict[str, str]]:
        """One row per convention for the report: name, value, and whether declared, detected or a default."""
        rows = []
        for name in ("input", "batch_first", "location_base", "mask", "lengths", "output", "output_key",
                     "input_width", "extra_columns", "arguments"):
            value = getattr(self, name)
            if name == "batch_first" and self.input != "padded":
                continue
            if name == "extra_columns" and self.input_width is None:
                continue
            if name in ("output_key", "arguments", "input_width") and value is None:
                continue
            how = "declared" if name in self.declared else ("detected" if name in self.detected else "default")
            rows.append({"convention": name, "value": _show(name, value), "how": how,
                         "note": self.detected.get(name, _NOTES.get(name, ""))})
        if self.output == "predictions":
            rows.append({"convention": "logits", "value": "logit(prediction)", "how": "derived",
                         "note": "the model returns sigmoid outputs; the tool inverts them in float64 to compare "
                                 "logits, and computes the loss on the predictions themselves"})
        return rows


_NOTES = {"location_base": "0: beat/measure numbers as the original's data has them"}


def _show(name: str, value: Any) -> str:
    if name == "location_base":
        bases = {k: v for k, v in dict(value).items() if v}
        return ", ".join(f"{k}={v}" for k, v in bases.items()) if bases else "0"
    if callable(value):
        return getattr(value, "__qualname__", type(value).__name__)
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConventionError(f"{where} must be True or False, got {value!r}")
    return value


def _base(where: str, value: Any) -> dict[str, int]:
    if isinstance(value, bool) or not isinstance(value, int | Mapping):
        raise ConventionError(f"{where} must be 0, 1 or a mapping of {', '.join(LOCATION_KEYS)} to 0 or 1, got "
                              f"{value!r}")
    if isinstance(value, int):
        if value not in (0, 1):
            raise ConventionError(f"{where} must be 0 or 1, got {value}")
        return {"beat": value, "measure": value, "voice": 0, "section": 0}
    out = {"beat": 0, "measure": 0, "voice": 0, "section": 0}
    for key, base in value.items():
        if key not in LOCATION_KEYS or isinstance(base, bool) or base not in (0, 1):
            raise ConventionError(f"{where}: {key!r}: {base!r}; expected keys {', '.join(LOCATION_KEYS)} with 0 or 1")
        out[key] = int(base)
    return out


def read_conventions(adapter: Any, spec: str, *, reference_width: int) -> Conventions:
    """The conventions an adapter declares (attributes of DECLARABLE), validated; ConventionError otherwise."""
    where = f"the adapter of {spec}:"
    given = {name: getattr(adapter, name) for name in DECLARABLE if getattr(adapter, name, None) is not None}
    out: dict[str, Any] = {}
    for name, value in given.items():
        at = f"{where} {name}"
        if name == "input":
            if value not in INPUTS:
                raise ConventionError(f"{at} must be one of {', '.join(map(repr, INPUTS))}, got {value!r}")
            out[name] = value
        elif name == "output":
            if value not in OUTPUTS:
                raise ConventionError(f"{at} must be one of {', '.join(map(repr, OUTPUTS))}, got {value!r}")
            out[name] = value
        elif name in ("batch_first", "mask", "lengths"):
            out[name] = _bool(at, value)
        elif name == "location_base":
            out[name] = _base(at, value)
        elif name == "output_key":
            if not isinstance(value, str) or not value:
                raise ConventionError(f"{at} must be a non-empty string, got {value!r}")
            out[name] = value
        elif name == "input_width":
            if isinstance(value, bool) or not isinstance(value, int) or value < reference_width:
                raise ConventionError(f"{at} must be an integer of at least {reference_width} (the reference's "
                                      f"feature columns come first), got {value!r}")
            out[name] = value
        elif name == "extra_columns":
            if value != "zeros" and not callable(value):
                raise ConventionError(f"{at} must be 'zeros' or a function features -> extra columns, got {value!r}")
            out[name] = value
        elif name == "arguments":
            names = tuple(value) if isinstance(value, list | tuple) else None
            if not names or any(n not in ARGUMENTS for n in names) or len(set(names)) != len(names) \
                    or "x" not in names:
                raise ConventionError(f"{at} must list distinct names from {', '.join(ARGUMENTS)} including 'x', "
                                      f"got {value!r}")
            out[name] = names
    if "extra_columns" in out and "input_width" not in out:
        raise ConventionError(f"{where} extra_columns is given without input_width")
    return Conventions(**out, declared=frozenset(out))
