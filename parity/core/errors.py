"""Errors every stage may raise for the command line to report."""

from __future__ import annotations


class UsageError(Exception):
    """A problem with what the user asked for or pointed at (exit code 2). The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
