"""The lean engine measures what locates a mismatch only where something differs, and reaches the same verdict
as a thorough run that measures everything (gradient floors, local error and patterns of every level)."""

from __future__ import annotations

import pytest

from percepiano_parity import replica
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.checks import run_model_checks
from percepiano_parity.compare.engine import Engine, EngineOptions
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Severity
from percepiano_parity.subjects.deviations import get_deviation
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo

CONFIG = replica.SMALL_CONFIG
VARIANT = "han-total"
SEED = 3


def _batches(n: int = 2):
    return generate_batches(n, seed=SEED, batch_size=4, config=CONFIG, max_notes=32, include_edge_cases=False)


def _run(candidate_model, *, thorough: bool, batches=None) -> ComparisonState:
    reference = ReplicaSubject(replica.build(VARIANT, CONFIG, seed=SEED), SubjectInfo("original", "bundled-replica",
                                                                                      VARIANT))
    candidate = ReplicaSubject(candidate_model, SubjectInfo("replica", "bundled-replica", VARIANT))
    engine = Engine(reference, candidate, variant=VARIANT, config=CONFIG, options=EngineOptions(thorough=thorough))
    return engine.run(batches if batches is not None else _batches())


def _verdict(state: ComparisonState) -> set[tuple[str, str, str]]:
    return {(f.kind, f.location, f.severity.label) for c in run_model_checks(state, EngineOptions().tolerances)
            for f in c.findings if f.severity >= Severity.WARNING}


def _root(state: ComparisonState) -> str | None:
    from percepiano_parity.checks.forward import first_divergent, root_level

    return first_divergent(state), root_level(state)


def test_a_faithful_run_skips_gradient_floors_and_local_error() -> None:
    state = _run(replica.build(VARIANT, CONFIG, seed=SEED), thorough=False)
    assert _verdict(state) == set()
    assert state.floors.levels and state.floors.batches == 1  # level floors: always, on the first batch
    assert not state.floors.grads_measured and state.floors.grad("out_fc.1.weight") is None
    assert state.floors.to_dict()["grads_measured"] is False and state.floors.to_dict()["grads"] == {}
    assert all(agg.local is None for agg in state.levels.values())  # nothing differs: nothing to localise
    assert all(agg.pattern.batches == 2 and agg.pattern.rows_bad == 0 for agg in state.levels.values())
    assert all(agg.pattern.longest_items + agg.pattern.shorter_items == 8 for agg in state.levels.values())
    # the report's relative tolerance is never below the fixed minimum, and a match stays under it
    forward = next(c for c in run_model_checks(state, EngineOptions().tolerances) if c.id == "forward")
    for row in forward.tables["levels"]:
        assert row["tolerance_rel"] >= EngineOptions().tolerances.min_rel * (1 - 1e-9), row["level"]
        assert row["max_rel"] <= row["tolerance_rel"], row["level"]


def test_thorough_measures_everything_and_agrees_on_a_faithful_run() -> None:
    lean = _run(replica.build(VARIANT, CONFIG, seed=SEED), thorough=False)
    full = _run(replica.build(VARIANT, CONFIG, seed=SEED), thorough=True)
    assert _verdict(full) == _verdict(lean) == set()
    assert full.floors.grads_measured and full.floors.grads
    assert full.levels["beat"].local is not None and not full.levels["beat"].local.exceeded
    assert full.floors.levels == lean.floors.levels  # the same floors judge the levels in both modes


@pytest.mark.parametrize("deviation", ["layernorm-han-output", "beat-lstm-unidirectional"])
def test_a_deviation_gets_the_same_verdict_root_and_gradient_judgement_lean_and_thorough(deviation: str) -> None:
    dev = get_deviation(deviation)
    lean = _run(dev.build_candidate(CONFIG, seed=SEED), thorough=False)
    full = _run(dev.build_candidate(CONFIG, seed=SEED), thorough=True)
    assert _verdict(lean) == _verdict(full) != set()
    assert _root(lean) == _root(full)
    assert _root(lean)[1] == dev.expected_level
    # gradients differed beyond the fixed minimum, so their floors were measured on demand and the batch was
    # judged again with them: the same thresholds and counts as when they were measured up front
    assert lean.floors.grads_measured
    for name, agg in full.grads.items():
        other = lean.grads[name]
        assert (other.max_abs, other.beyond, other.threshold, other.first_bad_batch) == \
            (agg.max_abs, agg.beyond, agg.threshold, agg.first_bad_batch), name
    # local error only where the cumulative error exceeded the tolerance
    for name, agg in lean.levels.items():
        assert (agg.local is not None) == agg.real.exceeded or bool(agg.local_note), name
        if agg.real.exceeded:
            assert agg.pattern.rows_bad == full.levels[name].pattern.rows_bad


class _GradientOffOnSecondBatch(ReplicaSubject):
    """A faithful candidate whose gradient of one parameter is 1% off from its second run on."""

    PARAM = "out_fc.1.weight"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def run(self, batch, *, grads: bool = True, train: bool = False):
        taps = super().run(batch, grads=grads, train=train)
        self.calls += 1
        if self.calls >= 2 and self.PARAM in taps.grads:
            taps.grads[self.PARAM] = taps.grads[self.PARAM] * 1.01
        return taps


def test_gradient_floors_measured_late_leave_earlier_batches_as_judged() -> None:
    """Batch 0 matches (under the fixed minimum, no gradient floors needed); batch 1 differs in one gradient:
    the floors are measured then, batch 1 is judged with them, batch 0 stays a match."""
    reference = ReplicaSubject(replica.build(VARIANT, CONFIG, seed=SEED), SubjectInfo("original", "bundled-replica",
                                                                                      VARIANT))
    candidate = _GradientOffOnSecondBatch(replica.build(VARIANT, CONFIG, seed=SEED),
                                          SubjectInfo("replica", "bundled-replica", VARIANT))
    state = Engine(reference, candidate, variant=VARIANT, config=CONFIG).run(_batches(2))
    name = _GradientOffOnSecondBatch.PARAM
    assert state.floors.grads_measured and state.floors.grad(name) is not None
    assert state.grads[name].exceeded and state.grads[name].first_bad_batch == 1
    assert state.grads[name].batches == 2  # folded once per batch, although batch 1 was judged twice
    assert _verdict(state) == {("backward.grad_mismatch", name, "error")}
