"""Zeroing a level's padding rows (the fix and the measurement behind PP-REL-PADDING-ROWS): only rows past each
item's length, only the level's channels of a concatenation, batch- or time-first."""

from __future__ import annotations

import torch

from percepiano_parity.compare.relations.padding import install_zero_padding, zero_padding


def test_only_rows_past_each_length_and_only_the_given_channels_are_zeroed():
    value = torch.ones(2, 4, 6)
    out = zero_padding(value, torch.tensor([4, 1]), channels=[2, 4])
    assert torch.equal(out[0], value[0])  # a full item keeps everything
    assert torch.equal(out[1, :1], value[1, :1])
    assert bool((out[1, 1:, 2:4] == 0).all()) and bool((out[1, 1:, :2] == 1).all()) and bool((out[1, 1:, 4:] == 1).all())


def test_time_first_values_are_zeroed_along_their_time_axis():
    value = torch.ones(4, 2, 3)  # (T, N, C)
    out = zero_padding(value, torch.tensor([2, 4]), time_first=True)
    assert bool((out[2:, 0] == 0).all()) and bool((out[:2, 0] == 1).all()) and bool((out[:, 1] == 1).all())


class Spread(torch.nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        spread = x[:, :1].expand_as(x)  # every row, padding included, copies row 0
        total = torch.cat([x, spread], dim=-1)
        return total.sum(1)


def test_installed_on_a_model_it_zeroes_at_the_operation_with_lengths_from_the_mask():
    model = Spread()
    x = torch.ones(2, 3, 2)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    where = f"{__file__}:{Spread.forward.__code__.co_firstlineno + 2}"
    mode = install_zero_padding(model, [{"op": "cat", "where": where, "layout": "batch_first",
                                         "channels": [2, 4]}])
    out = model(x, mask)
    assert mode is not None and mode.applied == 1
    assert out.tolist() == [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 1.0, 1.0]]
