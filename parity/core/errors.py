"""Errors every stage may raise for the command line to report, and the one guard around every call into
the user's code: a failure there is the user's to fix (exit code 2).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from percepiano_parity.core.interrupts import Interrupted, active

# ----------------------------------------------------------------------------------------------------------
# Errors every stage may raise for the command line to report.


class UsageError(Exception):
    """A problem with what the user asked for or pointed at (exit code 2). The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# ----------------------------------------------------------------------------------------------------------
# The one guard around every call into the user's code: a failure there is the user's to fix (exit code 2).
#
#     with user_code("factory", context=spec):            # or: call_user("adapter.recipe", get, model)
#         made = factory(**kwargs)
#
# Anything the block raises becomes a `UserCodeError` (a `UsageError`) with one line:
#
#     your factory user.py:build failed: RuntimeError: cannot build the model (at user.py:22, in build)
#
# naming what failed, the exception, and the file:line of the deepest frame of the user's own code (not ours,
# not the standard library's, not an installed library's when there is one of the user's). `SystemExit` and a
# bare `KeyboardInterrupt` raised by that code are failures of that code, never a silent end of the run; an
# interrupt the user sends (`core.interrupts.Interrupted`) and `GeneratorExit` pass through unchanged, and so
# does a `UsageError` (a `UserCodeError` from a guard further in names the failure already).

T = TypeVar("T")

# The tool's own packages (source checkout or installed), whose frames are never the user's.
_OURS = ("percepiano_parity", "percepiano_parity.replica", "percepiano_parity.reports",
         "percepiano_parity.original_adapter", "parity")
_LIBRARIES = ("torch", "numpy")  # libraries the user's code calls into; a frame there is never the answer


class UserCodeError(UsageError):
    """The user's code failed (exit code 2). `what` names the callback, `where` is "file:line" or ""."""

    def __init__(self, what: str, exc: BaseException, where: str = "", context: str = "") -> None:
        self.what, self.where, self.original = what, where, exc
        head = f"your {what}{f' {context}' if context else ''} failed"
        super().__init__(f"{head}: {describe(exc)}{f' (at {where})' if where else ''}")


def describe(exc: BaseException) -> str:
    """One line for an exception: its type and message, or what a SystemExit / KeyboardInterrupt means."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if type(exc) is KeyboardInterrupt:
        return "it raised KeyboardInterrupt"
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _roots(names: tuple[str, ...]) -> tuple[str, ...]:
    roots = []
    for name in names:
        module = sys.modules.get(name)
        for path in getattr(module, "__path__", None) or ():
            roots.append(os.path.realpath(path) + os.sep)
    return tuple(roots)


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib")
                 if k in paths)


def _stdlib_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib") if k in paths)


def user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The deepest frame of the traceback in the user's own code: outside this tool and the standard library,
    preferably outside installed libraries too (an installed user package is the fallback); None if none."""
    return users_frame(traceback.extract_tb(exc.__traceback__))


def users_frame(frames: list[traceback.FrameSummary]) -> traceback.FrameSummary | None:
    """The deepest of `frames` (outermost first) in the user's own code, as `user_frame` chooses it."""
    ours, everywhere, stdlib = _roots(_OURS), _library_roots(), _stdlib_roots()
    libraries = _roots(_LIBRARIES)

    def real(frame: traceback.FrameSummary) -> str:
        return os.path.realpath(frame.filename)

    candidates = [f for f in frames if not f.filename.startswith("<") and not real(f).startswith(ours + stdlib)]
    for tier in ([f for f in candidates if not real(f).startswith(everywhere)],
                 [f for f in candidates if not real(f).startswith(libraries)]):
        if tier:
            return tier[-1]
    return None


def shown_frame(frame: traceback.FrameSummary) -> str:
    """"file:line, in function", the file relative to the working folder when it lies inside it."""
    return f"{_shown(frame.filename)}:{frame.lineno}, in {frame.name}"


def _shown(path: str) -> str:
    """A path relative to the working folder when it lies inside it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def location(exc: BaseException, fn: Callable[..., Any] | None = None) -> str:
    """"file:line, in function" of the user's frame that raised `exc` (else where `fn` is defined), or ""."""
    frame = user_frame(exc)
    if frame is not None:
        return shown_frame(frame)
    if fn is not None:
        with contextlib.suppress(TypeError, OSError):
            target = inspect.unwrap(fn)
            source = inspect.getsourcefile(target)
            line = inspect.getsourcelines(target)[1]
            if source:
                return f"{_shown(source)}:{line}, in {getattr(target, '__qualname__', '?')}"
    return ""


def is_code_failure(exc: BaseException) -> bool:
    """Whether `exc` is a failure of the code that raised it (not an interrupt the user sent, not a failure a
    guard further in, or a usage error, already reported in one line)."""
    if isinstance(exc, Interrupted | UsageError | GeneratorExit):
        return False
    if type(exc) is KeyboardInterrupt:
        return active()  # without our signal handlers a Ctrl-C is indistinguishable: let it end the run
    return True


@contextlib.contextmanager
def user_code(what: str, *, context: str = "", fn: Callable[..., Any] | None = None) -> Iterator[None]:
    """Run the block as the user's `what` (e.g. "factory", "adapter.forward"); see the module docstring.

    `context` is added after the name ("your forward on a batch (normal) failed"); `fn`, the callable being run,
    gives the location when the traceback holds no frame of the user's.
    """
    try:
        yield
    except BaseException as exc:
        if not is_code_failure(exc):
            raise
        raise UserCodeError(what, exc, location(exc, fn), context) from exc


def call_user(what: str, fn: Callable[..., T], /, *args: Any, context: str = "", **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` inside `user_code(what)`."""
    with user_code(what, context=context, fn=fn):
        return fn(*args, **kwargs)
