"""The boundary where values from the user's files and declarations enter: typed schemas checked strictly,
and the one-line error every bad value becomes.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from percepiano_parity.core.errors import UsageError

# ----------------------------------------------------------------------------------------------------------
# Typed schemas for what the user writes, checked strictly, with the first problem as one line.
#
# Each input format (the waivers file, mapping overrides, the model YAML, adapter declarations, an earlier
# report) declares a pydantic model derived from `Schema`: exact types (no "3" for 3, no true for 1), unknown
# keys refused. `validated` turns the first problem into an `InputError` naming the file, the key and what
# was expected:
#
#     waivers file ci/waivers.toml: waiver[2].reason: expected a string, got 5 (an integer)
#     model config model.yml: nn_params.note.layer: missing (expected an integer)
#
#     table = read_toml(path, what="waivers file")                  # core.validation
#     waivers = validated(WaiversFile, table, source=f"waivers file {path}")
#
# Items of a list are counted from 1 (`waiver[2]` is the second `[[waiver]]`). Sources: pydantic's error list
# (`ValidationError.errors()`); only its first error is shown, with the count of the others.

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


# ----------------------------------------------------------------------------------------------------------
# The boundary where values from the user's files and declarations enter: the one-line error every bad
# value becomes, the words for what was got, and reading the files themselves.
#
#     waivers file ci/waivers.toml: waiver[2].reason: expected a string, got 5 (an integer)
#
# A file that is not there, not readable, not UTF-8 or not valid TOML/YAML is an `InputError` (exit code 2)
# like a bad value inside it. The typed schemas each format is checked against are in `core.validation`; this
# module stays free of pydantic so the command line starts fast (Ctrl-C is handled from its first moments).


class InputError(UsageError):
    """A value the user supplied is not what the tool expects (exit code 2); the message is one line."""


# ------------------------------------------------------------------------------------------ describing values


def kind_of(value: Any, table_word: str = "table") -> str:
    """"an integer", "a string", "a table", ... for the type of `value`."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return f"a {table_word}"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def shown(value: Any, limit: int = 60) -> str:
    """A short repr of a user's value for an error line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def got(value: Any, table_word: str = "table") -> str:
    if isinstance(value, Mapping | list | tuple) and len(repr(value)) > 60:
        return kind_of(value, table_word)
    return f"{shown(value)} ({kind_of(value, table_word)})"


# ------------------------------------------------------------------------------------------ reading files


def read_text(path: str | Path, *, what: str) -> str:
    """The text of a file the user pointed at; InputError when it is missing, a folder or unreadable."""
    p = Path(path).expanduser()
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {p} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {p} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from None


def read_toml(path: str | Path, *, what: str) -> dict[str, Any]:
    """A TOML file as a dict; InputError (one line) when it cannot be read or parsed."""
    text = read_text(path, what=what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{what} {Path(path)} is not valid TOML: {exc}") from None


def read_yaml(path: str | Path, *, what: str) -> Any:
    """A YAML file (safe_load: plain data only); InputError (one line) when it cannot be read or parsed."""
    import yaml

    text = read_text(path, what=what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {Path(path)} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise InputError(f"{what} {Path(path)} nests too deeply") from None
