"""Findings -> explanations: the catalog's rules tried in priority order, one view per independent root.

Consequences are not causes, and two causes are two:

* a level whose own (teacher-forced) error is beyond tolerance after the first root is a second, independent
  root (`forward.root` findings): its findings (its level and the levels after it, up to the next root) form
  their own view, explained separately;
* trajectory, gradient and attention differences that no recipe or structure rule claims follow from the
  explained forward difference: they become its evidence, not a second explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.compare.structure import level_of
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.levels import level_order
from percepiano_parity.core.report import Explanation
from percepiano_parity.diagnosis.catalog import RULES
from percepiano_parity.diagnosis.rule import significant

GENERIC_PRIORITY = 80  # rules at or above this are generic fallbacks
CONSEQUENCE_KINDS = ("trajectory.", "backward.", "attention.")


def _roots(findings: Sequence[Finding]) -> list[str]:
    first = next((f.evidence.get("root_level") or f.location for f in findings
                  if f.kind == "forward.first_divergent"), None)
    more = sorted({f.evidence["root_level"] for f in findings if f.kind == "forward.root"
                   and f.evidence.get("root_level")}, key=level_order)
    return ([first] if first else []) + [r for r in more if r != first]


def _level_of(f: Finding) -> str | None:
    """The level a forward or attention finding is about (None for findings about the whole model)."""
    if f.kind in ("forward.relation", "forward.relations_tested", "forward.root"):
        return f.evidence.get("root_level")
    if f.check == "forward" and f.kind not in ("forward.first_divergent", "forward.first_divergent_op"):
        return f.location
    if f.check == "attention" and f.location.startswith("attn."):
        return f.location
    return None


def _segment(level: str, roots: Sequence[str]) -> int:
    order = level_order(level)
    seg = 0
    for i, r in enumerate(roots):
        if level_order(r) <= order or (level.startswith("attn.") and level_order(r) <= order + 1):
            seg = i
    return seg


def _covered_levels(findings: Sequence[Finding]) -> set[str] | None:
    """Levels whose own error a matching specific cause explains (None: every level): a cause of several levels
    (reduced precision, padding instead of packing, the boundary rule, another variant), and the levels of the
    modules a structural cause names (a changed attention class used at the beat, measure and final pooling)."""
    covered: set[str] = set()
    for rule in RULES:
        if rule.priority >= GENERIC_PRIORITY:
            continue
        claimed = rule.match(list(findings))
        if not claimed:
            continue
        if rule.whole_model is True:
            return None
        covered |= set(rule.whole_model or ())
        for f in claimed:
            if f.check == "structure" and f.kind not in ("structure.param_count", "structure.implementation"):
                level = f.evidence.get("level") if isinstance(f.evidence.get("level"), str) else None
                covered.add(level or level_of(f.location.split(" ")[0] + "."))
    return covered


def views(findings: Sequence[Finding]) -> list[tuple[str | None, list[Finding]]]:
    """(root, findings) per independent root; the first view also holds every finding about the whole model.
    A later root at a level that a matching cause of several levels covers (reduced precision, padding instead
    of packing, the boundary rule) is not independent: its findings stay with the root before it."""
    roots = _roots(findings)
    if len(roots) >= 2:
        covered = _covered_levels(findings)
        roots = roots[:1] if covered is None else roots[:1] + [r for r in roots[1:] if r not in covered]
    if len(roots) < 2:
        return [(roots[0] if roots else None, list(findings))]
    out: list[tuple[str | None, list[Finding]]] = [(r, []) for r in roots]
    for f in findings:
        level = _level_of(f)
        seg = _segment(level, roots) if level else 0
        if f.kind == "forward.relations_tested" or f.kind == "forward.relation":
            seg = roots.index(f.evidence["root_level"]) if f.evidence.get("root_level") in roots else seg
        out[seg][1].append(f)
    for i, (root, fs) in enumerate(out[1:], 1):
        fs.append(Finding("forward", "forward.first_divergent", root, Severity.INFO,
                          f"root-cause level of an independent difference: {root}",
                          evidence={"first_divergent_level": root, "root_level": root, "root_index": i}))
    return out


def _first_op(findings: Sequence[Finding]) -> str | None:
    return next((f.location for f in findings if f.kind == "forward.first_divergent_op"), None)


def _relation_op(claimed: Sequence[Finding]) -> str | None:
    rel = next((f for f in claimed if f.kind == "forward.relation"), None)
    if rel is None or not rel.evidence.get("op"):
        return None
    name = str(rel.evidence["op"]).split(" at ")[0]
    site = rel.evidence.get("op_short")
    return f"{name} at {site}" if site else name


def _run_rules(findings: list[Finding], root: str | None, first_op: str | None, root_path: Path | None,
               priorities: tuple[int, int]) -> tuple[list[Explanation], list[Finding]]:
    explanations: list[Explanation] = []
    remaining = findings
    for rule in sorted(RULES, key=lambda r: r.priority):
        if not priorities[0] <= rule.priority < priorities[1]:
            continue
        claimed = rule.match(remaining)
        if not claimed:
            continue
        exp = rule.explain(claimed, root_path)
        if any(f.check == "forward" for f in claimed):
            exp.root_level = root
            exp.first_divergent_op = _relation_op(claimed) or first_op
        explanations.append(exp)
        keys = {f.key for f in claimed}
        remaining = [f for f in remaining if f.key not in keys]
    return explanations, remaining


def _attach_consequences(explanations: list[Explanation], remaining: list[Finding]) -> list[Finding]:
    """Give the forward explanation of the first root the training, gradient and attention findings no specific
    rule claimed (they follow from the forward difference)."""
    forward = next((e for e in explanations if e.root_level is not None), None)
    if forward is None:
        return remaining
    follow = [f for f in remaining if f.kind.startswith(CONSEQUENCE_KINDS)]
    if not follow:
        return remaining
    forward.evidence = sorted(set(forward.evidence) | {f.key for f in follow})
    families = sorted({f.check for f in follow})
    forward.effect_measured = {**forward.effect_measured, "consequences": families}
    keys = {f.key for f in follow}
    return [f for f in remaining if f.key not in keys]


def _one_per_cause(explanations: list[Explanation]) -> list[Explanation]:
    """One explanation per specific rule: the same mistake found at two roots (a span offset in both the beat
    and the measure span) is one explanation whose evidence holds both (generic ones stay one per root)."""
    out: list[Explanation] = []
    by_id: dict[str, Explanation] = {}
    for exp in explanations:
        first = by_id.get(exp.id)
        if first is None or exp.id.startswith("PP-FORWARD-UNEXPLAINED"):
            by_id.setdefault(exp.id, exp)
            out.append(exp)
            continue
        first.evidence = sorted(set(first.evidence) | set(exp.evidence))
        also = [lvl for lvl in (first.effect_measured.get("also_at"), exp.root_level) if lvl]
        first.effect_measured = {**first.effect_measured, "also_at": ", ".join(also)}
    return out


def diagnose(findings: Sequence[Finding], state: Any = None, *, context: dict[str, Any] | None = None
             ) -> tuple[list[Explanation], list[str]]:
    """Explanations (most consequential first) and the keys of significant findings no rule explains.

    `state` is accepted for symmetry with the checks but rules never see it: they read findings only.
    """
    del state
    context = context or {}
    root_dir = context.get("original_root")
    root_path = Path(root_dir) if root_dir else None
    real_keys = {f.key for f in findings}
    explanations: list[Explanation] = []
    leftover: list[Finding] = []
    first_op = _first_op(findings)
    for i, (root, view) in enumerate(views(findings)):
        specific, remaining = _run_rules(view, root, first_op if i == 0 else None, root_path,
                                         (-10**6, GENERIC_PRIORITY))
        remaining = _attach_consequences(specific, remaining) if i == 0 else remaining
        generic, remaining = _run_rules(remaining, root, first_op if i == 0 else None, root_path,
                                        (GENERIC_PRIORITY, 10**6))
        explanations += specific + generic
        leftover += remaining
    explanations = _one_per_cause(explanations)
    for exp in explanations:
        exp.evidence = [k for k in exp.evidence if k in real_keys]
    unexplained = sorted({f.key for f in significant(leftover) if f.key in real_keys})
    explanations.sort(key=lambda e: (-int(e.severity), -len(e.evidence), e.id))
    return explanations, unexplained
