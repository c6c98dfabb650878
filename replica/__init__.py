"""A faithful, readable re-implementation of every PercePiano model the original can train."""

from percepiano_parity.batches.canonical import CanonicalBatch, ModelInput, Segment, collate
from percepiano_parity.core.config import DEFAULT_CONFIG, SMALL_CONFIG, ModelConfig
from percepiano_parity.replica.models import PercePianoModel
from percepiano_parity.replica.variants import VARIANTS, build, get_variant

__all__ = [
    "DEFAULT_CONFIG",
    "SMALL_CONFIG",
    "VARIANTS",
    "CanonicalBatch",
    "ModelConfig",
    "ModelInput",
    "PercePianoModel",
    "Segment",
    "build",
    "collate",
    "get_variant",
]

