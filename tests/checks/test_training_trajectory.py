"""Trajectory check: K optimizer steps on both sides. Every training-dynamics deviation of the library shows up
in the steps on its own (no recipe is read here); the faithful recipe, and deviations that do not change the
dynamics, give nothing above info. With PERCEPIANO_ORIGINAL the reference is the original stepped by its own
train_step."""

from __future__ import annotations

import os

import pytest
import torch

from percepiano_parity.checks import trajectory
from percepiano_parity.compare import training
from percepiano_parity.core.findings import Severity
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
from percepiano_parity.subjects.deviations import get_deviation

ROOT = os.environ.get("PERCEPIANO_ORIGINAL")
VARIANT = "han-total"

# deviation -> finding kinds it must produce (at least)
DYNAMICS = {
    "lr-5e-5": {"trajectory.lr", "trajectory.drift"},
    "adamw": {"trajectory.drift"},
    "scheduler-per-epoch": {"trajectory.lr"},
    "scheduler-missing": {"trajectory.lr"},
    "clip-1.0": {"trajectory.grad_norm"},
    "loss-on-logits": {"trajectory.loss", "trajectory.grad_norm"},
    "loss-bce": {"trajectory.loss", "trajectory.grad_norm"},
}
NOT_DYNAMICS = ("r2-variance-weighted", "no-slice-regeneration", "other-label-file")


@pytest.fixture(scope="module")
def reference():
    return trajectory.reference_run(VARIANT)


def _kinds(result):
    return {f.kind for f in result.findings if f.severity >= Severity.WARNING}


def test_faithful_recipe_follows_the_reference_exactly(reference):
    result = trajectory.run(ORIGINAL_RECIPE, VARIANT, reference=reference)
    assert result.status == "passed"
    assert all(f.severity == Severity.INFO for f in result.findings)
    summary = next(f for f in result.findings if f.kind == "trajectory.summary")
    assert summary.metrics["final_max_abs_param_diff"] == 0.0
    rows = result.tables["steps"]
    assert len(rows) == reference.probe.steps == 5
    # the probe is exercised: the reference clips, and its StepLR decays at step 2 and 4
    lrs = [r["lr_reference"] for r in rows]
    assert lrs[0] == lrs[1] > lrs[2] == lrs[3] > lrs[4]
    assert all(r["grad_norm_after_clip_reference"] < r["grad_norm_before_clip_reference"] for r in rows)
    assert all(r["drift_reference"] > 0 for r in rows)


@pytest.mark.parametrize("name", sorted(DYNAMICS))
def test_each_dynamics_deviation_shows_in_the_steps(reference, name):
    result = trajectory.run(get_deviation(name).recipe(), VARIANT, reference=reference)
    assert result.status == "failed"
    assert DYNAMICS[name] <= _kinds(result)
    for f in result.findings:
        if f.severity >= Severity.WARNING:
            assert f.location == "steps" and f.severity == Severity.ERROR
            assert f.metrics["first_differing_step"] >= 0 and f.metrics["max_rel_diff"] > 1e-5
            assert all(len(s["reference"]) == 5 for s in f.evidence["series"].values())


@pytest.mark.parametrize("name", NOT_DYNAMICS)
def test_metric_and_data_deviations_do_not_change_the_steps(reference, name):
    result = trajectory.run(get_deviation(name).recipe(), VARIANT, reference=reference)
    assert not _kinds(result)


def test_scheduler_timing_matches_the_probe(reference):
    per_epoch = trajectory.run(get_deviation("scheduler-per-epoch").recipe(), VARIANT, reference=reference)
    missing = trajectory.run(get_deviation("scheduler-missing").recipe(), VARIANT, reference=reference)
    for result, first in ((per_epoch, 2), (missing, 2)):
        lr = next(f for f in result.findings if f.kind == "trajectory.lr")
        assert lr.metrics["first_differing_step"] == first
    ref_lr, cand_lr = trajectory.series_of(per_epoch, "lr")
    assert cand_lr[4] == pytest.approx(ref_lr[2])  # per-epoch (2 iterations) decays two steps later


def test_optimizer_objects_are_stepped_as_given(reference):
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW(params, lr=2.5e-5, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3000, gamma=0.98)
    result = trajectory.run((opt, sched, "step"), VARIANT, reference=reference)
    assert "trajectory.drift" in _kinds(result)  # AdamW, read from the object, not from a recipe
    opt = torch.optim.Adam(params, lr=2.5e-5, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3000, gamma=0.98)
    assert not _kinds(trajectory.run((opt, sched, "step"), VARIANT, reference=reference))


def test_dropout_is_disabled_on_private_copies():
    from percepiano_parity.core.config import SMALL_CONFIG
    from percepiano_parity.replica.variants import build

    model = build(VARIANT, SMALL_CONFIG, seed=7)
    clone = training.without_dropout(model)
    assert all(m.p == 0 for m in clone.modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.dropout == 0 for m in clone.modules() if isinstance(m, torch.nn.LSTM))
    assert any(m.p > 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))  # the user's model untouched
    assert clone.training


@pytest.mark.slow
@pytest.mark.original
@pytest.mark.skipif(not ROOT, reason="PERCEPIANO_ORIGINAL not set: point it at a PercePiano checkout "
                                     "(e.g. ../shared/percepiano-original) to step the real original")
def test_against_the_original_train_step():
    from percepiano_parity import original_adapter

    original = original_adapter.load(ROOT)
    ref = trajectory.reference_run(VARIANT, original=original)
    assert ref.trajectory.error is None
    assert ref.trajectory.description.startswith("original")
    faithful = trajectory.run(ORIGINAL_RECIPE, VARIANT, reference=ref)
    assert faithful.status == "passed", [f.message for f in faithful.findings]
    summary = next(f for f in faithful.findings if f.kind == "trajectory.summary")
    assert summary.metrics["final_max_abs_param_diff"] < 1e-7
    for name, kinds in DYNAMICS.items():
        assert kinds <= _kinds(trajectory.run(get_deviation(name).recipe(), VARIANT, reference=ref)), name
