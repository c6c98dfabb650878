"""Data check: slicing, collate, loss and R2 against the original's outputs (recorded, and live with
PERCEPIANO_ORIGINAL) on >= 1,000 generated cases each; label files; slice regeneration."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from percepiano_parity.batches import data_cases as gen
from percepiano_parity.batches.real import labels as label_files
from percepiano_parity.checks import data_ops as data_check
from percepiano_parity.checks.data_ops import check_label_file
from percepiano_parity.compare import data_ops
from percepiano_parity.core.findings import Severity
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
from percepiano_parity.replica.slicing import SlicingError, make_slices_by_measure
from percepiano_parity.subjects.deviations import get_deviation

ROOT = os.environ.get("PERCEPIANO_ORIGINAL")
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "percepiano-data"
QUICK = {"slicing": 100, "collate": 100, "loss": 100, "validation": 100}


def _locations(result):
    return {f.location for f in result.findings if f.severity >= Severity.WARNING}


def test_recorded_reference_is_small_and_complete():
    path = Path(data_check.__file__).resolve().parents[1] / "data" / data_ops.REFERENCE_FILE
    assert path.stat().st_size < 200_000
    ref = data_ops.load_reference()
    assert ref["counts"]["slicing"] >= 1000 and ref["counts"]["collate"] >= 1000 and ref["counts"]["loss"] >= 1000
    assert "record_data_ops" in ref["generated_by"]


def test_faithful_replica_agrees_with_the_recorded_original():
    result = data_check.run(ORIGINAL_RECIPE)
    assert result.status == "passed", [f.message for f in result.findings]
    assert all(f.severity == Severity.INFO for f in result.findings)
    rows = {r["op"]: r for r in result.tables["data_ops"]}
    assert {op: r["cases"] for op, r in rows.items()} == {
        "slicing": 1000, "collate": 1000, "loss": 1000, "valid_loss": 200, "r2": 1000, "valid_r2": 200}
    assert all(r["differ"] == 0 and r["reference"] == "recorded" for r in rows.values())


@pytest.mark.parametrize("name, location", [
    ("r2-variance-weighted", "r2"), ("loss-on-logits", "loss"), ("loss-bce", "loss"),
    ("other-label-file", "label_file"), ("no-slice-regeneration", "regeneration"),
])
def test_metric_and_data_deviations_are_caught(name, location):
    result = data_check.run(get_deviation(name).recipe(), counts=QUICK)
    assert location in _locations(result)
    kinds = {f.kind for f in result.findings if f.location == location}
    assert kinds == {{"r2": "data.r2", "loss": "data.loss", "label_file": "data.label_file",
                      "regeneration": "data.slicing"}[location]}


def test_training_dynamics_deviations_leave_the_data_ops_alone():
    for name in ("lr-5e-5", "adamw", "clip-1.0", "scheduler-missing", "scheduler-per-epoch"):
        assert not _locations(data_check.run(get_deviation(name).recipe(), counts=QUICK)), name


def test_regeneration_is_measured():
    finding = next(f for f in data_check.run(get_deviation("no-slice-regeneration").recipe(), counts=QUICK).findings
                   if f.location == "regeneration")
    assert finding.metrics["changed_in_epoch_2"] > 0
    assert finding.severity == Severity.WARNING  # PercePiano segments are far shorter than 5000 notes
    short = data_check.run(ORIGINAL_RECIPE.with_(slices_regenerated_each_epoch=False, slice_length=200), counts=QUICK)
    assert next(f for f in short.findings if f.location == "regeneration").severity == Severity.ERROR


def test_slicing_semantics_kept_on_purpose():
    assert make_slices_by_measure(40, [i // 4 for i in range(40)], 5000) == [(0, 40)]
    with pytest.raises(IndexError):  # n == slice length, as in the original
        make_slices_by_measure(8, [i // 2 for i in range(8)], 8)
    with pytest.raises(SlicingError):  # the original would loop forever: a measure of >= slice_length notes
        make_slices_by_measure(52, [0] * 4 + [1] * 4 + [2] * 20 + [m for m in range(3, 9) for _ in range(4)], 8)
    state = random.getstate()
    random.seed(3)
    a = make_slices_by_measure(60, [i // 3 for i in range(60)], 8)
    random.seed(3)
    b = make_slices_by_measure(60, [i // 3 for i in range(60)], 8, rng=random.Random(3))
    random.setstate(state)
    assert a == b and len(a) > 2


def test_generated_cases_cover_the_branches():
    kinds = {c.kind for c in gen.slicing_cases(200)}
    assert kinds == {"short", "exact", "long", "very-long", "real-scale"}
    outcomes = data_ops.slicing_outputs(make_slices_by_measure, 1000)
    assert sum(1 for o in outcomes if o[1] == "IndexError") > 50
    assert sum(1 for o in outcomes if len(o) == 3) > 300  # exactly one slice
    assert sum(1 for o in outcomes if o[0] == 1) > 50  # the random draw of long performances


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/percepiano-data not available")
def test_label_file_fingerprints_from_the_real_files():
    fp = label_files.label_file_fingerprints([SHARED_DATA])
    assert fp[label_files.INTENDED_LABEL_FILE]["keys"] == 1189
    assert fp[label_files.LABEL_NAME]["keys"] == 1202
    c = fp["comparison"]
    assert (c["only_in_replica"], c["only_in_original"], c["differ_in_labels"], c["differ_after_labels"]) == \
        (13, 0, 13, 492)
    assert all("Score2" in k for k in c["examples_differ_in_labels"])
    assert all("_Score_" in k for k in c["examples_only_in_replica"])
    recorded = data_ops.load_reference()["label_files"]
    for name in (label_files.INTENDED_LABEL_FILE, label_files.LABEL_NAME):
        assert recorded[name]["sha256"] == fp[name]["sha256"]
    findings, row = check_label_file(label_files.LABEL_NAME, label_files.INTENDED_LABEL_FILE,
                                                [SHARED_DATA], None)
    assert row["status"] == "mismatch" and findings[0].metrics["differ_in_labels"] == 13
    assert check_label_file(label_files.INTENDED_LABEL_FILE, label_files.INTENDED_LABEL_FILE,
                                       [SHARED_DATA], None)[0] == []


def test_label_file_without_files_uses_recorded_fingerprints(tmp_path):
    findings, row = check_label_file(label_files.LABEL_NAME, label_files.INTENDED_LABEL_FILE, [tmp_path],
                                                data_ops.load_reference())
    assert row["status"].startswith("mismatch (recorded")
    assert findings[0].metrics["replica_keys"] == 1202 and findings[0].metrics["original_keys"] == 1189
    findings, _ = check_label_file("elsewhere/labels.json", label_files.INTENDED_LABEL_FILE, [tmp_path],
                                              data_ops.load_reference())
    assert findings[0].severity == Severity.WARNING


def test_stale_recording_is_reported_not_misread(tmp_path):
    ref = data_ops.load_reference()
    ref["inputs_digest"] = {k: "0" * 16 for k in ref["inputs_digest"]}
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref))
    result = data_check.run(ORIGINAL_RECIPE, reference_path=path)
    assert {f.kind for f in result.findings} == {"data.reference"}


@pytest.mark.slow
@pytest.mark.original
@pytest.mark.skipif(not ROOT, reason="PERCEPIANO_ORIGINAL not set: point it at a PercePiano checkout "
                                     "(e.g. ../shared/percepiano-original) to call the original's data functions")
def test_live_against_the_original_functions():
    from percepiano_parity import original_adapter

    original = original_adapter.load(ROOT)
    result = data_check.run(ORIGINAL_RECIPE, original=original, counts={"validation": 100})
    rows = {r["op"]: r for r in result.tables["data_ops"]}
    assert all(r["reference"] == "original" and r["differ"] == 0 for r in rows.values()), rows
    assert rows["slicing"]["cases"] >= 1000 and rows["collate"]["cases"] >= 1000 and rows["loss"]["cases"] >= 1000
    assert result.status == "passed", [f.message for f in result.findings]
    live = data_check.run(get_deviation("r2-variance-weighted").recipe(), original=original, counts=QUICK)
    assert "r2" in _locations(live)
