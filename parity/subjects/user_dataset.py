"""A user's dataset and collate (`--dataset module:function` or `path.py:function`), run on the real segments
of a prepared cache, and what its batches hand the model, read back per segment.

    def make(request: DatasetRequest):
        dataset = MyDataset([request.record(k) for k in my_split_of(request.all_keys())])
        return dataset, my_collate          # dataset.keys[i] names item i; my_collate(list of items) -> batch

`request.record(key)` is one performance as the original's training pickles hold it (what
`save_features_for_virtuosoNet` wrote and dataset.py `ScorePerformDataset` reads): `input` (T, W) float64,
`note_location` {beat, measure, voice, section: T ints}, `labels` (the label file's 19 values), `label_std`.
A batch may be the original's FeatureCollate 10-tuple (dataset.py:221-252: packed x first, note locations 5th,
labels 9th), a mapping or an object with `x` (a PackedSequence, or a padded (N, T, F) tensor, with optional
`lengths`), `note_locations` ({name: (N, T)}) and `labels` (N, L).

`--dataset original` is the original's own path: items as `ScorePerformDataset.data_to_formatted_tensor` makes
them with --no_augment (dataset.py:84-130) and the original's own FeatureCollate, run live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.folds import parse_split
from percepiano_parity.batches.real.loader import RealData
from percepiano_parity.core.errors import UsageError
from percepiano_parity.subjects.factory import load_factory

OPTION = "--dataset"
BUILTIN_ORIGINAL = "original"
LOCATIONS = ("beat", "measure", "voice", "section")


@dataclass
class DatasetRequest:
    """What the user's factory gets: the split the audit compares, and every performance of the cache."""

    split: str  # "performer4fold:0:train"
    data: RealData
    num_label: int = 19
    label_set: str = cache_files.DEFAULT_LABEL_SET
    key_list: str | None = None
    original_collate: Callable[[list[Any]], Any] | None = None  # the original's FeatureCollate, when live

    @property
    def scheme(self) -> str:
        return parse_split(self.split)[0]

    @property
    def fold(self) -> int:
        return parse_split(self.split)[1]

    @property
    def part(self) -> str:
        return parse_split(self.split)[2]

    def keys(self, split: str | None = None) -> list[str]:
        """The original's performances of a split (default: the audited one), in its dataset order."""
        return self.data.keys(split or self.split, self.label_set)

    def all_keys(self) -> list[str]:
        """Every prepared performance with labels."""
        return [k for k, r in sorted(self.data.manifest["segments"].items()) if self.label_set in r.get("labels", ())]

    def record(self, key: str) -> dict[str, Any]:
        """One performance as the original's pickles hold it (see the module docstring)."""
        tensors, metadata = cache_files.read_tensors(cache_files.segment_path(self.data.path, key))
        name = self.data.key_list(self.key_list)["name"]
        return {"key": key, "input": np.asarray(tensors[f"input/{name}"]),
                "note_location": {n: tensors[f"location/{n}"].tolist() for n in LOCATIONS},
                "labels": tensors[f"label/{self.label_set}"].tolist(),
                "label_std": tensors[f"label_std/{self.label_set}"].tolist()
                if f"label_std/{self.label_set}" in tensors else None,
                "folds": metadata.get("folds", {})}


@dataclass
class Delivered:
    """One collated batch, per item as the model receives it: `features[i]` (L_i, F) float32, `locations[name][i]`
    (L_i,) int64 (L_i = the rows the model sees: the packed length, `lengths[i]`, or the padded width),
    `labels` (N, L)."""

    keys: list[str]
    features: list[torch.Tensor]
    locations: dict[str, list[torch.Tensor]]
    labels: torch.Tensor


class OriginalItems:
    """The original's items (ScorePerformDataset.data_to_formatted_tensor, --no_augment, one slice per segment)."""

    def __init__(self, request: DatasetRequest, keys: Sequence[str]) -> None:
        self.request, self.keys = request, list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> list[Any]:
        record = self.request.record(self.keys[index])
        t = len(record["input"])
        locations = {n: torch.Tensor(record["note_location"][n]).type(torch.int32) for n in LOCATIONS}
        std = np.asarray(record["label_std"] or [0.0] * self.request.num_label)[: self.request.num_label]
        return [torch.Tensor(record["input"]), torch.zeros(t, 1), torch.zeros(t, 1), torch.zeros(t, 1), locations,
                torch.ones(t), torch.ones(t), None, record["labels"][: self.request.num_label], std]


def original_loader(request: DatasetRequest) -> tuple[OriginalItems, Callable[[list[Any]], Any]]:
    """`--dataset original`: the original's items of the audited split and its own FeatureCollate."""
    if request.original_collate is None:
        raise UsageError(f"{OPTION} original needs a live original (--original PATH)")
    return OriginalItems(request, request.keys()), request.original_collate


def load_dataset(spec: str, request: DatasetRequest) -> tuple[Any, Callable[[list[Any]], Any], list[str]]:
    """(dataset, collate, keys) from the user's factory; UsageError (one line) when it fails or lacks keys."""
    factory = original_loader if spec == BUILTIN_ORIGINAL else load_factory(spec, OPTION)
    try:
        made = factory(request)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise UsageError(f"{OPTION} {spec} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:400]) from exc
    dataset, collate = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if collate is None:
        from torch.utils.data import default_collate

        collate = default_collate
    keys = getattr(dataset, "keys", None)
    if callable(keys):
        keys = keys()
    if keys is None or isinstance(keys, (str, bytes)) or len(list(keys)) != len(dataset):
        raise UsageError(f"{OPTION} {spec}: the dataset needs a `keys` list naming the performance of each item "
                         f"(got {type(keys).__name__} for {len(dataset)} items)")
    return dataset, collate, [str(k) for k in keys]


def _field(batch: Any, *names: str) -> Any:
    for name in names:
        if isinstance(batch, Mapping) and name in batch:
            return batch[name]
        if not isinstance(batch, Mapping) and hasattr(batch, name):
            return getattr(batch, name)
    return None


def read_batch(batch: Any, keys: list[str], spec: str) -> Delivered:
    """Per-item view of a collated batch (see the module docstring); UsageError for a format it cannot read."""
    if isinstance(batch, (tuple, list)) and len(batch) == 10:  # the original's FeatureCollate layout
        x, locations, labels, lengths = batch[0], batch[4], batch[8], None
    else:
        x = _field(batch, "x", "features", "inputs", "input")
        locations = _field(batch, "note_locations", "note_location", "locations")
        labels = _field(batch, "labels", "label", "y")
        lengths = _field(batch, "lengths", "length")
    if x is None or locations is None or labels is None:
        raise UsageError(f"{OPTION} {spec}: cannot read its batch ({type(batch).__name__}); the collate must return "
                         "the original's 10-tuple or x, note_locations and labels (docs/cli.md)")
    if isinstance(x, PackedSequence):
        padded, packed_lengths = pad_packed_sequence(x, batch_first=True)
        rows = [int(n) for n in packed_lengths]
    else:
        padded = torch.as_tensor(x)
        if padded.dim() != 3:
            raise UsageError(f"{OPTION} {spec}: its batch x has shape {tuple(padded.shape)}; expected (N, T, F)")
        rows = [int(n) for n in torch.as_tensor(lengths).tolist()] if lengths is not None else \
            [padded.shape[1]] * padded.shape[0]
    if padded.shape[0] != len(keys):
        raise UsageError(f"{OPTION} {spec}: a batch of {len(keys)} items came back with {padded.shape[0]} rows")
    features = [padded[i, :n].float() for i, n in enumerate(rows)]
    out_loc: dict[str, list[torch.Tensor]] = {}
    for name in LOCATIONS:
        if name not in locations:
            raise UsageError(f"{OPTION} {spec}: its batch has no {name!r} note locations")
        table = torch.as_tensor(locations[name])
        out_loc[name] = [table[i, :n].long() for i, n in enumerate(rows)]
    return Delivered(list(keys), features, out_loc, torch.as_tensor(labels).float())


def run_batches(dataset: Any, collate: Callable[[list[Any]], Any], keys: list[str], order: Sequence[Sequence[str]],
                spec: str) -> list[Delivered]:
    """The user's items of each key group (the original's batch composition), collated and read back."""
    index = {k: i for i, k in enumerate(keys)}
    out = []
    for group in order:
        present = [k for k in group if k in index]
        if not present:
            continue
        try:
            batch = collate([dataset[index[k]] for k in present])
        except Exception as exc:  # noqa: BLE001 - the user's code
            raise UsageError(f"{OPTION} {spec}: its dataset or collate failed: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}"[:400]) from exc
        out.append(read_batch(batch, present, spec))
    return out
