"""The matcher vocabulary the rules of every family compose: which findings are consequences of a change at a
level, where the mismatches sit, what a structure finding is about, and the forward-semantics rule shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from percepiano_parity.core.findings import Finding
from percepiano_parity.core.levels import level_order
from percepiano_parity.diagnosis.rule import having, significant

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]


FORWARD_KINDS = ("forward.mismatch", "forward.shape_mismatch", "forward.local_mismatch", "forward.padding_mismatch",
                 "forward.first_divergent")


ATTENTION_KINDS = ("attention.entropy_shift", "attention.weights_mismatch", "attention.collapsed",
                   "attention.head_count")


def downstream(findings: Sequence[Finding], from_level: str | None) -> list[Finding]:
    """Findings that are consequences of a change at `from_level`: forward findings at or after it,
    the loss and gradients, attention shifts, and the first-divergence summary."""
    start = level_order(from_level) if from_level else -1
    out = []
    for f in findings:
        if f.check == "forward" and f.kind in FORWARD_KINDS:
            if f.kind == "forward.first_divergent" or level_order(f.location) >= start:
                out.append(f)
        elif f.check == "backward" and f.kind in ("backward.loss", "backward.grad_mismatch"):
            out.append(f)
        elif f.check == "attention" and f.kind in ATTENTION_KINDS:
            if level_order(f.location) >= start - 1:
                out.append(f)
    return out


def model_consequences(findings: Sequence[Finding]) -> list[Finding]:
    """Every forward, backward and attention finding: for deviations that change the forward as a whole."""
    return [f for f in findings if f.check in ("forward", "backward", "attention")]


def training_consequences(findings: Sequence[Finding], data_kinds: tuple[str, ...] = ()) -> list[Finding]:
    """Trajectory findings (a recipe change moves the whole trajectory) and the given data findings."""
    return [f for f in findings if f.kind.startswith("trajectory.") or f.kind in data_kinds]


def root_of(findings: Sequence[Finding]) -> str | None:
    for f in findings:
        if f.kind == "forward.first_divergent":
            return f.evidence.get("root_level") or f.location
    return None


def structure_significant(findings: Sequence[Finding]) -> list[Finding]:
    return significant(having(findings, check="structure"))


def module_of(f: Finding) -> str:
    """The module a structure or init finding is about (reference naming where both exist)."""
    if "module" in f.evidence:
        return str(f.evidence["module"])
    if f.kind in ("structure.shape", "init.distribution"):
        return f.location.rsplit(".", 1)[0]
    return f.location


def within(module: str, roots: set[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def about_modules(findings: Sequence[Finding], modules: set[str]) -> list[Finding]:
    """Structure and init findings about these modules (or their children)."""
    return [f for f in findings if f.check in ("structure", "init") and within(module_of(f), modules)]


def pattern_at(findings: Sequence[Finding], level: str | None) -> dict[str, Any] | None:
    for f in findings:
        if f.check == "forward" and f.location == level and f.kind in ("forward.mismatch", "forward.shape_mismatch",
                                                                       "forward.local_mismatch"):
            return f.evidence.get("pattern")
    return None


def final_padding_mass(findings: Sequence[Finding]) -> tuple[float, float] | None:
    for f in findings:
        ev = f.evidence
        if f.location == "attn.final" and "reference_padding_mass" in ev and "candidate_padding_mass" in ev:
            if ev["reference_padding_mass"] is not None and ev["candidate_padding_mass"] is not None:
                return float(ev["reference_padding_mass"]), float(ev["candidate_padding_mass"])
    return None


def metric(findings: Sequence[Finding], kind: str, location: str, name: str) -> Any:
    for f in findings:
        if f.kind == kind and f.location == location:
            return f.metrics.get(name)
    return None


def semantic(levels: tuple[str, ...], test: Callable[[Sequence[Finding], dict[str, Any]], bool]) -> Matcher:
    """A forward-semantics rule: no structure change left, the root level is one of `levels`, and the
    evidence there passes `test`. Claims every forward, backward and attention finding."""
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        if structure_significant(findings):
            return None
        root = root_of(findings)
        if root not in levels:
            return None
        pattern = pattern_at(findings, root) or {}
        if not test(findings, pattern):
            return None
        return model_consequences(findings)
    return match


def pattern_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    root = root_of(claimed)
    pattern = pattern_at(claimed, root) or {}
    out = {k: pattern.get(k) for k in ("rows_bad", "items_bad", "longest_items_bad_share", "shorter_items_bad_share",
                                       "batches_bad", "batches", "batches_with_gap")}
    out["root_max_abs"] = metric(claimed, "forward.mismatch", root or "", "max_abs")
    mass = final_padding_mass(claimed)
    if mass is not None:
        out["original_padding_mass"], out["replica_padding_mass"] = mass
    for f in having(claimed, "attention.entropy_shift", where=lambda f: f.location == "attn.final"):
        out["entropy_delta"] = f.metrics.get("worst_delta")
    return out


def recipe_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = []
    for f in having(claimed, "recipe.mismatch"):
        pairs.append(f"{f.location}: {f.evidence.get('original')!r} -> {f.evidence.get('replica')!r}")
        out.setdefault("original_value", f.evidence.get("original"))
        out.setdefault("replica_value", f.evidence.get("replica"))
        out.setdefault("recipe_source", f.evidence.get("source"))
    if pairs:
        out["recipe_changes"] = "; ".join(pairs)
    for f in claimed:
        if f.kind.startswith("trajectory.") and f.kind != "trajectory.drift":
            out.setdefault("first_differing_step", f.metrics.get("first_differing_step"))
            out["trajectory_max_rel"] = max(out.get("trajectory_max_rel") or 0.0, f.metrics.get("max_rel_diff") or 0.0)
        if f.kind.startswith("data."):
            out.setdefault("data_cases_differing", f.metrics.get("differ"))
    return out


def waivable(rule_id: str) -> str:
    return (f"This is the original's own quirk: a replica that changes it on purpose can waive this explanation as "
            f"an intended fix (a [[waiver]] with id = '{rule_id}' and a reason), but its numbers will then not "
            "reproduce the paper's.")
