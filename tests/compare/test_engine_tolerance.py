"""Differences are judged against measured noise floors: 10x the floor is flagged, the floor itself is not."""

from __future__ import annotations

import pytest
import torch
from tiers import sweep

from percepiano_parity import replica
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.commands.audit import AuditSettings, audit
from percepiano_parity.compare.aggregate import DiffAgg
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.core.findings import Severity
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo


def test_ten_times_the_floor_is_flagged_and_the_floor_is_not() -> None:
    tol = Tolerances()
    ref = torch.linspace(-1.0, 1.0, 1000)
    floor = 4e-6  # above the fixed minimum (1e-6 x scale 1.0), so the floor decides
    threshold = tol.threshold(floor, float(ref.abs().max()))
    at_floor, ten_floors = DiffAgg(), DiffAgg()
    at_floor.fold(ref, ref + floor, None, threshold, 0)
    ten_floors.fold(ref, ref + 10 * floor, None, threshold, 0)
    assert not at_floor.exceeded
    assert ten_floors.exceeded and ten_floors.share_beyond == 1.0


def test_the_fixed_minimum_applies_when_the_floor_is_zero() -> None:
    tol = Tolerances()
    assert tol.threshold(0.0, 2.0) == pytest.approx(2e-6)
    assert tol.threshold(0.0, 2.0, grad=True, global_scale=1e3) == pytest.approx(1e-4)


def _subject(model, name: str, variant: str) -> ReplicaSubject:
    return ReplicaSubject(model, SubjectInfo(name, "bundled-replica", variant))


@pytest.mark.parametrize("variant", sweep(replica.VARIANTS, fast={"han-total"}))
def test_original_vs_faithful_replica_is_clean_on_many_seeds(original, variant: str) -> None:
    """No finding above information level, every variant, with measured floors: 10 seeds (weights and
    batches) for the two variants the published scripts train most, 3 for the others (test-time budget)."""
    config = replica.SMALL_CONFIG
    for seed in range(10 if variant in ("han-total", "bilstm-note") else 3):
        batches = generate_batches(1, seed=seed, batch_size=4, config=config, max_notes=32, include_edge_cases=False)
        report, state = audit(original.subject(variant, config, seed=seed),
                              _subject(replica.build(variant, config, seed=seed), "replica", variant),
                              batches, AuditSettings(variant=variant, config=config, seed=seed))
        above = [f.message for f in report.findings if f.severity > Severity.INFO]
        assert above == [], (variant, seed, above)
        assert state.floors.levels, "noise floors were measured"
