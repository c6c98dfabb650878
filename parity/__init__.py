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

Imports only run downward through that list (tested); `reports` lays a Report out and computes nothing.
Old import names (`parity.*`, `replica.*`, ...) keep working through `percepiano_parity.compat`.
"""

from percepiano_parity.compat import adopt as _adopt

__version__ = "0.2.0"

_adopt(__name__, "percepiano_parity")
