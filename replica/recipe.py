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
# how the per-element losses of a batch (N items x L labels) become one number
Reduction = Literal["mean", "sum", "sum_over_labels", "sum_over_items"]


@dataclass(frozen=True)
class Recipe:
    optimizer: Literal["Adam", "AdamW", "SGD"] = "Adam"
    lr: float = 2.5e-5
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    scheduler: Literal["StepLR", "none"] = "StepLR"
    scheduler_step_size: int = 3000
    scheduler_gamma: float = 0.98
    scheduler_interval: Literal["iteration", "epoch"] = "iteration"
    grad_clip: float | None = 2.0
    grad_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: int = 1
    batch_size: int = 8
    epochs: int = 100
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    loss: LossKind = "mse_after_sigmoid"
    loss_reduction: Reduction = "mean"
    r2_average: Literal["uniform_average", "variance_weighted"] = "uniform_average"
    key_augmentation: bool = False
    slice_length: int = 5000
    slices_regenerated_each_epoch: bool = True
    validation: Literal["every_epoch"] = "every_epoch"
    checkpoint_criterion: Literal["valid_loss", "valid_r2"] = "valid_loss"
    checkpoint_mode: Literal["min", "max"] = "min"
    early_stopping: str = "none"
    label_file: str = "labels/label_2round_mean_reg_19_with0_rm_highstd0.json"
    seed: int = 7

    def with_(self, **changes: Any) -> Recipe:
        return replace(self, **changes)

    @property
    def weight_decay_coupling(self) -> str:
        """"l2" when weight decay is added to the gradient before the adaptive step (torch.optim.Adam, SGD),
        "decoupled" when it shrinks the weights apart from it (AdamW)."""
        return "decoupled" if self.optimizer == "AdamW" else "l2"

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
    "amsgrad": "train_m2pf.py:259 (Adam default amsgrad=False)",
    "weight_decay_coupling": "train_m2pf.py:259 torch.optim.Adam: weight decay added to the gradient (L2), not "
                             "decoupled as in AdamW",
    "scheduler": "train_m2pf.py:276 StepLR",
    "scheduler_step_size": "parser.py:137 --lr_decay_step default 3000 (float)",
    "scheduler_gamma": "parser.py:141 --lr_decay_rate default 0.98",
    "scheduler_interval": "train_m2pf.py:175 scheduler.step() inside train_step, once per iteration",
    "grad_clip": "parser.py:157 --grad_clip default 2; train_m2pf.py:173 clip_grad_norm_",
    "grad_clip_algorithm": "train_m2pf.py:173 clip_grad_norm_ (the global L2 norm of all gradients)",
    "accumulate_grad_batches": "train_m2pf.py:167-176 train_step: one optimizer.step() per batch",
    "batch_size": "parser.py:105 (default 32), overridden by every script's --batch_size 8",
    "epochs": "parser.py:93 --num_epochs default 100",
    "precision": "train_m2pf.py (no autocast or half anywhere): float32",
    "loss": "train_m2pf.py:135 loss_calculator(sigmoid(logitss[-1]), targets) with MSELoss",
    "loss_reduction": "__main__.py:59 nn.MSELoss() (reduction 'mean' over all N x 19 elements)",
    "r2_average": "train_m2pf.py:222 sklearn r2_score(y_true, y_pred) (uniform_average)",
    "key_augmentation": "scripts pass --no_augment (parser.py:91)",
    "slice_length": "parser.py:121 --len_slice default 5000; segments are shorter, so one slice each",
    "slices_regenerated_each_epoch": "train_m2pf.py:288 train_loader.dataset.update_slice_info() every epoch",
    "validation": "train_m2pf.py:280 iters_per_checkpoint = len(train_loader): validation each epoch",
    "checkpoint_criterion": "train_m2pf.py:329 is_best = valid_loss < best_valid_loss",
    "checkpoint_mode": "train_m2pf.py:329 is_best = valid_loss < best_valid_loss (the lowest wins)",
    "early_stopping": "train_m2pf.py:284 for epoch in range(start_epoch, num_epochs): no early stopping",
    "label_file": "scripts pass --label_file_path label_2round_mean_reg_19_with0_rm_highstd0.json; README points to labels/",
    "seed": "parser.py:42 --th_seed default 7",
}

ORIGINAL_RECIPE = Recipe()


def make_optimizer(recipe: Recipe, params: Any) -> torch.optim.Optimizer:
    common = {"lr": recipe.lr, "weight_decay": recipe.weight_decay}
    if recipe.optimizer in ("Adam", "AdamW"):
        cls = torch.optim.Adam if recipe.optimizer == "Adam" else torch.optim.AdamW
        return cls(params, betas=recipe.betas, eps=recipe.eps, amsgrad=recipe.amsgrad, **common)
    return torch.optim.SGD(params, **common)


def make_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    if recipe.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.scheduler_step_size,
                                           gamma=recipe.scheduler_gamma)


def reduce_loss(elements: Tensor, reduction: str) -> Tensor:
    """One number from per-element losses (N items, L labels): "mean" over all N*L (the original's MSELoss()),
    "sum" of all, "sum_over_labels" (summed per item, averaged over items), "sum_over_items"."""
    if reduction == "mean":
        return elements.mean()
    if reduction == "sum":
        return elements.sum()
    if reduction == "sum_over_labels":
        return elements.sum(-1).mean()
    if reduction == "sum_over_items":
        return elements.sum(0).mean()
    raise ValueError(f"unknown loss reduction {reduction!r}")


def loss_fn(recipe: Recipe, logits: Tensor, labels: Tensor) -> Tensor:
    """The training loss: MSE between sigmoid(logits) and the labels, reduced as `recipe.loss_reduction` says
    (the original: the mean over all elements, train_m2pf.py:135 with __main__.py:59 nn.MSELoss())."""
    if recipe.loss == "mse_after_sigmoid":
        elements = nn.functional.mse_loss(torch.sigmoid(logits), labels, reduction="none")
    elif recipe.loss == "mse_on_logits":
        elements = nn.functional.mse_loss(logits, labels, reduction="none")
    else:
        elements = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return reduce_loss(elements, recipe.loss_reduction)


def clip_gradients(params: list[Tensor], recipe: Recipe) -> float:
    """Clip as the recipe says (by the global norm, as train_m2pf.py:173, or elementwise by value) and return
    the global gradient norm before clipping."""
    if recipe.grad_clip is not None and recipe.grad_clip_algorithm == "norm":
        return float(nn.utils.clip_grad_norm_(params, recipe.grad_clip))
    norm = float(nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
    if recipe.grad_clip is not None:
        nn.utils.clip_grad_value_(params, recipe.grad_clip)
    return norm


def r2(recipe: Recipe, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R2 over the label columns, computed on sigmoid outputs (as the validation loop does)."""
    return float(r2_score(y_true, y_pred, multioutput=recipe.r2_average))


def train_step(model: nn.Module, run_logits: Any, labels: Tensor, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None, recipe: Recipe,
               *, iteration_ends_epoch: bool = False, loss_closure: Any = None, iteration: int = 0
               ) -> dict[str, float]:
    """One iteration in the original's order: forward, zero_grad, backward, clip, step, scheduler step.

    `run_logits` is a zero-argument callable returning the logits (so any model signature works); a
    `loss_closure` (zero-argument, returning the loss tensor, e.g. a replica's own training_step) replaces
    logits + `loss_fn`. With `recipe.accumulate_grad_batches` k > 1 the loss is divided by k, gradients are
    zeroed at the first and the optimizer (and a per-iteration scheduler) stepped at the last iteration of
    each window of k (as Lightning accumulates); `iteration` counts from 0.
    Returns the loss, the gradient norm before and after clipping, the learning rate and whether it stepped.
    """
    k = max(1, int(recipe.accumulate_grad_batches))
    first, last = iteration % k == 0, (iteration + 1) % k == 0
    device_type = labels.device.type
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(recipe.precision)
    with torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = loss_closure() if loss_closure is not None else run_logits()
    loss = out.float() if loss_closure is not None else loss_fn(recipe, out.float(), labels)
    if first:
        optimizer.zero_grad()
    (loss / k).backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    lr = float(optimizer.param_groups[0]["lr"])
    if not last:
        norm = float(nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
        return {"loss": float(loss.detach()), "grad_norm_before_clip": norm, "grad_norm_after_clip": norm,
                "lr": lr, "stepped": False}
    norm_before = clip_gradients(params, recipe)
    norm_after = float(nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0
    optimizer.step()
    if scheduler is not None and (recipe.scheduler_interval == "iteration" or iteration_ends_epoch):
        scheduler.step()
    return {"loss": float(loss.detach()), "grad_norm_before_clip": norm_before, "grad_norm_after_clip": norm_after,
            "lr": lr, "stepped": True}
