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

from parity.checks import run_model_checks
from parity.diagnosis import diagnose
from parity.engine import Engine, EngineOptions
from parity.findings import CHECK_IDS, Severity
from parity.noise import FloorMeter
from parity.report import CheckResult, Report
from parity.state import ComparisonState
from parity.subject import Subject
from parity.waivers import Waivers
from replica.batch import CanonicalBatch
from replica.config import ModelConfig


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
                 extra_checks: Sequence[CheckResult] = (), *, extra_explanations_context: dict | None = None
                 ) -> Report:
    checks = run_model_checks(state, settings.engine.tolerances) + list(extra_checks)
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
        verify_fixes_in_report(report, state, reference, candidate, batches, settings,
                               floor_meter=engine.floor_meter)
    return report, state


FIX_BATCHES = 2  # batches re-run per attempted fix (the first ones of the audit)


def verify_fixes_in_report(report: Report, state: ComparisonState, reference: Subject, candidate: Subject,
                           batches: Sequence[CanonicalBatch], settings: AuditSettings,
                           floor_meter: FloorMeter | None = None) -> None:
    """Apply each explanation's mechanical fix to a copy of the candidate, re-run, record the result.

    Diagnosis is add-only: a fix that cannot be applied or fails leaves `fix_verified` as None and never
    changes a verdict.
    """
    import copy

    from parity.diagnosis import rule_by_id
    from parity.fixes import apply_fix, verify

    before = report.findings
    logits_before = state.levels["logits"].real.max_abs if "logits" in state.levels else 0.0
    loss_before = state.loss.max_abs
    for exp in report.explanations:
        rule = rule_by_id(exp.id)
        action = rule.fix_action if rule else None
        if not action:
            continue
        claimed = [f for f in before if f.key in set(exp.evidence)]
        try:
            fixed_model = apply_fix(action, candidate.model, claimed)
            if fixed_model is None:
                continue
            fixed = copy.copy(candidate)
            fixed.model = fixed_model
            options = copy.copy(settings.engine)
            options.init_check = False
            options.reuse_floors = state.floors
            options.floor_meter = floor_meter  # can still add gradient floors the main run did not need
            options.progress = None
            engine = Engine(reference, fixed, variant=settings.variant, config=settings.config, options=options)
            after_state = engine.run(list(batches[:FIX_BATCHES]))
            after = [f for c in run_model_checks(after_state, settings.engine.tolerances) for f in c.findings]
            logits_after = after_state.levels["logits"].real.max_abs if "logits" in after_state.levels else 0.0
            verify(exp, claimed, after, logits_before, logits_after, loss_before, after_state.loss.max_abs)
        except Exception as exc:  # noqa: BLE001 - diagnosis never breaks the audit
            exp.effect_measured = {**exp.effect_measured, "fix_error": f"{type(exc).__name__}: {exc}"[:200]}
