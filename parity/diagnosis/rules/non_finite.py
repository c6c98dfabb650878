"""A subject whose forward (or loss) is not finite: one explanation instead of NaN in every figure.

Tried before every other rule: NaN or infinite values make every later comparison meaningless, so the
explanation claims the `forward.non_finite` finding and every finding whose figures are not finite (the
levels, loss and gradients that inherit them). Findings with finite figures (a separate deviation upstream)
stay for the other rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import Rule, having

CONSEQUENCE_CHECKS = ("forward", "backward", "attention", "precision")


def _not_finite(finding: Finding) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for v in finding.metrics.values())


def _non_finite(findings: Sequence[Finding]) -> list[Finding] | None:
    hits = having(findings, "forward.non_finite")
    if not hits:
        return None
    levels = {f.location for f in hits}
    consequences = [f for f in findings if f.kind != "forward.non_finite" and f.check in CONSEQUENCE_CHECKS
                    and (_not_finite(f) or (f.kind.startswith("forward.first_divergent")
                                            and (f.evidence.get("root_level") or f.location) in levels))]
    return hits + consequences


def _measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    first = having(claimed, "forward.non_finite")[0]
    ev = first.evidence
    module = ev.get("module")
    origin = "an operation the audit could not locate (no module of the model returned it)"
    if module is not None:
        where = f"module {module}" if module else "the model's own forward"
        origin = f"{where} ({ev.get('module_type', '?')})"
        if ev.get("op"):
            origin += f", operation {ev['op']}" + (f" at {ev['at']}" if ev.get("at") else "")
    return {"subject": ev.get("subject", "replica"), "what": ev.get("what", "NaN"), "level": first.location,
            "part": "loss" if first.location == "loss" else "output", "origin": origin,
            "batch": ev.get("batch"), "bad": first.metrics.get("non_finite"), "numel": first.metrics.get("numel")}


RULES: list[Rule] = [
    Rule(
        id="PP-NON-FINITE", title="The {subject}'s {part} is not finite ({what} from level {level})",
        severity=Severity.ERROR,
        original_does="Finite activations, loss and gradients on every batch of the audit.",
        replica_does="The {subject} produces {what} values at level {level} ({bad} of {numel} elements on batch "
                     "{batch}); first produced by {origin}.",
        effect="Every later level, the loss and the gradients are {what} too, so no other figure of this run can "
               "be compared; training would diverge at once.",
        fix="Look at {origin}: a division by zero, the log or square root of a value that is not positive, an "
            "overflow, or a weight that is already NaN. Fix it there, then run the audit again.",
        match=_non_finite, measure=_measure, priority=1, tags=("numerics",)),
]
