"""The parts of a recipe that Lightning keeps outside the model: clipping, precision, accumulation, epochs,
validation and model selection from a `Trainer` (or the keyword arguments one is built with) and its
`ModelCheckpoint` / `EarlyStopping` callbacks; and what a model's `hparams`, attributes or `__init__` defaults
say. Everything is read duck-typed (pytorch-lightning is never imported).

Where the adapter gives `trainer` (a Trainer, a dict of `Trainer(...)` arguments, or a callable of the model
returning either) or `trainer_kwargs` (a dict), Lightning's defaults apply to what it leaves out: no gradient
clipping, "norm" clipping when a value is given, 32-bit precision, no accumulation, 1000 epochs when neither
max_epochs nor max_steps is set, validation every epoch, and a ModelCheckpoint without a monitor (it keeps the
last epoch's weights).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# recipe key -> names a model's hparams / attributes / __init__ arguments commonly use for it
HPARAM_NAMES: dict[str, tuple[str, ...]] = {
    "batch_size": ("batch_size",),
    "epochs": ("max_epochs", "epochs", "num_epochs", "n_epochs"),
    "grad_clip": ("gradient_clip_val", "grad_clip", "clip_grad_norm", "max_grad_norm", "clip_norm"),
    "grad_clip_algorithm": ("gradient_clip_algorithm",),
    "accumulate_grad_batches": ("accumulate_grad_batches", "grad_accum_steps", "gradient_accumulation_steps"),
    "precision": ("precision",),
    "seed": ("seed", "th_seed"),
}

_PRECISION = {"32": "fp32", "32-true": "fp32", "16": "fp16", "16-mixed": "fp16", "bf16": "bf16",
              "bf16-mixed": "bf16", "64": "fp64", "64-true": "fp64", "16-true": "fp16-true",
              "bf16-true": "bf16-true", "transformer-engine": "fp8"}


@dataclass
class Readings:
    """Recipe key -> value and where it was read."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, key: str, value: Any, source: str) -> None:
        if key not in self.values:  # the first reader (the most authoritative) wins
            self.values[key], self.sources[key] = value, source


def precision_of(value: Any) -> str:
    """Lightning's precision names (32, "16-mixed", "bf16-mixed", ...) as the recipe's fp32 / fp16 / bf16."""
    text = str(getattr(value, "value", value)).lower()
    return _PRECISION.get(text, text)


def _trainer_of(adapter: Any, model: Any) -> tuple[Any, str] | None:
    for name in ("trainer", "trainer_kwargs"):
        given = getattr(adapter, name, None)
        if callable(given) and not isinstance(given, Mapping) and not hasattr(given, "gradient_clip_val"):
            given = given(model)
        if given is not None:
            return given, f"adapter.{name}"
    return None


def _get(trainer: Any, name: str, default: Any = None) -> tuple[Any, bool]:
    """(value, given) of a Trainer attribute or argument."""
    if isinstance(trainer, Mapping):
        return (trainer[name], True) if name in trainer else (default, False)
    try:
        return getattr(trainer, name), True
    except Exception:  # noqa: BLE001 - a property of a half-built Trainer may raise
        return default, False


def read_trainer(adapter: Any, model: Any) -> Readings:
    """Clipping, precision, accumulation, epochs, validation and model selection from the adapter's trainer."""
    out = Readings()
    found = _trainer_of(adapter, model)
    if found is None:
        return out
    trainer, where = found

    def put(key: str, name: str, value: Any, given: bool, default_note: str) -> None:
        out.put(key, value, f"{where}: {name}={value!r}" if given else f"{where}: {name} not given ({default_note})")

    clip, given = _get(trainer, "gradient_clip_val")
    put("grad_clip", "gradient_clip_val", None if clip is None else float(clip), given and clip is not None,
        "Lightning does not clip")
    algorithm, a_given = _get(trainer, "gradient_clip_algorithm")
    algorithm = str(getattr(algorithm, "value", algorithm) or "norm").lower()
    put("grad_clip_algorithm", "gradient_clip_algorithm", algorithm, a_given and algorithm != "none",
        "Lightning's default 'norm'")
    accumulate, given = _get(trainer, "accumulate_grad_batches", 1)
    put("accumulate_grad_batches", "accumulate_grad_batches", int(accumulate), given, "Lightning's default 1")
    precision, given = _get(trainer, "precision", "32-true")
    out.put("precision", precision_of(precision),
            f"{where}: precision={precision!r}" if given else f"{where}: precision not given (Lightning's 32-true)")
    epochs, given = _get(trainer, "max_epochs")
    steps, _ = _get(trainer, "max_steps", -1)
    if epochs is None and (steps is None or steps == -1):
        put("epochs", "max_epochs", 1000, False, "Lightning's default 1000 when max_steps is not set either")
    elif epochs is not None:
        put("epochs", "max_epochs", int(epochs), given, "")
    every, given = _get(trainer, "check_val_every_n_epoch", 1)
    out.put("validation", "every_epoch" if every in (1, None) else f"every_{every}_epochs",
            f"{where}: check_val_every_n_epoch={every!r}" if given else
            f"{where}: check_val_every_n_epoch not given (Lightning validates every epoch)")
    _read_callbacks(trainer, where, out)
    return out


def _read_callbacks(trainer: Any, where: str, out: Readings) -> None:
    callbacks, _ = _get(trainer, "callbacks", [])
    callbacks = list(callbacks or [])
    checkpoints = [c for c in callbacks if _has(c, "monitor", "mode") and _has_any(c, "save_top_k", "dirpath")]
    stoppers = [c for c in callbacks if _has(c, "monitor", "mode", "patience")]
    enabled, _ = _get(trainer, "enable_checkpointing", True)
    if checkpoints:
        cb = checkpoints[0]
        monitor, mode = getattr(cb, "monitor", None), str(getattr(cb, "mode", "min"))
        text = f"{where}: {type(cb).__name__}(monitor={monitor!r}, mode={mode!r})"
        out.put("checkpoint_criterion", criterion_of(monitor), text)
        out.put("checkpoint_mode", mode if monitor is not None else "none", text)
        if len(checkpoints) > 1:
            out.notes.append(f"{len(checkpoints)} checkpoint callbacks: the first one is read")
    elif enabled is not False:
        text = f"{where}: no ModelCheckpoint given (Lightning's default one keeps the last epoch)"
        out.put("checkpoint_criterion", "last_epoch", text)
        out.put("checkpoint_mode", "none", text)
    else:
        out.put("checkpoint_criterion", "none", f"{where}: enable_checkpointing=False (no checkpoint is kept)")
        out.put("checkpoint_mode", "none", f"{where}: enable_checkpointing=False")
    if stoppers:
        cb = stoppers[0]
        out.put("early_stopping", f"{cb.monitor} ({cb.mode}, patience {cb.patience})",
                f"{where}: {type(cb).__name__}(monitor={cb.monitor!r}, mode={cb.mode!r}, patience={cb.patience!r})")
    else:
        out.put("early_stopping", "none", f"{where}: no EarlyStopping callback")


def criterion_of(monitor: Any) -> str:
    """A monitored metric's name as the recipe's checkpoint criterion (valid_loss, valid_r2, last_epoch...)."""
    if monitor is None:
        return "last_epoch"
    name = str(monitor).lower()
    validation = name.startswith(("val", "valid"))
    if validation and "loss" in name:
        return "valid_loss"
    if validation and "r2" in name:
        return "valid_r2"
    return str(monitor)


def _has(obj: Any, *names: str) -> bool:
    return all(hasattr(obj, n) for n in names)


def _has_any(obj: Any, *names: str) -> bool:
    return any(hasattr(obj, n) for n in names)


def read_hparams(model: Any) -> Readings:
    """Batch size, epochs, clipping, accumulation, precision and seed from the model's `hparams`, then its
    attributes, then its `__init__` defaults (the first that names a key wins)."""
    out = Readings()
    if model is None:
        return out
    hparams = getattr(model, "hparams", None)
    hparams = dict(hparams) if isinstance(hparams, Mapping) else {}
    try:
        signature = inspect.signature(type(model).__init__).parameters
    except (TypeError, ValueError):
        signature = {}
    cls = type(model).__name__
    for key, names in HPARAM_NAMES.items():
        for name in names:
            if name in hparams:
                out.put(key, _converted(key, hparams[name]), f"hparams.{name}")
            elif name in vars(model) and not callable(vars(model)[name]):
                out.put(key, _converted(key, vars(model)[name]), f"model.{name}")
            elif name in signature and signature[name].default is not inspect.Parameter.empty:
                out.put(key, _converted(key, signature[name].default), f"{cls}.__init__ default {name}")
    return out


def _converted(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "precision":
        return precision_of(value)
    if key in ("batch_size", "epochs", "accumulate_grad_batches", "seed"):
        return int(value)
    if key == "grad_clip":
        return float(value)
    return value
