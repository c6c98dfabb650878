"""The first divergent operation inside the root-cause level: operation traces of both forwards, the first
candidate operation whose value the original never produces, and its counterpart there.
"""

from __future__ import annotations

import inspect
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.compare.locate import Match, ValueIndex
from percepiano_parity.compare.metrics import compare
from percepiano_parity.compare.weight_mapping import WeightMap

# ----------------------------------------------------------------------------------------------------------
# Operation traces: every torch operation a forward calls, with its inputs, output, call site and module.
#
# A trace is what lets the diagnosis look *inside* a level: which operation first produces a value the
# original never produces, what it was given, and where in the source it sits. It is recorded with a
# `TorchFunctionMode` (every `torch.*` function, `Tensor` method and `nn.functional` call that reaches torch's
# function dispatch), so plain functions and inline code are seen as well as submodules.
#
# Outputs are kept as detached copies (a later in-place write must not change what was recorded), so a trace is
# meant for one small diagnosis batch, not for a whole audit; `max_bytes` stops recording once it is reached.

_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_OWN_DIR = str(Path(__file__).resolve().parents[1])  # percepiano_parity's stage folders
_REPLICA_DIR = str(Path(__file__).resolve().parents[2] / "replica")
_ADAPTER_DIR = str(Path(__file__).resolve().parents[2] / "original_adapter")
# the self-test's deliberate mistakes are model code, not the tool's: their lines are call sites
_MISTAKES = str(Path(__file__).resolve().parents[1] / "subjects" / "mistakes.py")
# operations made here prepare the model's input, they are not the model's: never recorded
_INPUT_FILES = (str(Path(__file__).resolve().parents[1] / "batches" / "canonical.py"),)
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


# ----------------------------------------------------------------------------------------------------------
# The first operation of the candidate whose value the original never produces, and its counterpart there.
#
# Given the original's trace (its forward on a diagnosis batch) and the candidate's trace (the root level run on
# the original's own inputs, or its forward), every candidate operation is looked up by value in the original's
# trace (`value_match`). The first divergent operation is the first one that computes new values (not a layout
# or selection operation), is found nowhere in the original's trace, and none of whose descendants is found
# either (so a different but equivalent order of computation is not a divergence). Its counterpart is the
# original's operation that consumes the same values: what the original does at that point instead.


@dataclass
class Divergence:
    op: Op  # the candidate's first divergent operation
    input_matches: dict[int, tuple[int, Match]] = field(default_factory=dict)  # input position -> (ref op, match)
    counterparts: list[Op] = field(default_factory=list)  # the original's ops consuming the same values
    compared: int = 0  # candidate operations looked up before it
    nearest: Match | None = None  # the original's value closest to its output


@dataclass
class TraceMatch:
    """Which candidate operations were found in the original's trace."""

    matched: dict[int, Match] = field(default_factory=dict)  # candidate op index -> match in the original
    known_ids: set[int] = field(default_factory=set)  # ids of candidate tensors with known values


def _consumers(trace: Trace) -> dict[int, list[Op]]:
    """Output id of an op -> later ops that take it as an input."""
    by_input: dict[int, list[Op]] = defaultdict(list)
    for op in trace.ops:
        for tid in op.input_ids:
            if tid is not None:
                by_input[tid].append(op)
    return by_input


# operations that read only their input's shape, dtype or device: no value flows through them
SHAPE_ONLY = frozenset({"new_zeros", "new_ones", "new_empty", "new_full", "zeros_like", "ones_like", "empty_like",
                        "full_like", "new_tensor"})


def _descendants(trace: Trace, start: Op) -> set[int]:
    consumers = _consumers(trace)
    seen: set[int] = set()
    frontier = [start]
    while frontier:
        op = frontier.pop()
        for nxt in consumers.get(op.output_id, ()) if op.output_id is not None else ():
            if nxt.index not in seen and nxt.index > op.index and nxt.name not in SHAPE_ONLY:
                seen.add(nxt.index)
                frontier.append(nxt)
    return seen


def _computing_consumers(op: Op, consumers: dict[int, list[Op]], depth: int = 6) -> list[Op]:
    """The first computing operations that take `op`'s value, looking through layout operations (a `view`
    before a softmax), nearest first."""
    out: list[Op] = []
    frontier, seen = [op], {op.index}
    for _ in range(depth):
        nxt: list[Op] = []
        for o in frontier:
            for c in consumers.get(o.output_id, ()) if o.output_id is not None else ():
                if c.index in seen:
                    continue
                seen.add(c.index)
                if c.computes:
                    out.append(c)
                else:
                    nxt.append(c)
        if not nxt:
            break
        frontier = nxt
    return sorted(out, key=lambda c: c.index)


def match_trace(reference: Trace, candidate: Trace, known: Iterable[Tensor]) -> tuple[ValueIndex, TraceMatch]:
    """Look every candidate output up in the original's trace; `known` are tensors whose values are given (the
    level's inputs, the parameters)."""
    index = ValueIndex((op.index, op.output) for op in reference.ops if op.output is not None)
    result = TraceMatch(known_ids={id(t) for t in known})
    for op in candidate.ops:
        out = op.output
        if out is None:
            continue
        if not out.is_floating_point():
            result.known_ids.add(op.output_id)
            continue
        found = index.find(out)
        if found and op.name not in SHAPE_ONLY and bool((out != out.flatten()[0]).any()):
            result.matched[op.index] = found[0]  # a constant (all zeros, say) matches anything: not evidence
            result.known_ids.add(op.output_id)
        elif found:
            result.known_ids.add(op.output_id)
        elif not op.computes and all(i is None or i in result.known_ids for i in op.input_ids):
            result.known_ids.add(op.output_id)  # a rearrangement or selection of known values
    return index, result


def first_divergent(reference: Trace, candidate: Trace, known: Iterable[Tensor],
                    matched: tuple[ValueIndex, TraceMatch] | None = None) -> Divergence | None:
    """The candidate's first divergent operation (see the module docstring), or None when every computing
    operation's value is found in the original's trace. `matched`: match_trace's result, when already made."""
    index, tm = matched if matched is not None else match_trace(reference, candidate, known)
    ref_by_index = {op.index: op for op in reference.ops}
    ref_consumers = _consumers(reference)
    for op in candidate.ops:
        if op.output is None or not op.output.is_floating_point() or op.index in tm.matched or not op.computes:
            continue
        if op.output.numel() < 2:
            continue
        if any(i is not None and i not in tm.known_ids for i in op.input_ids):
            continue  # downstream of something already unknown: not the first
        if _descendants(candidate, op) & set(tm.matched):
            continue  # an intermediate the original never materialises, but the result agrees
        div = Divergence(op, compared=op.index, nearest=index.nearest(op.output))
        for pos, t in enumerate(op.inputs):
            if t is None or not t.is_floating_point():
                continue
            found = index.find(t)
            if found:
                div.input_matches[pos] = (found[0].key, found[0])
                for consumer in _computing_consumers(ref_by_index[found[0].key], ref_consumers):
                    if consumer not in div.counterparts:
                        div.counterparts.append(consumer)
        return div
    return None


# ----------------------------------------------------------------------------------------------------------
# First divergent operation inside the root-cause level.
#
# Once the root-cause level is known, every leaf module the candidate calls while computing that level (teacher
# forced on the reference's recorded inputs) is recorded, paired with the reference module holding the same
# (mapped) weights, and compared with that module's output in the reference's own forward. The first module
# whose output departs, has another width, or exists on one side only is named.

OP_REL = 1e-5  # an op's own output: float noise of one module is ~1e-7 relative


@dataclass
class OpRecord:
    name: str
    type: str
    output: Tensor | None
    shape: list[int] = field(default_factory=list)
    input_kind: str = ""  # "packed" or "tensor": how the first input arrived


def _tensor_of(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output.detach().float().cpu()
    if isinstance(output, PackedSequence):
        return output.data.detach().float().cpu()
    if isinstance(output, tuple) and output:
        return _tensor_of(output[0])
    return None


def record_leaf_outputs(model: nn.Module, run: Callable[[], Any], only: set[str] | None = None) -> list[OpRecord]:
    """Leaf modules' first outputs during `run()`, in call order (optionally only the named modules)."""
    records: list[OpRecord] = []
    seen: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if not name or any(True for _ in module.children()):
            continue
        if only is not None and name not in only:
            continue

        def hook(m: nn.Module, inputs: Any, output: Any, name: str = name) -> None:
            if name in seen:
                return
            seen.add(name)
            t = _tensor_of(output)
            kind = "packed" if inputs and isinstance(inputs[0], PackedSequence) else "tensor"
            records.append(OpRecord(name, type(m).__name__, t, list(t.shape) if t is not None else [], kind))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return records


def _owner(param: str) -> str:
    return param.rsplit(".", 1)[0] if "." in param else ""


def first_divergent_op(reference: Any, candidate: Any, weight_map: WeightMap, level: str, batch: CanonicalBatch,
                       ref_inputs: dict[str, Tensor]) -> dict[str, Any]:
    """Name the first operation inside `level` that departs. Returns a JSON-able description."""
    if not hasattr(candidate, "run_level"):
        return {"available": False, "reason": "the candidate cannot be run one level at a time"}
    cand_ops = record_leaf_outputs(
        candidate.model, lambda: candidate.run_level(level, ref_inputs, batch))
    if not cand_ops:
        return {"available": False, "reason": f"level {level} calls no module on the candidate side"}
    module_map = {_owner(c): _owner(r) for r, c in weight_map.pairs.items()}
    # modules whose weights could not be mapped only because their shapes differ are still partners
    module_map.update({_owner(c): _owner(r) for r, c, _, _ in weight_map.shape_conflicts})
    wanted = {module_map[o.name] for o in cand_ops if o.name in module_map}
    ref_ops = {o.name: o for o in record_leaf_outputs(reference.model, lambda: reference.run(batch, grads=False),
                                                      only=wanted)} if wanted else {}
    cand_params = {n for n, _ in candidate.model.named_parameters()}
    compared = []
    for op in cand_ops:
        owns_params = any(p.startswith(op.name + ".") for p in cand_params)
        partner = module_map.get(op.name)
        if owns_params and partner is None:
            return _verdict(op, None, "only in the candidate", compared)
        if partner is None:
            compared.append({"op": op.name, "type": op.type, "status": "parameterless, not paired"})
            continue
        ref = ref_ops.get(partner)
        if ref is None or ref.output is None or op.output is None:
            compared.append({"op": op.name, "type": op.type, "status": "not observed on the reference side"})
            continue
        if ref.input_kind != op.input_kind:
            return _verdict(op, ref, f"receives a {'PackedSequence' if op.input_kind == 'packed' else 'padded tensor'} "
                            f"where the reference receives a "
                            f"{'PackedSequence' if ref.input_kind == 'packed' else 'padded tensor'}", compared)
        if ref.output.shape != op.output.shape:
            if ref.output.dim() == op.output.dim() and ref.output.shape[-1] != op.output.shape[-1]:
                return _verdict(op, ref, f"output width {op.output.shape[-1]} instead of {ref.output.shape[-1]}",
                                compared)
            compared.append({"op": op.name, "type": op.type, "status": "different layout (batched differently)"})
            continue
        d = compare(ref.output, op.output)
        if d.max_rel > OP_REL:
            return _verdict(op, ref, f"output differs by {d.max_rel:.3g} relative", compared,
                            {"max_abs": d.max_abs, "max_rel": d.max_rel})
        compared.append({"op": op.name, "type": op.type, "status": "equal", "max_rel": d.max_rel})
    return {"available": True, "op": None, "reason": "no single operation departs beyond "
            f"{OP_REL:g} relative; the level's own combination logic differs", "compared": compared}


def _verdict(op: OpRecord, ref: OpRecord | None, why: str, compared: list[dict[str, Any]],
             metrics: dict[str, float] | None = None) -> dict[str, Any]:
    return {
        "available": True, "op": op.name, "type": op.type, "reference_op": ref.name if ref else None,
        "reason": why, "candidate_shape": op.shape, "reference_shape": ref.shape if ref else None,
        "metrics": metrics or {}, "compared": compared,
    }
