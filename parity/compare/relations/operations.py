"""Relations at the first divergent operation, by replaying operations on the candidate's own values.

At the candidate's first divergent operation D (see compare.op_divergence), the original's operations Q that
consume the same values say what the original does there instead. Each relation is tested by recomputing with
the recorded operations and looking the result up in the original's trace:

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

from typing import Any

import torch
from torch import Tensor

from percepiano_parity.compare.op_divergence import Divergence
from percepiano_parity.compare.op_trace import Op, Trace
from percepiano_parity.compare.relations.result import Relation
from percepiano_parity.compare.value_match import ValueIndex, relative_residual

ELEMENTWISE = frozenset({
    "tanh", "sigmoid", "relu", "gelu", "silu", "elu", "leaky_relu", "softplus", "mish", "hardtanh", "relu6",
    "exp", "log", "sqrt", "rsqrt", "abs", "neg", "mul", "div", "add", "sub", "true_divide", "__mul__",
    "__truediv__", "__add__", "__sub__", "__rmul__", "__radd__", "pow", "__pow__", "clamp", "square", "erf",
    "log_sigmoid", "softsign", "tanhshrink", "dropout", "selu", "celu", "glu", "hardswish", "hardsigmoid",
})


def _resolve(value: Any, values: dict[int, Tensor], swap: dict[int, Tensor]) -> Any:
    if isinstance(value, Tensor):
        key = id(value)
        if key in swap:
            return swap[key]
        return values.get(key, value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)(_resolve(v, values, swap) for v in value)
    return value


def replay(op: Op, values: dict[int, Tensor], swap: dict[int, Tensor] | None = None,
           constants: dict[str, Any] | None = None) -> Tensor | None:
    """`op` recomputed from recorded values (`values`: tensor id -> recorded value), with tensors swapped by id
    and non-tensor arguments replaced (`constants`: positional index as a string, or keyword)."""
    if op.func is None:
        return None
    swap = swap or {}
    args = [_resolve(a, values, swap) for a in op.args]
    kwargs = {k: _resolve(v, values, swap) for k, v in op.kwargs.items()}
    for key, value in (constants or {}).items():
        if key.isdigit() and int(key) < len(args):
            args[int(key)] = value
        else:
            kwargs[key] = value
    try:
        with torch.no_grad():
            out = op.func(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a replay that does not apply is just a relation that does not hold
        return None
    if isinstance(out, (tuple, list)):
        out = out[0] if out and isinstance(out[0], Tensor) else None
    return out if isinstance(out, Tensor) else None


def _values(trace: Trace) -> dict[int, Tensor]:
    return {op.output_id: op.output for op in trace.ops if op.output_id is not None and op.output is not None}


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


def operation_relations(level: str, div: Divergence, reference: Trace, candidate: Trace, index: ValueIndex,
                        tol: float) -> list[Relation]:
    """Every operation relation that could be tested at the divergence, holding ones first."""
    out: list[Relation] = []
    cand_values, d = _values(candidate), div.op
    d_inputs = _tensor_inputs(d)
    for q in div.counterparts:
        if q.name == d.name:
            changed = _changed_constants(d, q)
            if not changed:
                continue
            value = replay(d, cand_values, constants=changed)
            residual = _found(index, value, tol)
            mine = {k: d.constants.get(k) for k in changed}
            said = ", ".join(f"{k}={mine[k]!r} where the original has {k}={v!r}" for k, v in changed.items())
            out.append(_relation(
                "different_arguments", level, div, q, residual if residual is not None else float("inf"), tol,
                f"{d.qualname} is called with {said}; with the original's arguments it gives the original's value",
                {"function": d.qualname, "replica": mine, "original": changed},
                {"action": "patch_op", "site": d.site, "name": d.name, "constants": changed}))
        elif q.name in ELEMENTWISE and len(_tensor_inputs(q)) >= 1 and d_inputs:
            for position, x in enumerate(d_inputs):
                if not x.is_floating_point():
                    continue
                xv = cand_values.get(id(x), x)
                qx = replay(q, {}, swap={id(t): xv for t in _tensor_inputs(q)[:1]})
                if qx is None or qx.numel() != xv.numel():
                    continue
                value = replay(d, cand_values, swap={id(x): qx.reshape(xv.shape)})
                residual = _found(index, value, tol)
                if residual is None:
                    continue
                args = {k: v for k, v in q.constants.items()}
                out.append(_relation(
                    "missing_op", level, div, q, residual, tol,
                    f"the original applies {q.qualname}{_args_text(args)} to this input before {d.qualname}; the "
                    f"replica leaves it out (with it, the replica's value is the original's)",
                    {"missing": q.qualname, "arguments": args, "before": d.qualname},
                    {"action": "patch_op_input", "site": d.site, "name": d.name, "apply": q.name,
                     "constants": args, "input_position": position}))
                break
    if d.name in ELEMENTWISE and len(d_inputs) >= 1:
        # the replica applies d where the original applies another function (or nothing) to the same input
        x = d_inputs[0]
        xv = cand_values.get(id(x), x)
        for q in div.counterparts:
            if q.name in ELEMENTWISE and q.name != d.name:
                qx = replay(q, {}, swap={id(t): xv for t in _tensor_inputs(q)[:1]})
                residual = _found(index, qx, tol) if qx is not None else None
                if residual is not None:
                    out.append(_relation(
                        "different_op", level, div, q, residual, tol,
                        f"the replica applies {d.qualname}{_args_text(d.constants)} where the original applies "
                        f"{q.qualname}{_args_text(q.constants)} to the same input",
                        {"replica": d.qualname, "original": q.qualname},
                        {"action": "patch_op", "site": d.site, "name": d.name, "replace_with": q.name,
                         "constants": dict(q.constants)}))
        consumers = [op for op in candidate.ops if op.index > d.index and d.output_id in op.input_ids]
        for nxt in consumers[:1]:
            value = replay(nxt, cand_values, swap={d.output_id: xv} if d.output_id is not None else {})
            residual = _found(index, value, tol)
            if residual is not None:
                out.append(_relation(
                    "extra_op", level, div, None, residual, tol,
                    f"the replica applies {d.qualname}{_args_text(d.constants)}, which the original does not "
                    f"(without it, the next operation gives the original's value)",
                    {"extra": d.qualname, "arguments": dict(d.constants)},
                    {"action": "patch_op", "site": d.site, "name": d.name, "identity": True}))
    out.sort(key=lambda r: (not r.holds, r.residual))
    return out


def _args_text(constants: dict[str, Any]) -> str:
    shown = {k: v for k, v in constants.items() if not k.isdigit() or k != "0"}
    return "(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")" if shown else ""


def nearest_residual(value: Tensor, index: ValueIndex) -> float:
    hit = index.nearest(value)
    return hit.residual if hit is not None else float("inf")


__all__ = ["operation_relations", "replay", "relative_residual"]
