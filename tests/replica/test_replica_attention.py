"""ContextAttention's projection skips exact-zero (padding) rows without changing a value or a gradient.

Tolerance: the non-zero rows go through a matmul with fewer rows, which may block the float32 sums
differently (~1e-7 relative); 1e-6 relative catches any row that was dropped or filled wrongly.
"""

from __future__ import annotations

import torch

from percepiano_parity.replica.attention import ContextAttention


def _padded_input() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(3, 12, 16)
    x[0, 7:] = 0  # padding of shorter items, as a raw LSTM output has it
    x[1, 2:] = 0
    return x


def test_projection_of_zero_rows_is_exactly_the_bias_and_the_rest_matches_the_plain_linear() -> None:
    attention = ContextAttention(16, 4)
    x = _padded_input()
    with torch.no_grad():
        fast, plain = attention.project(x), attention.attention_net(x)
    assert torch.equal(fast[1, 2:], attention.attention_net.bias.expand(10, -1))
    assert float((fast - plain).abs().max() / plain.abs().max()) < 1e-6


def test_gradients_through_the_skipping_projection_match_the_plain_linear() -> None:
    grads = []
    for skip in (True, False):
        torch.manual_seed(1)
        attention = ContextAttention(16, 4)
        x = _padded_input().requires_grad_(True)
        out = attention.project(x) if skip else attention.attention_net(x)
        (out.tanh() * torch.linspace(-1, 1, 16)).sum().backward()
        grads.append([x.grad, *(p.grad for p in attention.parameters() if p.grad is not None)])
    for fast, plain in zip(grads[0], grads[1], strict=True):
        assert float((fast - plain).abs().max() / plain.abs().max()) < 1e-6


def test_a_hooked_projection_is_called_on_the_whole_input() -> None:
    attention = ContextAttention(16, 4)
    shapes = []
    handle = attention.attention_net.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    try:
        attention.similarity(_padded_input())
    finally:
        handle.remove()
    assert shapes == [(3, 12, 16)]  # what the original's module produces, for operation-level comparison
