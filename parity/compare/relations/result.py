"""What one relation test found, as plain data a finding can carry."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The relation kinds, each with the diagnosis rule (stable explanation id) that explains it.
KINDS: dict[str, str] = {
    "feature_permutation": "PP-REL-FEATURE-ORDER",
    "item_permutation": "PP-REL-BATCH-ORDER",
    "time_reversal": "PP-REL-TIME-REVERSAL",
    "normalisation_axis": "PP-REL-SOFTMAX-AXIS",
    "softmax_temperature": "PP-REL-SOFTMAX-TEMPERATURE",
    "missing_op": "PP-REL-MISSING-OP",
    "extra_op": "PP-REL-EXTRA-OP",
    "different_op": "PP-REL-DIFFERENT-OP",
    "different_arguments": "PP-REL-OP-ARGUMENTS",
    "random_in_eval": "PP-REL-RANDOM-IN-EVAL",
    "lstm_gate_order": "PP-REL-LSTM-GATE-ORDER",
    "padding_rows": "PP-REL-PADDING-ROWS",
}


@dataclass
class Relation:
    """One tested relation. `residual` is the relative error left after applying it (max |difference| over the
    largest magnitude), `baseline` the relative error without it; it holds when the residual is within the
    tolerance the test was given."""

    kind: str
    level: str
    holds: bool
    residual: float
    baseline: float = math.nan
    summary: str = ""  # one line, a measurement: "equals the original's with feature blocks ... swapped"
    details: dict[str, Any] = field(default_factory=dict)
    op: str | None = None  # the candidate operation it sits at, "qualname at file:line"
    op_site: str | None = None
    original_op: str | None = None  # the original's counterpart, "qualname at file:line"
    original_site: str | None = None
    fix: dict[str, Any] | None = None  # a mechanical fix spec (see diagnosis.fixes), when one exists

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | str:
            return float(f"{x:.3g}") if math.isfinite(x) else str(x)
        return {"kind": self.kind, "level": self.level, "holds": self.holds, "residual": num(self.residual),
                "baseline": num(self.baseline), "summary": self.summary, "details": self.details, "op": self.op,
                "op_site": self.op_site, "original_op": self.original_op, "original_site": self.original_site,
                "fix": self.fix}


def blocks_of(perm: list[int]) -> list[tuple[int, int, int]]:
    """A permutation (candidate position -> original position) as runs: (start, end, original start)."""
    runs: list[tuple[int, int, int]] = []
    for j, i in enumerate(perm):
        if runs and runs[-1][1] == j and runs[-1][2] + (j - runs[-1][0]) == i:
            runs[-1] = (runs[-1][0], j + 1, runs[-1][2])
        else:
            runs.append((j, j + 1, i))
    return runs


def describe_blocks(runs: list[tuple[int, int, int]]) -> str:
    """'blocks [1024:1536] and [1536:2048] swapped' for one exchange, else the full list of moved runs."""
    moved = [(s, e, o) for s, e, o in runs if s != o]
    if len(moved) == 2:
        (a, b, oa), (c, d, oc) = moved
        if oa == c and oc == a and b - a == d - c:
            return f"feature blocks [{a}:{b}] and [{c}:{d}] swapped"
    parts = [f"[{s}:{e}] holds the original's [{o}:{o + e - s}]" for s, e, o in moved]
    return "columns reordered: " + "; ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")
