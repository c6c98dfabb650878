"""The note -> beat -> measure hierarchy operations, vectorised.

Mirrors original `model_utils.py` (`make_higher_node`, `span_beat_to_note_num`,
`run_hierarchy_lstm_with_pack`) and `utils.py` (`find_boundaries_batch`, `get_softmax_by_boundary`,
`cal_length_from_padded_beat_numbers`). The semantics are the original's, quirks included, because a
replica that "fixes" them is not a replica (the deviation library holds the fixed versions):

* a new beat (or measure) starts only where the number rises by exactly 1, so a jump of 2 merges two beats;
* a segment list ends at the last non-zero number of the row (all-zero rows are rejected, as the original
  crashes on them);
* measure boundaries are expressed in beat-node space through zero-shifted beat numbers; empty segments
  are skipped by the softmax but still emit an all-zero node;
* the softmax pieces of an item are concatenated in segment order and then multiply the lower sequence
  position by position, exactly as the original's `pad_sequence(cat(...))` does;
* spanning back to notes uses `argmin(diff(numbers)) + 1` as the note count (1 meaning "the whole row"),
  which truncates the longest item of a batch when its first two notes are in different beats.

Everything is done with index and scatter operations over flat segment lists, so no Python loop grows with
the number of notes, beats or measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class HierarchyError(ValueError):
    """Note locations the original cannot process (it raises on them). `original_error` names the exception type
    the original raises there (None where the replica refuses a path it does not reproduce)."""

    def __init__(self, message: str, original_error: str | None) -> None:
        super().__init__(message)
        self.original_error = original_error


@dataclass(frozen=True)
class Segments:
    """A flat list of [start, end) segments, each belonging to one batch item.

    `start`/`end` are the raw boundary values (which may describe an empty or inverted range, as in the
    original); `node` is the segment's index within its item; `num_nodes` counts segments per item.
    """

    item: Tensor
    node: Tensor
    start: Tensor
    end: Tensor
    num_nodes: Tensor

    @property
    def max_nodes(self) -> int:
        return int(self.num_nodes.max()) if self.num_nodes.numel() else 0


def _rises(numbers: Tensor) -> Tensor:
    """(K, 2) indices (item, position) of every position where the number rose by exactly 1."""
    rise = (numbers[:, 1:] - numbers[:, :-1]) == 1
    found = torch.nonzero(rise)
    found[:, 1] += 1
    return found


def _last_nonzero_end(numbers: Tensor, what: str) -> Tensor:
    nonzero = numbers != 0
    if not bool(nonzero.any(dim=1).all()):
        bad = int((~nonzero.any(dim=1)).nonzero()[0])
        raise HierarchyError(
            f"item {bad} has only zero {what} numbers; the original raises on this (max of an empty tensor)",
            "RuntimeError")
    positions = torch.arange(numbers.shape[1], device=numbers.device).expand_as(numbers)
    return torch.where(nonzero, positions, -1).max(dim=1).values + 1


def _segments_from_boundaries(item_of: Tensor, value: Tensor, batch: int) -> Segments:
    """Turn per-item boundary lists, given flat and sorted by item, into consecutive segments."""
    last = torch.ones_like(item_of, dtype=torch.bool)
    last[:-1] = item_of[1:] != item_of[:-1]
    first = torch.ones_like(last)
    first[1:] = item_of[1:] != item_of[:-1]
    seg_item = item_of[~last]
    starts = value[~last]
    ends = value[~first]
    num_nodes = torch.bincount(seg_item, minlength=batch)
    offsets = torch.cumsum(num_nodes, 0) - num_nodes
    node = torch.arange(seg_item.numel(), device=seg_item.device) - offsets[seg_item]
    return Segments(item=seg_item, node=node, start=starts, end=ends, num_nodes=num_nodes)


def note_segments(numbers: Tensor) -> Segments:
    """Segments over notes: [0] + rises by exactly 1 + [last non-zero index + 1] per item."""
    batch = numbers.shape[0]
    ends = _last_nonzero_end(numbers, "beat/measure")
    rises = _rises(numbers)
    items = torch.arange(batch, device=numbers.device)
    item_of = torch.cat([items, rises[:, 0], items])
    value = torch.cat([torch.zeros_like(items), rises[:, 1], ends])
    # stable sort by item keeps [0, rises..., end] in order within each item
    order = torch.sort(item_of * 3 + torch.cat([torch.zeros_like(items), torch.ones_like(rises[:, 0]),
                                                 torch.full_like(items, 2)]), stable=True).indices
    return _segments_from_boundaries(item_of[order], value[order], batch)


def measure_segments_in_beat_space(beat_numbers: Tensor, measure_numbers: Tensor, beat_rows: Tensor) -> Segments:
    """Measure segments expressed over beat nodes.

    Each measure starts at the zero-shifted beat number of its first note; the last segment ends at the
    number of beat rows that are not all zero (`beat_rows`).
    """
    batch = measure_numbers.shape[0]
    _last_nonzero_end(measure_numbers, "measure")
    shifted = beat_numbers - beat_numbers[:, :1]
    rises = _rises(measure_numbers)
    items = torch.arange(batch, device=measure_numbers.device)
    starts_item = torch.cat([items, rises[:, 0]])
    starts_pos = torch.cat([torch.zeros_like(items), rises[:, 1]])
    starts_key = torch.cat([torch.zeros_like(items), torch.ones_like(rises[:, 0])])
    item_of = torch.cat([starts_item, items])
    value = torch.cat([shifted[starts_item, starts_pos], beat_rows])
    key = torch.cat([starts_key, torch.full_like(items, 2)])
    order = torch.sort(item_of * 3 + key, stable=True).indices
    return _segments_from_boundaries(item_of[order], value[order], batch)


def _pairs(seg_index: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """All (segment, position) pairs with lo <= position < hi, as two flat tensors."""
    length = (hi - lo).clamp_min(0)
    which = torch.repeat_interleave(seg_index, length)
    offsets = torch.cumsum(length, 0) - length
    within = torch.arange(int(length.sum()), device=lo.device) - torch.repeat_interleave(offsets, length)
    return which, lo[which] + within


def segment_softmax(scores: Tensor, segments: Segments) -> Tensor:
    """Softmax over time within each segment, laid out as the original concatenates it.

    The pieces of valid segments (start < end) are concatenated per item and zero-padded across the
    batch; the result must be as long as `scores` is, as the original multiplies the two position-wise, or one
    position long, which that multiplication broadcasts over every position (found by differential fuzzing:
    a batch whose items each cover at most one position, e.g. beats [-1, 0]).
    """
    n, length, heads = scores.shape
    valid = segments.start < segments.end
    if bool((segments.start[valid] < 0).any()):
        raise HierarchyError("negative boundary (a -1 note location); the replica does not reproduce this path",
                             None)
    lo = segments.start.clamp(0, length)
    hi = torch.minimum(segments.end, torch.full_like(segments.end, length))
    hi = torch.where(valid, torch.maximum(hi, lo), lo)
    seg_ids = torch.arange(segments.item.numel(), device=scores.device)
    which, src = _pairs(seg_ids, lo, hi)
    item = segments.item[which]
    # pairs come in segment order, hence grouped by item: a pair's place in its item's concatenation is its
    # running index minus the index of the item's first pair
    per_item_total = torch.bincount(item, minlength=n)
    first_pair = torch.cumsum(per_item_total, 0) - per_item_total
    dst = torch.arange(item.numel(), device=scores.device) - first_pair[item]
    width = int(per_item_total.max()) if per_item_total.numel() else 0
    if width != length and width != 1:  # one covered position broadcasts over the sequence in the original
        raise HierarchyError(
            f"segments cover {width} positions but the sequence has {length}; the original fails to broadcast here",
            "RuntimeError")
    picked = scores[item, src]  # (P, H)
    seg_max = torch.full((seg_ids.numel(), heads), float("-inf"), dtype=scores.dtype, device=scores.device)
    seg_max = seg_max.scatter_reduce(0, which.unsqueeze(1).expand_as(picked), picked, "amax", include_self=True)
    exp = torch.exp(picked - seg_max[which])
    seg_sum = torch.zeros((seg_ids.numel(), heads), dtype=scores.dtype, device=scores.device).index_add_(0, which, exp)
    out = scores.new_zeros(n, width, heads)
    out[item, dst] = exp / seg_sum[which]
    return out if width == length else out.expand(n, length, heads)


def segment_sum(weighted: Tensor, segments: Segments) -> Tensor:
    """Sum each segment's rows of `weighted` (N, L, C) into a node; empty segments give zero nodes."""
    n, length, channels = weighted.shape
    lo = segments.start.clamp(0, length)
    hi = segments.end.clamp(0, length)
    seg_ids = torch.arange(segments.item.numel(), device=weighted.device)
    which, pos = _pairs(seg_ids, lo, hi)
    sums = weighted.new_zeros(seg_ids.numel(), channels).index_add_(0, which, weighted[segments.item[which], pos])
    nodes = weighted.new_zeros(n, segments.max_nodes, channels)
    nodes[segments.item, segments.node] = sums
    return nodes


def make_higher_node(lower: Tensor, weights: Tensor, segments: Segments, num_head: int) -> Tensor:
    """Head-wise attention pooling of each segment: head h's weight scales its channel block."""
    n, length, channels = lower.shape
    head = channels // num_head
    weighted = (lower.view(n, length, num_head, head) * weights.unsqueeze(-1)).view(n, length, channels)
    return segment_sum(weighted, segments)


def nonzero_rows(x: Tensor) -> Tensor:
    """Rows that are not entirely zero, per item: the original's notion of sequence length."""
    return x.shape[1] - (x == 0).all(dim=-1).sum(dim=-1)


def run_lstm_on_nodes(nodes: Tensor, lstm: nn.LSTM, *, pack: bool = True) -> Tensor:
    """Run an LSTM over zero-padded nodes, length = rows that are not all zero (anywhere in the row)."""
    if not pack:
        out, _ = lstm(nodes)
        return out
    lengths = nonzero_rows(nodes)
    if bool((lengths <= 0).any()):
        raise HierarchyError("an item has no non-zero node; the original cannot pack a length-0 sequence",
                             "RuntimeError")
    packed = pack_padded_sequence(nodes, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True)
    return out


def span_note_counts(numbers: Tensor) -> Tensor:
    """The original's note count per item for spanning: argmin of the first difference, + 1; 1 means T."""
    n, length = numbers.shape
    if length == 1:
        if n > 1:
            raise HierarchyError("a batch of length-1 items only; the original raises IndexError here", "IndexError")
        return torch.ones(1, dtype=torch.long, device=numbers.device)
    counts = torch.min(torch.diff(numbers, dim=1), dim=1).indices + 1
    return torch.where(counts == 1, torch.full_like(counts, length), counts)


def span_to_notes(nodes: Tensor, numbers: Tensor, counts: Tensor | None = None) -> Tensor:
    """Copy each note's beat (or measure) node back to the note, for the first `counts` notes per item."""
    n, length = numbers.shape
    num_nodes = nodes.shape[1]
    if counts is None:
        counts = span_note_counts(numbers)
    index = numbers - numbers[:, :1]
    active = torch.arange(length, device=numbers.device).unsqueeze(0) < counts.unsqueeze(1)
    used = index[active]
    if bool(((used >= num_nodes) | (used < -num_nodes)).any()):
        raise HierarchyError(
            f"a note points at node {int(used.max())} of {num_nodes} (or below -{num_nodes}); the original raises "
            "IndexError", "IndexError")
    index = torch.where(index < 0, index + num_nodes, index).clamp(0, max(num_nodes - 1, 0))
    gathered = torch.gather(nodes, 1, index.unsqueeze(-1).expand(n, length, nodes.shape[2]))
    return gathered * active.unsqueeze(-1).to(nodes.dtype)
