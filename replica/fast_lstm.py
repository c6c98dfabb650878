"""An nn.LSTM that computes packed sequences through the fused padded kernel.

On the CPU, PyTorch runs an LSTM over a PackedSequence with a per-time-step loop, but a padded float32 batch
through its fused (oneDNN) kernel: about 2.5x faster with autograd and 1.3x without it at this model's size,
despite the padded steps. Float64 (used only for noise floors) has no fused kernel, so it keeps the packed
path, which skips the padding. Padding only matters for the reverse direction, which would start on padding.
So each layer's reverse direction runs on the sequences reversed *within their own length* (padding stays at
the end), which gives exactly the packed semantics: every real step sees only real steps. Outputs at padded positions are zero, as after `pad_packed_sequence`.

Drop-in: same parameters and names as nn.LSTM (it is one), the same input and output types (PackedSequence in,
PackedSequence out), so hooks, state dicts and structure descriptions see an LSTM. Only the returned final
states are not computed (callers in this model ignore them): `(None, None)` is returned instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each item's first `length` steps along dim 1; later (padded) steps stay in place."""
    n, t = x.shape[0], x.shape[1]
    steps = torch.arange(t, device=x.device).unsqueeze(0).expand(n, t)
    lens = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)
    return torch.gather(x, 1, index.unsqueeze(-1).expand_as(x))


# Cost model of one fused LSTM call, in item-steps (measured on a 2-core CPU, hidden 256): a call costs its
# longest length times its item count, but never less than MIN_EFFECTIVE_ITEMS items' worth (below that the
# step is latency-bound), plus CALL_COST for the gathers and copies around it.
MIN_EFFECTIVE_ITEMS = 4.4
CALL_COST = 50.0


def length_groups(lengths: Tensor) -> list[Tensor]:
    """Split item indices into groups of similar length that minimise the cost model above.

    Optimal over contiguous runs of the length-sorted items (dynamic programming, O(n^2) with n the number of
    sequences: at most a few dozen voice sequences). Compared with one padded call this saves about 10% of
    the voice LSTM's time, whose sequences range from a few notes to a few hundred.
    """
    order = torch.argsort(lengths, descending=True)
    sorted_len = lengths[order].tolist()
    n = len(sorted_len)
    best = [0.0] * (n + 1)  # best[e]: cost of the first e items
    start_of = [0] * (n + 1)
    for end in range(1, n + 1):  # plain Python: n is small, and tensor ops would cost more per step
        best[end], start_of[end] = min(
            (best[a] + sorted_len[a] * max(end - a, MIN_EFFECTIVE_ITEMS) + CALL_COST, a) for a in range(end))
    cuts, end = [], n
    while end > 0:
        cuts.append((start_of[end], end))
        end = start_of[end]
    return [order[a:b] for a, b in reversed(cuts)]


class FastLSTM(nn.LSTM):
    def forward(self, input, hx=None):  # type: ignore[override]
        if (not isinstance(input, PackedSequence) or hx is not None or not self.batch_first or self.proj_size
                or not self._fused(input.data)):
            return super().forward(input, hx)
        padded, lengths = pad_packed_sequence(input, batch_first=True)
        out = self.run_padded(padded, lengths)
        packed = pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False)
        return packed, (None, None)

    @staticmethod
    def _fused(data: Tensor) -> bool:
        """Whether the fused padded kernel beats the packed one: with autograd for any dtype but float64;
        without it for float32 on the CPU (elsewhere the packed kernel is the faster or the only fused one)."""
        if data.dtype == torch.float64:
            return False
        if torch.is_grad_enabled():
            return True
        return data.device.type == "cpu" and data.dtype == torch.float32

    def run_padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Packed-equivalent output for a zero-padded batch (N, T, C) with real lengths (N,).

        Items are grouped by length (each group padded to its own longest item) so that short items do not pay
        for the longest one; items never interact, so grouping changes nothing numerically beyond float
        rounding.
        """
        groups = length_groups(lengths)
        if len(groups) == 1:
            return self._run_group(x, lengths)
        out = x.new_zeros(x.shape[0], x.shape[1], self.hidden_size * (2 if self.bidirectional else 1))
        for index in groups:
            span = int(lengths[index].max())
            out[index, :span] = self._run_group(x[index, :span], lengths[index])
        return out

    def _run_group(self, x: Tensor, lengths: Tensor) -> Tensor:
        n, t, _ = x.shape
        mask = (torch.arange(t, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)).unsqueeze(-1)
        mask = mask.to(x.dtype)
        h0 = x.new_zeros(1, n, self.hidden_size)
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for suffix in ("", "_reverse")[: 2 if self.bidirectional else 1]:
                weights = [getattr(self, f"{w}_l{layer}{suffix}") for w in ("weight_ih", "weight_hh")]
                if self.bias:
                    weights += [getattr(self, f"{b}_l{layer}{suffix}") for b in ("bias_ih", "bias_hh")]
                seq = layer_in if not suffix else reverse_within_lengths(layer_in, lengths)
                out = torch.lstm(seq, (h0, h0), weights, self.bias, 1, 0.0, self.training, False, True)[0]
                outs.append(out if not suffix else reverse_within_lengths(out, lengths))
            # padded steps hold state carried past each item's end; no real step of the next layer reads them
            # (the reverse direction runs on sequences reversed within their length), so only the output is
            # masked, to the exact zeros of pad_packed_sequence
            layer_in = torch.cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = nn.functional.dropout(layer_in, self.dropout, True)
        return layer_in * mask
