"""Recorded taps: what one subject produced on one batch.

Subjects (the original through `original_adapter`, the replica, a user's model through its adapter) only
record; checks only read these objects. Tensors are detached CPU copies, so a recording can be saved to a
bundle and compared later without the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


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
    located: levels found by value in a layout of the subject's own (subjects.site_tap); their padded
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
