"""The replica's recipe as the recipe check reads it: a `Recipe`, an optimizer (+ scheduler) pair, or a
Lightning-style `configure_optimizers()` (duck-typed), from which class, lr, weight decay, betas, eps, StepLR
step/gamma and the interval are read; keys those objects cannot tell are unknown, not findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from percepiano_parity.checks.training.recipe_original import (  # noqa: F401
    OriginalRecipe,
    _loss_kind,
    _roots,
    original_recipe,
    recorded_recipe,
)
from percepiano_parity.checks.training.recipe_source import (  # noqa: F401
    KEYS,
    LONGEST_SEGMENT,
    MAIN,
    PARSER,
    README,
    RECIPE_DESTS,
    REPLICA_UPDATE_ORDER,
    TRAIN,
    Argument,
    LoopFact,
    Setting,
    _call_text,
    _called_in_loader_loop,
    _criterion_facts,
    _evaluate_condition,
    _find,
    _functions,
    _kwarg_source,
    _line_at,
    _literal,
    _sigmoid_aliases,
    _under_if,
    effective_arguments,
    parse_parser_defaults,
    read_loop_facts,
)
from percepiano_parity.core.guard import call_user
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, Recipe


@dataclass
class CandidateRecipe:
    """The replica's values; `known` says which keys the given object could tell."""

    values: dict[str, Any]
    known: frozenset[str]
    description: str
    optimizer: torch.optim.Optimizer | None = None  # when read from objects (the trajectory rebuilds them)
    scheduler: Any = None

    def as_recipe(self) -> Recipe:
        """A Recipe for the trajectory: known keys from the object, the rest as the original's."""
        fields = {k: self.values[k] for k in self.known if k in Recipe.__dataclass_fields__}
        if "betas" in fields and fields["betas"] is not None:
            fields["betas"] = tuple(fields["betas"])
        for k in ("betas", "eps"):
            if fields.get(k) is None:
                fields.pop(k, None)
        return ORIGINAL_RECIPE.with_(**fields)


def read_candidate(candidate: Any) -> CandidateRecipe:
    """Recipe, optimizer, (optimizer, scheduler[, interval]) pair, Lightning-style module or its
    configure_optimizers callable, or what configure_optimizers returns."""
    if candidate is None:
        candidate = ORIGINAL_RECIPE
    if isinstance(candidate, CandidateRecipe):
        return candidate
    if isinstance(candidate, Recipe):
        values = candidate.to_dict()
        values["betas"] = tuple(values["betas"])
        return CandidateRecipe(values, frozenset(values), "replica Recipe")
    if hasattr(candidate, "configure_optimizers"):
        made = call_user("configure_optimizers", candidate.configure_optimizers)
        return _from_lightning(made, f"{type(candidate).__name__}.configure_optimizers()")
    if isinstance(candidate, torch.optim.Optimizer):
        return _from_objects(candidate, None, None, "optimizer object")
    if isinstance(candidate, tuple) and candidate and isinstance(candidate[0], torch.optim.Optimizer):
        sched = candidate[1] if len(candidate) > 1 else None
        interval = candidate[2] if len(candidate) > 2 else None
        return _from_objects(candidate[0], sched, _interval(interval), "optimizer/scheduler pair")
    if callable(candidate):
        return _from_lightning(call_user("configure_optimizers", candidate), "configure_optimizers()")
    return _from_lightning(candidate, "configure_optimizers() result")


def _interval(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    return {"step": "iteration", "iteration": "iteration", "batch": "iteration", "epoch": "epoch"}.get(text, text)


def _from_lightning(config: Any, description: str) -> CandidateRecipe:
    """Lightning's return formats: optimizer; [optimizers]; ([optimizers], [schedulers]); dict with
    "optimizer" and "lr_scheduler" (a scheduler or {"scheduler", "interval"}); a list of such dicts.
    Lightning's default interval is "epoch"."""
    if isinstance(config, torch.optim.Optimizer):
        return _from_objects(config, None, None, description)
    if isinstance(config, dict):
        sched = config.get("lr_scheduler")
        interval = "epoch" if sched is not None else None
        if isinstance(sched, dict):
            interval = _interval(sched.get("interval", "epoch"))
            sched = sched.get("scheduler")
        return _from_objects(config["optimizer"], sched, interval, description)
    if isinstance(config, (list, tuple)) and config:
        first = config[0]
        if isinstance(first, dict):
            return _from_lightning(first, description)
        if isinstance(first, (list, tuple)):
            optimizers = list(first)
            schedulers = list(config[1]) if len(config) > 1 else []
            sched = schedulers[0] if schedulers else None
            interval = "epoch" if sched is not None else None
            if isinstance(sched, dict):
                interval = _interval(sched.get("interval", "epoch"))
                sched = sched.get("scheduler")
            return _from_objects(optimizers[0], sched, interval, description)
        if isinstance(first, torch.optim.Optimizer):
            return _from_objects(first, None, None, description)
    raise TypeError(f"cannot read an optimizer configuration from {type(config).__name__}")


def _from_objects(optimizer: torch.optim.Optimizer, scheduler: Any, interval: str | None,
                  description: str) -> CandidateRecipe:
    group = optimizer.param_groups[0]
    lr = group.get("initial_lr", group.get("lr"))
    values: dict[str, Any] = {
        "optimizer": type(optimizer).__name__,
        "lr": float(lr) if lr is not None else None,
        "weight_decay": float(group.get("weight_decay", 0.0)),
        "betas": tuple(float(b) for b in group["betas"]) if "betas" in group else None,
        "eps": float(group["eps"]) if "eps" in group else None,
    }
    known = {"optimizer", "lr", "weight_decay", "betas", "eps", "scheduler"}
    if scheduler is None:
        values["scheduler"] = "none"
    else:
        values["scheduler"] = type(scheduler).__name__
        if isinstance(scheduler, torch.optim.lr_scheduler.StepLR):
            values["scheduler_step_size"] = scheduler.step_size
            values["scheduler_gamma"] = float(scheduler.gamma)
            known |= {"scheduler_step_size", "scheduler_gamma"}
        if interval is not None:
            values["scheduler_interval"] = interval
            known.add("scheduler_interval")
    return CandidateRecipe(values, frozenset(known), description, optimizer, scheduler)
