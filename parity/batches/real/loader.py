"""Batches of real segments from a prepared cache, composed the way the original's loader composes them.

The original (`train_m2pf.py:70-106`, `dataset.py` ScorePerformDataset) reads one split folder of one fold, keeps
the performances whose key is in the label file, and batches them by 8: the train loader shuffles
(`DataLoader(shuffle=True)`: a RandomSampler, i.e. `torch.randperm(n, generator)`), the valid and test loaders
keep the dataset order. Each item is `torch.Tensor(input)` (float32) of the whole segment (one slice: every
segment is far below `len_slice` 5000), note locations through `torch.Tensor(...).type(torch.int32)` and the
first 19 labels; with `--no_augment` (every published script) nothing else changes.

Two choices the original leaves open are fixed here and recorded: the dataset order is sorted by key (the
original's `Path.rglob` order depends on the file system), and the RandomSampler's generator is seeded with the
check's seed (the original draws that seed from the global torch RNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.folds import parse_split
from percepiano_parity.replica.batch import CanonicalBatch, Segment

DEFAULT_SPLIT = "performer4fold:0:train"
BATCH_SIZE = 8  # every published script: --batch_size 8


def _location(values: np.ndarray) -> torch.Tensor:
    """As dataset.py: torch.Tensor(list).type(torch.int32), then the collate's .long()."""
    return torch.tensor(values.tolist(), dtype=torch.float32).to(torch.int32).long()


@dataclass
class RealData:
    """A prepared cache opened for reading."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, cache: str | Path) -> RealData:
        """Raises cache.CacheError (one line) when the folder is not a readable prepared cache."""
        path = Path(cache).expanduser()
        manifest = cache_files.read_manifest(path)
        if not manifest.get("segments"):
            raise cache_files.CacheError(f"{path}: the cache holds no prepared segment")
        return cls(path, manifest)

    def key_list(self, name: str | None = None) -> dict[str, Any]:
        name = name or self.manifest.get("default_key_list", cache_files.DEFAULT_KEY_LIST)
        lists = self.manifest.get("key_lists", {})
        if name not in lists:
            raise cache_files.CacheError(f"key list {name!r} is not in the cache (it has {', '.join(lists)})")
        return dict(lists[name], name=name)

    def input_width(self, key_list: str | None = None) -> int:
        return int(self.key_list(key_list)["width"])

    def keys(self, split: str = DEFAULT_SPLIT, label_set: str = cache_files.DEFAULT_LABEL_SET) -> list[str]:
        """Prepared keys of one split of one fold that have labels in `label_set`, in dataset (sorted) order."""
        scheme, fold, part = parse_split(split)
        out = []
        for key, record in sorted(self.manifest["segments"].items()):
            row = (record.get("folds") or {}).get(scheme)
            if row is not None and row[fold] == part and label_set in record.get("labels", ()):
                out.append(key)
        return out

    def segment(self, key: str, key_list: str | None = None, label_set: str = cache_files.DEFAULT_LABEL_SET,
                num_label: int = 19) -> Segment:
        tensors, _ = cache_files.read_tensors(cache_files.segment_path(self.path, key))
        name = self.key_list(key_list)["name"]
        label = tensors.get(f"label/{label_set}")
        if label is None:
            raise cache_files.CacheError(f"segment {key} has no label in the {label_set!r} label file")
        return Segment(
            name=key,
            features=torch.tensor(tensors[f"input/{name}"], dtype=torch.float32),
            beat=_location(tensors["location/beat"]),
            measure=_location(tensors["location/measure"]),
            voice=_location(tensors["location/voice"]),
            section=_location(tensors["location/section"]),
            label=torch.tensor(label[:num_label].tolist(), dtype=torch.float32),
        )

    def order(self, n: int, seed: int, shuffle: bool) -> list[int]:
        """Item order of one epoch: RandomSampler's randperm for the train loader, else the dataset order."""
        if not shuffle:
            return list(range(n))
        generator = torch.Generator()
        generator.manual_seed(seed)
        return torch.randperm(n, generator=generator).tolist()

    def batches(self, n_batches: int, seed: int, split: str = DEFAULT_SPLIT, key_list: str | None = None,
                label_set: str = cache_files.DEFAULT_LABEL_SET, num_label: int = 19,
                batch_size: int = BATCH_SIZE) -> list[CanonicalBatch]:
        """The first `n_batches` batches of one epoch of the split's loader (fewer when the split is smaller)."""
        keys = self.keys(split, label_set)
        if not keys:
            raise cache_files.CacheError(f"split {split} has no prepared segment with {label_set!r} labels")
        order = self.order(len(keys), seed, shuffle=split.endswith(":train"))
        out = []
        for start in range(0, min(len(order), n_batches * batch_size), batch_size):
            chosen = [keys[i] for i in order[start:start + batch_size]]
            segments = tuple(self.segment(k, key_list, label_set, num_label) for k in chosen)
            out.append(CanonicalBatch(segments=segments, tags=("normal", f"real:{split}")))
        return out


def describe_batches(batches: Sequence[CanonicalBatch]) -> list[dict[str, Any]]:
    """Names and lengths of real batches, for reports."""
    return [{"names": [s.name for s in b.segments], "lengths": b.lengths} for b in batches]
