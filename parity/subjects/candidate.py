"""The candidate side of an audit: the bundled replica, the bundled replica with a library deviation, or the
user's own model from its factory and adapter; plus the weight-map overrides that pair it with the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from percepiano_parity.core.options import CheckOptions
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.reference import (
    Reference,
)
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import Subject, SubjectInfo


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
