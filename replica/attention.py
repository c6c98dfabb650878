"""Multi-head context attention, as PercePiano uses it for every pooling step.

Mirrors original `module.py` class `ContextAttention`.

Each head scores a time step by the dot product of tanh(Linear(x)) restricted to the head's channels with a
learned context vector; the head's softmax weights then multiply the same channels of the raw input. Two
behaviours of the original are kept on purpose:

* the projection is Linear(size, size) (not size -> num_heads), and the context vectors are drawn
  U(-1, 1) right after the Linear, which fixes the RNG order of initialisation;
* padding is recognised by a *row sum of exactly zero*. Rows of a raw LSTM output padded with zeros are
  masked, rows that went through a biased Linear are not (their sum is the bias sum), so for pooled inputs
  that come from a contractor the softmax also covers padded positions, as in the original.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MASK_VALUE = -1e10


def _observed(module: nn.Module) -> bool:
    """Whether forward hooks watch `module` (its own or global ones)."""
    from torch.nn.modules import module as module_globals

    return bool(module._forward_hooks or module._forward_pre_hooks
                or module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks)


class _ZeroRows(torch.autograd.Function):
    """A Linear applied to rows that are exactly zero: the output is the bias (no matmul); the backward is the
    Linear's own (input gradient g @ W, weight gradient x^T g = 0, bias gradient the sum of g)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(weight)
        return bias.unsqueeze(0).expand(x.shape[0], -1).clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, Tensor]:  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        return grad_x, None, grad.sum(0)


class ContextAttention(nn.Module):
    def __init__(self, size: int, num_head: int) -> None:
        super().__init__()
        if size % num_head:
            raise ValueError(f"size {size} is not divisible by num_head {num_head}")
        self.attention_net = nn.Linear(size, size)
        self.num_head = num_head
        self.head_size = size // num_head
        self.context_vector = nn.Parameter(torch.empty(num_head, self.head_size, 1))
        nn.init.uniform_(self.context_vector, a=-1.0, b=1.0)

    def similarity(self, x: Tensor) -> Tensor:
        """Unnormalised per-head scores, (N, L, H). No mask and no softmax."""
        n, length, _ = x.shape
        projected = torch.tanh(self.project(x))
        heads = projected.view(n, length, self.num_head, self.head_size)
        return torch.einsum("nlhd,hd->nlh", heads, self.context_vector.squeeze(-1))

    def project(self, x: Tensor) -> Tensor:
        """attention_net(x), multiplying only rows that are not all zero.

        The inputs of the beat and measure attentions are raw LSTM outputs, whose padding rows are exact
        zeros (30-50% of the rows of a realistic batch); such a row projects to the bias exactly (0 @ W + b),
        so its output is the bias without the matmul, and its backward is the Linear's (see _ZeroRows). A
        hooked projection is called on the whole input, so that observers see the shapes the original
        produces.
        """
        if _observed(self.attention_net):  # hooks (parity's operation recording) see the plain call
            return self.attention_net(x)
        flat = x.reshape(-1, x.shape[-1])
        nonzero = flat.ne(0).any(-1)
        rows, zero_rows = nonzero.nonzero().squeeze(1), (~nonzero).nonzero().squeeze(1)
        if zero_rows.numel() < 0.2 * flat.shape[0]:
            return self.attention_net(x)
        net = self.attention_net
        parts = torch.cat([net(flat.index_select(0, rows)),
                           _ZeroRows.apply(flat.index_select(0, zero_rows), net.weight, net.bias)])
        order = torch.cat([rows, zero_rows])
        out = parts.index_select(0, torch.argsort(order))
        return out.view(*x.shape[:-1], out.shape[-1])

    def weights(self, x: Tensor, mask: str = "row_sum", real: Tensor | None = None) -> Tensor:
        """Softmax weights over time, (N, L, H).

        mask "row_sum" is the original's test (a row whose sum is exactly zero is padding); "none" masks
        nothing; "length" masks positions where `real` (N, L) is False.
        """
        scores = self.similarity(x)
        if mask == "row_sum":
            scores = scores.masked_fill((x.sum(-1) == 0).unsqueeze(-1), MASK_VALUE)
        elif mask == "length":
            if real is None:
                raise ValueError("mask='length' needs the real-position mask")
            scores = scores.masked_fill(~real.unsqueeze(-1), MASK_VALUE)
        elif mask != "none":
            raise ValueError(f"unknown mask mode {mask!r}")
        return torch.softmax(scores, dim=1)

    def pool(self, x: Tensor, weights: Tensor) -> Tensor:
        """Head-wise weighted sum over time: head h's weight scales channels [h*d, (h+1)*d)."""
        n, length, size = x.shape
        split = x.view(n, length, self.num_head, self.head_size)
        return (split * weights.unsqueeze(-1)).sum(dim=1).reshape(n, size)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x, self.weights(x))
