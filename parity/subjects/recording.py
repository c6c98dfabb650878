"""Recording every intermediate tensor of one forward of a user's model, with where it was computed, on
the tool's private copy of that model.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
from torch.overrides import TorchFunctionMode

# ----------------------------------------------------------------------------------------------------------
# The tool's private copy of a user's model: its own parameters and buffers (the reference's weights go into
# the copy, never into the user's object), while the hooks and taps the user registered keep recording where the
# user reads them.
#
# A plain `copy.deepcopy` copies a hook that is a bound method together with its object, so a LightningModule that
# saves activations through `self._save` would fill the copy's dictionary and the user's stays empty. Here every
# registered hook callable, and every plain container a module holds (dict, list, set of anything but modules),
# is shared with the original instead of copied.

M = TypeVar("M", bound=nn.Module)


def _holds_modules(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, nn.Module) for v in items)


def private_copy(model: M) -> M:
    """A deep copy of `model` that shares the user's hooks and plain containers (see the module docstring)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for name, value in vars(module).items():
            if name.endswith("_hooks") and isinstance(value, dict):
                for hook in value.values():
                    if callable(hook):
                        memo[id(hook)] = hook
            elif not name.startswith("_") and isinstance(value, dict | list | set) and not _holds_modules(value):
                memo[id(value)] = value
    return copy.deepcopy(model, memo)


# ----------------------------------------------------------------------------------------------------------
# Recording every intermediate tensor of one forward of a user's model, with where it was computed.
#
# `OpRecorder` is a `torch.overrides.TorchFunctionMode`: every torch function and tensor method the forward calls
# (in the model's modules, in plain functions, in loops) passes through it, and each floating-point tensor it
# returns is kept (a detached reference, not a copy) with its site: the operation, the innermost module of the
# model that was running, and the source file:line of the user's code that called it (the first frame outside
# torch). Module outputs (a `PackedSequence` unpacked to its own lengths, a tuple's tensors, a dict's tensors) are
# kept too, through forward hooks, and so are tensors filled in place (e.g. slices written into a preallocated
# buffer) the first time an operation reads them after the change.
#
# Nothing is copied, so the recording costs little beyond the forward; a tensor changed in place after it was
# recorded is marked stale by its version counter and never matched. The recorder removes its hooks on exit,
# whatever the forward raises.

TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.dirname(os.path.abspath(__file__))  # the subjects stage: where the user's code is called from
# the rest of the tool: what runs inside a forward (a fix's operation patch, a relation test's zeroing, a
# recorder) is transparent, so an operation it passes on keeps the user's line
_PACKAGE = os.path.dirname(_HERE)
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


_KIND: dict[str, int] = {}  # file name -> 0 the model's code, 1 torch's or the tool's own inside a forward
#                             (skipped), 2 the tool's calling path (the walk ends)


def _kind(name: str) -> int:
    kind = _KIND.get(name)
    if kind is None:
        kind = _KIND[name] = 2 if name.startswith(_HERE) else \
            1 if name.startswith((TORCH_DIR, _PACKAGE, "<frozen")) else 0
    return kind


def user_frame(start: Any) -> tuple[str, int, str, tuple[str, ...]]:
    """(file, line, function, callers) of the first frame from `start` outward that is neither torch's nor the
    recorder's own; callers are the enclosing user frames up to where the tool called the model."""
    frame = start
    found: tuple[str, int, str] | None = None
    callers: list[str] = []
    while frame is not None:
        code = frame.f_code
        kind = _kind(code.co_filename)
        if kind == 2:
            break  # the tool's calling path: everything outward is the tool's, not the model's
        if kind == 0:
            if found is None:
                found = (code.co_filename, frame.f_lineno, code.co_name)
            elif len(callers) < MAX_CALLERS:
                callers.append(f"{code.co_filename}:{frame.f_lineno}")
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


def writes_first(func: Any) -> bool:
    """Whether an operation writes into its first argument (x[i] = v, x.add_(y), ...)."""
    name = op_name(func)
    return name == "__setitem__" or (name.endswith("_") and not name.startswith("__"))


class WriteTracker:
    """Tensors written in place since they were last recorded: a buffer filled slice by slice (a level that never
    exists as a tensor of its own) is recorded when an operation next reads it. Per operation this costs one
    dictionary test while nothing is pending, so recording a loop-heavy forward stays cheap."""

    def __init__(self) -> None:
        self.pending: dict[int, Tensor] = {}
        self._writes: dict[Any, bool] = {}

    def writes(self, func: Any) -> bool:
        known = self._writes.get(func)
        if known is None:
            known = self._writes[func] = writes_first(func)
        return known

    def read(self, func: Any, args: tuple) -> list[tuple[int, Tensor]]:
        """The pending tensors among what `func` reads of `args` (taken off the list: recorded once per change;
        the target of a write is not read)."""
        pending = self.pending
        if not pending:
            return []
        found = None
        for i, a in enumerate(args):  # ids first: a dictionary test per argument, nothing built on a miss
            if id(a) in pending and type(a) is Tensor and (i or not self.writes(func)):
                found = found or []
                found.append((i, a))
        if found is None:
            return []
        for _, a in found:
            del pending[id(a)]
        return found

    def wrote(self, func: Any, args: tuple) -> None:
        known = self._writes.get(func)
        if known is False:
            return
        if self.writes(func) and args and isinstance(args[0], Tensor) and args[0].is_floating_point():
            target: Tensor | None = args[0]
            while target is not None:  # a slice written through: its base is what is read next
                if not isinstance(target, nn.Parameter):
                    self.pending[id(target)] = target
                target = target._base


class SiteFinder:
    """Sites of operations, cheaply: the same frame on the same line (a loop body) has the same callers, so the
    stack is walked once for it; one Site object per site, so its hash is computed once. Holds frames until
    `clear()`."""

    def __init__(self) -> None:
        self._sites: dict[tuple, Site] = {}
        self._frames: dict[tuple[int, int], tuple[Any, tuple[str, int, str, tuple[str, ...]]]] = {}

    def at(self, op: str, module: str, frame: Any) -> Site:
        while frame is not None and _kind(frame.f_code.co_filename) == 1:
            frame = frame.f_back  # torch's own frames (a module's forward, a functional)
        if frame is None:
            where: tuple[str, int, str, tuple[str, ...]] = ("", 0, "", ())
        else:
            key = (id(frame), frame.f_lineno)
            hit = self._frames.get(key)
            if hit is not None and hit[0] is frame:
                where = hit[1]
            else:
                where = user_frame(frame)
                self._frames[key] = (frame, where)
        raw = (op, module, *where)
        site = self._sites.get(raw)
        if site is None:
            site = self._sites[raw] = Site(*raw)
        return site

    def clear(self) -> None:
        self._frames.clear()


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
        self.writes = WriteTracker()
        self.sites = SiteFinder()

    def add(self, site: Site, role: str, tensor: Tensor) -> None:
        version = tensor._version
        seen = self._seen.get(id(tensor))
        if seen is not None and seen[1] == version:
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
        writes = self.writes  # the hot path: tens of thousands of small operations per forward
        changed = writes.read(func, args) if writes.pending else None
        site = None
        if changed:  # read after an in-place change: recorded as it is before this operation runs
            site = self._site(func)
            for i, value in changed:
                self.add(site, f"input {i}", value)
        out = func(*args, **kwargs)
        if writes._writes.get(func) is not False:
            writes.wrote(func, args)
        kind = type(out)
        if kind is not Tensor and kind is not tuple and kind is not list:
            return out  # ints, bools, sizes, None: nothing to record
        if kind is Tensor and not (out.is_floating_point() and out.dim() > 0):
            return out
        if kind is Tensor:  # the common case: one floating tensor (checked above)
            self.add(site or self._site(func), "output", out)
            return out
        outputs = [(f"output {k}" if k else "output", v) for k, v in enumerate(out) if _floating(v)]
        if outputs:
            site = site or self._site(func)
            for role, value in outputs:
                self.add(site, role, value)
        return out

    def _site(self, func: Any) -> Site:
        return self.sites.at(op_name(func), self.modules.current, sys._getframe(2))


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
        recorder.sites.clear()  # frames hold their locals: let them go with the forward
