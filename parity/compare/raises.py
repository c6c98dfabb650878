"""A batch one side raises on: what each side did (the exception, its one line, where it was raised), and what
a side that returned values did instead (a clamp that changed values).

A crash is a deviation: a replica that raises on a batch the original accepts would stop a training run the
original finishes, and a replica that returns values where the original raises (an out-of-range beat index the
original's `span_beat_to_note_num` cannot take, model_utils.py:56) computes something the original never did.
Both are measured here as plain data for the forward check; the engine goes on with the other batches.

    failure = describe_failure(exc)          # {"type", "message", "kind", "where", ...}
    with changed_by_clamps() as clamps:      # clamp / clip calls that changed values, with the user's line
        subject.run(batch, grads=False)
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.core.errors import UsageError, UserCodeError, users_frame
from percepiano_parity.original_adapter.errors import OriginalLoadError
from percepiano_parity.subjects.recording import TORCH_DIR, op_name

MESSAGE_CHARS = 240  # one line of an exception's message in a finding


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions under the wrappers that carried it up: the guard around the user's code
    (core.errors.UserCodeError, its `original`), the one-line errors of the adapter and the watches (a UsageError
    or OriginalLoadError raised from the real one) and the engine's own SideFailure."""
    out: list[BaseException] = []
    while exc is not None and all(e is not exc for e in out):
        out.append(exc)
        if isinstance(exc, UserCodeError):
            exc = exc.original
        elif isinstance(exc, UsageError | OriginalLoadError) or getattr(exc, "wraps_side_failure", False):
            exc = exc.__cause__  # type: ignore[assignment]
        else:
            break
    return out


def innermost(exc: BaseException) -> BaseException:
    """The exception raised where the failure happened (see `_chain`)."""
    return _chain(exc)[-1]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def _deepest(exc: BaseException) -> str:
    """"file:line, in function" of the deepest frame outside torch, the standard library and this tool: for the
    original, its own line in the checkout; "" when every frame is torch's or ours."""
    frame = users_frame(traceback.extract_tb(exc.__traceback__))
    return f"{frame.filename}:{frame.lineno}, in {frame.name}" if frame is not None else ""


def _tool_frame(exc: BaseException) -> str:
    """The deepest frame of any kind (the bundled replica's own line, e.g. replica/hierarchy.py)."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "/torch/" not in frame.filename:
            return f"{frame.filename}:{frame.lineno}, in {frame.name}"
    return ""


def describe_failure(exc: BaseException, root: str = "") -> dict[str, Any]:
    """What one side raised, as JSON-ready data: the exception type and its one-line message, `kind` (the type
    the original raises there: for the replica's HierarchyError its `original_error`, else the type itself), and
    `where` (the user's file:line when the user's code raised, else the deepest line outside torch and the
    standard library; relative to `root`, the subject's checkout, when it lies inside it)."""
    chain = _chain(exc)
    inner = chain[-1]
    guard = next((e for e in chain if isinstance(e, UserCodeError)), None)
    as_original = getattr(inner, "original_error", None)
    where = guard.where if guard is not None and guard.where else (_deepest(inner) or _tool_frame(inner))
    if root and os.path.isdir(root) and where.startswith(os.path.realpath(root) + os.sep):
        where = where[len(os.path.realpath(root)) + 1:]
    out: dict[str, Any] = {"type": type(inner).__name__, "message": _one_line(inner),
                           "kind": str(as_original) if as_original else type(inner).__name__, "where": where,
                           "users_code": guard is not None}
    if as_original:
        out["stands_for"] = str(as_original)
    return out


def batch_record(index: int, batch: CanonicalBatch) -> dict[str, Any]:
    """Which batch: its index in the audit, its tags, its items (names, lengths)."""
    return {"batch": index, "tags": list(batch.tags), "items": len(batch), "lengths": list(batch.lengths),
            "names": [s.name for s in batch.segments]}


def outcome(reference: dict[str, Any] | None, candidate: dict[str, Any] | None) -> str:
    """"replica_raises", "original_raises", "both_raise_alike" (the same kind) or "both_raise" (other kinds)."""
    if reference is None and candidate is not None:
        return "replica_raises"
    if candidate is None and reference is not None:
        return "original_raises"
    if reference is not None and candidate is not None:
        return "both_raise_alike" if reference["kind"] == candidate["kind"] else "both_raise"
    return "neither"


# ----------------------------------------------------------------------------------------------------------
# What a side that returned values did where the other raised: clamp and clip calls that changed values (an index
# clamped into range instead of raising IndexError), each with the user's line and how many values it changed.

def _caller(frame: Any) -> str:
    """"file:line, in function" of the first frame outward that is neither torch's nor this tool's (other modes of
    the tool, a level tap, may sit between the user's call and this one)."""
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith((TORCH_DIR, TOOL_DIR, "<frozen")):
            return f"{name}:{frame.f_lineno}, in {frame.f_code.co_name}"
        frame = frame.f_back
    return ""


TOOL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # parity/: every stage of the tool
_CLAMPS = frozenset({"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_"})


class _ClampWatch(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, dict[str, Any]] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = op_name(func)
        if name not in _CLAMPS or not args or not isinstance(args[0], Tensor):
            return func(*args, **kwargs)
        before = args[0].detach().clone() if name.endswith("_") else args[0].detach()
        out = func(*args, **kwargs)
        if isinstance(out, Tensor) and out.shape == before.shape:
            changed = int((out.detach() != before).sum())
            if changed:
                where = _caller(sys._getframe(1))
                entry = self.found.setdefault(f"{name}|{where}", {"op": f"torch.{name.rstrip('_')}", "where": where,
                                                                  "changed": 0, "integer": not out.is_floating_point()})
                entry["changed"] += changed
        return out


@contextlib.contextmanager
def changed_by_clamps() -> Iterator[list[dict[str, Any]]]:
    """Inside the block: every clamp / clip call whose output differs from its input, integer ones (indices)
    first, as {"op", "where", "changed", "integer"}; the list is filled when the block ends."""
    found: list[dict[str, Any]] = []
    watch = _ClampWatch()
    try:
        with watch, torch.no_grad():
            yield found
    finally:
        found.extend(sorted(watch.found.values(), key=lambda e: (not e["integer"], -e["changed"])))
