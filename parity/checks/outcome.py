"""Outcome parity on real data (`parity train-compare`): the learning curves of the original and a replica trained
side by side from the same initial weights on the same real batches in the same order (the runs themselves:
compare.training.train_compare), with per-epoch loss and validation R2.

Each side steps itself: the original through its own `train_m2pf.train_step` (train_m2pf.py:167-183: forward,
zero_grad, backward, clip_grad_norm_, optimizer and scheduler step), the replica through its recipe
(`replica.recipe.train_step`), with the published recipe (Adam, lr 2.5e-5, weight decay 1e-5, StepLR 3000/0.98
stepped per iteration, clip 2.0) unless the replica's recipe says otherwise. Dropout is off on both sides (the
replica's dropout RNG stream differs from the original's; see the README). Batch order: the train loader's
RandomSampler seeded with seed + epoch (batches.real.loader). After every epoch both models are evaluated on the
fold's valid split the original's way (train_m2pf.py:185-210 get_validation_loss: sum of batch-mean MSE losses of
the sigmoid outputs / number of samples, sklearn r2_score with uniform average).

The noise: a third run, the replica from its initial weights rounded differently in the last float32 bit
(each weight times 1 + 2^-23), measures how far float32 rounding alone moves each curve; a curve parts where
the two sides differ by more than NOISE_FACTOR times that (and more than 1e-6 relative).

"""

from __future__ import annotations

from typing import Any

from percepiano_parity.compare.training import Curve
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult

CHECK = "outcome"
NOISE_FACTOR = 10.0
MIN_REL = 1e-6
METRICS = ("train_loss", "valid_loss", "valid_r2")


def _tolerance(value: float, noise: float) -> float:
    return max(NOISE_FACTOR * noise, MIN_REL * abs(value))


def outcome_check(original: Curve, replica: Curve, noise: Curve | None, *, settings: dict[str, Any]) -> CheckResult:
    """The per-epoch table, the first epoch where the curves part beyond the measured noise, and the timing."""
    rows, parted = [], {}
    for e in range(len(original.train_loss)):
        row: dict[str, Any] = {"epoch": e + 1}
        for metric in METRICS:
            a, b = getattr(original, metric)[e], getattr(replica, metric)[e]
            n = abs(getattr(noise, metric)[e] - b) if noise is not None else 0.0
            tol = _tolerance(a, n)
            row.update({f"original {metric}": a, f"replica {metric}": b, f"noise {metric}": n})
            if abs(a - b) > tol and metric not in parted:
                parted[metric] = (e + 1, a, b, tol)
        row.update({"original s": original.seconds[e], "replica s": replica.seconds[e]})
        rows.append(row)
    findings = []
    if parted:
        first = min(epoch for epoch, *_ in parted.values())
        what = ", ".join(f"{m} {a:.6g} vs {b:.6g} (tolerance {t:.2g})" for m, (ep, a, b, t) in parted.items()
                         if ep == first)
        findings.append(Finding(CHECK, "outcome.parted", "curves", Severity.ERROR,
                                f"the learning curves part at epoch {first}: {what}",
                                {"first_epoch": first, "epochs": len(rows)},
                                {"metrics": {m: {"epoch": ep, "original": a, "replica": b, "tolerance": t}
                                             for m, (ep, a, b, t) in parted.items()}, **settings}))
    time_note = {"original_seconds_per_epoch": original.seconds, "replica_seconds_per_epoch": replica.seconds}
    status = "failed" if findings else "passed"
    return CheckResult(CHECK, status, findings, tables={"epochs": rows, "timing": [time_note]})
