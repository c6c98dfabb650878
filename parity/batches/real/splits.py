"""PercePiano's file names and published folds, in our words, from the original's dataset scripts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------------------
# PercePiano file names: which score excerpt and which label key belong to a performance MIDI file.
#
# A performance is `[piece]_[N]bars_[player]_[segment].mid`; its score excerpt is `[piece]_[N]bars_Score_[segment]`
# (the original's rule: m2pf_dataset_performerfold.py M2PFSet.load_data_list, the name's last two parts replaced
# by `Score` and the segment). `player` is a pianist number, `Score` (a rendition of the score) or `Score2`.
# Label keys are file names without `.mid`; one shared file name starts with a space, which no label key does, so
# the key is the stripped name (the original's exact lookup would drop that performance; the cache keeps it and
# says so in `name_note`).

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


# ----------------------------------------------------------------------------------------------------------
# The published folds of PercePiano, in our words, from the original's dataset scripts.
#
# * performer4fold (`pyScoreParser/m2pf_dataset_performerfold.py`, `__main__` and `get_performer_fold_map`, lines
#   46-60 and 141-152): each performance gets a performer id (`Score` -> 0, `Score2` -> -1, Beethoven players by
#   their index in BEETHOVEN_PERFORMER_IDS, Schubert players by their number). Ids 1 and 2 are the test split of
#   every fold; fold f validates on ids 2f+3 and 2f+4; the rest trains. Membership does not depend on any random
#   draw, so it is exact.
# * composition4fold (`m2pf_dataset_compositionfold.py` `__main__`, lines 115-152): `random.seed(42)`, the listing
#   shuffled, performances grouped by name without player, whole groups of 2+ drawn at random into the test split
#   until it holds 15%, the remaining groups dealt to folds 0-3 in turn. It depends on the order `os.listdir`
#   returned, which the original did not fix: reconstructed here from the sorted listing, assuming nothing draws
#   from `random` between the seed and the shuffle (nothing in the feature pipeline does). Marked as such.
# * random8fold (the data of `scripts/randomfold/*`): the script that made it is not published; not available.
#
# Only performances whose key is in the label file's keys take part (`domain`, compared in lower case as the
# scripts do). A performance outside every split of a fold is `None` there.

BEETHOVEN_PERFORMER_IDS: tuple[int, ...] = (1, 2, 3, 4, 7, 11, 14, 18, 19, 22, 24, 26)
FOLD_SCHEMES = ("performer4fold", "composition4fold")
SPLITS = ("train", "valid", "test")
NUM_FOLDS = 4
COMPOSITION_SEED = 42
TEST_SHARE = 0.15

FoldTable = dict[str, list[str | None]]  # performance key -> split name (or None) for folds 0..3


def performer_id(name: PerformanceName) -> int:
    """The performer fold id of m2pf_dataset_performerfold.py get_performer_fold_map; ValueError for a
    Beethoven player the original's table lacks (its dict lookup would raise KeyError)."""
    if name.player == "Score":
        return 0
    if name.player == "Score2":
        return -1
    number = int(name.player)
    if "Beethoven" in name.key:
        if number not in BEETHOVEN_PERFORMER_IDS:
            raise ValueError(f"{name.file}: Beethoven player {number} is not in the original's performer table")
        return BEETHOVEN_PERFORMER_IDS.index(number)
    return number


def in_domain(names: Iterable[PerformanceName], label_keys: Iterable[str]) -> list[PerformanceName]:
    domain = {k.lower() for k in label_keys}
    return [n for n in names if n.key.lower() in domain]


def performer_folds(names: Sequence[PerformanceName], label_keys: Iterable[str]) -> FoldTable:
    """performer4fold membership of every performance in the label domain."""
    table: FoldTable = {}
    for name in in_domain(names, label_keys):
        pid = performer_id(name)
        row: list[str | None] = []
        for fold in range(NUM_FOLDS):
            if pid in (1, 2):
                row.append("test")
            elif pid in (2 * fold + 3, 2 * fold + 4):
                row.append("valid")
            else:
                row.append("train")
        table[name.key] = row
    return table


def composition_folds(names: Sequence[PerformanceName], label_keys: Iterable[str]) -> FoldTable:
    """composition4fold membership, reconstructed from the sorted listing (see the module docstring)."""
    rng = random.Random(COMPOSITION_SEED)
    listing = sorted(in_domain(names, label_keys), key=lambda n: n.file)
    rng.shuffle(listing)
    groups: dict[str, list[PerformanceName]] = {}
    for name in listing:
        groups.setdefault(name.group, []).append(name)
    test: list[PerformanceName] = []
    while len(test) < TEST_SHARE * len(listing):
        if not any(len(members) > 1 for members in groups.values()):
            break  # the original loops forever here (only single-performance groups left): a small listing
        key = rng.choice(list(groups))
        if len(groups[key]) > 1:
            test.extend(groups.pop(key))
    fold_of = {n.key: i % NUM_FOLDS for i, members in enumerate(groups.values()) for n in members}
    test_keys = {n.key for n in test}
    table: FoldTable = {}
    for name in listing:
        if name.key in test_keys:
            table[name.key] = ["test"] * NUM_FOLDS
        else:
            table[name.key] = ["valid" if fold_of.get(name.key, -1) == f else "train" for f in range(NUM_FOLDS)]
    return table


def fold_tables(names: Sequence[PerformanceName], label_keys: Iterable[str]) -> dict[str, FoldTable]:
    keys = list(label_keys)
    return {"performer4fold": performer_folds(names, keys), "composition4fold": composition_folds(names, keys)}


def parse_split(spec: str) -> tuple[str, int, str]:
    """'performer4fold:0:train' -> (scheme, fold, split); ValueError with one line otherwise."""
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in FOLD_SCHEMES or not parts[1].isdigit() or parts[2] not in SPLITS \
            or not 0 <= int(parts[1]) < NUM_FOLDS:
        raise ValueError(f"expected SCHEME:FOLD:SPLIT with SCHEME one of {', '.join(FOLD_SCHEMES)}, FOLD 0-"
                         f"{NUM_FOLDS - 1} and SPLIT one of {', '.join(SPLITS)}, got {spec!r}")
    return parts[0], int(parts[1]), parts[2]
