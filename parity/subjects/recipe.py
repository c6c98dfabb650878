"""The candidate's training recipe as the recipe check reads it: its hyperparameters, the parts Lightning
keeps outside the model, and its training loss read by measurement, not from its source.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from percepiano_parity.batches.canonical import ModelInput
from percepiano_parity.core.errors import call_user
from percepiano_parity.original_adapter.recipe import recipe_values
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, Recipe
from percepiano_parity.subjects.calling import LossCall, logits_of, loss_call, no_randomness, without_dropout

# ----------------------------------------------------------------------------------------------------------
# The parts of a recipe that Lightning keeps outside the model: clipping, precision, accumulation, epochs,
# validation and model selection from a `Trainer` (or the keyword arguments one is built with) and its
# `ModelCheckpoint` / `EarlyStopping` callbacks; and what a model's `hparams`, attributes or `__init__` defaults
# say. Everything is read duck-typed (pytorch-lightning is never imported).
#
# Where the adapter gives `trainer` (a Trainer, a dict of `Trainer(...)` arguments, or a callable of the model
# returning either) or `trainer_kwargs` (a dict), Lightning's defaults apply to what it leaves out: no gradient
# clipping, "norm" clipping when a value is given, 32-bit precision, no accumulation, 1000 epochs when neither
# max_epochs nor max_steps is set, validation every epoch, and a ModelCheckpoint without a monitor (it keeps the
# last epoch's weights).

# recipe key -> names a model's hparams / attributes / __init__ arguments commonly use for it
HPARAM_NAMES: dict[str, tuple[str, ...]] = {
    "batch_size": ("batch_size",),
    "epochs": ("max_epochs", "epochs", "num_epochs", "n_epochs"),
    "grad_clip": ("gradient_clip_val", "grad_clip", "clip_grad_norm", "max_grad_norm", "clip_norm"),
    "grad_clip_algorithm": ("gradient_clip_algorithm",),
    "accumulate_grad_batches": ("accumulate_grad_batches", "grad_accum_steps", "gradient_accumulation_steps"),
    "precision": ("precision",),
    "seed": ("seed", "th_seed"),
}

_PRECISION = {"32": "fp32", "32-true": "fp32", "16": "fp16", "16-mixed": "fp16", "bf16": "bf16",
              "bf16-mixed": "bf16", "64": "fp64", "64-true": "fp64", "16-true": "fp16-true",
              "bf16-true": "bf16-true", "transformer-engine": "fp8"}


@dataclass
class Readings:
    """Recipe key -> value and where it was read."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, key: str, value: Any, source: str) -> None:
        if key not in self.values:  # the first reader (the most authoritative) wins
            self.values[key], self.sources[key] = value, source


def precision_of(value: Any) -> str:
    """Lightning's precision names (32, "16-mixed", "bf16-mixed", ...) as the recipe's fp32 / fp16 / bf16."""
    text = str(getattr(value, "value", value)).lower()
    return _PRECISION.get(text, text)


def _trainer_of(adapter: Any, model: Any) -> tuple[Any, str] | None:
    for name in ("trainer", "trainer_kwargs"):
        given = getattr(adapter, name, None)
        if callable(given) and not isinstance(given, Mapping) and not hasattr(given, "gradient_clip_val"):
            given = given(model)
        if given is not None:
            return given, f"adapter.{name}"
    return None


def _get(trainer: Any, name: str, default: Any = None) -> tuple[Any, bool]:
    """(value, given) of a Trainer attribute or argument."""
    if isinstance(trainer, Mapping):
        return (trainer[name], True) if name in trainer else (default, False)
    try:
        return getattr(trainer, name), True
    except Exception:  # noqa: BLE001 - a property of a half-built Trainer may raise
        return default, False


def read_trainer(adapter: Any, model: Any) -> Readings:
    """Clipping, precision, accumulation, epochs, validation and model selection from the adapter's trainer."""
    out = Readings()
    found = _trainer_of(adapter, model)
    if found is None:
        return out
    trainer, where = found

    def put(key: str, name: str, value: Any, given: bool, default_note: str) -> None:
        out.put(key, value, f"{where}: {name}={value!r}" if given else f"{where}: {name} not given ({default_note})")

    clip, given = _get(trainer, "gradient_clip_val")
    put("grad_clip", "gradient_clip_val", None if clip is None else float(clip), given and clip is not None,
        "Lightning does not clip")
    algorithm, a_given = _get(trainer, "gradient_clip_algorithm")
    algorithm = str(getattr(algorithm, "value", algorithm) or "norm").lower()
    put("grad_clip_algorithm", "gradient_clip_algorithm", algorithm, a_given and algorithm != "none",
        "Lightning's default 'norm'")
    accumulate, given = _get(trainer, "accumulate_grad_batches", 1)
    put("accumulate_grad_batches", "accumulate_grad_batches", int(accumulate), given, "Lightning's default 1")
    precision, given = _get(trainer, "precision", "32-true")
    out.put("precision", precision_of(precision),
            f"{where}: precision={precision!r}" if given else f"{where}: precision not given (Lightning's 32-true)")
    epochs, given = _get(trainer, "max_epochs")
    steps, _ = _get(trainer, "max_steps", -1)
    if epochs is None and (steps is None or steps == -1):
        put("epochs", "max_epochs", 1000, False, "Lightning's default 1000 when max_steps is not set either")
    elif epochs is not None:
        put("epochs", "max_epochs", int(epochs), given, "")
    every, given = _get(trainer, "check_val_every_n_epoch", 1)
    out.put("validation", "every_epoch" if every in (1, None) else f"every_{every}_epochs",
            f"{where}: check_val_every_n_epoch={every!r}" if given else
            f"{where}: check_val_every_n_epoch not given (Lightning validates every epoch)")
    _read_callbacks(trainer, where, out)
    return out


def _read_callbacks(trainer: Any, where: str, out: Readings) -> None:
    callbacks, _ = _get(trainer, "callbacks", [])
    callbacks = list(callbacks or [])
    checkpoints = [c for c in callbacks if _has(c, "monitor", "mode") and _has_any(c, "save_top_k", "dirpath")]
    stoppers = [c for c in callbacks if _has(c, "monitor", "mode", "patience")]
    enabled, _ = _get(trainer, "enable_checkpointing", True)
    if checkpoints:
        cb = checkpoints[0]
        monitor, mode = getattr(cb, "monitor", None), str(getattr(cb, "mode", "min"))
        text = f"{where}: {type(cb).__name__}(monitor={monitor!r}, mode={mode!r})"
        out.put("checkpoint_criterion", criterion_of(monitor), text)
        out.put("checkpoint_mode", mode if monitor is not None else "none", text)
        if len(checkpoints) > 1:
            out.notes.append(f"{len(checkpoints)} checkpoint callbacks: the first one is read")
    elif enabled is not False:
        text = f"{where}: no ModelCheckpoint given (Lightning's default one keeps the last epoch)"
        out.put("checkpoint_criterion", "last_epoch", text)
        out.put("checkpoint_mode", "none", text)
    else:
        out.put("checkpoint_criterion", "none", f"{where}: enable_checkpointing=False (no checkpoint is kept)")
        out.put("checkpoint_mode", "none", f"{where}: enable_checkpointing=False")
    if stoppers:
        cb = stoppers[0]
        out.put("early_stopping", f"{cb.monitor} ({cb.mode}, patience {cb.patience})",
                f"{where}: {type(cb).__name__}(monitor={cb.monitor!r}, mode={cb.mode!r}, patience={cb.patience!r})")
    else:
        out.put("early_stopping", "none", f"{where}: no EarlyStopping callback")


def criterion_of(monitor: Any) -> str:
    """A monitored metric's name as the recipe's checkpoint criterion (valid_loss, valid_r2, last_epoch...)."""
    if monitor is None:
        return "last_epoch"
    name = str(monitor).lower()
    validation = name.startswith(("val", "valid"))
    if validation and "loss" in name:
        return "valid_loss"
    if validation and "r2" in name:
        return "valid_r2"
    return str(monitor)


def _has(obj: Any, *names: str) -> bool:
    return all(hasattr(obj, n) for n in names)


def _has_any(obj: Any, *names: str) -> bool:
    return any(hasattr(obj, n) for n in names)


def read_hparams(model: Any) -> Readings:
    """Batch size, epochs, clipping, accumulation, precision and seed from the model's `hparams`, then its
    attributes, then its `__init__` defaults (the first that names a key wins)."""
    out = Readings()
    if model is None:
        return out
    hparams = getattr(model, "hparams", None)
    hparams = dict(hparams) if isinstance(hparams, Mapping) else {}
    try:
        signature = inspect.signature(type(model).__init__).parameters
    except (TypeError, ValueError):
        signature = {}
    cls = type(model).__name__
    for key, names in HPARAM_NAMES.items():
        for name in names:
            if name in hparams:
                out.put(key, _converted(key, hparams[name]), f"hparams.{name}")
            elif name in vars(model) and not callable(vars(model)[name]):
                out.put(key, _converted(key, vars(model)[name]), f"model.{name}")
            elif name in signature and signature[name].default is not inspect.Parameter.empty:
                out.put(key, _converted(key, signature[name].default), f"{cls}.__init__ default {name}")
    return out


def _converted(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "precision":
        return precision_of(value)
    if key in ("batch_size", "epochs", "accumulate_grad_batches", "seed"):
        return int(value)
    if key == "grad_clip":
        return float(value)
    return value


# ----------------------------------------------------------------------------------------------------------
# The training loss as the replica computes it, read by measurement, not from its source.
#
# The replica's own loss (`calling.loss_call`: the adapter's `loss` or the model's `training_step`) runs on two
# probe batches; the logits it was computed from are captured on the way (a forward hook), and the loss value is
# tested against a family of relations to those logits and the labels: an elementwise loss (squared error after
# a sigmoid, as the original, train_m2pf.py:135; squared error on the logits; BCE with logits; absolute error
# after a sigmoid) times a reduction (the mean over all N x L elements, as the original's `nn.MSELoss()`,
# __main__.py:59; the sum; the sum over labels averaged over items; the sum over items averaged over labels), or
# any constant factor on the mean. The relation that holds on both batches names the kind and reduction; its
# residual and the ratio of the replica's loss to the original's on the same logits are kept as figures.
#
# Tolerance: a relation holds when it reproduces the replica's loss within 1e-4 relative on every batch (float32
# sums over N x 19 elements agree to ~1e-6; the relations tested differ by factors of at least 4, or in form).

RELATION_RTOL = 1e-4

F = nn.functional
_ELEMENTWISE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse_after_sigmoid": lambda z, y: (torch.sigmoid(z) - y) ** 2,
    "mse_on_logits": lambda z, y: (z - y) ** 2,
    "bce_with_logits": lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="none"),
    "l1_after_sigmoid": lambda z, y: (torch.sigmoid(z) - y).abs(),
}


def _factors(items: int, labels: int) -> dict[str, float]:
    """Reduction -> the factor it puts on the mean over all items x labels."""
    return {"mean": 1.0, "sum": float(items * labels), "sum_over_labels": float(labels),
            "sum_over_items": float(items)}


@dataclass(frozen=True)
class LossReading:
    """What the replica's loss was found to be (kind and reduction None when no relation holds)."""

    source: str
    kind: str | None
    reduction: str | None
    ratio: float  # replica loss / the original's (MSE after sigmoid, mean) on the same logits, first batch
    items: int  # N of the first batch
    labels: int  # L
    residual: float  # relative residual of the relation that holds (or of the closest one)
    closest: str  # the relation that holds, or the closest one tried
    error: str | None = None

    @property
    def elements(self) -> int:
        return self.items * self.labels

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "elements": self.elements}


def read_loss(model: nn.Module, adapter: Any, loss: LossCall, inputs: Sequence[ModelInput]) -> LossReading:
    """Run the replica's loss on `inputs` (a dropout-free private copy in train mode) and find its relation
    to the logits it was computed from; an error of the replica's code is kept as `error`, not raised."""
    del adapter  # the loss call carries the adapter's hooks already
    clone = without_dropout(model)
    observed: list[tuple[float, Tensor, Tensor]] = []
    try:
        for index, inp in enumerate(inputs):
            with torch.no_grad(), no_randomness(), _last_logits(clone, inp) as seen:
                value = float(loss.run(clone, inp, index))
            if "logits" not in seen:
                raise RuntimeError("no (items, labels) output of the model was seen while the loss ran")
            observed.append((value, seen["logits"].detach().double(), inp.labels.double()))
    except Exception as exc:  # noqa: BLE001 - the replica's code failing is a reading, not a crash
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        return LossReading(loss.source, None, None, math.nan, 0, 0, math.inf, "", error=text)
    return _relation(loss.source, observed)


def _relation(source: str, observed: list[tuple[float, Tensor, Tensor]]) -> LossReading:
    first_value, z0, y0 = observed[0]
    items, labels = int(z0.shape[0]), int(z0.shape[-1])
    original = float(_ELEMENTWISE["mse_after_sigmoid"](z0, y0).mean())
    ratio = first_value / original if original else math.inf
    best: tuple[float, str, str | None, str | None] = (math.inf, "", None, None)
    for kind, elementwise in _ELEMENTWISE.items():
        means = [float(elementwise(z, y).mean()) for _, z, y in observed]
        for reduction in ("mean", "sum", "sum_over_labels", "sum_over_items"):
            residual = max(_rel(v, m * _factors(int(z.shape[0]), int(z.shape[-1]))[reduction])
                           for (v, z, _), m in zip(observed, means, strict=True))
            if residual < best[0]:
                best = (residual, f"{kind}, {reduction}", kind, reduction)
        factors = [v / m if m else math.inf for (v, _, _), m in zip(observed, means, strict=True)]
        if len(factors) > 1 and math.isfinite(factors[0]) and factors[0] > 0:
            residual = max(_rel(f, factors[0]) for f in factors)
            scaled = f"mean x {factors[0]:.6g}"
            if residual < best[0] - RELATION_RTOL:  # a named reduction wins a tie
                best = (residual, f"{kind}, {scaled}", kind, scaled)
    residual, closest, kind, reduction = best
    if residual > RELATION_RTOL:
        kind = reduction = None
    return LossReading(source, kind, reduction, ratio, items, labels, residual, closest)


def _rel(a: float, b: float) -> float:
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


class _last_logits:  # noqa: N801 - used as a context manager, named for what it yields
    """Records the logits the model produced while inside: the root module's output when it runs, else the
    last output of any of its modules shaped (items, labels)."""

    def __init__(self, model: nn.Module, inp: ModelInput) -> None:
        self.model, self.shape = model, (len(inp.lengths), int(inp.labels.shape[-1]))
        self.seen: dict[str, Tensor] = {}
        self.handles: list[Any] = []

    def __enter__(self) -> dict[str, Tensor]:
        root = self.model

        def on_any(module: nn.Module, _args: Any, out: Any) -> None:
            try:
                value = logits_of(out)
            except (KeyError, IndexError, TypeError):
                return
            if isinstance(value, Tensor) and tuple(value.shape) == self.shape:
                if module is root:
                    self.seen["logits"], self.seen["root"] = value, value
                elif "root" not in self.seen:
                    self.seen["logits"] = value

        self.handles = [m.register_forward_hook(on_any) for m in self.model.modules()]
        return self.seen

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()


# ----------------------------------------------------------------------------------------------------------
# The replica's recipe as the recipe check reads it.
#
# * the optimizer: a `Recipe`, an optimizer (+ scheduler) pair, or a Lightning-style `configure_optimizers()`
#   (any of its return forms, the dict form with `lr_scheduler`, `interval` and `frequency` included), from
#   which class, lr, weight decay and its coupling (L2 in the gradient as `torch.optim.Adam`, or decoupled as
#   AdamW / `Adam(decoupled_weight_decay=True)`), betas, eps, amsgrad, per-group differences, and the StepLR
#   step/gamma and interval are read;
# * with the model and its adapter (`recipe_trainer`): clipping (value and algorithm), precision, accumulation,
#   epochs, validation and model selection from the adapter's `trainer` / `trainer_kwargs`, then batch size and
#   the like from `hparams`, attributes and `__init__` defaults;
# * the loss as the replica computes it, measured (`recipe_loss`): kind and reduction.
#
# Keys nothing tells are unknown, not findings; `sources` says where each replica value was read.

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
