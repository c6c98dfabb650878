"""Everything the checks read: the folded result of running two subjects on the same batches.

The engine fills this object; checks turn it into findings. It holds no models, only data, so the same
checks run on a live comparison and on a replayed reference bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from percepiano_parity.compare.aggregate import AttentionAgg, DiffAgg, LevelAgg
from percepiano_parity.compare.mapping import WeightMap
from percepiano_parity.compare.noise import NoiseFloors


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
