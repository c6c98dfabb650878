"""Data check: the data operations a training run depends on, against the original's own functions.

(a) measure-aligned slicing: the original's `make_slicing_indexes_by_measure` against `replica.slicing` on
    generated cases (slice lengths 3-32 and 5000; segments shorter than, equal to, up to twice and up to six
    times the slice length; measure-number gaps), each side called right after the same `random.seed(...)`,
    comparing the slices, the exception type where one is raised (n == slice length raises IndexError in the
    original) and whether the global `random` state was drawn from;
(b) collate: the original's `FeatureCollate` against `batches.canonical.collate` (packed data, batch_sizes,
    sorted/unsorted indices, zero-padded int64 note locations, labels) on generated batches with sort ties;
(c) loss and R2 on identical predictions: the original's `get_batch_result` (both branches) and
    `get_validation_loss` (sum of batch means / number of samples, `r2_score` uniform average) against the
    candidate Recipe's `loss_fn` and `r2`;
(d) which label file the run reads: fingerprints and key/value differences against the original's intended
    file (`labels/` per the README);
(e) whether slices are regenerated every epoch (the original calls `update_slice_info()` at each epoch start).

Without the original, (a)-(c) compare against `parity/data/data_ops_reference.json`, the original's outputs on
the same generated cases, written by `python -m percepiano_parity.commands.record data-ops --original PATH --out
parity/data/data_ops_reference.json`.

"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.batches import data_cases as gen
from percepiano_parity.batches.real.labels import (
    INTENDED_LABEL_FILE,
    compare_label_files,
    default_data_roots,
    resolve_label_file,
    sha256_of,
)
from percepiano_parity.compare.data_ops import (
    DEFAULT_COUNTS,
    PREFIX,
    _call_slicing,
    inputs_digests,
    load_reference,
    original_outputs,
    replica_outputs,
)
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, Recipe
from percepiano_parity.replica.slicing import make_slices_by_measure
from percepiano_parity.replica.variants import get_variant

CHECK = "data"
FLOAT_RTOL = 1e-6
FLOAT_ATOL = 1e-9
LONGEST_SEGMENT = 413


# =========================================================================================================
# Outputs of one side on the generated cases (JSON-able, so they can be recorded)
# =========================================================================================================


# =========================================================================================================
# The recorded reference
# =========================================================================================================


# =========================================================================================================
# Label files
# =========================================================================================================


# =========================================================================================================
# Slice regeneration
# =========================================================================================================

def regeneration_effect(slicing_fn: Callable[..., Any], n_cases: int = 200, seed: int = gen.DEFAULT_SEED
                        ) -> dict[str, int]:
    """Two epochs of the original's slice table (one random stream, no reseed between epochs): how many long
    performances get different slices in epoch 2."""
    cases = [c for c in gen.slicing_cases(4 * n_cases, seed + 1) if c.kind == "very-long" and c.overlap]
    cases = [c for c in cases if _call_slicing(make_slices_by_measure, c)[1:2] != ["ValueError"]][:n_cases]
    state = random.getstate()
    try:
        random.seed(seed)
        epochs = []
        for _ in range(2):
            table = []
            for c in cases:
                try:
                    table.append(tuple(slicing_fn(c.num_notes, list(c.measures), c.slice_length)))
                except (IndexError, ValueError):
                    table.append(())
            epochs.append(table)
    finally:
        random.setstate(state)
    changed = sum(1 for a, b in zip(*epochs, strict=True) if a != b)
    return {"long_performances": len(cases), "changed_in_epoch_2": changed}


# =========================================================================================================
# The check
# =========================================================================================================

def _float_differs(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return False
    return not math.isclose(float(a), float(b), rel_tol=FLOAT_RTOL, abs_tol=FLOAT_ATOL)


def _first_differences(ref: Sequence[Any], cand: Sequence[Any], floats: bool) -> tuple[int, list[int], float]:
    bad = []
    worst = 0.0
    for i, (a, b) in enumerate(zip(ref, cand, strict=False)):
        if floats:
            if _float_differs(a, b):
                bad.append(i)
                worst = max(worst, abs(float(a) - float(b)) / max(abs(float(a)), 1e-12))
        elif a != b:
            bad.append(i)
    return len(bad), bad[:5], worst


def _op_finding(kind: str, location: str, what: str, n: int, differ: int, examples: list[int], worst: float,
                reference: str, ref_values: list[Any], cand_values: list[Any], severity: Severity = Severity.ERROR
                ) -> Finding:
    detail = f", greatest relative difference {worst:.3g} (up to {FLOAT_RTOL:g} allowed)" if worst else ""
    return Finding(
        CHECK, kind, location, severity,
        f"{what} differs from the original's on {differ} / {n} generated cases ({100 * differ / n:.1f}%){detail}",
        metrics={"cases": n, "differ": differ, "max_rel_diff": worst},
        evidence={"reference": reference, "first_cases": examples,
                  "original": [ref_values[i] for i in examples], "replica": [cand_values[i] for i in examples]})


def compare_outputs(ref: dict[str, Any], cand: dict[str, Any], *, multi_level: bool, reference: str
                    ) -> tuple[list[Finding], list[dict[str, Any]]]:
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    branch = "multi_level" if multi_level else "single"
    plan = [
        ("slicing", "data.slicing", "slicing", "measure-aligned slicing (slices, exception type, RNG use)",
         ref["slicing"], cand["slicing"], False),
        ("collate", "data.collate", "collate", "collate output (packed data, batch sizes, indices, locations, "
         "labels)", ref["collate"], cand["collate"], False),
        ("loss", "data.loss", "loss", f"training loss ({branch} branch of get_batch_result)",
         ref["loss"][branch], cand["loss"]["multi_level"], True),
        ("valid_loss", "data.loss", "valid_loss", "validation loss (sum of batch means / samples)",
         [v[0] for v in ref["validation"]], [v[0] for v in cand["validation"]], True),
        ("r2", "data.r2", "r2", "R2 over the label columns", ref["r2"], cand["r2"], True),
        ("valid_r2", "data.r2", "valid_r2", "validation R2", [v[1] for v in ref["validation"]],
         [v[1] for v in cand["validation"]], True),
    ]
    for op, kind, location, what, a, b, floats in plan:
        n = min(len(a), len(b))
        differ, examples, worst = _first_differences(a, b, floats)
        rows.append({"op": op, "cases": n, "agree": n - differ, "differ": differ, "reference": reference,
                     "max_rel_diff": worst})
        if differ:
            findings.append(_op_finding(kind, location, what, n, differ, examples, worst, reference, a, b))
    return findings, rows


def run(candidate_recipe: Any = None, *, variant: str = "han-total", original: Any = None,
        reference_recipe: Recipe | None = None, data_roots: Sequence[str | Path] | None = None,
        counts: dict[str, int] | None = None, reference_path: str | Path | None = None) -> CheckResult:
    """The data check. `candidate_recipe` is a Recipe (or anything without data settings: then only the
    bundled replica's data operations are checked); `original` an adapter Original or None (recorded)."""
    from percepiano_parity.compare.training import single_thread

    with single_thread():
        return _run(candidate_recipe, variant, original, reference_recipe, data_roots, counts, reference_path)


def _run(candidate_recipe: Any, variant: str, original: Any, reference_recipe: Recipe | None,
         data_roots: Sequence[str | Path] | None, counts: dict[str, int] | None,
         reference_path: str | Path | None) -> CheckResult:
    recipe = candidate_recipe if isinstance(candidate_recipe, Recipe) else None
    reference_recipe = reference_recipe or ORIGINAL_RECIPE
    requested = counts
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    multi_level = get_variant(variant).multi_level is not None
    findings: list[Finding] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    recorded = load_reference(reference_path)
    if original is not None:
        cand = replica_outputs(recipe or ORIGINAL_RECIPE, counts)
        ref = original_outputs(original, counts)
        findings_ops, rows = compare_outputs(ref, cand, multi_level=multi_level, reference="original")
    elif recorded is not None:
        rec_counts = recorded_counts(recorded, requested)
        findings_ops, rows = _against_recorded(recorded, recipe or ORIGINAL_RECIPE, rec_counts, multi_level)
    else:
        findings_ops, rows = [], []
        findings.append(Finding(CHECK, "data.reference", "data_ops", Severity.WARNING,
                                "no original and no recorded reference: slicing, collate and metrics not compared"))
    findings += findings_ops
    if recipe is None:
        rows = [r for r in rows if r["op"] in ("slicing", "collate")]
        findings = [f for f in findings if f.location in ("slicing", "collate", "data_ops")]
    tables["data_ops"] = rows
    if recipe is not None:
        roots = ([original.root] if original is not None else []) + list(data_roots or default_data_roots())
        label_findings, label_row = check_label_file(recipe.label_file, reference_recipe.label_file, roots, recorded)
        findings += label_findings
        tables["label_files"] = [label_row]
        findings += _regeneration(recipe, reference_recipe, original)
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    return CheckResult(CHECK, status, findings, tables=tables)


def recorded_counts(recorded: dict[str, Any], requested: dict[str, int] | None) -> dict[str, int]:
    """Cases to compare against the recording: all of them, or the first PREFIX where fewer were asked for."""
    full = {k: int(v) for k, v in recorded["counts"].items()}
    if not requested:
        return full
    prefix = recorded.get("inputs_digest_prefix", {})
    return {k: PREFIX if requested.get(k, n) <= PREFIX and k in prefix and n >= PREFIX else n
            for k, n in full.items()}


def _against_recorded(recorded: dict[str, Any], recipe: Recipe, counts: dict[str, int], multi_level: bool
                      ) -> tuple[list[Finding], list[dict[str, Any]]]:
    seed = int(recorded.get("seed", gen.DEFAULT_SEED))
    digests = inputs_digests(counts, seed)
    full = {k: int(v) for k, v in recorded["counts"].items()}
    stored = {k: (recorded["inputs_digest"] if counts[k] == full[k] else recorded.get("inputs_digest_prefix", {}))
              .get(k) for k in counts}
    stale = [k for k in counts if stored[k] != digests[k]]
    if stale:
        return [Finding(CHECK, "data.reference", "data_ops", Severity.WARNING,
                        f"the recorded reference cannot be used: the generated {', '.join(stale)} cases differ from "
                        "the recorded ones (numpy changed its streams?); re-record with percepiano_parity.commands.record data-ops",
                        evidence={"stale": stale})], []
    cand = replica_outputs(recipe, counts, seed)
    ref = {
        "slicing": recorded["slicing"][: counts["slicing"]],
        "collate": recorded["collate"][: counts["collate"]],
        "loss": {k: v[: counts["loss"]] for k, v in recorded["loss"].items()},
        "r2": recorded["r2"][: counts["loss"]],
        "validation": recorded["validation"][: counts["validation"]],
    }
    return compare_outputs(ref, cand, multi_level=multi_level, reference="recorded")


def _regeneration(recipe: Recipe, reference: Recipe, original: Any) -> list[Finding]:
    if recipe.slices_regenerated_each_epoch == reference.slices_regenerated_each_epoch:
        return []
    fn = original.data_ops.make_slicing_indexes_by_measure if original is not None else make_slices_by_measure
    effect = regeneration_effect(fn)
    short = recipe.slice_length > LONGEST_SEGMENT and reference.slice_length > LONGEST_SEGMENT
    severity = Severity.WARNING if short else Severity.ERROR
    who = "the original regenerates" if reference.slices_regenerated_each_epoch else "the replica regenerates"
    return [Finding(
        CHECK, "data.slicing", "regeneration", severity,
        f"slices are {'not ' if not recipe.slices_regenerated_each_epoch else ''}regenerated each epoch in the "
        f"replica; {who} them (update_slice_info at every epoch start): {effect['changed_in_epoch_2']} of "
        f"{effect['long_performances']} generated long performances get different slices in epoch 2"
        + (f"; no effect on PercePiano segments (at most {LONGEST_SEGMENT} notes < slice length "
           f"{min(recipe.slice_length, reference.slice_length)})" if short else ""),
        metrics=effect,
        evidence={"original": reference.slices_regenerated_each_epoch,
                  "replica": recipe.slices_regenerated_each_epoch,
                  "source": "train_m2pf.py:288 train_loader.dataset.update_slice_info() every epoch",
                  "slice_length": {"original": reference.slice_length, "replica": recipe.slice_length}})]


# -- which label file a run reads -------------------------------------------------------------------------

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
