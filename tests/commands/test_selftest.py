"""The self-test over the replica: every deviation caught, explained first by the right rule, at the right
root-cause level; the faithful replica clean for every variant. Also against the real original when
PERCEPIANO_ORIGINAL is set.

The whole matrix is the slow tier (one audit per deviation, shared with the other tests through
tests/audit_cache.py); the grading, the hazard batches and one-row runs are fast."""

from __future__ import annotations

import audit_cache
import pytest
import torch

from percepiano_parity import replica
from percepiano_parity.batches.selftest import SELFTEST_TAGS, default_selftest_batches, selftest_batches
from percepiano_parity.commands.selftest import (
    NOT_RUN_TRAINING,
    SelftestRow,
    format_matrix,
    grade,
    run_selftest,
)
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.replica.hierarchy import span_note_counts
from percepiano_parity.subjects.deviations import DEVIATIONS


@pytest.fixture(scope="module")
def result():
    """The whole self-test in the shared setting (SMALL_CONFIG, seed 0, the default batches: hazard and generated
    ones, fixes verified), its audits shared with the session's other tests (tests/audit_cache.py)."""
    return audit_cache.selftest()


@pytest.mark.slow
def test_selftest_over_the_replica_passes(result) -> None:
    assert result.ok, "\n" + format_matrix(result)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_each_deviation_caught_and_explained(result, name: str) -> None:
    dev = DEVIATIONS[name]
    (row,) = [r for r in result.rows if r.name == name]
    if row.status == "not run":
        pytest.skip(row.reason)
    assert row.caught, row.reason
    assert row.explanation == dev.expected_explanation, row.reason
    assert row.right_explanation_first
    if dev.expected_level is not None:
        assert row.root_level == dev.expected_level
        assert row.first_divergent_level is not None
    assert row.explanations == 1, f"{name}: one deviation must give one explanation, got {row.explanations}"
    assert row.unexplained == 0
    assert row.quirk == dev.quirk


@pytest.mark.slow
def test_faithful_replica_clean_for_all_variants(result) -> None:
    rows = [r for r in result.rows if r.kind == "faithful"]
    assert sorted(r.variant for r in rows) == sorted(replica.VARIANTS)
    for r in rows:
        assert r.status == "passed", r.reason
        assert r.caught is False and r.worst == "info"


@pytest.mark.slow
def test_matrix_and_format(result) -> None:
    matrix = result.matrix()
    assert len(matrix) == len(DEVIATIONS) + len(replica.VARIANTS)
    assert set(matrix[0]) >= {"deviation", "number", "caught", "right_explanation_first", "explanation", "root_level",
                              "expected_level", "first_divergent_level", "first_divergent_op", "fix_verified"}
    text = format_matrix(result)
    for name in DEVIATIONS:
        assert name in text
    assert "self-test passed" in text.splitlines()[-1]
    assert result.to_dict()["ok"] is True


def test_recipe_rows_not_run_without_training_checks(monkeypatch) -> None:
    import percepiano_parity.commands.selftest as st

    monkeypatch.setattr(st, "_training_checks", lambda: None)
    res = run_selftest(config=SMALL_CONFIG, batches=selftest_batches(SMALL_CONFIG, 0)[:1], deviations=["lr-5e-5"],
                       variants=[], verify_fixes=False)
    (row,) = res.rows
    assert row.status == "not run" and row.reason == NOT_RUN_TRAINING
    assert res.ok  # not run is not a failure while parity.training is missing
    assert "not run" in format_matrix(res)


def test_recipe_rows_fail_when_training_checks_miss_them() -> None:
    """With a training-checks provider that finds nothing, a recipe deviation is not caught: the row fails."""
    def nothing(*_args, **_kwargs) -> list[CheckResult]:
        return [CheckResult("recipe", "passed"), CheckResult("trajectory", "passed"), CheckResult("data", "passed")]

    res = run_selftest(config=SMALL_CONFIG, batches=selftest_batches(SMALL_CONFIG, 0)[:1], deviations=["adamw"],
                       variants=[], verify_fixes=False, training_checks=nothing)
    (row,) = res.rows
    assert row.status == "failed" and "not caught" in row.reason
    assert not res.ok


def _report(findings: list[Finding], explanations: list[Explanation]) -> Report:
    return Report(variant="han-total", subjects=[], checks=[CheckResult("forward", "failed", findings)],
                  explanations=explanations)


def test_grade_flags_wrong_explanation_and_level() -> None:
    dev = DEVIATIONS["padded-lstm"]
    finding = Finding("forward", "forward.mismatch", "voice", Severity.ERROR, "differs")
    exp = Explanation(id="PP-FORWARD-UNEXPLAINED-LEVEL", title="t", severity=Severity.ERROR, original_does="",
                      replica_does="", effect="", fix="", evidence=[finding.key], root_level="voice")
    row = grade(SelftestRow(name=dev.name, number=dev.number, kind=dev.kind, variant=dev.variant),
                _report([finding], [exp]), dev)
    assert row.status == "failed" and row.caught and not row.right_explanation_first
    assert "expected PP-PADDED-LSTM" in row.reason and "root level voice, expected note" in row.reason


def test_grade_ignores_waived_and_information_explanations() -> None:
    dev = DEVIATIONS["proper-final-mask"]
    finding = Finding("forward", "forward.mismatch", "pooled", Severity.ERROR, "differs")
    waived = Explanation(id="PP-OTHER", title="", severity=Severity.ERROR, original_does="", replica_does="",
                         effect="", fix="", waived=True)
    info = Explanation(id="PP-INFO", title="", severity=Severity.INFO, original_does="", replica_does="", effect="",
                       fix="")
    right = Explanation(id="PP-PADDING-MASK-QUIRK", title="", severity=Severity.WARNING, original_does="",
                        replica_does="", effect="", fix="", root_level="pooled", quirk=True)
    row = grade(SelftestRow(name=dev.name, number=dev.number, kind=dev.kind, variant=dev.variant),
                _report([finding], [waived, info, right]), dev)
    assert row.status == "passed" and row.quirk


# -- the hazard batches ----------------------------------------------------------------------------------------

def test_hazard_batches_carry_their_hazards() -> None:
    batches = selftest_batches(SMALL_CONFIG, 0)
    assert [b.tags[0] for b in batches] == list(SELFTEST_TAGS)
    gap, lone, unequal = batches
    # a beat gap (jump of 2) only in the shorter item, inside its last measure
    lengths = gap.lengths
    short = gap.segments[lengths.index(min(lengths))]
    long_ = gap.segments[lengths.index(max(lengths))]
    assert int(torch.diff(short.beat).max()) == 2 and int(torch.diff(long_.beat).max()) == 1
    jump = int(torch.nonzero(torch.diff(short.beat) == 2)[0]) + 1
    assert int(short.measure[jump]) == int(short.measure[-1]) == int(short.measure[jump - 1])
    # the longest item opens with a lone note: the original's span count truncates it
    beat = torch.nn.utils.rnn.pad_sequence([s.beat for s in lone.segments], batch_first=True)
    counts = span_note_counts(beat)
    longest = lone.lengths.index(max(lone.lengths))
    assert int(counts[longest]) < max(lone.lengths)
    # unequal lengths and measure counts
    assert len(set(unequal.lengths)) == 3
    assert len({len(set(s.measure.tolist())) for s in unequal.segments}) == 3
    for b in batches:
        b.validate(SMALL_CONFIG.input_size, SMALL_CONFIG.num_label)


def test_hazard_batches_are_deterministic() -> None:
    a, b = selftest_batches(SMALL_CONFIG, 3), selftest_batches(SMALL_CONFIG, 3)
    for x, y in zip(a, b, strict=True):
        for s, t in zip(x.segments, y.segments, strict=True):
            assert torch.equal(s.features, t.features) and torch.equal(s.beat, t.beat)


def test_default_batches_include_generated_ones() -> None:
    batches = default_selftest_batches(SMALL_CONFIG, 0)
    tags = [t for b in batches for t in b.tags]
    assert set(SELFTEST_TAGS) <= set(tags)
    pytest.importorskip("parity.batches")
    assert "normal" in tags


# -- heavier runs ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_selftest_with_generated_batches_and_fix_verification(result) -> None:
    assert "normal" in {t for b in audit_cache.shared_batches() for t in b.tags}  # generated batches are in
    verified = [r for r in result.rows if r.fix_verified is not None]
    assert verified and all(r.fix_verified for r in verified), format_matrix(result)


def test_an_audit_in_the_shared_cache_is_graded_again_not_run_again() -> None:
    """Two self-test runs through one `audits` dict: the second grades the first's audit (the same object)."""
    audits: dict = {}
    kwargs = {"config": SMALL_CONFIG, "batches": selftest_batches(SMALL_CONFIG, 0)[:1], "deviations":
              ["layernorm-han-output"], "variants": [], "verify_fixes": False, "audits": audits}
    first = run_selftest(**kwargs)
    second = run_selftest(**kwargs)
    assert len(audits) == 1 and first.audits["layernorm-han-output"] is second.audits["layernorm-han-output"]
    assert second.rows[0].to_dict() | {"seconds": 0} == first.rows[0].to_dict() | {"seconds": 0}
    assert first.rows[0].status == "passed", first.rows[0].reason
    other_batches = run_selftest(**{**kwargs, "batches": selftest_batches(SMALL_CONFIG, 0)[1:2]})
    assert len(audits) == 2 and other_batches.audits["layernorm-han-output"] is not first.audits[
        "layernorm-han-output"]


@pytest.mark.original
@pytest.mark.slow
def test_selftest_against_the_real_original(original) -> None:
    res = run_selftest(config=SMALL_CONFIG, seed=0, batches=selftest_batches(SMALL_CONFIG, 0), original=original,
                       verify_fixes=False)
    assert "original" in res.reference
    assert res.ok, "\n" + format_matrix(res)
