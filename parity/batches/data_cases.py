"""Deterministic generated cases for the data-op parity checks (slicing, collate, loss and R2).

Every case k of a family is drawn from its own `numpy.random.Generator(PCG64([seed, family, k]))` with
integer and uniform/normal draws only, so case k does not depend on how many cases were asked for, and the
recorded reference (`parity/data/data_ops_reference.json`) can be compared case by case. `inputs_digest`
fingerprints a family's inputs so a change of numpy's streams is detected instead of misread as a mismatch.

"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from percepiano_parity.batches.canonical import CanonicalBatch, Segment

SLICING, COLLATE, LOSS, VALIDATION = 0, 1, 2, 3
DEFAULT_SEED = 20240
NUM_LABEL = 19
LABEL_RANGE = (0.143, 0.976)


def _rng(seed: int, family: int, k: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, family, k]))


# -- slicing ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlicingCase:
    num_notes: int
    measures: tuple[int, ...]
    slice_length: int
    overlap: bool
    random_seed: int  # `random.seed(...)` before each side's call
    kind: str  # "short" | "exact" | "long" | "very-long" | "real-scale"

    def to_json(self) -> list[Any]:
        return [self.num_notes, self.slice_length, int(self.overlap), self.random_seed, list(self.measures)]


_SLICE_LENGTHS = (3, 4, 5, 6, 8, 10, 16, 24, 32)


def _measure_numbers(rng: np.random.Generator, n: int, max_per_measure: int, *, gaps: bool) -> list[int]:
    """Non-decreasing measure numbers, +1 per new measure (+2 now and then when `gaps`), each measure holding
    1..max_per_measure notes, starting at 0 or a small offset."""
    out: list[int] = []
    current = int(rng.integers(0, 3)) if rng.integers(0, 4) == 0 else 0
    while len(out) < n:
        count = int(rng.integers(1, max_per_measure + 1))
        out += [current] * min(count, n - len(out))
        current += 2 if gaps and rng.integers(0, 6) == 0 else 1
    return out


@functools.lru_cache(maxsize=4096)
def slicing_case(seed: int, k: int) -> SlicingCase:
    rng = _rng(seed, SLICING, k)
    kind = ("short", "exact", "long", "very-long", "very-long", "real-scale")[int(rng.integers(0, 6))]
    if kind == "real-scale":
        length = 5000
        n = int(rng.integers(51, 414))  # the performance MIDIs' note-on counts (facts sheet section 6)
    else:
        length = int(_SLICE_LENGTHS[int(rng.integers(0, len(_SLICE_LENGTHS)))])
        n = {"short": lambda: int(rng.integers(1, length)), "exact": lambda: length,
             "long": lambda: int(rng.integers(length + 1, 2 * length + 1)),
             "very-long": lambda: int(rng.integers(2 * length + 1, 6 * length + 1))}[kind]()
    per_measure = max(1, min(length - 1, 12))  # a measure with >= length notes would hang the original
    gaps = kind != "real-scale" and rng.integers(0, 8) == 0
    measures = _measure_numbers(rng, n, per_measure, gaps=bool(gaps))
    overlap = bool(rng.integers(0, 7) != 0)
    return SlicingCase(n, tuple(measures), length, overlap, int(rng.integers(0, 2**31 - 1)), kind)


def slicing_cases(count: int, seed: int = DEFAULT_SEED) -> list[SlicingCase]:
    return [slicing_case(seed, k) for k in range(count)]


# -- collate ------------------------------------------------------------------------------------------------

def _locations(rng: np.random.Generator, length: int) -> dict[str, torch.Tensor]:
    beat_steps = (rng.integers(0, 3, size=length) == 0).astype(np.int64)
    beat_steps[0] = 0
    beat = int(rng.integers(0, 3)) + np.cumsum(beat_steps)
    new_measure = (beat_steps == 1) & (rng.integers(0, 3, size=length) == 0)
    measure = int(rng.integers(0, 2)) + np.cumsum(new_measure.astype(np.int64))
    voice = rng.integers(1, 5, size=length)
    section = np.ones(length, dtype=np.int64)
    return {name: torch.from_numpy(np.asarray(v, dtype=np.int64).copy())
            for name, v in (("beat", beat), ("measure", measure), ("voice", voice), ("section", section))}


def _label(rng: np.random.Generator, num_label: int) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(*LABEL_RANGE, size=num_label).astype(np.float32))


@functools.lru_cache(maxsize=4096)
def collate_case(seed: int, k: int, width: int = 79, num_label: int = NUM_LABEL) -> CanonicalBatch:
    """A batch of 1..6 segments of 1..30 notes, with deliberate equal lengths (sort ties) now and then."""
    rng = _rng(seed, COLLATE, k)
    size = int(rng.integers(1, 7))
    lengths = [int(rng.integers(1, 31)) for _ in range(size)]
    if size > 1 and rng.integers(0, 3) == 0:
        lengths[int(rng.integers(0, size))] = lengths[0]
    segments = []
    for i, length in enumerate(lengths):
        loc = _locations(rng, length)
        feats = torch.from_numpy(rng.standard_normal((length, width)).astype(np.float32))
        segments.append(Segment(name=f"c{k}i{i}", features=feats, beat=loc["beat"], measure=loc["measure"],
                                voice=loc["voice"], section=loc["section"], label=_label(rng, num_label)))
    return CanonicalBatch(segments=tuple(segments), tags=("data-op:collate",))


# -- loss and metrics ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricCase:
    """Logits and labels of a few batches (one validation pass); a loss case uses only the first batch."""

    logits: tuple[torch.Tensor, ...]  # each (N_b, L) float32
    labels: tuple[torch.Tensor, ...]  # each (N_b, L) float32

    @property
    def n_samples(self) -> int:
        return sum(int(x.shape[0]) for x in self.labels)


@functools.lru_cache(maxsize=4096)
def metric_case(seed: int, k: int, family: int = LOSS, num_label: int = NUM_LABEL) -> MetricCase:
    rng = _rng(seed, family, k)
    n_batches = 1 if family == LOSS else int(rng.integers(2, 6))
    logits, labels = [], []
    scale = float(rng.choice([0.3, 1.0, 3.0]))
    for _ in range(n_batches):
        n = int(rng.integers(2, 9))  # R2 needs two samples
        logits.append(torch.from_numpy((scale * rng.standard_normal((n, num_label))).astype(np.float32)))
        labels.append(torch.from_numpy(rng.uniform(*LABEL_RANGE, size=(n, num_label)).astype(np.float32)))
    return MetricCase(tuple(logits), tuple(labels))


def tiny_batch(labels: torch.Tensor) -> CanonicalBatch:
    """A batch of one-note segments carrying `labels`: what the original's loss path needs besides logits."""
    segments = []
    for i in range(labels.shape[0]):
        one = torch.ones(1, dtype=torch.int64)
        segments.append(Segment(name=f"m{i}", features=torch.zeros(1, 1), beat=one, measure=one, voice=one,
                                section=one, label=labels[i]))
    return CanonicalBatch(segments=tuple(segments), tags=("data-op:metric",))


# -- digests ------------------------------------------------------------------------------------------------

def tensor_digest(*tensors: torch.Tensor | None) -> str:
    """Short exact fingerprint of tensors (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        t = t.detach().contiguous().cpu()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def inputs_digest(items: list[Any]) -> str:
    """Fingerprint of a family's generated inputs (JSON-able or tensors)."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, SlicingCase):
            h.update(json.dumps(item.to_json()).encode())
        elif isinstance(item, CanonicalBatch):
            for s in item.segments:
                h.update(tensor_digest(s.features, s.beat, s.measure, s.voice, s.section, s.label).encode())
        elif isinstance(item, MetricCase):
            h.update(tensor_digest(*item.logits, *item.labels).encode())
        else:
            h.update(json.dumps(item).encode())
    return h.hexdigest()[:16]
