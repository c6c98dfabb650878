"""Hierarchical score encoder: note and voice LSTMs, note->beat and beat->measure attention, their LSTMs.

Mirrors original `encoder_score.py` class `HanEncoder` (parameter names and construction order identical, so a
state dict loads strictly and the same seed gives the same initial weights).

The forward is split into one method per level, each computed from earlier levels only. The model runs
them in order; the parity engine can also call one alone on another subject's recorded inputs (teacher
forcing) to tell a level's own error from the error it inherits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from percepiano_parity.core.config import ModelConfig
from percepiano_parity.replica.attention import ContextAttention
from percepiano_parity.replica.context import LevelContext
from percepiano_parity.replica.fast_lstm import FastLSTM
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


class HanEncoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        note_voice = 2 * (c.note_size + c.voice_size)
        self.lstm = FastLSTM(c.note_size, c.note_size, c.note_layers, batch_first=True, bidirectional=True,
                            dropout=c.dropout)
        self.voice_net = FastLSTM(c.note_size, c.voice_size, c.voice_layers, batch_first=True, bidirectional=True,
                                 dropout=c.dropout)
        self.beat_attention = ContextAttention(note_voice, c.num_heads)
        self.beat_rnn = FastLSTM(note_voice, c.beat_size, c.beat_layers, batch_first=True, bidirectional=True,
                                dropout=c.dropout)
        self.measure_attention = ContextAttention(2 * c.beat_size, c.num_heads)
        # The original passes no dropout to the measure LSTM.
        self.measure_rnn = FastLSTM(2 * c.beat_size, c.measure_size, c.measure_layers, batch_first=True,
                                   bidirectional=True)

    # -- levels -------------------------------------------------------------------------------------------
    def note(self, embedding: Tensor, ctx: LevelContext) -> Tensor:
        return ctx.run_sequence_lstm(self.lstm, embedding)

    def voice(self, embedding: Tensor, ctx: LevelContext) -> Tensor:
        return run_voices(embedding, ctx.locations["voice"], self.voice_net, pack=ctx.semantics.pack_sequences)

    def beat_nodes(self, note: Tensor, voice: Tensor, ctx: LevelContext) -> Tensor:
        hidden = torch.cat([note, voice], dim=-1)
        segments = note_segments(ctx.boundary_numbers("beat"))
        weights = segment_softmax(self.beat_attention.similarity(hidden), segments)
        ctx.record_attention("attn.beat", weights)
        return make_higher_node(hidden, weights, segments, self.beat_attention.num_head)

    def beat(self, beat_nodes: Tensor, ctx: LevelContext) -> Tensor:
        return run_lstm_on_nodes(beat_nodes, self.beat_rnn, pack=ctx.semantics.pack_sequences)

    def measure_nodes(self, beat: Tensor, ctx: LevelContext) -> Tensor:
        segments = measure_segments_in_beat_space(
            ctx.boundary_numbers("beat"), ctx.boundary_numbers("measure"), nonzero_rows(beat)
        )
        weights = segment_softmax(self.measure_attention.similarity(beat), segments)
        ctx.record_attention("attn.measure", weights)
        return make_higher_node(beat, weights, segments, self.measure_attention.num_head)

    def measure(self, measure_nodes: Tensor, ctx: LevelContext) -> Tensor:
        return run_lstm_on_nodes(measure_nodes, self.measure_rnn, pack=ctx.semantics.pack_sequences)

    def beat_spanned(self, beat: Tensor, ctx: LevelContext) -> Tensor:
        return self._span(beat, ctx.boundary_numbers("beat"), ctx)

    def measure_spanned(self, measure: Tensor, ctx: LevelContext) -> Tensor:
        return self._span(measure, ctx.boundary_numbers("measure"), ctx)

    @staticmethod
    def total_note_cat(note: Tensor, voice: Tensor, beat_spanned: Tensor, measure_spanned: Tensor) -> Tensor:
        return torch.cat([note, voice, beat_spanned, measure_spanned], dim=-1)

    @staticmethod
    def _span(nodes: Tensor, numbers: Tensor, ctx: LevelContext) -> Tensor:
        counts = ctx.lengths if ctx.semantics.span_count == "true_length" else span_note_counts(numbers)
        offset = ctx.semantics.span_offset
        if offset:
            numbers = torch.where(numbers - numbers[:, :1] + offset >= 0, numbers + offset, numbers[:, :1])
        return span_to_notes(nodes, numbers, counts)
