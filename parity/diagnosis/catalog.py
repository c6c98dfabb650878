"""The catalog of known deviations: one rule per mistake a re-implementation of PercePiano can make.

Ids are stable (reports, waivers and CI refer to them). Each rule matches a pattern of findings only.
Order matters: specific rules run before generic ones and claim the findings they explain, including the
consequences downstream of the level where the deviation sits.
"""

from __future__ import annotations

from collections.abc import Sequence

from parity.diagnosis.rule import Rule, SourceRef, having, significant
from parity.findings import Finding, Severity
from parity.levels import level_order


def downstream(findings: Sequence[Finding], from_level: str | None) -> list[Finding]:
    """Findings that are consequences of a change at `from_level`: forward findings at or after it,
    the loss and gradients, attention shifts, and the first-divergence summary."""
    start = level_order(from_level) if from_level else -1
    out = []
    for f in findings:
        if f.check == "forward" and f.kind in ("forward.mismatch", "forward.shape_mismatch", "forward.local_mismatch",
                                                "forward.padding_mismatch", "forward.first_divergent"):
            if f.kind == "forward.first_divergent" or level_order(f.location) >= start:
                out.append(f)
        elif f.check == "backward" and f.kind in ("backward.loss", "backward.grad_mismatch"):
            out.append(f)
        elif f.check == "attention" and f.kind in ("attention.entropy_shift", "attention.weights_mismatch",
                                                   "attention.collapsed"):
            if level_order(f.location) >= start - 1:
                out.append(f)
    return out


def root_of(findings: Sequence[Finding]) -> str | None:
    for f in findings:
        if f.kind == "forward.first_divergent":
            return f.evidence.get("root_level") or f.location
    return None


def _extra_normalisation(findings: Sequence[Finding]) -> list[Finding] | None:
    norms = having(findings, "structure.extra_module",
                   where=lambda f: f.evidence.get("module_type") in ("LayerNorm", "BatchNorm1d", "RMSNorm"))
    if not norms:
        return None
    return norms + downstream(findings, root_of(findings))


def _precision(findings: Sequence[Finding]) -> list[Finding] | None:
    lowered = having(findings, "precision.activations")
    if not lowered:
        return None
    return lowered + having(findings, "precision.parameters") + downstream(findings, None)


RULES: list[Rule] = [
    Rule(
        id="PP-EXTRA-NORM", title="A normalisation layer the original does not have",
        severity=Severity.ERROR,
        original_does="No normalisation anywhere in the HAN: raw LSTM outputs, contractors and attentions.",
        replica_does="Adds a normalisation module (see evidence) that rescales every feature of its level.",
        effect="Changes every level after it and the gradients of everything before it; shifts the attention "
               "entropy of the pooling and the scale the head sees, so training dynamics differ.",
        fix="Remove the normalisation module.",
        match=_extra_normalisation, refs=(SourceRef("model_m2pf.py", r"class VirtuosoNetMultiLevel"),),
        fix_action="remove_module", priority=20),
    Rule(
        id="PP-PRECISION", title="Reduced precision (autocast) instead of float32",
        severity=Severity.ERROR,
        original_does="Trains and evaluates in float32: no autocast and no half() anywhere in train_m2pf.py.",
        replica_does="Runs levels in a lower precision (see evidence for the dtypes).",
        effect="Rounding of ~1e-3 relative per level; LSTM recurrences and softmaxes amplify it; gradients are "
               "noisier, and small learning rates (2.5e-5) can stall in bf16.",
        fix="Run in float32: drop torch.autocast / .half() / bf16 mixed precision.",
        match=_precision, refs=(SourceRef("train_m2pf.py", r"def train_step"),), fix_action="float32",
        priority=10),
]


def rule_by_id(rule_id: str) -> Rule | None:
    return next((r for r in RULES if r.id == rule_id), None)


__all__ = ["RULES", "downstream", "root_of", "rule_by_id", "significant"]
