"""`ParityCallback`: a parity audit of the LightningModule being trained, before its first optimizer step.

    from percepiano_parity.integrations.lightning import ParityCallback   # or percepiano_parity.ParityCallback

    trainer = Trainer(callbacks=[ParityCallback(adapter=LitAdapter())], ...)
    trainer.fit(module, loader)     # stops with ParityMismatchError on a blocking mismatch, before any step

Needs PyTorch Lightning (`pip install 'percepiano-parity[lightning]'`; `pytorch_lightning`, or the `lightning`
package's `lightning.pytorch` when only that is installed). At `on_fit_start` (after the optimizers are set
up, before the first step) and, with `every_n_epochs=N`, at the end of every N-th training epoch, the callback
audits the module through the same adapter path as `parity check --replica` (see docs/user_replica.md) with
`percepiano_parity.gate`'s machinery, against a reference bundle, a live original or what `parity check` would
use by default. It works on a CPU copy and restores the random state, so the fit itself is unchanged.

Each audit writes its report files (default: `<trainer.default_root_dir>/parity-report/`, a subfolder
`epoch-<n>` for the later audits), logs the headline figures to every logger of the trainer (`parity/equivalent`,
`parity/blocking_findings`, `parity/explanations`, `parity/checks_failed`, `parity/worst_level_rel_error`) and
the verdict line to the `percepiano_parity` Python logger. On a blocking mismatch, `on_mismatch` decides:
"raise" (default) stops the fit with `ParityMismatchError`, whose one line names the cause and the report's
path; "stop" asks the trainer to stop gracefully (trainer.should_stop) and warns with that line; "warn" only
warns. In distributed runs only global rank 0 audits, and every rank follows its decision.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from percepiano_parity.core.errors import UsageError
from percepiano_parity.integrations.gate import GateResult, ParityMismatchError, audit_model, headline

try:
    from pytorch_lightning import Callback
except ImportError:  # pragma: no cover - only the `lightning` package installed
    try:
        from lightning.pytorch import Callback
    except ImportError:
        raise ImportError("ParityCallback needs PyTorch Lightning: pip install 'percepiano-parity[lightning]'") \
            from None

LOG = logging.getLogger("percepiano_parity")
OnMismatch = Literal["raise", "stop", "warn"]


class ParityCallback(Callback):
    """Audit the module being trained at fit start (and every N epochs); see the module docstring.

    adapter: the module's adapter (docs/user_replica.md); None: `module.parity_adapter` when the module has
        one (an attribute, or a method returning it), else the default adapter (logits and gradients only).
    reference / original: a reference bundle folder / a checkout of the original; neither: as `parity check`
        ($PERCEPIANO_ORIGINAL, else the shipped bundle of the variant).
    at_fit_start: audit in on_fit_start (default True). every_n_epochs: also audit after every N-th epoch.
    on_mismatch: "raise" | "stop" | "warn" (see the module docstring).
    report_dir: where report files go (default: <trainer.default_root_dir>/parity-report); None: nowhere.
    initial_weights: the module holds the freshly built weights of the audit's seed (fit-start audit only).
    options: other `parity check` options by name (variant, batches, fail_on, waivers, model_config, ...).
    After a fit, `results` holds (stage, GateResult) of every audit, e.g. ("fit start", ...), ("epoch 2", ...).
    """

    def __init__(self, adapter: Any = None, reference: str | Path | None = None, *, original: str | Path | None = None,
                 at_fit_start: bool = True, every_n_epochs: int | None = None, on_mismatch: OnMismatch = "raise",
                 report_dir: str | Path | None | Literal["default"] = "default", initial_weights: bool = False,
                 formats: str = "md,json,html,junit", **options: Any) -> None:
        super().__init__()
        if on_mismatch not in ("raise", "stop", "warn"):
            raise UsageError(f"ParityCallback: on_mismatch must be 'raise', 'stop' or 'warn', not {on_mismatch!r}")
        if every_n_epochs is not None and (isinstance(every_n_epochs, bool) or int(every_n_epochs) < 1):
            raise UsageError(f"ParityCallback: every_n_epochs must be a positive integer, not {every_n_epochs!r}")
        self.adapter = adapter
        self.reference = reference
        self.original = original
        self.at_fit_start = at_fit_start
        self.every_n_epochs = int(every_n_epochs) if every_n_epochs is not None else None
        self.on_mismatch: OnMismatch = on_mismatch
        self.report_dir = report_dir
        self.initial_weights = initial_weights
        self.formats = formats
        self.options: Mapping[str, Any] = dict(options)
        self.results: list[tuple[str, GateResult]] = []

    # -------------------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.at_fit_start:
            self._audit(trainer, pl_module, "fit start", fresh=trainer.global_step == 0)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._audit(trainer, pl_module, f"epoch {trainer.current_epoch + 1}", fresh=False)

    # -------------------------------------------------------------------------------------------- audit
    def _target(self, trainer: Any, stage: str) -> Path | None:
        if self.report_dir is None:
            return None
        base = Path(trainer.default_root_dir) / "parity-report" if self.report_dir == "default" \
            else Path(self.report_dir)
        return base if stage == "fit start" else base / stage.replace(" ", "-")

    def _adapter(self, pl_module: Any) -> Any:
        if self.adapter is not None:
            return self.adapter
        declared = getattr(pl_module, "parity_adapter", None)
        return declared() if inspect.ismethod(declared) else declared

    def _audit(self, trainer: Any, pl_module: Any, stage: str, *, fresh: bool) -> None:
        message: str | None = None
        if trainer.is_global_zero:
            result = audit_model(pl_module, self._adapter(pl_module), self.reference, original=self.original,
                                 report_dir=self._target(trainer, stage), formats=self.formats,
                                 initial_weights=self.initial_weights and fresh, recipe=pl_module,
                                 name=f"{type(pl_module).__qualname__} (LightningModule, {stage})",
                                 **self.options)
            self.results.append((stage, result))
            self._log(trainer, stage, result)
            message = result.mismatch
        message = trainer.strategy.broadcast(message, src=0)
        if message is None:
            return
        if self.on_mismatch == "raise":
            report = self.results[-1][1] if self.results else None
            raise ParityMismatchError(message, report.report if report else None,  # type: ignore[arg-type]
                                      report.report_path if report else None)
        if self.on_mismatch == "stop":
            trainer.should_stop = True
        warnings.warn(message + (" (training stopped)" if self.on_mismatch == "stop" else ""), UserWarning,
                      stacklevel=2)

    def _log(self, trainer: Any, stage: str, result: GateResult) -> None:
        figures = headline(result.report, result.fail_on)
        for logger in trainer.loggers:
            logger.log_metrics(figures, step=trainer.global_step)
        verdict = result.report.verdict(_severity(result.fail_on)).upper()
        where = f"; report: {result.report_path}" if result.report_path else ""
        LOG.info("parity (%s): %s %s%s", stage, verdict, result.report.variant, where)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(at_fit_start=self.at_fit_start, every_n_epochs=self.every_n_epochs)


def _severity(fail_on: str) -> Any:
    from percepiano_parity.core.findings import Severity

    return Severity.parse(fail_on)


__all__ = ["ParityCallback", "ParityMismatchError"]
