"""A PercePiano replica written as a PyTorch-Lightning-style module, and the adapter that lets `parity check`
audit it.

    parity check --replica docs/lightning_example.py:build

The model is organised the way many re-implementations are: one submodule per stage of the hierarchy, with
its own names (`embed`, `notes`, `voices`, `beat_pool`, ...), inside a LightningModule-like class with
`training_step` and `configure_optimizers`. Nothing here depends on lightning: the class only has the
methods a LightningModule would have. (In a real project, subclass `lightning.LightningModule` instead of
`nn.Module`; the adapter stays the same.)

The stages reuse the bundled replica's building blocks (`replica.hierarchy`, `replica.voices`,
`replica.attention.ContextAttention`), so this model is faithful and the check passes. The tool needs no
description of it: it probes how the model is called (a PackedSequence and zero-padded note locations, logits
out), finds each of the original's levels by value among the tensors the forward computes (and reports the
source line of each), pairs our modules with the original's by shapes, call order and values (our `embed.fc`
is the original's `note_embedder.fc`: a rename, not a deviation), and reads `configure_optimizers` for the
recipe. `LitAdapter` only adds `run_level` (teacher forcing: the report can then say whether a level's error is
its own or inherited); without it the factory could return the bare model.

Built in the original's construction order (embedder, note LSTM, voice LSTM, beat attention, beat LSTM,
measure attention, measure LSTM, the unused performance encoder, contractor, final attention, out_fc), the
same seed gives the original's initial weights, so the init check compares them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from percepiano_parity.batches.canonical import ModelInput
from percepiano_parity.core.config import DEFAULT_CONFIG, ModelConfig
from percepiano_parity.replica.attention import MASK_VALUE, ContextAttention
from percepiano_parity.replica.hierarchy import (
    make_higher_node,
    measure_segments_in_beat_space,
    nonzero_rows,
    note_segments,
    run_lstm_on_nodes,
    segment_softmax,
    span_note_counts,
    span_to_notes,
)
from percepiano_parity.replica.voices import run_voices

# ----------------------------------------------------------------------------------------------- stages


class Embed(nn.Module):
    """Linear over the packed note features (padding never passes through it), returned padded (N, T, C)."""

    def __init__(self, input_size: int, size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(input_size, size)

    def forward(self, x: PackedSequence) -> Tensor:
        rows = PackedSequence(self.fc(x.data), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
        padded, _ = pad_packed_sequence(rows, batch_first=True)
        return padded


class NoteLSTM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(config.note_size, config.note_size, config.note_layers, batch_first=True,
                            bidirectional=True, dropout=config.dropout)

    def forward(self, embedding: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(embedding, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=embedding.shape[1])
        return padded


class VoiceLSTM(nn.Module):
    """Each voice of each piece is its own sequence; notes of voice 0 get zeros."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(config.note_size, config.voice_size, config.voice_layers, batch_first=True,
                            bidirectional=True, dropout=config.dropout)

    def forward(self, embedding: Tensor, voice: Tensor) -> Tensor:
        return run_voices(embedding, voice, self.lstm)


class SegmentSoftmax(nn.Module):
    """Softmax over time within each beat (or measure): the attention weights, (N, L, heads)."""

    def forward(self, scores: Tensor, segments: Any) -> Tensor:
        return segment_softmax(scores, segments)


class BeatPool(nn.Module):
    """Notes -> beat nodes: multi-head context attention within each beat."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = ContextAttention(2 * (config.note_size + config.voice_size), config.num_heads)
        self.softmax = SegmentSoftmax()

    def forward(self, note: Tensor, voice: Tensor, beat: Tensor) -> Tensor:
        hidden = torch.cat([note, voice], dim=-1)
        segments = note_segments(beat)
        weights = self.softmax(self.attention.similarity(hidden), segments)
        return make_higher_node(hidden, weights, segments, self.attention.num_head)


class MeasurePool(nn.Module):
    """Beat nodes -> measure nodes (measure boundaries expressed in beat-node space)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = ContextAttention(2 * config.beat_size, config.num_heads)
        self.softmax = SegmentSoftmax()

    def forward(self, beat_out: Tensor, beat: Tensor, measure: Tensor) -> Tensor:
        segments = measure_segments_in_beat_space(beat, measure, nonzero_rows(beat_out))
        weights = self.softmax(self.attention.similarity(beat_out), segments)
        return make_higher_node(beat_out, weights, segments, self.attention.num_head)


class NodeLSTM(nn.Module):
    def __init__(self, input_size: int, size: int, layers: int, dropout: float | None) -> None:
        super().__init__()
        extra = {} if dropout is None else {"dropout": dropout}
        self.lstm = nn.LSTM(input_size, size, layers, batch_first=True, bidirectional=True, **extra)

    def forward(self, nodes: Tensor) -> Tensor:
        return run_lstm_on_nodes(nodes, self.lstm)


class Span(nn.Module):
    """Copy each beat's (or measure's) output back to its notes, with the original's note count."""

    def forward(self, nodes: Tensor, numbers: Tensor) -> Tensor:
        return span_to_notes(nodes, numbers, span_note_counts(numbers))


class MaskedSoftmax(nn.Module):
    """The final pooling's weights: rows summing to exactly zero count as padding (the original's test)."""

    def forward(self, scores: Tensor, x: Tensor) -> Tensor:
        return torch.softmax(scores.masked_fill((x.sum(-1) == 0).unsqueeze(-1), MASK_VALUE), dim=1)


class FinalPool(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = ContextAttention(config.head_width, config.num_heads)
        self.softmax = MaskedSoftmax()

    def forward(self, x: Tensor) -> Tensor:
        return self.attention.pool(x, self.softmax(self.attention.similarity(x), x))


# ----------------------------------------------------------------------------------------------- model


def packed_lengths(x: PackedSequence) -> Tensor:
    """Notes per piece, in batch order, read from a PackedSequence."""
    steps = torch.arange(int(x.batch_sizes[0])).unsqueeze(1)
    lengths = (x.batch_sizes.unsqueeze(0) > steps).sum(1)
    return lengths if x.unsorted_indices is None else lengths[x.unsorted_indices.cpu()]


class PercePianoLit(nn.Module):
    """The total_note_cat HAN the published scripts train, as a LightningModule-like class."""

    def __init__(self, config: ModelConfig = DEFAULT_CONFIG, lr: float = 2.5e-5, weight_decay: float = 1e-5) -> None:
        super().__init__()
        c = config
        self.config = c
        self.lr, self.weight_decay = lr, weight_decay
        self.embed = Embed(c.input_size, c.note_size)
        self.notes = NoteLSTM(c)
        self.voices = VoiceLSTM(c)
        self.beat_pool = BeatPool(c)
        self.beats = NodeLSTM(2 * (c.note_size + c.voice_size), c.beat_size, c.beat_layers, c.dropout)
        self.measure_pool = MeasurePool(c)
        self.measures = NodeLSTM(2 * c.beat_size, c.measure_size, c.measure_layers, None)  # no dropout arg
        self.beat_span = Span()
        self.measure_span = Span()
        # The original builds a performance encoder that this variant never calls; building it keeps the
        # random draws, hence the initial weights of everything after it, equal to the original's.
        self.unused_performance_encoder = nn.ModuleDict({
            "contractor": nn.Linear(8 * c.encoder_size, c.head_width),
            "attention": ContextAttention(c.head_width, c.num_heads),
        })
        self.contract = nn.Linear(8 * c.encoder_size, c.head_width)
        self.pool = FinalPool(c)
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.head_width, c.head_width), nn.GELU(),
                                  nn.Dropout(c.dropout), nn.Linear(c.head_width, c.num_label))

    def forward(self, x: PackedSequence, note_locations: Mapping[str, Tensor]) -> Tensor:
        beat, measure, voice = note_locations["beat"], note_locations["measure"], note_locations["voice"]
        lengths = packed_lengths(x)
        embedding = self.embed(x)
        note = self.notes(embedding, lengths)
        voice_out = self.voices(embedding, voice)
        beat_out = self.beats(self.beat_pool(note, voice_out, beat))
        measure_out = self.measures(self.measure_pool(beat_out, beat, measure))
        total = torch.cat([note, voice_out, self.beat_span(beat_out, beat),
                           self.measure_span(measure_out, measure)], dim=-1)
        return self.head(self.pool(self.contract(total)))

    # --- the LightningModule part ------------------------------------------------------------------------
    def training_step(self, batch: ModelInput, batch_idx: int) -> Tensor:
        logits = self(batch.x, batch.note_locations)
        return nn.functional.mse_loss(torch.sigmoid(logits), batch.labels)

    def validation_step(self, batch: ModelInput, batch_idx: int) -> Tensor:
        return torch.sigmoid(self(batch.x, batch.note_locations))

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3000, gamma=0.98)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
                "gradient_clip_val": 2.0}


# ----------------------------------------------------------------------------------------------- adapter


class LitAdapter:
    """Optional: one stage on given inputs (teacher forcing), so the report can tell a level's own error from
    the error it inherits. Everything else (how to call the model, where its levels are, which weights pair with
    the original's) the tool finds by itself."""

    def run_level(self, model: PercePianoLit, level: str, inputs: Mapping[str, Tensor],
                  model_input: ModelInput) -> Tensor:
        """One stage on the given input levels (the tool passes the reference's own values)."""
        loc = model_input.note_locations
        beat, measure = loc["beat"], loc["measure"]
        stages = {
            "embedding": lambda: model.embed(model_input.x),
            "note": lambda: model.notes(inputs["embedding"], model_input.lengths),
            "voice": lambda: model.voices(inputs["embedding"], loc["voice"]),
            "beat_nodes": lambda: model.beat_pool(inputs["note"], inputs["voice"], beat),
            "beat": lambda: model.beats(inputs["beat_nodes"]),
            "measure_nodes": lambda: model.measure_pool(inputs["beat"], beat, measure),
            "measure": lambda: model.measures(inputs["measure_nodes"]),
            "beat_spanned": lambda: model.beat_span(inputs["beat"], beat),
            "measure_spanned": lambda: model.measure_span(inputs["measure"], measure),
            "total_note_cat": lambda: torch.cat([inputs[k] for k in ("note", "voice", "beat_spanned",
                                                                     "measure_spanned")], dim=-1),
            "contracted": lambda: model.contract(inputs["total_note_cat"]),
            "pooled": lambda: model.pool(inputs["contracted"]),
            "logits": lambda: model.head(inputs["pooled"]),
        }
        return stages[level]()


def build(variant: str = "han-total", config: ModelConfig | None = None) -> tuple[PercePianoLit, LitAdapter]:
    """The factory `parity check --replica docs/lightning_example.py:build` calls (after seeding torch)."""
    if variant != "han-total":
        raise ValueError(f"this example implements han-total only, not {variant}")
    return PercePianoLit(config or DEFAULT_CONFIG), LitAdapter()
