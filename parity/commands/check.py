"""The `parity check` pipeline, shared by the command line, the pytest plugin and the training-loop gates.

    report = run_check(resolve_options({"variant": "han-total", "batches": 1}))

It reads like the data flow, one named step per stage:

    inputs (waivers, mapping overrides, the previous report)
    -> reference (subjects.sides)  -> batches (batches.plan)  -> candidate (subjects.sides)
    -> compare (compare.engine)  -> training checks (checks.training)
    -> report: model checks, diagnosis, waivers (commands.audit)  -> verified fixes (diagnosis.fixes, one
       explanation at a time so progress names each attempt)
    -> drift against the previous report (commands.waivers)

Nothing is printed and no file is written here: progress and notes go to the callbacks, problems the user can
fix raise `UsageError` with one line, anything else is a bug in the tool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from percepiano_parity.batches.canonical import BatchError, CanonicalBatch
from percepiano_parity.batches.plan import make_batches, validate_batches
from percepiano_parity.checks.training import training_checks
from percepiano_parity.commands.audit import (
    AuditSettings,
    build_report,
    peel,
    skip_unsupported,
    verify_report_fixes,
)
from percepiano_parity.commands.waivers import Waivers, compute_drift, drift_note, load_previous
from percepiano_parity.compare.engine import Engine, EngineError, EngineOptions
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.compare.weight_mapping import load_overrides
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.interrupts import signals_as_interrupted
from percepiano_parity.core.options import CheckOptions
from percepiano_parity.core.report import CheckResult, Report
from percepiano_parity.subjects.non_finite import FiniteWatch, watch
from percepiano_parity.subjects.sides import (
    Candidate,
    Reference,
    candidate_from_model,
    default_bundles,
    mapping_overrides,
    resolve_candidate,
    resolve_reference,
)

Progress = Callable[[str, int, int], None]
# what the engine's progress stages mean, for people reading a log (the other stages name themselves)
STAGE_TEXT = {"prepare": "mapping weights and tracing both models", "batch": "comparing batches"}
Notify = Callable[[str], None]

INTERNAL_ERROR_HOOK = "PARITY_TEST_INTERNAL_ERROR"  # test hook: "1" makes run_check fail like a tool bug


class InternalErrorHook(RuntimeError):
    """Raised on purpose when PARITY_TEST_INTERNAL_ERROR=1, so tests can see exit code 3."""


@dataclass
class GivenModel:
    """A model object to audit as the candidate instead of `--replica` / `--deviation` (the training-loop
    gates): it goes through the same adapter path as `--replica`.

    model: audited as it is (the audit works on copies; this object is never changed);
    adapter: its adapter (None: the default, logits only); name: how reports name it;
    recipe: what the recipe check reads (None: the adapter's recipe(model) or model.configure_optimizers);
    initial_weights: the model holds the freshly built weights of the audit's seed, so the init check can
    compare them with the reference's; otherwise (trained or differently seeded weights) that check is skipped.
    """

    model: Any
    adapter: Any = None
    name: str = "given model"
    recipe: Any = None
    initial_weights: bool = False


INIT_NOT_FRESH = ("the audited model was built before the audit (its weights need not be the seed's initial "
                  "ones); pass initial_weights=True when it holds the freshly built weights of the seed")


@dataclass
class Inputs:
    """Everything the user points at besides the models, read (and refused) before anything heavy runs."""

    waivers: Waivers
    mapping: dict[str, str]
    previous: dict[str, Any] | None


@dataclass
class Comparison:
    """What the compare stage hands on: the folded state, the engine (its floor meter serves the fixes) and the
    watches that saw non-finite values."""

    state: ComparisonState
    engine: Engine
    watches: list[FiniteWatch]
    settings: AuditSettings
    overrides: dict[str, str] | None = None


@dataclass
class _Log:
    progress: Progress | None
    notify: Notify | None
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.notes.append(message)
        if self.notify is not None:
            self.notify(message)

    def step(self, stage: str, done: int = 0, total: int = 0) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


def run_check(options: CheckOptions, *, progress: Progress | None = None, notify: Notify | None = None,
              given: GivenModel | None = None) -> Report:
    """Run one audit as the options say and return its Report (see the module docstring); `given`: audit this
    model object as the candidate (options.replica and options.deviation are then ignored).

    Ctrl-C and SIGTERM raise `core.interrupts.Interrupted` meanwhile, so a `KeyboardInterrupt` or `SystemExit`
    that the user's code raises is told apart from one the user sends (`core.errors`).
    """
    with signals_as_interrupted():
        return _run_check(options, progress, notify, given)


def _run_check(options: CheckOptions, progress: Progress | None, notify: Notify | None,
               given: GivenModel | None) -> Report:
    if os.environ.get(INTERNAL_ERROR_HOOK) == "1":
        raise InternalErrorHook(f"internal error provoked on purpose ({INTERNAL_ERROR_HOOK}=1 test hook)")
    log = _Log(progress, notify)
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    inputs = read_inputs(options)
    log.step("loading the reference")
    reference = resolve_reference(options, log.note)
    batches = batches_for(reference, options)
    edge = sum(1 for b in batches if any(t.startswith("edge:") for t in b.tags))
    if edge:  # said up front: `--batches 1` still runs the edge cases, so "1/7" is not a surprise
        normal = len(batches) - edge
        log.step(f"{normal} realistic and {edge} edge-case batch{'es' if edge != 1 else ''} (--no-edge-cases "
                 "leaves the edge cases out)")
    data_side = dataset_checks(options, reference)  # the user's dataset, before any model runs: fails fast
    if given is None:
        log.step("building the replica")
        candidate = resolve_candidate(options, reference.variant, reference.config, reference.seed)
    else:
        log.step(f"adapting {given.name}")
        candidate = candidate_from_model(given.model, given.adapter, given.name, reference.variant,
                                         reference.config, recipe=given.recipe)
    compare_init = given is None or given.initial_weights
    comparison = compare(reference, candidate, batches, options, inputs, progress, compare_init=compare_init)
    log.step("training checks")
    training = training_checks(options, reference, candidate, reference.variant, reference.config, reference.seed,
                               settled_pairs(comparison))
    training += data_side
    log.step("diagnosis")
    report = build_report(comparison.state, comparison.settings, [reference.subject, candidate.subject], training,
                          extra_explanations_context=_diagnosis_context(reference), watches=comparison.watches)
    verify_fixes(report, comparison, reference, candidate, batches, log)
    peel(report, reference.subject, candidate.subject, batches, comparison.settings, comparison.state.floors,
         _diagnosis_context(reference), log.step)
    skip_unsupported(report, reference)
    describe_run(report, options, reference, batches, comparison, log, given)
    add_real_label_evidence(report, options, batches)
    add_drift(report, inputs, log)
    return report


# ------------------------------------------------------------------------------------------ the steps


def read_inputs(options: CheckOptions) -> Inputs:
    """Waivers, mapping overrides and the previous report: every file that can be wrong, refused up front."""
    waivers = Waivers.load(options.waivers) if options.waivers else Waivers()
    mapping = load_overrides(options.mapping)
    previous = load_previous(options.compare_to) if options.compare_to else None
    return Inputs(waivers, mapping, previous)


def batches_for(reference: Reference, options: CheckOptions) -> list[CanonicalBatch]:
    """The reference's own batches (a bundle fixes them) or freshly generated ones, validated."""
    batches = reference.batches if reference.batches is not None else make_batches(options, reference.config,
                                                                                   reference.seed)
    validate_batches(batches, reference.config)
    return batches


def compare(reference: Reference, candidate: Candidate, batches: Sequence[CanonicalBatch], options: CheckOptions,
            inputs: Inputs, progress: Progress | None, *, compare_init: bool = True) -> Comparison:
    """Both subjects on the same batches with the reference's weights, folded into a ComparisonState;
    `compare_init=False` skips the init check (a given model's weights need not be the seed's)."""
    overrides = mapping_overrides(inputs.mapping, candidate, reference)
    for subject in (reference.subject, candidate.subject):
        if options.device != "cpu":
            subject.model.to(options.device)
    engine_options = EngineOptions(tolerances=Tolerances(), init_check=reference.init_available and compare_init,
                                   mapping_overrides=overrides, progress=progress, thorough=options.thorough)
    normal = sum(1 for b in batches if not any(t.startswith("edge:") for t in b.tags))
    settings = AuditSettings(variant=reference.variant, config=reference.config, seed=reference.seed, batches=normal,
                             fail_on=options.severity, device=options.device, engine=engine_options,
                             waivers=inputs.waivers)
    watches = [watch(reference.subject, batches), watch(candidate.subject, batches)]
    engine = Engine(watches[0], watches[1], variant=reference.variant, config=reference.config,
                    options=engine_options)
    try:
        state = engine.run(batches)
    except EngineError as exc:
        cause = exc.__cause__
        raise UsageError(str(cause) if isinstance(cause, UsageError) else str(exc)) from exc
    except BatchError as exc:
        raise UsageError(f"batch rejected: {exc}") from exc
    if reference.init_available and not compare_init:
        state.init_note = INIT_NOT_FRESH
    return Comparison(state, engine, watches, settings, overrides)


def settled_pairs(comparison: Comparison) -> dict[str, str] | None:
    """The weight pairing the comparison settled (names, call order, values and overrides), for the training
    checks: they copy the same weights into the same parameters as the forward check did."""
    pairs = {r: c for r, c in comparison.state.weight_map.pairs.items() if r != c}
    merged = {**pairs, **(comparison.overrides or {})}
    return merged or None


def verify_fixes(report: Report, comparison: Comparison, reference: Reference, candidate: Candidate,
                 batches: Sequence[CanonicalBatch], log: _Log) -> None:
    """Each explanation's mechanical fix, tried one explanation at a time so the progress shows each attempt."""
    from percepiano_parity.diagnosis.catalog import rule_by_id

    explanations = report.explanations
    fixable = [e for e in explanations if (rule := rule_by_id(e.id)) is not None and rule.fix_action]
    try:
        for i, explanation in enumerate(fixable, 1):
            log.step(f"trying the fix of {explanation.id} ({i}/{len(fixable)})")
            report.explanations = [explanation]
            verify_report_fixes(report, comparison.state, reference.subject, candidate.subject, batches,
                                comparison.settings, floor_meter=comparison.engine.floor_meter)
    finally:
        report.explanations = explanations


def dataset_checks(options: CheckOptions, reference: Reference) -> list[CheckResult]:
    """With --dataset: the user's dataset and collate against the original's loader on one epoch of --data-split
    (checks.dataset); nothing otherwise."""
    if not options.dataset or not options.data:
        return []
    from percepiano_parity.batches.real.cache import CacheError
    from percepiano_parity.batches.real.loader import RealData
    from percepiano_parity.checks.dataset import dataset_check

    collate = reference.original.data_ops.feature_collate() if reference.original is not None else None
    try:
        return [dataset_check(RealData.open(options.data), options.data_split, options.dataset, options.seed,
                              num_label=reference.config.num_label, original_collate=collate)]
    except CacheError as exc:
        raise UsageError(f"--data: {exc}") from None


def _diagnosis_context(reference: Reference) -> dict[str, Any]:
    return {"original_root": str(reference.original.root)} if reference.original is not None else {}


def describe_run(report: Report, options: CheckOptions, reference: Reference, batches: Sequence[CanonicalBatch],
                 comparison: Comparison, log: _Log, given: GivenModel | None = None) -> None:
    """What the report says about how it was made (the settings section)."""
    overrides = comparison.overrides
    report.settings.update({
        "reference": reference.kind,
        "replica": f"user: {given.name}" if given is not None else _replica_kind(options),
        "deviation": options.deviation if given is None else None,
        "edge_cases": sum(1 for b in batches if any(t.startswith("edge:") for t in b.tags)),
        "max_notes": options.max_notes if reference.batches is None else None,
        "waivers_file": options.waivers,
        "mapping_overrides": sorted(overrides.items()) if overrides else [],
        "notes": list(log.notes),
    })
    if options.data:
        report.settings["data"] = {
            "cache": options.data, "split": options.data_split, "input_width": reference.config.input_size,
            "dataset": options.dataset,
            "segments": [[s.name for s in b.segments] for b in batches if "normal" in b.tags],
        }


def add_real_label_evidence(report: Report, options: CheckOptions, batches: Sequence[CanonicalBatch]) -> None:
    """With --data: what a label-file finding means on the real split (segments with other or missing labels)."""
    if not options.data:
        return
    from percepiano_parity.batches.real.labels import label_differences, label_set_for

    fed = [s.name for b in batches if "normal" in b.tags for s in b.segments]
    for finding in report.findings:
        if finding.kind != "data.label_file":
            continue
        used = label_set_for(str(finding.evidence.get("replica_file") or finding.evidence.get("replica") or ""))
        intended = label_set_for(str(finding.evidence.get("original_file") or finding.evidence.get("original") or ""))
        if used and intended and used != intended:
            finding.evidence["real_data"] = label_differences(options.data or "", options.data_split, intended, used,
                                                              fed, report_num_label(report))


def report_num_label(report: Report) -> int:
    config = report.settings.get("config") or {}
    return int(config.get("num_label", 19)) if isinstance(config, dict) else 19


def add_drift(report: Report, inputs: Inputs, log: _Log) -> None:
    """New, gone and unchanged explanations against the previous report, when one was given."""
    if inputs.previous is None:
        return
    report.drift = compute_drift(report, inputs.previous)
    caveat = drift_note(report, inputs.previous)
    if caveat:
        log.note(caveat)
        report.settings["notes"] = list(log.notes)


def _replica_kind(options: CheckOptions) -> str:
    if options.replica:
        return f"user: {options.replica}"
    if options.deviation:
        return f"bundled with deviation {options.deviation}"
    return "bundled"


def exit_code(report: Report, options: CheckOptions) -> int:
    return int(report.exit_code(options.severity, new_only=options.fail_on_new))


__all__ = ["INTERNAL_ERROR_HOOK", "CheckOptions", "GivenModel", "UsageError", "default_bundles", "exit_code",
           "run_check"]
