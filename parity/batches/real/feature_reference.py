"""The original's input features of real segments, read from a prepared cache: the reference side of
`parity check-features`.

What the cache holds was written by the original's own code (`parity data prepare`): the matrix of one key list
per segment as its FeatureConverter wrote it (`pyScoreParser/data_for_training.py` class FeatureConverter,
`__call__`), the converter's `key_to_dim['input']`, and the normalisation statistics of
`PairDataset.update_mean_stds_of_entire_dataset` (data_for_training.py:197, `cal_mean_stds` at :349). From them
this module derives, per segment, the unnormalised value of every column (`raw`: the z-scored keys mapped back
with the original's own mean and std, every other column as written) and which rows are the unaligned
performance notes the original inserted (`ScorePerformPairData.insert_unaligned_midi_features`,
data_for_training.py:107-128: voice 0, the neighbour's beat/measure/section).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.loader import RealData

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
