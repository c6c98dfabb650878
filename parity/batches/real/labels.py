"""Which of the cache's label sets a label-file path names, and how two label files differ on real segments.

The cache holds the labels of both PercePiano label files (`label/labels` from labels/, the README's file, and
`label/repo-root` from the repository root). A run that reads the other file trains the same segments on other
targets (13 `...Score2...` keys differ) and on other segments (13 `..._Score_...` keys exist only at the root):
`label_differences` counts that on the split a check feeds, for the label-file finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.folds import parse_split

LABEL_NAME = "label_2round_mean_reg_19_with0_rm_highstd0.json"


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
