"""Where a forward first produces NaN or infinite values: the module and the tensor operation.

Run once, on the batch where a subject's recordings first held non-finite values (`subjects.watch`):

* every module gets a forward hook; hooks fire when a module returns, so the first module whose output holds
  non-finite values is the innermost one that produced them (a module with finite children that returns
  NaN did it in its own forward);
* a `TorchDispatchMode` sees every tensor operation (aten op) and remembers the first one whose output holds
  the same kind of value (NaN, or infinities) with the Python line that called it, in the user's code when
  the stack holds any (`core.guard.users_frame`).

Intentional infinities that do not leave a module (a -inf attention mask before a softmax) are skipped: the
operation is looked for only inside the culprit module's forward. Sources: torch forward hooks and
`torch.utils._python_dispatch.TorchDispatchMode` (torch 2.13).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from percepiano_parity.core.guard import shown_frame, users_frame


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
    """The tensor operations with non-finite outputs, in order, while the dispatch mode is active."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str, traceback.FrameSummary | None]] = []  # (tick, op, kind, frame)
        self.tick = 0

    def record(self, func: Any, out: Any) -> None:
        self.tick += 1
        if len(self.seen) >= 64:
            return
        kind = non_finite_kind(out)
        if kind is not None:
            frame = users_frame(traceback.extract_stack()[:-3])
            self.seen.append((self.tick, str(func), kind, frame))


def _dispatch_mode(ops: _Ops) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            ops.record(func, out)
            return out

    return Watch()


def locate_non_finite(model: nn.Module, run: Callable[[], Any]) -> dict[str, Any]:
    """Run `run()` (a forward of `model`) and say where non-finite values first appear.

    Returns {"module": dotted name ("" for the model itself), "module_type", "kind"} and, when the tensor
    operation was seen, {"op": e.g. "aten.log.default", "at": "file:line, in function"}; {} when nothing
    non-finite appeared (the values came from elsewhere, e.g. the loss).
    """
    ops = _Ops()
    culprit: dict[str, Any] = {}
    entered: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        def pre(_m: nn.Module, _args: Any, name: str = name) -> None:
            entered.setdefault(name, ops.tick)

        def post(m: nn.Module, _args: Any, output: Any, name: str = name) -> None:
            if culprit:
                return
            kind = non_finite_kind(output)
            if kind is not None:
                culprit.update(module=name, module_type=type(m).__name__, kind=kind,
                               span=(entered.get(name, 0), ops.tick))

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        mode = _dispatch_mode(ops)
    except Exception:  # noqa: BLE001 - the dispatch mode is a refinement; the module alone still helps
        mode = None
    try:
        with torch.no_grad(), (mode if mode is not None else contextlib.nullcontext()):
            run()
    finally:
        for handle in handles:
            handle.remove()
    if not culprit:
        return {}
    start, end = culprit.pop("span")
    for tick, op, kind, frame in ops.seen:
        if start < tick <= end and kind == culprit["kind"]:
            culprit["op"] = op
            culprit["at"] = shown_frame(frame) if frame is not None else ""
            break
    return culprit


__all__ = ["locate_non_finite", "non_finite_kind"]
