"""Training and data parity of one audit: the recipe, trajectory and data checks for the resolved
reference and candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from percepiano_parity.checks import data_ops as data_check
from percepiano_parity.checks import recipe as recipe_check
from percepiano_parity.checks import trajectory
from percepiano_parity.core.config import SMALL_CONFIG, ModelConfig
from percepiano_parity.core.errors import (
    UsageError,
    UserCodeError,
    describe,
    is_code_failure,
    location,
    user_frame,
)
from percepiano_parity.core.options import CheckOptions
from percepiano_parity.core.report import CheckResult
from percepiano_parity.subjects.sides import (
    Candidate,
    Reference,
)

# ----------------------------------------------------------------------------------------------------------
# Training and data parity: the recipe, trajectory and data checks.
#
#     results = checks_for(original_or_none, Recipe(...), "han-total", SMALL_CONFIG, 7, original=original)
#
# * `recipe_check`: the original's effective training configuration (parser defaults + the variant's training
#   scripts + loop facts, read from the checkout as text) against the replica's Recipe, optimizer objects or
#   Lightning-style `configure_optimizers()`; without a checkout, against the recorded recipe.
# * `trajectory`: K optimizer steps from the same weights on the same batches on both sides (the original's own
#   `train_step` when the original is given), comparing loss, gradient norms, lr and drift.
# * `data_check`: slicing, collate, loss and R2 parity with the original's functions (or their recorded
#   outputs), the label file a run reads and slice regeneration.


def _guarded(check_id: str, run: Any) -> CheckResult:
    """Run one check; an error of the check itself becomes a skipped result with the reason, not a crash."""
    try:
        return run()
    except Exception as exc:  # the audit must still report the other checks
        return CheckResult(check_id, "skipped", reason=f"{check_id} check could not run: {type(exc).__name__}: {exc}")


def checks_for(reference_recipe_source: Any, candidate_recipe: Any, variant: str, config: ModelConfig | None,
               seed: int, *, original: Any = None, candidate_model: nn.Module | None = None,
               probe: trajectory.Probe | None = None, data_counts: dict[str, int] | None = None,
               data_reference_path: str | Path | None = None, adapter: Any = None,
               overrides: dict[str, str] | None = None) -> list[CheckResult]:
    """The recipe, trajectory and data check results for one variant.

    reference_recipe_source: an `original_adapter` Original (or a checkout path) to read the original's recipe
        from, an already read `recipe_check.OriginalRecipe` (e.g. replayed from a bundle), or None for the
        recorded recipe.
    candidate_recipe: a replica `Recipe`, an optimizer (+ scheduler) pair, or a Lightning-style module /
        `configure_optimizers` callable / its result.
    config: model configuration for the trajectory models (None: SMALL_CONFIG; a given candidate_model's own
        config wins).
    original: an `original_adapter` Original to run the trajectory reference and the data ops on, or None
        (faithful replica / recorded outputs).
    candidate_model: the model to step on the candidate side (default: the faithful replica of `variant`).
    probe, data_counts, data_reference_path: trajectory probe settings, numbers of data-op cases, and a recorded
        data-op reference other than the packaged one (e.g. a bundle's data_ops.json).
    adapter: the candidate's adapter (its forward, loss, training_batch and trainer are read; see
        docs/user_replica.md); overrides: the audit's weight-map overrides (reference name -> candidate name).
    """
    original_side = recipe_check.original_recipe(reference_recipe_source, variant)
    config = getattr(candidate_model, "config", None) or config or SMALL_CONFIG
    probe = probe or trajectory.Probe()
    candidate_side = _guarded_read(candidate_recipe, candidate_model, adapter, probe, config)
    reference_recipe = original_side.as_recipe()
    results = [
        _guarded("recipe", lambda: recipe_check.compare(original_side, candidate_side)
                 if not isinstance(candidate_side, Exception) else _raise(candidate_side)),
        _guarded("trajectory", lambda: trajectory.run(
            candidate_side if not isinstance(candidate_side, Exception) else _raise(candidate_side), variant,
            config, seed, original=original, reference_recipe=reference_recipe, candidate_model=candidate_model,
            probe=probe, adapter=adapter, overrides=overrides)),
        _guarded("data", lambda: data_check.run(
            candidate_recipe, variant=variant, original=original, reference_recipe=reference_recipe,
            counts=data_counts, reference_path=data_reference_path)),
    ]
    return results


def _guarded_read(candidate: Any, model: nn.Module | None, adapter: Any, probe: trajectory.Probe,
                  config: ModelConfig) -> Any:
    """The candidate's recipe (with the model: its trainer, hparams and its loss measured on the first two
    probe batches), or the exception that stopped the reading."""
    try:
        inputs = []
        if model is not None:
            from percepiano_parity.subjects.calling import model_input

            inputs = [model_input(model, b) for b in trajectory.probe_batches(probe, config)[:2]]
        return recipe_check.read_candidate(candidate, model=model, adapter=adapter, inputs=inputs)
    except Exception as exc:
        return exc


def _raise(exc: Exception) -> Any:
    raise exc


# ----------------------------------------------------------------------------------------------------------
# The training checks of one audit (recipe, trajectory, data) for the resolved reference and candidate, or
# skipped results that say why.

TRAINING_CHECKS = ("recipe", "trajectory", "data")


def training_checks(options: CheckOptions, reference: Reference, candidate: Candidate, variant: str,
                    config: ModelConfig, seed: int, overrides: dict[str, str] | None = None) -> list[CheckResult]:
    """Recipe, trajectory and data checks through checks.training, or skipped results that say why.

    With a live original they read its checkout and run its training step; with a bundle (or the test hook)
    they compare against the recorded recipe and data outputs, and the faithful replica's training step.
    """
    if not options.training_checks:
        return [CheckResult(c, "skipped", reason="turned off (--no-training-checks)") for c in TRAINING_CHECKS]
    from percepiano_parity import original_adapter
    from percepiano_parity.subjects.calling import CalledThrough

    original = reference.original
    adapter = candidate.adapter
    if candidate.call is not None:  # a user's model: stepped through the calling path the forward check used
        adapter = CalledThrough(adapter, candidate.call)
    try:
        results = checks_for(original, candidate.recipe, variant, config, seed, original=original,
                             candidate_model=candidate.subject.model, adapter=adapter,
                             overrides=overrides)
    except original_adapter.OriginalLoadError as exc:
        raise UsageError(f"original: {exc}") from None
    except UsageError:
        raise
    except BaseException as exc:  # a failing extra check must not hide the model verdict
        if not is_code_failure(exc):
            raise
        where = user_frame(exc)
        if where is not None:  # the replica's own code failed while training: the user's to fix
            raise UserCodeError("model (in the training checks)", exc, location(exc)) from exc
        return [CheckResult(c, "skipped", reason=f"could not run (a bug in the tool, please report it): "
                                                  f"{describe(exc)}") for c in TRAINING_CHECKS]
    got = {r.id for r in results}
    if candidate.recipe is None:
        for r in results:
            if r.id == "recipe" and r.status == "skipped" and not r.reason:
                r.reason = "the replica offers no recipe (give its adapter a recipe() method, or the model " \
                           "configure_optimizers)"
    return list(results) + [CheckResult(c, "skipped", reason="not produced by the training checks")
                            for c in TRAINING_CHECKS if c not in got]
