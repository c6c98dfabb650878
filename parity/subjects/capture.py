"""Recording every intermediate tensor of one forward of a user's model, with where it was computed.

`OpRecorder` is a `torch.overrides.TorchFunctionMode`: every torch function and tensor method the forward calls
(in the model's modules, in plain functions, in loops) passes through it, and each floating-point tensor it
returns is kept (a detached reference, not a copy) with its site: the operation, the innermost module of the
model that was running, and the source file:line of the user's code that called it (the first frame outside
torch). Module outputs (a `PackedSequence` unpacked to its own lengths, a tuple's tensors, a dict's tensors) are
kept too, through forward hooks, and so are tensors filled in place (e.g. slices written into a preallocated
buffer) the first time an operation reads them after the change.

Nothing is copied, so the recording costs little beyond the forward; a tensor changed in place after it was
recorded is marked stale by its version counter and never matched. The recorder removes its hooks on exit,
whatever the forward raises.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
from torch.overrides import TorchFunctionMode

TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.dirname(os.path.abspath(__file__))  # the subjects stage: where the user's code is called from
MAX_CALLERS = 8  # enclosing user frames kept in a site (a plain function called from two places is two sites)


@dataclass(frozen=True)
class Site:
    """Where a tensor was computed: operation, innermost module (its name in the model; '' for the root or
    outside any module), the user's source file, line and function, and the lines of the user's code that
    called that function ("file:line", innermost first)."""

    op: str
    module: str
    file: str
    line: int
    function: str
    callers: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "module": self.module, "file": self.file, "line": self.line,
                "function": self.function, "callers": list(self.callers)}


@dataclass
class Recorded:
    """One recorded tensor: its site, the how-many-th time that site produced a tensor in this forward, what
    it is at the site ("output", "output 1" for a tuple's second tensor, "input 0" for an argument read after an
    in-place change, "output[key]" for a dict), and the tensor with its version at recording."""

    index: int
    site: Site
    occurrence: int
    role: str
    tensor: Tensor
    version: int

    @property
    def stale(self) -> bool:
        return self.tensor._version != self.version


def user_frame(start: Any) -> tuple[str, int, str, tuple[str, ...]]:
    """(file, line, function, callers) of the first frame from `start` outward that is neither torch's nor the
    recorder's own; callers are the enclosing user frames up to where the tool called the model."""
    frame = start
    found: tuple[str, int, str] | None = None
    callers: list[str] = []
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_HERE):
            break  # the tool's calling path: everything outward is the tool's, not the model's
        if not name.startswith(TORCH_DIR) and not name.startswith("<frozen"):
            if found is None:
                found = (name, frame.f_lineno, frame.f_code.co_name)
            elif len(callers) < MAX_CALLERS:
                callers.append(f"{name}:{frame.f_lineno}")
            else:
                break
        frame = frame.f_back
    return (*found, tuple(callers)) if found else ("", 0, "", ())


def op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", name)
    return str(name)


class ModuleStack:
    """The model's modules currently running (forward pre/post hooks), innermost last."""

    def __init__(self, model: nn.Module) -> None:
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[str] = []
        self._handles: list[Any] = []
        for module in model.modules():
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module: nn.Module, _args: Any) -> None:
        self.stack.append(self.names.get(id(module), ""))

    def _leave(self, module: nn.Module, _args: Any, _out: Any) -> None:
        if self.stack:
            self.stack.pop()

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""

    def add_hook(self, handle: Any) -> None:
        self._handles.append(handle)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _floating(value: Any) -> bool:
    return isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0


class OpRecorder(TorchFunctionMode):
    """Records every floating tensor one forward computes (see the module docstring); use `recording(model)`."""

    def __init__(self, modules: ModuleStack) -> None:
        super().__init__()
        self.modules = modules
        self.records: list[Recorded] = []
        self._counts: dict[tuple[Site, str], int] = {}
        # id(tensor) -> (the tensor, its version when last recorded); holding the tensor keeps its id unique
        self._seen: dict[int, tuple[Tensor, int]] = {}
        self.paused = False  # set while the recorder's own hooks run

    def add(self, site: Site, role: str, tensor: Tensor) -> None:
        version = tensor._version
        if self._seen.get(id(tensor), (None, -1))[1] == version:
            return
        self._seen[id(tensor)] = (tensor, version)
        key = (site, role)
        occurrence = self._counts.get(key, 0)
        self._counts[key] = occurrence + 1
        self.records.append(Recorded(len(self.records), site, occurrence, role, tensor.detach(), version))

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        changed = [(i, a) for i, a in enumerate(args) if _floating(a) and a._version
                   and not isinstance(a, nn.Parameter) and self._seen.get(id(a), (None, -1))[1] != a._version]
        site = None
        if changed:  # read after an in-place change: recorded as it is before this operation runs
            site = self._site(func)
            for i, value in changed:
                self.add(site, f"input {i}", value)
        out = func(*args, **kwargs)
        if not _floating(out) and (type(out) is torch.Size or not isinstance(out, tuple | list)):
            return out
        outputs = [(f"output {k}" if k else "output", v) for k, v in enumerate(out)] \
            if isinstance(out, tuple | list) else [("output", out)]
        outputs = [(role, v) for role, v in outputs if _floating(v)]
        if outputs:
            site = site or self._site(func)
            for role, value in outputs:
                self.add(site, role, value)
        return out

    def _site(self, func: Any) -> Site:
        file, line, function, callers = user_frame(sys._getframe(2))
        return Site(op_name(func), self.modules.current, file, line, function, callers)


def module_outputs(output: Any) -> Iterator[tuple[str, Tensor]]:
    """The tensors of a module's output, named by role; a PackedSequence is unpacked to its own lengths."""
    if isinstance(output, PackedSequence):
        padded, _ = pad_packed_sequence(output, batch_first=True)
        yield "output (unpacked)", padded
    elif isinstance(output, Tensor):
        yield "output", output
    elif isinstance(output, tuple | list) and output:
        yield from ((role, t) for role, t in module_outputs(output[0]))
    elif isinstance(output, dict):
        for key, value in output.items():
            if isinstance(value, Tensor):
                yield f"output[{key}]", value


@contextmanager
def recording(model: nn.Module) -> Iterator[OpRecorder]:
    """Record every intermediate tensor of what runs inside the block (usually one forward of `model`)."""
    modules = ModuleStack(model)
    recorder = OpRecorder(modules)

    def keep(module: nn.Module, _args: Any, output: Any) -> None:
        name = modules.names.get(id(module), "")
        file, line, function, callers = user_frame(sys._getframe(1))
        recorder.paused = True
        try:
            for role, value in module_outputs(output):
                if _floating(value):
                    recorder.add(Site(f"module {type(module).__name__}", name, file, line, function, callers), role,
                                 value)
        finally:
            recorder.paused = False

    try:
        for module in model.modules():
            modules.add_hook(module.register_forward_hook(keep))
        with recorder:
            yield recorder
    finally:
        modules.remove()
