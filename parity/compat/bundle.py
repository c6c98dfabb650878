"""`parity.bundle` of the earlier layout: reading bundles (subjects stage) and recording them (a command)."""

from percepiano_parity.commands.record_bundle import record_bundle
from percepiano_parity.subjects.bundle import (
    DEFAULT_BUNDLES,
    DEFAULT_VARIANTS,
    KIND,
    SCHEMA_VERSION,
    Bundle,
    BundleError,
    ReplaySubject,
    batch_hash,
    load_bundle,
)

__all__ = ["DEFAULT_BUNDLES", "DEFAULT_VARIANTS", "KIND", "SCHEMA_VERSION", "Bundle", "BundleError",
           "ReplaySubject", "batch_hash", "load_bundle", "record_bundle"]
