"""The named levels every subject exposes, in forward order.

A level is one recorded activation of the hierarchy. Not every variant has every level (the beat-level
head has no contractor, the single 7-layer model has no hierarchy); a subject records the ones it has.
Note-space levels are (N, T, C), node-space levels (N, B or M, C), pooled levels (N, C).
"""

from __future__ import annotations

from enum import StrEnum

LEVELS: tuple[str, ...] = (
    "embedding",  # note_embedder output, padded (N, T, note_size)
    "note",  # note LSTM output (N, T, 2*note_size)
    "voice",  # voice LSTM output scattered back to notes (N, T, 2*voice_size)
    "beat_nodes",  # note->beat attention pooling (N, B, 2*(note+voice))
    "beat",  # beat LSTM output (N, B, 2*beat_size)
    "measure_nodes",  # beat->measure attention pooling (N, M, 2*beat_size)
    "measure",  # measure LSTM output (N, M, 2*measure_size)
    "beat_spanned",  # beat output copied back to notes (N, T, 2*beat_size)
    "measure_spanned",  # measure output copied back to notes (N, T, 2*measure_size)
    "total_note_cat",  # cat(note, voice, beat_spanned, measure_spanned) (N, T, 8*size)
    "contracted",  # the head's contractor Linear, where the variant has one (N, L, 2*encoder_size)
    "pooled",  # the head's context attention (N, 2*encoder_size)
    "logits",  # out_fc output (N, num_label)
)

# Attention weight maps (softmax weights, (N, L, heads)); zero outside each item's segments.
ATTENTIONS: tuple[str, ...] = ("attn.beat", "attn.measure", "attn.final")


class Space(StrEnum):
    NOTE = "note"
    BEAT = "beat"
    MEASURE = "measure"
    POOLED = "pooled"


LEVEL_SPACE: dict[str, Space] = {
    "embedding": Space.NOTE,
    "note": Space.NOTE,
    "voice": Space.NOTE,
    "beat_nodes": Space.BEAT,
    "beat": Space.BEAT,
    "measure_nodes": Space.MEASURE,
    "measure": Space.MEASURE,
    "beat_spanned": Space.NOTE,
    "measure_spanned": Space.NOTE,
    "total_note_cat": Space.NOTE,
    "contracted": Space.NOTE,
    "pooled": Space.POOLED,
    "logits": Space.POOLED,
}


def level_order(name: str) -> int:
    """Position in forward order; attention maps sort right after the level they pool into."""
    if name in LEVELS:
        return LEVELS.index(name) * 10
    after = {"attn.beat": "beat_nodes", "attn.measure": "measure_nodes", "attn.final": "pooled"}
    if name in after:
        return LEVELS.index(after[name]) * 10 - 1
    return 10_000
