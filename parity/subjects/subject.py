"""The interface every side of an audit implements, and the taps it records on one batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from percepiano_parity.batches.canonical import CanonicalBatch

# ----------------------------------------------------------------------------------------------------------
# Recorded taps: what one subject produced on one batch.
#
# Subjects (the original through `original_adapter`, the replica, a user's model through its adapter) only
# record; checks only read these objects. Tensors are detached CPU copies, so a recording can be saved to a
# bundle and compared later without the model.


@dataclass
class Taps:
    """One subject's recording of one batch.

    levels: level name (see core.levels.LEVELS) -> activation, forward order.
    attention: attention map name (core.levels.ATTENTIONS) -> softmax weights (N, L, heads).
    grads: parameter name *in the subject's own naming* -> gradient (absent: grad was None).
    loss: the training loss (MSE of sigmoid(logits) against labels) of this batch, when computed.
    dtypes: level or parameter name -> dtype string, for the precision check.
    slack: level -> error (absolute) the recording itself may add, e.g. logits recovered from sigmoid outputs;
        the comparison adds it to the level's tolerance.
    located: levels found by value in a layout of the subject's own (subjects.level_sites); their padded
        positions hold the subject's own padding convention and are not compared.
    """

    subject: str
    levels: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)
    grads: dict[str, Tensor] = field(default_factory=dict)
    loss: float | None = None
    dtypes: dict[str, str] = field(default_factory=dict)
    slack: dict[str, float] = field(default_factory=dict)
    located: set[str] = field(default_factory=set)

    def record_level(self, name: str, value: Tensor) -> None:
        self.dtypes[name] = str(value.dtype).removeprefix("torch.")
        self.levels[name] = value.detach().to("cpu", copy=True)

    def record_attention(self, name: str, value: Tensor) -> None:
        self.attention[name] = value.detach().to("cpu", torch.float32, copy=True)

    def record_grads(self, named_parameters: dict[str, torch.nn.Parameter]) -> None:
        for name, param in named_parameters.items():
            if param.grad is not None:
                self.grads[name] = param.grad.detach().to("cpu", copy=True)


# ----------------------------------------------------------------------------------------------------------
# The interface every side of an audit implements.
#
# A subject wraps one model (the original's, the bundled replica, a user's re-implementation) and knows how to
# feed it a canonical batch and where its levels are. Checks never touch models directly: they receive
# `Taps` from `Subject.run` and module/parameter descriptions from the other methods.


@dataclass(frozen=True)
class SubjectInfo:
    """What a report says about a subject: where it came from and what was done to make it run."""

    name: str  # "original" / "replica"
    kind: str  # "original-checkout", "bundled-replica", "user-replica", "reference-bundle"
    variant: str
    source: str = ""  # checkout path, module:factory, bundle path
    revision: str = ""  # git commit or content fingerprint
    shims: tuple[dict[str, str], ...] = field(default=())  # {"name":..., "reason":...}
    warnings: tuple[str, ...] = field(default=())
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Subject(Protocol):
    info: SubjectInfo
    model: nn.Module

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        """Forward (eval mode unless train=True), record levels and attention maps; when grads, compute the
        training loss (MSE of sigmoid(logits) against labels), backpropagate and record every gradient.
        The model's parameters and mode are left as they were (grads are cleared afterwards)."""
        ...


@runtime_checkable
class TeacherForcible(Protocol):
    """A subject that can compute one level from given inputs (for local-vs-inherited error)."""

    def level_inputs(self, level: str) -> tuple[str, ...]:
        """Names of the levels this level is computed from (empty: from the batch itself)."""
        ...

    def run_level(self, level: str, inputs: Mapping[str, Tensor], batch: CanonicalBatch) -> Tensor: ...
