"""The few figures a training log keeps of an audit, and the one line that says why a gate stopped training."""

from __future__ import annotations

import math
from pathlib import Path

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report

PREFIX = "parity/"


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def worst_level_error(report: Report) -> float | None:
    """The largest relative error of any level (forward check, cumulative), or None when not measured.
    A non-finite error (nan, inf) counts as infinitely bad."""
    check = report.check("forward")
    worst: float | None = None
    for row in (check.tables.get("levels") or []) if check is not None else []:
        value = row.get("cumulative_max_rel", row.get("max_rel")) if isinstance(row, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            x = float(value) if math.isfinite(value) else math.inf
            worst = x if worst is None else max(worst, x)
    return worst


def headline(report: Report, fail_on: Severity | str = Severity.WARNING) -> dict[str, float]:
    """Numbers for a metrics logger, keyed "parity/...":

    equivalent (1.0 or 0.0), blocking_findings, explanations (diagnosed deviations, waived ones included),
    checks_failed and, when the forward check measured levels, worst_level_rel_error (greatest relative
    error of any level; float("inf") for a non-finite one).
    """
    severity = fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))
    out = {
        f"{PREFIX}equivalent": 1.0 if report.verdict(severity) == "equivalent" else 0.0,
        f"{PREFIX}blocking_findings": float(len(report.blocking(severity))),
        f"{PREFIX}explanations": float(len(report.explanations)),
        f"{PREFIX}checks_failed": float(sum(1 for c in report.checks if c.status == "failed")),
    }
    worst = worst_level_error(report)
    if worst is not None:
        out[f"{PREFIX}worst_level_rel_error"] = worst
    return out


def mismatch_line(report: Report, fail_on: Severity | str, where: Path | str | None) -> str:
    """One line: the verdict, the most serious blocking explanation (or finding), and where the report is."""
    severity = fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))
    blocking = report.blocking(severity)
    keys = {f.key for f in blocking}
    explanations = sorted((e for e in report.explanations if not e.waived and keys.intersection(e.evidence)),
                          key=lambda e: (-int(e.severity), -len(e.evidence)))
    parts = [f"parity: MISMATCH {report.variant} at or above {severity.label}"]
    if explanations:
        first = explanations[0]
        at = f" at {first.root_level}" if first.root_level else ""
        parts.append(f"{first.id} ({first.severity.label}){at}: {first.title}")
        if len(explanations) > 1:
            parts.append(f"{len(explanations) - 1} more explanation{'s' if len(explanations) > 2 else ''}")
    elif blocking:
        worst = max(blocking, key=lambda f: int(f.severity))
        parts.append(f"{worst.key}: {worst.message}")
    parts.append(f"{len(blocking)} blocking finding{'s' if len(blocking) != 1 else ''}")
    parts.append(f"report: {where}" if where else "no report written")
    return " ".join("; ".join(parts).split())
