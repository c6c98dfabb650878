"""Forward check: per level, identical weights and batches, eval mode; real and padded positions apart.

Each level is judged on its cumulative (free-running) error and, where the candidate can be teacher-forced,
on its local error (the level computed from the reference's own inputs). The first divergent level is the
first with cumulative error beyond tolerance; the root-cause level is the first with local error beyond it.
"""

from __future__ import annotations

from typing import Any

from percepiano_parity.checks.location import (
    calling_finding,
    located_on_finding,
    location_tables,
    nearest_note,
)
from percepiano_parity.checks.relation_findings import relation_findings, short_site
from percepiano_parity.compare.aggregate import DiffAgg, LevelAgg
from percepiano_parity.compare.divergence import first_divergent, root_level
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.levels import LEVEL_SPACE, level_order
from percepiano_parity.core.report import CheckResult

CHECK = "forward"


def _fmt(agg: DiffAgg) -> str:
    if agg.shape_mismatch:
        return f"shape {tuple(agg.shape_mismatch[0])} vs {tuple(agg.shape_mismatch[1])}"
    return (f"Mismatched elements: {agg.beyond} / {agg.numel} ({100 * agg.share_beyond:.1f}%); greatest absolute "
            f"difference {agg.max_abs:.3g} ({agg.max_rel:.3g} relative) up to {agg.threshold:.3g} allowed")


def run(state: ComparisonState) -> CheckResult:
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    first = first_divergent(state)
    root = root_level(state)
    earlier_exceeded = False
    for name in sorted(state.levels, key=level_order):
        agg: LevelAgg = state.levels[name]
        real, local = agg.real, agg.local
        # an error is inherited only from an earlier level that differs; with none, it is the level's own (a
        # level the tool laid out wrongly must not pass as a consequence of nothing)
        inherited = local is not None and not local.exceeded and real.exceeded and earlier_exceeded
        earlier_exceeded = earlier_exceeded or real.exceeded
        row = {
            "level": name, "space": str(LEVEL_SPACE.get(name, "")),
            "max_abs": real.max_abs, "max_rel": real.max_rel, "cosine": real.cosine,
            "beyond_tol": real.share_beyond, "pad_max_abs": agg.padded.max_abs if agg.padded.numel else None,
            "local_max_rel": local.max_rel if local is not None else None,
            "cumulative_max_rel": real.max_rel,
            "floor": agg.floor_abs, "floor_rel": agg.floor_rel, "tolerance": real.threshold,
            "tolerance_rel": real.threshold_rel or None,
            "status": "mismatch" if real.exceeded and not inherited else ("inherited" if inherited else "ok"),
        }
        if real.shape_mismatch:
            row["shape"] = f"{tuple(real.shape_mismatch[0])} vs {tuple(real.shape_mismatch[1])}"
        rows.append(row)
        metrics = {"max_abs": real.max_abs, "max_rel": real.max_rel, "cosine": real.cosine,
                   "share_beyond": real.share_beyond, "floor_abs": agg.floor_abs, "floor_rel": agg.floor_rel,
                   "tolerance_abs": real.threshold, "cumulative_max_rel": real.max_rel,
                   "local_max_rel": local.max_rel if local is not None else None,
                   "local_max_abs": local.max_abs if local is not None else None}
        evidence = {"first_bad_batch": real.first_bad_batch, "inherited": inherited,
                    "local_exceeded": bool(local is not None and local.exceeded),
                    "local_available": local is not None}
        if real.shape_mismatch:
            evidence["shapes"] = {"reference": real.shape_mismatch[0], "candidate": real.shape_mismatch[1]}
        if name in state.located:
            evidence["located"] = dict(state.located[name])
        if local is not None and local.shape_mismatch:
            evidence["local_shapes"] = {"reference": local.shape_mismatch[0], "candidate": local.shape_mismatch[1]}
        if agg.pattern.batches:
            # where the mismatches sit (items, rows, batches): lets diagnosis tell look-alike deviations apart
            evidence["pattern"] = agg.pattern.summary()
            evidence["padded_differs"] = bool(agg.padded.numel and agg.padded.exceeded)
        if real.exceeded:
            sev = Severity.INFO if inherited else Severity.ERROR
            kind = "forward.shape_mismatch" if real.shape_mismatch else "forward.mismatch"
            what = "inherits its error from an earlier level" if inherited else "differs"
            findings.append(Finding(
                CHECK, kind, name, sev,
                f"level {name} {what}: {_fmt(real)}; noise floor {agg.floor_abs:.2g}{nearest_note(state, name)}",
                metrics=metrics, evidence=evidence))
        elif local is not None and local.exceeded:
            findings.append(Finding(
                CHECK, "forward.local_mismatch", name, Severity.WARNING,
                f"level {name} alone (teacher-forced) differs: {_fmt(local)}", metrics=metrics, evidence=evidence))
        if agg.padded.numel and agg.padded.exceeded:
            findings.append(Finding(
                CHECK, "forward.padding_mismatch", name, Severity.WARNING,
                f"padded positions of {name} differ: max |diff| {agg.padded.max_abs:.3g} "
                f"(the {state.reference_name}'s padding reaches later levels only through unmasked pooling)",
                metrics={"pad_max_abs": agg.padded.max_abs, "share_beyond": agg.padded.share_beyond},
                evidence={"first_bad_batch": agg.padded.first_bad_batch}))
    for name in sorted(state.levels_only_reference, key=level_order):
        why = (": no tensor of its forward fits this level's shape in any known layout, so it cannot be compared"
               if name in state.not_located else "")
        findings.append(Finding(CHECK, "forward.missing_level", name, Severity.WARNING,
                                f"the {state.candidate_name} does not expose level {name}{why}"))
    for name in sorted(state.levels_only_candidate, key=level_order):
        findings.append(Finding(CHECK, "forward.extra_level", name, Severity.INFO,
                                f"the {state.candidate_name} exposes level {name}, the {state.reference_name} does not"))
    if first is not None:
        findings.append(Finding(
            CHECK, "forward.first_divergent", first, Severity.INFO,
            f"first divergent level: {first}; root-cause level (local error): {root}",
            metrics={}, evidence={"first_divergent_level": first, "root_level": root,
                                  "local_available": state.local_available, "local_note": state.local_note}))
    ops = state.ops
    if ops.get("op"):
        findings.append(Finding(
            CHECK, "forward.first_divergent_op", ops["op"], Severity.INFO,
            f"first divergent operation inside {ops['level']}: {ops['op']} ({ops.get('type')}): {ops['reason']}",
            metrics=dict(ops.get("metrics", {})),
            evidence={k: v for k, v in ops.items() if k not in ("metrics",)}))
    if not ops.get("op"):
        op = next((r.get("first_op") for r in state.relations[:1] if r.get("first_op")), None)
        if op:
            name = op["op"].split(" at ")[0]
            findings.append(Finding(
                CHECK, "forward.first_divergent_op", f"{name} at {short_site(op['site'])}", Severity.INFO,
                f"first divergent operation inside {state.relations[0]['level']}: {op['op']}",
                evidence={**op, "level": state.relations[0]["level"]}))
    findings += relation_findings(state)
    findings += [f for f in (calling_finding(state), located_on_finding(state)) if f is not None]
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    tables = {"levels": rows, **location_tables(state)}
    if ops.get("compared"):
        tables["ops"] = [dict(level=ops["level"], **row) for row in ops["compared"]]
    return CheckResult(CHECK, status, findings, tables=tables)
