"""Where a forward first produces NaN or infinite values: the module and the tensor operation.

Two more forwards of the batch where a subject's recordings first held non-finite values (`subjects.watch`):

* every module gets a forward hook; hooks fire when a module returns, so the first module whose output holds
  non-finite values is the innermost one that produced them (a module with finite children that returns
  NaN did it in its own forward);
* then a `TorchDispatchMode`, active only while that module runs (so only its own operations are slowed),
  sees every tensor operation (aten op) and remembers the first one whose output holds the same kind of
  value (NaN, or infinities), with the Python line that called it, in the user's code when the stack holds
  any (`core.guard.users_frame`).

Intentional infinities that do not leave a module (a -inf attention mask before a softmax) are skipped: the
operation is looked for only inside the culprit module's forward. Sources: torch forward hooks and
`torch.utils._python_dispatch.TorchDispatchMode` (torch 2.13).
"""

from __future__ import annotations

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


__all__ = ["locate_non_finite", "non_finite_kind"]
