"""Small variants of the worked example (docs/lightning_example.py), each with one real mistake that people
porting models between frameworks or re-implementing papers have reported, and one faithful control.

Each `build_<case>(variant, config)` is a replica factory for `parity check --replica this_file.py:build_<case>`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from percepiano_parity.core.config import DEFAULT_CONFIG, ModelConfig
from percepiano_parity.replica.attention import MASK_VALUE, ContextAttention

EXAMPLE_PATH = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"


def _example() -> Any:
    name = "parity_worked_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ex = _example()


def _pair(model: nn.Module, adapter: Any = None) -> tuple[nn.Module, Any]:
    return model, adapter or ex.LitAdapter()


# ----------------------------------------------------------------------------------------------- 1. softmax axis


class HeadSoftmax(nn.Module):
    """The final pooling's softmax over the 8 heads (dim=-1) instead of over time (dim=1)."""

    def forward(self, scores: Tensor, x: Tensor) -> Tensor:
        return torch.softmax(scores.masked_fill((x.sum(-1) == 0).unsqueeze(-1), MASK_VALUE), dim=-1)


def build_softmax_over_heads(variant: str = "han-total", config: ModelConfig | None = None):
    model = ex.PercePianoLit(config or DEFAULT_CONFIG)
    model.pool.softmax = HeadSoftmax()
    return _pair(model)


# ----------------------------------------------------------------------------------------------- 2. block order


class SwappedLit(ex.PercePianoLit):
    """total_note_cat concatenated as note, voice, measure_spanned, beat_spanned."""

    def forward(self, x, note_locations):
        beat, measure, voice = note_locations["beat"], note_locations["measure"], note_locations["voice"]
        lengths = ex.packed_lengths(x)
        embedding = self.embed(x)
        note = self.notes(embedding, lengths)
        voice_out = self.voices(embedding, voice)
        beat_out = self.beats(self.beat_pool(note, voice_out, beat))
        measure_out = self.measures(self.measure_pool(beat_out, beat, measure))
        total = torch.cat([note, voice_out, self.measure_span(measure_out, measure),
                           self.beat_span(beat_out, beat)], dim=-1)
        return self.head(self.pool(self.contract(total)))


class SwappedAdapter(ex.LitAdapter):
    def run_level(self, model, level, inputs, model_input):
        if level == "total_note_cat":
            return torch.cat([inputs[k] for k in ("note", "voice", "measure_spanned", "beat_spanned")], dim=-1)
        return super().run_level(model, level, inputs, model_input)


def build_swapped_blocks(variant: str = "han-total", config: ModelConfig | None = None):
    return SwappedLit(config or DEFAULT_CONFIG), SwappedAdapter()


# ----------------------------------------------------------------------------------------------- 3. no tanh


class NoTanhAttention(ContextAttention):
    """score = <W h + b, context> (the tanh of the original left out)."""

    def similarity(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        heads = self.attention_net(x).view(n, length, self.num_head, self.head_size)
        return torch.einsum("nlhd,hd->nlh", heads, self.context_vector.squeeze(-1))


def build_no_tanh(variant: str = "han-total", config: ModelConfig | None = None):
    model = ex.PercePianoLit(config or DEFAULT_CONFIG)
    old = model.beat_pool.attention
    new = NoTanhAttention(old.attention_net.in_features, old.num_head)
    new.load_state_dict(old.state_dict())
    model.beat_pool.attention = new
    return _pair(model)


# ----------------------------------------------------------------------------------------------- 4. dropout in eval


class FunctionalDropoutHead(nn.Module):
    """The head's dropouts as nn.functional.dropout(x, p): training=True by default, so active in eval."""

    def __init__(self, width: int, num_label: int, p: float) -> None:
        super().__init__()
        self.p = p
        self.layers = nn.ModuleDict({"1": nn.Linear(width, width), "4": nn.Linear(width, num_label)})

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.dropout(x, self.p)
        x = nn.functional.gelu(self.layers["1"](x))
        x = nn.functional.dropout(x, self.p)
        return self.layers["4"](x)


class DropoutAdapter(ex.LitAdapter):
    """The example's adapter: the head's Linears are paired with the original's by what they compute."""


def build_dropout_in_eval(variant: str = "han-total", config: ModelConfig | None = None):
    c = config or DEFAULT_CONFIG
    model = ex.PercePianoLit(c)
    head = FunctionalDropoutHead(c.head_width, c.num_label, c.dropout)
    head.layers["1"].load_state_dict(model.head[1].state_dict())
    head.layers["4"].load_state_dict(model.head[4].state_dict())
    model.head = head
    return model, DropoutAdapter()


# ----------------------------------------------------------------------------------------------- 5. hand-made LSTM


GATES_TORCH = "ifgo"


class HandLSTM(nn.Module):
    """A bidirectional multi-layer LSTM written by hand, with nn.LSTM's parameter names and shapes, on padded input
    with lengths (packed semantics: each item's steps past its length are skipped, the reverse direction starts
    at its last real step). `gates` is the order in which the 4H rows are read: "ifgo" is PyTorch's."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0,
                 gates: str = GATES_TORCH) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.dropout, self.gates = hidden_size, num_layers, dropout, gates
        reference = nn.LSTM(input_size, hidden_size, num_layers, bidirectional=True, batch_first=True)
        for name, p in reference.named_parameters():
            self.register_parameter(name, nn.Parameter(p.detach().clone()))

    def _direction(self, x: Tensor, lengths: Tensor, suffix: str, reverse: bool) -> Tensor:
        n, t_max, _ = x.shape
        h = x.new_zeros(n, self.hidden_size)
        c = x.new_zeros(n, self.hidden_size)
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        b = getattr(self, f"bias_ih{suffix}") + getattr(self, f"bias_hh{suffix}")
        out = x.new_zeros(n, t_max, self.hidden_size)
        steps = range(t_max - 1, -1, -1) if reverse else range(t_max)
        for t in steps:
            z = x[:, t] @ w_ih.T + h @ w_hh.T + b
            parts = dict(zip(self.gates, z.chunk(4, dim=-1), strict=True))
            i, f, g, o = (torch.sigmoid(parts["i"]), torch.sigmoid(parts["f"]), torch.tanh(parts["g"]),
                          torch.sigmoid(parts["o"]))
            c_new = f * c + i * g
            h_new = o * torch.tanh(c_new)
            live = (t < lengths).unsqueeze(-1).to(x.dtype)
            c = live * c_new + (1 - live) * c
            h = live * h_new + (1 - live) * h
            out[:, t] = live * h_new
        return out

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.to(x.device)
        for layer in range(self.num_layers):
            if layer:
                x = nn.functional.dropout(x, self.dropout, self.training)
            suffix = f"_l{layer}"
            x = torch.cat([self._direction(x, lengths, suffix, False),
                           self._direction(x, lengths, suffix + "_reverse", True)], dim=-1)
        return x


class HandNoteLSTM(nn.Module):
    def __init__(self, config: ModelConfig, gates: str) -> None:
        super().__init__()
        self.lstm = HandLSTM(config.note_size, config.note_size, config.note_layers, config.dropout, gates)

    def forward(self, embedding: Tensor, lengths: Tensor) -> Tensor:
        return self.lstm(embedding, lengths)


def _with_hand_lstm(config: ModelConfig, gates: str) -> nn.Module:
    model = ex.PercePianoLit(config)
    hand = HandNoteLSTM(config, gates)
    hand.lstm.load_state_dict(model.notes.lstm.state_dict())
    model.notes = hand
    return model


def build_gate_order(variant: str = "han-total", config: ModelConfig | None = None):
    return _pair(_with_hand_lstm(config or DEFAULT_CONFIG, "igfo"))


def build_hand_lstm_control(variant: str = "han-total", config: ModelConfig | None = None):
    return _pair(_with_hand_lstm(config or DEFAULT_CONFIG, GATES_TORCH))


# ----------------------------------------------------------------------------------------------- 6. sorted packing


class SortedNoteLSTM(ex.NoteLSTM):
    """Packs a length-sorted batch and never restores the batch order."""

    def forward(self, embedding: Tensor, lengths: Tensor) -> Tensor:
        lengths, order = lengths.sort(descending=True)
        packed = pack_padded_sequence(embedding[order], lengths.cpu(), batch_first=True)
        out, _ = self.lstm(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=embedding.shape[1])
        return padded


def build_sorted_packing(variant: str = "han-total", config: ModelConfig | None = None):
    c = config or DEFAULT_CONFIG
    model = ex.PercePianoLit(c)
    sorted_lstm = SortedNoteLSTM(c)
    sorted_lstm.load_state_dict(model.notes.state_dict())
    model.notes = sorted_lstm
    return _pair(model)


# ----------------------------------------------------------------------------------------------- 7. shared LSTM


def build_shared_lstm(variant: str = "han-total", config: ModelConfig | None = None):
    model = ex.PercePianoLit(config or DEFAULT_CONFIG)
    model.voices.lstm = model.notes.lstm
    return _pair(model)


# ----------------------------------------------------------------------------------------------- 8. sum reduction


class SumLossLit(ex.PercePianoLit):
    def training_step(self, batch, batch_idx):
        logits = self(batch.x, batch.note_locations)
        return nn.functional.mse_loss(torch.sigmoid(logits), batch.labels, reduction="sum")


def build_sum_reduction(variant: str = "han-total", config: ModelConfig | None = None):
    return _pair(SumLossLit(config or DEFAULT_CONFIG))


# ----------------------------------------------------------------------------------------------- -inf masking


class InfMaskSoftmax(nn.Module):
    """Masking with -inf instead of a large negative number: harmless while no row is fully masked."""

    def forward(self, scores: Tensor, x: Tensor) -> Tensor:
        return torch.softmax(scores.masked_fill((x.sum(-1) == 0).unsqueeze(-1), float("-inf")), dim=1)


def build_inf_mask(variant: str = "han-total", config: ModelConfig | None = None):
    model = ex.PercePianoLit(config or DEFAULT_CONFIG)
    model.pool.softmax = InfMaskSoftmax()
    return _pair(model)


CASES: Mapping[str, Any] = {
    "softmax_over_heads": build_softmax_over_heads, "swapped_blocks": build_swapped_blocks, "no_tanh": build_no_tanh,
    "dropout_in_eval": build_dropout_in_eval, "gate_order": build_gate_order,
    "hand_lstm_control": build_hand_lstm_control, "sorted_packing": build_sorted_packing,
    "shared_lstm": build_shared_lstm, "sum_reduction": build_sum_reduction, "inf_mask": build_inf_mask,
}


# ----------------------------------------------------------------------------------------------- unseen kinds
# (not in the table: the same mechanism must explain them)


class ReluHead(nn.Module):
    """The head with F.relu where the original has an exact GELU."""

    def __init__(self, head: nn.Sequential) -> None:
        super().__init__()
        self.drop1, self.fc1, self.drop2, self.fc2 = head[0], head[1], head[3], head[4]

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop2(nn.functional.relu(self.fc1(self.drop1(x)))))


class ReluAdapter(ex.LitAdapter):
    """The example's adapter: the head's Linears are paired with the original's by what they compute."""


def build_relu_head(variant: str = "han-total", config: ModelConfig | None = None):
    model = ex.PercePianoLit(config or DEFAULT_CONFIG)
    model.head = ReluHead(model.head)
    return model, ReluAdapter()


class ScaledBeatAttention(ContextAttention):
    def similarity(self, x: Tensor) -> Tensor:
        return super().similarity(x) / self.head_size ** 0.5


def build_scaled_beat_scores(variant: str = "han-total", config: ModelConfig | None = None):
    model = ex.PercePianoLit(config or DEFAULT_CONFIG)
    old = model.beat_pool.attention
    new = ScaledBeatAttention(old.attention_net.in_features, old.num_head)
    new.load_state_dict(old.state_dict())
    model.beat_pool.attention = new
    return _pair(model)


class VoiceFirstLit(ex.PercePianoLit):
    """cat(voice, note) where the original has cat(note, voice), in total_note_cat only."""

    def forward(self, x, note_locations):
        beat, measure, voice = note_locations["beat"], note_locations["measure"], note_locations["voice"]
        lengths = ex.packed_lengths(x)
        embedding = self.embed(x)
        note = self.notes(embedding, lengths)
        voice_out = self.voices(embedding, voice)
        beat_out = self.beats(self.beat_pool(note, voice_out, beat))
        measure_out = self.measures(self.measure_pool(beat_out, beat, measure))
        total = torch.cat([voice_out, note, self.beat_span(beat_out, beat),
                           self.measure_span(measure_out, measure)], dim=-1)
        return self.head(self.pool(self.contract(total)))


class VoiceFirstAdapter(ex.LitAdapter):
    def run_level(self, model, level, inputs, model_input):
        if level == "total_note_cat":
            return torch.cat([inputs[k] for k in ("voice", "note", "beat_spanned", "measure_spanned")], dim=-1)
        return super().run_level(model, level, inputs, model_input)


def build_voice_first(variant: str = "han-total", config: ModelConfig | None = None):
    return VoiceFirstLit(config or DEFAULT_CONFIG), VoiceFirstAdapter()


UNSEEN = {"relu_head": build_relu_head, "scaled_beat_scores": build_scaled_beat_scores,
          "voice_first": build_voice_first}
