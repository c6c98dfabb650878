"""Note embedder: one Linear over the raw note features, applied to packed rows only.

Mirrors original `note_embedder.py` class `MixEmbedder` (with every feature used, as in the published
configuration). Applying the Linear to `PackedSequence.data` means padding never passes through it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence


class NoteEmbedder(nn.Module):
    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(input_size, output_size)
        # Columns of the raw features fed to fc; None means all. Only the deviation library sets it.
        self.input_columns: list[int] | None = None

    def _select(self, x: Tensor) -> Tensor:
        if self.input_columns is None:
            return x
        return x[..., torch.tensor(self.input_columns, device=x.device)]

    def forward(self, x: PackedSequence | Tensor) -> PackedSequence | Tensor:
        if isinstance(x, PackedSequence):
            return PackedSequence(self.fc(self._select(x.data)), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
        return self.fc(self._select(x))
