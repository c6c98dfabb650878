"""Watching a subject for non-finite values, and where a forward first produces them (module and tensor
operation).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.core.errors import (
    UsageError,
    describe,
    is_code_failure,
    location,
    shown_frame,
    users_frame,
)
from percepiano_parity.subjects.subject import Subject, SubjectInfo

# ----------------------------------------------------------------------------------------------------------
# Where a forward first produces NaN or infinite values: the module and the tensor operation.
#
# Two more forwards of the batch where a subject's recordings first held non-finite values (`subjects.non_finite`):
#
# * every module gets a forward hook; hooks fire when a module returns, so the first module whose output holds
#   non-finite values is the innermost one that produced them (a module with finite children that returns
#   NaN did it in its own forward);
# * then a `TorchDispatchMode`, active only while that module runs (so only its own operations are slowed),
#   sees every tensor operation (aten op) and remembers the first one whose output holds the same kind of
#   value (NaN, or infinities), with the Python line that called it, in the user's code when the stack holds
#   any (`core.errors.users_frame`).
#
# Intentional infinities that do not leave a module (a -inf attention mask before a softmax) are skipped: the
# operation is looked for only inside the culprit module's forward. Sources: torch forward hooks and
# `torch.utils._python_dispatch.TorchDispatchMode` (torch 2.13).


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def non_finite_kind(value: Any) -> str | None:
    """"NaN" or "infinite" for a value holding such floats (NaN wins), None when all of it is finite."""
    kinds = set()
    for t in _tensors(value):
        if not t.is_floating_point() and not t.is_complex():
            continue
        if bool(torch.isnan(t).any()):
            return "NaN"
        if not bool(torch.isfinite(t).all()):
            kinds.add("infinite")
    return kinds.pop() if kinds else None


class _Ops:
    """The first tensor operation whose output holds `kind` values, while the dispatch mode is active."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.first: tuple[str, traceback.FrameSummary | None] | None = None

    def record(self, func: Any, out: Any) -> None:
        if self.first is None and non_finite_kind(out) == self.kind:
            self.first = (str(func), users_frame(traceback.extract_stack()[:-3]))


def _dispatch_mode(ops: _Ops) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            ops.record(func, out)
            return out

    return Watch()


def _culprit(model: nn.Module, run: Callable[[], Any]) -> dict[str, Any]:
    """The first module to return non-finite values (innermost first, as hooks fire on return)."""
    culprit: dict[str, Any] = {}
    handles = []
    for name, module in model.named_modules():
        def post(m: nn.Module, _args: Any, output: Any, name: str = name) -> None:
            kind = None if culprit else non_finite_kind(output)
            if kind is not None:
                culprit.update(module=name, module_type=type(m).__name__, kind=kind)

        handles.append(module.register_forward_hook(post))
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return culprit


def _operation(model: nn.Module, culprit: dict[str, Any], run: Callable[[], Any]) -> dict[str, str]:
    """The culprit module's first tensor operation with non-finite output (a second forward, with the dispatch
    mode active only while that module runs, so only its own operations pay for it)."""
    ops = _Ops(culprit["kind"])
    mode = _dispatch_mode(ops)
    module = model.get_submodule(culprit["module"])
    depth = [0]

    def enter(_m: nn.Module, _args: Any) -> None:
        depth[0] += 1
        if depth[0] == 1:
            mode.__enter__()

    def leave(_m: nn.Module, _args: Any, _output: Any) -> None:
        depth[0] -= 1
        if depth[0] == 0:
            mode.__exit__(None, None, None)

    handles = [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
        while depth[0] > 0:  # the module raised inside: leave the mode anyway
            depth[0] -= 1
            mode.__exit__(None, None, None)
    if ops.first is None:
        return {}
    op, frame = ops.first
    return {"op": op, "at": shown_frame(frame) if frame is not None else ""}


def locate_non_finite(model: nn.Module, run: Callable[[], Any]) -> dict[str, Any]:
    """Run `run()` (a forward of `model`) and say where non-finite values first appear.

    Returns {"module": dotted name ("" for the model itself), "module_type", "kind"} and, when the tensor
    operation was seen, {"op": e.g. "aten.log.default", "at": "file:line, in function"}; {} when no module
    returned non-finite values (they came from elsewhere, e.g. the loss).
    """
    culprit = _culprit(model, run)
    if not culprit:
        return {}
    try:
        culprit.update(_operation(model, culprit, run))
    except Exception:  # noqa: BLE001 - the operation is a refinement; the module alone still says where
        pass
    return culprit


# ----------------------------------------------------------------------------------------------------------
# Watching a subject for non-finite values: where its recordings first hold NaN or infinite values, and a failure
# of the model on a batch as one line.


class FiniteWatch:
    """Wraps a subject and remembers where its recordings first hold NaN or infinite values.

    A NaN makes every later comparison NaN; the watch names the level where it starts, so the report can say
    so in one finding instead of leaving the reader to infer it from dozens of "differs: nan" lines.
    Everything else (teacher forcing, recorded structure, ...) is passed through to the wrapped subject.
    """

    def __init__(self, inner: Subject, batches: Sequence[CanonicalBatch]) -> None:
        self._inner = inner
        self._index = {id(b): i for i, b in enumerate(batches)}
        self.first: dict[str, Any] | None = None

    @property
    def info(self) -> SubjectInfo:
        return self._inner.info

    @property
    def model(self) -> Any:
        return self._inner.model

    @model.setter
    def model(self, value: Any) -> None:
        self._inner.model = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy/pickle protocol lookups, and _inner itself before it is set
            raise AttributeError(name)
        return getattr(self._inner, name)

    def run(self, batch: CanonicalBatch, **kwargs: Any) -> Any:
        try:
            taps = self._inner.run(batch, **kwargs)
        except UsageError:
            raise
        except BaseException as exc:  # a model failing on a batch cannot be compared: same code wherever it happens
            if not is_code_failure(exc):
                raise
            index = self._index.get(id(batch))
            where = location(exc)
            raise UsageError(f"the {self.info.name} ({self.info.source or self.info.kind}) failed on batch {index} "
                             f"({', '.join(batch.tags) or 'generated'}): {describe(exc)}"
                             + (f" (at {where})" if where else "")) from exc
        if self.first is None:
            self._scan(batch, taps)
        return taps

    def _scan(self, batch: CanonicalBatch, taps: Any) -> None:
        import math

        import torch

        from percepiano_parity.core.levels import LEVELS

        for level in [name for name in LEVELS if name in taps.levels]:
            value = taps.levels[level]
            bad = int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
            if bad:
                self.first = {"level": level, "bad": bad, "numel": int(value.numel()),
                              "nan": bool(torch.isnan(value).any()), "batch": self._index.get(id(batch)),
                              "tags": list(batch.tags), **self._origin(batch)}
                return
        if taps.loss is not None and not math.isfinite(taps.loss):
            self.first = {"level": "loss", "bad": 1, "numel": 1, "nan": math.isnan(taps.loss),
                          "batch": self._index.get(id(batch)), "tags": list(batch.tags)}


    def _origin(self, batch: CanonicalBatch) -> dict[str, Any]:
        """The module and operation that first produced the non-finite values (one more forward of this
        batch, see subjects.non_finite); {} when they cannot be told."""

        model = getattr(self._inner, "model", None)
        if model is None:
            return {}
        try:
            return locate_non_finite(model, lambda: self._inner.run(batch, grads=False))
        except BaseException as exc:  # the second forward is only a refinement of what is already known
            if not is_code_failure(exc):
                raise
            return {}


class TeacherForcedWatch(FiniteWatch):
    """A FiniteWatch over a teacher-forcible subject: the methods exist on the class itself, so protocol checks
    that look attributes up statically (typing.runtime_checkable on Python 3.12+) still see them."""

    def level_inputs(self, level: str) -> tuple[str, ...]:
        return self._inner.level_inputs(level)  # type: ignore[attr-defined]

    def run_level(self, level: str, inputs: Any, batch: CanonicalBatch) -> Any:
        return self._inner.run_level(level, inputs, batch)  # type: ignore[attr-defined]


def watch(subject: Subject, batches: Sequence[CanonicalBatch]) -> FiniteWatch:
    forcible = callable(getattr(subject, "run_level", None)) and callable(getattr(subject, "level_inputs", None))
    return (TeacherForcedWatch if forcible else FiniteWatch)(subject, batches)
