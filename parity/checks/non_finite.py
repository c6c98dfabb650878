"""The non-finite finding: a subject whose recordings hold NaN or infinite values, named at the level where they
start, so the report says it once instead of in dozens of `differs: nan` lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from percepiano_parity.core.report import Report
from percepiano_parity.subjects.watch import FiniteWatch


def add_non_finite_findings(report: Report, watches: Sequence[FiniteWatch]) -> None:
    """One error finding per subject whose recordings hold NaN/inf, at the level where they start."""
    from percepiano_parity.core.findings import Finding, Severity

    forward = report.check("forward")
    if forward is None:
        return
    for watch in watches:
        first = watch.first
        if first is None:
            continue
        name, level = watch.info.name, first["level"]
        what = "NaN" if first["nan"] else "infinite"
        where = f"batch {first['batch']}" + (f" ({', '.join(first['tags'])})" if first["tags"] else "")
        finding = Finding(
            "forward", "forward.non_finite", level, Severity.ERROR,
            f"the {name} produces {what} values at level {level}: {first['bad']} of {first['numel']} elements "
            f"on {where}; every later level, the loss and the gradients inherit them",
            metrics={"non_finite": first["bad"], "numel": first["numel"]},
            evidence={"subject": name, "batch": first["batch"], "tags": first["tags"]})
        forward.findings.insert(0, finding)
        forward.status = "failed"
        if finding.key not in report.unexplained:
            report.unexplained.insert(0, finding.key)
