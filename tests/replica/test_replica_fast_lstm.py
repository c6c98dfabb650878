"""FastLSTM computes exactly what nn.LSTM computes on a PackedSequence (every real step sees only real steps),
through the fused padded kernel where that is faster.

Tolerance: the fused (oneDNN) and the per-step float32 kernels sum in different orders; on sequences this
short they agree to about 1e-7 relative, so 1e-5 relative flags any semantic difference (a reverse direction
that starts on padding changes outputs by ~1e-1) with ample margin. Float64 takes the same packed kernel as
nn.LSTM and must agree to 1e-12.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from percepiano_parity.replica.fast_lstm import FastLSTM, length_groups, reverse_within_lengths

LENGTHS = torch.tensor([9, 3, 6, 1, 9, 4])


def _pair(dtype: torch.dtype) -> tuple[nn.LSTM, FastLSTM]:
    torch.manual_seed(0)
    reference = nn.LSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True).to(dtype)
    fast = FastLSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True).to(dtype)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def _packed(dtype: torch.dtype, requires_grad: bool = False):
    torch.manual_seed(1)
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()), 5, dtype=dtype, requires_grad=requires_grad)
    return x, pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_outputs_match_the_packed_lstm_with_and_without_autograd(dtype: torch.dtype, tol: float) -> None:
    reference, fast = _pair(dtype)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            _, packed = _packed(dtype)
            want, _ = pad_packed_sequence(reference(packed)[0], batch_first=True)
            got, _ = pad_packed_sequence(fast(packed)[0], batch_first=True)
        assert _rel(want, got) < tol, (dtype, grad)
        padding = torch.arange(want.shape[1]).unsqueeze(0) >= LENGTHS.unsqueeze(1)
        assert float(got.detach()[padding].abs().max()) == 0.0  # padded positions are exact zeros, as after unpacking


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_gradients_match_the_packed_lstm(dtype: torch.dtype, tol: float) -> None:
    reference, fast = _pair(dtype)
    grads = []
    for model in (reference, fast):
        x, packed = _packed(dtype, requires_grad=True)
        out, _ = pad_packed_sequence(model(packed)[0], batch_first=True)
        (out * torch.linspace(-1, 1, out.shape[-1], dtype=dtype)).sum().backward()
        grads.append({"input": x.grad, **{n: p.grad for n, p in model.named_parameters()}})
    for name, want in grads[0].items():
        assert _rel(want, grads[1][name]) < tol, name


def test_the_fused_kernel_is_chosen_where_it_is_faster() -> None:
    f32, f64 = torch.zeros(2), torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        assert FastLSTM._fused(f32) and not FastLSTM._fused(f64)
    with torch.enable_grad():
        assert FastLSTM._fused(f32) and not FastLSTM._fused(f64)


def test_reversal_within_lengths_is_its_own_inverse_and_keeps_padding_in_place() -> None:
    x = torch.arange(12.0).view(2, 6, 1)
    lengths = torch.tensor([4, 6])
    flipped = reverse_within_lengths(x, lengths)
    assert flipped[0, :, 0].tolist() == [3.0, 2.0, 1.0, 0.0, 4.0, 5.0]
    assert flipped[1, :, 0].tolist() == [11.0, 10.0, 9.0, 8.0, 7.0, 6.0]
    assert torch.equal(reverse_within_lengths(flipped, lengths), x)


def test_length_groups_cover_every_item_once_in_runs_of_similar_length() -> None:
    lengths = torch.tensor([200, 12, 190, 15, 90, 11, 95, 14, 180, 13, 88, 16])
    groups = length_groups(lengths)
    assert sorted(torch.cat(groups).tolist()) == list(range(len(lengths)))
    for longer, shorter in zip(groups, groups[1:], strict=False):
        assert int(lengths[shorter].max()) <= int(lengths[longer].min())
    assert len(groups) > 1  # the short items do not pay for 200 steps
    assert len(length_groups(torch.full((8,), 120))) == 1  # equal lengths: one call
