"""Relations between two attention maps (softmax weights, (N, L, H)): normalised over another axis, or the same
scores at another temperature.

Both are measured from the weights alone. With weights w = softmax(s) along an axis, log w = s - lse(s), so:

* another axis: if the candidate normalises the same scores over axis a and the original over axis b, then
  log w_cand - log w_orig = lse_b(s) - lse_a(s), a sum of a term constant along a and one constant along b:
  the doubly centred difference vanishes. Which axis sums to one on each side names the axes.
* a temperature: log w_cand centred along the axis = k * (log w_orig centred along the axis), a single factor
  k over every item and head (the candidate's scores are k times the original's).
Only positions where both weights are positive count (masked padding has weight 0 on both sides).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from percepiano_parity.compare.locate import relative_residual
from percepiano_parity.compare.relations.result import Relation

AXIS_NAMES = {1: "time", 2: "heads"}
SUMS_TOL = 1e-4


def normalised_axes(w: Tensor) -> list[int]:
    """Axes along which every slice of `w` sums to one (only slices with any weight count)."""
    out = []
    for axis in range(1, w.dim()):
        sums = w.double().sum(axis)
        live = sums > 0
        if bool(live.any()) and float((sums[live] - 1).abs().max()) < SUMS_TOL:
            out.append(axis)
    return out


def _name(axis: int, w: Tensor) -> str:
    return f"axis {axis} ({AXIS_NAMES.get(axis, '?')}, size {w.shape[axis]})"


def normalisation_axis(level: str, ref: Tensor, cand: Tensor, tol: float) -> Relation:
    baseline = relative_residual(ref, cand)
    rel = Relation("normalisation_axis", level, False, baseline, baseline)
    if ref.shape != cand.shape or ref.dim() != 3:
        rel.summary = "the attention maps have different shapes"
        return rel
    ref_axes, cand_axes = normalised_axes(ref), normalised_axes(cand)
    rel.details = {"original_axes": ref_axes, "replica_axes": cand_axes}
    if not ref_axes or not cand_axes or set(ref_axes) & set(cand_axes):
        rel.summary = "both maps sum to one along the same axis"
        return rel
    a, b = cand_axes[0], ref_axes[0]
    both = (ref > 0) & (cand > 0)
    if not bool(both.all()):
        rel.residual = math.inf
        rel.summary = (f"the replica's weights sum to one along {_name(a, cand)}, the original's along "
                       f"{_name(b, ref)}; masked positions differ, so the scores cannot be compared")
        return rel
    d = cand.double().log() - ref.double().log()
    centred = d - d.mean(a, keepdim=True) - d.mean(b, keepdim=True) + d.mean((a, b), keepdim=True)
    scale = float(d.abs().max()) or 1.0
    residual = float(centred.abs().max()) / scale
    rel.holds, rel.residual = residual <= max(tol, 1e-5), residual
    rel.summary = (f"the replica normalises the same scores over {_name(a, cand)} where the original normalises "
                   f"over {_name(b, ref)} (log-weights differ by a sum of per-axis terms, residual {residual:.2g})")
    rel.details.update({"replica_axis": a, "original_axis": b})
    rel.fix = {"action": "softmax_axis", "level": level, "from_axis": a, "to_axis": b}
    return rel


def temperature(level: str, ref: Tensor, cand: Tensor, tol: float, axis: int = 1) -> Relation:
    baseline = relative_residual(ref, cand)
    rel = Relation("softmax_temperature", level, False, baseline, baseline)
    if ref.shape != cand.shape:
        rel.summary = "the attention maps have different shapes"
        return rel
    both = (ref > 0) & (cand > 0)
    if not bool(both.any()):
        rel.summary = "no position carries weight on both sides"
        return rel
    lr = torch.where(both, ref.double().clamp_min(1e-300).log(), torch.zeros((), dtype=torch.float64))
    lc = torch.where(both, cand.double().clamp_min(1e-300).log(), torch.zeros((), dtype=torch.float64))
    count = both.double().sum(axis, keepdim=True).clamp_min(1)
    cr = torch.where(both, lr - lr.sum(axis, keepdim=True) / count, torch.zeros((), dtype=torch.float64))
    cc = torch.where(both, lc - lc.sum(axis, keepdim=True) / count, torch.zeros((), dtype=torch.float64))
    denom = float((cr * cr).sum())
    if denom == 0:
        rel.summary = "the original's weights are uniform: no temperature can be measured"
        return rel
    k = float((cr * cc).sum()) / denom
    fitted = torch.softmax(torch.where(both, k * lr, torch.full((), -math.inf, dtype=torch.float64)), dim=axis)
    fitted = torch.nan_to_num(fitted)
    residual = relative_residual(fitted, cand.double())
    rel.holds = residual <= tol and abs(k - 1) > 1e-3
    rel.residual = residual
    rel.summary = (f"equals the original's with the scores multiplied by {k:.4g} before the softmax (a "
                   f"temperature of {1 / k:.4g})" if k else "the replica's weights are uniform")
    rel.details = {"factor": k, "temperature": 1 / k if k else math.inf, "axis": axis}
    rel.fix = {"action": "softmax_scale", "level": level, "factor": 1 / k if k else 1.0}
    return rel
