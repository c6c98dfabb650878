"""The replica's recipe as the recipe check reads it.

* the optimizer: a `Recipe`, an optimizer (+ scheduler) pair, or a Lightning-style `configure_optimizers()`
  (any of its return forms, the dict form with `lr_scheduler`, `interval` and `frequency` included), from
  which class, lr, weight decay and its coupling (L2 in the gradient as `torch.optim.Adam`, or decoupled as
  AdamW / `Adam(decoupled_weight_decay=True)`), betas, eps, amsgrad, per-group differences, and the StepLR
  step/gamma and interval are read;
* with the model and its adapter (`recipe_trainer`): clipping (value and algorithm), precision, accumulation,
  epochs, validation and model selection from the adapter's `trainer` / `trainer_kwargs`, then batch size and
  the like from `hparams`, attributes and `__init__` defaults;
* the loss as the replica computes it, measured (`recipe_loss`): kind and reduction.

Keys nothing tells are unknown, not findings; `sources` says where each replica value was read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from percepiano_parity.checks.training.calling import LossCall, loss_call
from percepiano_parity.checks.training.recipe_loss import LossReading, read_loss
from percepiano_parity.checks.training.recipe_original import recipe_values
from percepiano_parity.checks.training.recipe_trainer import Readings, read_hparams, read_trainer
from percepiano_parity.core.guard import call_user
from percepiano_parity.replica.batch import ModelInput
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, Recipe

# keys of Lightning's configure_optimizers dicts; anything else is ignored by Lightning (with a warning)
_OPTIMIZER_DICT_KEYS = frozenset({"optimizer", "lr_scheduler", "monitor"})
_SCHEDULER_DICT_KEYS = frozenset({"scheduler", "interval", "frequency", "monitor", "strict", "name",
                                  "reduce_on_plateau"})
_LOSS_KINDS = ("mse_after_sigmoid", "mse_on_logits", "bce_with_logits")
_REDUCTIONS = ("mean", "sum", "sum_over_labels", "sum_over_items")


@dataclass
class CandidateRecipe:
    """The replica's values; `known` says which keys the given objects could tell, `sources` where each was
    read. `loss` is the replica's own loss call (the trajectory steps the replica with it)."""

    values: dict[str, Any]
    known: frozenset[str]
    description: str
    optimizer: torch.optim.Optimizer | None = None  # when read from objects (the trajectory rebuilds them)
    scheduler: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loss: LossCall | None = None
    loss_reading: LossReading | None = None
    rebuild: Callable[[Any], tuple[torch.optim.Optimizer, Any]] | None = None  # configure_optimizers again

    def as_recipe(self) -> Recipe:
        """A Recipe for the trajectory: known keys from the objects, the rest (and values a Recipe cannot
        run) as the original's."""
        names = {f.name for f in fields(Recipe)}
        values = {k: self.values[k] for k in self.known if k in names and self.values.get(k) is not None}
        runnable = {"lr": float, "weight_decay": float, "eps": float, "betas": tuple, "amsgrad": bool}
        for key, kind in runnable.items():  # per-group values: the trajectory rebuilds the groups themselves
            if key in values and not isinstance(values[key], kind):
                values.pop(key)
        for key, allowed in (("loss", _LOSS_KINDS), ("loss_reduction", _REDUCTIONS),
                             ("scheduler_interval", ("iteration", "epoch"))):
            if values.get(key) not in allowed:
                values.pop(key, None)
        if "grad_clip" in self.known and self.values.get("grad_clip") is None:
            values["grad_clip"] = None  # a Trainer that does not clip
        return ORIGINAL_RECIPE.with_(**values)

    def add(self, readings: Readings) -> None:
        """Values of keys not known yet, with their sources and notes."""
        for key, value in readings.values.items():
            if key not in self.known:
                self.values[key] = value
                self.sources[key] = readings.sources[key]
                self.known = self.known | {key}
        self.notes += readings.notes


def read_candidate(candidate: Any, *, model: Any = None, adapter: Any = None,
                   inputs: Sequence[ModelInput] = ()) -> CandidateRecipe:
    """Recipe, optimizer, (optimizer, scheduler[, interval]) pair, Lightning-style module or its
    configure_optimizers callable, or what configure_optimizers returns; with `model` and `adapter` also the
    trainer, hparams and (measured on `inputs`) the loss. TypeError when nothing can be read."""
    if candidate is None and model is not None:  # a model that offers no optimizer: nothing is known of it
        read = CandidateRecipe({}, frozenset(), "no optimizer offered (give the adapter recipe(model), or the model "
                                                "configure_optimizers)")
    else:
        read = _read_optimizer(candidate)
    if model is not None or adapter is not None:
        read.add(read_trainer(adapter, model))
        read.add(read_hparams(model))
        _read_loss(read, model, adapter, inputs)
    return read


def _read_optimizer(candidate: Any) -> CandidateRecipe:
    if candidate is None:
        candidate = ORIGINAL_RECIPE
    if isinstance(candidate, CandidateRecipe):
        return candidate
    if isinstance(candidate, Recipe):
        values = recipe_values(candidate)
        return CandidateRecipe(values, frozenset(values), "replica Recipe",
                               sources={k: "Recipe" for k in values})
    if hasattr(candidate, "configure_optimizers"):
        made = call_user("configure_optimizers", candidate.configure_optimizers)
        read = _from_lightning(made, f"{type(candidate).__name__}.configure_optimizers()")
        read.rebuild = _configure
        return read
    if isinstance(candidate, torch.optim.Optimizer):
        return _from_objects(candidate, None, None, "optimizer object")
    if isinstance(candidate, tuple) and candidate and isinstance(candidate[0], torch.optim.Optimizer):
        sched = candidate[1] if len(candidate) > 1 else None
        interval = candidate[2] if len(candidate) > 2 else None
        return _from_objects(candidate[0], sched, _interval(interval), "optimizer/scheduler pair")
    if callable(candidate):
        return _from_lightning(call_user("configure_optimizers", candidate), "configure_optimizers()")
    return _from_lightning(candidate, "configure_optimizers() result")


def _read_loss(read: CandidateRecipe, model: Any, adapter: Any, inputs: Sequence[ModelInput]) -> None:
    call = loss_call(model, adapter)
    if call is None or not inputs or "loss" in read.known:
        return
    reading = read_loss(model, adapter, call, inputs)
    read.loss_reading = reading
    if reading.error:
        read.notes.append(f"the replica's loss ({call.source}) could not be measured: {reading.error}; the "
                          "trajectory uses the original's loss")
        return
    read.loss = call
    where = f"{call.source}, measured: {reading.closest} (residual {reading.residual:.1g}; ratio to the " \
            f"original's loss {reading.ratio:.6g} over {reading.items} x {reading.labels} elements)"
    read.values["loss"] = reading.kind or f"unrecognised (closest: {reading.closest}, residual {reading.residual:.2g})"
    read.sources["loss"] = where
    read.known = read.known | {"loss"}
    if reading.kind is not None:
        read.values["loss_reduction"], read.sources["loss_reduction"] = reading.reduction, where
        read.known = read.known | {"loss_reduction"}


def _configure(module: Any) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer and scheduler a Lightning-style module's configure_optimizers builds for its parameters."""
    read = _from_lightning(module.configure_optimizers(), "configure_optimizers()")
    assert read.optimizer is not None
    return read.optimizer, read.scheduler


def _interval(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    return {"step": "iteration", "iteration": "iteration", "batch": "iteration", "epoch": "epoch"}.get(text, text)


def _scheduler_entry(sched: Any, ignored: list[str]) -> tuple[Any, str | None]:
    """(scheduler, interval) of a Lightning lr_scheduler entry: a scheduler (interval "epoch") or a dict."""
    if sched is None:
        return None, None
    if not isinstance(sched, dict):
        return sched, "epoch"
    ignored += [f"lr_scheduler.{k}" for k in sched if k not in _SCHEDULER_DICT_KEYS]
    interval = _interval(sched.get("interval", "epoch"))
    frequency = int(sched.get("frequency", 1) or 1)
    if frequency != 1:
        interval = f"every {frequency} {'iterations' if interval == 'iteration' else 'epochs'}"
    return sched.get("scheduler"), interval


def _from_lightning(config: Any, description: str) -> CandidateRecipe:
    """Lightning's return formats: optimizer; [optimizers]; ([optimizers], [schedulers]); dict with
    "optimizer" and "lr_scheduler" (a scheduler or {"scheduler", "interval", "frequency"}); a list of such
    dicts. Lightning's default interval is "epoch"."""
    ignored: list[str] = []
    if isinstance(config, torch.optim.Optimizer):
        return _from_objects(config, None, None, description)
    if isinstance(config, dict):
        ignored += [k for k in config if k not in _OPTIMIZER_DICT_KEYS]
        sched, interval = _scheduler_entry(config.get("lr_scheduler"), ignored)
        read = _from_objects(config["optimizer"], sched, interval, description)
        if ignored:
            read.notes.append(f"{description} returned keys Lightning ignores: {', '.join(ignored)} (clipping, "
                              "precision and the like belong to the Trainer: give the adapter a `trainer`)")
        return read
    if isinstance(config, (list, tuple)) and config:
        first = config[0]
        if isinstance(first, dict):
            return _from_lightning(first, description)
        if isinstance(first, (list, tuple)):
            schedulers = list(config[1]) if len(config) > 1 else []
            sched, interval = _scheduler_entry(schedulers[0] if schedulers else None, ignored)
            return _from_objects(list(first)[0], sched, interval, description)
        if isinstance(first, torch.optim.Optimizer):
            return _from_objects(first, None, None, description)
    raise TypeError(f"cannot read an optimizer configuration from {type(config).__name__}")


def _group_value(optimizer: torch.optim.Optimizer, key: str, convert: Any) -> Any:
    """One value when every param group agrees, else "per group: v (n tensors), ..."."""
    seen: dict[Any, int] = {}
    for group in optimizer.param_groups:
        raw = group.get("initial_lr", group.get("lr")) if key == "lr" else group.get(key)
        value = None if raw is None else convert(raw)
        seen[value] = seen.get(value, 0) + len(group["params"])
    if len(seen) == 1:
        return next(iter(seen))
    return "per group: " + ", ".join(f"{v!r} ({n} tensors)" for v, n in seen.items())


def _from_objects(optimizer: torch.optim.Optimizer, scheduler: Any, interval: str | None,
                  description: str) -> CandidateRecipe:
    group = optimizer.param_groups[0]
    name = type(optimizer).__name__
    decoupled = name == "AdamW" or bool(group.get("decoupled_weight_decay", False))
    values: dict[str, Any] = {
        "optimizer": name,
        "lr": _group_value(optimizer, "lr", float),
        "weight_decay": _group_value(optimizer, "weight_decay", float) if "weight_decay" in group else 0.0,
        "weight_decay_coupling": "decoupled" if decoupled else "l2",
        "betas": _group_value(optimizer, "betas", lambda b: tuple(float(x) for x in b)) if "betas" in group else None,
        "eps": _group_value(optimizer, "eps", float) if "eps" in group else None,
    }
    if "amsgrad" in group:
        values["amsgrad"] = _group_value(optimizer, "amsgrad", bool)
    if scheduler is None:
        values["scheduler"] = "none"
    else:
        values["scheduler"] = type(scheduler).__name__
        if isinstance(scheduler, torch.optim.lr_scheduler.StepLR):
            values["scheduler_step_size"] = scheduler.step_size
            values["scheduler_gamma"] = float(scheduler.gamma)
        if interval is not None:
            values["scheduler_interval"] = interval
    sched_name = type(scheduler).__name__ if scheduler is not None else "no scheduler"
    sources = {k: f"{description} ({sched_name if k.startswith('scheduler') else name})" for k in values}
    return CandidateRecipe(values, frozenset(values), description, optimizer, scheduler, sources=sources)
