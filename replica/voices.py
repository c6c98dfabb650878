"""The voice LSTM: every voice of every item is its own sequence, run in one batched LSTM call.

Mirrors original `encoder_score.py` `HanEncoder.run_voice_net`, which loops over voice numbers and runs the
LSTM once per voice. Sequences in a packed batch do not interact, so one call over all (item, voice) groups
gives the same outputs (to float32 rounding) with one kernel launch instead of one per voice. Notes with
voice 0 (or below) belong to no voice and keep an all-zero output, as in the original.

Difference kept on purpose: the original also runs a dummy zero row for an item that lacks a voice another
item has; its output is discarded, so in eval the results agree, but in train mode the dropout RNG stream
differs from the original's (trajectory checks therefore run with dropout disabled on both sides).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def run_voices(notes: Tensor, voice: Tensor, lstm: nn.LSTM, *, pack: bool = True) -> Tensor:
    """notes (N, T, C) padded, voice (N, T) int -> (N, T, 2*hidden) with each note's voice-LSTM output."""
    n, length, _ = notes.shape
    out_width = lstm.hidden_size * (2 if lstm.bidirectional else 1)
    result = notes.new_zeros(n, length, out_width)
    item, pos = torch.nonzero(voice >= 1, as_tuple=True)
    if item.numel() == 0:
        return result
    key = item * (int(voice.max()) + 1) + voice[item, pos]
    order = torch.sort(key, stable=True).indices  # groups (item, voice), notes in time order within a group
    item, pos, key = item[order], pos[order], key[order]
    _, counts = torch.unique_consecutive(key, return_counts=True)
    group = torch.repeat_interleave(torch.arange(counts.numel(), device=notes.device), counts)
    rank = torch.arange(item.numel(), device=notes.device) - (torch.cumsum(counts, 0) - counts)[group]
    sequences = notes.new_zeros(counts.numel(), int(counts.max()), notes.shape[2])
    sequences[group, rank] = notes[item, pos]
    if pack:
        packed = pack_padded_sequence(sequences, counts.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)
    else:
        out, _ = lstm(sequences)
    result[item, pos] = out[group, rank]
    return result
