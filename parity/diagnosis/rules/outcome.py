"""Rules for outcome parity (`parity train-compare`, findings of parity.checks.training.outcome)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import Rule, SourceRef, having


def _measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "outcome.parted"):
        metrics = f.evidence.get("metrics", {})
        first = f.metrics.get("first_epoch")
        parts = [f"{m} {v['original']:.6g} vs {v['replica']:.6g}" for m, v in metrics.items() if v["epoch"] == first]
        return {"first_epoch": first, "epochs": f.metrics.get("epochs"), "what": "; ".join(parts),
                "deviation": f.evidence.get("deviation") or "none"}
    return {}


RULES: list[Rule] = [
    Rule(
        id="PP-OUTCOME-PARTED", title="The learning curves part at epoch {first_epoch}",
        severity=Severity.ERROR,
        original_does="Trains with train_m2pf.train_step and the published recipe (Adam 2.5e-5, weight decay "
                      "1e-5, StepLR 3000/0.98 per iteration, clip 2.0), validated each epoch by "
                      "get_validation_loss.",
        replica_does="From the same initial weights on the same batches in the same order, its curves leave the "
                     "original's beyond the measured float32 noise at epoch {first_epoch}: {what} (deviation "
                     "applied: {deviation}).",
        effect="The replica does not reproduce the original's training outcome; the recipe or data checks of "
               "`parity check` name the step that differs.",
        fix="Run `parity check` with its recipe and trajectory checks on this replica: the first differing step "
            "and its explanation point at the cause.",
        match=lambda fs: having(fs, "outcome.parted") or None, measure=_measure, priority=33,
        refs=(SourceRef("train_m2pf.py", r"def train_step"), SourceRef("train_m2pf.py", r"def get_validation_loss"))),
]
