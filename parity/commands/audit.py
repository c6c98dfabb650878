"""One audit: engine -> checks -> diagnosis -> waivers -> Report. No printing, no files.

Extra check results computed elsewhere (recipe, trajectory, data) are passed in and reported alongside the
model checks; checks that could not run appear as skipped with a reason.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from percepiano_parity.checks import run_model_checks
from percepiano_parity.checks.non_finite import add_non_finite_findings
from percepiano_parity.checks.training.run import TRAINING_CHECKS
from percepiano_parity.commands.waivers import Waivers
from percepiano_parity.compare.engine import Engine, EngineOptions
from percepiano_parity.compare.noise import FloorMeter
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import CHECK_IDS, Severity
from percepiano_parity.core.report import CheckResult, Report
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.diagnosis.verify import verify_fixes_in_report
from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.reference import Reference
from percepiano_parity.subjects.subject import Subject
from percepiano_parity.subjects.watch import FiniteWatch


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
    """Each explanation's mechanical fix, applied to a copy of the candidate and verified (diagnosis.verify)."""
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
