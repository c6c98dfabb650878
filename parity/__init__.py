"""percepiano-parity: audit a PercePiano re-implementation against the original, layer by layer.

Installed as `percepiano_parity` (this folder), with `percepiano_parity.replica`, `.original_adapter` and
`.reports` beside the stages. Data flows one way, and the folders are its stages, in order:

    core        the shared vocabulary: level names, findings, the report model, errors, options
    batches     canonical batches (synthetic with real statistics, edge cases, self-test batches)
    subjects    the sides of an audit: the original (original_adapter), the bundled replica, a user's
                model and its adapter, a recorded bundle, the deviation library; they record taps
    compare     the engine: weight mapping, running both sides, streaming aggregates, noise floors,
                tolerances, structure descriptions, the first divergent operation
    checks      findings from the comparison state (structure ... precision) and the training checks
    diagnosis   explanations with stable ids from findings, mechanical fixes and their verification
    commands    what a user runs: `parity check` and its pipeline, selftest, doctor, record, drift,
                waivers, options, the pytest plugin

    integrations  audits from a training script: `gate`, the Lightning `ParityCallback`

Imports only run downward through that list (tested); `reports` lays a Report out and computes nothing.
The one import name is `percepiano_parity` (`import percepiano_parity as parity`); `parity.gate(...)`.

At the top level, imported on first use (the package itself imports no torch and no Lightning):

    gate(model, adapter=..., reference=...)   audit a model before training it; ParityMismatchError on a
                                              blocking mismatch (percepiano_parity.integrations.gate)
    audit_model(...)                          the same without raising
    ParityCallback(...)                       the PyTorch Lightning callback (needs the `lightning` extra)
"""

from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "gate": "percepiano_parity.integrations.gate",
    "audit_model": "percepiano_parity.integrations.gate",
    "ParityMismatchError": "percepiano_parity.integrations.gate",
    "ParityCallback": "percepiano_parity.integrations.lightning",
}


def __getattr__(name: str) -> Any:
    """The training-loop entry points, imported when first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'percepiano_parity' has no attribute {name!r}")


