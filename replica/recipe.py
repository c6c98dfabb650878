"""The training recipe exactly as the original runs it, as data plus the functions that apply it.

Values are the original's argument defaults (`virtuoso/virtuoso/parser.py`) overridden by the arguments every
published training script passes (`virtuoso/scripts/**/*.sh`), and the loop in `train_m2pf.py`. `SOURCES`
names where each value comes from in the original, so a reader can check it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import r2_score
from torch import Tensor, nn

LossKind = Literal["mse_after_sigmoid", "mse_on_logits", "bce_with_logits"]


@dataclass(frozen=True)
class Recipe:
    optimizer: Literal["Adam", "AdamW", "SGD"] = "Adam"
    lr: float = 2.5e-5
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: Literal["StepLR", "none"] = "StepLR"
    scheduler_step_size: int = 3000
    scheduler_gamma: float = 0.98
    scheduler_interval: Literal["iteration", "epoch"] = "iteration"
    grad_clip: float | None = 2.0
    batch_size: int = 8
    epochs: int = 100
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    loss: LossKind = "mse_after_sigmoid"
    r2_average: Literal["uniform_average", "variance_weighted"] = "uniform_average"
    key_augmentation: bool = False
    slice_length: int = 5000
    slices_regenerated_each_epoch: bool = True
    validation: Literal["every_epoch"] = "every_epoch"
    checkpoint_criterion: Literal["valid_loss", "valid_r2"] = "valid_loss"
    label_file: str = "labels/label_2round_mean_reg_19_with0_rm_highstd0.json"
    seed: int = 7

    def with_(self, **changes: Any) -> Recipe:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data


SOURCES: dict[str, str] = {
    "optimizer": "train_m2pf.py:259 torch.optim.Adam(model.parameters(), weight_decay=..., lr=...)",
    "lr": "parser.py:117 (default 1e-4), overridden by every script's --lr 2.5e-5",
    "weight_decay": "parser.py:133 default 1e-5",
    "betas": "train_m2pf.py:259 (Adam defaults)",
    "eps": "train_m2pf.py:259 (Adam defaults)",
    "scheduler": "train_m2pf.py:276 StepLR",
    "scheduler_step_size": "parser.py:137 --lr_decay_step default 3000 (float)",
    "scheduler_gamma": "parser.py:141 --lr_decay_rate default 0.98",
    "scheduler_interval": "train_m2pf.py:175 scheduler.step() inside train_step, once per iteration",
    "grad_clip": "parser.py:157 --grad_clip default 2; train_m2pf.py:173 clip_grad_norm_",
    "batch_size": "parser.py:105 (default 32), overridden by every script's --batch_size 8",
    "epochs": "parser.py:93 --num_epochs default 100",
    "precision": "train_m2pf.py (no autocast or half anywhere): float32",
    "loss": "train_m2pf.py:135 loss_calculator(sigmoid(logitss[-1]), targets) with MSELoss",
    "r2_average": "train_m2pf.py:222 sklearn r2_score(y_true, y_pred) (uniform_average)",
    "key_augmentation": "scripts pass --no_augment (parser.py:91)",
    "slice_length": "parser.py:121 --len_slice default 5000; segments are shorter, so one slice each",
    "slices_regenerated_each_epoch": "train_m2pf.py:288 train_loader.dataset.update_slice_info() every epoch",
    "validation": "train_m2pf.py:280 iters_per_checkpoint = len(train_loader): validation each epoch",
    "checkpoint_criterion": "train_m2pf.py:329 is_best = valid_loss < best_valid_loss",
    "label_file": "scripts pass --label_file_path label_2round_mean_reg_19_with0_rm_highstd0.json; README points to labels/",
    "seed": "parser.py:42 --th_seed default 7",
}

ORIGINAL_RECIPE = Recipe()


def make_optimizer(recipe: Recipe, params: Any) -> torch.optim.Optimizer:
    if recipe.optimizer == "Adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, betas=recipe.betas,
                                eps=recipe.eps)
    if recipe.optimizer == "AdamW":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, betas=recipe.betas,
                                 eps=recipe.eps)
    return torch.optim.SGD(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def make_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    if recipe.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.scheduler_step_size,
                                           gamma=recipe.scheduler_gamma)


def loss_fn(recipe: Recipe, logits: Tensor, labels: Tensor) -> Tensor:
    """The training loss: MSE between sigmoid(logits) and the labels (mean over all elements)."""
    if recipe.loss == "mse_after_sigmoid":
        return nn.functional.mse_loss(torch.sigmoid(logits), labels)
    if recipe.loss == "mse_on_logits":
        return nn.functional.mse_loss(logits, labels)
    return nn.functional.binary_cross_entropy_with_logits(logits, labels)


def r2(recipe: Recipe, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R2 over the label columns, computed on sigmoid outputs (as the validation loop does)."""
    return float(r2_score(y_true, y_pred, multioutput=recipe.r2_average))


def train_step(model: nn.Module, run_logits: Any, labels: Tensor, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None, recipe: Recipe,
               *, iteration_ends_epoch: bool = False) -> dict[str, float]:
    """One iteration in the original's order: forward, zero_grad, backward, clip, step, scheduler step.

    `run_logits` is a zero-argument callable returning the logits (so any model signature works).
    Returns the loss, the gradient norm before and after clipping, and the learning rate used.
    """
    device_type = labels.device.type
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(recipe.precision)
    with torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = run_logits()
    loss = loss_fn(recipe, logits.float(), labels)
    optimizer.zero_grad()
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if recipe.grad_clip is not None:
        norm_before = float(nn.utils.clip_grad_norm_(params, recipe.grad_clip))
    else:
        norm_before = float(nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
    norm_after = float(nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
    lr = float(optimizer.param_groups[0]["lr"])
    optimizer.step()
    if scheduler is not None and (recipe.scheduler_interval == "iteration" or iteration_ends_epoch):
        scheduler.step()
    return {"loss": float(loss.detach()), "grad_norm_before_clip": norm_before, "grad_norm_after_clip": norm_after,
            "lr": lr}
