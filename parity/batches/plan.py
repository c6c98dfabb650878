"""The batches one check runs on: the requested realistic batches plus the edge cases, and the probe
batches of the training checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from percepiano_parity.batches.canonical import BatchError, CanonicalBatch
from percepiano_parity.batches.synthetic import _realistic
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.options import EDGE_MAX_NOTES, MIN_NOTES, CheckOptions

# ----------------------------------------------------------------------------------------------------------
# The batches one check runs on: the requested number of realistic batches plus the edge cases, validated against
# the model configuration before either side sees them.


def make_batches(options: CheckOptions, config: ModelConfig, seed: int) -> list[CanonicalBatch]:
    """Realistic batches (synthetic, or real ones from `options.data`), then the synthetic edge cases: those the
    original runs, then those it raises on (a replica is to raise alike)."""
    from percepiano_parity.batches.synthetic import edge_cases, generate_batches, raising_edge_cases

    if options.data:
        batches = real_batches(options, config, seed)
    else:
        batches = generate_batches(options.batches, seed, config=config, max_notes=options.max_notes,
                                   include_edge_cases=False)
    if options.edge_cases:
        cap = min(options.max_notes or EDGE_MAX_NOTES, EDGE_MAX_NOTES)
        batches += edge_cases(seed, config, max_notes=cap) + raising_edge_cases(seed, config, max_notes=cap)
    return batches


def real_batches(options: CheckOptions, config: ModelConfig, seed: int) -> list[CanonicalBatch]:
    """The first `options.batches` batches of the real split's loader (`batches.real.loader`)."""
    from percepiano_parity.batches.real.cache import CacheError
    from percepiano_parity.batches.real.loader import RealData

    try:
        data = RealData.open(options.data or "")
        batches = data.batches(options.batches, seed, options.data_split, num_label=config.num_label)
    except CacheError as exc:
        raise UsageError(f"--data: {exc}") from None
    return batches


def validate_batches(batches: Sequence[CanonicalBatch], config: ModelConfig) -> None:
    for i, batch in enumerate(batches):
        try:
            batch.validate(config.input_size, config.num_label)
        except BatchError as exc:
            raise UsageError(f"batch {i} ({', '.join(batch.tags) or 'generated'}): {exc}") from None


# ----------------------------------------------------------------------------------------------------------
# Probe batches for the training checks: realistic segments of pairwise different lengths.
#
# A batch of equal lengths hides every mistake that depends on length: packing a length-sorted batch without
# restoring its order, padding counted as notes, a mask over the wrong axis. So the items of each probe batch
# get lengths spread evenly from `max_notes` down to a third of it (at least MIN_NOTES), in an order drawn per
# batch, so the longest item sits at different positions.

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
