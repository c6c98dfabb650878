"""What the user's dataset and collate hand the model, against what the original's loader hands it, per segment
(plain data, no verdicts).

The original's side of one segment (batches.real.loader.RealData.segment: dataset.py:84-130 with --no_augment,
one slice per segment, then FeatureCollate's packing and zero padding, dataset.py:221-252) has T rows: the whole
segment. The user's side has L rows: the packed length, its `lengths`, or the padded width. Rows past T that are
all zero are padding; L < T with the first L rows equal is truncation. Locations and features are compared over
the rows both have; a location that differs by one constant is a numbering offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

ATOL = 1e-5  # float32 features as torch.Tensor(float64 input) makes them
LOCATIONS = ("beat", "measure", "voice", "section")


@dataclass
class SegmentDelivery:
    key: str
    original_rows: int
    replica_rows: int
    padding_rows: int = 0  # replica rows past the original's length
    padding_zero: bool = True  # ... and all of them zero
    feature_width: tuple[int, int] = (0, 0)
    columns_differing: list[int] = field(default_factory=list)  # over the shared rows, equal widths only
    feature_max_abs: float = 0.0
    location_offset: dict[str, int] = field(default_factory=dict)  # name -> constant replica - original (!= 0)
    location_rows_differing: dict[str, int] = field(default_factory=dict)  # name -> rows, not a constant offset
    location_unaligned_only: dict[str, bool] = field(default_factory=dict)  # ... all of them voice-0 notes
    label_max_abs: float = 0.0

    @property
    def truncated_rows(self) -> int:
        return max(0, self.original_rows - self.replica_rows)


def compare_segment(key: str, features: torch.Tensor, locations: Mapping[str, torch.Tensor], label: torch.Tensor,
                    delivered_features: torch.Tensor, delivered_locations: Mapping[str, torch.Tensor],
                    delivered_label: torch.Tensor) -> SegmentDelivery:
    """One segment: the original's (T, F) features, (T,) locations and (L,) label against the user's."""
    t, n = features.shape[0], delivered_features.shape[0]
    d = SegmentDelivery(key, t, n, feature_width=(int(features.shape[1]), int(delivered_features.shape[1])))
    shared = min(t, n)
    if n > t:
        d.padding_rows = n - t
        d.padding_zero = bool((delivered_features[t:] == 0).all())
    if d.feature_width[0] == d.feature_width[1] and shared:
        diff = (delivered_features[:shared].double() - features[:shared].double()).abs()
        d.feature_max_abs = float(diff.max())
        d.columns_differing = [int(c) for c in torch.nonzero((diff > ATOL).any(dim=0)).flatten()]
    unaligned = locations["voice"][:shared] == 0
    for name in LOCATIONS:
        a, b = locations[name][:shared].long(), delivered_locations[name][:shared].long()
        delta = b - a
        if not bool((delta != 0).any()):
            continue
        if bool((delta == delta[0]).all()):
            d.location_offset[name] = int(delta[0])
        else:
            bad = delta != 0
            d.location_rows_differing[name] = int(bad.sum())
            d.location_unaligned_only[name] = bool(unaligned[bad].all())
    m = min(label.shape[0], delivered_label.shape[0])
    d.label_max_abs = float((delivered_label[:m].double() - label[:m].double()).abs().max()) if m else 0.0
    if label.shape[0] != delivered_label.shape[0]:
        d.label_max_abs = float("inf")
    return d


@dataclass
class Membership:
    """The audited split's performances on both sides."""

    split: str
    original: list[str]
    replica: list[str]
    missing: list[str] = field(default_factory=list)  # in the original's split, not in the user's dataset
    extra: list[str] = field(default_factory=list)  # in the user's dataset, not in the original's split
    extra_from: dict[str, int] = field(default_factory=dict)  # where the extra sit in the original: split -> count

    @property
    def differs(self) -> bool:
        return bool(self.missing or self.extra)


def compare_membership(split: str, original: Sequence[str], replica: Iterable[str],
                       original_split_of: Mapping[str, str | None]) -> Membership:
    """Who is in the split on each side; `original_split_of[key]` is the original's split of a performance in the
    same fold (train/valid/test, None outside every split)."""
    replica = list(dict.fromkeys(replica))
    m = Membership(split, list(original), replica)
    have = set(original)
    mine = set(replica)
    m.missing = [k for k in original if k not in mine]
    m.extra = [k for k in replica if k not in have]
    for key in m.extra:
        where = original_split_of.get(key) or "none"
        m.extra_from[where] = m.extra_from.get(where, 0) + 1
    return m
