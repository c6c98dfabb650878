"""Layout relations at a level: the same values in other feature columns, batch items, time order, or LSTM
gate rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from percepiano_parity.compare.locate import relative_residual
from percepiano_parity.compare.relations.result import Relation, blocks_of, describe_blocks

# ----------------------------------------------------------------------------------------------------------
# Layout relations at a level: the same values, but in other feature columns, other batch items, or reversed
# in time within each item's length (on all or part of the channels).
#
# Each test takes the original's level value `ref` and the candidate's `cand` computed from the original's own
# inputs (same shape), and returns a Relation with the residual left after undoing the layout change.


def _pair(ref_cols: Tensor, cand_cols: Tensor, tol: float) -> list[int] | None:
    """For each candidate column (of (M, F)) the original's column with the same values, as a bijection, or None.

    Columns are paired through a random projection: two columns within `tol` (relative to the largest
    magnitude) element by element project within ||w||_1 * tol * scale of each other, so only the original's
    columns in that window are compared element by element.
    """
    g = torch.Generator().manual_seed(0)
    w = torch.randn(ref_cols.shape[0], generator=g, dtype=torch.float64)
    r64, c64 = ref_cols.double(), cand_cols.double()
    sig_r, sig_c = r64.T @ w, c64.T @ w
    scale = max(float(r64.abs().max()), float(c64.abs().max())) or 1.0
    eps = float(w.abs().sum()) * tol * scale
    order = torch.argsort(sig_r)
    sorted_r = sig_r[order]
    used: set[int] = set()
    perm: list[int] = []
    for j in range(c64.shape[1]):
        lo = int(torch.searchsorted(sorted_r, (sig_c[j] - eps).unsqueeze(0)).item())
        hi = int(torch.searchsorted(sorted_r, (sig_c[j] + eps).unsqueeze(0), right=True).item())
        found = None
        for k in range(lo, hi):
            i = int(order[k])
            if i not in used and float((r64[:, i] - c64[:, j]).abs().max()) <= tol * scale:
                found = i
                break
        if found is None:
            return None
        used.add(found)
        perm.append(found)
    return perm


def feature_permutation(level: str, ref: Tensor, cand: Tensor, tol: float) -> Relation:
    """cand[..., j] == ref[..., perm[j]] for a permutation of the last (feature) dimension."""
    baseline = relative_residual(ref, cand)
    rel = Relation("feature_permutation", level, False, baseline, baseline)
    if ref.shape != cand.shape or ref.shape[-1] < 2:
        rel.summary = "shapes differ" if ref.shape != cand.shape else "a single feature"
        return rel
    r2, c2 = ref.reshape(-1, ref.shape[-1]), cand.reshape(-1, cand.shape[-1])
    perm = _pair(r2, c2, tol)
    if perm is None or perm == list(range(len(perm))):
        rel.summary = "no permutation of the feature columns reproduces the original's"
        return rel
    residual = relative_residual(ref[..., perm], cand)
    runs = blocks_of(perm)
    rel.holds, rel.residual = residual <= tol, residual
    rel.summary = f"equals the original's with {describe_blocks(runs)}"
    rel.details = {"blocks": [list(r) for r in runs if r[0] != r[2]], "width": ref.shape[-1]}
    inverse = [0] * len(perm)
    for j, i in enumerate(perm):
        inverse[i] = j
    rel.fix = {"action": "permute_level_output", "level": level, "blocks": [list(r) for r in blocks_of(inverse)]}
    return rel


def length_order(lengths: Tensor, descending: bool = True) -> list[int]:
    return torch.sort(lengths, descending=descending, stable=True).indices.tolist()


def item_permutation(level: str, ref: Tensor, cand: Tensor, tol: float, lengths: Tensor) -> Relation:
    """cand[k] == ref[perm[k]]: batch items in another order (e.g. sorted by length and never restored)."""
    baseline = relative_residual(ref, cand)
    rel = Relation("item_permutation", level, False, baseline, baseline)
    n = ref.shape[0]
    if ref.shape != cand.shape or n < 2:
        rel.summary = "shapes differ" if ref.shape != cand.shape else "a single item"
        return rel
    perm = _pair(ref.reshape(n, -1).T, cand.reshape(n, -1).T, tol)
    if perm is None or perm == list(range(n)):
        rel.summary = "no reordering of the batch items reproduces the original's"
        return rel
    residual = relative_residual(ref[perm], cand)
    rel.holds, rel.residual = residual <= tol, residual
    how = "explicit"
    lens = lengths.tolist()
    for name, desc in (("length_desc", True), ("length_asc", False)):
        if [lens[i] for i in perm] == sorted(lens, reverse=desc):
            how = name
    said = {"length_desc": "sorted by length, longest first, and never put back in batch order",
            "length_asc": "sorted by length, shortest first, and never put back in batch order",
            "explicit": f"in the order {perm}"}[how]
    rel.summary = f"equals the original's with the batch items {said}"
    rel.details = {"permutation": perm, "order": how, "lengths": lens}
    if how != "explicit":
        rel.fix = {"action": "reorder_level_items", "level": level, "order": how}
    return rel


def time_reversal(level: str, ref: Tensor, cand: Tensor, tol: float, lengths: Tensor) -> Relation:
    """cand[b, t, c] == ref[b, L_b - 1 - t, c] for t < L_b on some channels c, the others unchanged."""
    baseline = relative_residual(ref, cand)
    rel = Relation("time_reversal", level, False, baseline, baseline)
    if ref.shape != cand.shape or ref.dim() != 3 or ref.shape[1] != int(lengths.max()):
        rel.summary = "not a note-space level" if ref.shape == cand.shape else "shapes differ"
        return rel
    flipped = torch.zeros_like(ref)
    for b, length in enumerate(lengths.tolist()):
        flipped[b, :length] = ref[b, :length].flip(0)
    scale = float(ref.abs().max()) or 1.0
    direct = (cand.double() - ref.double()).abs().amax(dim=(0, 1)) / scale
    reversed_ = (cand.double() - flipped.double()).abs().amax(dim=(0, 1)) / scale
    use_flip = reversed_ < direct
    if not bool(use_flip.any()):
        rel.summary = "no channel is the original's reversed in time"
        return rel
    fixed = torch.where(use_flip, flipped, ref)
    residual = relative_residual(fixed, cand)
    spans = _spans(use_flip.tolist())
    rel.holds, rel.residual = residual <= tol, residual
    if not rel.holds:
        rel.summary = f"reversing the channels that fit best in time still leaves {residual:.2g} relative"
        return rel
    what = "all channels" if bool(use_flip.all()) else "channels " + ", ".join(f"[{s}:{e}]" for s, e in spans)
    rel.summary = f"equals the original's with {what} reversed in time within each item's length"
    rel.details = {"channels": [list(s) for s in spans], "width": ref.shape[-1]}
    rel.fix = {"action": "reverse_level_time", "level": level, "channels": [list(s) for s in spans]}
    return rel


def _spans(flags: list[bool]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i, f in enumerate(flags):
        if f and out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        elif f:
            out.append((i, i + 1))
    return out


# ----------------------------------------------------------------------------------------------------------
# LSTM gate order: a hand-written LSTM whose 4H gate rows are read in another order than PyTorch's (i, f, g, o).
#
# With the original's weights copied in, such a cell computes something else; permuting the copied weights'
# gate blocks makes it compute the original's values again. The 24 orders are tried on the weights of each
# LSTM-like module of the level that is not a torch LSTM (a torch LSTM always reads i, f, g, o).

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
