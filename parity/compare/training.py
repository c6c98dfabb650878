"""Running training steps on both sides: what steps each model (the original's own train_step, or the
candidate's), and how each side builds its optimizer and scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import io
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.metrics import r2_score
from torch import nn

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.replica.recipe import Recipe, loss_fn, make_optimizer, make_scheduler, train_step
from percepiano_parity.replica.variants import get_variant
from percepiano_parity.subjects.calling import (
    LossCall,
    forward,
    model_input,
    no_randomness,
    without_dropout,
)

# ----------------------------------------------------------------------------------------------------------
# How a trajectory side builds its optimizer and scheduler under the probe (see trajectory for the probe):
# from a Recipe, by rebuilding a user's optimizer object with all its param groups and hyper-parameters, or by
# calling the replica's own `configure_optimizers` on the side's private copy; then weight decay x the probe's
# scale in every group and a StepLR's step size set to the probe's.

Rebuild = Callable[[nn.Module], tuple[torch.optim.Optimizer, Any]]


@dataclass
class OptimSpec:
    """How a side builds its optimizer and scheduler under the probe, and how it clips and steps."""

    recipe: Recipe  # clip, loss, interval, and the optimizer settings when no objects were given
    optimizer: torch.optim.Optimizer | None = None  # a user's optimizer to rebuild (class + groups)
    scheduler: Any = None
    rebuild: Rebuild | None = None  # the replica's own configure_optimizers, called on the side's model
    param_names: dict[int, str] = field(default_factory=dict)  # id(parameter the optimizer holds) -> name

    def build(self, model: nn.Module, probe: Any) -> tuple[torch.optim.Optimizer, Any, dict[str, Any]]:
        params = [p for p in model.parameters() if p.requires_grad]
        if self.rebuild is not None and callable(getattr(model, "configure_optimizers", None)):
            opt, sched = self.rebuild(model)
            how = "the replica's configure_optimizers on the probe's copy"
        elif self.optimizer is not None:
            opt, sched = self._rebuilt(model, params, probe)
            how = "the replica's optimizer object, rebuilt"
        else:
            r = self.recipe
            opt = make_optimizer(r, params)
            sched = make_scheduler(r, opt)
            how = "the recipe"
        for group in opt.param_groups:
            if "weight_decay" in group:
                group["weight_decay"] = float(group["weight_decay"]) * probe.weight_decay_scale
        if isinstance(sched, torch.optim.lr_scheduler.StepLR):
            sched.step_size = probe.step_size
        group = opt.param_groups[0]
        settings = {"optimizer": type(opt).__name__, "lr": float(group["lr"]),
                    "weight_decay": float(group.get("weight_decay", 0.0)), "param_groups": len(opt.param_groups),
                    "scheduler": type(sched).__name__ if sched is not None else "none",
                    "step_size": getattr(sched, "step_size", None), "gamma": getattr(sched, "gamma", None),
                    "built_from": how}
        return opt, sched, settings

    def _rebuilt(self, model: nn.Module, params: list[nn.Parameter], probe: Any) -> tuple[torch.optim.Optimizer, Any]:
        """The user's optimizer class with its groups mapped onto `model`'s parameters by name (one group of
        all parameters with group 0's settings when its parameters are not the model's)."""
        source = self.optimizer
        assert source is not None
        by_name = dict(model.named_parameters())
        groups = []
        for group in source.param_groups:
            mapped = [by_name[self.param_names[id(p)]] for p in group["params"]
                      if self.param_names.get(id(p)) in by_name]
            if len(mapped) != len(group["params"]):
                groups = []
                break
            groups.append({**_settings(group), "params": mapped})
        if not groups:
            groups = [{**_settings(source.param_groups[0]), "params": params}]
        accepted = inspect.signature(type(source).__init__).parameters
        defaults = {k: v for k, v in source.defaults.items() if k in accepted and k != "params"}
        opt = type(source)(groups, **defaults)
        sched = None
        if isinstance(self.scheduler, torch.optim.lr_scheduler.StepLR):
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=probe.step_size, gamma=self.scheduler.gamma)
        return opt, sched


def _settings(group: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
    if "initial_lr" in group:
        out["lr"] = group["initial_lr"]
    return out


# ----------------------------------------------------------------------------------------------------------
# The two sides of a trajectory: what steps each model (the original's own train_step, or the candidate's
# recipe through `replica.recipe.train_step`), and how both are measured the same way (loss, gradient norms
# before and after clipping, lr, drift), by observation. See trajectory for the probe and the tolerances.

SERIES = ("loss", "grad_norm_before_clip", "grad_norm_after_clip", "lr", "drift")


@dataclass(frozen=True)
class Probe:
    steps: int = 5
    batch_size: int = 4
    max_notes: int = 32
    batch_seed: int = 11
    step_size: int = 2
    epoch_iterations: int = 2
    weight_decay_scale: float = 1000.0
    clip_target: float = 0.5  # the reference clips to this fraction of its step-0 gradient norm
    rtol: float = 1e-5
    atol: float = 1e-12

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trajectory:
    """Per-step measurements of one side."""

    name: str
    description: str
    series: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SERIES})
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # effective optimizer settings under the probe
    error: str | None = None
    predictions: torch.Tensor | None = None  # sigmoid(logits) in eval mode on the first batch, before training


class _Meter:
    """Observes gradients and the optimizer step without changing them."""

    def __init__(self, model: nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._pre: dict[int, float] = {}
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in self.params]
        self.after: float = math.nan
        self.lr: float = math.nan

    def _on_grad(self, p: torch.Tensor) -> None:
        if p.grad is not None:
            self._pre[id(p)] = float(p.grad.detach().double().pow(2).sum())

    def watch(self, optimizer: torch.optim.Optimizer) -> Any:
        def on_step(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            self.after = math.sqrt(sum(float(g.detach().double().pow(2).sum()) for g in grads))
            self.lr = float(opt.param_groups[0]["lr"])

        return optimizer.register_step_pre_hook(on_step)

    def start(self) -> None:
        self._pre.clear()
        self.after = self.lr = math.nan

    @property
    def before(self) -> float:
        return math.sqrt(sum(self._pre.values()))

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _drift(model: nn.Module, start: dict[str, torch.Tensor]) -> float:
    total = 0.0
    for n, p in model.named_parameters():
        total += float((p.detach().double() - start[n].double()).pow(2).sum())
    return math.sqrt(total)


def _scaled_clip(clip: float | None, scale: float) -> float | None:
    return None if clip is None else float(clip) * scale


def spec_of(candidate: Any) -> OptimSpec:
    """An OptimSpec from a Recipe, or from what the recipe check reads (optimizer objects, the replica's own
    configure_optimizers)."""
    from percepiano_parity.subjects.recipe import CandidateRecipe, read_candidate

    if isinstance(candidate, Recipe):
        return OptimSpec(candidate)
    read = candidate if isinstance(candidate, CandidateRecipe) else read_candidate(candidate)
    if read.optimizer is None:
        return OptimSpec(read.as_recipe())
    return OptimSpec(read.as_recipe(), read.optimizer, read.scheduler, rebuild=read.rebuild)


class ReplicaSide:
    """A replica stepped by `replica.recipe.train_step` with its own recipe: called through its adapter's
    forward, and with its own loss (`loss`, e.g. its training_step) when given, else the recipe's."""

    def __init__(self, name: str, model: nn.Module, spec: OptimSpec, description: str, *, adapter: Any = None,
                 loss: LossCall | None = None) -> None:
        self.name, self.model, self.spec, self.description = name, without_dropout(model), spec, description
        self.adapter, self.loss = adapter, loss

    def _loss(self, model: nn.Module, inp: Any, index: int) -> torch.Tensor:
        if self.loss is not None:
            return self.loss.run(model, inp, index)
        return loss_fn(self.spec.recipe, forward(self.adapter, model, inp).float(), inp.labels)

    def initial_grad_norm(self, batch: CanonicalBatch) -> float:
        model = copy.deepcopy(self.model)
        with no_randomness():
            self._loss(model, model_input(model, batch), 0).backward()
        return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None))

    def predictions(self, batch: CanonicalBatch) -> torch.Tensor:
        """sigmoid(logits) in eval mode at the current weights (the forward as the replica runs it)."""
        model = copy.deepcopy(self.model).eval()
        with torch.no_grad():
            return torch.sigmoid(forward(self.adapter, model, model_input(model, batch)).float()).cpu()

    def stepper(self, probe: Probe) -> Callable[[CanonicalBatch, int, bool], float]:
        """A training loop's step for `parity train-compare`: (batch, iteration, ends_epoch) -> loss, with one
        optimizer and scheduler kept across calls (built under `probe`, unscaled clip)."""
        model, recipe = self.model, self.spec.recipe
        optimizer, scheduler, _ = self.spec.build(model, probe)

        def step(batch: CanonicalBatch, iteration: int, ends_epoch: bool) -> float:
            inp = model_input(model, batch)
            out = train_step(model, lambda: forward(self.adapter, model, inp), inp.labels, optimizer,
                             scheduler, recipe, iteration_ends_epoch=ends_epoch)
            return float(out["loss"])
        return step

    def outputs(self, batch: CanonicalBatch) -> torch.Tensor:
        """(N, L) sigmoid outputs in eval mode (no gradient); the model goes back to train mode."""
        inp = model_input(self.model, batch)
        self.model.eval()
        try:
            with torch.no_grad():
                return torch.sigmoid(forward(self.adapter, self.model, inp).float())
        finally:
            self.model.train()

    def run(self, batches: Sequence[CanonicalBatch], probe: Probe, clip_scale: float) -> Trajectory:
        model = self.model
        recipe = self.spec.recipe.with_(grad_clip=_scaled_clip(self.spec.recipe.grad_clip, clip_scale))
        optimizer, scheduler, settings = self.spec.build(model, probe)
        settings.update(grad_clip=recipe.grad_clip, grad_clip_algorithm=recipe.grad_clip_algorithm,
                        loss=self.loss.source if self.loss is not None else f"{recipe.loss} ({recipe.loss_reduction})",
                        interval=recipe.scheduler_interval, accumulate_grad_batches=recipe.accumulate_grad_batches)
        traj = Trajectory(self.name, self.description, settings=settings)
        meter = _Meter(model)
        hook = meter.watch(optimizer)
        start = _snapshot(model)
        try:
            traj.predictions = self.predictions(batches[0])
            for it, batch in enumerate(batches):
                inp = model_input(model, batch)
                meter.start()
                with no_randomness():
                    out = train_step(model, None, inp.labels, optimizer, scheduler, recipe,
                                     iteration_ends_epoch=(it + 1) % probe.epoch_iterations == 0,
                                     loss_closure=lambda inp=inp, it=it: self._loss(model, inp, it), iteration=it)
                _record(traj, out["loss"], meter, _drift(model, start), out)
        except Exception as exc:  # a candidate that cannot train is a result, not a crash of the audit
            traj.error = f"{type(exc).__name__}: {exc}"
        finally:
            hook.remove()
            meter.close()
        traj.final_state = _snapshot(model)
        return traj


class OriginalSide:
    """The original model stepped by the original's own `train_m2pf.train_step`."""

    def __init__(self, original: Any, variant: str, model: nn.Module, recipe: Recipe) -> None:
        self.original, self.variant, self.recipe = original, variant, recipe
        self.model = without_dropout(model)
        self.name = "original"
        self.description = f"original {type(model).__name__} via train_m2pf.train_step"
        self.multi_level = get_variant(variant).multi_level or ""

    def _args(self, clip: float | None) -> argparse.Namespace:
        return argparse.Namespace(multi_level=self.multi_level, cont_loss=0.0, pc_grad=0, make_log=False,
                                  grad_clip=float("inf") if clip is None else clip)

    def initial_grad_norm(self, batch: CanonicalBatch) -> float:
        model = copy.deepcopy(self.model)
        collated = self.original.data_ops.collate(batch)
        with self._running():
            _, loss = self._train_module.get_batch_result(model, collated, nn.MSELoss(), "cpu", args=self._args(None))
            loss.backward()
        return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None))

    def predictions(self, batch: CanonicalBatch) -> torch.Tensor:
        """sigmoid(logits) in eval mode at the current weights, as the original's get_batch_result gives them."""
        model = copy.deepcopy(self.model).eval()
        collated = self.original.data_ops.collate(batch)
        with self._running(), torch.no_grad():
            predictions, _ = self._train_module.get_batch_result(model, collated, nn.MSELoss(), "cpu",
                                                                 args=self._args(None))
        return predictions.float().cpu()

    @property
    def _train_module(self) -> Any:
        return self.original.data_ops.module("train_m2pf", training=True)

    @contextlib.contextmanager
    def _running(self) -> Any:
        with self.original.isolated.running(), contextlib.redirect_stdout(io.StringIO()):
            yield

    def stepper(self, probe: Probe) -> Callable[[CanonicalBatch, int, bool], float]:
        """As ReplicaSide.stepper, through the original's own train_m2pf.train_step (train_m2pf.py)."""
        model = self.model
        optimizer, scheduler, _ = OptimSpec(self.recipe).build(model, probe)
        losses: list[float] = []

        class _Criterion(nn.MSELoss):
            def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                out = super().forward(pred, target)
                losses.append(float(out.detach()))
                return out

        train_step_of_original = self._train_module.train_step
        args = self._args(self.recipe.grad_clip)

        def step(batch: CanonicalBatch, iteration: int, ends_epoch: bool) -> float:
            collated = self.original.data_ops.collate(batch)
            with self._running():
                train_step_of_original(model, collated, optimizer, scheduler, _Criterion(), None, "cpu", args,
                                       iteration)
            return losses[-1]
        return step

    def outputs(self, batch: CanonicalBatch) -> torch.Tensor:
        """(N, L) sigmoid outputs of the original's get_batch_result in eval mode (train_m2pf.py)."""
        collated = self.original.data_ops.collate(batch)
        self.model.eval()
        try:
            with torch.no_grad(), self._running():
                out, _ = self._train_module.get_batch_result(self.model, collated, nn.MSELoss(), "cpu",
                                                             args=self._args(None))
            return out.float()
        finally:
            self.model.train()

    def run(self, batches: Sequence[CanonicalBatch], probe: Probe, clip_scale: float) -> Trajectory:
        model = self.model
        spec = OptimSpec(self.recipe)
        optimizer, scheduler, settings = spec.build(model, probe)
        clip = _scaled_clip(self.recipe.grad_clip, clip_scale)
        settings.update(grad_clip=clip, loss="MSELoss(sigmoid(logits)) in get_batch_result",
                        interval="iteration (train_step steps the scheduler)")
        traj = Trajectory(self.name, self.description, settings=settings)
        meter = _Meter(model)
        hook = meter.watch(optimizer)
        start = _snapshot(model)
        losses: list[float] = []

        class _Criterion(nn.MSELoss):  # the criterion __main__ builds, observed
            def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                out = super().forward(pred, target)
                losses.append(float(out.detach()))
                return out

        step = self._train_module.train_step
        try:
            traj.predictions = self.predictions(batches[0])
            for it, batch in enumerate(batches):
                collated = self.original.data_ops.collate(batch)
                meter.start()
                with self._running(), no_randomness():
                    step(model, collated, optimizer, scheduler, _Criterion(), None, "cpu", self._args(clip), it)
                _record(traj, losses[-1], meter, _drift(model, start))
        except Exception as exc:
            traj.error = f"{type(exc).__name__}: {exc}"
        finally:
            hook.remove()
            meter.close()
        traj.final_state = _snapshot(model)
        return traj


@contextlib.contextmanager
def single_thread() -> Any:
    """One intra-op thread while the small probe models run: thread start-up costs more than it saves on
    tensors this size (20x slower on a busy 2-core machine). Both sides run under it; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _record(traj: Trajectory, loss: float, meter: _Meter, drift: float,
            stepped: dict[str, Any] | None = None) -> None:
    """One step's measurements; on an iteration that only accumulates gradients (no optimizer step to
    observe) the after-clip norm and lr are the step function's own."""
    after, lr = meter.after, meter.lr
    if stepped is not None and not stepped.get("stepped", True):
        after, lr = stepped["grad_norm_after_clip"], stepped["lr"]
    values = {"loss": loss, "grad_norm_before_clip": meter.before, "grad_norm_after_clip": after,
              "lr": lr, "drift": drift}
    for key in SERIES:
        traj.series[key].append(float(values[key]))


# ----------------------------------------------------------------------------------------------------------
# The runs of `parity train-compare` (checks.outcome compares their curves): every side trained for some epochs
# on the same real batches, interleaved batch by batch, and validated the original's way after each epoch
# (train_m2pf.py:185-210 get_validation_loss: sum of batch-mean MSE losses of the sigmoid outputs / number of
# samples, sklearn r2_score with uniform average).

class Side(Protocol):
    """What train-compare needs of a side (compare.training.OriginalSide / ReplicaSide)."""

    name: str
    model: torch.nn.Module

    def stepper(self, probe: Any) -> Callable[[CanonicalBatch, int, bool], float]: ...

    def outputs(self, batch: CanonicalBatch) -> torch.Tensor: ...


@dataclass
class Curve:
    name: str
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    valid_r2: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # training wall time per epoch (validation excluded)


def perturb_last_bit(model: torch.nn.Module) -> None:
    """Every float parameter times (1 + 2^-23): one float32 rounding step, in place."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.mul_(1.0 + 2.0 ** -23)


def validate(side: Side, batches: Sequence[CanonicalBatch]) -> tuple[float, float]:
    """(valid loss, R2) as train_m2pf.get_validation_loss computes them (see the module docstring)."""
    losses, truth, preds = [], [], []
    for batch in batches:
        out = side.outputs(batch)
        labels = torch.stack([s.label.float() for s in batch.segments])
        losses.append(float(torch.nn.functional.mse_loss(out, labels)))
        truth.append(labels.numpy())
        preds.append(out.numpy())
    n = sum(len(b) for b in batches)
    with warnings.catch_warnings():  # R2 of fewer than two samples is nan, said in the report, not warned
        warnings.simplefilter("ignore")
        return sum(losses) / n, float(r2_score(np.vstack(truth), np.vstack(preds)))


def train_compare(sides: Sequence[Side], train_batches: Callable[[int], list[CanonicalBatch]],
                  valid_batches: Sequence[CanonicalBatch], epochs: int, probe: Any,
                  progress: Callable[[str, int, int], None] | None = None) -> list[Curve]:
    """Train every side for `epochs` on the same batches, interleaved batch by batch (so load on the machine
    weighs on each side alike); returns one curve per side."""
    curves = [Curve(s.name) for s in sides]
    steppers = [s.stepper(probe) for s in sides]
    iteration = 0
    for epoch in range(epochs):
        batches = train_batches(epoch)
        sums = [0.0] * len(sides)
        seconds = [0.0] * len(sides)
        for i, batch in enumerate(batches):
            for k, step in enumerate(steppers):
                start = time.perf_counter()
                sums[k] += step(batch, iteration, i == len(batches) - 1)
                seconds[k] += time.perf_counter() - start
            iteration += 1
            if progress is not None:
                progress(f"epoch {epoch + 1} of {epochs}", i + 1, len(batches))
        for k, side in enumerate(sides):
            loss, r2 = validate(side, valid_batches)
            c = curves[k]
            c.train_loss.append(sums[k] / len(batches))
            c.valid_loss.append(loss)
            c.valid_r2.append(r2)
            c.seconds.append(seconds[k])
    return curves
