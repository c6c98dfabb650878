"""Per-forward context shared by the level methods: note locations, lengths, semantics, recorders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from percepiano_parity.replica.semantics import FAITHFUL, Semantics

Recorder = Callable[[str, Tensor], None]


@dataclass
class LevelContext:
    locations: dict[str, Tensor]  # (N, T) int64, zero-padded
    lengths: Tensor  # (N,) int64 real note counts
    semantics: Semantics = FAITHFUL
    on_attention: Recorder | None = None
    attention: dict[str, Tensor] = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        return int(self.locations["beat"].shape[1])

    def note_mask(self) -> Tensor:
        return torch.arange(self.max_length).unsqueeze(0) < self.lengths.unsqueeze(1)

    def boundary_numbers(self, key: str) -> Tensor:
        """Location numbers as the boundary finder should see them.

        Under the faithful rule, a boundary is a rise by exactly 1. The "any_change" deviation renumbers
        each change to a rise of 1 so the same finder places a boundary at every change.
        """
        numbers = self.locations[key]
        if self.semantics.boundary_rule == "rise_by_one":
            return numbers
        changed = torch.zeros_like(numbers)
        changed[:, 1:] = (numbers[:, 1:] != numbers[:, :-1]).long()
        renumbered = torch.cumsum(changed, dim=1) + 1
        return torch.where(self.note_mask(), renumbered, torch.zeros_like(renumbered))

    def record_attention(self, name: str, weights: Tensor) -> None:
        self.attention[name] = weights
        if self.on_attention is not None:
            self.on_attention(name, weights)

    def run_sequence_lstm(self, lstm: nn.LSTM, padded: Tensor) -> Tensor:
        """Run a note-level LSTM over real notes only (packed), or over the padded tensor (deviation)."""
        if not self.semantics.pack_sequences:
            out, _ = lstm(padded)
            return out
        packed = pack_padded_sequence(padded, self.lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=padded.shape[1])
        return out
