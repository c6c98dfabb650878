"""Findings from the relation tests at each independent root level (compare.relations.search).

For every root: a `forward.relation` finding per relation that holds (the measured residual, the operation,
the original's source line and the fix spec ride along as evidence), or one `forward.relations_tested` finding
saying what was tested and how close the nearest came. A root after the first is also named by a
`forward.root` finding: a second, independent mistake, with its own explanation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity

CHECK = "forward"


def short_site(site: str | None) -> str | None:
    """'/long/path/to/file.py:12' -> 'file.py:12'."""
    if not site or ":" not in site:
        return site
    path, _, line = site.rpartition(":")
    return f"{Path(path).name}:{line}"


def relation_findings(state: ComparisonState) -> list[Finding]:
    out: list[Finding] = []
    for order, result in enumerate(state.relations):
        level = result.get("level", "")
        common: dict[str, Any] = {"root_level": level, "root_index": order, "batch": result.get("batch"),
                                  "tolerance": result.get("tolerance"), "tested": result.get("tested", []),
                                  "level_baseline": result.get("baseline"),
                                  "teacher_forced": result.get("teacher_forced")}
        if result.get("first_op"):
            common["first_op"] = result["first_op"]
        if order:
            out.append(Finding(CHECK, "forward.root", level, Severity.INFO,
                               f"level {level} also differs on its own inputs: a second, independent root",
                               evidence={"root_level": level, "root_index": order}))
        holds = result.get("holds", [])
        for rank, rel in enumerate(holds):
            out.append(Finding(
                CHECK, "forward.relation", f"{level}:{rel['kind']}", Severity.INFO,
                f"at {level}: {rel['summary']} (residual {rel['residual']})",
                metrics={"residual": rel["residual"], "baseline": rel.get("baseline")},
                evidence={**common, **rel, "rank": rank, "op_short": short_site(rel.get("op_site")),
                          "original_short": short_site(rel.get("original_site"))}))
        if not holds:
            closest = result.get("closest") or {}
            note = result.get("note") or result.get("op_note") or ""
            tested = ", ".join(sorted({t["kind"] for t in result.get("tested", [])})) or "none could run"
            text = (f"at {level}: no tested relation holds (tested: {tested})"
                    + (f"; closest: {closest['kind']}, residual {closest['residual']}" if closest else "")
                    + (f"; {note}" if note else ""))
            out.append(Finding(CHECK, "forward.relations_tested", level, Severity.INFO, text,
                               metrics={"closest_residual": closest.get("residual")},
                               evidence={**common, "closest": closest, "note": note}))
    return out
