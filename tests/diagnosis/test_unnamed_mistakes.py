"""Mistakes no catalog rule names, explained from measurements alone (issue: differential diagnosis).

Each case is a small variant of the worked example (tests/diagnosis/example_variants.py) audited against the
real original at the small model size: the first explanation names the measured relation at the right level
and operation, and its mechanical fix is verified. The faithful controls stay EQUIVALENT. One case of each sweep
is the fast tier; each audit runs once per session (`audit`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from tiers import sweep

from percepiano_parity.commands.check import run_check
from percepiano_parity.commands.options import resolve_options
from percepiano_parity.core.findings import Severity

VARIANTS = Path(__file__).with_name("example_variants.py")


def audit(original, case: str, **extra):
    """The case's audit, once per session for the same checkout and options (tests only read the report)."""
    return _audit(str(original.root), case, tuple(sorted(extra.items())))


@functools.cache
def _audit(root: str, case: str, extra: tuple):
    options = {"replica": f"{VARIANTS}:build_{case}", "original": root, "model_config": "small",
               "batches": 1, "edge_cases": False, "training_checks": False, **dict(extra)}
    return run_check(resolve_options(options, use_config_file=False, environ={}))


def first(report):
    assert report.explanations, "no explanation"
    return report.explanations[0]


CASES = [
    # case, explanation id, root level, words of the title or replica_does that must be there, op fragment
    ("softmax_over_heads", "PP-REL-SOFTMAX-AXIS", "pooled", ("axis 2 (heads", "axis 1 (time"), "softmax"),
    ("swapped_blocks", "PP-REL-FEATURE-ORDER", "total_note_cat", ("feature blocks [64:96] and [96:128] swapped",),
     None),
    ("no_tanh", "PP-REL-MISSING-OP", "beat_nodes", ("torch.tanh",), "einsum"),
    ("dropout_in_eval", "PP-REL-RANDOM-IN-EVAL", "logits", ("F.dropout", "training=True"), "dropout"),
    ("gate_order", "PP-REL-LSTM-GATE-ORDER", "note", ("i, g, f, o",), "notes.lstm"),
    ("sorted_packing", "PP-REL-BATCH-ORDER", "note", ("sorted by length, longest first",), None),
    # mistakes none of the above names, explained by the same mechanism
    ("relu_head", "PP-REL-DIFFERENT-OP", "logits", ("F.relu", "F.gelu"), "relu"),
    ("scaled_beat_scores", "PP-REL-EXTRA-OP", "beat_nodes", ("Tensor.div",), "div"),
    ("voice_first", "PP-REL-FEATURE-ORDER", "total_note_cat", ("feature blocks [0:32] and [32:64] swapped",), None),
]


@pytest.mark.original
@pytest.mark.parametrize("case,rule,level,words,op", sweep(CASES, fast={"softmax_over_heads"}))
def test_the_measured_relation_is_the_first_explanation(original, case, rule, level, words, op):
    report = audit(original, case)
    exp = first(report)
    assert exp.id == rule, [e.id for e in report.explanations]
    assert exp.root_level == level
    text = exp.title + " " + exp.replica_does
    for word in words:
        assert word in text, text
    if op is not None:
        assert op in (exp.first_divergent_op or ""), exp.first_divergent_op
    assert exp.fix_verified is True, exp.effect_measured
    assert float(exp.effect_measured["residual"]) <= 1e-5
    assert [e.id for e in report.explanations if e.severity >= Severity.WARNING] == [rule], \
        "one mistake, one explanation"
    for e in report.explanations:
        for text in (e.title, e.original_does, e.replica_does, e.effect, e.fix):
            assert "n/a" not in text and "<" not in text, text


@pytest.mark.original
@pytest.mark.parametrize("case", sweep(["hand_lstm_control", "inf_mask"], fast={"inf_mask"}))
def test_harmless_rewrites_stay_equivalent(original, case):
    report = audit(original, case)
    assert report.verdict(Severity.WARNING) == "equivalent", [e.id for e in report.explanations]


@pytest.mark.slow
@pytest.mark.original
def test_a_class_is_not_a_deviation(original):
    """The faithful hand-written LSTM: its own class, same parameters and outputs: information only."""
    report = audit(original, "hand_lstm_control")
    kinds = {f.kind for f in report.findings if f.severity >= Severity.WARNING}
    assert "structure.setting" not in kinds
    assert any(f.kind == "structure.implementation" and f.location == "score_encoder.lstm" for f in report.findings)


@pytest.mark.slow
@pytest.mark.original
def test_no_second_explanation_for_the_trajectory_a_forward_mistake_moves(original):
    report = audit(original, "swapped_blocks", training_checks=True)
    ids = [e.id for e in report.explanations]
    assert ids[0] == "PP-REL-FEATURE-ORDER"
    assert "PP-TRAJECTORY" not in ids
    trajectory = [f.key for f in report.findings if f.check == "trajectory" and f.severity >= Severity.WARNING]
    assert trajectory and set(trajectory) <= set(report.explanations[0].evidence)


@pytest.mark.slow
@pytest.mark.original
def test_one_module_used_twice_is_explained_and_the_audit_goes_on(original):
    """`self.voices.lstm = self.notes.lstm`: a structure finding, never an aborted mapping; untying it is the
    verified fix."""
    report = audit(original, "shared_lstm")
    exp = first(report)
    assert exp.id == "PP-TIED-PARAMETERS", [e.id for e in report.explanations]
    assert "notes.lstm and voices.lstm" in exp.title
    assert exp.fix_verified is True
    assert {c.id for c in report.checks} >= {"structure", "forward", "backward"}
