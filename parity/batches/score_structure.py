"""Note-location structure of real PercePiano score excerpts, read with music21.

This is what `tools/score_stats.py` uses to measure the real scores and what `batches.synthetic` is calibrated
against (through the shipped `parity/data/score_stats.json`). music21 is an optional extra
(`pip install percepiano-parity[scores]`); it is imported lazily, only by the functions that read files.

How note locations are approximated (our reading of the original's pyScoreParser, not its code):

* Notes: every pitched note of every part, chords split into one note per pitch (same onset). Tie
  continuations (tie type "stop" or "continue") are not new notes; rests and unpitched notes are dropped.
  Grace notes are kept at the onset music21 gives them. Order: onset, then part, voice, pitch.
* Beat grid: from the first part's measures. A full measure of numerator n has n beats, except compound
  numerators (6, 9, 12, 18, 24 -> 2, 3, 4, 3, 4 beats). A measure whose real length differs from the time
  signature's (pickups, cut measures) gets ceil(length / beat length) beats; for the first measure they are laid
  out backwards from the next measure's start (a pickup), otherwise forwards, skipping positions already passed.
* A note's raw beat (measure) index is the last grid position (measure start) at or before its onset.
* Raw indices are then made *continuous*: any rise by more than 1 (empty beats, e.g. rests or held notes) is
  shrunk to a rise of 1, counting from 0. So the first note has index 0, or 1 when it does not sit on the first
  grid point (a rest or an empty first beat before it). Consecutive notes therefore differ by 0 or 1.
* Voices: the music21 voice inside each part (notes outside any Voice container belong to the part's lowest
  voice id), numbered 1.. over parts in part order (part 1's voices first). music21 splits a piano's two staves
  into two parts, so a two-hand texture has at least 2 voices.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import statistics
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

COMPOUND_BEATS = {6: 2, 9: 3, 12: 4, 18: 3, 24: 4}


def _music21() -> Any:
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading scores needs music21; install the optional extra: pip install 'percepiano-parity[scores]'"
        ) from exc
    return music21


@dataclass(frozen=True)
class ScoreStructure:
    """Note locations of one score excerpt, in note (onset) order."""

    name: str
    onsets: tuple[Fraction, ...]  # quarter lengths from the start of the excerpt
    beat: tuple[int, ...]  # continuous beat index (0 or 1 first, rises by 0 or 1)
    measure: tuple[int, ...]  # continuous measure index
    voice: tuple[int, ...]  # 1.. over parts
    raw_beat: tuple[int, ...]  # grid index before making it continuous
    chord_sizes: tuple[int, ...]  # one entry per music21 Note/Chord element (1 for a single note)

    @property
    def num_notes(self) -> int:
        return len(self.onsets)

    @property
    def num_beats(self) -> int:
        return len(set(self.beat))

    @property
    def num_measures(self) -> int:
        return len(set(self.measure))

    @property
    def num_voices(self) -> int:
        return len(set(self.voice))


# --------------------------------------------------------------------------- pure helpers (no music21)


def beats_in_measure(numerator: int) -> int:
    """Number of beats of a full measure for a time-signature numerator (compound metres count dotted beats)."""
    return COMPOUND_BEATS.get(numerator, numerator)


def grid_index(positions: Sequence[Fraction], onset: Fraction) -> int:
    """Index of the last grid position at or before `onset` (0 for onsets before the first position)."""
    return max(bisect.bisect_right(positions, onset) - 1, 0)


def make_continuous(indices: Iterable[int]) -> list[int]:
    """Shrink every rise of more than 1 to a rise of exactly 1, starting from a virtual previous index 0.

    [0,0,1,4,4,5] -> [0,0,1,2,2,3]; [3,3,4] -> [1,1,2] (a first index above 1 becomes 1).
    """
    out: list[int] = []
    previous = 0
    shift = 0
    for index in indices:
        if index - previous > 1:
            shift -= index - previous - 1
        previous = index
        out.append(index + shift)
    return out


def notes_per_beat(beat: Sequence[int]) -> list[int]:
    """Number of notes in each beat, in order (a beat = a run of equal consecutive beat numbers)."""
    return _run_lengths(beat)


def beats_per_measure(beat: Sequence[int], measure: Sequence[int]) -> list[int]:
    """Number of distinct beats in each measure, in order."""
    counts: list[int] = []
    previous: tuple[int, int] | None = None
    for i, (b, m) in enumerate(zip(beat, measure, strict=True)):
        if i == 0 or m != measure[i - 1]:
            counts.append(0)
            previous = None
        if (b, m) != previous:
            counts[-1] += 1
            previous = (b, m)
    return counts


def _run_lengths(values: Sequence[Any]) -> list[int]:
    counts: list[int] = []
    for i, v in enumerate(values):
        if i == 0 or v != values[i - 1]:
            counts.append(0)
        counts[-1] += 1
    return counts


def histogram(values: Iterable[int]) -> dict[str, int]:
    """value -> count, as a JSON-ready dict with string keys sorted numerically."""
    counts = Counter(int(v) for v in values)
    return {str(k): counts[k] for k in sorted(counts)}


def counts_list(values: Iterable[int]) -> list[int]:
    """Histogram of positive integers as a dense list: entry k-1 is how many values equal k."""
    counts = Counter(int(v) for v in values)
    if not counts:
        return []
    return [counts.get(k, 0) for k in range(1, max(counts) + 1)]


# --------------------------------------------------------------------------- music21 readers


SEGMENT_NAME = re.compile(r"_\d+bars_")


def is_segment_excerpt(name: str) -> bool:
    """True for the 4/8/16-bar excerpts (`[piece]_[N]bars_...`); the folder also holds one whole piece."""
    return SEGMENT_NAME.search(name) is not None


def _frac(x: Any) -> Fraction:
    return Fraction(x)


def _beat_grid(score: Any) -> tuple[list[Fraction], list[Fraction]]:
    """Beat positions and measure starts (quarter lengths) from the first part."""
    music21 = _music21()
    part = score.parts[0]
    measures = list(part.getElementsByClass(music21.stream.Measure))
    starts = [_frac(m.getOffsetBySite(part)) for m in measures]
    # length of the last measure: the latest note end in it, over all parts (same measure number)
    last_end: Fraction | None = None
    if measures:
        for p in score.parts:
            for m in p.getElementsByClass(music21.stream.Measure):
                if m.number != measures[-1].number:
                    continue
                m_start = _frac(m.getOffsetBySite(p))
                for n in m.recurse().notes:
                    end = m_start + _frac(n.getOffsetInHierarchy(m)) + _frac(n.quarterLength)
                    last_end = end if last_end is None else max(last_end, end)
    positions: list[Fraction] = []
    ts = None
    for i, m in enumerate(measures):
        if m.timeSignature is not None:
            ts = m.timeSignature
        if ts is None:
            ts = music21.meter.TimeSignature("4/4")
        full = _frac(ts.barDuration.quarterLength)
        n_beats = beats_in_measure(int(ts.numerator))
        interval = full / n_beats
        start = starts[i]
        if i + 1 < len(measures):
            actual = starts[i + 1] - start
        else:
            actual = (last_end - start) if last_end is not None and last_end > start else full
        if actual != full:  # pickup or cut measure
            n_here = max(math.ceil(actual / interval), 1)
            if i == 0:
                anchor = start + actual
                grid = [anchor + j * interval for j in range(-n_here, 0)]
            else:
                grid = [start + j * interval for j in range(n_here)]
            positions.extend(p for p in grid if not positions or p > positions[-1])
        else:
            positions.extend(start + j * interval for j in range(n_beats))
    return positions, starts


def _score_notes(score: Any) -> tuple[list[tuple[Fraction, int, int, int]], list[int]]:
    """(onset, part, global voice, midi pitch) for every sounding note; plus the music21 chord sizes."""
    music21 = _music21()
    raw: list[tuple[Fraction, int, str, int]] = []
    chord_sizes: list[int] = []
    for p_idx, part in enumerate(score.parts):
        for m in part.getElementsByClass(music21.stream.Measure):
            m_start = _frac(m.getOffsetBySite(part))
            containers: list[tuple[str, Any, Fraction]] = [("", m, Fraction(0))]
            containers += [(str(v.id), v, _frac(v.getOffsetBySite(m))) for v in m.voices]
            for voice_id, container, v_off in containers:
                for el in container.getElementsByClass((music21.note.Note, music21.chord.Chord)):
                    onset = m_start + v_off + _frac(el.offset)
                    members = [el] if isinstance(el, music21.note.Note) else list(el.notes)
                    sounding = 0
                    for member in members:
                        tie = member.tie if member.tie is not None else getattr(el, "tie", None)
                        if tie is not None and tie.type in ("stop", "continue"):
                            continue
                        raw.append((onset, p_idx, voice_id, int(member.pitch.midi)))
                        sounding += 1
                    if sounding:
                        chord_sizes.append(sounding)
    # global voice numbers: per part, numbered voice ids sorted; notes outside a Voice take the lowest id
    by_part: dict[int, set[str]] = {}
    for _, p_idx, voice_id, _ in raw:
        by_part.setdefault(p_idx, set())
        if voice_id:
            by_part[p_idx].add(voice_id)

    def key(v: str) -> tuple[int, str]:
        return (int(v), v) if v.isdigit() else (10**9, v)

    numbering: dict[tuple[int, str], int] = {}
    next_number = 1
    for p_idx in sorted(by_part):
        ids = sorted(by_part[p_idx], key=key) or [""]
        for v in ids:
            numbering[(p_idx, v)] = next_number
            next_number += 1
        numbering[(p_idx, "")] = numbering[(p_idx, ids[0])]
    notes = sorted((onset, p, numbering[(p, v)], pitch) for onset, p, v, pitch in raw)
    return notes, chord_sizes


def parse_score(path: str | Path) -> Any:
    """Parse a MusicXML file with music21 (no pickle cache read or written)."""
    music21 = _music21()
    with warnings.catch_warnings():  # music21 reports overfull measures, unknown directions etc.
        warnings.simplefilter("ignore")
        return music21.converter.parse(str(path), forceSource=True, storePickle=False)


def score_structure(score: Any, name: str) -> ScoreStructure:
    positions, starts = _beat_grid(score)
    notes, chord_sizes = _score_notes(score)
    onsets = [n[0] for n in notes]
    raw_beat = [grid_index(positions, o) for o in onsets]
    raw_measure = [grid_index(starts, o) for o in onsets]
    return ScoreStructure(
        name=name,
        onsets=tuple(onsets),
        beat=tuple(make_continuous(raw_beat)),
        measure=tuple(make_continuous(raw_measure)),
        voice=tuple(n[2] for n in notes),
        raw_beat=tuple(raw_beat),
        chord_sizes=tuple(chord_sizes),
    )


def read_score(path: str | Path) -> ScoreStructure:
    """Read one MusicXML excerpt into its note-location structure."""
    path = Path(path)
    return score_structure(parse_score(path), path.stem)


def count_midi_note_ons(path: str | Path) -> int:
    """Number of note-on events with velocity > 0 in a MIDI file (music21's MIDI reader)."""
    music21 = _music21()
    mf = music21.midi.MidiFile()
    mf.open(str(path))
    try:
        mf.read()
    finally:
        mf.close()
    note_on = music21.midi.ChannelVoiceMessages.NOTE_ON
    return sum(1 for track in mf.tracks for e in track.events if e.type == note_on and (e.velocity or 0) > 0)


# --------------------------------------------------------------------------- summaries


def structure_record(s: ScoreStructure) -> dict[str, Any]:
    """Compact per-score record (dense count lists: entry k-1 counts the value k)."""
    voice_counts = Counter(s.voice)
    return {
        "name": s.name,
        "num_notes": s.num_notes,
        "num_beats": s.num_beats,
        "num_measures": s.num_measures,
        "num_voices": s.num_voices,
        "first_beat": s.beat[0] if s.beat else 0,
        "first_measure": s.measure[0] if s.measure else 0,
        "notes_per_beat": counts_list(notes_per_beat(s.beat)),
        "beats_per_measure": counts_list(beats_per_measure(s.beat, s.measure)),
        "voice_notes": [voice_counts.get(v, 0) for v in range(1, max(voice_counts, default=0) + 1)],
    }


def _quantiles(values: Sequence[int]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "min": ordered[0],
        "median": float(statistics.median(ordered)),
        "mean": round(statistics.fmean(ordered), 4),
        "max": ordered[-1],
    }


def summarise_structures(structures: Sequence[ScoreStructure]) -> dict[str, Any]:
    npb: list[int] = []
    bpm: list[int] = []
    onset_sizes: list[int] = []
    chord_sizes: list[int] = []
    voice_notes: Counter[int] = Counter()
    measure_change_mid_beat = 0
    raw_beat_gaps = 0
    rises = 0
    for s in structures:
        npb += notes_per_beat(s.beat)
        bpm += beats_per_measure(s.beat, s.measure)
        onset_sizes += _run_lengths(s.onsets)
        chord_sizes += s.chord_sizes
        voice_notes.update(s.voice)
        for i in range(1, s.num_notes):
            if s.measure[i] != s.measure[i - 1] and s.beat[i] == s.beat[i - 1]:
                measure_change_mid_beat += 1
            if s.raw_beat[i] - s.raw_beat[i - 1] > 1:
                raw_beat_gaps += 1
            if s.beat[i] != s.beat[i - 1]:
                rises += 1
    total_notes = sum(voice_notes.values())
    first_beats = [s.beat[0] for s in structures if s.beat]
    first_measures = [s.measure[0] for s in structures if s.measure]
    return {
        "num_scores": len(structures),
        "notes_per_score": _quantiles([s.num_notes for s in structures]),
        "notes_per_beat": histogram(npb),
        "notes_per_beat_summary": _quantiles(npb),
        "beats_per_measure": histogram(bpm),
        "beats_per_measure_summary": _quantiles(bpm),
        "measures_per_score": histogram(s.num_measures for s in structures),
        "num_voices": histogram(s.num_voices for s in structures),
        "voice_note_share": {str(v): round(voice_notes[v] / total_notes, 5) for v in sorted(voice_notes)},
        "notes_per_onset": histogram(onset_sizes),
        "chord_sizes": histogram(chord_sizes),
        "first_beat": histogram(first_beats),
        "first_measure": histogram(first_measures),
        "first_beat_nonzero_share": round(sum(1 for b in first_beats if b != 0) / max(len(first_beats), 1), 5),
        "measure_change_within_beat": measure_change_mid_beat,
        "empty_beats_skipped": raw_beat_gaps,
        "empty_beats_skipped_share_of_rises": round(raw_beat_gaps / max(rises, 1), 5),
    }


def label_stats(path: str | Path, num_label: int = 19, num_names: int = 50) -> dict[str, Any]:
    """Per-dimension mean/std/min/max of the first `num_label` values of a PercePiano label JSON."""
    data = json.loads(Path(path).read_text())
    columns = [[float(v[d]) for v in data.values()] for d in range(num_label)]
    return {
        "file": Path(path).name,
        "count": len(data),
        "num_label": num_label,
        "mean": [round(statistics.fmean(c), 6) for c in columns],
        "std": [round(statistics.pstdev(c), 6) for c in columns],
        "min": [round(min(c), 6) for c in columns],
        "max": [round(max(c), 6) for c in columns],
        "names": sorted(data)[:num_names],
    }
