"""One audit: engine -> checks -> diagnosis -> waivers -> Report, and the audit again behind each verified
fix (a cause the first one hid). No printing, no files.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.checks import run_model_checks
from percepiano_parity.checks.non_finite import add_non_finite_findings
from percepiano_parity.checks.training import TRAINING_CHECKS
from percepiano_parity.commands.waivers import Waivers
from percepiano_parity.compare.engine import Engine, EngineOptions
from percepiano_parity.compare.noise import FloorMeter, NoiseFloors
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.findings import CHECK_IDS, Finding, Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.diagnosis.catalog import rule_by_id
from percepiano_parity.diagnosis.fixes import apply_fix, verify_fixes_in_report
from percepiano_parity.subjects.non_finite import FiniteWatch
from percepiano_parity.subjects.sides import Reference
from percepiano_parity.subjects.subject import Subject

# ----------------------------------------------------------------------------------------------------------
# One audit: engine -> checks -> diagnosis -> waivers -> Report. No printing, no files.
#
# Extra check results computed elsewhere (recipe, trajectory, data) are passed in and reported alongside the
# model checks; checks that could not run appear as skipped with a reason.


@dataclass
class AuditSettings:
    variant: str
    config: ModelConfig
    seed: int = 0
    batches: int = 3
    fail_on: Severity = Severity.WARNING
    device: str = "cpu"
    engine: EngineOptions = field(default_factory=EngineOptions)
    waivers: Waivers = field(default_factory=Waivers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "batches": self.batches,
            "fail_on": self.fail_on.label,
            "device": self.device,
            "tolerances": self.engine.tolerances.to_dict(),
            "local_error": self.engine.local_error,
            "floor_batches": self.engine.floor_batches,
            "thorough": self.engine.thorough,
        }


def run_info() -> dict[str, Any]:
    """The volatile part of a report: when, where, with what."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "platform": platform.platform(),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__},
        "threads": torch.get_num_threads(),
    }


def statuses(checks: list[CheckResult], fail_on: Severity, waived_keys: set[str]) -> None:
    for c in checks:
        if c.status == "skipped":
            continue
        blocking = [f for f in c.findings if f.severity >= fail_on and f.key not in waived_keys]
        waived = [f for f in c.findings if f.severity >= fail_on and f.key in waived_keys]
        c.status = "failed" if blocking else ("waived" if waived else "passed")


def build_report(state: ComparisonState, settings: AuditSettings, subjects: Sequence[Subject],
                 extra_checks: Sequence[CheckResult] = (), *, extra_explanations_context: dict | None = None,
                 watches: Sequence[FiniteWatch] = ()) -> Report:
    """Checks, diagnosis and waivers into a Report; `watches` add where NaN/inf values start (before diagnosis,
    which explains them)."""
    checks = run_model_checks(state, settings.engine.tolerances) + list(extra_checks)
    add_non_finite_findings(checks, watches)
    have = {c.id for c in checks}
    for cid in CHECK_IDS:
        if cid not in have:
            checks.append(CheckResult(cid, "skipped", reason="not run in this audit"))
    findings = [f for c in checks for f in c.findings]
    explanations, unexplained = diagnose(findings, state, context=extra_explanations_context or {})
    settings.waivers.apply(explanations)
    waived_keys = {k for e in explanations if e.waived for k in e.evidence}
    statuses(checks, settings.fail_on, waived_keys)
    return Report(
        variant=settings.variant,
        subjects=[_subject_dict(s) for s in subjects],
        checks=checks,
        explanations=explanations,
        unexplained=[k for k in unexplained],
        noise_floors=state.floors.to_dict(),
        settings=settings.to_dict(),
        run=run_info(),
    )


def _subject_dict(subject: Subject) -> dict[str, Any]:
    info = subject.info
    return {
        "name": info.name, "kind": info.kind, "variant": info.variant, "source": info.source,
        "revision": info.revision, "shims": [dict(s) for s in info.shims], "warnings": list(info.warnings),
        **({"extra": dict(info.extra)} if info.extra else {}),
    }


def audit(reference: Subject, candidate: Subject, batches: Sequence[CanonicalBatch], settings: AuditSettings,
          extra_checks: Sequence[CheckResult] = (), *, verify_fixes: bool = True,
          context: dict[str, Any] | None = None) -> tuple[Report, ComparisonState]:
    engine = Engine(reference, candidate, variant=settings.variant, config=settings.config, options=settings.engine)
    state = engine.run(batches)
    report = build_report(state, settings, [reference, candidate], extra_checks, extra_explanations_context=context)
    if verify_fixes:
        verify_report_fixes(report, state, reference, candidate, batches, settings, floor_meter=engine.floor_meter)
    return report, state


def verify_report_fixes(report: Report, state: ComparisonState, reference: Subject, candidate: Subject,
                        batches: Sequence[CanonicalBatch], settings: AuditSettings,
                        floor_meter: FloorMeter | None = None) -> None:
    """Each explanation's mechanical fix, applied to a copy of the candidate and verified (diagnosis.fixes)."""
    verify_fixes_in_report(report, state, reference, candidate, batches, settings.variant, settings.config,
                           settings.engine, floor_meter=floor_meter)


def skip_unsupported(report: Report, reference: Reference) -> None:
    """Model checks a reference bundle has no recordings for become skipped, with the reason, and their
    (meaningless) findings are dropped, together with explanations that rested on them alone."""
    if reference.kind != "bundle":
        return
    dropped: set[str] = set()
    for check in report.checks:
        if check.id in TRAINING_CHECKS or check.id in reference.supported or check.status == "skipped":
            continue
        dropped |= {f.key for f in check.findings}
        check.status, check.findings, check.tables = "skipped", [], {}
        check.reason = (f"the reference bundle {reference.source} does not record what the {check.id} check needs; "
                        "record a new bundle or run with --original PATH")
    if dropped:
        report.explanations = [e for e in report.explanations if not set(e.evidence) <= dropped]
        report.unexplained = [k for k in report.unexplained if k not in dropped]


# ----------------------------------------------------------------------------------------------------------
# Causes hidden behind another: the audit run again with the verified fixes applied.
#
# Without teacher forcing (a replica whose levels were found by value has no `run_level`), every level after the
# first divergent one inherits its difference, so a second, independent mistake further down is invisible: its
# level already differs. Once the first explanation's mechanical fix is verified, the audit runs again on the
# fixed copy of the replica, on every batch; what still differs there has another cause, diagnosed the same way
# (relation tests at its root, a fix applied on top and verified). Each explanation found this way says which
# fixes it was found behind. A fix that removed most of the logits difference but left some of its findings (the
# second cause shows in the same levels) is looked behind too; when the fix found there is verified, the two
# together leave nothing, and the first says it was verified together with it. At most MAX_ROUNDS rounds; add-only: a failure never changes a verdict.

MAX_ROUNDS = 2
MOSTLY = 0.5  # share of the logits difference a fix must remove to be looked behind when unverified


def _significant(report_findings: Sequence[Finding], keys: Sequence[str]) -> bool:
    by_key = {f.key: f for f in report_findings}
    return any(by_key[k].severity >= Severity.WARNING for k in keys if k in by_key)


def _fixed_model(candidate: Subject, explanations: Sequence[Explanation], findings: Sequence[Finding]):  # noqa: ANN202
    model = candidate.model
    for exp in explanations:
        rule = rule_by_id(exp.id)
        claimed = [f for f in findings if f.key in set(exp.evidence)]
        fixed = apply_fix(rule.fix_action, model, claimed) if rule and rule.fix_action else None
        if fixed is None:
            return None
        model = fixed
    return model


def peel(report: Report, reference: Subject, candidate: Subject, batches: Sequence[CanonicalBatch],
         settings: AuditSettings, floors: NoiseFloors, context: dict, step: Callable[[str], None] | None = None) -> None:
    """Add the explanations found behind verified fixes to `report` (see the module docstring); `floors` are
    the first run's noise floors (reused, so both runs judge by the same tolerances)."""
    applied: list[Explanation] = []
    findings: list[Finding] = list(report.findings)
    present = {e.id for e in report.explanations}
    for _ in range(MAX_ROUNDS):
        verified = [e for e in report.explanations if e not in applied and (e.fix_verified or _mostly(e))]
        if not verified:
            return
        applied += verified
        try:
            model = _fixed_model(candidate, applied, findings)
            if model is None:
                return
            if step is not None:
                step(f"looking behind the fixes of {', '.join(e.id for e in applied)}")
            fixed = copy.copy(candidate)
            fixed.model = model
            options = copy.copy(settings.engine)
            options.init_check, options.progress, options.reuse_floors = False, None, floors
            engine = Engine(reference, fixed, variant=settings.variant, config=settings.config, options=options)
            state = engine.run(list(batches))
            after = [f for c in run_model_checks(state, settings.engine.tolerances) for f in c.findings]
            found, _ = diagnose(after, state, context=context)
            # a forward cause with a root level that the first run did not name (its level already differed)
            new = [e for e in found if e.id not in present and e.root_level and _significant(after, e.evidence)]
            if not new:
                return
            behind = [e.id for e in applied]
            for exp in new:
                exp.effect_measured = {**exp.effect_measured, "found_behind_fixes": ", ".join(behind)}
                present.add(exp.id)
            scratch = copy.copy(report)
            scratch.checks = [copy.copy(c) for c in report.checks]
            scratch.explanations = new
            _replace_findings(scratch, after)
            verify_report_fixes(scratch, state, reference, fixed, batches, settings)
            _add(report, new, after)
            _verified_together(applied, new)
            findings = list(report.findings)
        except Exception as exc:  # noqa: BLE001 - add-only
            report.settings.setdefault("notes", []).append(
                f"looking behind the verified fixes failed: {type(exc).__name__}: {str(exc)[:160]}")
            return


def _mostly(exp: Explanation) -> bool:
    """A fix that was applied and removed most of the logits difference without removing every finding it
    claims: another cause further down may hold the rest (it is looked for behind it)."""
    share = exp.effect_measured.get("share_of_logits_difference_explained")
    return exp.fix_verified is False and isinstance(share, int | float) and share >= MOSTLY


def _verified_together(applied: Sequence[Explanation], new: Sequence[Explanation]) -> None:
    """The fixes of `applied` plus the verified fixes found behind them, applied together, leave none of the
    findings: a fix that accounted for most of the difference alone is verified together with them."""
    behind = [e.id for e in new if e.fix_verified]
    if not behind or any(e.fix_verified is False and not _mostly(e) for e in applied):
        return
    for exp in applied:
        if exp.fix_verified is False:
            exp.fix_verified = True
            exp.effect_measured = {**exp.effect_measured, "verified_together_with": ", ".join(behind)}


def _replace_findings(report: Report, findings: Sequence[Finding]) -> None:
    """`report`'s checks hold `findings` (the re-run's), so a fix is judged on what the re-run saw."""
    by_check: dict[str, list[Finding]] = {}
    for f in findings:
        by_check.setdefault(f.check, []).append(f)
    for check in report.checks:
        check.findings = by_check.get(check.id, [])


def _add(report: Report, new: Sequence[Explanation], after: Sequence[Finding]) -> None:
    """The new explanations, and the re-run's information findings they rest on that the report lacks (their
    relation tests); a claimed finding at warning or above that the first run did not have is left out."""
    have = {f.key for f in report.findings}
    checks = {c.id: c for c in report.checks}
    by_key = {f.key: f for f in after}
    for exp in new:
        for key in exp.evidence:
            f = by_key.get(key)
            if f is not None and key not in have and f.severity < Severity.WARNING and f.check in checks:
                checks[f.check].findings.append(f)
                have.add(key)
        exp.evidence = [k for k in exp.evidence if k in have]
        report.explanations.append(exp)
