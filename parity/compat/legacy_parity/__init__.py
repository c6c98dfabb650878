"""The installed top-level `parity` package: the old import name of `percepiano_parity` (see its compat)."""

from percepiano_parity.compat import adopt as _adopt

_adopt(__name__, "percepiano_parity")
