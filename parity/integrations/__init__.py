"""Audits from inside a training script: `gate` for any training loop, `ParityCallback` for PyTorch Lightning
(`percepiano_parity.integrations.lightning`, needs the `lightning` extra). Both run the whole `parity check`
pipeline on the model about to be trained, so they sit at the level of the commands.
"""

from percepiano_parity.integrations.gate import (
    GateResult,
    ParityMismatchError,
    audit_model,
    gate,
    headline,
    mismatch_line,
)

__all__ = ["GateResult", "ParityMismatchError", "audit_model", "gate", "headline", "mismatch_line"]
