"""The one error type the adapter raises.

Everything that can go wrong with a user's checkout (a wrong path, a missing package, a YAML file or
variant that does not exist, a batch the original cannot digest) surfaces as `OriginalLoadError` with a
single-line message, so the CLI can print it verbatim and exit with the "original unusable" code.
"""

from __future__ import annotations


class OriginalLoadError(Exception):
    """The original could not be located, imported, built or run. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace (tracebacks and multi-line messages included) and cap the length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_exception(exc: BaseException) -> str:
    """`TypeName: message` on one line, for wrapping the original's own exceptions."""
    return one_line(f"{type(exc).__name__}: {exc}")
