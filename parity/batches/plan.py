"""The batches one check runs on: the requested number of realistic batches plus the edge cases, validated against
the model configuration before either side sees them.
"""

from __future__ import annotations

from collections.abc import Sequence

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.options import EDGE_MAX_NOTES, CheckOptions
from percepiano_parity.replica.batch import BatchError, CanonicalBatch
from percepiano_parity.replica.config import ModelConfig


def make_batches(options: CheckOptions, config: ModelConfig, seed: int) -> list[CanonicalBatch]:
    """Realistic batches (synthetic, or real ones from `options.data`), then the synthetic edge cases."""
    from percepiano_parity.batches.synthetic import edge_cases, generate_batches

    if options.data:
        batches = real_batches(options, config, seed)
    else:
        batches = generate_batches(options.batches, seed, config=config, max_notes=options.max_notes,
                                   include_edge_cases=False)
    if options.edge_cases:
        cap = min(options.max_notes or EDGE_MAX_NOTES, EDGE_MAX_NOTES)
        batches += edge_cases(seed, config, max_notes=cap)
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
