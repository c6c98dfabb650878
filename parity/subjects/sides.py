"""Resolving the two sides of an audit: the reference (a recorded bundle, a live checkout, or the faithful
replica) and the candidate (the bundled replica, a library deviation of it, or the user's model).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

import percepiano_parity.subjects.bundle as bundle_module
from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.core.config import DEFAULT_CONFIG, SMALL_CONFIG, ModelConfig
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import CHECK_IDS
from percepiano_parity.core.options import CheckOptions
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import Subject, SubjectInfo

# ----------------------------------------------------------------------------------------------------------
# The reference side of an audit: a recorded bundle, a live checkout of the original, or (for the tool's own
# tests) the faithful replica; resolved from the options, with every problem the user can fix as one line.

# Test hook: "replica" makes the faithful bundled replica the reference when no bundle or original is given
# (for the tool's own tests on machines without the original or the shipped bundles; never a parity verdict).
REPLICA_REFERENCE_HOOK = "PARITY_TEST_REFERENCE"

Notify = Callable[[str], None]  # one-line notes for the user (shown as `parity: note: ...`)


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


def model_config_for(options: CheckOptions) -> ModelConfig:
    """The model configuration of the options; with --data its input width is the cache's (the original takes
    input_size from its training data, utils.py handle_args)."""
    config = _sized_config(options.model_config)
    if options.data:
        from percepiano_parity.batches.real.cache import CacheError
        from percepiano_parity.batches.real.loader import RealData

        try:
            config = config.with_(input_size=RealData.open(options.data).input_width())
        except CacheError as exc:
            raise UsageError(f"--data: {exc}") from None
    return config


def _sized_config(choice: str) -> ModelConfig:
    if choice == "default":
        return DEFAULT_CONFIG
    if choice == "small":
        return SMALL_CONFIG
    from percepiano_parity.core.config import read_model_yaml

    return read_model_yaml(choice)


def default_bundles() -> dict[str, Path]:
    """The reference bundles shipped with the package, by variant."""
    return dict(bundle_module.DEFAULT_BUNDLES)


def _from_bundle(path: str | Path, options: CheckOptions, notify: Notify, *, shipped: bool) -> Reference:
    expect = options.variant if options.given("variant") or options.deviation else None
    try:
        bundle = bundle_module.load_bundle(path, expect_variant=expect)
    except bundle_module.BundleError as exc:
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
    except bundle_module.BundleError as exc:
        raise UsageError(f"reference bundle {path}: {exc}") from None
    supported = tuple(getattr(bundle, "supported_checks", CHECK_IDS) or ())
    return Reference(subject=subject, kind="bundle", variant=bundle.variant, config=bundle.config, seed=bundle.seed,
                     batches=list(bundle.batches), init_available="init" in supported, supported=supported,
                     bundle=bundle, source=str(path))


def _from_original(options: CheckOptions, variant: str, notify: Notify) -> Reference:
    from percepiano_parity import original_adapter

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
    from percepiano_parity.replica.variants import build

    config = model_config_for(options) if options.given("model_config") or options.data else SMALL_CONFIG
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


# ----------------------------------------------------------------------------------------------------------
# The candidate side of an audit: the bundled replica, the bundled replica with a library deviation, or the
# user's own model from its factory and adapter; plus the weight-map overrides that pair it with the reference.


@dataclass
class Candidate:
    subject: Subject
    recipe: Any = None  # a replica.recipe.Recipe, or what the user's adapter offers
    mapping: dict[str, str] = field(default_factory=dict)
    adapter: Any = None
    call: Any = None  # subjects.calling.ModelCall for a user's model: the one way to call it (None: model(x, loc))


def resolve_candidate(options: CheckOptions, variant: str, config: ModelConfig, seed: int) -> Candidate:
    from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
    from percepiano_parity.replica.variants import build

    if options.deviation:
        from percepiano_parity.subjects.deviations import get_deviation

        dev = get_deviation(options.deviation)
        model = dev.build_candidate(config, seed)
        info = SubjectInfo(name="replica", kind="bundled-replica", variant=dev.candidate_variant or variant,
                           source=f"bundled replica with deviation {dev.name}",
                           extra={"deviation": dev.name, "deviation_title": dev.title, "deviation_kind": dev.kind})
        return Candidate(ReplicaSubject(model, info), recipe=dev.recipe())
    if options.replica:
        from percepiano_parity.subjects.user_subject import call_factory, load_factory

        factory = load_factory(options.replica)
        model, adapter = call_factory(factory, options.replica, variant=variant, config=config, seed=seed)
        return candidate_from_model(model, adapter, options.replica, variant, config)
    model = build(variant, config, seed=seed)
    info = SubjectInfo(name="replica", kind="bundled-replica", variant=variant, source="bundled replica")
    return Candidate(ReplicaSubject(model, info), recipe=ORIGINAL_RECIPE)


def candidate_from_model(model: nn.Module, adapter: Any, spec: str, variant: str, config: ModelConfig, *,
                         recipe: Any = None) -> Candidate:
    """A user's model and its adapter (None: the default, logits only) as the candidate: the path of
    `--replica SPEC`, also taken by the training-loop gates with a model object (`spec` names it in reports).
    `recipe`: what the recipe check reads (default: the adapter's recipe(model) or configure_optimizers)."""
    from percepiano_parity.replica.models import PercePianoModel
    from percepiano_parity.subjects.user_subject import (
        DEFAULT_ADAPTER,
        make_user_subject,
        recipe_source,
        validate_adapter,
    )

    adapter = adapter if adapter is not None else DEFAULT_ADAPTER
    validate_adapter(model, adapter, spec)
    if adapter is DEFAULT_ADAPTER and isinstance(model, PercePianoModel):
        info = SubjectInfo(name="replica", kind="user-replica", variant=variant, source=spec,
                           extra={"class": f"{type(model).__module__}.{type(model).__qualname__}",
                                  "adapter": "replica levels"})
        subject: Subject = ReplicaSubject(model, info)
    else:
        subject = make_user_subject(model, adapter, spec=spec, variant=variant, config=config)
    return Candidate(subject, recipe=recipe if recipe is not None else recipe_source(model, adapter),
                     adapter=adapter, call=getattr(subject, "call", None))


def mapping_overrides(file_map: dict[str, str], candidate: Candidate, reference: Reference) -> dict[str, str] | None:
    """The adapter's mapping, then the --mapping file's entries, as reference name -> candidate name. Entries
    naming nothing, or pairing two shapes, are kept: the comparison reports them as structure findings."""
    overrides: dict[str, str] = {}
    if candidate.adapter is not None:
        from percepiano_parity.subjects.user_subject import resolve_mapping

        overrides.update(resolve_mapping(candidate.adapter, reference.subject.model, candidate.subject.model))
    overrides.update(file_map)
    return overrides or None
