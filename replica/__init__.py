"""A faithful, readable re-implementation of every PercePiano model the original can train."""

from replica.batch import CanonicalBatch, ModelInput, Segment, collate
from replica.config import DEFAULT_CONFIG, SMALL_CONFIG, ModelConfig
from replica.models import PercePianoModel
from replica.variants import VARIANTS, build, get_variant

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
