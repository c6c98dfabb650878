"""Mistakes no catalog rule names, applied to copies of the faithful replica for the self-test.

Each is a real mistake reported by people porting models between frameworks or re-implementing papers; the
diagnosis must explain it from measurements alone (diagnosis.rules.relations), never from its name:

* the final pooling's softmax over the heads instead of over time;
* the blocks of total_note_cat concatenated in another order;
* the beat attention's scores without the tanh;
* the head's dropouts called functionally, so active in eval;
* a hand-written note LSTM reading its gate rows in another order;
* the note LSTM's output left in length-sorted order;
* the attention scores divided by sqrt(head size) before the softmax;
* the backward direction of the note LSTM left reversed in time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from percepiano_parity.replica.attention import MASK_VALUE, ContextAttention
from percepiano_parity.replica.models import PercePianoModel

TORCH_GATES = "ifgo"


class HeadSoftmaxAttention(ContextAttention):
    """Masks like the original, then normalises over the heads (dim=-1) instead of over time (dim=1)."""

    def weights(self, x: Tensor, mask: str = "row_sum", real: Tensor | None = None) -> Tensor:
        scores = self.similarity(x)
        if mask == "row_sum":
            scores = scores.masked_fill((x.sum(-1) == 0).unsqueeze(-1), MASK_VALUE)
        return torch.softmax(scores, dim=-1)


class NoTanhAttention(ContextAttention):
    """Scores <W x + b, context>: the tanh of the original left out."""

    def similarity(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        heads = self.project(x).view(n, length, self.num_head, self.head_size)
        return torch.einsum("nlhd,hd->nlh", heads, self.context_vector.squeeze(-1))


class ScaledScoresAttention(ContextAttention):
    """Scores divided by sqrt(head size) before the softmax, as in dot-product attention."""

    def similarity(self, x: Tensor) -> Tensor:
        return super().similarity(x) / math.sqrt(self.head_size)


class AlwaysDropout(nn.Module):
    """nn.functional.dropout(x, p): its `training` argument defaults to True, whatever the model's mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.dropout(x, self.p)


class HandLSTM(nn.Module):
    """A bidirectional LSTM written by hand with nn.LSTM's parameter names and shapes, called like nn.LSTM on a
    PackedSequence. `gates` is the order in which it reads the 4H rows (PyTorch's is i, f, g, o)."""

    def __init__(self, lstm: nn.LSTM, gates: str = TORCH_GATES) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = lstm.hidden_size, lstm.num_layers
        self.dropout, self.gates, self.batch_first = float(lstm.dropout), gates, True
        for name, p in lstm.named_parameters():
            self.register_parameter(name, nn.Parameter(p.detach().clone()))

    def _direction(self, x: Tensor, lengths: Tensor, suffix: str, reverse: bool) -> Tensor:
        n, t_max, _ = x.shape
        h = x.new_zeros(n, self.hidden_size)
        c = x.new_zeros(n, self.hidden_size)
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        b = getattr(self, f"bias_ih{suffix}") + getattr(self, f"bias_hh{suffix}")
        outs = [x.new_zeros(n, self.hidden_size)] * t_max
        for t in (range(t_max - 1, -1, -1) if reverse else range(t_max)):
            parts = dict(zip(self.gates, (x[:, t] @ w_ih.T + h @ w_hh.T + b).chunk(4, dim=-1), strict=True))
            c_new = torch.sigmoid(parts["f"]) * c + torch.sigmoid(parts["i"]) * torch.tanh(parts["g"])
            h_new = torch.sigmoid(parts["o"]) * torch.tanh(c_new)
            live = (t < lengths).unsqueeze(-1).to(x.dtype)
            c, h = live * c_new + (1 - live) * c, live * h_new + (1 - live) * h
            outs[t] = live * h_new
        return torch.stack(outs, dim=1)

    def forward(self, packed: PackedSequence) -> tuple[PackedSequence, None]:
        x, lengths = pad_packed_sequence(packed, batch_first=True)
        for layer in range(self.num_layers):
            if layer:
                x = nn.functional.dropout(x, self.dropout, self.training)
            x = torch.cat([self._direction(x, lengths, f"_l{layer}", False),
                           self._direction(x, lengths, f"_l{layer}_reverse", True)], dim=-1)
        return pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), None


class SortedItems(nn.Module):
    """Leaves a level in length-sorted batch order (packed sorted, never restored)."""

    wants_lengths = True

    def forward(self, value: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            return value
        return value[torch.sort(lengths, descending=True, stable=True).indices.to(value.device)]


class BackwardNotReversed(nn.Module):
    """The backward half of a Bi-LSTM output left in reversed time within each item's length."""

    wants_lengths = True

    def forward(self, value: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            return value
        half = value.shape[-1] // 2
        out = value.clone()
        for b, length in enumerate(lengths.tolist()):
            out[b, :length, half:] = value[b, :length, half:].flip(0)
        return out


class SwappedBlocks(nn.Module):
    """total_note_cat as note, voice, measure_spanned, beat_spanned (the last two swapped)."""

    def forward(self, value: Tensor) -> Tensor:
        quarter = value.shape[-1] // 4
        a, b, c, d = value.split(quarter, dim=-1)
        return torch.cat([a, b, d, c], dim=-1)


def replace_attention(model: PercePianoModel, which: str, cls: type[ContextAttention]) -> None:
    """Swap one ContextAttention ("head" or a module path) for `cls`, keeping its weights."""
    if which == "head":
        _, old = model.head_modules()
        name = next(n for n, m in model.named_modules() if m is old)
    else:
        name, old = which, model.get_submodule(which)
    new = cls(old.attention_net.in_features, old.num_head)
    new.load_state_dict(old.state_dict())
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def head_dropout_always_on(model: PercePianoModel) -> None:
    for i, m in enumerate(model.out_fc):
        if isinstance(m, nn.Dropout):
            model.out_fc[i] = AlwaysDropout(m.p)


def hand_note_lstm(gates: str):  # noqa: ANN201 - a model change
    def change(model: PercePianoModel) -> None:
        model.score_encoder.lstm = HandLSTM(model.score_encoder.lstm, gates)
    return change
