"""Layouts a replica may keep a level in, and how to bring each back to the tool's: (N, L, C) batch-first with
zeros past each item's own count, or (N, C) for pooled levels.

A layout is plain data (`Layout`), found once by value (compare.locate) and applied to every batch:

    batch_first  (N, L', D): padded to any count L' >= the real one, with any padding value
    time_first   (L', N, D)
    packed       (S, D): the rows of a PackedSequence (time-major, items sorted by length as
                 pack_padded_sequence sorts them), S = the sum of the counts
    rows         (S, D): the items' rows one after another (a loop over items, concatenated)
    pooled       (N, D): one row per item

and, on top of any of them: a channel slice [offset, offset + width) (a level inside a concatenation), trailing
singleton dimensions dropped, the last two dimensions swapped (attention weights kept as (N, heads, L)).

Counts come from the batch by the original's own rules (`Counts.of`): notes per item; beat nodes per item
(boundaries where the beat number rises by exactly 1, original utils.py:234 find_boundaries_batch); measure nodes
per item (measure boundaries in beat-node space, empty segments included, original model_utils.py:17-28
make_higher_node), so a replica's own padding never decides what is compared. Packed rows are ordered as
pack_padded_sequence(enforce_sorted=False) orders them, the packing the original's collate uses (dataset.py:223).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from percepiano_parity.replica.batch import ModelInput
from percepiano_parity.replica.hierarchy import HierarchyError, measure_segments_in_beat_space, note_segments

KINDS = ("batch_first", "time_first", "packed", "rows", "pooled")


@dataclass(frozen=True)
class Layout:
    kind: str  # one of KINDS
    space: str  # "note", "beat", "measure" (whose counts unpack it) or "pooled"
    offset: int = 0  # first channel of the level
    width: int | None = None  # channels of the level (None: all)
    squeeze: int = 0  # trailing singleton dimensions dropped first
    transpose: bool = False  # last two dimensions swapped

    def describe(self) -> str:
        parts = [self.kind.replace("_", "-")]
        if self.kind in ("batch_first", "time_first", "packed", "rows"):
            parts.append(f"{self.space} space")
        if self.width is not None:
            parts.append(f"channels {self.offset}:{self.offset + self.width}")
        if self.transpose:
            parts.append("(..., heads, L)")
        if self.squeeze:
            parts.append(f"{self.squeeze} trailing 1-dim dropped")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Counts:
    """Real rows per item in each space, (N,) int64 on the CPU (a space is absent when the batch's locations
    cannot be split the original's way)."""

    n: int
    by_space: dict[str, Tensor]

    @classmethod
    def of(cls, model_input: ModelInput) -> Counts:
        lengths = model_input.lengths.cpu().long()
        loc = {k: v.cpu() for k, v in model_input.note_locations.items()}
        out = {"note": lengths}
        try:
            beats = note_segments(loc["beat"]).num_nodes
            out["beat"] = beats
            out["measure"] = measure_segments_in_beat_space(loc["beat"], loc["measure"], beats).num_nodes
        except (HierarchyError, RuntimeError, IndexError, KeyError):
            pass
        return cls(len(lengths), out)

    def get(self, space: str) -> Tensor | None:
        return self.by_space.get(space)


def packed_order(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(item, position) of each row of a PackedSequence packed from these counts, in packed order."""
    return _packed_order(tuple(int(c) for c in counts))


@functools.lru_cache(maxsize=64)
def _packed_order(counts_tuple: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    counts = torch.tensor(counts_tuple, dtype=torch.long)
    n, length = counts.numel(), int(counts.max())
    ids = torch.arange(n * length, dtype=torch.float64).view(n, length, 1)
    rows = pack_padded_sequence(ids, counts.cpu(), batch_first=True, enforce_sorted=False).data.view(-1).long()
    return rows // length, rows % length


def item_order(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(item, position) of each row when the items' rows follow one another."""
    return _item_order(tuple(int(c) for c in counts))


@functools.lru_cache(maxsize=64)
def _item_order(counts_tuple: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    counts = torch.tensor(counts_tuple, dtype=torch.long)
    item = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    start = torch.cumsum(counts, 0) - counts
    return item, torch.arange(int(counts.sum())) - start[item]


def prepare(t: Tensor, layout: Layout) -> Tensor:
    """The squeeze and transpose steps of a layout."""
    for _ in range(layout.squeeze):
        t = t.squeeze(-1)
    return t.transpose(-1, -2) if layout.transpose else t


def row_at(t: Tensor, layout: Layout, counts: Counts, item: int, position: int) -> Tensor | None:
    """The row the layout puts at (item, position) of the level, all channels (before the channel slice), without
    laying out the whole tensor; None when `t` does not fit the layout."""
    t = prepare(t.detach(), layout)
    if layout.kind == "pooled":
        return t[item] if t.dim() == 2 and t.shape[0] == counts.n else None
    real = counts.get(layout.space)
    if real is None or position >= int(real[item]):
        return None
    if layout.kind in ("batch_first", "time_first"):
        if t.dim() != 3:
            return None
        return t[item, position] if layout.kind == "batch_first" else t[position, item]
    if t.dim() != 2 or t.shape[0] != int(real.sum()):
        return None
    if layout.kind == "rows":
        return t[int(real[:item].sum()) + position]
    items, positions = packed_order(real)
    return t[int(((items == item) & (positions == position)).nonzero()[0])]


def to_canonical(t: Tensor, layout: Layout, counts: Counts) -> Tensor | None:
    """The level in the tool's layout, or None when `t` does not fit the layout on this batch."""
    t = prepare(t.detach(), layout)
    if t.dim() == 0:
        return None
    end = t.shape[-1] if layout.width is None else layout.offset + layout.width
    if end > t.shape[-1]:
        return None
    t = t[..., layout.offset:end]
    n = counts.n
    if layout.kind == "pooled":
        return t if t.dim() == 2 and t.shape[0] == n else None
    real = counts.get(layout.space)
    if real is None:
        return None
    length, channels = int(real.max()), t.shape[-1]
    out = t.new_zeros(n, length, channels)
    if layout.kind in ("batch_first", "time_first"):
        if t.dim() != 3:
            return None
        if layout.kind == "time_first":
            t = t.transpose(0, 1)
        if t.shape[0] != n or t.shape[1] < length:
            return None
        if layout.space == "note":  # the replica's own padding values stay (they may reach an unmasked pooling)
            return t[:, :length]
        keep = (torch.arange(length).unsqueeze(0) < real.unsqueeze(1)).to(t.device)
        return torch.where(keep.unsqueeze(-1), t[:, :length], out)
    if t.dim() != 2 or t.shape[0] != int(real.sum()):
        return None
    item, pos = packed_order(real) if layout.kind == "packed" else item_order(real)
    out[item.to(t.device), pos.to(t.device)] = t
    return out
