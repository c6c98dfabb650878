"""Streaming aggregates: per-level, per-gradient and per-attention statistics folded batch by batch.

Memory stays flat in the number of batches: each batch's taps are compared, folded in here, and dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.compare.metrics import compare, entropy_stats
from percepiano_parity.core.levels import LEVEL_SPACE, Space


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
    threshold_rel: float = 0.0  # the largest threshold relative to its batch's reference magnitude
    batches: int = 0
    shape_mismatch: tuple[list[int], list[int]] | None = None
    first_bad_batch: int | None = None

    def fold(self, ref: Tensor, cand: Tensor, mask: Tensor | None, threshold: float, batch_index: int) -> bool:
        """Fold one batch; True when this batch differs beyond `threshold` (or in shape, or not finite)."""
        self.batches += 1
        if ref.shape != cand.shape:
            if self.shape_mismatch is None:
                self.shape_mismatch = (list(ref.shape), list(cand.shape))
                self.first_bad_batch = batch_index
            return True
        d = compare(ref, cand, mask, threshold)
        self.max_abs = _nanmax(self.max_abs, d.max_abs)
        self.max_rel = _nanmax(self.max_rel, d.max_rel)
        self.cosine = min(self.cosine, d.cosine) if not math.isnan(d.cosine) else math.nan
        self.beyond += d.beyond if not math.isnan(d.max_abs) else d.numel
        self.numel += d.numel
        self.threshold = max(self.threshold, threshold)
        if d.ref_scale > 0:
            self.threshold_rel = max(self.threshold_rel, threshold / d.ref_scale)
        bad = bool(d.beyond) or math.isnan(d.max_abs)
        if bad and self.first_bad_batch is None:
            self.first_bad_batch = batch_index
        return bad

    @property
    def exceeded(self) -> bool:
        return self.shape_mismatch is not None or self.beyond > 0 or math.isnan(self.max_abs)

    @property
    def share_beyond(self) -> float:
        return self.beyond / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class BatchProfile:
    """What the original's own rules make of one batch's note locations (cheap, computed once per batch).

    `span_counts` are the original's note counts for spanning beats/measures back to notes (argmin of the
    first difference of the zero-padded numbers, + 1; 1 meaning the whole row), `first_group` marks each
    item's notes in its first beat/measure, `number_gap` says whether any item's beat or measure number
    jumps by more than 1 (or falls) between consecutive real notes.
    """

    lengths: Tensor  # (N,)
    longest: Tensor  # (N,) bool: the item is as long as the batch's longest
    span_counts: dict[str, Tensor]  # "beat" / "measure" -> (N,)
    first_group: dict[str, Tensor]  # "beat" / "measure" -> (N, T) bool
    number_gap: bool


def _span_counts(numbers: Tensor) -> Tensor:
    n, length = numbers.shape
    if length < 2:
        return torch.full((n,), length, dtype=torch.long)
    counts = torch.min(torch.diff(numbers, dim=1), dim=1).indices + 1
    return torch.where(counts == 1, torch.full_like(counts, length), counts)


def batch_profile(batch: CanonicalBatch) -> BatchProfile:
    lengths = torch.tensor(batch.lengths, dtype=torch.long)
    t = int(lengths.max())
    real = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    counts, first, gap = {}, {}, False
    for key in ("beat", "measure"):
        rows = [s.location(key).long() for s in batch.segments]
        numbers = torch.zeros(len(rows), t, dtype=torch.long)
        for i, r in enumerate(rows):
            numbers[i, : r.numel()] = r
            steps = torch.diff(r)
            gap = gap or bool(((steps > 1) | (steps < 0)).any())
        counts[key] = _span_counts(numbers)
        first[key] = (numbers == numbers[:, :1]) & real
    return BatchProfile(lengths, lengths == lengths.max(), counts, first, gap)


@dataclass
class PatternAgg:
    """Where a level's mismatches sit: which items, which rows, which batches (evidence for diagnosis).

    A row is one note (note space), one node (beat/measure space) or one item (pooled levels); it is bad
    when any of its channels differs beyond the threshold used for the level.
    """

    rows_bad: int = 0
    rows_bad_ref_zero: int = 0  # bad rows where the reference's row is exactly zero
    rows_bad_after_span_count: int = 0  # bad note rows at or after the original's span note count
    items_bad: int = 0
    items_bad_first_group: int = 0  # bad items with a bad note in their first beat (measure for measure levels)
    items_bad_first_row: int = 0  # bad items whose very first row differs
    longest_items: int = 0
    longest_items_bad: int = 0
    shorter_items: int = 0
    shorter_items_bad: int = 0
    batches: int = 0
    batches_bad: int = 0
    batches_with_gap: int = 0
    batches_bad_with_gap: int = 0

    def fold(self, level: str, ref: Tensor, cand: Tensor, real: Tensor | None, threshold: float,
             profile: BatchProfile) -> None:
        self.batches += 1
        self.batches_with_gap += int(profile.number_gap)
        if ref.shape != cand.shape or ref.shape[0] != profile.lengths.numel():
            self.batches_bad += 1
            self.batches_bad_with_gap += int(profile.number_gap)
            return
        a, b = ref.detach().to(torch.float64), cand.detach().to(torch.float64)
        beyond = ((a - b).abs() > threshold) | ~torch.isfinite(b)
        if a.dim() == 2:  # pooled: one row per item
            item_bad = beyond.any(-1)
            self.rows_bad += int(item_bad.sum())
        else:
            rows = beyond.reshape(a.shape[0], a.shape[1], -1).any(-1)
            if real is not None:
                rows = rows & real
            item_bad = rows.any(1)
            self.rows_bad += int(rows.sum())
            self.rows_bad_ref_zero += int((rows & (a == 0).reshape(a.shape[0], a.shape[1], -1).all(-1)).sum())
            note_space = LEVEL_SPACE.get(level) == Space.NOTE and a.shape[1] == int(profile.lengths.max())
            self.items_bad_first_row += int((rows[:, 0] & item_bad).sum())
            if note_space:
                key = "measure" if level.startswith("measure") else "beat"
                after = torch.arange(a.shape[1]).unsqueeze(0) >= profile.span_counts[key].unsqueeze(1)
                self.rows_bad_after_span_count += int((rows & after).sum())
                self.items_bad_first_group += int((rows & profile.first_group[key]).any(1).sum())
        self.items_bad += int(item_bad.sum())
        longest = profile.longest
        self.longest_items += int(longest.sum())
        self.longest_items_bad += int((item_bad & longest).sum())
        self.shorter_items += int((~longest).sum())
        self.shorter_items_bad += int((item_bad & ~longest).sum())
        if bool(item_bad.any()):
            self.batches_bad += 1
            self.batches_bad_with_gap += int(profile.number_gap)

    def fold_clean(self, profile: BatchProfile) -> None:
        """A batch in which the level matched everywhere: the counts `fold` would add, without its tensor work
        (where nothing differs there is nothing to locate)."""
        self.batches += 1
        self.batches_with_gap += int(profile.number_gap)
        self.longest_items += int(profile.longest.sum())
        self.shorter_items += int((~profile.longest).sum())

    def summary(self) -> dict[str, float | int | None]:
        """JSON-ready shares (None where the denominator is zero)."""
        def share(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "rows_bad": self.rows_bad,
            "ref_zero_share": share(self.rows_bad_ref_zero, self.rows_bad),
            "after_span_count_share": share(self.rows_bad_after_span_count, self.rows_bad),
            "items_bad": self.items_bad,
            "first_group_share": share(self.items_bad_first_group, self.items_bad),
            "first_row_share": share(self.items_bad_first_row, self.items_bad),
            "longest_items_bad_share": share(self.longest_items_bad, self.longest_items),
            "shorter_items_bad_share": share(self.shorter_items_bad, self.shorter_items),
            "batches": self.batches,
            "batches_bad": self.batches_bad,
            "batches_with_gap": self.batches_with_gap,
            "bad_batches_with_gap_share": share(self.batches_bad_with_gap, self.batches_bad),
        }


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
    pattern: PatternAgg = field(default_factory=PatternAgg)


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
    # largest attention mass any item puts on padded positions (final pooling only; None: not measured)
    ref_pad_mass: float | None = None
    cand_pad_mass: float | None = None

    def fold_padding(self, ref_w: Tensor | None, cand_w: Tensor | None, padded: Tensor) -> None:
        """Record the weight mass on `padded` (N, L) positions, per item and head, maximum over batches."""
        for side, w in (("ref_pad_mass", ref_w), ("cand_pad_mass", cand_w)):
            if w is None or w.shape[:2] != padded.shape:
                continue
            mass = float((w.detach().to(torch.float64) * padded.unsqueeze(-1)).sum(1).max()) if w.numel() else 0.0
            old = getattr(self, side)
            setattr(self, side, mass if old is None else max(old, mass))

    def fold(self, ref_w: Tensor | None, cand_w: Tensor | None, threshold: float, batch_index: int) -> bool:
        """Fold one batch's maps; True when the two sides' weights differ beyond `threshold`."""
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
            return self.diff.fold(ref_w, cand_w, None, threshold, batch_index)
        return False
