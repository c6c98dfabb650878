"""Typed schemas for what the user writes, checked strictly, with the first problem as one line.

Each input format (the waivers file, mapping overrides, the model YAML, adapter declarations, an earlier
report) declares a pydantic model derived from `Schema`: exact types (no "3" for 3, no true for 1), unknown
keys refused. `validated` turns the first problem into an `InputError` naming the file, the key and what
was expected:

    waivers file ci/waivers.toml: waiver[2].reason: expected a string, got 5 (an integer)
    model config model.yml: nn_params.note.layer: missing (expected an integer)

    table = read_toml(path, what="waivers file")                  # core.validation
    waivers = validated(WaiversFile, table, source=f"waivers file {path}")

Items of a list are counted from 1 (`waiver[2]` is the second `[[waiver]]`). Sources: pydantic's error list
(`ValidationError.errors()`); only its first error is shown, with the count of the others.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from percepiano_parity.core.validation import InputError, got, shown

S = TypeVar("S", bound=BaseModel)


class Schema(BaseModel):
    """Base of every input schema: exact types (no "3" for 3, no true for 1), unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _expected_type(annotation: Any, table_word: str) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _expected_type(typing.get_args(annotation)[0], table_word)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_expected_type(a, table_word) for a in options)
    if origin in (dict, Mapping) or (isinstance(annotation, type) and issubclass(annotation, BaseModel | dict)):
        return f"a {table_word}"
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        return "a list"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _field_at(schema: type[BaseModel], loc: Sequence[str | int]) -> tuple[type[BaseModel] | None, Any]:
    """The model that holds the last key of `loc` and that key's annotation (None where it cannot tell)."""
    model: Any = schema
    annotation: Any = schema
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[-1] if args else Any
            continue
        while typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), Any)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            info = annotation.model_fields.get(str(part))
            annotation = info.annotation if info is not None else Any
        else:
            model, annotation = None, typing.get_args(annotation)[-1] if typing.get_args(annotation) else Any
    return (model if isinstance(model, type) and issubclass(model, BaseModel) else None), annotation


def key_path(loc: Sequence[str | int]) -> str:
    """("waiver", 1, "reason") -> "waiver[2].reason" (items counted from 1)."""
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_EXPECTED = {
    "string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
    "int_from_float": "an integer", "float_type": "a number", "float_parsing": "a number",
    "finite_number": "a finite number", "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list", "tuple_type": "a list", "callable_type": "a function",
    "sequence_str": "a list of names (not a single string)",
}


def problem(error: Mapping[str, Any], schema: type[BaseModel], table_word: str = "table") -> str:
    """What is wrong, in words, for one pydantic error (without the key)."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    if kind == "missing":
        _, annotation = _field_at(schema, loc)
        return f"missing (expected {_expected_type(annotation, table_word)})"
    if kind == "extra_forbidden":
        parent, _ = _field_at(schema, loc[:-1])
        known = ", ".join(parent.model_fields) if parent is not None else ""
        return "unknown key" + (f"; known keys: {known}" if known else "")
    bounds = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
              "greater_than": ("more than", "gt"), "less_than": ("less than", "lt")}
    if kind in bounds:
        words, name = bounds[kind]
        return f"expected a value {words} {ctx.get(name)}, got {shown(value)}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error.get("msg", ""))).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {got(value, table_word)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a {table_word}, got {got(value, table_word)}"
    expected = _EXPECTED.get(kind)
    if expected is None:
        _, annotation = _field_at(schema, loc)
        expected = _expected_type(annotation, table_word)
    return f"expected {expected}, got {got(value, table_word)}"


def validated(schema: type[S], data: Any, *, source: str, table_word: str = "table", prefix: str = "") -> S:
    """`data` checked against `schema`; `InputError` "<source>: <key>: <problem>" on the first problem.

    `prefix` is put before every key (e.g. "tool.parity" for a pyproject table).
    """
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        path = key_path(first["loc"])
        key = ".".join(p for p in (prefix, path) if p)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        where = f"{source}: {key}" if key else source
        raise InputError(f"{where}: {problem(first, schema, table_word)}{more}") from None


__all__ = ["Schema", "key_path", "problem", "validated"]
