"""A user's data side: its feature extraction (`--extractor`) and its dataset and collate (`--dataset`),
called on the real performances, and the original's own items and FeatureCollate beside them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.cache import decode_features
from percepiano_parity.batches.real.loader import KeyToDim, RealData, sorted_layout
from percepiano_parity.batches.real.splits import parse_split
from percepiano_parity.core.errors import UsageError
from percepiano_parity.subjects.user_subject import load_factory

# ----------------------------------------------------------------------------------------------------------
# A user's feature extraction (`--extractor module:function` or `path.py:function`), called on real
# performances of a prepared cache, and what it returned, validated.
#
#     def extract(request: FeatureRequest) -> dict:
#         return {
#             "key_to_dim": {"duration": (0, 1), ...},          # required: its input layout, [start, end) columns
#             "inputs": {perf.key: matrix for perf in request.performances},   # required: (T, W) per performance
#             "stats": {"duration": {"mean": 0.57, "std": 0.58}, ...},         # optional: the keys it z-scores
#         }
#
# The request offers, per performance, the files the original read (performance MIDI, MusicXML excerpt, the
# correspondence `*_infer_corresp.txt`) and, for an extractor that re-implements only the conversion stage, the
# original's own unnormalised pair features (`pair_features()`: `ScorePerformPairData.features`,
# pyScoreParser/data_for_training.py:44-67, the unaligned notes already inserted). `dataset` lists every labelled
# performance of the cache: the original normalises over all of them (data_for_training.py:197), so an extractor
# computes its statistics over `dataset` and returns matrices for `performances` only.

EXTRACTOR_OPTION = "--extractor"


@dataclass(frozen=True)
class Performance:
    """One real performance: its files and the original's pair features."""

    key: str  # the label key, e.g. "Schubert_D960_mv3_8bars_0_08"
    performance_midi: Path | None  # None when the raw data folder is gone
    score_xml: Path | None
    corresp: Path  # the correspondence the original read: columns as Nakamura's *_infer_corresp.txt
    cache: Path

    def pair_features(self, only: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The original's unnormalised ScorePerformPairData.features of this performance, as Python lists and
        numbers (per-note lists of length T, globals, `note_location`); `only` limits the keys read."""
        tensors, metadata = cache_files.read_tensors(cache_files.raw_path(self.cache, self.key))
        return decode_features(tensors, metadata["kinds"], only)


@dataclass(frozen=True)
class FeatureRequest:
    """What the extractor is asked: matrices for `performances`, statistics over `dataset`."""

    performances: tuple[Performance, ...]
    dataset: tuple[Performance, ...]
    original_key_list: tuple[str, ...]  # the original's input keys of the compared list, without `_unnorm`


@dataclass
class ExtractedFeatures:
    """The extractor's answer, validated: layout in column order, (T, W) float64 matrices, optional stats."""

    key_to_dim: KeyToDim
    inputs: dict[str, np.ndarray]
    stats: dict[str, dict[str, float]] | None  # {key: {"mean", "stds"}} or None when not declared
    spec: str

    @property
    def width(self) -> int:
        return max(end for _, end in self.key_to_dim.values())


def load_extractor(spec: str) -> Callable[..., Any]:
    """The callable named by SPEC; UsageError (one line) when it cannot be imported."""
    return load_factory(spec, EXTRACTOR_OPTION)


def run_extractor(spec: str, request: FeatureRequest, extractor: Callable[..., Any] | None = None
                  ) -> ExtractedFeatures:
    """Call the extractor (loaded from `spec` unless given) and validate its answer. Raises UsageError with one
    line when it fails or returns something else than the documented mapping."""
    func = extractor if extractor is not None else load_extractor(spec)
    try:
        takes_argument = bool(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        takes_argument = True
    try:
        made = func(request) if takes_argument else func()
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is theirs, reported in one line
        text = " ".join(str(exc).split())
        raise UsageError(f"{EXTRACTOR_OPTION} {spec} failed: {type(exc).__name__}: {text}"[:400]) from exc
    return validate(made, request, spec)


def validate(made: Any, request: FeatureRequest, spec: str) -> ExtractedFeatures:
    """ExtractedFeatures from the extractor's mapping, or UsageError naming what is wrong."""
    where = f"{EXTRACTOR_OPTION} {spec}"
    if not isinstance(made, Mapping) or "key_to_dim" not in made or "inputs" not in made:
        raise UsageError(f"{where} returned {type(made).__name__}; expected a mapping with 'key_to_dim' and "
                         "'inputs' (see docs/cli.md, parity check-features)")
    try:
        layout = sorted_layout(dict(made["key_to_dim"]))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    if not layout:
        raise UsageError(f"{where}: key_to_dim is empty")
    width = max(end for _, end in layout.values())
    inputs: dict[str, np.ndarray] = {}
    given = made["inputs"]
    if not isinstance(given, Mapping):
        raise UsageError(f"{where}: 'inputs' must map a performance key to a (notes, columns) matrix")
    for perf in request.performances:
        if perf.key not in given:
            raise UsageError(f"{where}: no matrix for performance {perf.key}")
        try:
            matrix = np.asarray(given[perf.key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{where}: the matrix of {perf.key} is not numeric ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise UsageError(f"{where}: the matrix of {perf.key} has shape {tuple(matrix.shape)}; its key_to_dim "
                             f"says {width} columns")
        inputs[perf.key] = matrix
    return ExtractedFeatures(layout, inputs, _stats(made.get("stats"), where), spec)


def _stats(raw: Any, where: str) -> dict[str, dict[str, float]] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: 'stats' must map a key to {{'mean': m, 'std': s}}")
    out = {}
    for key, value in raw.items():
        try:
            std = value["stds"] if "stds" in value else value["std"]
            out[str(key)] = {"mean": float(value["mean"]), "stds": float(std)}
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{where}: stats[{key!r}] is not {{'mean': m, 'std': s}}") from None
    return out


def make_request(cache: Path, manifest: Mapping[str, Any], performances: list[str], dataset: list[str],
                 data_dir: Path | None, original_key_list: tuple[str, ...]) -> FeatureRequest:
    """The request for these performance keys of a prepared cache."""
    def one(key: str) -> Performance:
        record = manifest["segments"][key]
        midi = xml = None
        if data_dir is not None:
            midi = data_dir / "performances" / str(record.get("file", f"{key}.mid"))
            xml = data_dir / "scores" / "score_xml" / f"{record.get('score', '')}.musicxml"
        return Performance(key=key, performance_midi=midi if midi and midi.is_file() else None,
                           score_xml=xml if xml and xml.is_file() else None,
                           corresp=cache_files.corresp_path(cache, key), cache=cache)
    return FeatureRequest(tuple(one(k) for k in performances), tuple(one(k) for k in dataset), original_key_list)


# ----------------------------------------------------------------------------------------------------------
# A user's dataset and collate (`--dataset module:function` or `path.py:function`), run on the real segments
# of a prepared cache, and what its batches hand the model, read back per segment.
#
#     def make(request: DatasetRequest):
#         dataset = MyDataset([request.record(k) for k in my_split_of(request.all_keys())])
#         return dataset, my_collate          # dataset.keys[i] names item i; my_collate(list of items) -> batch
#
# `request.record(key)` is one performance as the original's training pickles hold it (what
# `save_features_for_virtuosoNet` wrote and dataset.py `ScorePerformDataset` reads): `input` (T, W) float64,
# `note_location` {beat, measure, voice, section: T ints}, `labels` (the label file's 19 values), `label_std`.
# A batch may be the original's FeatureCollate 10-tuple (dataset.py:221-252: packed x first, note locations 5th,
# labels 9th), a mapping or an object with `x` (a PackedSequence, or a padded (N, T, F) tensor, with optional
# `lengths`), `note_locations` ({name: (N, T)}) and `labels` (N, L).
#
# `--dataset original` is the original's own path: items as `ScorePerformDataset.data_to_formatted_tensor` makes
# them with --no_augment (dataset.py:84-130) and the original's own FeatureCollate, run live.

DATASET_OPTION = "--dataset"
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
        raise UsageError(f"{DATASET_OPTION} original needs a live original (--original PATH)")
    return OriginalItems(request, request.keys()), request.original_collate


def load_dataset(spec: str, request: DatasetRequest) -> tuple[Any, Callable[[list[Any]], Any], list[str]]:
    """(dataset, collate, keys) from the user's factory; UsageError (one line) when it fails or lacks keys."""
    factory = original_loader if spec == BUILTIN_ORIGINAL else load_factory(spec, DATASET_OPTION)
    try:
        made = factory(request)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise UsageError(f"{DATASET_OPTION} {spec} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:400]) from exc
    dataset, collate = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if collate is None:
        from torch.utils.data import default_collate

        collate = default_collate
    keys = getattr(dataset, "keys", None)
    if callable(keys):
        keys = keys()
    if keys is None or isinstance(keys, (str, bytes)) or len(list(keys)) != len(dataset):
        raise UsageError(f"{DATASET_OPTION} {spec}: the dataset needs a `keys` list naming the performance of each item "
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
        raise UsageError(f"{DATASET_OPTION} {spec}: cannot read its batch ({type(batch).__name__}); the collate must return "
                         "the original's 10-tuple or x, note_locations and labels (docs/cli.md)")
    if isinstance(x, PackedSequence):
        padded, packed_lengths = pad_packed_sequence(x, batch_first=True)
        rows = [int(n) for n in packed_lengths]
    else:
        padded = torch.as_tensor(x)
        if padded.dim() != 3:
            raise UsageError(f"{DATASET_OPTION} {spec}: its batch x has shape {tuple(padded.shape)}; expected (N, T, F)")
        rows = [int(n) for n in torch.as_tensor(lengths).tolist()] if lengths is not None else \
            [padded.shape[1]] * padded.shape[0]
    if padded.shape[0] != len(keys):
        raise UsageError(f"{DATASET_OPTION} {spec}: a batch of {len(keys)} items came back with {padded.shape[0]} rows")
    features = [padded[i, :n].float() for i, n in enumerate(rows)]
    out_loc: dict[str, list[torch.Tensor]] = {}
    for name in LOCATIONS:
        if name not in locations:
            raise UsageError(f"{DATASET_OPTION} {spec}: its batch has no {name!r} note locations")
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
            raise UsageError(f"{DATASET_OPTION} {spec}: its dataset or collate failed: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}"[:400]) from exc
        out.append(read_batch(batch, present, spec))
    return out
