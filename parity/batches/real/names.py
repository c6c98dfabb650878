"""PercePiano file names: which score excerpt and which label key belong to a performance MIDI file.

A performance is `[piece]_[N]bars_[player]_[segment].mid`; its score excerpt is `[piece]_[N]bars_Score_[segment]`
(the original's rule: m2pf_dataset_performerfold.py M2PFSet.load_data_list, the name's last two parts replaced
by `Score` and the segment). `player` is a pianist number, `Score` (a rendition of the score) or `Score2`.
Label keys are file names without `.mid`; one shared file name starts with a space, which no label key does, so
the key is the stripped name (the original's exact lookup would drop that performance; the cache keeps it and
says so in `name_note`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERN = re.compile(r"^(?P<piece>.+)_(?P<bars>\d+)bars_(?P<player>[^_]+)_(?P<segment>[^_]+)$")


class PerformanceNameError(ValueError):
    """A performance file name that does not follow `[piece]_[N]bars_[player]_[segment].mid`."""


@dataclass(frozen=True)
class PerformanceName:
    """One performance file and what its name says."""

    file: str  # the file name as on disk, e.g. "Schubert_D960_mv3_8bars_8_13.mid"
    key: str  # the label key: the name without ".mid", surrounding whitespace removed
    piece: str
    bars: int
    player: str
    segment: str

    @property
    def score_stem(self) -> str:
        """The score excerpt's file stem (MusicXML and score MIDI share it)."""
        return f"{self.piece}_{self.bars}bars_Score_{self.segment}"

    @property
    def group(self) -> str:
        """The composition group of the composition folds: the name without its player (m2pf_dataset_
        compositionfold.py get_name_wo_performer, which keeps the '.mid' of the file name)."""
        return f"{self.piece}_{self.bars}bars_{self.segment}.mid"

    @property
    def name_note(self) -> str | None:
        if self.file[: -len(".mid")] != self.key:
            return (f"file name {self.file!r} has surrounding whitespace; matched to label key and score by "
                    f"{self.key!r} (the original's exact-name lookup would not find it)")
        return None


def parse_performance(file: str) -> PerformanceName:
    """Parse a performance file name; raises PerformanceNameError with one line when it does not follow the pattern."""
    if not file.endswith(".mid"):
        raise PerformanceNameError(f"{file!r} is not a .mid file")
    key = file[: -len(".mid")].strip()
    found = _PATTERN.match(key)
    if found is None:
        raise PerformanceNameError(f"{file!r} does not follow [piece]_[N]bars_[player]_[segment].mid")
    return PerformanceName(file=file, key=key, piece=found["piece"], bars=int(found["bars"]),
                           player=found["player"], segment=found["segment"])
