"""Relations at the first divergent operation, by replaying operations on the candidate's own values.

At the candidate's first divergent operation D (see compare.first_op), the original's operations Q that
consume the same values say what the original does there instead. Each relation is tested counterfactually:
D (or its input, or its output) is changed as the relation says, every later operation of the candidate's level
is replayed from the recorded trace, and the replayed level is compared with the original's level. A relation
holds when the level then equals the original's within tolerance; its residual is that level residual:

* different arguments: Q is the same function as D with other arguments (softmax over another `dim`, GELU
  with another `approximate`): D replayed with Q's arguments gives a value of the original's;
* different operation: D and Q are different functions of the same input (GELU vs ReLU): Q replayed on D's
  input gives Q's value, and D's is another;
* a missing operation: Q is an elementwise function the original applies before its next computation (a
  tanh, a scaling by 1/sqrt(d)): D replayed on Q(input) gives a value of the original's;
* an extra operation: D is one the original does not apply: the candidate's next operation replayed on D's
  input instead of D's output gives a value of the original's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from percepiano_parity.compare.first_op import Divergence, Op, Trace, place_constants
from percepiano_parity.compare.locate import ValueIndex, relative_residual
from percepiano_parity.compare.relations.result import Relation

ELEMENTWISE = frozenset({
    "tanh", "sigmoid", "relu", "gelu", "silu", "elu", "leaky_relu", "softplus", "mish", "hardtanh", "relu6",
    "exp", "log", "sqrt", "rsqrt", "abs", "neg", "mul", "div", "add", "sub", "true_divide", "__mul__",
    "__truediv__", "__add__", "__sub__", "__rmul__", "__radd__", "pow", "__pow__", "clamp", "square", "erf",
    "log_sigmoid", "softsign", "tanhshrink", "dropout", "selu", "celu", "glu", "hardswish", "hardsigmoid",
})

# reductions one replica may write where the original has another (a mean for a sum): judged by calling the
# original's function with the replica's own arguments (its dim is in the replica's layout)
REDUCTION_ORDER = ("sum", "mean", "amax", "amin", "prod", "logsumexp", "nansum", "nanmean")  # commonest first
REDUCTIONS = frozenset(REDUCTION_ORDER)


class Recorded:
    """The recorded value of every tensor as of a given operation: an id may name several values over time
    (a tensor written in place), so each lookup takes the last value produced before that operation."""

    def __init__(self, trace: Trace) -> None:
        self._by_id: dict[int, list[tuple[int, Tensor]]] = {}
        for op in trace.ops:
            if op.output_id is not None and op.output is not None:
                self._by_id.setdefault(op.output_id, []).append((op.index, op.output))
        self.at = 1 << 62  # lookups see values produced before this operation index

    def get(self, key: int, default: Any = None) -> Any:
        best = default
        for index, value in self._by_id.get(key, ()):
            if index >= self.at:
                break
            best = value
        return best


def _resolve(value: Any, values: Any, swap: dict[int, Tensor]) -> Any:
    if isinstance(value, Tensor):
        key = id(value)
        if key in swap:
            return swap[key]
        return values.get(key, value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)(_resolve(v, values, swap) for v in value)
    return value


def replay(op: Op, values: Any, swap: dict[int, Tensor] | None = None,
           constants: dict[str, Any] | None = None) -> Tensor | None:
    """`op` recomputed from recorded values (`values`: a Recorded, or a dict tensor id -> value), with tensors
    swapped by id and non-tensor arguments replaced (`constants`: positional index as a string, or keyword)."""
    if op.func is None:
        return None
    if isinstance(values, Recorded):
        values.at = op.index
    swap = swap or {}
    args = [_resolve(a, values, swap) for a in op.args]
    kwargs = {k: _resolve(v, values, swap) for k, v in op.kwargs.items()}
    place_constants(op.func, args, kwargs, dict(constants or {}))
    try:
        with torch.no_grad():
            out = op.func(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a replay that does not apply is just a relation that does not hold
        return None
    if isinstance(out, (tuple, list)):
        out = out[0] if out and isinstance(out[0], Tensor) else None
    return out if isinstance(out, Tensor) else None


def _at(values: Recorded, tensor: Tensor, index: int) -> Tensor:
    """The recorded value `tensor` had when operation `index` read it."""
    values.at = index
    return values.get(id(tensor), tensor)


def _values(trace: Trace) -> Recorded:
    return Recorded(trace)


def _tensor_inputs(op: Op) -> list[Tensor]:
    out = [a for a in op.args if isinstance(a, Tensor)] + [v for v in op.kwargs.values() if isinstance(v, Tensor)]
    return out


def _relation(kind: str, level: str, div: Divergence, original: Op | None, residual: float, tol: float,
              summary: str, details: dict[str, Any], fix: dict[str, Any] | None) -> Relation:
    baseline = div.nearest.residual if div.nearest is not None else float("inf")
    if fix is not None:
        fix = {**fix, "module": div.op.module}
    return Relation(kind, level, residual <= tol, residual, baseline, summary, details, op=div.op.label(),
                    op_site=div.op.site, original_op=original.label() if original else None,
                    original_site=original.site if original else None, fix=fix)


def _found(index: ValueIndex, value: Tensor | None, tol: float) -> float | None:
    """Residual of the closest equal value in the original's trace, or None."""
    if value is None or not value.is_floating_point():
        return None
    hit = index.find(value, rel=tol)
    return hit[0].residual if hit else None


def _changed_constants(mine: Op, theirs: Op) -> dict[str, Any]:
    keys = set(mine.constants) | set(theirs.constants)
    return {k: theirs.constants.get(k) for k in sorted(keys) if mine.constants.get(k) != theirs.constants.get(k)}


def _inplace(op: Op) -> bool:
    return op.name.endswith("_") and not op.name.startswith("__") or op.name in ("__setitem__", "__iadd__")


def replay_rest(candidate: Trace, start: int, values: Recorded, override: dict[int, Tensor]
                ) -> dict[int, Tensor]:
    """Every candidate operation from index `start` on recomputed, where any of its inputs was changed
    (`override`: tensor id -> new value, carried forward). Returns the changed values by tensor id."""
    new = dict(override)
    for op in candidate.ops[start:]:
        if op.output_id is None or op.output_id in override or not any(i in new for i in op.input_ids if i):
            continue
        swap = dict(new)
        if _inplace(op):  # never mutate a recorded value: work on a copy of the mutated argument
            first = next((a for a in op.args if isinstance(a, Tensor)), None)
            if first is not None:
                values.at = op.index
                swap[id(first)] = _resolve(first, values, new).clone()
        out = replay(op, values, swap=swap)
        if op.name == "__setitem__":
            first = next((a for a in op.args if isinstance(a, Tensor)), None)
            out = swap.get(id(first)) if first is not None else None
        if out is not None:
            new[op.output_id] = out
    return new


def operation_relations(level: str, div: Divergence, reference: Trace, candidate: Trace, index: ValueIndex,
                        tol: float, cand_value: Tensor | None = None, ref_value: Tensor | None = None
                        ) -> list[Relation]:
    """Every operation relation that could be tested at the divergence, holding ones first. Without the level's
    values, a relation's value is looked up in the original's trace instead of replayed to the level."""
    out: list[Relation] = []
    cand_values, d = _values(candidate), div.op
    d_inputs = _tensor_inputs(d)
    level_ids = _level_output_ids(candidate, cand_value)

    def judge(first_value: Tensor | None) -> float:
        """Residual of the level (replayed with D's output replaced by `first_value`) against the original's."""
        if first_value is None or d.output_id is None:
            return float("inf")
        if not level_ids or ref_value is None:
            found = _found(index, first_value, tol)
            return found if found is not None else float("inf")
        replayed = replay_rest(candidate, d.index + 1, cand_values, {d.output_id: first_value})
        value = next((replayed[i] for i in reversed(level_ids) if i in replayed), None)
        if value is None or value.shape != ref_value.shape:
            return float("inf")
        return relative_residual(ref_value, value.float())

    for q in div.counterparts:
        if q.name == d.name:
            changed = _changed_constants(d, q)
            if not changed:
                continue
            residual = judge(replay(d, cand_values, constants=changed))
            mine = {k: d.constants.get(k) for k in changed}
            said = ", ".join(f"{k}={mine[k]!r} where the original has {k}={v!r}" for k, v in changed.items())
            out.append(_relation(
                "different_arguments", level, div, q, residual, tol,
                f"{d.qualname} is called with {said}; with the original's arguments the level is the original's",
                {"function": d.qualname, "replica": mine, "original": changed},
                {"action": "patch_op", "site": d.site, "name": d.name, "constants": changed}))
        elif q.name in ELEMENTWISE and d_inputs:
            for position, x in enumerate(d_inputs):
                if not x.is_floating_point():
                    continue
                xv = _at(cand_values, x, d.index)
                qx = replay(q, {}, swap={id(t): xv for t in _tensor_inputs(q)[:1]})
                if qx is None or qx.numel() != xv.numel():
                    continue
                residual = judge(replay(d, cand_values, swap={id(x): qx.reshape(xv.shape)}))
                if not math.isfinite(residual):
                    continue
                args = {k: v for k, v in q.constants.items()}
                out.append(_relation(
                    "missing_op", level, div, q, residual, tol,
                    f"the original applies {q.qualname}{_args_text(args)} to this input before {d.qualname}; the "
                    f"replica leaves it out (with it, the level is the original's)",
                    {"missing": q.qualname, "arguments": args, "before": d.qualname},
                    {"action": "patch_op_input", "site": d.site, "name": d.name, "apply": q.name,
                     "constants": args, "input_position": position}))
                break
    if d.name in REDUCTIONS and d_inputs:
        # another reduction of the same values: the original's counterpart, or, when the original's trace holds
        # no counterpart of this input (it reduces another layout of it), each other reduction in turn
        names = [q.name for q in div.counterparts if q.name in REDUCTIONS] or list(REDUCTION_ORDER)
        for name in dict.fromkeys(n for n in names if n != d.name):
            other = _same_kind_function(d, name)
            if other is None:
                continue
            residual = judge(replay(dataclasses.replace(d, func=other), cand_values))
            q = next((c for c in div.counterparts if c.name == name), None)
            if math.isfinite(residual) and (q is not None or residual <= tol):
                said = q.qualname if q is not None else f"{d.qualname.split('.')[0]}.{name}"
                out.append(_relation(
                    "different_op", level, div, q, residual, tol,
                    f"the replica applies {d.qualname}{_args_text(d.constants)} where the original reduces with "
                    f"{said} (with {name} in its place, the level is the original's)",
                    {"replica": d.qualname, "original": said},
                    {"action": "patch_op", "site": d.site, "name": d.name, "replace_with": name,
                     "constants": dict(d.constants)}))
    if d.name in ELEMENTWISE and d_inputs:
        # the replica applies d where the original applies another function (or nothing) to the same input
        x = d_inputs[0]
        xv = _at(cand_values, x, d.index)
        for q in div.counterparts:
            if q.name in ELEMENTWISE and q.name != d.name:
                qx = replay(q, {}, swap={id(t): xv for t in _tensor_inputs(q)[:1]})
                residual = judge(qx.reshape(d.output.shape) if qx is not None and d.output is not None
                                 and qx.numel() == d.output.numel() else None)
                if math.isfinite(residual):
                    out.append(_relation(
                        "different_op", level, div, q, residual, tol,
                        f"the replica applies {d.qualname}{_args_text(d.constants)} where the original applies "
                        f"{q.qualname}{_args_text(q.constants)} to the same input",
                        {"replica": d.qualname, "original": q.qualname},
                        {"action": "patch_op", "site": d.site, "name": d.name, "replace_with": q.name,
                         "constants": dict(q.constants)}))
        if d.output is not None and xv.shape == d.output.shape:
            residual = judge(xv)
            out.append(_relation(
                "extra_op", level, div, None, residual, tol,
                f"the replica applies {d.qualname}{_args_text(d.constants)}, which the original does not "
                f"(without it, the level is the original's)",
                {"extra": d.qualname, "arguments": dict(d.constants)},
                {"action": "patch_op", "site": d.site, "name": d.name, "identity": True}))
    out.sort(key=lambda r: (not r.holds, r.residual))
    return out


def _same_kind_function(op: Op, name: str) -> Any:
    """The function `name` called the way `op` was (a Tensor method for a method call, torch's otherwise)."""
    owner = torch.Tensor if op.qualname.startswith("Tensor.") else torch
    return getattr(owner, name, None)


def _level_output_ids(candidate: Trace, value: Tensor | None) -> list[int]:
    """Ids of the candidate operations whose output is the level's value (its producer and any copies of it,
    in call order: a copy made outside the trace's reach is not replayed, its producer is)."""
    if value is None:
        return []
    return [op.output_id for op in candidate.ops if op.output_id is not None and op.output is not None
            and op.output.shape == value.shape and op.output.is_floating_point()
            and torch.equal(op.output.float(), value.float())]


def _args_text(constants: dict[str, Any]) -> str:
    """Non-tensor arguments as a call would show them: (2.828, dim=1)."""
    def show(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else repr(v)
    positional = [show(v) for k, v in sorted(constants.items(), key=lambda kv: kv[0]) if k.isdigit() and k != "0"]
    keywords = [f"{k}={show(v)}" for k, v in constants.items() if not k.isdigit() and k != "inplace" or v is True]
    shown = positional + [k for k in keywords if not k.startswith("inplace=False")]
    return "(" + ", ".join(shown) + ")" if shown else ""


def nearest_residual(value: Tensor, index: ValueIndex) -> float:
    hit = index.nearest(value)
    return hit.residual if hit is not None else float("inf")


__all__ = ["operation_relations", "replay", "relative_residual"]
