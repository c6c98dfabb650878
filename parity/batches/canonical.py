"""The canonical batch every subject consumes, and the collate that turns it into model input.

A canonical batch is framework-neutral data: per segment a (T_i, F) float32 feature matrix, the four note
location sequences (beat, measure, voice, section; positive integers, 0 reserved for padding after collate)
and the label vector. `collate` produces exactly what the original's training loop hands its models: a
`PackedSequence` built with `pack_sequence(enforce_sorted=False)` and zero-padded int64 (N, T) locations.

"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_sequence

LOCATION_KEYS = ("beat", "measure", "section", "voice")


class BatchError(ValueError):
    """A batch that cannot be fed to the models (wrong shape, dtype, non-finite values...)."""


@dataclass(frozen=True)
class Segment:
    """One performance segment: T notes with features, note locations and a label vector."""

    name: str
    features: Tensor  # (T, F) float32
    beat: Tensor  # (T,) int64
    measure: Tensor  # (T,) int64
    voice: Tensor  # (T,) int64
    section: Tensor  # (T,) int64
    label: Tensor  # (L,) float32 in [0, 1]

    @property
    def length(self) -> int:
        return int(self.features.shape[0])

    def location(self, key: str) -> Tensor:
        return getattr(self, key)


@dataclass(frozen=True)
class CanonicalBatch:
    segments: tuple[Segment, ...]
    tags: tuple[str, ...] = field(default=())  # e.g. ("edge:length-1",) for reports

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def lengths(self) -> list[int]:
        return [s.length for s in self.segments]

    def validate(self, input_size: int | None = None, num_label: int | None = None) -> None:
        """Raise BatchError with one clear sentence when the batch cannot be fed to the models."""
        if not self.segments:
            raise BatchError("the batch is empty")
        for i, seg in enumerate(self.segments):
            where = f"segment {i} ({seg.name})"
            if seg.features.dim() != 2 or seg.features.shape[0] == 0:
                raise BatchError(f"{where}: features must be a non-empty (T, F) matrix, got {tuple(seg.features.shape)}")
            if input_size is not None and seg.features.shape[1] != input_size:
                raise BatchError(
                    f"{where}: features have {seg.features.shape[1]} columns, the model takes {input_size}"
                )
            if not torch.isfinite(seg.features).all():
                raise BatchError(f"{where}: features contain NaN or infinite values")
            for key in LOCATION_KEYS:
                loc = seg.location(key)
                if loc.shape != (seg.length,):
                    raise BatchError(f"{where}: {key} has shape {tuple(loc.shape)}, expected ({seg.length},)")
                if loc.dtype != torch.int64:
                    raise BatchError(f"{where}: {key} must be int64, got {loc.dtype}")
            if num_label is not None and seg.label.shape != (num_label,):
                raise BatchError(f"{where}: label has shape {tuple(seg.label.shape)}, expected ({num_label},)")


@dataclass(frozen=True)
class ModelInput:
    """What the models take: packed features, zero-padded note locations, labels."""

    x: PackedSequence
    note_locations: dict[str, Tensor]  # key -> (N, T) int64, zero-padded
    labels: Tensor  # (N, L) float32
    lengths: Tensor  # (N,) int64, in batch order

    def to(self, device: torch.device | str) -> ModelInput:
        """Move features and labels; note locations stay on the CPU as in the original (batch_to_device)."""
        return ModelInput(
            x=self.x.to(device), note_locations=self.note_locations, labels=self.labels.to(device), lengths=self.lengths
        )


def collate(batch: CanonicalBatch | Sequence[Segment]) -> ModelInput:
    segments = batch.segments if isinstance(batch, CanonicalBatch) else tuple(batch)
    x = pack_sequence([s.features.float() for s in segments], enforce_sorted=False)
    locations = {
        key: pad_sequence([s.location(key).long() for s in segments], batch_first=True) for key in LOCATION_KEYS
    }
    labels = torch.stack([s.label.float() for s in segments])
    lengths = torch.tensor([s.length for s in segments], dtype=torch.int64)
    return ModelInput(x=x, note_locations=locations, labels=labels, lengths=lengths)
