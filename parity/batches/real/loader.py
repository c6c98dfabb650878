"""Batches of real segments from a prepared cache, composed the way the original's loader composes them,
and the original's input features of those segments as the reference side of the feature check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from percepiano_parity.batches.canonical import CanonicalBatch, Segment
from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.splits import parse_split

# ----------------------------------------------------------------------------------------------------------
# Batches of real segments from a prepared cache, composed the way the original's loader composes them.
#
# The original (`train_m2pf.py:70-106`, `dataset.py` ScorePerformDataset) reads one split folder of one fold, keeps
# the performances whose key is in the label file, and batches them by 8: the train loader shuffles
# (`DataLoader(shuffle=True)`: a RandomSampler, i.e. `torch.randperm(n, generator)`), the valid and test loaders
# keep the dataset order. Each item is `torch.Tensor(input)` (float32) of the whole segment (one slice: every
# segment is far below `len_slice` 5000), note locations through `torch.Tensor(...).type(torch.int32)` and the
# first 19 labels; with `--no_augment` (every published script) nothing else changes.
#
# Two choices the original leaves open are fixed here and recorded: the dataset order is sorted by key (the
# original's `Path.rglob` order depends on the file system), and the RandomSampler's generator is seeded with the
# check's seed (the original draws that seed from the global torch RNG).

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


# ----------------------------------------------------------------------------------------------------------
# The original's input features of real segments, read from a prepared cache: the reference side of
# `parity check-features`.
#
# What the cache holds was written by the original's own code (`parity data prepare`): the matrix of one key list
# per segment as its FeatureConverter wrote it (`pyScoreParser/data_for_training.py` class FeatureConverter,
# `__call__`), the converter's `key_to_dim['input']`, and the normalisation statistics of
# `PairDataset.update_mean_stds_of_entire_dataset` (data_for_training.py:197, `cal_mean_stds` at :349). From them
# this module derives, per segment, the unnormalised value of every column (`raw`: the z-scored keys mapped back
# with the original's own mean and std, every other column as written) and which rows are the unaligned
# performance notes the original inserted (`ScorePerformPairData.insert_unaligned_midi_features`,
# data_for_training.py:107-128: voice 0, the neighbour's beat/measure/section).

KeyToDim = dict[str, tuple[int, int]]


def sorted_layout(key_to_dim: dict[str, Any]) -> KeyToDim:
    """{key: (start, end)} in column order; ValueError (one line) for blocks that are not [start, end) pairs."""
    out: KeyToDim = {}
    for key, span in key_to_dim.items():
        try:
            start, end = (int(v) for v in span)
        except (TypeError, ValueError):
            raise ValueError(f"key_to_dim[{key!r}] = {span!r} is not a (start, end) pair") from None
        if not 0 <= start < end:
            raise ValueError(f"key_to_dim[{key!r}] = ({start}, {end}) is not a non-empty [start, end) block")
        out[str(key)] = (start, end)
    return dict(sorted(out.items(), key=lambda item: item[1]))


@dataclass
class OriginalFeatures:
    """The reference side: one key list's layout, statistics and matrices of a few real segments.

    `inputs[key]` (T, W) float64 as the original wrote it; `raw[key]` (T, W) the same columns unnormalised;
    `unaligned[key]` (T,) bool, True for the inserted unaligned performance notes (voice 0);
    `locations[key][name]` (T,) int64 for beat, measure, voice, section.
    """

    key_list: str
    key_to_dim: KeyToDim
    stats: dict[str, dict[str, float]]  # the z-scored keys of this list: {key: {"mean", "stds"}}
    source: str  # where the key list was read in the original
    revision: str
    segments: list[str]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    unaligned: dict[str, np.ndarray] = field(default_factory=dict)
    locations: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return max(end for _, end in self.key_to_dim.values())


def choose_segments(data: RealData, count: int, only: tuple[str, ...] = (),
                    label_set: str = cache_files.DEFAULT_LABEL_SET) -> list[str]:
    """`only` (checked to be prepared) or the first `count` labelled segments in sorted key order, preferring
    segments with unaligned notes for half of them (those are where extractors part most often)."""
    prepared = data.manifest["segments"]
    if only:
        missing = [k for k in only if k not in prepared]
        if missing:
            raise cache_files.CacheError(f"not prepared in {data.path}: {', '.join(missing)}")
        return list(dict.fromkeys(only))
    labelled = [k for k, r in sorted(prepared.items()) if label_set in r.get("labels", ())]
    with_unaligned = [k for k in labelled if int(prepared[k].get("inserted") or 0) > 0]
    chosen = with_unaligned[: count // 2]
    chosen += [k for k in labelled if k not in chosen][: count - len(chosen)]
    return sorted(chosen)


def labelled_keys(data: RealData, label_set: str = cache_files.DEFAULT_LABEL_SET) -> list[str]:
    """Every prepared performance with labels in `label_set`: the PairDataset the original normalises over."""
    return [k for k, r in sorted(data.manifest["segments"].items()) if label_set in r.get("labels", ())]


def read_original_features(data: RealData, segments: list[str], key_list: str | None = None) -> OriginalFeatures:
    """The original's matrices of `segments` for one key list of the cache (default: the cache's default list,
    the published splits' 101 columns). Raises cache.CacheError (one line) for a damaged cache."""
    entry = data.key_list(key_list)
    layout = sorted_layout(entry["key_to_dim"])
    all_stats = data.manifest.get("normalisation", {}).get("stats", {})
    stats = {k: {"mean": float(v["mean"]), "stds": float(v["stds"])} for k, v in all_stats.items() if k in layout}
    revision = str(data.manifest.get("original", {}).get("revision", ""))
    out = OriginalFeatures(key_list=entry["name"], key_to_dim=layout, stats=stats, source=str(entry.get("source", "")),
                           revision=revision, segments=list(segments))
    for key in segments:
        tensors, _ = cache_files.read_tensors(cache_files.segment_path(data.path, key))
        matrix = np.asarray(tensors[f"input/{entry['name']}"], dtype=np.float64)
        raw = matrix.copy()
        for name, st in stats.items():
            start, end = layout[name]
            raw[:, start:end] = matrix[:, start:end] * st["stds"] + st["mean"]
        out.inputs[key] = matrix
        out.raw[key] = raw
        out.locations[key] = {name: np.asarray(tensors[f"location/{name}"], dtype=np.int64)
                              for name in cache_files.LOCATION_KEYS}
        out.unaligned[key] = out.locations[key]["voice"] == 0
    return out


def data_dir_of(data: RealData) -> Path | None:
    """The raw data folder the cache was prepared from, when it is still there."""
    recorded = data.manifest.get("data", {}).get("dir")
    if not recorded:
        return None
    path = Path(recorded).expanduser()
    return path if path.is_dir() else None
