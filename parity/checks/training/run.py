"""The training checks of one audit (recipe, trajectory, data) for the resolved reference and candidate, or
skipped results that say why.
"""

from __future__ import annotations

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.guard import UserCodeError, describe, is_code_failure, location, user_frame
from percepiano_parity.core.options import CheckOptions
from percepiano_parity.core.report import CheckResult
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.candidate import Candidate
from percepiano_parity.subjects.reference import (
    Reference,
)

TRAINING_CHECKS = ("recipe", "trajectory", "data")


def training_checks(options: CheckOptions, reference: Reference, candidate: Candidate, variant: str,
                    config: ModelConfig, seed: int, overrides: dict[str, str] | None = None) -> list[CheckResult]:
    """Recipe, trajectory and data checks through checks.training, or skipped results that say why.

    With a live original they read its checkout and run its training step; with a bundle (or the test hook)
    they compare against the recorded recipe and data outputs, and the faithful replica's training step.
    """
    if not options.training_checks:
        return [CheckResult(c, "skipped", reason="turned off (--no-training-checks)") for c in TRAINING_CHECKS]
    try:
        from percepiano_parity.checks.training.suite import checks_for
    except ImportError:
        return [CheckResult(c, "skipped", reason="training checks are not available in this installation")
                for c in TRAINING_CHECKS]
    from percepiano_parity import original_adapter
    from percepiano_parity.checks.training.calling import CalledThrough

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
