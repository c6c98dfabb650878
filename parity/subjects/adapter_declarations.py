"""What a user's adapter declares, read from its attributes and checked at the boundary (one table).

`Declarations` has one field per declaration the tool reads (levels, attention maps, the weight mapping, the
teacher-forcing graph); `CALLBACKS` names the methods it may call. A declaration of the wrong type is one line
naming the adapter and the key (`core.validation`); reading an attribute runs inside the user-code guard, so
a property that raises is the adapter's failure, not ours. To add a declaration, add a field (with its type,
its default and a docstring line) and read it from `Declarations` where it is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, field_validator

from percepiano_parity.core.guard import user_code
from percepiano_parity.core.schema import Schema, validated
from percepiano_parity.core.validation import InputError, got

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


__all__ = ["CALLBACKS", "Declarations", "read_declarations"]
