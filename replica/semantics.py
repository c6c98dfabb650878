"""Switches for the behaviours where a re-implementation most often departs from the original.

The faithful replica uses `FAITHFUL`; the deviation library (subjects.deviations) flips one switch at a time to
reproduce a known mistake, so its effect can be measured and the audit proven to catch it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class Semantics:
    # Feed the LSTMs PackedSequences (original) or zero-padded tensors (a common mistake).
    pack_sequences: bool = True
    # Where a new beat/measure starts: where the number rises by exactly 1 (original) or at every change.
    boundary_rule: Literal["rise_by_one", "any_change"] = "rise_by_one"
    # Notes that receive their beat/measure: the original's argmin-of-diff count, or each item's true length.
    span_count: Literal["argmin_quirk", "true_length"] = "argmin_quirk"
    # Offset applied to the node index when spanning back to notes (0 original; -1 is an off-by-one).
    span_offset: int = 0
    # Padding mask of the head's context attention: the original's "row sum == 0" test, none, or real lengths.
    head_mask: Literal["row_sum", "none", "length"] = "row_sum"

    def with_(self, **changes: object) -> Semantics:
        return replace(self, **changes)  # type: ignore[arg-type]


FAITHFUL = Semantics()
