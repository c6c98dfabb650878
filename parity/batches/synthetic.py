"""Seeded, structurally realistic canonical batches for parity runs, with the real segments' hazards at
least as often as the real data carries them.
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
import torch

from percepiano_parity.batches.canonical import CanonicalBatch, Segment
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.options import MIN_NOTES

# ----------------------------------------------------------------------------------------------------------
# Real hazards in the default synthetic batches, at least as often as the real segments carry them.
#
# The rates come from `parity/data/real_hazards.json` (`tools/real_hazards.py`, measured on every PercePiano
# performance through the original's own pipeline, `batches.real.hazards`). Measured there: unaligned performance
# notes get voice 0 (10% of notes, 77% of segments, every batch), and the longest item of 1% of batches starts with
# a lone note; beat and measure numbers never jump, never fall and are never negative (the original's
# `insert_value_to_list` copies the neighbour's location into an inserted note instead of writing -1, so the -1s
# the facts sheet warns of do not occur in these files).
#
# What each normal batch k gets, from its own random stream (the other draws of the batch stay as they were):
#
# * voice 0 on a share of the notes of a share of the segments (the measured per-note rate and segment share),
#   and in at least one segment of every batch whose quota says so (the measured batch share);
# * the longest item's first note alone in its beat, in batch k when ceil((k+1)*q) > ceil(k*q) for the measured
#   per-batch share q (so any first n batches hold at least n*q such batches; batch 0 always does for q > 0);
# * one beat-number jump of 2 in every other batch (k even), beyond the measured rate of 0: the facts sheet's
#   hazard 4.4, which other data and other pipelines do have, and the only input on which a replica that starts a
#   beat at every change of number differs. It goes to an item with fewer beat nodes than the batch's largest, so
#   the original's span index stays inside the batch's padded nodes (the original runs; it raises IndexError only
#   when the item is alone or the largest).

HAZARD_TAGS = ("hazard:voice-zero", "hazard:lone-first-longest", "hazard:beat-jump")
JUMP_EVERY = 2


@functools.cache
def real_hazards() -> dict[str, Any]:
    """The shipped measurement (`parity/data/real_hazards.json`)."""
    text = importlib.resources.files("percepiano_parity").joinpath("data/real_hazards.json").read_text("utf-8")
    return json.loads(text)["hazards"]


def quota(k: int, share: float) -> bool:
    """Whether batch k is one of the hazard's batches: the first n batches hold ceil(n * share) of them."""
    share = min(max(float(share), 0.0), 1.0)
    return math.ceil(round((k + 1) * share, 9)) > math.ceil(round(k * share, 9))


def original_beat_nodes(beat: Sequence[int]) -> int:
    """Beat nodes the original makes of one item: a boundary only where the number rises by exactly 1."""
    values = list(beat)
    return 1 + sum(1 for a, b in zip(values, values[1:], strict=False) if b - a == 1)


def _with(seg: Segment, **changes: torch.Tensor) -> Segment:
    fields = {f: getattr(seg, f) for f in ("name", "features", "beat", "measure", "voice", "section", "label")}
    return Segment(**{**fields, **changes})


def _voice_zero(seg: Segment, rng: np.random.Generator, share: float) -> Segment:
    n = seg.length
    chosen = rng.random(n) < share
    if not chosen.any():
        chosen[int(rng.integers(0, n))] = True
    if chosen.all() and n > 1:
        chosen[int(rng.integers(0, n))] = False
    voice = seg.voice.clone()
    voice[torch.from_numpy(chosen)] = 0
    return _with(seg, voice=voice)


def _lone_first(seg: Segment) -> Segment:
    if seg.length < 2 or int(seg.beat[1]) != int(seg.beat[0]):
        return seg
    beat = seg.beat.clone()
    beat[1:] += 1
    return _with(seg, beat=beat)


def _jump(segments: list[Segment]) -> int | None:
    """Index of the segment that took a beat jump (None when no item is safely smaller than the largest)."""
    nodes = [original_beat_nodes(s.beat.tolist()) for s in segments]
    largest = max(nodes)
    candidates = [i for i, n in enumerate(nodes) if 3 <= n < largest]
    if not candidates:
        return None
    i = min(candidates, key=lambda j: (nodes[j], j))
    beat = segments[i].beat.clone()
    rises = [p for p in range(1, len(beat)) if int(beat[p]) - int(beat[p - 1]) == 1]
    p = rises[len(rises) // 2]
    beat[p:] += 1
    segments[i] = _with(segments[i], beat=beat)
    return i


def apply_hazards(segments: Sequence[Segment], k: int, rng: np.random.Generator) -> tuple[tuple[Segment, ...],
                                                                                        tuple[str, ...]]:
    """Normal batch k with the hazards its quota gives it, and the batch's hazard tags."""
    hazards = real_hazards()
    out = list(segments)
    tags: list[str] = []
    voice = hazards["voice_zero"]
    if voice["rate"] > 0:
        per_segment = voice["segment_share"]
        share = min(voice["rate"] / per_segment, 1.0) if per_segment else 0.0
        hit = [i for i in range(len(out)) if rng.random() < per_segment]
        if not hit and quota(k, voice["batch_share"]):
            hit = [0]
        for i in hit:
            out[i] = _voice_zero(out[i], rng, share)
        if hit:
            tags.append(HAZARD_TAGS[0])
    if quota(k, hazards["lone_first"]["batch_share_longest"]):
        longest = max(range(len(out)), key=lambda i: (out[i].length, -i))
        out[longest] = _lone_first(out[longest])
        tags.append(HAZARD_TAGS[1])
    if k % JUMP_EVERY == 0 and len(out) > 1 and _jump(out) is not None:
        tags.append(HAZARD_TAGS[2])
    return tuple(out), tuple(tags)


# ----------------------------------------------------------------------------------------------------------
# Seeded, structurally realistic canonical batches for parity runs.
#
# The generator is calibrated on the real PercePiano data through `parity/data/score_stats.json` (written by
# `tools/score_stats.py` from the 260 score excerpts, the 1,202 performance MIDI files and the label JSON):
#
# * segment lengths are drawn from the note-on counts of the performance MIDI files (51-413 notes);
# * each segment copies the texture of a real score excerpt of similar size (one of the 8 nearest by note count):
#   notes per beat, beats per measure and the share of notes per voice are drawn from that excerpt's own counts;
# * note locations follow the original's conventions: beat and measure numbers never decrease and rise by exactly
#   1 (continuous indices), a measure always starts on a new beat, voices are 1..V, sections are all 1. Every
#   normal segment has at least 2 beats and 2 measures, so no beat or measure row is all zero (the original
#   crashes on those), and there are no -1s;
# * then the real hazards (`synthetic_hazards`): voice-0 notes (the original's unaligned notes), a lone first
#   note in the longest item, and a beat-number jump of 2 in every other batch, at least as often as the real
#   segments carry them;
# * beat and measure numbers start where the real excerpts start (always 0 in the shipped stats);
# * features are float32 standard normals with a one-hot group and a few binary columns; labels are drawn per
#   dimension from a Beta with the real mean and std, clipped to [0.143, 0.976].
#
# Determinism: every batch has its own `numpy.random.Generator(PCG64([seed, stream, index]))`, so batch k of a
# seed does not depend on how many batches were asked for. Discrete choices use only integer draws against
# integer counts; features and labels use numpy's normal, uniform and beta draws (numpy's documented stream for a
# given numpy version).
#
# Edge-case batches (tagged `edge:...`) probe the hazards of the facts sheet (section 4) without crashing the
# original: see `edge_cases`.

LABEL_RANGE = (0.143, 0.976)
_NORMAL_STREAM = 0
_EDGE_STREAM = 1
_HAZARD_STREAM = 2
_NEAREST_TEMPLATES = 8
_DEFAULT_EDGE_LENGTH = 120  # length of the "longer" items in edge cases when max_notes is None

EDGE_TAGS = (
    "edge:length-1",
    "edge:one-note-beats",
    "edge:beats-not-starting-at-0",
    "edge:unequal-lengths",
    "edge:single-item",
    "edge:single-item-lone-first-note",
)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class _Template:
    name: str
    num_notes: int
    notes_per_beat: tuple[int, ...]  # entry k-1: beats with k notes
    beats_per_measure: tuple[int, ...]  # entry k-1: measures with k beats
    voice_notes: tuple[int, ...]  # entry v-1: notes in voice v
    first_beat: int
    first_measure: int


@dataclass(frozen=True)
class _Stats:
    lengths: tuple[int, ...]
    length_counts: tuple[int, ...]
    templates: tuple[_Template, ...]
    label_mean: tuple[float, ...]
    label_std: tuple[float, ...]
    names: tuple[str, ...]


@functools.cache
def load_stats() -> dict[str, Any]:
    """The shipped statistics (`parity/data/score_stats.json`), as a dict."""
    text = importlib.resources.files("percepiano_parity").joinpath("data/score_stats.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def _stats() -> _Stats:
    raw = load_stats()
    hist = raw["performance_note_counts"]["histogram"]
    lengths = sorted(int(k) for k in hist)
    templates = tuple(
        _Template(
            name=s["name"],
            num_notes=int(s["num_notes"]),
            notes_per_beat=tuple(s["notes_per_beat"]),
            beats_per_measure=tuple(s["beats_per_measure"]),
            voice_notes=tuple(s["voice_notes"]),
            first_beat=int(s["first_beat"]),
            first_measure=int(s["first_measure"]),
        )
        for s in raw["scores"]
    )
    labels = raw["labels"]
    return _Stats(
        lengths=tuple(lengths),
        length_counts=tuple(int(hist[str(k)]) for k in lengths),
        templates=templates,
        label_mean=tuple(labels["mean"]),
        label_std=tuple(labels["std"]),
        names=tuple(labels["names"]),
    )


# --------------------------------------------------------------------------- draws


def _draw(rng: np.random.Generator, counts: Sequence[int]) -> int:
    """Index i with probability counts[i] / sum(counts), from a single integer draw."""
    cumulative = list(accumulate(int(c) for c in counts))
    if not cumulative or cumulative[-1] <= 0:
        raise ValueError("cannot draw from an empty histogram")
    return bisect.bisect_right(cumulative, int(rng.integers(0, cumulative[-1])))


def _draw_length(rng: np.random.Generator) -> int:
    stats = _stats()
    return stats.lengths[_draw(rng, stats.length_counts)]


def _draw_template(rng: np.random.Generator, length: int) -> _Template:
    templates = _stats().templates
    order = sorted(range(len(templates)), key=lambda i: (abs(templates[i].num_notes - length), i))
    nearest = order[: min(_NEAREST_TEMPLATES, len(order))]
    return templates[nearest[int(rng.integers(0, len(nearest)))]]


@dataclass(frozen=True)
class _Layout:
    beat: list[int]
    measure: list[int]
    voice: list[int]


def _layout(
    rng: np.random.Generator,
    template: _Template,
    length: int,
    *,
    first_beat: int,
    first_measure: int,
    one_note_beats: bool = False,
    shared_first_beat: bool = False,
) -> _Layout:
    """Beat, measure and voice numbers for `length` notes in the texture of `template`."""
    beat: list[int] = []
    measure: list[int] = []
    b, m = first_beat, first_measure
    while len(beat) < length:
        n_beats = _draw(rng, template.beats_per_measure) + 1
        for _ in range(n_beats):
            n_notes = 1 if one_note_beats else _draw(rng, template.notes_per_beat) + 1
            if shared_first_beat and not beat:
                n_notes = max(n_notes, 2)
            beat += [b] * n_notes
            measure += [m] * n_notes
            b += 1
            if len(beat) >= length:
                break
        m += 1
    beat, measure = beat[:length], measure[:length]
    if length >= 2:
        if beat[-1] == beat[0]:  # a single beat: the last note opens a second one
            beat[-1] += 1
        if measure[-1] == measure[0]:  # a single measure: the last beat opens a second one
            last = beat[-1]
            measure = [mm + 1 if bb == last else mm for bb, mm in zip(beat, measure, strict=True)]
    counts = template.voice_notes or (1,)
    voice = [_draw(rng, counts) + 1 for _ in range(length)]
    if 1 not in voice:
        voice[0] = 1
    return _Layout(beat, measure, voice)


def _features(rng: np.random.Generator, length: int, width: int) -> np.ndarray:
    x = rng.standard_normal((length, width), dtype=np.float32)
    if width >= 24:  # a one-hot group of 8 columns and 4 binary columns, like the original's categorical inputs
        x[:, width - 12 : width - 4] = 0.0
        x[np.arange(length), width - 12 + rng.integers(0, 8, size=length)] = 1.0
        x[:, width - 4 :] = (rng.random((length, 4)) < 0.3).astype(np.float32)
    return x


def _labels(rng: np.random.Generator, num_label: int) -> np.ndarray:
    stats = _stats()
    out = np.empty(num_label, dtype=np.float64)
    for d in range(num_label):
        mean = stats.label_mean[d % len(stats.label_mean)]
        std = stats.label_std[d % len(stats.label_std)]
        concentration = mean * (1.0 - mean) / (std * std) - 1.0
        out[d] = rng.beta(mean * concentration, (1.0 - mean) * concentration)
    return np.clip(np.round(out, 6), *LABEL_RANGE).astype(np.float32)


def _segment(
    rng: np.random.Generator,
    name: str,
    layout: _Layout,
    config: ModelConfig,
) -> Segment:
    length = len(layout.beat)
    return Segment(
        name=name,
        features=torch.from_numpy(_features(rng, length, config.input_size)),
        beat=torch.tensor(layout.beat, dtype=torch.int64),
        measure=torch.tensor(layout.measure, dtype=torch.int64),
        voice=torch.tensor(layout.voice, dtype=torch.int64),
        section=torch.ones(length, dtype=torch.int64),
        label=torch.from_numpy(_labels(rng, config.num_label)),
    )


def _name(rng: np.random.Generator, tag: str) -> str:
    names = _stats().names
    return f"{names[int(rng.integers(0, len(names)))]}@{tag}"


def _realistic(
    rng: np.random.Generator,
    config: ModelConfig,
    name_tag: str,
    *,
    max_notes: int | None,
    length: int | None = None,
    first_beat: int | None = None,
    first_measure: int | None = None,
    **layout_options: bool,
) -> Segment:
    target = _draw_length(rng) if length is None else length
    template = _draw_template(rng, target)
    n = min(target, max_notes) if max_notes is not None else target
    layout = _layout(
        rng,
        template,
        n,
        first_beat=template.first_beat if first_beat is None else first_beat,
        first_measure=template.first_measure if first_measure is None else first_measure,
        **layout_options,
    )
    return _segment(rng, _name(rng, name_tag), layout, config)


def _check_max_notes(max_notes: int | None) -> None:
    if max_notes is not None and max_notes < MIN_NOTES:
        raise ValueError(f"max_notes must be at least {MIN_NOTES}, got {max_notes}")


# --------------------------------------------------------------------------- public API


def generate_batches(
    n_batches: int,
    seed: int,
    *,
    batch_size: int = 8,
    config: ModelConfig | None = None,
    max_notes: int | None = None,
    include_edge_cases: bool = True,
    hazards: bool = True,
) -> list[CanonicalBatch]:
    """`n_batches` realistic batches of `batch_size` segments (tagged "normal", plus the `hazard:` tags of what
    `synthetic_hazards.apply_hazards` put in; `hazards=False` leaves them out), then the edge cases."""
    if n_batches < 0 or batch_size < 1:
        raise ValueError(f"need n_batches >= 0 and batch_size >= 1, got {n_batches} and {batch_size}")
    _check_max_notes(max_notes)
    config = config or ModelConfig()
    batches = []
    for k in range(n_batches):
        rng = np.random.Generator(np.random.PCG64([seed, _NORMAL_STREAM, k]))
        segments = tuple(
            _realistic(rng, config, f"s{seed}b{k}i{i}", max_notes=max_notes) for i in range(batch_size)
        )
        tags: tuple[str, ...] = ()
        if hazards:
            segments, tags = apply_hazards(segments, k, np.random.Generator(np.random.PCG64([seed, _HAZARD_STREAM, k])))
        batches.append(CanonicalBatch(segments=segments, tags=("normal", *tags)))
    if include_edge_cases:
        batches += edge_cases(seed, config, max_notes)
    return batches


def edge_cases(seed: int, config: ModelConfig | None = None, max_notes: int | None = None) -> list[CanonicalBatch]:
    """Batches that exercise the original's edge cases, each of which the original runs without error.

    * edge:length-1 - a one-note item (beat 1, measure 1) next to longer items: its padding gets span index
      0 - 1 = -1, which the original wraps (fine because 1 < the number of beat and measure nodes).
    * edge:one-note-beats - every beat holds a single note.
    * edge:beats-not-starting-at-0 - beat/measure numbers start at 17/5, 1/1 and 4/2 (offsets are harmless).
    * edge:unequal-lengths - 300 (or max_notes) notes next to 12.
    * edge:single-item - one segment alone whose first two notes share a beat (spans are not truncated).
    * edge:single-item-lone-first-note - one segment alone whose first beat is a single note: the original's
      span length comes out as 1 and every later note gets a zero beat span (facts sheet 4.1); it runs.
    """
    _check_max_notes(max_notes)
    config = config or ModelConfig()

    def rng_for(case: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([seed, _EDGE_STREAM, case]))

    def capped(n: int) -> int:
        return min(n, max_notes) if max_notes is not None else n

    long_len = capped(_DEFAULT_EDGE_LENGTH)
    out: list[CanonicalBatch] = []

    # 1. a length-1 item between two longer ones
    rng = rng_for(0)
    single = _segment(rng, _name(rng, f"edge{seed}-len1"), _Layout([1], [1], [1]), config)
    others = [
        _realistic(rng, config, f"edge{seed}-len1-{i}", max_notes=None, length=n, first_beat=0, first_measure=0)
        for i, n in enumerate((long_len, max(long_len // 2, MIN_NOTES)))
    ]
    out.append(CanonicalBatch(segments=(others[0], single, others[1]), tags=("edge:length-1",)))

    # 2. every beat a single note
    rng = rng_for(1)
    out.append(CanonicalBatch(
        segments=tuple(
            _realistic(rng, config, f"edge{seed}-onenote-{i}", max_notes=max_notes, length=capped(n),
                       one_note_beats=True)
            for i, n in enumerate((60, 41, 23))
        ),
        tags=("edge:one-note-beats",),
    ))

    # 3. beat / measure numbers not starting at 0
    rng = rng_for(2)
    out.append(CanonicalBatch(
        segments=tuple(
            _realistic(rng, config, f"edge{seed}-offset-{i}", max_notes=max_notes, first_beat=b0, first_measure=m0)
            for i, (b0, m0) in enumerate(((17, 5), (1, 1), (4, 2)))
        ),
        tags=("edge:beats-not-starting-at-0",),
    ))

    # 4. very unequal lengths
    rng = rng_for(3)
    long_n = capped(300)
    short_n = min(12, max(MIN_NOTES // 2, long_n // 5))
    out.append(CanonicalBatch(
        segments=tuple(
            _realistic(rng, config, f"edge{seed}-unequal-{i}", max_notes=None, length=n)
            for i, n in enumerate((long_n, short_n))
        ),
        tags=("edge:unequal-lengths",),
    ))

    # 5. a single item whose first two notes share a beat
    rng = rng_for(4)
    out.append(CanonicalBatch(
        segments=(_realistic(rng, config, f"edge{seed}-single", max_notes=max_notes, shared_first_beat=True),),
        tags=("edge:single-item",),
    ))

    # 6. a single item whose first beat is one note (the original truncates its beat spans; it runs)
    rng = rng_for(5)
    seg = _realistic(rng, config, f"edge{seed}-single-lone", max_notes=max_notes)
    beat = seg.beat.clone()
    measure = seg.measure.clone()
    if seg.length >= 3 and int(beat[1]) == int(beat[0]):
        beat[1:] += 1  # the first note alone in its beat; the second note opens the next beat, same measure
    seg = Segment(seg.name, seg.features, beat, measure, seg.voice, seg.section, seg.label)
    out.append(CanonicalBatch(segments=(seg,), tags=("edge:single-item-lone-first-note",)))
    return out


# ----------------------------------------------------------------------------------------------------------
# Edge cases the original raises on (found by running it, tests/batches/test_raising_edge_cases.py; the fuzz test
# tests/replica/test_fuzz_original.py covers the same structures): a replica that raises alike agrees there, one
# that returns values (clamps an index, skips an item) is told so (checks.forward, PP-RAISES-ORIGINAL-ONLY).
#
# * edge:raises-beat-past-last-node - one item alone whose beat numbers jump by 2 once: the jump is no boundary
#   (utils.py find_boundaries: diff == 1), so the item has one beat node fewer than its zero-shifted beat numbers
#   count, and its first two notes share a beat, so its span covers every note (cal_length_from_padded_beat_numbers
#   gives 1, meaning the whole row): span_beat_to_note_num (model_utils.py:56) indexes a node past the last one,
#   IndexError.
# * edge:raises-measure-past-last-node - the same with a measure-number jump of 2 (the measure span).
# * edge:raises-length-1-only - a batch of length-1 items only: the span's diff is empty, and the original's
#   fallback length (N*T) indexes past the row, IndexError.

RAISING_EDGE_TAGS = (
    "edge:raises-beat-past-last-node",
    "edge:raises-measure-past-last-node",
    "edge:raises-length-1-only",
)
_RAISING_EDGE_STREAM = 3


def _jump_once(numbers: torch.Tensor) -> torch.Tensor:
    """The numbers with every number from the middle rise by exactly 1 on raised by one more (one jump of 2)."""
    rises = [p for p in range(1, len(numbers)) if int(numbers[p]) - int(numbers[p - 1]) == 1]
    out = numbers.clone()
    if rises:
        out[rises[len(rises) // 2]:] += 1
    return out


def raising_edge_cases(seed: int, config: ModelConfig | None = None,
                       max_notes: int | None = None) -> list[CanonicalBatch]:
    """The batches of RAISING_EDGE_TAGS (see above), seeded like `edge_cases` on a stream of their own."""
    _check_max_notes(max_notes)
    config = config or ModelConfig()

    def rng_for(case: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([seed, _RAISING_EDGE_STREAM, case]))

    out: list[CanonicalBatch] = []
    rng = rng_for(0)
    seg = _realistic(rng, config, f"edge{seed}-beat-jump", max_notes=max_notes, shared_first_beat=True)
    out.append(CanonicalBatch(segments=(_with(seg, beat=_jump_once(seg.beat)),), tags=(RAISING_EDGE_TAGS[0],)))

    rng = rng_for(1)
    seg = _realistic(rng, config, f"edge{seed}-measure-jump", max_notes=max_notes, shared_first_beat=True)
    out.append(CanonicalBatch(segments=(_with(seg, measure=_jump_once(seg.measure)),), tags=(RAISING_EDGE_TAGS[1],)))

    rng = rng_for(2)
    ones = tuple(_segment(rng, _name(rng, f"edge{seed}-len1-only-{i}"), _Layout([b], [m], [1]), config)
                 for i, (b, m) in enumerate(((1, 1), (3, 2))))
    out.append(CanonicalBatch(segments=ones, tags=(RAISING_EDGE_TAGS[2],)))
    return out


def structure_problems(segment: Segment, *, normal: bool = True, hazards: bool = True) -> list[str]:
    """Violations of the original's note-location conventions (empty when the segment is well formed).

    With `normal`, also require what normal batches guarantee: at least 2 beats and 2 measures. With `hazards`,
    accept what `synthetic_hazards` puts in: voice 0 on some notes and one beat-number rise of 2.
    """
    problems: list[str] = []
    beat, measure = segment.beat.tolist(), segment.measure.tolist()
    voice, section = segment.voice.tolist(), segment.section.tolist()
    for key, seq in (("beat", beat), ("measure", measure)):
        if min(seq) < 0:
            problems.append(f"{key} has negative numbers")
        steps = [b - a for a, b in zip(seq, seq[1:], strict=False)]
        allowed = {0, 1, 2} if hazards and key == "beat" and steps.count(2) <= 1 else {0, 1}
        if not set(steps) <= allowed:
            problems.append(f"{key} changes by {sorted(set(steps) - {0, 1})} (only 0 or 1 allowed)")
        if not any(seq):
            problems.append(f"{key} numbers are all zero")
    for i in range(1, len(beat)):
        if measure[i] != measure[i - 1] and beat[i] == beat[i - 1]:
            problems.append(f"measure starting at note {i} does not start a new beat")
            break
    if min(voice) < (0 if hazards else 1) or max(voice) < 1:
        problems.append("voice numbers below 1" if not hazards else "negative voice numbers or no voice above 0")
    if set(section) != {1}:
        problems.append("section numbers are not all 1")
    if normal and (len(set(beat)) < 2 or len(set(measure)) < 2):
        problems.append("fewer than 2 beats or 2 measures")
    return problems


def batch_summary(batch: CanonicalBatch) -> dict[str, Any]:
    """A small, JSON-ready description of a batch for reports."""
    segs = batch.segments
    return {
        "tags": list(batch.tags),
        "size": len(segs),
        "names": [s.name for s in segs],
        "lengths": [s.length for s in segs],
        "beats": [len(set(s.beat.tolist())) for s in segs],
        "measures": [len(set(s.measure.tolist())) for s in segs],
        "voices": [len(set(s.voice.tolist())) for s in segs],
        "first_beat": [int(s.beat[0]) for s in segs],
        "first_measure": [int(s.measure[0]) for s in segs],
    }
