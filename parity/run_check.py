"""The `parity check` pipeline as one function, shared by the command line and the pytest plugin.

    report = run_check(resolve_options({"variant": "han-total", "batches": 1}))

Order: read every input that can be wrong (waivers, mapping overrides, the previous report) -> resolve the
reference (a bundle, else a live original, else the shipped bundle for the variant) -> batches -> the replica
(bundled, with a library deviation, or the user's factory and adapter) -> compare -> training checks -> report
-> drift. Nothing is printed and no file is written here: progress and notes go to the callbacks, problems the
user can fix raise `UsageError` with one line, anything else is a bug in the tool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.audit import AuditSettings, build_report, verify_fixes_in_report
from parity.config import EDGE_MAX_NOTES, CheckOptions, UsageError
from parity.drift import compute_drift, drift_note, load_previous
from parity.engine import Engine, EngineError, EngineOptions
from parity.findings import CHECK_IDS
from parity.mapping import load_overrides
from parity.replica_subject import ReplicaSubject
from parity.report import CheckResult, Report
from parity.subject import Subject, SubjectInfo
from parity.tolerance import Tolerances
from parity.waivers import Waivers
from replica.batch import BatchError, CanonicalBatch
from replica.config import DEFAULT_CONFIG, SMALL_CONFIG, ModelConfig

Progress = Callable[[str, int, int], None]
Notify = Callable[[str], None]

INTERNAL_ERROR_HOOK = "PARITY_TEST_INTERNAL_ERROR"  # test hook: "1" makes run_check fail like a tool bug
# Test hook: "replica" makes the faithful bundled replica the reference when no bundle or original is given
# (for the tool's own tests on machines without the original or the shipped bundles; never a parity verdict).
REPLICA_REFERENCE_HOOK = "PARITY_TEST_REFERENCE"
TRAINING_CHECKS = ("recipe", "trajectory", "data")


class InternalErrorHook(RuntimeError):
    """Raised on purpose when PARITY_TEST_INTERNAL_ERROR=1, so tests can see exit code 3."""


@dataclass
class Reference:
    subject: Subject
    kind: str  # "bundle" | "original"
    variant: str
    config: ModelConfig
    seed: int
    batches: list[CanonicalBatch] | None = None  # fixed by a bundle
    init_available: bool = True
    supported: tuple[str, ...] = CHECK_IDS
    original: Any = None  # original_adapter.Original for a live reference
    bundle: Any = None
    source: str = ""


@dataclass
class Candidate:
    subject: Subject
    recipe: Any = None  # a replica.recipe.Recipe, or what the user's adapter offers
    mapping: dict[str, str] = field(default_factory=dict)
    adapter: Any = None


# ------------------------------------------------------------------------------------------ inputs


def _load_waivers(options: CheckOptions) -> Waivers:
    if not options.waivers:
        return Waivers()
    try:
        return Waivers.load(options.waivers)
    except ValueError as exc:
        raise UsageError(f"--waivers: {exc}") from None


def _load_mapping(options: CheckOptions) -> dict[str, str]:
    try:
        return load_overrides(options.mapping)
    except ValueError as exc:
        raise UsageError(f"--mapping: {exc}") from None


def model_config_for(options: CheckOptions) -> ModelConfig:
    choice = options.model_config
    if choice == "default":
        return DEFAULT_CONFIG
    if choice == "small":
        return SMALL_CONFIG
    try:
        return ModelConfig.from_yaml(choice)
    except ValueError as exc:
        raise UsageError(f"--model-config: {exc}") from None


# ------------------------------------------------------------------------------------------ reference


def _bundle_module() -> Any:
    try:
        import parity.bundle as bundle_module
    except ImportError:
        return None
    return bundle_module


def default_bundles() -> dict[str, Any]:
    module = _bundle_module()
    return dict(getattr(module, "DEFAULT_BUNDLES", {}) or {}) if module is not None else {}


def _from_bundle(path: str | Path, options: CheckOptions, notify: Notify, *, shipped: bool) -> Reference:
    module = _bundle_module()
    if module is None:
        raise UsageError("reference bundles are not available in this installation (parity.bundle is missing); "
                         "give --original PATH instead")
    expect = options.variant if options.given("variant") or options.deviation else None
    try:
        bundle = module.load_bundle(path, expect_variant=expect)
    except module.BundleError as exc:
        raise UsageError(f"reference bundle {path}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"reference bundle {path}: {exc.strerror or exc}") from None
    fixed = {"seed": bundle.seed, "batches": len(bundle.batches)}
    ignored = [f"--{name} {getattr(options, name)}" for name in ("seed", "batches")
               if options.given(name) and getattr(options, name) != fixed[name]]
    ignored += [f"--{name.replace('_', '-')} {getattr(options, name)}" for name in ("max_notes", "model_config")
                if options.given(name)]
    if options.given("edge_cases"):
        ignored.append("--no-edge-cases")
    label = "the shipped reference bundle" if shipped else "the reference bundle"
    if ignored:
        notify(f"{label} fixes the seed ({bundle.seed}), the batches ({len(bundle.batches)}) and the model config; "
               f"ignored: {', '.join(ignored)}")
    for warning in getattr(bundle, "warnings", ()) or ():
        notify(f"reference bundle: {warning}")
    try:
        subject = bundle.reference_subject()
    except module.BundleError as exc:
        raise UsageError(f"reference bundle {path}: {exc}") from None
    supported = tuple(getattr(bundle, "supported_checks", CHECK_IDS) or ())
    return Reference(subject=subject, kind="bundle", variant=bundle.variant, config=bundle.config, seed=bundle.seed,
                     batches=list(bundle.batches), init_available="init" in supported, supported=supported,
                     bundle=bundle, source=str(path))


def _from_original(options: CheckOptions, variant: str, notify: Notify) -> Reference:
    import original_adapter

    config = model_config_for(options)
    try:
        original = original_adapter.load(options.original)
        subject = original.subject(variant, config, options.seed)
    except original_adapter.OriginalLoadError as exc:
        where = f" (from ${'PERCEPIANO_ORIGINAL'})" if options.original_from_env else ""
        raise UsageError(f"original{where}: {exc}") from None
    for warning in original.warnings:
        notify(f"original: {warning}")
    return Reference(subject=subject, kind="original", variant=variant, config=config, seed=options.seed,
                     original=original, source=str(original.root))


def _replica_reference(options: CheckOptions, notify: Notify) -> Reference:
    from replica.variants import build

    config = model_config_for(options) if options.given("model_config") else SMALL_CONFIG
    notify(f"{REPLICA_REFERENCE_HOOK}=replica: the faithful bundled replica is the reference (a test hook)")
    model = build(options.variant, config, seed=options.seed)
    info = SubjectInfo(name="original", kind="bundled-replica", variant=options.variant,
                       source=f"faithful replica ({REPLICA_REFERENCE_HOOK} test hook)")
    return Reference(subject=ReplicaSubject(model, info), kind="replica", variant=options.variant, config=config,
                     seed=options.seed)


def resolve_reference(options: CheckOptions, notify: Notify) -> Reference:
    if options.reference:
        return _from_bundle(options.reference, options, notify, shipped=False)
    if options.original:
        return _from_original(options, options.variant, notify)
    if os.environ.get(REPLICA_REFERENCE_HOOK) == "replica":
        return _replica_reference(options, notify)
    shipped = default_bundles()
    path = shipped.get(options.variant)
    if path is None or not Path(path).exists():
        have = ", ".join(sorted(v for v, p in shipped.items() if Path(p).exists())) or "none"
        raise UsageError(f"no reference for variant {options.variant}: shipped bundles cover {have}; give --original "
                         "PATH (a PercePiano checkout), set PERCEPIANO_ORIGINAL or [tool.parity] original, or pass "
                         "--reference BUNDLE")
    return _from_bundle(path, options, notify, shipped=True)


# ------------------------------------------------------------------------------------------ batches


def make_batches(options: CheckOptions, config: ModelConfig, seed: int) -> list[CanonicalBatch]:
    from parity.batches import edge_cases, generate_batches

    batches = generate_batches(options.batches, seed, config=config, max_notes=options.max_notes,
                               include_edge_cases=False)
    if options.edge_cases:
        cap = min(options.max_notes or EDGE_MAX_NOTES, EDGE_MAX_NOTES)
        batches += edge_cases(seed, config, max_notes=cap)
    return batches


def validate_batches(batches: Sequence[CanonicalBatch], config: ModelConfig) -> None:
    for i, batch in enumerate(batches):
        try:
            batch.validate(config.input_size, config.num_label)
        except BatchError as exc:
            raise UsageError(f"batch {i} ({', '.join(batch.tags) or 'generated'}): {exc}") from None


# ------------------------------------------------------------------------------------------ replica


def resolve_candidate(options: CheckOptions, variant: str, config: ModelConfig, seed: int) -> Candidate:
    from replica.recipe import ORIGINAL_RECIPE
    from replica.variants import build

    if options.deviation:
        from replica.deviations import get_deviation

        dev = get_deviation(options.deviation)
        model = dev.build_candidate(config, seed)
        info = SubjectInfo(name="replica", kind="bundled-replica", variant=dev.candidate_variant or variant,
                           source=f"bundled replica with deviation {dev.name}",
                           extra={"deviation": dev.name, "deviation_title": dev.title, "deviation_kind": dev.kind})
        return Candidate(ReplicaSubject(model, info), recipe=dev.recipe())
    if options.replica:
        from parity.user_subject import (
            DEFAULT_ADAPTER,
            call_factory,
            load_factory,
            make_user_subject,
            recipe_source,
        )
        from replica.models import PercePianoModel

        factory = load_factory(options.replica)
        model, adapter = call_factory(factory, options.replica, variant=variant, config=config, seed=seed)
        if adapter is DEFAULT_ADAPTER and isinstance(model, PercePianoModel):
            info = SubjectInfo(name="replica", kind="user-replica", variant=variant, source=options.replica,
                               extra={"class": f"{type(model).__module__}.{type(model).__qualname__}",
                                      "adapter": "replica levels"})
            subject: Subject = ReplicaSubject(model, info)
        else:
            subject = make_user_subject(model, adapter, spec=options.replica, variant=variant, config=config)
        return Candidate(subject, recipe=recipe_source(model, adapter), adapter=adapter)
    model = build(variant, config, seed=seed)
    info = SubjectInfo(name="replica", kind="bundled-replica", variant=variant, source="bundled replica")
    return Candidate(ReplicaSubject(model, info), recipe=ORIGINAL_RECIPE)


def _mapping_overrides(file_map: dict[str, str], candidate: Candidate, reference: Reference) -> dict[str, str] | None:
    overrides: dict[str, str] = {}
    if candidate.adapter is not None:
        from parity.user_subject import resolve_mapping

        overrides.update(resolve_mapping(candidate.adapter, reference.subject.model, candidate.subject.model))
    overrides.update(file_map)
    if not overrides:
        return None
    ref_names = {n for n, _ in reference.subject.model.named_parameters()}
    cand_names = {n for n, _ in candidate.subject.model.named_parameters()}
    bad_ref = sorted(r for r in overrides if r not in ref_names)
    bad_cand = sorted(c for c in overrides.values() if c not in cand_names)
    if bad_ref or bad_cand:
        parts = []
        if bad_ref:
            parts.append(f"not in the reference: {', '.join(bad_ref[:4])}{' …' if len(bad_ref) > 4 else ''}")
        if bad_cand:
            parts.append(f"not in the replica: {', '.join(bad_cand[:4])}{' …' if len(bad_cand) > 4 else ''}")
        raise UsageError(f"weight-map overrides name parameters that do not exist ({'; '.join(parts)})")
    return overrides


# ------------------------------------------------------------------------------------------ training checks


def training_checks(options: CheckOptions, reference: Reference, candidate: Candidate, variant: str,
                    config: ModelConfig, seed: int) -> list[CheckResult]:
    """Recipe, trajectory and data checks through parity.training, or skipped results that say why.

    With a live original they read its checkout and run its training step; with a bundle (or the test hook)
    they compare against the recorded recipe and data outputs, and the faithful replica's training step.
    """
    if not options.training_checks:
        return [CheckResult(c, "skipped", reason="turned off (--no-training-checks)") for c in TRAINING_CHECKS]
    try:
        from parity.training import checks_for
    except ImportError:
        return [CheckResult(c, "skipped", reason="training checks are not available in this installation")
                for c in TRAINING_CHECKS]
    import original_adapter

    original = reference.original
    try:
        results = checks_for(original, candidate.recipe, variant, config, seed, original=original,
                             candidate_model=candidate.subject.model)
    except original_adapter.OriginalLoadError as exc:
        raise UsageError(f"original: {exc}") from None
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing extra check must not hide the model verdict
        text = " ".join(str(exc).split())[:200]
        return [CheckResult(c, "skipped", reason=f"could not run (a bug in the tool, please report it): "
                                                  f"{type(exc).__name__}: {text}") for c in TRAINING_CHECKS]
    got = {r.id for r in results}
    if candidate.recipe is None:
        for r in results:
            if r.id == "recipe" and r.status == "skipped" and not r.reason:
                r.reason = "the replica offers no recipe (give its adapter a recipe() method, or the model " \
                           "configure_optimizers)"
    return list(results) + [CheckResult(c, "skipped", reason="not produced by the training checks")
                            for c in TRAINING_CHECKS if c not in got]


# ------------------------------------------------------------------------------------------ non-finite values


class FiniteWatch:
    """Wraps a subject and remembers where its recordings first hold NaN or infinite values.

    A NaN makes every later comparison NaN; the watch names the level where it starts, so the report can say
    so in one finding instead of leaving the reader to infer it from dozens of "differs: nan" lines.
    Everything else (teacher forcing, recorded structure, ...) is passed through to the wrapped subject.
    """

    def __init__(self, inner: Subject, batches: Sequence[CanonicalBatch]) -> None:
        self._inner = inner
        self._index = {id(b): i for i, b in enumerate(batches)}
        self.first: dict[str, Any] | None = None

    @property
    def info(self) -> SubjectInfo:
        return self._inner.info

    @property
    def model(self) -> Any:
        return self._inner.model

    @model.setter
    def model(self, value: Any) -> None:
        self._inner.model = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy/pickle protocol lookups, and _inner itself before it is set
            raise AttributeError(name)
        return getattr(self._inner, name)

    def run(self, batch: CanonicalBatch, **kwargs: Any) -> Any:
        try:
            taps = self._inner.run(batch, **kwargs)
        except UsageError:
            raise
        except Exception as exc:  # a model failing on a batch cannot be compared: same code wherever it happens
            index = self._index.get(id(batch))
            text = " ".join(str(exc).split())[:300]
            raise UsageError(f"the {self.info.name} ({self.info.source or self.info.kind}) failed on batch {index} "
                             f"({', '.join(batch.tags) or 'generated'}): {type(exc).__name__}: {text}") from exc
        if self.first is None:
            self._scan(batch, taps)
        return taps

    def _scan(self, batch: CanonicalBatch, taps: Any) -> None:
        import math

        import torch

        from parity.levels import LEVELS

        for level in [name for name in LEVELS if name in taps.levels]:
            value = taps.levels[level]
            bad = int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
            if bad:
                self.first = {"level": level, "bad": bad, "numel": int(value.numel()),
                              "nan": bool(torch.isnan(value).any()), "batch": self._index.get(id(batch)),
                              "tags": list(batch.tags)}
                return
        if taps.loss is not None and not math.isfinite(taps.loss):
            self.first = {"level": "loss", "bad": 1, "numel": 1, "nan": math.isnan(taps.loss),
                          "batch": self._index.get(id(batch)), "tags": list(batch.tags)}


class TeacherForcedWatch(FiniteWatch):
    """A FiniteWatch over a teacher-forcible subject: the methods exist on the class itself, so protocol checks
    that look attributes up statically (typing.runtime_checkable on Python 3.12+) still see them."""

    def level_inputs(self, level: str) -> tuple[str, ...]:
        return self._inner.level_inputs(level)  # type: ignore[attr-defined]

    def run_level(self, level: str, inputs: Any, batch: CanonicalBatch) -> Any:
        return self._inner.run_level(level, inputs, batch)  # type: ignore[attr-defined]


def watch(subject: Subject, batches: Sequence[CanonicalBatch]) -> FiniteWatch:
    forcible = callable(getattr(subject, "run_level", None)) and callable(getattr(subject, "level_inputs", None))
    return (TeacherForcedWatch if forcible else FiniteWatch)(subject, batches)


def add_non_finite_findings(report: Report, watches: Sequence[FiniteWatch]) -> None:
    """One error finding per subject whose recordings hold NaN/inf, at the level where they start."""
    from parity.findings import Finding, Severity

    forward = report.check("forward")
    if forward is None:
        return
    for watch in watches:
        first = watch.first
        if first is None:
            continue
        name, level = watch.info.name, first["level"]
        what = "NaN" if first["nan"] else "infinite"
        where = f"batch {first['batch']}" + (f" ({', '.join(first['tags'])})" if first["tags"] else "")
        finding = Finding(
            "forward", "forward.non_finite", level, Severity.ERROR,
            f"the {name} produces {what} values at level {level}: {first['bad']} of {first['numel']} elements "
            f"on {where}; every later level, the loss and the gradients inherit them",
            metrics={"non_finite": first["bad"], "numel": first["numel"]},
            evidence={"subject": name, "batch": first["batch"], "tags": first["tags"]})
        forward.findings.insert(0, finding)
        forward.status = "failed"
        if finding.key not in report.unexplained:
            report.unexplained.insert(0, finding.key)


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


# ------------------------------------------------------------------------------------------ pipeline


def _move(subject: Subject, device: str) -> None:
    if device != "cpu":
        subject.model.to(device)


def run_check(options: CheckOptions, *, progress: Progress | None = None, notify: Notify | None = None) -> Report:
    """Run one audit as the options say and return its Report (see the module docstring)."""
    if os.environ.get(INTERNAL_ERROR_HOOK) == "1":
        raise InternalErrorHook(f"internal error provoked on purpose ({INTERNAL_ERROR_HOOK}=1 test hook)")
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if notify is not None:
            notify(message)

    def step(stage: str, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            progress(stage, done, total)

    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    waivers = _load_waivers(options)
    file_map = _load_mapping(options)
    previous = load_previous(options.compare_to) if options.compare_to else None

    step("loading the reference")
    reference = resolve_reference(options, note)
    variant, config, seed = reference.variant, reference.config, reference.seed
    batches = reference.batches if reference.batches is not None else make_batches(options, config, seed)
    validate_batches(batches, config)

    step("building the replica")
    candidate = resolve_candidate(options, variant, config, seed)
    overrides = _mapping_overrides(file_map, candidate, reference)
    _move(reference.subject, options.device)
    _move(candidate.subject, options.device)

    engine_options = EngineOptions(tolerances=Tolerances(), init_check=reference.init_available,
                                   mapping_overrides=overrides, progress=progress, thorough=options.thorough)
    normal = sum(1 for b in batches if not any(t.startswith("edge:") for t in b.tags))
    settings = AuditSettings(variant=variant, config=config, seed=seed, batches=normal, fail_on=options.severity,
                             device=options.device, engine=engine_options, waivers=waivers)
    watches = [watch(reference.subject, batches), watch(candidate.subject, batches)]
    engine = Engine(watches[0], watches[1], variant=variant, config=config, options=engine_options)
    try:
        state = engine.run(batches)
    except EngineError as exc:
        cause = exc.__cause__
        raise UsageError(str(cause) if isinstance(cause, UsageError) else str(exc)) from exc
    except BatchError as exc:
        raise UsageError(f"batch rejected: {exc}") from exc

    step("training checks")
    extra = training_checks(options, reference, candidate, variant, config, seed)
    step("diagnosis")
    context = {"original_root": str(reference.original.root)} if reference.original is not None else {}
    report = build_report(state, settings, [reference.subject, candidate.subject], extra,
                          extra_explanations_context=context)
    step("verifying fixes")
    # the unwrapped subjects: verification copies the candidate subject and swaps its model
    verify_fixes_in_report(report, state, reference.subject, candidate.subject, batches, settings,
                           floor_meter=engine.floor_meter)
    skip_unsupported(report, reference)
    add_non_finite_findings(report, watches)
    report.settings.update({
        "reference": reference.kind,
        "replica": _replica_kind(options),
        "deviation": options.deviation,
        "edge_cases": sum(1 for b in batches if any(t.startswith("edge:") for t in b.tags)),
        "max_notes": options.max_notes if reference.batches is None else None,
        "waivers_file": options.waivers,
        "mapping_overrides": sorted(overrides.items()) if overrides else [],
        "notes": list(notes),
    })
    if previous is not None:
        report.drift = compute_drift(report, previous)
        caveat = drift_note(report, previous)
        if caveat:
            note(caveat)
            report.settings["notes"] = list(notes)
    return report


def _replica_kind(options: CheckOptions) -> str:
    if options.replica:
        return f"user: {options.replica}"
    if options.deviation:
        return f"bundled with deviation {options.deviation}"
    return "bundled"


def exit_code(report: Report, options: CheckOptions) -> int:
    return int(report.exit_code(options.severity, new_only=options.fail_on_new))


__all__ = ["INTERNAL_ERROR_HOOK", "CheckOptions", "UsageError", "default_bundles", "exit_code", "run_check"]
