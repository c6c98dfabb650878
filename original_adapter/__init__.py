"""Drive a user's checkout of the original PercePiano code as a parity subject.

    original = load("/path/to/PercePiano")      # or [tool.parity] original, or $PERCEPIANO_ORIGINAL
    model = original.build("han-total")          # the original's own class, seeded like its __main__
    taps = original.subject("han-total").run(batch)

The checkout is never edited and its flat-named modules never stay in `sys.modules` (see `isolation`);
what was needed to import it (shims) and which files ran are recorded for reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from percepiano_parity.core.config import DEFAULT_CONFIG, ModelConfig
from percepiano_parity.original_adapter.build import build_model, resolve_yml
from percepiano_parity.original_adapter.data_ops import DataOps
from percepiano_parity.original_adapter.errors import OriginalLoadError
from percepiano_parity.original_adapter.isolation import Isolated, import_isolated
from percepiano_parity.original_adapter.locate import (
    CheckoutInfo,
    describe,
    find_project_config,
    resolve_root,
)
from percepiano_parity.original_adapter.scripts import ScriptsAnalysis, analyse_scripts
from percepiano_parity.original_adapter.shims import MODEL_SHIMS
from percepiano_parity.original_adapter.subject import OriginalSubject
from percepiano_parity.original_adapter.variants import VARIANTS, check_variant, variant_ids
from percepiano_parity.subjects.subject import SubjectInfo

__all__ = [
    "MODEL_MODULES", "VARIANTS", "Original", "OriginalLoadError", "OriginalSubject", "load", "variant_ids",
]

# What the models need, imported up front (model_m2pf pulls in decoder, residual_selector and part of
# pyScoreParser as well; those are captured too).
MODEL_MODULES: tuple[str, ...] = (
    "model_m2pf", "utils", "module", "model_utils", "encoder_score", "encoder_perf", "note_embedder",
    "model_constants", "data_process",
)


class Original:
    """One loaded checkout: where it is, what version, what it took to import, and its variants."""

    def __init__(self, checkout: CheckoutInfo, isolated: Isolated) -> None:
        self.checkout = checkout
        self.isolated = isolated  # replaced (extended) when data_ops imports the training modules

    @property
    def root(self) -> Path:
        return self.checkout.root

    @property
    def revision(self) -> str:
        return self.checkout.revision

    @property
    def warnings(self) -> list[str]:
        return list(self.checkout.warnings)

    @property
    def shims(self) -> list[dict[str, str]]:
        """{"name", "reason"} for every stand-in module the original was given so far."""
        return [dict(s) for s in self.isolated.shims]

    @property
    def modules(self) -> dict[str, str]:
        """Import name -> the file it was loaded from."""
        return self.isolated.files

    @property
    def lazy_imports(self) -> tuple[str, ...]:
        """Imports inside the original's functions that the isolation keeps working (usually none)."""
        return self.isolated.lazy_imports

    def build(self, variant_id: str, config: ModelConfig | None = None, seed: int = 7,
              yml: str | Path | None = None) -> nn.Module:
        """The variant built from the original's class, on the CPU, after torch.manual_seed(seed)."""
        return build_model(self.isolated, self.root, variant_id, config, seed, yml)

    def subject(self, variant_id: str, config: ModelConfig | None = None, seed: int = 7,
                yml: str | Path | None = None) -> OriginalSubject:
        """A parity subject wrapping a freshly built variant."""
        config = config or DEFAULT_CONFIG
        class_name, multi_level = check_variant(variant_id)
        model = self.build(variant_id, config, seed, yml)
        info = SubjectInfo(
            name="original",
            kind="original-checkout",
            variant=variant_id,
            source=str(self.root),
            revision=self.revision,
            shims=tuple(self.shims),
            warnings=tuple(self.warnings),
            extra={
                "class": class_name,
                "multi_level": multi_level,
                "seed": seed,
                "yml": str(resolve_yml(self.root, yml)),
                "config": config.to_dict(),
                "fingerprint": self.checkout.fingerprint,
                "modules": self.modules,
            },
        )
        return OriginalSubject(model, variant_id, self.isolated, info, config)

    @cached_property
    def _scripts(self) -> ScriptsAnalysis:
        return analyse_scripts(self.root)

    def scripts(self) -> ScriptsAnalysis:
        """Which variants the checkout's published scripts train, and with which arguments."""
        return self._scripts

    @cached_property
    def data_ops(self) -> DataOps:
        """The original's data pipeline, loss and metric functions (imported on first use)."""
        return DataOps(self)


def load(path: str | Path | None = None, config: Mapping[str, Any] | None = None) -> Original:
    """Locate, validate, describe and import a checkout.

    `path` wins; else `config` (a [tool.parity] table or a whole parsed pyproject); else the nearest
    parity.toml / pyproject.toml with [tool.parity] original; else $PERCEPIANO_ORIGINAL.
    """
    if path is None and config is None:
        config = find_project_config()
    root = resolve_root(path, config)
    checkout = describe(root)
    isolated = import_isolated(checkout.code_dir, MODEL_MODULES, MODEL_SHIMS)
    return Original(checkout, isolated)

