"""LSTM gate order: a hand-written LSTM whose 4H gate rows are read in another order than PyTorch's (i, f, g, o).

With the original's weights copied in, such a cell computes something else; permuting the copied weights'
gate blocks makes it compute the original's values again. The 24 orders are tried on the weights of each
LSTM-like module of the level that is not a torch LSTM (a torch LSTM always reads i, f, g, o).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from percepiano_parity.compare.relations.result import Relation
from percepiano_parity.compare.value_match import relative_residual

TORCH_ORDER = "ifgo"


def lstm_like(model: nn.Module, names: set[str]) -> list[str]:
    """Modules among `names` (and their parents' children) holding LSTM gate weights but not a torch RNN."""
    out = []
    for name, module in model.named_modules():
        if name not in names or isinstance(module, nn.RNNBase):
            continue
        w = getattr(module, "weight_ih_l0", None)
        if isinstance(w, Tensor) and w.dim() == 2 and w.shape[0] % 4 == 0:
            out.append(name)
    return out


def _gate_params(module: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in module.named_parameters(recurse=False)
            if n.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh"))]


def permute_rows(t: Tensor, order: tuple[int, ...]) -> Tensor:
    return torch.cat([t.chunk(4, dim=0)[i] for i in order], dim=0)


def gate_order(level: str, model: nn.Module, module_name: str, ref: Tensor, run: Callable[[], Tensor],
               tol: float) -> Relation:
    """Try every order of the gate blocks on `module_name`'s weights; `run()` computes the level."""
    module = model.get_submodule(module_name)
    params = _gate_params(module)
    saved = [p.detach().clone() for p in params]
    baseline = relative_residual(ref, run())
    best: tuple[float, tuple[int, ...]] | None = None
    try:
        for order in itertools.permutations(range(4)):
            if order == (0, 1, 2, 3):
                continue
            with torch.no_grad():
                for p, s in zip(params, saved, strict=True):
                    p.copy_(permute_rows(s, order))
            residual = relative_residual(ref, run())
            if best is None or residual < best[0]:
                best = (residual, order)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
    rel = Relation("lstm_gate_order", level, False, baseline, baseline)
    if best is None:
        return rel
    residual, order = best
    reads = "".join(TORCH_ORDER[i] for i in order)
    rel.holds, rel.residual = residual <= tol, residual
    rel.summary = (f"the replica's LSTM {module_name} reads its 4H gate rows as {', '.join(reads)} where PyTorch's "
                   f"(and the original's) order is {', '.join(TORCH_ORDER)}: with the copied weights' gate blocks "
                   f"reordered, it computes the original's values")
    rel.details = {"module": module_name, "replica_order": reads, "torch_order": TORCH_ORDER, "blocks": list(order)}
    rel.fix = {"action": "permute_gate_rows", "module": module_name, "blocks": list(order)}
    rel.op = module_name
    return rel
