"""Every text of a recipe explanation describes the difference it names, with every figure filled: for each
recipe key a synthetic recipe.mismatch (what the recipe check emits), with and without a trajectory that
differs, gives an explanation whose texts name the replica's value and never say "n/a"."""

from __future__ import annotations

import pytest

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.original_adapter.recipe import KEYS

# key -> (original, replica, the explanation id, words its texts must contain)
CHANGES = {
    "optimizer": ("Adam", "SGD", "PP-OPTIMIZER", "SGD"),
    "lr": (2.5e-5, 1e-4, "PP-LEARNING-RATE", "0.0001"),
    "weight_decay": (1e-5, 0.0, "PP-WEIGHT-DECAY", "0 instead of 1e-05"),
    "weight_decay_coupling": ("l2", "decoupled", "PP-OPTIMIZER", "decoupled (as AdamW)"),
    "betas": ([0.9, 0.999], [0.8, 0.999], "PP-ADAM-BETAS", "[0.8, 0.999]"),
    "eps": (1e-8, 1e-6, "PP-ADAM-EPS", "eps 1e-06 instead of 1e-08"),
    "amsgrad": (False, True, "PP-AMSGRAD", "running maximum"),
    "scheduler": ("StepLR", "CosineAnnealingLR", "PP-SCHEDULER", "CosineAnnealingLR"),
    "scheduler_interval": ("iteration", "epoch", "PP-SCHEDULER", "epoch"),
    "grad_clip": (2.0, 0.5, "PP-GRAD-CLIP", "between 0.5 and 2"),
    "grad_clip_algorithm": ("norm", "value", "PP-GRAD-CLIP-ALGORITHM", "by value instead of by norm"),
    "accumulate_grad_batches": (1, 3, "PP-ACCUMULATION", "Accumulates 3 batches"),
    "batch_size": (8, 32, "PP-RECIPE", "batch_size: 8 -> 32"),
    "loss": ("mse_after_sigmoid", "mse_on_logits", "PP-LOSS", "mse_on_logits"),
    "loss_reduction": ("mean", "sum", "PP-LOSS-REDUCTION", "instead of averaging"),
    "r2_average": ("uniform_average", "variance_weighted", "PP-R2-AVERAGE", "variance_weighted"),
    "checkpoint_criterion": ("valid_loss", "last_epoch", "PP-MODEL-SELECTION", "last epoch"),
    "checkpoint_mode": ("min", "max", "PP-MODEL-SELECTION", "highest"),
    "early_stopping": ("none", "val_loss (min, patience 3)", "PP-MODEL-SELECTION", "stops early"),
}


def _mismatch(key: str) -> Finding:
    original, replica, _, _ = CHANGES[key]
    return Finding("recipe", "recipe.mismatch", key, Severity.ERROR, f"recipe {key} differs",
                   metrics={"original": original, "replica": replica},
                   evidence={"original": original, "replica": replica, "source": "train_m2pf.py:1 x"})


def _trajectory() -> list[Finding]:
    return [Finding("trajectory", "trajectory.loss", "steps", Severity.ERROR, "loss differs",
                    metrics={"first_differing_step": 0, "max_rel_diff": 0.5, "series": ["loss"]}),
            Finding("trajectory", "trajectory.summary", "steps", Severity.INFO, "5 steps compared")]


def test_every_key_of_the_recipe_check_has_a_case_here():
    uncovered = set(KEYS) - set(CHANGES) - {"epochs", "precision", "key_augmentation", "slice_length",
                                            "slices_regenerated_each_epoch", "validation", "label_file", "seed",
                                            "scheduler_step_size", "scheduler_gamma"}
    assert uncovered == set()


@pytest.mark.parametrize("with_trajectory", [False, True], ids=["recipe-only", "with-trajectory"])
@pytest.mark.parametrize("key", sorted(CHANGES))
def test_the_explanation_names_the_difference_and_fills_every_figure(key, with_trajectory):
    findings = [_mismatch(key)] + (_trajectory() if with_trajectory else [])
    explanations, unexplained = diagnose(findings)
    assert unexplained == []
    first = explanations[0]
    expected_id, words = CHANGES[key][2], CHANGES[key][3]
    assert first.id == expected_id
    text = " ".join([first.title, first.original_does, first.replica_does, first.effect, first.fix])
    assert words in text
    assert "n/a" not in text and "None" not in text
    if with_trajectory and key != "r2_average":  # R2 is a metric: its effect says training is unaffected
        assert "the loss differ from step 0 on" in first.effect
    else:
        assert "step" not in first.effect or "did not run" in first.effect
