"""The boundary where values from the user's files and declarations enter: the one-line error every bad
value becomes, the words for what was got, and reading the files themselves.

    waivers file ci/waivers.toml: waiver[2].reason: expected a string, got 5 (an integer)

A file that is not there, not readable, not UTF-8 or not valid TOML/YAML is an `InputError` (exit code 2)
like a bad value inside it. The typed schemas each format is checked against are in `core.schema`; this
module stays free of pydantic so the command line starts fast (Ctrl-C is handled from its first moments).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from percepiano_parity.core.errors import UsageError


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


__all__ = ["InputError", "got", "kind_of", "read_text", "read_toml", "read_yaml", "shown"]
