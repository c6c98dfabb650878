"""The original's data and training functions, for the data-parity and recipe checks.

These live in modules the models do not need (`dataset`, `train_m2pf`), and importing `train_m2pf`
needs stand-ins for tqdm, torch.utils.tensorboard and wandb (through `logger`). So they are imported
lazily, only when asked for, in a window that reuses the already captured model modules (one coherent
original: `train_m2pf`'s `utils` is the same object the models use).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.original_adapter.errors import OriginalLoadError, describe_exception
from percepiano_parity.original_adapter.isolation import Isolated, import_isolated
from percepiano_parity.original_adapter.shims import MODEL_SHIMS, TRAINING_SHIMS

if TYPE_CHECKING:
    from percepiano_parity.original_adapter import Original


class _Loader(list):
    """What get_validation_loss iterates: batches, plus `.dataset` whose len() divides the loss sum."""

    def __init__(self, batches: Iterable[Any], n_samples: int) -> None:
        super().__init__(batches)
        self.dataset = range(n_samples)


class DataOps:
    """Handles on the original's data pipeline, loss and metric code paths."""

    def __init__(self, original: Original) -> None:
        self._original = original

    def _modules(self, names: Sequence[str], training: bool) -> Isolated:
        isolated = self._original.isolated
        missing = [n for n in names if n not in isolated.modules]
        if missing:
            shims = (*MODEL_SHIMS, *TRAINING_SHIMS) if training else MODEL_SHIMS
            isolated = import_isolated(isolated.code_dir, missing, shims, base=isolated)
            self._original.isolated = isolated
        return isolated

    def module(self, name: str, training: bool = False) -> types.ModuleType:
        return self._modules([name], training)[name]

    # -- data ---------------------------------------------------------------------------------------
    @property
    def make_slicing_indexes_by_measure(self) -> Callable[..., list[tuple[int, int]]]:
        """data_process.make_slicing_indexes_by_measure(num_notes, measure_numbers, steps, overlap=True)."""
        return self.module("data_process").make_slicing_indexes_by_measure

    def feature_collate(self) -> Callable[[list[Any]], tuple]:
        """A fresh dataset.FeatureCollate: list of 10-item samples -> the 10-tuple batch."""
        return self.module("dataset").FeatureCollate()

    @staticmethod
    def samples(batch: CanonicalBatch, label_std: Sequence[Sequence[float]] | None = None) -> list[list[Any]]:
        """Samples shaped like ScorePerformDataset's items (int32 locations, list labels). Fields that
        never reach the model or the loss (performance targets, alignment, pedal) are placeholders."""
        out = []
        for i, seg in enumerate(batch.segments):
            t = seg.length
            locations = {key: seg.location(key).to(torch.int32) for key in ("beat", "measure", "section", "voice")}
            std = np.asarray(label_std[i] if label_std is not None else np.zeros(seg.label.shape[0]), dtype=np.float64)
            out.append([seg.features.float(), torch.zeros(t, 1), torch.zeros(t, 1), torch.zeros(t, 1), locations,
                        torch.ones(t), torch.ones(t), None, seg.label.tolist(), std])
        return out

    def collate(self, batch: CanonicalBatch, label_std: Sequence[Sequence[float]] | None = None) -> tuple:
        """The batch through the original's FeatureCollate."""
        return self._call("dataset.FeatureCollate", self.feature_collate(), self.samples(batch, label_std))

    # -- loss and metrics ---------------------------------------------------------------------------
    def batch_loss(self, model: nn.Module, collated: tuple, multi_level: bool, is_valid: bool = False) -> Any:
        """train_m2pf.get_batch_result with MSELoss (the criterion the scripts' flags select): returns
        (sigmoid outputs, loss) or, with is_valid, (sigmoid outputs, loss, targets, label_std)."""
        train_m2pf = self.module("train_m2pf", training=True)
        args = argparse.Namespace(multi_level="x" if multi_level else "", cont_loss=0.0, pc_grad=0)
        return self._call("train_m2pf.get_batch_result", train_m2pf.get_batch_result,
                          model, collated, nn.MSELoss(), "cpu", is_valid=is_valid, args=args)

    def validation(self, model: nn.Module, batches: Sequence[tuple], n_samples: int, multi_level: bool,
                   num_labels: int = 19) -> tuple[float, dict[str, float]]:
        """train_m2pf.get_validation_loss: (sum of batch-mean losses / n_samples, metrics with R2, R2flat,
        MSE, per-label R2/MSE and std scores), computed by the original."""
        train_m2pf = self.module("train_m2pf", training=True)
        args = argparse.Namespace(multi_level="x" if multi_level else "", cont_loss=0.0, pc_grad=0)
        return self._call("train_m2pf.get_validation_loss", train_m2pf.get_validation_loss,
                          model, _Loader(batches, n_samples), nn.MSELoss(), "cpu", num_labels=num_labels, args=args)

    @property
    def r2_score(self) -> Callable[..., float]:
        """The r2_score train_m2pf imported (sklearn.metrics.r2_score)."""
        return self.module("train_m2pf", training=True).r2_score

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        printed = io.StringIO()
        try:
            with self._original.isolated.running(), contextlib.redirect_stdout(printed):
                return fn(*args, **kwargs)
        except Exception as exc:
            raise OriginalLoadError(f"the original's {what} failed: {describe_exception(exc)}") from exc

