"""Initialisation check: freshly built weights of each mapped pair, same seed, compared by distribution.

Equal shapes hide a custom init; the distribution does not. With the original's construction order and
seed, a faithful replica's initial weights are bit-identical, which the check reports as information.
"""

from __future__ import annotations

from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult

CHECK = "init"
MIN_NUMEL = 16  # below this, sample statistics are too noisy to judge


def run(state: ComparisonState, tol: Tolerances) -> CheckResult:
    if state.init is None:
        return CheckResult(CHECK, "skipped", reason=state.init_note or "initial weights not available")
    findings: list[Finding] = []
    rows = []
    identical = sum(1 for s in state.init if s.identical)
    for s in state.init:
        std_ratio = s.cand_std / s.ref_std if s.ref_std else (1.0 if s.cand_std == 0 else float("inf"))
        max_ratio = s.cand_absmax / s.ref_absmax if s.ref_absmax else (1.0 if s.cand_absmax == 0 else float("inf"))
        off = s.numel >= MIN_NUMEL and not s.identical and (
            not (1 / tol.init_ratio <= std_ratio <= tol.init_ratio)
            or not (1 / tol.init_ratio <= max_ratio <= tol.init_ratio))
        rows.append({"param": s.reference, "identical": s.identical, "std_ratio": std_ratio, "absmax_ratio": max_ratio,
                     "status": "differs" if off else "ok"})
        if off:
            findings.append(Finding(
                CHECK, "init.distribution", s.reference, Severity.WARNING,
                f"initial {s.reference} differs in distribution: std {s.ref_std:.3g} -> {s.cand_std:.3g} "
                f"(x{std_ratio:.2f}), max |w| {s.ref_absmax:.3g} -> {s.cand_absmax:.3g} (x{max_ratio:.2f})",
                metrics={"std_ratio": std_ratio, "absmax_ratio": max_ratio, "ref_std": s.ref_std,
                         "cand_std": s.cand_std, "ref_absmax": s.ref_absmax, "cand_absmax": s.cand_absmax,
                         "ref_mean": s.ref_mean, "cand_mean": s.cand_mean},
                evidence={"candidate_param": s.candidate}))
    findings.append(Finding(
        CHECK, "init.identical", "all", Severity.INFO,
        f"{identical} of {len(state.init)} mapped tensors are bit-identical at the same seed",
        metrics={"identical": identical, "mapped": len(state.init)}))
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    return CheckResult(CHECK, status, findings, tables={"params": [r for r in rows if r["status"] != "ok"][:50]})
