"""Attention check: entropy per attention module and head on both sides; collapsed and uniform flagged.

Entropy is computed per softmax group (a beat for note->beat, a measure for beat->measure, the whole
sequence for the final pooling), averaged per item, then mean/min/max over items and batches.
"""

from __future__ import annotations

import math
from typing import Any

from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult

CHECK = "attention"


def run(state: ComparisonState, tol: Tolerances) -> CheckResult:
    if not state.attention:
        return CheckResult(CHECK, "skipped", reason="no attention maps were recorded by either side")
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    for name in sorted(state.attention):
        agg = state.attention[name]
        padding = ({"reference_padding_mass": agg.ref_pad_mass, "candidate_padding_mass": agg.cand_pad_mass}
                   if agg.ref_pad_mass is not None and agg.cand_pad_mass is not None else {})
        if not agg.ref or not agg.cand:
            side = state.candidate_name if not agg.cand else state.reference_name
            findings.append(Finding(CHECK, "attention.missing", name, Severity.WARNING,
                                    f"attention map {name} was not recorded on the {side} side"))
            continue
        n_ref, n_cand = len(agg.ref["mean"]), len(agg.cand["mean"])
        if n_ref != n_cand:
            findings.append(Finding(
                CHECK, "attention.head_count", name, Severity.ERROR,
                f"{name}: {n_ref} heads in the {state.reference_name}, {n_cand} in the {state.candidate_name}",
                metrics={"reference_heads": n_ref, "candidate_heads": n_cand},
                evidence={"reference_mean": agg.ref["mean"], "candidate_mean": agg.cand["mean"][:64]}))
            continue
        shifted_heads = []
        for h in range(n_ref):
            rm, cm = agg.ref["mean"][h], agg.cand["mean"][h]
            shifted = abs(rm - cm) > tol.entropy_abs or math.isnan(cm)
            # the heads this check warns about, named in the table so every report can point at them
            flag = "collapsed" if cm < tol.collapse_nats <= rm else ("shifted" if shifted else "")
            rows.append({"module": name, "head": h, "original_mean": rm, "replica_mean": cm,
                         "original_min": agg.ref["min"][h], "original_max": agg.ref["max"][h],
                         "replica_min": agg.cand["min"][h], "replica_max": agg.cand["max"][h], "flag": flag})
            if shifted:
                shifted_heads.append(h)
        if shifted_heads:
            worst = max(shifted_heads, key=lambda h: abs(agg.ref["mean"][h] - agg.cand["mean"][h]))
            d = agg.cand["mean"][worst] - agg.ref["mean"][worst]
            findings.append(Finding(
                CHECK, "attention.entropy_shift", name, Severity.WARNING,
                f"{name}: mean entropy differs in {len(shifted_heads)}/{agg.heads} heads, worst head {worst} "
                f"{agg.ref['mean'][worst]:.4f} -> {agg.cand['mean'][worst]:.4f} nats ({d:+.4f})",
                metrics={"heads_shifted": len(shifted_heads), "worst_head": worst, "worst_delta": d},
                evidence={"reference_mean": agg.ref["mean"], "candidate_mean": agg.cand["mean"], **padding}))
        collapsed = [h for h in range(n_ref) if agg.cand["mean"][h] < tol.collapse_nats <= agg.ref["mean"][h]]
        if collapsed:
            findings.append(Finding(
                CHECK, "attention.collapsed", name, Severity.WARNING,
                f"{name}: heads {collapsed} collapse to one position in the {state.candidate_name} "
                f"(entropy < {tol.collapse_nats} nats) but not in the {state.reference_name}",
                evidence={"heads": collapsed}))
        if agg.diff.exceeded:
            findings.append(Finding(
                CHECK, "attention.weights_mismatch", name, Severity.WARNING,
                f"{name}: attention weights differ: " + (
                    f"shape {tuple(agg.diff.shape_mismatch[0])} vs {tuple(agg.diff.shape_mismatch[1])}"
                    if agg.diff.shape_mismatch else
                    f"greatest difference {agg.diff.max_abs:.3g} up to {agg.diff.threshold:.3g} allowed"),
                metrics={"max_abs": agg.diff.max_abs}, evidence=dict(padding)))
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    return CheckResult(CHECK, status, findings, tables={"heads": rows})
