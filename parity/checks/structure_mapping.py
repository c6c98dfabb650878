"""What the weight mapping itself found: modules the replica shares where the original has two (tied), mapping
entries that name nothing, pairings only values could settle or that stay ambiguous, and the renames (a module
under another name or parent computing the same thing: packaging, not a deviation).

Part of the structure check (checks.structure calls `mapping_findings` and `mapping_tables`).
"""

from __future__ import annotations

from typing import Any

from percepiano_parity.compare.mapping import renames
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity

CHECK = "structure"


def _tied(state: ComparisonState, tie: dict[str, Any]) -> Finding:
    refs, module = list(tie["reference"]), tie["candidate"]
    names = list(tie.get("candidate_names") or [module])
    params = [n for n in state.candidate_structure.get("params", {}) if n.rsplit(".", 1)[0] == module]
    return Finding(
        CHECK, "structure.tied_parameters", refs[-1], Severity.ERROR,
        f"the {state.candidate_name}'s {module} (also registered as {', '.join(n for n in names if n != module) or '—'}) "
        f"stands for both {' and '.join(refs)} of the {state.reference_name}: one set of weights where the "
        f"{state.reference_name} trains {len(refs)} independent ones; {refs[0]}'s weights were copied into it",
        metrics={"reference_modules": len(refs)},
        evidence={"reference_modules": refs, "candidate_module": module, "candidate_names": names,
                  "candidate_parameters": params, "weights_copied_from": refs[0]})


def mapping_findings(state: ComparisonState) -> list[Finding]:
    wm = state.weight_map
    findings = [_tied(state, tie) for tie in wm.tied]
    for entry in wm.bad_overrides:
        findings.append(Finding(
            CHECK, "structure.mapping_entry", entry["reference"], Severity.WARNING,
            f"mapping entry {entry['reference']} -> {entry['candidate']}: {entry['problem']}; the entry is ignored "
            "and the parameter is paired as if it were not there",
            evidence=dict(entry)))
    for group in wm.ambiguous:
        findings.append(Finding(
            CHECK, "structure.ambiguous_mapping", ", ".join(g for g in group if g != "<->"), Severity.WARNING,
            f"same-shaped modules could not be paired for certain ({' '.join(group)}): their call order and their "
            "names disagree and the outputs did not decide; the pairing by name was used; give a mapping if it "
            "is wrong", evidence={"group": group}))
    for settled in wm.resolved:
        how = "are interchangeable on this batch" if settled.get("equivalent") else "were paired by their outputs"
        findings.append(Finding(
            CHECK, "structure.paired_by_values", ", ".join(g for g in settled["group"] if g != "<->"),
            Severity.INFO,
            f"same-shaped modules whose call order and names disagree {how}: "
            + ", ".join(f"{r} -> {c}" for r, c in sorted(settled["chosen"].items())),
            metrics={f"logits_error_by_{k}": v for k, v in settled.get("logits_error", {}).items()},
            evidence=dict(settled)))
    return findings


def mapping_tables(state: ComparisonState) -> dict[str, list[dict[str, Any]]]:
    rows = renames(state.weight_map)
    return {"renames": rows} if rows else {}
