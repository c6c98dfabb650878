"""The non-finite finding: a subject whose recordings hold NaN or infinite values, named at the level where they
start, with the module and operation that produced them, so the report says it once ("the replica's output
is not finite") instead of in dozens of `differs: nan` lines. Added to the forward check before diagnosis,
which explains it (PP-NON-FINITE) and claims the NaN figures that follow from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult
from percepiano_parity.subjects.non_finite import FiniteWatch


def _origin(first: dict[str, Any]) -> str:
    if "module" not in first:
        return ""
    module = f"module {first['module']}" if first["module"] else "the model's own forward"
    text = f"; first produced by {module} ({first.get('module_type', '?')})"
    if first.get("op"):
        text += f", operation {first['op']}" + (f" at {first['at']}" if first.get("at") else "")
    return text


def non_finite_finding(watch: FiniteWatch) -> Finding | None:
    """The error finding for one watched subject, or None when its recordings stayed finite."""
    first = watch.first
    if first is None:
        return None
    name, level = watch.info.name, first["level"]
    what = "NaN" if first["nan"] else "infinite"
    where = f"batch {first['batch']}" + (f" ({', '.join(first['tags'])})" if first["tags"] else "")
    part = "loss" if level == "loss" else "output"
    return Finding(
        "forward", "forward.non_finite", level, Severity.ERROR,
        f"the {name}'s {part} is not finite: {what} values from level {level} on ({first['bad']} of "
        f"{first['numel']} elements on {where}){_origin(first)}; every later level, the loss and the gradients "
        "inherit them",
        metrics={"non_finite": first["bad"], "numel": first["numel"]},
        evidence={"subject": name, "batch": first["batch"], "tags": first["tags"], "what": what,
                  **{k: first[k] for k in ("module", "module_type", "op", "at") if k in first}})


def add_non_finite_findings(checks: Sequence[CheckResult], watches: Sequence[FiniteWatch]) -> None:
    """Put each subject's non-finite finding first in the forward check (which then fails)."""
    forward = next((c for c in checks if c.id == "forward"), None)
    if forward is None or forward.status == "skipped":
        return
    for watch in reversed(list(watches)):
        finding = non_finite_finding(watch)
        if finding is not None:
            forward.findings.insert(0, finding)
            forward.status = "failed"
