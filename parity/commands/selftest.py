"""The self-test: prove that the audit catches every deviation in the library and explains it correctly.

For each deviation of `subjects.deviations` the self-test builds a reference (the faithful replica of the
deviation's variant, or the real original through a reference factory), builds the candidate with the
deviation applied, runs the full audit (model checks, and for recipe and data deviations the recipe,
trajectory and data checks of `checks.training`) and grades the report:

* caught: some finding at warning or above;
* right explanation first: the first explanation that is neither waived nor information has the deviation's
  expected catalog id;
* root-cause level: that explanation's root level equals the deviation's expected level (when it has one);
* first divergent level / operation and whether the mechanical fix was verified are reported, not graded.

It also audits the faithful replica against the reference for every variant: nothing may come out above
information. Like sklearn's `check_estimator`, one generator feeds two front ends: `parity selftest` prints
`format_matrix(result)`, and tests assert `result.ok`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from percepiano_parity import replica
from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.batches.selftest import default_selftest_batches
from percepiano_parity.commands.audit import AuditSettings, audit, build_report, verify_report_fixes
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.config import SMALL_CONFIG, ModelConfig
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import CheckResult, Report
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
from percepiano_parity.subjects.bundle import batch_hash
from percepiano_parity.subjects.deviations import DEVIATIONS, Deviation
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import Subject, SubjectInfo

MODEL_SEED = 7  # the original's th_seed: reference and candidate are built after torch.manual_seed(7)

ReferenceFactory = Callable[[str, ModelConfig, int], Subject]
Progress = Callable[[str, int, int], None]
TrainingChecks = Callable[..., list[CheckResult]]

NOT_RUN_TRAINING = "not run: recipe checks unavailable (checks.training cannot be imported)"


@dataclass
class SelftestRow:
    """One line of the self-test matrix: a deviation (or the faithful replica of a variant) and its grades."""

    name: str  # deviation name, or "faithful" for the faithful replica
    number: int | None  # position in the reproduction history (None for faithful rows)
    kind: str  # "model" | "variant" | "recipe" | "data" | "faithful"
    variant: str
    status: str = "failed"  # "passed" | "failed" | "not run"
    reason: str = ""  # why failed or not run
    caught: bool | None = None
    right_explanation_first: bool | None = None
    explanation: str | None = None  # id of the first explanation (neither waived nor information)
    expected_explanation: str | None = None
    root_level: str | None = None
    expected_level: str | None = None
    first_divergent_level: str | None = None
    first_divergent_op: str | None = None
    fix_verified: bool | None = None
    explanations: int = 0  # explanations above information
    unexplained: int = 0  # significant findings no rule explains
    worst: str = ""  # worst finding severity
    quirk: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuditRun:
    """One audit of the self-test: its report (as graded) and state, and the subjects and settings compared (a
    fix can be verified on them later)."""

    report: Report
    state: ComparisonState
    reference: Subject
    candidate: Subject
    settings: AuditSettings


# What makes two self-test audits the same: the row's name (a deviation, or "faithful"), its variant, the
# reference, the model config, the seed, the batches' contents, whether fixes are verified, the training checks.
AuditKey = tuple[str, str, str, str, int, tuple[str, ...], bool, str]


@dataclass
class SelftestResult:
    rows: list[SelftestRow]
    reference: str  # what the deviations were compared against
    batches: list[str] = field(default_factory=list)  # tags of the batches used
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # each row's audit by row name (deviation name, or "faithful <variant>"); not part of to_dict
    audits: dict[str, AuditRun] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Every row passed or could not run (recipe rows without checks.training)."""
        return all(r.status != "failed" for r in self.rows)

    @property
    def failed(self) -> list[SelftestRow]:
        return [r for r in self.rows if r.status == "failed"]

    def matrix(self) -> list[dict[str, Any]]:
        """One plain dict per row, in library order, faithful rows last."""
        return [{
            "deviation": r.name, "number": r.number, "variant": r.variant, "status": r.status,
            "caught": r.caught, "right_explanation_first": r.right_explanation_first,
            "explanation": r.explanation, "expected_explanation": r.expected_explanation,
            "root_level": r.root_level, "expected_level": r.expected_level,
            "first_divergent_level": r.first_divergent_level, "first_divergent_op": r.first_divergent_op,
            "fix_verified": r.fix_verified, "reason": r.reason,
        } for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reference": self.reference, "batches": self.batches, "config": self.config,
                "seconds": round(self.seconds, 1), "rows": [r.to_dict() for r in self.rows]}


# -- subjects --------------------------------------------------------------------------------------------------

def faithful_reference(variant: str, config: ModelConfig, seed: int) -> Subject:
    """The default reference: the faithful replica of `variant`, named "original" in the report."""
    model = replica.build(variant, config, seed=seed)
    return ReplicaSubject(model, SubjectInfo(name="original", kind="bundled-replica", variant=variant,
                                             source="replica (faithful) as reference"))


def _candidate(model: replica.PercePianoModel, variant: str, source: str) -> ReplicaSubject:
    return ReplicaSubject(model, SubjectInfo(name="replica", kind="bundled-replica", variant=variant, source=source))


def _training_checks() -> TrainingChecks | None:
    try:
        from percepiano_parity.checks.training import checks_for
    except ImportError:
        return None
    return checks_for


# -- grading ---------------------------------------------------------------------------------------------------

def _first_divergence(report: Report) -> tuple[str | None, str | None]:
    level = op = None
    for f in report.findings:
        if f.kind == "forward.first_divergent":
            level = f.evidence.get("first_divergent_level") or f.location
        elif f.kind == "forward.first_divergent_op":
            op = f.location
    return level, op


def grade(row: SelftestRow, report: Report, deviation: Deviation | None) -> SelftestRow:
    """Fill the row's grades from a report; `deviation` None grades a faithful comparison (must be clean)."""
    findings = report.findings
    worst = max((f.severity for f in findings), default=Severity.INFO)
    row.worst = worst.label
    row.caught = worst >= Severity.WARNING
    shown = [e for e in report.explanations if not e.waived and e.severity > Severity.INFO]
    row.explanations = len(shown)
    row.unexplained = len(report.unexplained)
    row.first_divergent_level, op = _first_divergence(report)
    first = shown[0] if shown else None
    if first is not None:
        row.explanation = first.id
        row.root_level = first.root_level
        row.first_divergent_op = first.first_divergent_op or op
        row.fix_verified = first.fix_verified
        row.quirk = first.quirk
    else:
        row.first_divergent_op = op
    problems: list[str] = []
    if deviation is None:
        bad = sorted({f.key for f in findings if f.severity > Severity.INFO})
        if bad:
            problems.append(f"the faithful replica raises {len(bad)} finding(s) above information: "
                            + ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else ""))
    else:
        row.right_explanation_first = first is not None and first.id == deviation.expected_explanation
        if not row.caught:
            problems.append("not caught: no finding at warning or above")
        elif not row.right_explanation_first:
            problems.append(f"first explanation is {row.explanation or 'none'}, expected "
                            f"{deviation.expected_explanation}")
        if deviation.expected_level is not None and row.root_level != deviation.expected_level:
            problems.append(f"root level {row.root_level}, expected {deviation.expected_level}")
    row.status = "failed" if problems else "passed"
    row.reason = "; ".join(problems)
    return row


# -- running ---------------------------------------------------------------------------------------------------

def run_selftest(reference_factory: ReferenceFactory | None = None, config: ModelConfig = SMALL_CONFIG, seed: int = 0,
                 progress: Progress | None = None, *, batches: Sequence[CanonicalBatch] | None = None,
                 deviations: Sequence[str] | None = None, variants: Sequence[str] | None = None,
                 original: Any = None, verify_fixes: bool = True,
                 training_checks: TrainingChecks | None = None,
                 audits: dict[AuditKey, AuditRun] | None = None) -> SelftestResult:
    """Audit every deviation of the library (or those named) and the faithful replica of every variant.

    reference_factory(variant, config, seed) -> Subject builds the reference side (default: the faithful
    replica; with `original`, an `original_adapter` Original, its `subject`). `original` is also handed to the
    recipe, trajectory and data checks. `batches` default to `default_selftest_batches(config, seed)`: the
    hazard batches plus generated ones when batches.synthetic is available. `training_checks` defaults to
    `checks.training.checks_for` when importable. `audits` is a dict kept between calls (a test session's): an
    audit already in it under the same `AuditKey` is graded again instead of run again, and each new one is added,
    so each deviation is audited once however many callers read it.
    """
    started = time.perf_counter()
    if reference_factory is None:
        reference_factory = (lambda v, c, s: original.subject(v, c, s)) if original is not None else faithful_reference
    batch_list = list(batches) if batches is not None else default_selftest_batches(config, seed)
    chosen = [DEVIATIONS[n] for n in deviations] if deviations is not None else list(DEVIATIONS.values())
    faithful_variants = list(variants) if variants is not None else list(replica.VARIANTS)
    if training_checks is None:
        training_checks = _training_checks()
    reference_name = ("the original at " + str(getattr(original, "root", "")) if original is not None
                      else "faithful replica" if reference_factory is faithful_reference else "custom reference")
    memo: dict[AuditKey, AuditRun] = audits if audits is not None else {}
    same_reference = reference_name if reference_name != "custom reference" else f"custom {id(reference_factory)}"
    shared = (same_reference, json.dumps(config.to_dict(), sort_keys=True), seed,
              tuple(batch_hash(b) for b in batch_list), verify_fixes,
              getattr(training_checks, "__qualname__", repr(training_checks)))

    def key(name: str, variant: str) -> AuditKey:
        return (name, variant, *shared)

    references: dict[str, Subject] = {}
    row_audits: dict[str, AuditRun] = {}

    def reference_for(variant: str) -> Subject:
        if variant not in references:
            references[variant] = reference_factory(variant, config, MODEL_SEED)
        return references[variant]

    def settings_for(variant: str) -> AuditSettings:
        return AuditSettings(variant=variant, config=config, seed=seed, batches=len(batch_list))

    def faithful_run(variant: str) -> AuditRun:
        """The faithful replica's comparison (no training checks), reused by the recipe and data deviations."""
        run_key = key("faithful comparison", variant)
        if run_key not in memo:
            cand = _candidate(replica.build(variant, config, seed=MODEL_SEED), variant, "replica (faithful)")
            settings = settings_for(variant)
            reference = reference_for(variant)
            report, state = audit(reference, cand, batch_list, settings, verify_fixes=verify_fixes)
            memo[run_key] = AuditRun(report, state, reference, cand, settings)
        return memo[run_key]

    def graded(row: SelftestRow, deviation: Deviation | None, run: Callable[[], AuditRun],
               audit_name: str | None = None) -> SelftestRow:
        """The row graded on its audit: the memo's (under `audit_name`, default the row's name), or `run()` (then
        kept); a failing audit fails the row."""
        row_key = key(audit_name or row.name, row.variant)
        t0 = time.perf_counter()
        try:
            if row_key not in memo:
                memo[row_key] = run()
            row_audits[row.name if deviation is not None else f"faithful {row.variant}"] = memo[row_key]
            grade(row, memo[row_key].report, deviation)
        except Exception as exc:  # a deviation the audit cannot even run on is a self-test failure
            row.status = "failed"
            row.reason = f"audit raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        finally:
            row.seconds = time.perf_counter() - t0
        return row

    total = len(chosen) + len(faithful_variants)
    rows: list[SelftestRow] = []
    for i, dev in enumerate(chosen):
        if progress:
            progress(dev.name, i, total)
        row = SelftestRow(name=dev.name, number=dev.number, kind=dev.kind, variant=dev.variant,
                          expected_explanation=dev.expected_explanation, expected_level=dev.expected_level,
                          quirk=dev.quirk)
        if dev.kind in ("recipe", "data") and training_checks is None:
            row.status, row.reason = "not run", NOT_RUN_TRAINING
            rows.append(row)
            continue
        rows.append(graded(row, dev, lambda dev=dev: _deviation_audit(
            dev, config, batch_list, reference_for, settings_for, faithful_run, training_checks, original,
            verify_fixes)))
    recipe_variants = {d.variant for d in chosen if d.kind in ("recipe", "data")}
    for j, variant in enumerate(faithful_variants):
        if progress:
            progress(f"faithful {variant}", len(chosen) + j, total)
        checks = training_checks if variant in recipe_variants else None
        row = SelftestRow(name="faithful", number=None, kind="faithful", variant=variant)
        rows.append(graded(row, None, lambda variant=variant, checks=checks: _faithful_audit(
            faithful_run(variant), config, checks, original),
            "faithful with training checks" if checks is not None else "faithful"))
    if progress:
        progress("done", total, total)
    return SelftestResult(rows=rows, reference=reference_name, batches=[",".join(b.tags) or "generated"
                                                                        for b in batch_list],
                          config=config.to_dict(), seconds=time.perf_counter() - started, audits=row_audits)


def _deviation_audit(dev: Deviation, config: ModelConfig, batch_list: list[CanonicalBatch],
                     reference_for: Callable[[str], Subject], settings_for: Callable[[str], AuditSettings],
                     faithful_run: Callable[[str], AuditRun], training_checks: TrainingChecks | None,
                     original: Any, verify_fixes: bool) -> AuditRun:
    """One deviation's audit: the candidate with the deviation against the reference; a recipe or data
    deviation reuses the faithful comparison (its model is the faithful one) and adds the training checks."""
    if dev.kind in ("recipe", "data"):
        assert training_checks is not None
        run = faithful_run(dev.variant)
        extra = training_checks(original, dev.recipe(ORIGINAL_RECIPE), dev.variant, config, MODEL_SEED,
                                original=original)
        report = build_report(run.state, run.settings, [run.reference, run.candidate], extra)
        if verify_fixes:
            verify_report_fixes(report, run.state, run.reference, run.candidate, batch_list, run.settings)
        return AuditRun(report, run.state, run.reference, run.candidate, run.settings)
    model = dev.build_candidate(config, seed=MODEL_SEED)
    cand = _candidate(model, dev.variant, f"replica with deviation {dev.name}")
    reference, settings = reference_for(dev.variant), settings_for(dev.variant)
    report, state = audit(reference, cand, batch_list, settings, verify_fixes=verify_fixes)
    return AuditRun(report, state, reference, cand, settings)


def _faithful_audit(run: AuditRun, config: ModelConfig, training_checks: TrainingChecks | None,
                    original: Any) -> AuditRun:
    """The faithful replica of one variant: its comparison, and where a recipe deviation of the variant is in
    the run, the faithful recipe through the recipe, trajectory and data checks too (all must pass)."""
    if training_checks is None:
        return run
    extra = training_checks(original, ORIGINAL_RECIPE, run.settings.variant, config, MODEL_SEED, original=original)
    report = build_report(run.state, run.settings, [run.reference, run.candidate], extra)
    return AuditRun(report, run.state, run.reference, run.candidate, run.settings)


# -- rendering -------------------------------------------------------------------------------------------------

def _mark(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def format_matrix(result: SelftestResult) -> str:
    """The self-test matrix as a plain-text table (fixed columns, no colour), then a one-line verdict."""
    headers = ("#", "deviation", "variant", "caught", "expl. first", "explanation", "root level (expected)",
               "first divergent", "first op", "fix", "status")
    lines: list[tuple[str, ...]] = []
    for r in result.rows:
        if r.kind == "faithful":
            root = "-"
        else:
            root = f"{r.root_level or '-'}" + (f" ({r.expected_level})" if r.expected_level else "")
        expl = r.explanation or "-"
        if r.kind != "faithful" and r.expected_explanation and r.explanation != r.expected_explanation:
            expl += f" (want {r.expected_explanation})"
        status = r.status + (" (quirk)" if r.quirk and r.status == "passed" else "")
        lines.append((str(r.number) if r.number is not None else "", r.name, r.variant,
                      _mark(r.caught) if r.kind != "faithful" else ("clean" if r.caught is False else
                                                                     _mark(r.caught)),
                      _mark(r.right_explanation_first), expl, root, r.first_divergent_level or "-",
                      r.first_divergent_op or "-", _mark(r.fix_verified), status))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [fmt(headers), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    notes = [f"  {r.name} [{r.variant}]: {r.reason}" for r in result.rows if r.reason]
    if notes:
        out += ["", "notes:", *notes]
    passed = sum(r.status == "passed" for r in result.rows)
    not_run = sum(r.status == "not run" for r in result.rows)
    out += ["", f"self-test {'passed' if result.ok else 'FAILED'}: {passed} passed, {len(result.failed)} failed"
            + (f", {not_run} not run" if not_run else "") + f" against {result.reference} on {len(result.batches)} "
            f"batches in {result.seconds:.0f}s"]
    return "\n".join(out)


__all__ = ["MODEL_SEED", "AuditKey", "AuditRun", "SelftestResult", "SelftestRow", "faithful_reference", "format_matrix", "grade",
           "run_selftest"]
