"""Interrupts the user sends (SIGINT, SIGTERM), told apart from a `KeyboardInterrupt` that code raises.

    with signals_as_interrupted():      # the command line and run_check wrap a whole run in this
        ...                             # Ctrl-C or `kill -TERM` raises Interrupted here

    with deferred_signals():            # a step that must not be cut in half (renaming a report set)
        ...                             # a signal sent meanwhile is delivered when the block ends

`Interrupted` is a `KeyboardInterrupt`, so code that does not know it (pytest, torch) treats it as one; the
user-code guard (`core.errors`) lets it through, while a bare `KeyboardInterrupt` or `SystemExit` that the
user's own code raises is reported as a failure of that code. Both context managers act only in the main
thread (the only one Python delivers signals to) and leave a signal the process ignores (SIG_IGN, e.g. a
background job's SIGINT) ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The user interrupted the run with `signum` (SIGINT: Ctrl-C, SIGTERM: `kill`, a CI timeout)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    @property
    def word(self) -> str:
        return "interrupted" if self.signum == signal.SIGINT else "terminated"


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def active() -> bool:
    """Whether a Ctrl-C now raises `Interrupted` (so a bare KeyboardInterrupt must come from code)."""
    return _in_main_thread() and signal.getsignal(signal.SIGINT) is _raise_interrupted


@contextlib.contextmanager
def signals_as_interrupted() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` inside the block; the previous handlers come back after it.

    A signal whose handler is SIG_IGN stays ignored; a handler someone else installed is left alone.
    """
    if not _in_main_thread():
        yield
        return
    replaced: dict[int, Any] = {}
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current in (signal.default_int_handler, signal.SIG_DFL):
            replaced[signum] = current
            signal.signal(signum, _raise_interrupted)
    try:
        yield
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs; deliver them (through the previous handler) after it.

    Signals reach Python's handlers only between bytecodes of the main thread, so recording them in a
    handler is enough to keep a block whole even when another thread receives the signal itself.
    """
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN or current is None:
            continue
        previous[signum] = current
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            _deliver(signum, previous[signum])


def _deliver(signum: int, handler: Callable[[int, FrameType | None], Any] | int) -> None:
    if callable(handler):
        handler(signum, None)  # raises Interrupted / KeyboardInterrupt as the signal would have
    else:  # SIG_DFL: end the process the way the signal would have
        os.kill(os.getpid(), signum)


__all__ = ["Interrupted", "active", "deferred_signals", "signals_as_interrupted"]
