"""First divergent operation inside the root-cause level.

Once the root-cause level is known, every leaf module the candidate calls while computing that level (teacher
forced on the reference's recorded inputs) is recorded, paired with the reference module holding the same
(mapped) weights, and compared with that module's output in the reference's own forward. The first module
whose output departs, has another width, or exists on one side only is named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from percepiano_parity.compare.mapping import WeightMap
from percepiano_parity.compare.metrics import compare
from percepiano_parity.replica.batch import CanonicalBatch

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
