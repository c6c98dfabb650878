"""The two sides of a trajectory: what steps each model (the original's own train_step, or the candidate's
recipe through `replica.recipe.train_step`), and how both are measured the same way (loss, gradient norms
before and after clipping, lr, drift), by observation. See trajectory for the probe and the tolerances.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from percepiano_parity.replica.batch import CanonicalBatch, collate
from percepiano_parity.replica.recipe import (
    Recipe,
    loss_fn,
    make_optimizer,
    make_scheduler,
    train_step,
)
from percepiano_parity.replica.variants import get_variant

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


def without_dropout(model: nn.Module) -> nn.Module:
    """A private deep copy with every dropout probability set to 0, in train mode."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        elif isinstance(module, nn.RNNBase):
            module.dropout = 0.0
    clone.train()
    return clone


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


def _logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        return out[-1]
    if isinstance(out, dict):
        return out["logits"]
    return out


def _scaled_clip(clip: float | None, scale: float) -> float | None:
    return None if clip is None else float(clip) * scale


@dataclass
class OptimSpec:
    """How a side builds its optimizer and scheduler under the probe, and how it clips and steps."""

    recipe: Recipe  # clip, loss, interval, and the optimizer settings when no objects were given
    optimizer: torch.optim.Optimizer | None = None  # a user's optimizer to rebuild (class + hyperparameters)
    scheduler: Any = None

    def build(self, params: list[nn.Parameter], probe: Probe) -> tuple[torch.optim.Optimizer, Any, dict[str, Any]]:
        r = self.recipe
        if self.optimizer is None:
            opt = make_optimizer(r.with_(weight_decay=r.weight_decay * probe.weight_decay_scale), params)
            sched = make_scheduler(r.with_(scheduler_step_size=probe.step_size), opt)
        else:
            accepted = inspect.signature(type(self.optimizer).__init__).parameters
            kwargs = {k: v for k, v in self.optimizer.defaults.items() if k != "params" and k in accepted}
            group = self.optimizer.param_groups[0]
            kwargs["lr"] = group.get("initial_lr", group.get("lr", kwargs.get("lr")))
            if "weight_decay" in kwargs:
                kwargs["weight_decay"] = float(group.get("weight_decay", kwargs["weight_decay"])) * \
                    probe.weight_decay_scale
            opt = type(self.optimizer)(params, **kwargs)
            sched = None
            if isinstance(self.scheduler, torch.optim.lr_scheduler.StepLR):
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=probe.step_size, gamma=self.scheduler.gamma)
        group = opt.param_groups[0]
        settings = {"optimizer": type(opt).__name__, "lr": float(group["lr"]),
                    "weight_decay": float(group.get("weight_decay", 0.0)),
                    "scheduler": type(sched).__name__ if sched is not None else "none",
                    "step_size": getattr(sched, "step_size", None), "gamma": getattr(sched, "gamma", None)}
        return opt, sched, settings


def spec_of(candidate: Any) -> OptimSpec:
    """An OptimSpec from a Recipe, or from what the recipe check reads (optimizer objects)."""
    from percepiano_parity.checks.training.recipe_candidate import CandidateRecipe, read_candidate

    if isinstance(candidate, Recipe):
        return OptimSpec(candidate)
    read = candidate if isinstance(candidate, CandidateRecipe) else read_candidate(candidate)
    if read.optimizer is None:
        return OptimSpec(read.as_recipe())
    return OptimSpec(read.as_recipe(), read.optimizer, read.scheduler)


class ReplicaSide:
    """A PercePiano replica (or any model taking (packed x, note_locations)) stepped by replica.recipe."""

    def __init__(self, name: str, model: nn.Module, spec: OptimSpec, description: str) -> None:
        self.name, self.model, self.spec, self.description = name, without_dropout(model), spec, description

    def initial_grad_norm(self, batch: CanonicalBatch) -> float:
        model = copy.deepcopy(self.model)
        inp = collate(batch)
        loss = loss_fn(self.spec.recipe, _logits_of(model(inp.x, inp.note_locations)).float(), inp.labels)
        loss.backward()
        return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None))

    def stepper(self, probe: Probe) -> Callable[[CanonicalBatch, int, bool], float]:
        """A training loop's step for `parity train-compare`: (batch, iteration, ends_epoch) -> loss, with one
        optimizer and scheduler kept across calls (built under `probe`, unscaled clip)."""
        model, recipe = self.model, self.spec.recipe
        optimizer, scheduler, _ = self.spec.build([p for p in model.parameters() if p.requires_grad], probe)

        def step(batch: CanonicalBatch, iteration: int, ends_epoch: bool) -> float:
            inp = collate(batch)
            out = train_step(model, lambda: _logits_of(model(inp.x, inp.note_locations)), inp.labels, optimizer,
                             scheduler, recipe, iteration_ends_epoch=ends_epoch)
            return float(out["loss"])
        return step

    def outputs(self, batch: CanonicalBatch) -> torch.Tensor:
        """(N, L) sigmoid outputs in eval mode (no gradient); the model goes back to train mode."""
        inp = collate(batch)
        self.model.eval()
        try:
            with torch.no_grad():
                return torch.sigmoid(_logits_of(self.model(inp.x, inp.note_locations)).float())
        finally:
            self.model.train()

    def run(self, batches: Sequence[CanonicalBatch], probe: Probe, clip_scale: float) -> Trajectory:
        model = self.model
        recipe = self.spec.recipe.with_(grad_clip=_scaled_clip(self.spec.recipe.grad_clip, clip_scale))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, scheduler, settings = self.spec.build(params, probe)
        settings.update(grad_clip=recipe.grad_clip, loss=recipe.loss, interval=recipe.scheduler_interval)
        traj = Trajectory(self.name, self.description, settings=settings)
        meter = _Meter(model)
        hook = meter.watch(optimizer)
        start = _snapshot(model)
        try:
            for it, batch in enumerate(batches):
                inp = collate(batch)
                meter.start()
                out = train_step(model, lambda inp=inp: _logits_of(model(inp.x, inp.note_locations)), inp.labels,
                                 optimizer, scheduler, recipe,
                                 iteration_ends_epoch=(it + 1) % probe.epoch_iterations == 0)
                _record(traj, out["loss"], meter, _drift(model, start))
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
        optimizer, scheduler, _ = OptimSpec(self.recipe).build(list(model.parameters()), probe)
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
        params = list(model.parameters())
        optimizer, scheduler, settings = spec.build(params, probe)
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
            for it, batch in enumerate(batches):
                collated = self.original.data_ops.collate(batch)
                meter.start()
                with self._running():
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


def _record(traj: Trajectory, loss: float, meter: _Meter, drift: float) -> None:
    values = {"loss": loss, "grad_norm_before_clip": meter.before, "grad_norm_after_clip": meter.after,
              "lr": meter.lr, "drift": drift}
    for key in SERIES:
        traj.series[key].append(float(values[key]))
