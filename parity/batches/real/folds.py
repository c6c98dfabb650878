"""The published folds of PercePiano, in our words, from the original's dataset scripts.

* performer4fold (`pyScoreParser/m2pf_dataset_performerfold.py`, `__main__` and `get_performer_fold_map`, lines
  46-60 and 141-152): each performance gets a performer id (`Score` -> 0, `Score2` -> -1, Beethoven players by
  their index in BEETHOVEN_PERFORMER_IDS, Schubert players by their number). Ids 1 and 2 are the test split of
  every fold; fold f validates on ids 2f+3 and 2f+4; the rest trains. Membership does not depend on any random
  draw, so it is exact.
* composition4fold (`m2pf_dataset_compositionfold.py` `__main__`, lines 115-152): `random.seed(42)`, the listing
  shuffled, performances grouped by name without player, whole groups of 2+ drawn at random into the test split
  until it holds 15%, the remaining groups dealt to folds 0-3 in turn. It depends on the order `os.listdir`
  returned, which the original did not fix: reconstructed here from the sorted listing, assuming nothing draws
  from `random` between the seed and the shuffle (nothing in the feature pipeline does). Marked as such.
* random8fold (the data of `scripts/randomfold/*`): the script that made it is not published; not available.

Only performances whose key is in the label file's keys take part (`domain`, compared in lower case as the
scripts do). A performance outside every split of a fold is `None` there.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from percepiano_parity.batches.real.names import PerformanceName

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
