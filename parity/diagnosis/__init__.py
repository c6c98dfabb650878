"""Diagnosis: turn findings into explanations with stable ids (see parity.diagnosis.catalog)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.core.findings import Finding
from percepiano_parity.core.report import Explanation
from percepiano_parity.diagnosis.catalog import RULES, rule_by_id
from percepiano_parity.diagnosis.rule import Rule, significant

__all__ = ["RULES", "Rule", "diagnose", "rule_by_id"]


def _first_divergence(findings: Sequence[Finding]) -> tuple[str | None, str | None]:
    root = op = None
    for f in findings:
        if f.kind == "forward.first_divergent":
            root = f.evidence.get("root_level") or f.location
        if f.kind == "forward.first_divergent_op":
            op = f.location
    return root, op


def diagnose(findings: Sequence[Finding], state: Any = None, *, context: dict[str, Any] | None = None
             ) -> tuple[list[Explanation], list[str]]:
    """Explanations (most consequential first) and the keys of significant findings no rule explains.

    `state` is accepted for symmetry with the checks but rules never see it: they read findings only.
    """
    del state
    context = context or {}
    root_dir = context.get("original_root")
    root_path = Path(root_dir) if root_dir else None
    remaining = list(findings)
    explanations: list[Explanation] = []
    root_level, first_op = _first_divergence(findings)
    for rule in sorted(RULES, key=lambda r: r.priority):
        claimed = rule.match(remaining)
        if not claimed:
            continue
        exp = rule.explain(claimed, root_path)
        if any(f.check == "forward" for f in claimed):
            exp.root_level = root_level
            exp.first_divergent_op = first_op
        explanations.append(exp)
        keys = {f.key for f in claimed}
        remaining = [f for f in remaining if f.key not in keys]
    unexplained = sorted({f.key for f in significant(remaining)})
    explanations.sort(key=lambda e: (-int(e.severity), -len(e.evidence), e.id))
    return explanations, unexplained
