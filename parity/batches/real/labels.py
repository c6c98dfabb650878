"""The label files: which one a run reads (fingerprints of both), which of the cache's label sets a path
names, and how two label files differ.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.splits import parse_split

# ----------------------------------------------------------------------------------------------------------
# Which label file a run reads: fingerprints of both PercePiano label files and the key/value differences between
# the replica's and the original's intended one (`labels/` per the original's README).

LABEL_NAME = "label_2round_mean_reg_19_with0_rm_highstd0.json"


INTENDED_LABEL_FILE = f"labels/{LABEL_NAME}"


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_data_roots() -> list[Path]:
    """Where label files may be found: $PERCEPIANO_DATA, then ../shared/percepiano-data next to the project."""
    roots = []
    if os.environ.get("PERCEPIANO_DATA"):
        roots.append(Path(os.environ["PERCEPIANO_DATA"]))
    for folder in Path(__file__).resolve().parents:  # a source checkout beside ../shared
        shared = folder / "shared" / "percepiano-data"
        if shared.is_dir():
            roots.append(shared)
            break
    return roots


def resolve_label_file(path: str, roots: Sequence[str | Path]) -> Path | None:
    """A label path as a run would resolve it. Absolute paths stand alone; relative ones are tried against each
    root as given (a checkout root holds `labels/X` and the repository-root `X`); in a percepiano-data folder
    the repository-root files live under `labels/repo-root/`."""
    p = Path(path)
    if p.is_absolute():
        return p if p.is_file() else None
    for root in map(Path, roots):
        for candidate in (root / p, root / "labels" / "repo-root" / p.name if len(p.parts) == 1 else None):
            if candidate is not None and candidate.is_file():
                return candidate
    return None


def compare_label_files(replica_file: str | Path, original_file: str | Path, num_label: int = 19
                        ) -> dict[str, Any]:
    """Key and value differences between two label JSONs (key -> list of numbers)."""
    mine, theirs = (json.loads(Path(f).read_text()) for f in (replica_file, original_file))
    shared = sorted(set(mine) & set(theirs))
    differ_labels = [k for k in shared if list(mine[k][:num_label]) != list(theirs[k][:num_label])]
    differ_rest = [k for k in shared if list(mine[k][num_label:]) != list(theirs[k][num_label:])]
    return {
        "replica_keys": len(mine), "original_keys": len(theirs), "shared_keys": len(shared),
        "only_in_replica": len(set(mine) - set(theirs)), "only_in_original": len(set(theirs) - set(mine)),
        "differ_in_labels": len(differ_labels), "differ_after_labels": len(differ_rest),
        "examples_only_in_replica": sorted(set(mine) - set(theirs))[:3],
        "examples_differ_in_labels": differ_labels[:3],
        "replica_sha256": sha256_of(replica_file), "original_sha256": sha256_of(original_file),
    }


def label_file_fingerprints(roots: Sequence[str | Path]) -> dict[str, Any]:
    """Fingerprints of both known label files and their differences (for the recorded reference)."""
    out: dict[str, Any] = {}
    files = {name: resolve_label_file(name, roots) for name in (INTENDED_LABEL_FILE, LABEL_NAME)}
    for name, f in files.items():
        if f is not None:
            out[name] = {"sha256": sha256_of(f), "keys": len(json.loads(f.read_text()))}
    if all(files.values()):
        out["comparison"] = compare_label_files(files[LABEL_NAME], files[INTENDED_LABEL_FILE])
    return out


# ----------------------------------------------------------------------------------------------------------
# Which of the cache's label sets a label-file path names, and how two label files differ on real segments.
#
# The cache holds the labels of both PercePiano label files (`label/labels` from labels/, the README's file, and
# `label/repo-root` from the repository root). A run that reads the other file trains the same segments on other
# targets (13 `...Score2...` keys differ) and on other segments (13 `..._Score_...` keys exist only at the root):
# `label_differences` counts that on the split a check feeds, for the label-file finding.


def label_set_for(path: str) -> str | None:
    """"labels" for labels/<name>, "repo-root" for a bare <name> or labels/repo-root/<name>, else None."""
    parts = PurePosixPath(str(path).replace("\\", "/").removeprefix("./")).parts
    if not parts or parts[-1] != LABEL_NAME:
        return None
    if len(parts) >= 2 and parts[-2] == "labels":
        return "labels"
    return "repo-root"


def label_differences(cache: str, split: str, intended: str, used: str, fed: Sequence[str],
                      num_label: int = 19) -> dict[str, Any]:
    """How the `used` label set differs from the `intended` one on the split's prepared segments and on the
    segments a check fed (`fed`); reads the cache's segment files."""
    from percepiano_parity.batches.real.loader import RealData

    data = RealData.open(cache)
    scheme, fold, part = parse_split(split)
    members = [k for k, r in sorted(data.manifest["segments"].items())
               if ((r.get("folds") or {}).get(scheme) or [None] * 4)[fold] == part]
    only_used, only_intended, differ = [], [], []
    for key in members:
        tensors, _ = cache_files.read_tensors(cache_files.segment_path(data.path, key))
        a, b = tensors.get(f"label/{intended}"), tensors.get(f"label/{used}")
        if a is None and b is not None:
            only_used.append(key)
        elif b is None and a is not None:
            only_intended.append(key)
        elif a is not None and b is not None and list(a[:num_label]) != list(b[:num_label]):
            differ.append(key)
    fed_set = set(fed)
    return {
        "split": split, "segments": len(members), "only_in_used_file": len(only_used),
        "only_in_intended_file": len(only_intended), "labels_differ": len(differ),
        "fed": len(fed_set), "fed_labels_differ": sorted(fed_set & set(differ)),
        "examples_labels_differ": differ[:3], "examples_only_in_used_file": only_used[:3],
    }
