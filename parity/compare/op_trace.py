"""Operation traces: every torch operation a forward calls, with its inputs, output, call site and module.

A trace is what lets the diagnosis look *inside* a level: which operation first produces a value the
original never produces, what it was given, and where in the source it sits. It is recorded with a
`TorchFunctionMode` (every `torch.*` function, `Tensor` method and `nn.functional` call that reaches torch's
function dispatch), so plain functions and inline code are seen as well as submodules.

Outputs are kept as detached copies (a later in-place write must not change what was recorded), so a trace is
meant for one small diagnosis batch, not for a whole audit; `max_bytes` stops recording once it is reached.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_OWN_DIR = str(Path(__file__).resolve().parents[1])  # percepiano_parity's stage folders
_REPLICA_DIR = str(Path(__file__).resolve().parents[2] / "replica")
_ADAPTER_DIR = str(Path(__file__).resolve().parents[2] / "original_adapter")
# the self-test's deliberate mistakes are model code, not the tool's: their lines are call sites
_MISTAKES = str(Path(__file__).resolve().parents[1] / "subjects" / "mistakes.py")
# operations made here prepare the model's input, they are not the model's: never recorded
_INPUT_FILES = (str(Path(__file__).resolve().parents[2] / "replica" / "batch.py"),)
# calls that only read metadata or copy; never a computation worth naming
_SKIP = frozenset({
    "__get__", "size", "dim", "numel", "is_floating_point", "is_complex", "__len__", "__bool__", "__repr__",
    "__format__", "item", "tolist", "data_ptr", "stride", "storage_offset", "is_contiguous", "element_size",
    "__hash__", "__eq__", "__ne__", "requires_grad_", "register_hook", "__setstate__", "__reduce_ex__",
    "numpy", "cpu", "detach", "has_names", "__index__", "__int__", "__float__", "_is_view", "nelement",
    "get_device", "__contains__", "__iter__", "is_nonzero",
})
# operations that rearrange, select or combine values without computing new ones
LAYOUT_OPS = frozenset({
    "view", "reshape", "permute", "transpose", "contiguous", "unsqueeze", "squeeze", "flatten", "unflatten",
    "expand", "expand_as", "split", "chunk", "cat", "concat", "stack", "__getitem__", "narrow", "select",
    "index_select", "gather", "clone", "to", "float", "double", "half", "type", "type_as", "t", "movedim",
    "flip", "roll", "repeat", "repeat_interleave", "unbind", "masked_select", "new_zeros", "zeros_like",
    "new_tensor", "view_as", "reshape_as", "tile", "swapaxes", "pad_sequence", "sort", "argsort", "long", "int",
    "bool", "nonzero", "arange", "zeros", "ones", "full", "empty", "tensor", "as_tensor", "new_empty", "new_ones",
    "new_full", "ones_like", "full_like", "empty_like", "__setitem__", "copy_", "fill_", "zero_", "masked_fill",
    "masked_fill_", "where", "index_put_", "index_put", "scatter", "scatter_", "scatter_add", "scatter_add_",
    "split_with_sizes", "triu", "tril", "pad", "align_to", "index_add", "index_add_", "cumsum", "sum",
})


@dataclass
class Op:
    """One recorded operation (see the module docstring). `inputs` are the tensor arguments in order (None for
    non-tensor ones, whose values are in `constants`), then the tensors inside list arguments (cat, stack)."""

    index: int
    name: str  # "softmax", "linear", "__getitem__", ...
    qualname: str  # "torch.softmax", "torch.nn.functional.linear", "Tensor.view", ...
    site: str  # "path/to/file.py:123", the first frame outside torch and this tool
    module: str  # the innermost submodule running (its path in the traced model), "" outside any
    inputs: list[Tensor | None] = field(default_factory=list)
    input_ids: list[int | None] = field(default_factory=list)  # id() of each input tensor at call time
    constants: dict[str, Any] = field(default_factory=dict)
    output: Tensor | None = None
    output_id: int | None = None
    func: Callable[..., Any] | None = field(default=None, repr=False)
    args: tuple[Any, ...] = field(default=(), repr=False)
    kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    live: Any = field(default=None, repr=False)  # the output object itself while recording: ids stay unique

    @property
    def computes(self) -> bool:
        """Whether the operation makes new values (not a pure layout or selection operation)."""
        return self.name not in LAYOUT_OPS

    def label(self) -> str:
        return f"{self.qualname} at {self.site}" + (f" ({self.module})" if self.module else "")


def _name_of(func: Callable[..., Any]) -> tuple[str, str]:
    """(short name, qualified name): "view" / "Tensor.view", "softmax" / "torch.softmax", "linear" / "F.linear"."""
    name = getattr(func, "__name__", None) or type(func).__name__
    owner = getattr(func, "__objclass__", None)
    if owner is not None and issubclass(owner, torch._C.TensorBase):
        return name, f"Tensor.{name}"
    if getattr(func, "__qualname__", "").startswith(("Tensor.", "_TensorBase.", "TensorBase.")):
        return name, f"Tensor.{name}"
    module = getattr(func, "__module__", None) or ""
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return name, f"F.{name}"
    return name, f"torch.{name}"


_PARAMS: dict[Any, tuple[str, ...] | None] = {}


def param_names(func: Any) -> tuple[str, ...] | None:
    """The positional parameter names of a torch function or Tensor method (from torch's own override
    signatures), so `x.softmax(-1)` and `torch.softmax(x, dim=-1)` name their arguments alike; None if unknown."""
    if func not in _PARAMS:
        lam = _overrides().get(func)
        try:
            _PARAMS[func] = tuple(inspect.signature(lam).parameters) if lam is not None else None
        except (TypeError, ValueError):
            _PARAMS[func] = None
    return _PARAMS[func]


_OVERRIDES: dict[Any, Any] = {}


def _overrides() -> dict[Any, Any]:
    if not _OVERRIDES:
        from torch.overrides import get_testing_overrides

        _OVERRIDES.update(get_testing_overrides())
    return _OVERRIDES


def constant_key(func: Any, position: int) -> str:
    """The name a positional argument goes by in `constants`: its parameter name when known, else its index."""
    names = param_names(func)
    return names[position] if names is not None and position < len(names) else str(position)


def place_constants(func: Any, args: list[Any], kwargs: dict[str, Any], constants: dict[str, Any]) -> None:
    """Put `constants` (keys: positional index, or parameter name) into `args` / `kwargs` in place: a name whose
    slot is already filled positionally replaces that positional value."""
    names = param_names(func) or ()
    for key, value in constants.items():
        position = int(key) if key.isdigit() else (names.index(key) if key in names else -1)
        if 0 <= position < len(args):
            args[position] = value
        else:
            kwargs[key] = value


def _constant(value: Any) -> bool:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value)


def call_site(skip_dirs: tuple[str, ...] = (_TORCH_DIR, _OWN_DIR, _ADAPTER_DIR)) -> str:
    """file:line of the innermost frame that is neither torch's nor this tool's own."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if path == _MISTAKES or (not path.startswith(skip_dirs) and not path.startswith("<frozen")):
            return f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


class _Recorder(TorchFunctionMode):
    def __init__(self, ops: list[Op], modules: list[str], max_bytes: int, skip_dirs: tuple[str, ...]) -> None:
        super().__init__()
        self.ops, self.modules, self.max_bytes, self.skip_dirs = ops, modules, max_bytes, skip_dirs
        self.bytes = 0
        self.full = False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name, qual = _name_of(func)
        if name in _SKIP or self.full:
            return out
        tensor = _first_tensor(out)
        if name == "__setitem__" and args and isinstance(args[0], Tensor):
            tensor = args[0]  # written in place: the written tensor is the operation's result
        if tensor is None or not isinstance(tensor, Tensor):
            return out
        inputs: list[Tensor | None] = []
        ids: list[int | None] = []
        constants: dict[str, Any] = {}
        for i, a in enumerate(args):
            inputs.append(a.detach() if isinstance(a, Tensor) else None)
            ids.append(id(a) if isinstance(a, Tensor) else None)
            if not isinstance(a, Tensor) and _constant(a):
                constants[constant_key(func, i)] = a
        for k, v in kwargs.items():
            if isinstance(v, Tensor):
                inputs.append(v.detach())
                ids.append(id(v))
            elif _constant(v):
                constants[k] = v
        for a in args:  # the tensors of a list argument (cat, stack) after the rest: positions stay the args'
            if isinstance(a, list | tuple):
                for t in a:
                    if isinstance(t, Tensor):
                        inputs.append(t.detach())
                        ids.append(id(t))
        site = call_site(self.skip_dirs)
        if site.startswith(_INPUT_FILES):
            return out
        copy = tensor.detach().clone() if tensor.is_floating_point() else tensor.detach()
        self.bytes += copy.numel() * copy.element_size()
        if self.bytes > self.max_bytes:
            self.full = True
        self.ops.append(Op(len(self.ops), name, qual, site, self.modules[-1] if self.modules
                           else "", inputs, ids, constants, copy, id(tensor), func, tuple(args), dict(kwargs),
                           out))
        return out


@dataclass
class Trace:
    ops: list[Op]
    truncated: bool = False
    error: str | None = None

    def by_output_id(self) -> dict[int, Op]:
        return {op.output_id: op for op in self.ops if op.output_id is not None}


@contextmanager
def tracing(model: nn.Module | None = None, *, max_bytes: int = 1 << 30,
            include_replica: bool = True) -> Iterator[Trace]:
    """Record every torch operation while the block runs (no gradients are needed). With `model`, each op
    also carries the path of the innermost of its submodules that was running. `include_replica=False` treats
    the bundled replica's own files like torch's (their frames are skipped when naming a call site)."""
    ops: list[Op] = []
    stack: list[str] = []
    handles = []
    if model is not None:
        for name, module in model.named_modules():
            if not name:
                continue

            def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
                stack.append(name)

            def post(_m: nn.Module, _a: Any, _o: Any, name: str = name) -> None:
                if stack and stack[-1] == name:
                    stack.pop()

            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post, always_call=True))
    skip = (_TORCH_DIR, _OWN_DIR, _ADAPTER_DIR) + (() if include_replica else (_REPLICA_DIR,))
    recorder = _Recorder(ops, stack, max_bytes, skip)
    trace = Trace(ops)
    try:
        with recorder:
            yield trace
    finally:
        for h in handles:
            h.remove()
        trace.truncated = recorder.full
        for op in ops:
            op.live = None  # ids were unique while recording; the outputs themselves are no longer needed
