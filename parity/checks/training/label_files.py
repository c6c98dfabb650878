"""Which label file a run reads: fingerprints of both PercePiano label files and the key/value differences between
the replica's and the original's intended one (`labels/` per the original's README).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.checks.training.data_outputs import (  # noqa: F401
    PREFIX,
    REFERENCE_FILE,
    MetricSide,
    _call_slicing,
    _collate_digest,
    _FixedLogits,
    _float,
    _sigmoid_np,
    collate_outputs,
    inputs_digests,
    load_reference,
    metric_outputs,
    original_collate,
    original_metric_side,
    original_outputs,
    replica_collate,
    replica_metric_side,
    replica_outputs,
    slicing_outputs,
)
from percepiano_parity.core.findings import Finding, Severity

LABEL_NAME = "label_2round_mean_reg_19_with0_rm_highstd0.json"


INTENDED_LABEL_FILE = f"labels/{LABEL_NAME}"
CHECK = "data"


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


def check_label_file(replica_path: str, intended_path: str, roots: Sequence[str | Path],
                     recorded: dict[str, Any] | None, num_label: int = 19) -> tuple[list[Finding], dict[str, Any]]:
    mine = resolve_label_file(replica_path, roots)
    theirs = resolve_label_file(intended_path, roots)
    row: dict[str, Any] = {"replica": replica_path, "original": intended_path,
                           "replica_file": str(mine) if mine else None, "original_file": str(theirs) if theirs else None}
    if mine is not None and theirs is not None:
        if sha256_of(mine) == sha256_of(theirs):
            row.update(status="match", sha256=sha256_of(mine))
            return [], row
        counts = compare_label_files(mine, theirs, num_label)
        row.update(status="mismatch", **{k: v for k, v in counts.items() if not k.startswith("examples")})
        return [_label_finding(replica_path, intended_path, counts, "files")], row
    norm = [str(Path(p.removeprefix("./"))) for p in (replica_path, intended_path)]
    if norm[0] == norm[1]:
        row.update(status="match (by path; files not available)")
        return [], row
    rec = (recorded or {}).get("label_files", {})
    if norm[0] in rec and norm[1] in rec and "comparison" in rec:
        counts = dict(rec["comparison"])
        if norm[0] == INTENDED_LABEL_FILE:  # recorded comparison is root vs labels/: swap sides
            counts = _swap(counts)
        row.update(status="mismatch (recorded fingerprints)", **{k: v for k, v in counts.items()
                                                                 if not k.startswith("examples")})
        return [_label_finding(replica_path, intended_path, counts, "recorded")], row
    row.update(status="unverified")
    return [Finding(CHECK, "data.label_file", "label_file", Severity.WARNING,
                    f"label file {replica_path!r} cannot be checked against the original's {intended_path!r}: "
                    "neither file is available and no recorded fingerprint matches",
                    evidence=row)], row


def _swap(counts: dict[str, Any]) -> dict[str, Any]:
    swapped = dict(counts)
    for a, b in (("replica_keys", "original_keys"), ("only_in_replica", "only_in_original"),
                 ("replica_sha256", "original_sha256")):
        swapped[a], swapped[b] = counts.get(b), counts.get(a)
    return swapped


def _label_finding(replica_path: str, intended_path: str, counts: dict[str, Any], how: str) -> Finding:
    return Finding(
        CHECK, "data.label_file", "label_file", Severity.ERROR,
        f"the run reads {replica_path!r}, not the original's {intended_path!r}: {counts['replica_keys']} vs "
        f"{counts['original_keys']} keys, {counts['only_in_replica']} only in the replica's file, "
        f"{counts['differ_in_labels']} shared keys with different labels, {counts['differ_after_labels']} with a "
        f"different value after the labels" + (" (recorded fingerprints)" if how == "recorded" else ""),
        metrics={k: v for k, v in counts.items() if isinstance(v, int)},
        evidence={"replica_file": replica_path, "original_file": intended_path, "compared": how, **counts})
