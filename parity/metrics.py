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
    """Differences of `cand` from `ref` over the positions where `mask` (broadcastable, leading dims) holds."""
    a = ref.detach().to(torch.float64)
    b = cand.detach().to(torch.float64)
    if mask is not None:
        m = mask
        while m.dim() < a.dim():
            m = m.unsqueeze(-1)
        m = m.expand_as(a)
        a, b = a[m], b[m]
    diff = (a - b).abs()
    if diff.numel() == 0:
        return Diff(0.0, 0.0, 1.0, 0, 0, 0.0, ())
    if not torch.isfinite(b).all() or not torch.isfinite(a).all():
        nan = float("nan")
        bad = int((~torch.isfinite(b)).sum() + (~torch.isfinite(a)).sum())
        finite = a[torch.isfinite(a)].abs()
        return Diff(nan, nan, nan, int(diff.numel()), bad, float(finite.max()) if finite.numel() else 0.0, ())
    flat_idx = int(diff.argmax())
    scale = float(a.abs().max())
    max_abs = float(diff.max())
    denom = float(a.norm() * b.norm())
    cosine = float((a * b).sum() / denom) if denom > 0 else (1.0 if max_abs == 0 else 0.0)
    beyond = int((diff > threshold).sum()) if threshold is not None else 0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return Diff(max_abs, rel, cosine, int(diff.numel()), beyond, scale, (flat_idx,))


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
