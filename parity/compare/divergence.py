"""Where the two sides part: the first level whose cumulative error is beyond tolerance, and the root-cause level,
the first whose own (teacher-forced) error is. The engine needs the root to look inside it; the forward
check reports both.
"""

from __future__ import annotations

from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.levels import level_order


def first_divergent(state: ComparisonState) -> str | None:
    for name in sorted(state.levels, key=level_order):
        if state.levels[name].real.exceeded:
            return name
    return None


def root_level(state: ComparisonState) -> str | None:
    """First level whose own (teacher-forced) error is beyond tolerance; falls back to cumulative."""
    ordered = sorted(state.levels, key=level_order)
    for name in ordered:
        agg = state.levels[name]
        if agg.local is not None:
            if agg.local.exceeded:
                return name
        elif agg.real.exceeded:
            return name
    return None


def independent_roots(state: ComparisonState) -> list[str]:
    """Every level whose own (teacher-forced) error is beyond tolerance, in forward order: the root cause and any
    later level that deviates on its own as well (a second, independent mistake). Without teacher forcing, only
    the first divergent level."""
    first = root_level(state)
    if first is None:
        return []
    roots = [first]
    for name in sorted(state.levels, key=level_order):
        agg = state.levels[name]
        if name != first and level_order(name) > level_order(first) and agg.local is not None and agg.local.exceeded:
            roots.append(name)
    return roots
