"""Note alignment of a performance to its score (parangonar), and the correspondence file the original
reads (Nakamura's format).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# The correspondence file the original reads (`<performance>_infer_corresp.txt`): Nakamura's alignment format.
#
# One tab-separated row per note: `alignID alignOntime alignSitch alignPitch alignOnvel refID refOntime refSitch
# refPitch refOnvel` (performance note, then score-MIDI note; `*` and -1 where a side has no note); lines with a
# single field (the `//Version` header) are skipped. The original reads it in
# `pyScoreParser/xml_midi_matching.py` read_corresp and uses refOntime/refPitch to find the score-MIDI note (within
# 0.05 s) and alignOntime/alignPitch to find the performance note (within 0.05 s, first match wins).

HEADER = "//Version: CorrespondenceDataFormat (written by percepiano-parity from a parangonar alignment)"
COLUMNS = 10
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class CorrespError(ValueError):
    """A correspondence file the original could not read; the message says which line and why."""


@dataclass(frozen=True)
class Note:
    onset: float  # seconds
    pitch: int  # MIDI number
    velocity: int


@dataclass(frozen=True)
class Row:
    """One line: a performance note, a score-MIDI note, or both (a match)."""

    performance: Note | None
    score: Note | None

    @property
    def kind(self) -> str:
        if self.performance is not None and self.score is not None:
            return "match"
        return "insertion" if self.performance is not None else "deletion"


def spelled(pitch: int) -> str:
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _side(note: Note | None, ident: int) -> list[str]:
    if note is None:
        return ["*", "-1", "*", "-1", "-1"]
    return [str(ident), f"{note.onset:.6f}", spelled(note.pitch), str(note.pitch), str(note.velocity)]


def write_corresp(rows: list[Row]) -> str:
    """The file's text: the header, then one line per row in the given order."""
    lines = [HEADER]
    for i, row in enumerate(rows):
        lines.append("\t".join(_side(row.performance, i) + _side(row.score, i)))
    return "\n".join(lines) + "\n"


def _note(fields: list[str], where: str) -> Note | None:
    if fields[0] == "*":
        return None
    try:
        return Note(float(fields[1]), int(fields[3]), int(fields[4]))
    except ValueError:
        raise CorrespError(f"{where}: onset, pitch or velocity is not a number: {' '.join(fields)!r}") from None


def read_corresp(text: str, source: str = "correspondence file") -> list[Row]:
    """Rows of a correspondence file, checked the way the original will read it (10 fields, numbers where it
    converts them); raises CorrespError naming the first bad line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) == 1:
            continue
        where = f"{source}:{number}"
        if len(fields) < COLUMNS:
            raise CorrespError(f"{where}: {len(fields)} tab-separated fields, the original reads {COLUMNS}")
        try:
            float(fields[6])
            int(fields[8])
        except ValueError:
            raise CorrespError(f"{where}: refOntime/refPitch are not numbers (the original converts them)") from None
        rows.append(Row(_note(fields[:5], where), _note(fields[5:10], where)))
    if not rows:
        raise CorrespError(f"{source}: no correspondence rows")
    return rows


# ----------------------------------------------------------------------------------------------------------
# Note alignment of a performance MIDI to the score MIDI, with parangonar (partitura reads the files).
#
# This stands in for the original's external aligner (Nakamura's MIDI-to-MIDI tool, called in
# `pyScoreParser/data_class.py` PieceMeta.align_score_and_perf_with_nakamura, not distributable): it produces the
# same kind of result, a list of matched, deleted (score note not played) and inserted (extra performance note)
# notes, which `corresp.write_corresp` turns into the file the original reads.
#
# Matcher: `parangonar.DualDTWNoteMatcher` (an onset-wise DTW over pitch sets in both directions, then a per-pitch
# symbolic matching with a 1.5 s onset threshold). It takes a score note array with beat onsets; the score MIDI is
# a metronomic rendering, so its onsets in seconds serve as the beat axis (only their order and the linear maps
# between anchors matter). Both files are read with `partitura.load_performance_midi`; note ids are reassigned
# (`s<i>`, `p<i>` in onset order) so tracks cannot collide. Measured cost: 0.01-0.1 s per segment (see the README).

MATCHER = "parangonar.DualDTWNoteMatcher"


class AlignmentError(Exception):
    """A file could not be read or aligned; one line."""


@dataclass(frozen=True)
class Alignment:
    rows: list[Row]  # score order for matches and deletions, insertions after
    score_notes: int
    performance_notes: int

    @property
    def counts(self) -> dict[str, int]:
        kinds = [r.kind for r in self.rows]
        return {k: kinds.count(k) for k in ("match", "deletion", "insertion")}


def read_notes(path: Path, prefix: str) -> np.ndarray:
    """Notes of a MIDI file as a partitura note array (onset_sec, duration_sec, pitch, velocity, id), sorted by
    onset then pitch, ids `<prefix><index>`. Raises AlignmentError when the file cannot be read."""
    import partitura

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notes = partitura.load_performance_midi(str(path)).note_array()
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise AlignmentError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from None
    notes = notes[np.lexsort((notes["pitch"], notes["onset_sec"]))]
    notes["id"] = [f"{prefix}{i}" for i in range(len(notes))]
    return notes


def _score_array(notes: np.ndarray) -> np.ndarray:
    out = np.zeros(len(notes), dtype=[("onset_beat", "f8"), ("duration_beat", "f8"), ("pitch", "i4"),
                                      ("id", "U256"), ("is_grace", "?")])
    out["onset_beat"] = notes["onset_sec"]
    out["duration_beat"] = notes["duration_sec"]
    out["pitch"] = notes["pitch"]
    out["id"] = notes["id"]
    return out


def _matched_note(record: np.void) -> Note:
    return Note(float(record["onset_sec"]), int(record["pitch"]), int(record["velocity"]))


def align(score_midi: Path, performance: Path) -> Alignment:
    """Align `performance` to `score_midi`; raises AlignmentError (unreadable or empty file, matcher failure)."""
    import parangonar

    score = read_notes(score_midi, "s")
    perf = read_notes(performance, "p")
    if len(score) == 0 or len(perf) == 0:
        raise AlignmentError(f"{'score MIDI' if len(score) == 0 else 'performance'} has no notes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = parangonar.DualDTWNoteMatcher()(_score_array(score), perf)
    except Exception as exc:  # noqa: BLE001 - the matcher's own failure on this pair
        raise AlignmentError(f"{MATCHER} failed: {type(exc).__name__}: {exc}") from None
    by_score = {str(r["id"]): r for r in score}
    by_perf = {str(r["id"]): r for r in perf}
    matched: dict[str, Row] = {}
    inserted: list[Row] = []
    for entry in result:
        label = entry["label"]
        if label == "match":
            matched[entry["score_id"]] = Row(_matched_note(by_perf[entry["performance_id"]]), _matched_note(by_score[entry["score_id"]]))
        elif label == "insertion":
            inserted.append(Row(_matched_note(by_perf[entry["performance_id"]]), None))
    rows = [matched.get(str(r["id"]), Row(None, _matched_note(r))) for r in score]
    inserted.sort(key=lambda row: (row.performance.onset, row.performance.pitch))  # type: ignore[union-attr]
    return Alignment(rows=rows + inserted, score_notes=len(score), performance_notes=len(perf))
