"""The recipe cases of the worked example, audited end to end as a user runs `parity check --replica ...`:
the replica's own loss is used (sum instead of mean is found and explained as a constant ratio, with the
element count), and Adam's eps is explained as eps, with the trajectory's first differing step. Against the
shipped bundle, and against the real original when PERCEPIANO_ORIGINAL is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from percepiano_parity.commands.check import run_check
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.options import CheckOptions

VARIANTS = Path(__file__).resolve().parents[1] / "checks" / "lightning_variants.py"
ROOT = os.environ.get("PERCEPIANO_ORIGINAL")


def _audit(factory: str, original: str | None = None):
    options = CheckOptions(replica=f"{VARIANTS}:{factory}", original=original, model_config="small", batches=1,
                           max_notes=16, edge_cases=False, format="json", threads=1)
    return run_check(options)


def _texts(explanation) -> str:
    return " ".join([explanation.title, explanation.original_does, explanation.replica_does, explanation.effect,
                     explanation.fix])


@pytest.mark.parametrize("reference", ["bundle", pytest.param("original", marks=[pytest.mark.original, pytest.mark.slow,
    pytest.mark.skipif(not ROOT, reason="PERCEPIANO_ORIGINAL not set: point it at a PercePiano checkout")])])
def test_a_summed_training_loss_is_found_and_explained_as_a_constant_ratio(reference):
    report = _audit("build_sum_loss", ROOT if reference == "original" else None)
    assert report.verdict(Severity.WARNING) == "mismatch" and int(report.exit_code(Severity.WARNING)) == 1
    first = report.explanations[0]
    assert first.id == "PP-LOSS-REDUCTION" and first.title == "Loss reduced by sum instead of the mean"
    # the probe batch has 4 items x 19 labels: the summed loss is 76 x the mean (float32 rounding)
    assert "4 items x 19 labels = 76 elements: the replica's loss is 76 x the original's" in first.replica_does
    assert "differ from step 0 on" in first.effect and "n/a" not in _texts(first)
    assert [e.id for e in report.explanations] == ["PP-LOSS-REDUCTION"] and report.unexplained == []
    recipe = next(c for c in report.checks if c.id == "recipe")
    row = next(r for r in recipe.tables["recipe"] if r["key"] == "loss_reduction")
    assert (row["original"], row["replica"], row["status"]) == ("mean", "sum", "mismatch")
    assert row["replica_source"].startswith("SumLoss.training_step, measured")


def test_adam_eps_is_explained_as_eps_from_step_0():
    report = _audit("build_adam_eps")
    first = report.explanations[0]
    assert first.id == "PP-ADAM-EPS" and first.title == "Adam epsilon differs (eps: 1e-08 -> 1e-07)"
    assert "the parameters differ from step 0 on" in first.effect
    assert "AdamW" not in first.effect + first.fix and "n/a" not in _texts(first)
    trajectory = next(c for c in report.checks if c.id == "trajectory")
    assert all(f.metrics.get("forward_differs") is False for f in trajectory.findings)
