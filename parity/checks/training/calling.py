"""How the training checks call a candidate: its forward (through the adapter), its training loss as it computes
it (the adapter's `loss`, else the model's own `training_step`), and its training-mode randomness switched off.

Every call of a candidate model by the recipe and trajectory checks goes through `forward` and `loss_call`
here, so the calling conventions can be switched in one place.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from percepiano_parity.replica.batch import CanonicalBatch, ModelInput, collate

F = nn.functional

# functions that draw a random mask in training mode; under `no_randomness` they return their input unchanged
_DROPOUTS = frozenset({
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.dropout, torch.dropout_, torch.alpha_dropout, torch.alpha_dropout_, torch.feature_dropout,
    torch.feature_dropout_, torch.feature_alpha_dropout, torch.feature_alpha_dropout_,
})


class _NoRandomness(TorchFunctionMode):
    """Dropout in any form (modules, `nn.functional.dropout` in a custom cell, `torch.dropout`) becomes the
    identity; `F.rrelu` takes its deterministic (evaluation) slope."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _DROPOUTS:
            return args[0] if args else kwargs["input"]
        if func is F.rrelu:
            kwargs["training"] = False
        return func(*args, **kwargs)


@contextlib.contextmanager
def no_randomness() -> Iterator[None]:
    """Training-mode code runs without dropout of any kind while inside (both sides of a trajectory)."""
    with _NoRandomness():
        yield


def without_dropout(model: nn.Module) -> nn.Module:
    """A private deep copy in train mode with every Dropout's p and every RNN's inter-layer dropout set to 0
    (the fused RNN kernels draw their masks inside, where `no_randomness` cannot reach)."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        elif isinstance(module, nn.RNNBase):
            module.dropout = 0.0
    clone.train()
    return clone


def logits_of(out: Any) -> Tensor:
    """Logits from what a forward returns: a tensor, the last of a tuple (the original's logitss), or a dict's
    "logits"."""
    if isinstance(out, (tuple, list)):
        return out[-1]
    if isinstance(out, dict):
        return out["logits"]
    return out


def model_input(model: nn.Module, batch: CanonicalBatch) -> ModelInput:
    """A batch collated as the replica's models take it, on the model's device."""
    param = next(model.parameters(), None)
    inp = collate(batch)
    return inp.to(param.device) if param is not None and param.device.type != "cpu" else inp


def forward(adapter: Any, model: nn.Module, model_input: ModelInput) -> Tensor:
    """The candidate's logits (N, labels) for one batch: `adapter.forward(model, model_input)` when the adapter
    has one, else `model(x, note_locations)`."""
    call = getattr(adapter, "forward", None)
    out = call(model, model_input) if callable(call) else model(model_input.x, model_input.note_locations)
    return logits_of(out)


class CalledThrough:
    """The user's adapter as the training checks see it, with `forward` replaced by the audit's one calling path
    (subjects.calling.ModelCall: the declared or probed conventions), so a model that takes padded input, a mask
    or returns a dict is stepped exactly as the forward check called it. Every other attribute (loss,
    training_batch, trainer, ...) is the adapter's own."""

    def __init__(self, adapter: Any, call: Callable[[nn.Module, ModelInput], Any]) -> None:
        self._adapter = adapter
        self._call = call

    def forward(self, model: nn.Module, model_input: ModelInput) -> Tensor:
        return self._call(model, model_input).logits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


@dataclass(frozen=True)
class LossCall:
    """The candidate's own training loss: `run(model, model_input, batch_index)` returns the scalar loss tensor
    its training computes; `source` says where it comes from (e.g. "PercePianoLit.training_step")."""

    run: Callable[[nn.Module, ModelInput, int], Tensor]
    source: str


def loss_call(model: nn.Module | None, adapter: Any) -> LossCall | None:
    """The loss as the replica's training computes it: `adapter.loss(model, model_input)`, else the model's
    `training_step(batch, batch_idx)` with `batch = adapter.training_batch(model_input)` (default: the
    ModelInput itself); None when neither exists."""
    custom = getattr(adapter, "loss", None)
    if callable(custom):
        return LossCall(lambda m, inp, _i: _scalar(custom(m, inp), "adapter.loss"), "adapter.loss")
    if model is None or not callable(getattr(model, "training_step", None)):
        return None
    to_batch = getattr(adapter, "training_batch", None)
    name = f"{type(model).__name__}.training_step"

    def run(m: nn.Module, inp: ModelInput, index: int) -> Tensor:
        batch = to_batch(inp) if callable(to_batch) else inp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's self.log() without a Trainer only warns
            return _scalar(m.training_step(batch, index), name)

    return LossCall(run, name)


def _scalar(out: Any, source: str) -> Tensor:
    if isinstance(out, dict):
        out = out.get("loss")
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise TypeError(f"{source} returned {type(out).__name__}, not a scalar loss tensor (or a dict with 'loss')")
    return out.reshape(())


# two training-mode calls with different seeds differ "randomly" above this, relative to the output's magnitude
# (bitwise equal on the CPU; GPU kernels with atomic additions differ by ~1e-7 relative)
RANDOMNESS_RTOL = 1e-6


def residual_randomness(model: nn.Module, adapter: Any, model_input: ModelInput,
                        loss: LossCall | None = None) -> float:
    """Greatest difference between two training-mode calls (the logits, and the loss when given) of a
    dropout-free copy under `no_randomness` with different seeds, relative to the output's magnitude; 0.0
    when they agree within RANDOMNESS_RTOL."""
    clone = without_dropout(model)
    worst = 0.0
    calls: list[Callable[[], Tensor]] = [lambda: forward(adapter, clone, model_input)]
    if loss is not None:
        calls.append(lambda: loss.run(clone, model_input, 0))
    for call in calls:
        outs = []
        for seed in (1, 2):
            with torch.random.fork_rng(devices=[]), torch.no_grad(), no_randomness():
                torch.manual_seed(seed)
                outs.append(call().detach().double())
        scale = float(outs[0].abs().max()) if outs[0].numel() else 0.0
        diff = float((outs[0] - outs[1]).abs().max()) if outs[0].numel() else 0.0
        relative = diff / scale if scale else (0.0 if diff == 0 else math.inf)
        worst = max(worst, relative if math.isfinite(relative) else math.inf)
    return worst if worst > RANDOMNESS_RTOL else 0.0
