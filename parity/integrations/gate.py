"""A parity gate for any training loop: audit the model you are about to train, stop on a blocking
mismatch; the few figures a training log keeps of it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from percepiano_parity.commands.check import STAGE_TEXT, GivenModel, run_check
from percepiano_parity.commands.options import resolve_options
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report

# ----------------------------------------------------------------------------------------------------------
# The few figures a training log keeps of an audit, and the one line that says why a gate stopped training.

PREFIX = "parity/"


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def worst_level_error(report: Report) -> float | None:
    """The largest relative error of any level (forward check, cumulative), or None when not measured.
    A non-finite error (nan, inf) counts as infinitely bad."""
    check = report.check("forward")
    worst: float | None = None
    for row in (check.tables.get("levels") or []) if check is not None else []:
        value = row.get("cumulative_max_rel", row.get("max_rel")) if isinstance(row, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            x = float(value) if math.isfinite(value) else math.inf
            worst = x if worst is None else max(worst, x)
    return worst


def headline(report: Report, fail_on: Severity | str = Severity.WARNING) -> dict[str, float]:
    """Numbers for a metrics logger, keyed "parity/...":

    equivalent (1.0 or 0.0), blocking_findings, explanations (diagnosed deviations, waived ones included),
    checks_failed and, when the forward check measured levels, worst_level_rel_error (greatest relative
    error of any level; float("inf") for a non-finite one).
    """
    severity = fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))
    out = {
        f"{PREFIX}equivalent": 1.0 if report.verdict(severity) == "equivalent" else 0.0,
        f"{PREFIX}blocking_findings": float(len(report.blocking(severity))),
        f"{PREFIX}explanations": float(len(report.explanations)),
        f"{PREFIX}checks_failed": float(sum(1 for c in report.checks if c.status == "failed")),
    }
    worst = worst_level_error(report)
    if worst is not None:
        out[f"{PREFIX}worst_level_rel_error"] = worst
    return out


def mismatch_line(report: Report, fail_on: Severity | str, where: Path | str | None) -> str:
    """One line: the verdict, the most serious blocking explanation (or finding), and where the report is."""
    severity = fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))
    blocking = report.blocking(severity)
    keys = {f.key for f in blocking}
    explanations = sorted((e for e in report.explanations if not e.waived and keys.intersection(e.evidence)),
                          key=lambda e: (-int(e.severity), -len(e.evidence)))
    parts = [f"parity: MISMATCH {report.variant} at or above {severity.label}"]
    if explanations:
        first = explanations[0]
        at = f" at {first.root_level}" if first.root_level else ""
        parts.append(f"{first.id} ({first.severity.label}){at}: {first.title}")
        if len(explanations) > 1:
            parts.append(f"{len(explanations) - 1} more explanation{'s' if len(explanations) > 2 else ''}")
    elif blocking:
        worst = max(blocking, key=lambda f: int(f.severity))
        parts.append(f"{worst.key}: {worst.message}")
    parts.append(f"{len(blocking)} blocking finding{'s' if len(blocking) != 1 else ''}")
    parts.append(f"report: {where}" if where else "no report written")
    return " ".join("; ".join(parts).split())


# ----------------------------------------------------------------------------------------------------------
# A parity gate for any training loop: audit the model you are about to train, stop on a blocking mismatch.
#
#     import percepiano_parity as parity
#
#     model, adapter = build_my_model()                 # the model object itself, and its adapter (or None)
#     report = parity.gate(model, adapter=adapter)      # vs the shipped reference bundle of han-total
#     train(model)                                      # reached only when the audit found no blocking mismatch
#
# `gate` runs the whole `parity check` pipeline with the model object as the replica, through the same adapter
# path as `--replica` (levels, attention maps, mapping, run_level, recipe: see docs/user_replica.md), against a
# reference bundle (`reference=`), a live original (`original=`) or, by default, what `parity check` would use
# ($PERCEPIANO_ORIGINAL, else the shipped bundle of the variant). It writes the report files and returns the
# `Report`; on a blocking mismatch it raises `ParityMismatchError`, whose one-line message names the most serious
# explanation and the report's path (`on_mismatch="warn"` warns and returns instead).
#
# The audit leaves the training run as it was: it works on a CPU copy of the model (the object is never changed,
# wherever it lives), and the random number generators of torch, numpy and Python, torch's thread count and
# grad mode are restored afterwards, so the training run draws the same random numbers as without the gate.

DEFAULT_FORMATS = "md,json,html,junit"
_KEEP = object()  # report_dir not given: the options' (config file, else parity-report/)


class ParityMismatchError(RuntimeError):
    """A gate found a blocking mismatch. `str(error)` is one line (verdict, the most serious explanation, the
    report's path); `.report` is the Report, `.report_path` the written report (None when none was)."""

    def __init__(self, message: str, report: Report, report_path: Path | None) -> None:
        super().__init__(message)
        self.report = report
        self.report_path = report_path


@dataclass
class GateResult:
    """One audit by a gate: the report, the files written, the one-line reason when it blocks (else None)."""

    report: Report
    fail_on: str
    paths: list[Path] = field(default_factory=list)
    mismatch: str | None = None

    @property
    def report_path(self) -> Path | None:
        """report.md when written, else the first file written, else None."""
        for path in self.paths:
            if path.name == "report.md":
                return path
        return self.paths[0] if self.paths else None


@contextlib.contextmanager
def isolated_global_state() -> Iterator[None]:
    """Restore torch's (CPU and CUDA) random state, numpy's and Python's, torch's thread count and grad mode."""
    python_state, numpy_state, threads = random.getstate(), np.random.get_state(), torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_num_threads(threads)


def _model_name(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__} (model object)"


def audit_model(model: torch.nn.Module, adapter: Any = None, reference: str | Path | None = None, *,
                original: str | Path | None = None, report_dir: Any = _KEEP, formats: str = DEFAULT_FORMATS,
                initial_weights: bool = False, recipe: Any = None, name: str | None = None,
                progress: Callable[[str], None] | None = None, use_config_file: bool = True,
                **options: Any) -> GateResult:
    """Audit `model` as the replica and write the report files; never raises on a mismatch (see `gate`).

    model: an nn.Module (a LightningModule too), on any device; audited as a CPU copy (or on `device=`).
    adapter: how to drive it (docs/user_replica.md); None: the default adapter (logits and gradients only).
    reference / original: a reference bundle folder / a checkout of the original; neither: as `parity check`.
    report_dir: where report files go (default: [tool.parity] report-dir, else parity-report/); None: nowhere.
    formats: file formats, comma-separated (md, json, html, junit).
    initial_weights: the model holds the freshly built weights of the audit's seed (compared by the init check).
    recipe: what the recipe check reads (default: the adapter's recipe(model) or model.configure_optimizers).
    name: how reports name the model. progress: called with one line per stage.
    options: any other `parity check` option by name (variant, batches, fail_on, waivers, model_config, ...).
    Raises UsageError (one line) for bad options, a failing adapter or model, an unreadable reference.
    """
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"gate: expected the model to audit (a torch.nn.Module), got {type(model).__name__}")
    for refused in ("replica", "deviation"):
        if options.get(refused) is not None:
            raise UsageError(f"gate: {refused}= does not apply: the model given is the replica")
    if reference is not None:
        options["reference"] = str(reference)
    if original is not None:
        options["original"] = str(original)
    resolved = resolve_options(options, use_config_file=use_config_file)
    resolved.replica = resolved.deviation = None  # a config file's replica is not the model given here
    label = name or _model_name(model)
    with isolated_global_state():
        audited = copy.deepcopy(model).to(resolved.device if resolved.device != "cpu" else "cpu")
        given = GivenModel(audited, adapter, label, recipe=recipe, initial_weights=initial_weights)
        report = run_check(resolved, given=given,
                           progress=(lambda stage, done, total: progress(_stage_line(stage, done, total)))
                           if progress else None,
                           notify=(lambda note: progress(f"note: {note}")) if progress else None)
    paths: list[Path] = []
    target = resolved.report_dir if report_dir is _KEEP else report_dir
    if target is not None:
        from percepiano_parity.reports import parse_formats, write_reports

        try:
            wanted = [f for f in parse_formats(formats) if f != "console"]
        except ValueError as exc:
            raise UsageError(f"gate: formats: {exc}") from None
        try:
            paths = write_reports(report, target, wanted, resolved.severity) if wanted else []
        except OSError as exc:
            raise UsageError(f"gate: cannot write reports to {target}: {exc.strerror or exc}") from None
    result = GateResult(report, resolved.fail_on, paths)
    if int(report.exit_code(resolved.severity, new_only=resolved.fail_on_new)):
        result.mismatch = mismatch_line(report, resolved.severity, result.report_path)
    return result


def _stage_line(stage: str, done: int, total: int) -> str:
    text = STAGE_TEXT.get(stage, stage)
    return f"{text} {done}/{total}" if total and done else text


def gate(model: torch.nn.Module, adapter: Any = None, reference: str | Path | None = None, *,
         on_mismatch: Literal["raise", "warn"] = "raise", **kwargs: Any) -> Report:
    """Audit `model` before training it (see the module docstring and `audit_model` for the arguments).

    Returns the Report. On a blocking mismatch (a finding at or above `fail_on`, default warning, that no
    waiver covers) raises ParityMismatchError with a one-line message and the report's path, or with
    `on_mismatch="warn"` issues a UserWarning with that line and returns the report.
    """
    if on_mismatch not in ("raise", "warn"):
        raise UsageError(f"gate: on_mismatch must be 'raise' or 'warn', not {on_mismatch!r}")
    result = audit_model(model, adapter, reference, **kwargs)
    if result.mismatch is not None:
        if on_mismatch == "raise":
            raise ParityMismatchError(result.mismatch, result.report, result.report_path)
        warnings.warn(result.mismatch, UserWarning, stacklevel=2)
    return result.report
