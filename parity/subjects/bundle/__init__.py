"""Reference bundles: record the original once, check a replica anywhere without it.

    record_bundle(original_adapter.load(path), "han-total", SMALL_CONFIG, 7, "my-bundle")   # needs the original
    bundle = load_bundle("my-bundle", expect_variant="han-total")                           # needs nothing
    audit(bundle.reference_subject(), candidate, bundle.batches, settings)

`DEFAULT_BUNDLES` maps a variant id to the bundle shipped inside the package (`parity/data/bundles/<variant>`,
SMALL_CONFIG, seed 7); rebuild them with `python -m percepiano_parity.commands.make_default --original PATH`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from percepiano_parity.subjects.bundle.format import KIND, SCHEMA_VERSION, BundleError, batch_hash
from percepiano_parity.subjects.bundle.replay import Bundle, ReplaySubject, load_bundle

DEFAULT_VARIANTS: tuple[str, ...] = ("han-total", "bilstm-note")


def _default_bundles() -> dict[str, Path]:
    # resolve each bundle through importlib.resources, as a real path
    files = importlib.resources.files("percepiano_parity")
    return {variant: Path(str(files.joinpath(f"data/bundles/{variant}"))) for variant in DEFAULT_VARIANTS}


DEFAULT_BUNDLES: dict[str, Path] = _default_bundles()

__all__ = [
    "DEFAULT_BUNDLES", "DEFAULT_VARIANTS", "KIND", "SCHEMA_VERSION", "Bundle", "BundleError", "ReplaySubject",
    "batch_hash", "load_bundle",
]
