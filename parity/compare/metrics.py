"""Plain comparison functions: (reference, candidate[, mask]) -> numbers. Computed in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Diff:
    max_abs: float
    max_rel: float  # max_abs relative to the reference's largest magnitude
    cosine: float
    numel: int
    beyond: int  # elements with |diff| > threshold (when a threshold was given)
    ref_scale: float
    worst_index: tuple[int, ...]

    @property
    def share_beyond(self) -> float:
        return self.beyond / self.numel if self.numel else 0.0


def compare(ref: Tensor, cand: Tensor, mask: Tensor | None = None, threshold: float | None = None) -> Diff:
    """Differences of `cand` from `ref` over the positions where `mask` (broadcastable, leading dims) holds.

    Differences are taken in the wider of the two dtypes (float32 differences of float32 tensors are exact to
    half an ulp); sums for the cosine are accumulated in float64. Masked-out positions compare as 0 vs 0,
    whatever they hold (NaN included).
    """
    dtype = torch.float64 if torch.float64 in (ref.dtype, cand.dtype) else torch.float32
    a = ref.detach().to(dtype)
    b = cand.detach().to(dtype)
    if mask is not None:
        m = mask
        while m.dim() < a.dim():
            m = m.unsqueeze(-1)
        m = m.expand_as(a)
        numel = int(m.sum())
        zero = a.new_zeros(())
        a, b = torch.where(m, a, zero), torch.where(m, b, zero)
    else:
        numel = a.numel()
    if numel == 0:
        return Diff(0.0, 0.0, 1.0, 0, 0, 0.0, ())
    diff = (a - b).abs()
    flat_idx = int(diff.argmax())  # NaN wins argmax and max: one pass tells whether everything is finite
    max_abs = float(diff.view(-1)[flat_idx])
    if not math.isfinite(max_abs):
        finite = torch.isfinite(a) & torch.isfinite(b)
        nan = float("nan")
        fa = a[torch.isfinite(a)].abs()
        return Diff(nan, nan, nan, numel, int((~finite).sum()), float(fa.max()) if fa.numel() else 0.0, ())
    scale = float(a.abs().max())
    sums = torch.stack([(a * b).sum(dtype=torch.float64), (a * a).sum(dtype=torch.float64),
                        (b * b).sum(dtype=torch.float64)]).tolist()
    denom = math.sqrt(sums[1] * sums[2])
    cosine = sums[0] / denom if denom > 0 else (1.0 if max_abs == 0 else 0.0)
    beyond = int((diff > threshold).sum()) if threshold is not None else 0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return Diff(max_abs, rel, cosine, numel, beyond, scale, (flat_idx,))


def entropy_stats(weights: Tensor, mask: Tensor | None = None) -> dict[str, list[float]]:
    """Attention entropy per head. weights (N, L, H); each item's weights for one head sum to the number of
    softmax groups in it (1 for a pooling attention, one per segment for the hierarchy). The per-item mean
    entropy is sum(-w log w) / sum(w); mean/min/max are taken over items.
    """
    w = weights.detach().to(torch.float64)
    plogp = torch.where(w > 0, -w * torch.log(w.clamp_min(1e-300)), torch.zeros_like(w))
    groups = w.sum(dim=1)  # (N, H)
    per_item = plogp.sum(dim=1) / groups.clamp_min(1e-12)
    valid = groups > 0.5
    out: dict[str, list[float]] = {"mean": [], "min": [], "max": []}
    for h in range(w.shape[2]):
        vals = per_item[:, h][valid[:, h]]
        if vals.numel() == 0:
            vals = torch.zeros(1, dtype=torch.float64)
        out["mean"].append(float(vals.mean()))
        out["min"].append(float(vals.min()))
        out["max"].append(float(vals.max()))
    return out
