"""A user's adapter: what it declares (one table, checked at the boundary), the calling conventions it
states, and what the tool reads from it (levels, attention maps, mapping, forward, run_level, recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from pydantic import ConfigDict, field_validator
from torch import Tensor, nn

from percepiano_parity.batches.canonical import ModelInput
from percepiano_parity.batches.features import ColumnPlan
from percepiano_parity.core.errors import UsageError, call_user, user_code
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.core.validation import InputError, Schema, got, validated

# ----------------------------------------------------------------------------------------------------------
# What a user's adapter declares, read from its attributes and checked at the boundary (one table).
#
# `Declarations` has one field per declaration the tool reads (levels, attention maps, the weight mapping, the
# teacher-forcing graph); `CALLBACKS` names the methods it may call. A declaration of the wrong type is one line
# naming the adapter and the key (`core.validation`); reading an attribute runs inside the user-code guard, so
# a property that raises is the adapter's failure, not ours. To add a declaration, add a field (with its type,
# its default and a docstring line) and read it from `Declarations` where it is used.

CALLBACKS: tuple[str, ...] = ("forward", "run_level", "recipe")  # optional methods; each must be callable


class Declarations(Schema):
    """levels: {level name: module path[:input|:output]}; attention: {map name: module path}; mapping:
    {reference name: candidate name} or a function name -> name (None: no partner); level_inputs:
    {level: (input level names)} for run_level. Unset (or None) means the default."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    levels: Mapping[str, str] = {}
    attention: Mapping[str, str] = {}
    mapping: Any = None
    level_inputs: Mapping[str, Sequence[str]] | None = None

    @field_validator("mapping")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if value is None or callable(value):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping of reference name to replica name, or a function, got "
                             f"{got(value, 'mapping')}")
        for key, target in value.items():
            if not isinstance(key, str) or not isinstance(target, str):
                raise ValueError(f"expected names (strings) on both sides, got {key!r} = {target!r}")
        return value


def read_declarations(adapter: Any, spec: str) -> Declarations:
    """The adapter's declarations, validated; `InputError` / `UserCodeError` (exit code 2) when bad."""
    source = f"the adapter of {spec}"
    values: dict[str, Any] = {}
    for name in Declarations.model_fields:
        with user_code(f"adapter.{name}", context=f"of {spec}"):
            value = getattr(adapter, name, None)
        if value is not None:
            values[name] = value
    for name in CALLBACKS:
        with user_code(f"adapter.{name}", context=f"of {spec}"):
            value = getattr(adapter, name, None)
        if value is not None and not callable(value):
            raise InputError(f"{source}: {name}: expected a method, got {got(value, 'mapping')}")
    return validated(Declarations, values, source=source, table_word="mapping")


# ----------------------------------------------------------------------------------------------------------
# Calling conventions of a user's model, as its adapter declares them (attributes of the adapter object).
#
# The tool holds one canonical batch (`batches.canonical.ModelInput`: a PackedSequence of note features, zero-padded
# (N, T) int64 note locations, lengths). A replica written in another style takes something else; instead of a
# hand-written `forward(model, model_input)` its adapter says what it takes, in plain attributes:
#
#     input          "packed": a PackedSequence (the original's collate, default); "padded": a zero-padded
#                    tensor (N, T, F), or (T, N, F) with batch_first = False.
#     batch_first    for input="padded" (default True).
#     location_base  0 (default): beat and measure numbers as the original's data has them (real notes numbered
#                    from 0 up, 0 also in the padding); 1: real notes' beat and measure numbers shifted by +1, so
#                    0 means padding only. Voices are passed as the original has them (1.. for real voices, 0 for
#                    notes of no voice and for padding); sections are all 1. A mapping {key: base} sets it per key.
#     mask           True: also pass a boolean (N, T) mask, True on real notes.
#     lengths        True: also pass the (N,) int64 note counts.
#     output         "logits" (default): the output is the logits; "predictions": sigmoid(logits), inverted by the
#                    tool (logit(p) = log p - log(1 - p) in float64; the report says so). A dict output is read at
#                    the key `output_key` (default: "logits", else "predictions"/"preds"/"probs").
#     output_key     the key of a dict output to read.
#     input_width    the number of feature columns the model takes (default: the reference's, 79); the reference's
#                    columns come first, the extra ones are filled by `extra_columns`.
#     extra_columns  "zeros" (default), or a function features (N, T, 79) -> (N, T, extra) float.
#     arguments      the forward's parameters in order, named from "x", "note_locations", "mask", "lengths"
#                    (default: read from the forward's signature).
#
# Any attribute left out is probed on a tiny batch (`subjects.calling`) and the report says what was detected.

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
    # probed for a model built for another input width: which batch column each of its columns takes
    # (batches.features.column_plan); None: the batch's columns as they are (and a declared width's extras)
    input_plan: ColumnPlan | None = None
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
        if self.input_plan is not None:
            plan = self.input_plan
            rows.append({"convention": "input_columns", "value": f"{plan.shared} of {plan.batch_width} by {plan.by}",
                         "how": "detected", "note": plan_note(plan)})
        if self.output == "predictions":
            rows.append({"convention": "logits", "value": "logit(prediction)", "how": "derived",
                         "note": "the model returns sigmoid outputs; the tool inverts them in float64 to compare "
                                 "logits, and computes the loss on the predictions themselves"})
        return rows


_NOTES = {"location_base": "0: beat/measure numbers as the original's data has them"}


def plan_note(plan: ColumnPlan) -> str:
    """One sentence: which columns a model of another width is fed, and which it lacks or has in excess."""
    lacks = f"it lacks {', '.join(plan.missing)}" if plan.missing else ""
    excess = f"its {', '.join(plan.extra)} (which the batch lacks) get zeros" if plan.extra else ""
    return (f"the {plan.shared} columns both have, matched by {'key name' if plan.by == 'names' else 'position'}"
            + (f" ({'; '.join(p for p in (lacks, excess) if p)})" if lacks or excess else ""))


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


# ----------------------------------------------------------------------------------------------------------
# What the tool reads from a user's adapter (levels, attention maps, mapping, forward, run_level, recipe), the
# ready-made `Adapter` with the defaults, and the checks that refuse a bad one before anything runs.


class AdapterError(UsageError):
    """The user's model or adapter cannot be driven as described (wrong shapes, missing modules...)."""


@runtime_checkable
class ReplicaAdapter(Protocol):
    """What the tool reads from an adapter (every member optional; see the module docstring)."""

    levels: Mapping[str, str]

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor: ...


@dataclass
class Adapter:
    """A ready-made adapter: declare how the model is called (subjects.adapter; anything left None is
    probed), optionally `levels` / `attention` overrides and a `mapping`, or subclass and override methods."""

    levels: Mapping[str, str] = field(default_factory=dict)
    attention: Mapping[str, str] = field(default_factory=dict)
    mapping: Mapping[str, str] | Callable[[str], str | None] | None = None
    level_inputs: Mapping[str, Sequence[str]] | None = None
    input: str | None = None
    batch_first: bool | None = None
    location_base: int | Mapping[str, int] | None = None
    mask: bool | None = None
    lengths: bool | None = None
    output: str | None = None
    output_key: str | None = None
    input_width: int | None = None
    extra_columns: str | Callable[..., Any] | None = None
    arguments: Sequence[str] | None = None

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor:
        return model(model_input.x, model_input.note_locations)

    def recipe(self, model: nn.Module) -> Any:
        return model if callable(getattr(model, "configure_optimizers", None)) else None


DEFAULT_ADAPTER = Adapter()


def custom_forward(adapter: Any) -> Callable[[nn.Module, ModelInput], Any] | None:
    """The adapter's own `forward(model, model_input)`, or None when it has none (or only Adapter's default)."""
    forward = getattr(adapter, "forward", None)
    if not callable(forward):
        return None
    if isinstance(adapter, Adapter) and getattr(type(adapter), "forward", None) is Adapter.forward:
        return None
    return forward


def _module_path(spec_value: str) -> tuple[str, str]:
    path, sep, where = str(spec_value).partition(":")
    where = where or "output"
    if where not in ("output", "input"):
        raise ValueError(f"{spec_value!r}: the part after ':' must be input or output")
    return path, where


def validate_adapter(model: nn.Module, adapter: Any, spec: str) -> None:
    """Check the adapter's names against the model and the known level names, before anything runs."""
    declared = read_declarations(adapter, spec)  # types checked, one line naming the key when wrong
    levels, attention = dict(declared.levels), dict(declared.attention)
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise AdapterError(f"the adapter of {spec} names unknown level{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; levels are: {', '.join(LEVELS)}")
    unknown = sorted(set(attention) - set(ATTENTIONS))
    if unknown:
        raise AdapterError(f"the adapter of {spec} names unknown attention map{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; maps are: {', '.join(ATTENTIONS)}")
    modules = dict(model.named_modules())
    for kind, table in (("level", levels), ("attention map", attention)):
        for name, value in table.items():
            try:
                path, _ = _module_path(value)
            except ValueError as exc:
                raise AdapterError(f"the adapter of {spec}: {kind} {name}: {exc}") from None
            if path not in modules:
                raise AdapterError(f"the adapter of {spec}: {kind} {name} points at {path!r}, which is not a "
                                   "module of the model (see model.named_modules())")


def resolve_mapping(adapter: Any, reference: nn.Module, candidate: nn.Module) -> dict[str, str]:
    """The adapter's mapping as reference parameter name -> candidate parameter name, for every reference
    parameter it covers. Names are not checked here: a target the candidate lacks (or shares with another
    module) becomes a structure finding in the comparison, never an abort."""
    mapping = getattr(adapter, "mapping", None)
    if not mapping:
        return {}
    ref_names = [n for n, _ in reference.named_parameters()]
    out: dict[str, str] = {}
    if callable(mapping):
        for name in ref_names:
            target = call_user("adapter.mapping", mapping, name, context=f"for {name!r}")
            if target:
                out[name] = str(target)
    else:
        prefixes = sorted(mapping.items(), key=lambda kv: -len(kv[0]))
        for name in ref_names:
            for ref_prefix, cand_prefix in prefixes:
                if name == ref_prefix:
                    out[name] = cand_prefix
                    break
                if name.startswith(ref_prefix + "."):
                    out[name] = cand_prefix + name[len(ref_prefix):]
                    break
        covered = {p for p in mapping if any(n == p or n.startswith(p + ".") for n in ref_names)}
        for ref_prefix in sorted(set(mapping) - covered):
            out[ref_prefix] = str(mapping[ref_prefix])  # names nothing of the reference: reported as such
    return out
