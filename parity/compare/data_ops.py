"""The data operations' outputs on generated cases, on either side: measure-aligned slicing, collate, loss and R2,
the original's (through original_adapter) or the replica's, and the recorded reference of the original's.

"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from percepiano_parity.batches import data_cases as gen
from percepiano_parity.batches.canonical import collate
from percepiano_parity.replica.recipe import Recipe, loss_fn, r2
from percepiano_parity.replica.slicing import make_slices_by_measure

REFERENCE_FILE = "data_ops_reference.json"


PREFIX = 100  # the recorded reference also fingerprints the first PREFIX cases of each family (quick checks)
DEFAULT_COUNTS = {"slicing": 1000, "collate": 1000, "loss": 1000, "validation": 200}


def _call_slicing(fn: Callable[..., Any], case: gen.SlicingCase) -> list[Any]:
    random.seed(case.random_seed)
    before = random.getstate()
    try:
        out = fn(case.num_notes, list(case.measures), case.slice_length, overlap=case.overlap)
        result: list[Any] = [int(v) for sl in out for v in sl]
    except Exception as exc:  # the exception type is part of the semantics
        result = [type(exc).__name__]
    return [int(random.getstate() != before), *result]


def slicing_outputs(fn: Callable[..., Any], count: int, seed: int = gen.DEFAULT_SEED) -> list[list[Any]]:
    state = random.getstate()
    try:
        return [_call_slicing(fn, c) for c in gen.slicing_cases(count, seed)]
    finally:
        random.setstate(state)


def _collate_digest(x: Any, locations: dict[str, torch.Tensor], labels: torch.Tensor) -> str:
    xd = gen.tensor_digest(x.data, x.batch_sizes, x.sorted_indices, x.unsorted_indices)[:10]
    ld = gen.tensor_digest(*(locations[k] for k in sorted(locations)))[:10]
    return f"{xd}|{ld}|{gen.tensor_digest(labels)[:10]}"


def collate_outputs(collate_fn: Callable[[Any], tuple[Any, dict[str, torch.Tensor], torch.Tensor]], count: int,
                    seed: int = gen.DEFAULT_SEED) -> list[str]:
    """`collate_fn(batch) -> (packed x, note locations, labels)` digested per case."""
    return [_collate_digest(*collate_fn(gen.collate_case(seed, k))) for k in range(count)]


def _sigmoid_np(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits).detach().cpu().numpy()


def _float(v: Any) -> float:
    return float(f"{float(v):.12g}")


@dataclass
class MetricSide:
    """How one side computes the batch loss, the validation loss and R2 for a case."""

    batch_loss: Callable[[torch.Tensor, torch.Tensor, bool], float]  # (logits, labels, multi_level)
    validation: Callable[[gen.MetricCase, bool], tuple[float, float]]  # -> (valid loss, R2)
    r2: Callable[[np.ndarray, np.ndarray], float]


def metric_outputs(side: MetricSide, counts: dict[str, int], seed: int = gen.DEFAULT_SEED,
                   branches: Sequence[bool] = (True, False)) -> dict[str, Any]:
    out: dict[str, Any] = {"loss": {}, "r2": [], "validation": []}
    loss_cases = [gen.metric_case(seed, k, gen.LOSS) for k in range(counts["loss"])]
    for ml in branches:
        out["loss"]["multi_level" if ml else "single"] = [
            _float(side.batch_loss(c.logits[0], c.labels[0], ml)) for c in loss_cases]
    out["r2"] = [_float(side.r2(c.labels[0].numpy(), _sigmoid_np(c.logits[0]))) for c in loss_cases]
    for k in range(counts["validation"]):
        case = gen.metric_case(seed, k, gen.VALIDATION)
        loss, r2_value = side.validation(case, True)
        out["validation"].append([_float(loss), _float(r2_value)])
    return out


def replica_metric_side(recipe: Recipe) -> MetricSide:
    def batch_loss(logits: torch.Tensor, labels: torch.Tensor, _ml: bool) -> float:
        return float(loss_fn(recipe, logits, labels))

    def validation(case: gen.MetricCase, _ml: bool) -> tuple[float, float]:
        total = sum(float(loss_fn(recipe, lg, lb)) for lg, lb in zip(case.logits, case.labels, strict=True))
        y_true = np.vstack([lb.numpy() for lb in case.labels])
        y_pred = np.vstack([_sigmoid_np(lg) for lg in case.logits])
        return total / case.n_samples, r2(recipe, y_true, y_pred)

    return MetricSide(batch_loss, validation, lambda t, p: r2(recipe, t, p))


class _FixedLogits(nn.Module):
    """Stands in for a model in the original's loss path: returns the given logits, batch after batch."""

    def __init__(self, logits: Sequence[torch.Tensor], multi_level: bool) -> None:
        super().__init__()
        self._queue = list(logits)
        self._multi_level = multi_level

    def forward(self, *_args: Any) -> Any:
        logits = self._queue.pop(0)
        return (logits,) if self._multi_level else logits


def original_metric_side(original: Any) -> MetricSide:
    ops = original.data_ops

    def batch_loss(logits: torch.Tensor, labels: torch.Tensor, ml: bool) -> float:
        collated = ops.collate(gen.tiny_batch(labels))
        _, loss = ops.batch_loss(_FixedLogits([logits], ml), collated, multi_level=ml)
        return float(loss)

    def validation(case: gen.MetricCase, ml: bool) -> tuple[float, float]:
        batches = [ops.collate(gen.tiny_batch(lb)) for lb in case.labels]
        with contextlib.redirect_stdout(io.StringIO()):
            loss, metrics = ops.validation(_FixedLogits(case.logits, ml), batches, case.n_samples, multi_level=ml,
                                           num_labels=int(case.labels[0].shape[1]))
        return float(loss), float(metrics["R2"])

    def r2_original(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(ops.r2_score(y_true, y_pred))

    return MetricSide(batch_loss, validation, r2_original)


def original_collate(original: Any) -> Callable[[Any], tuple[Any, dict[str, torch.Tensor], torch.Tensor]]:
    def run(batch: Any) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor]:
        out = original.data_ops.collate(batch)
        return out[0], out[4], out[8]

    return run


def replica_collate(batch: Any) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor]:
    inp = collate(batch)
    return inp.x, inp.note_locations, inp.labels


def original_outputs(original: Any, counts: dict[str, int] | None = None, seed: int = gen.DEFAULT_SEED
                     ) -> dict[str, Any]:
    """The original's outputs on the generated cases (what `record_data_ops` stores)."""
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    out: dict[str, Any] = {
        "slicing": slicing_outputs(original.data_ops.make_slicing_indexes_by_measure, counts["slicing"], seed),
        "collate": collate_outputs(original_collate(original), counts["collate"], seed),
    }
    out.update(metric_outputs(original_metric_side(original), counts, seed))
    return out


def replica_outputs(recipe: Recipe, counts: dict[str, int] | None = None, seed: int = gen.DEFAULT_SEED
                    ) -> dict[str, Any]:
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    out: dict[str, Any] = {
        "slicing": slicing_outputs(make_slices_by_measure, counts["slicing"], seed),
        "collate": collate_outputs(replica_collate, counts["collate"], seed),
    }
    out.update(metric_outputs(replica_metric_side(recipe), counts, seed, branches=(True,)))
    out["loss"]["single"] = out["loss"]["multi_level"]  # the replica has one loss for every variant
    return out


def inputs_digests(counts: dict[str, int], seed: int = gen.DEFAULT_SEED) -> dict[str, str]:
    return {
        "slicing": gen.inputs_digest(gen.slicing_cases(counts["slicing"], seed)),
        "collate": gen.inputs_digest([gen.collate_case(seed, k) for k in range(counts["collate"])]),
        "loss": gen.inputs_digest([gen.metric_case(seed, k, gen.LOSS) for k in range(counts["loss"])]),
        "validation": gen.inputs_digest([gen.metric_case(seed, k, gen.VALIDATION)
                                         for k in range(counts["validation"])]),
    }


def load_reference(path: str | Path | None = None) -> dict[str, Any] | None:
    try:
        if path is not None:
            return json.loads(Path(path).read_text())
        resource = importlib.resources.files("percepiano_parity") / "data" / REFERENCE_FILE
        return json.loads(resource.read_text())
    except (OSError, ValueError):
        return None
