"""The training loss as the replica computes it, read by measurement, not from its source.

The replica's own loss (`calling.loss_call`: the adapter's `loss` or the model's `training_step`) runs on two
probe batches; the logits it was computed from are captured on the way (a forward hook), and the loss value is
tested against a family of relations to those logits and the labels: an elementwise loss (squared error after
a sigmoid, as the original, train_m2pf.py:135; squared error on the logits; BCE with logits; absolute error
after a sigmoid) times a reduction (the mean over all N x L elements, as the original's `nn.MSELoss()`,
__main__.py:59; the sum; the sum over labels averaged over items; the sum over items averaged over labels), or
any constant factor on the mean. The relation that holds on both batches names the kind and reduction; its
residual and the ratio of the replica's loss to the original's on the same logits are kept as figures.

Tolerance: a relation holds when it reproduces the replica's loss within 1e-4 relative on every batch (float32
sums over N x 19 elements agree to ~1e-6; the relations tested differ by factors of at least 4, or in form).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from percepiano_parity.checks.training.calling import LossCall, logits_of, no_randomness, without_dropout
from percepiano_parity.replica.batch import ModelInput

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
