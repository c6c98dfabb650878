"""Everything the checks read: the folded result of running two subjects on the same batches, and where
the two sides part (the first level beyond tolerance and the root-cause level).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from percepiano_parity.compare.aggregate import AttentionAgg, DiffAgg, LevelAgg
from percepiano_parity.compare.noise import NoiseFloors
from percepiano_parity.compare.weight_mapping import WeightMap
from percepiano_parity.core.levels import level_order

# ----------------------------------------------------------------------------------------------------------
# Where the two sides part: the first level whose cumulative error is beyond tolerance, and the root-cause level,
# the first whose own (teacher-forced) error is. The engine needs the root to look inside it; the forward
# check reports both.


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


# ----------------------------------------------------------------------------------------------------------
# Everything the checks read: the folded result of running two subjects on the same batches.
#
# The engine fills this object; checks turn it into findings. It holds no models, only data, so the same
# checks run on a live comparison and on a replayed reference bundle.


@dataclass
class InitStat:
    reference: str
    candidate: str
    identical: bool
    ref_std: float
    cand_std: float
    ref_absmax: float
    cand_absmax: float
    ref_mean: float
    cand_mean: float
    numel: int


@dataclass
class ComparisonState:
    variant: str
    reference_name: str = "original"
    candidate_name: str = "replica"
    reference_structure: dict[str, Any] = field(default_factory=dict)
    candidate_structure: dict[str, Any] = field(default_factory=dict)
    weight_map: WeightMap = field(default_factory=WeightMap)
    init: list[InitStat] | None = None  # None: initial weights not available (e.g. replayed bundle)
    init_note: str = ""
    levels: dict[str, LevelAgg] = field(default_factory=dict)
    levels_only_reference: set[str] = field(default_factory=set)
    levels_only_candidate: set[str] = field(default_factory=set)
    grads: dict[str, DiffAgg] = field(default_factory=dict)  # reference param name -> aggregate
    grad_only_reference: set[str] = field(default_factory=set)  # has a grad on the reference side only
    grad_only_candidate: set[str] = field(default_factory=set)
    grads_available: bool = True
    reference_with_grad: set[str] = field(default_factory=set)  # reference params that received a gradient
    loss: DiffAgg = field(default_factory=DiffAgg)
    losses: list[tuple[float, float]] = field(default_factory=list)
    attention: dict[str, AttentionAgg] = field(default_factory=dict)
    reference_param_dtypes: dict[str, str] = field(default_factory=dict)
    candidate_param_dtypes: dict[str, str] = field(default_factory=dict)
    floors: NoiseFloors = field(default_factory=NoiseFloors)
    batches: int = 0
    batch_tags: list[str] = field(default_factory=list)
    local_available: bool = True
    local_note: str = ""
    errors: list[str] = field(default_factory=list)
    ops: dict[str, Any] = field(default_factory=dict)  # first divergent operation inside the root level
    # relation tests at each independent root level (compare.relations.search), in forward order
    relations: list[dict[str, Any]] = field(default_factory=list)
    # levels found by value in the candidate's forward (compare.locate): name -> LevelSite.describe(), and the
    # reference's levels nothing of a fitting shape stood for; empty when the candidate records its own levels
    located: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_located: list[str] = field(default_factory=list)
    located_on: dict[str, Any] = field(default_factory=dict)  # the batch levels were located on
    derived: list[str] = field(default_factory=list)  # of those, computed by the adapter's run_level instead
    conventions: list[dict[str, str]] = field(default_factory=list)  # how the candidate is called (user models)
    # batches one side (or both) raised on, in batch order (compare.raises): which batch, what each side raised
    # (type, one-line message, kind, file:line), the outcome, and the clamps of a candidate that returned values
    raised: list[dict[str, Any]] = field(default_factory=list)
    # a candidate built for another input width (batches.features.ColumnPlan.to_dict): which columns it takes and
    # lacks, the input projections that got the shared columns' weights, and whether the rest was zeroed
    input_columns: dict[str, Any] = field(default_factory=dict)
    # the first divergent level agrees on the original's inputs but not in the free run: the inputs computed outside
    # the levels, measured and tried (compare.derived_inputs: level, batch, found or None, tested)
    derived_input: dict[str, Any] = field(default_factory=dict)
