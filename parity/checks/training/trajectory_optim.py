"""How a trajectory side builds its optimizer and scheduler under the probe (see trajectory for the probe):
from a Recipe, by rebuilding a user's optimizer object with all its param groups and hyper-parameters, or by
calling the replica's own `configure_optimizers` on the side's private copy; then weight decay x the probe's
scale in every group and a StepLR's step size set to the probe's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from percepiano_parity.replica.recipe import Recipe, make_optimizer, make_scheduler

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
