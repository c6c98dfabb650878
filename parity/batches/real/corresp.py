"""The correspondence file the original reads (`<performance>_infer_corresp.txt`): Nakamura's alignment format.

One tab-separated row per note: `alignID alignOntime alignSitch alignPitch alignOnvel refID refOntime refSitch
refPitch refOnvel` (performance note, then score-MIDI note; `*` and -1 where a side has no note); lines with a
single field (the `//Version` header) are skipped. The original reads it in
`pyScoreParser/xml_midi_matching.py` read_corresp and uses refOntime/refPitch to find the score-MIDI note (within
0.05 s) and alignOntime/alignPitch to find the performance note (within 0.05 s, first match wins).
"""

from __future__ import annotations

from dataclasses import dataclass

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
