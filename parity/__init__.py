"""percepiano-parity: audit a PercePiano re-implementation against the original, layer by layer.

Data flows one way: canonical batch -> subjects (original, replica) -> taps -> checks -> findings ->
diagnosis -> report (see parity.audit).
"""

__version__ = "0.1.0"
