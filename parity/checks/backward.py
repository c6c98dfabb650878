"""Backward check: the training loss of each side and every mapped parameter's gradient."""

from __future__ import annotations

from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.compare.structure import level_of
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult

CHECK = "backward"


def run(state: ComparisonState) -> CheckResult:
    if not state.grads_available:
        return CheckResult(CHECK, "skipped", reason="gradients were not recorded for this comparison")
    findings: list[Finding] = []
    rows = []
    loss = state.loss
    if loss.exceeded:
        r, c = state.losses[0] if state.losses else (float("nan"), float("nan"))
        findings.append(Finding(
            CHECK, "backward.loss", "loss", Severity.ERROR,
            f"training loss differs: {r:.6g} ({state.reference_name}) vs {c:.6g} ({state.candidate_name}) on the "
            f"first batch; greatest difference {loss.max_abs:.3g} up to {loss.threshold:.3g} allowed",
            metrics={"max_abs": loss.max_abs, "reference_loss": r, "candidate_loss": c}))
    bad_levels: dict[str, list[str]] = {}
    for name, agg in sorted(state.grads.items()):
        rows.append({"param": name, "max_abs": agg.max_abs, "max_rel": agg.max_rel, "cosine": agg.cosine,
                     "floor": state.floors.grad(name), "status": "mismatch" if agg.exceeded else "ok"})
        if agg.exceeded:
            bad_levels.setdefault(level_of(name), []).append(name)
            findings.append(Finding(
                CHECK, "backward.grad_mismatch", name, Severity.ERROR,
                f"gradient of {name} differs: greatest absolute difference {agg.max_abs:.3g} ({agg.max_rel:.3g} "
                f"relative), cosine {agg.cosine:.6f}, up to {agg.threshold:.3g} allowed",
                metrics={"max_abs": agg.max_abs, "max_rel": agg.max_rel, "cosine": agg.cosine,
                         "floor_abs": state.floors.grad(name)},
                evidence={"level": level_of(name), "shapes": agg.shape_mismatch}))
    for name in sorted(state.grad_only_reference):
        findings.append(Finding(
            CHECK, "backward.grad_presence", name, Severity.ERROR,
            f"{name} receives a gradient in the {state.reference_name} but none in the {state.candidate_name}",
            evidence={"level": level_of(name), "side": "reference"}))
    for name in sorted(state.grad_only_candidate):
        findings.append(Finding(
            CHECK, "backward.grad_presence", name, Severity.ERROR,
            f"{name} receives a gradient in the {state.candidate_name} but none in the {state.reference_name}",
            evidence={"level": level_of(name), "side": "candidate"}))
    rows.sort(key=lambda r: -(r["max_rel"] if r["max_rel"] == r["max_rel"] else 1e9))
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    return CheckResult(CHECK, status, findings, tables={"params": rows[:60]})
