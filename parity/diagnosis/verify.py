"""Verified fixes: each explanation's mechanical fix applied to a copy of the candidate, and the audit re-run on
the first batches, so a report can say whether the fix makes the explained findings disappear and how much of
the logits and loss difference it accounts for.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from percepiano_parity.checks import run_model_checks
from percepiano_parity.compare.engine import Engine, EngineOptions
from percepiano_parity.compare.noise import FloorMeter
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.report import Report
from percepiano_parity.diagnosis.catalog import rule_by_id
from percepiano_parity.diagnosis.fixes import apply_fix, verify
from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.subject import Subject

FIX_BATCHES = 2  # batches re-run per attempted fix (the first ones of the audit)


def verify_fixes_in_report(report: Report, state: ComparisonState, reference: Subject, candidate: Subject,
                           batches: Sequence[CanonicalBatch], variant: str, config: ModelConfig,
                           engine_options: EngineOptions, floor_meter: FloorMeter | None = None) -> None:
    """Apply each explanation's mechanical fix to a copy of the candidate, re-run, record the result.

    Diagnosis is add-only: a fix that cannot be applied or fails leaves `fix_verified` as None and never
    changes a verdict.
    """
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
            options = copy.copy(engine_options)
            options.init_check = False
            options.reuse_floors = state.floors
            options.floor_meter = floor_meter  # can still add gradient floors the main run did not need
            options.progress = None
            engine = Engine(reference, fixed, variant=variant, config=config, options=options)
            after_state = engine.run(list(batches[:FIX_BATCHES]))
            after = [f for c in run_model_checks(after_state, engine_options.tolerances) for f in c.findings]
            logits_after = after_state.levels["logits"].real.max_abs if "logits" in after_state.levels else 0.0
            verify(exp, claimed, after, logits_before, logits_after, loss_before, after_state.loss.max_abs)
        except Exception as exc:  # noqa: BLE001 - diagnosis never breaks the audit
            exp.effect_measured = {**exp.effect_measured, "fix_error": f"{type(exc).__name__}: {exc}"[:200]}
