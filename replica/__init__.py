"""A faithful, readable re-implementation of every PercePiano model the original can train."""

from percepiano_parity.compat import adopt as _adopt
from percepiano_parity.replica.batch import CanonicalBatch, ModelInput, Segment, collate
from percepiano_parity.replica.config import DEFAULT_CONFIG, SMALL_CONFIG, ModelConfig
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

_adopt(__name__, "percepiano_parity.replica")  # imported as `replica` from a source checkout: become the installed package
