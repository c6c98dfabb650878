"""What the tool reads from a user's adapter (levels, attention maps, mapping, forward, run_level, recipe), the
ready-made `Adapter` with the defaults, and the checks that refuse a bad one before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.guard import call_user
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.replica.batch import ModelInput
from percepiano_parity.subjects.adapter_declarations import read_declarations


class AdapterError(UsageError):
    """The user's model or adapter cannot be driven as described (wrong shapes, missing modules...)."""


@runtime_checkable
class ReplicaAdapter(Protocol):
    """What the tool reads from an adapter (every member optional; see the module docstring)."""

    levels: Mapping[str, str]

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor: ...


@dataclass
class Adapter:
    """A ready-made adapter: declare how the model is called (subjects.conventions; anything left None is
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
