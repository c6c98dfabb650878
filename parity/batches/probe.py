"""Probe batches for the training checks: realistic segments of pairwise different lengths.

A batch of equal lengths hides every mistake that depends on length: packing a length-sorted batch without
restoring its order, padding counted as notes, a mask over the wrong axis. So the items of each probe batch
get lengths spread evenly from `max_notes` down to a third of it (at least MIN_NOTES), in an order drawn per
batch, so the longest item sits at different positions.
"""

from __future__ import annotations

import numpy as np

from percepiano_parity.batches.synthetic import _realistic
from percepiano_parity.core.options import MIN_NOTES
from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.replica.config import ModelConfig

_PROBE_STREAM = 7  # a stream of its own: the realistic (0) and edge-case (1) batches are not disturbed


def probe_lengths(batch_size: int, max_notes: int) -> list[int]:
    """`batch_size` lengths evenly spread from max_notes down to max(MIN_NOTES, max_notes // 3), pairwise
    different while the range allows it."""
    low = min(max_notes, max(MIN_NOTES, max_notes // 3))
    return [int(round(v)) for v in np.linspace(max_notes, low, batch_size)]


def unequal_length_batches(n_batches: int, seed: int, *, batch_size: int, config: ModelConfig,
                           max_notes: int) -> list[CanonicalBatch]:
    """`n_batches` batches (tagged "probe") of `batch_size` realistic segments with `probe_lengths`, shuffled
    per batch. ValueError for max_notes below MIN_NOTES."""
    if max_notes < MIN_NOTES:
        raise ValueError(f"max_notes must be at least {MIN_NOTES}, got {max_notes}")
    batches = []
    for k in range(n_batches):
        rng = np.random.Generator(np.random.PCG64([seed, _PROBE_STREAM, k]))
        lengths = [probe_lengths(batch_size, max_notes)[i] for i in rng.permutation(batch_size)]
        segments = tuple(
            _realistic(rng, config, f"probe{seed}b{k}i{i}", max_notes=None, length=n) for i, n in enumerate(lengths))
        batches.append(CanonicalBatch(segments=segments, tags=("probe",)))
    return batches
