"""Precision check: dtype of parameters and of every recorded activation on each side."""

from __future__ import annotations

from collections import Counter

from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.levels import level_order
from percepiano_parity.core.report import CheckResult

CHECK = "precision"


def run(state: ComparisonState) -> CheckResult:
    findings: list[Finding] = []
    rows = []
    pr = Counter(state.reference_param_dtypes.values())
    pc = Counter(state.candidate_param_dtypes.values())
    if set(pr) != set(pc):
        findings.append(Finding(
            CHECK, "precision.parameters", "parameters", Severity.ERROR,
            f"parameter dtypes differ: {dict(pr)} ({state.reference_name}) vs {dict(pc)} ({state.candidate_name})",
            evidence={"reference": dict(pr), "candidate": dict(pc)}))
    lowered = []
    for name in sorted(state.levels, key=level_order):
        agg = state.levels[name]
        rows.append({"level": name, "original": agg.ref_dtype, "replica": agg.cand_dtype})
        if agg.ref_dtype and agg.cand_dtype and agg.ref_dtype != agg.cand_dtype:
            lowered.append(name)
    if lowered:
        dtypes = sorted({state.levels[n].cand_dtype for n in lowered})
        findings.append(Finding(
            CHECK, "precision.activations", lowered[0], Severity.ERROR,
            f"{len(lowered)} level(s) computed in {', '.join(dtypes)} instead of "
            f"{state.levels[lowered[0]].ref_dtype}, first {lowered[0]}",
            metrics={"levels": len(lowered)},
            evidence={"levels": lowered, "candidate_dtypes": dtypes,
                      "reference_dtype": state.levels[lowered[0]].ref_dtype}))
    status = "failed" if findings else "passed"
    return CheckResult(CHECK, status, findings, tables={"dtypes": rows})
