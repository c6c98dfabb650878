"""A user's feature extraction (`--extractor module:function` or `path.py:function`), called on real
performances of a prepared cache, and what it returned, validated.

    def extract(request: FeatureRequest) -> dict:
        return {
            "key_to_dim": {"duration": (0, 1), ...},          # required: its input layout, [start, end) columns
            "inputs": {perf.key: matrix for perf in request.performances},   # required: (T, W) per performance
            "stats": {"duration": {"mean": 0.57, "std": 0.58}, ...},         # optional: the keys it z-scores
        }

The request offers, per performance, the files the original read (performance MIDI, MusicXML excerpt, the
correspondence `*_infer_corresp.txt`) and, for an extractor that re-implements only the conversion stage, the
original's own unnormalised pair features (`pair_features()`: `ScorePerformPairData.features`,
pyScoreParser/data_for_training.py:44-67, the unaligned notes already inserted). `dataset` lists every labelled
performance of the cache: the original normalises over all of them (data_for_training.py:197), so an extractor
computes its statistics over `dataset` and returns matrices for `performances` only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.feature_reference import KeyToDim, sorted_layout
from percepiano_parity.batches.real.raw_features import decode_features
from percepiano_parity.core.errors import UsageError
from percepiano_parity.subjects.factory import load_factory

OPTION = "--extractor"


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
    return load_factory(spec, OPTION)


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
        raise UsageError(f"{OPTION} {spec} failed: {type(exc).__name__}: {text}"[:400]) from exc
    return validate(made, request, spec)


def validate(made: Any, request: FeatureRequest, spec: str) -> ExtractedFeatures:
    """ExtractedFeatures from the extractor's mapping, or UsageError naming what is wrong."""
    where = f"{OPTION} {spec}"
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
