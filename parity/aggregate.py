"""Streaming aggregates: per-level, per-gradient and per-attention statistics folded batch by batch.

Memory stays flat in the number of batches: each batch's taps are compared, folded in here, and dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from parity.levels import LEVEL_SPACE, Space
from parity.metrics import compare, entropy_stats


def _nanmax(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


@dataclass
class DiffAgg:
    """Max-type statistics of one compared quantity across batches."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    cosine: float = 1.0
    beyond: int = 0
    numel: int = 0
    threshold: float = 0.0  # the largest threshold used (for the report)
    batches: int = 0
    shape_mismatch: tuple[list[int], list[int]] | None = None
    first_bad_batch: int | None = None

    def fold(self, ref: Tensor, cand: Tensor, mask: Tensor | None, threshold: float, batch_index: int) -> None:
        self.batches += 1
        if ref.shape != cand.shape:
            if self.shape_mismatch is None:
                self.shape_mismatch = (list(ref.shape), list(cand.shape))
                self.first_bad_batch = batch_index
            return
        d = compare(ref, cand, mask, threshold)
        self.max_abs = _nanmax(self.max_abs, d.max_abs)
        self.max_rel = _nanmax(self.max_rel, d.max_rel)
        self.cosine = min(self.cosine, d.cosine) if not math.isnan(d.cosine) else math.nan
        self.beyond += d.beyond if not math.isnan(d.max_abs) else d.numel
        self.numel += d.numel
        self.threshold = max(self.threshold, threshold)
        if (d.beyond or math.isnan(d.max_abs)) and self.first_bad_batch is None:
            self.first_bad_batch = batch_index

    @property
    def exceeded(self) -> bool:
        return self.shape_mismatch is not None or self.beyond > 0 or math.isnan(self.max_abs)

    @property
    def share_beyond(self) -> float:
        return self.beyond / self.numel if self.numel else 0.0


@dataclass
class LevelAgg:
    level: str
    real: DiffAgg = field(default_factory=DiffAgg)
    padded: DiffAgg = field(default_factory=DiffAgg)
    local: DiffAgg | None = None
    local_note: str = ""  # why local error is unavailable
    floor_abs: float = 0.0
    floor_rel: float = 0.0
    ref_dtype: str = ""
    cand_dtype: str = ""


def real_mask(level: str, ref: Tensor, cand: Tensor, lengths: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """(real, padded) position masks over the leading (N, L) dims of a level, or (None, None) when pooled."""
    space = LEVEL_SPACE.get(level, Space.POOLED)
    if ref.dim() < 3:
        return None, None
    length = ref.shape[1]
    if space == Space.NOTE:
        real = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
        return real, ~real
    if ref.shape == cand.shape:
        real = (ref != 0).any(-1) | (cand != 0).any(-1)
    else:
        real = (ref != 0).any(-1)
    return real, None


@dataclass
class AttentionAgg:
    name: str
    heads: int = 0
    ref: dict[str, list[float]] = field(default_factory=dict)
    cand: dict[str, list[float]] = field(default_factory=dict)
    diff: DiffAgg = field(default_factory=DiffAgg)
    batches: int = 0

    def fold(self, ref_w: Tensor | None, cand_w: Tensor | None, threshold: float, batch_index: int) -> None:
        self.batches += 1
        for side, w in (("ref", ref_w), ("cand", cand_w)):
            if w is None:
                continue
            stats = entropy_stats(w)
            acc = getattr(self, side)
            if not acc:
                acc.update({k: list(v) for k, v in stats.items()})
                acc["_n"] = [1.0]
            else:
                n = acc["_n"][0]
                acc["mean"] = [(m * n + s) / (n + 1) for m, s in zip(acc["mean"], stats["mean"], strict=False)]
                acc["min"] = [min(a, b) for a, b in zip(acc["min"], stats["min"], strict=False)]
                acc["max"] = [max(a, b) for a, b in zip(acc["max"], stats["max"], strict=False)]
                acc["_n"] = [n + 1]
            self.heads = max(self.heads, w.shape[-1])
        if ref_w is not None and cand_w is not None:
            self.diff.fold(ref_w, cand_w, None, threshold, batch_index)
