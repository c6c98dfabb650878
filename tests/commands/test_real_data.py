"""`parity data prepare` and `parity check --data` on a handful of real PercePiano segments (the shared data), with
the real original: what the cache holds, that nothing is dropped silently, that re-running skips what is done,
that user correspondence files are used, and that the faithful replica is equivalent on real batches while a
data deviation is found."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from percepiano_parity.batches import features as layout
from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.commands.cli import main

DATA = Path(__file__).resolve().parents[3] / "shared" / "percepiano-data"
# short ones (54-70 notes), some with unaligned notes; _4_08 is in the valid split of performer4fold fold 0;
# the Score2 performance has other labels in the repository root's label file
REAL = ("Schubert_D960_mv3_8bars_0_08", "Schubert_D960_mv3_8bars_10_17", "Schubert_D960_mv3_8bars_4_08",
        "Schubert_D935_no.3_4bars_6_9", "Beethoven_WoO80_thema_8bars_11_1", "Schubert_D935_no.3_4bars_Score2_1")
VALID_IN_FOLD_0 = "Schubert_D960_mv3_8bars_4_08"
LABEL = "label_2round_mean_reg_19_with0_rm_highstd0.json"

pytestmark = [pytest.mark.original,
              pytest.mark.skipif(not (DATA / "performances").is_dir(), reason=f"{DATA} not present")]


def _score(key: str) -> str:
    parts = key.split("_")
    return "_".join(parts[:-2]) + "_Score_" + parts[-1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Five real performances with their scores and labels, plus three that must fail: a name that does not
    parse, a performance without a score excerpt, and an unreadable MIDI file."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("performances", "scores/score_xml", "scores/score_midi", "labels/repo-root"):
        (root / sub).mkdir(parents=True)
    for key in REAL:
        os.symlink(DATA / "performances" / f"{key}.mid", root / "performances" / f"{key}.mid")
        for kind, ext in (("score_xml", "musicxml"), ("score_midi", "mid")):
            link = root / "scores" / kind / f"{_score(key)}.{ext}"
            if not link.exists():  # two performances may share a score excerpt
                os.symlink(DATA / "scores" / kind / link.name, link)
    for rel in (f"labels/{LABEL}", f"labels/repo-root/{LABEL}"):
        shutil.copy(DATA / rel, root / rel)
    (root / "performances" / "notes.mid").write_bytes(b"MThd")
    shutil.copy(DATA / "performances" / f"{REAL[0]}.mid", root / "performances" / "Nowhere_8bars_3_1.mid")
    (root / "performances" / "Schubert_D960_mv3_8bars_99_08.mid").write_bytes(b"not a midi file")
    return root


@pytest.fixture(scope="module")
def cache(data_dir, original, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    assert main(["data", "prepare", "--original", str(original.root), "--data", str(data_dir), "--out", str(out)]) == 0
    return out


def test_every_performance_is_prepared_or_explained(cache):
    manifest = cache_files.read_manifest(cache)
    assert manifest["summary"]["selected"] == 9 and manifest["summary"]["prepared"] == 6
    assert set(manifest["segments"]) == set(REAL)
    failed = {k: (r["stage"], r["reason"]) for k, r in manifest["failed"].items()}
    assert failed["notes"][0] == "name" and "does not follow" in failed["notes"][1]
    assert failed["Nowhere_8bars_3_1"][0] == "score" and "Nowhere_8bars_Score_1.musicxml" in failed["Nowhere_8bars_3_1"][1]
    assert failed["Schubert_D960_mv3_8bars_99_08"][0] == "align" and "cannot read" in failed["Schubert_D960_mv3_8bars_99_08"][1]
    for record in manifest["segments"].values():
        assert record["matched"] >= 0.8 * record["score_notes"]
        assert record["notes"] == record["score_notes"] + record["inserted"]
        assert len(record["segment_sha256"]) == 64 and set(record["inputs"]) >= {"performance", "score_xml"}
    assert {s["name"] for s in manifest["original"]["shims"]} == {"numpy.lib.npyio.save"}


def test_the_measured_layouts_are_the_ones_the_replica_names(cache):
    lists = cache_files.read_manifest(cache)["key_lists"]
    assert {name: entry["width"] for name, entry in lists.items()} == {
        "published-splits": 101, "module-default": 84, "published-splits-perffeatonly": 9}
    for name, known in (("published-splits", "split-scripts-101"), ("module-default", "default-keys-with-unnorm-84"),
                        ("published-splits-perffeatonly", "split-scripts-perffeatonly-9")):
        expected = {k: list(v) for k, v in layout.layout_offsets(layout.LAYOUTS[known]).items()}
        assert lists[name]["key_to_dim"] == expected


def test_segment_files_hold_the_originals_values(cache, data_dir):
    manifest = cache_files.read_manifest(cache)
    stats = manifest["normalisation"]["stats"]
    dims = manifest["key_lists"]["published-splits"]["key_to_dim"]
    labels = json.loads((data_dir / "labels" / LABEL).read_text())
    for key in REAL:
        seg, meta = cache_files.read_tensors(cache_files.segment_path(cache, key))
        raw, _ = cache_files.read_tensors(cache_files.raw_path(cache, key))
        x = seg["input/published-splits"]
        assert x.shape == (manifest["segments"][key]["notes"], 101) and x.dtype == np.float64
        np.testing.assert_array_equal(x[:, dims["midi_pitch_unnorm"][0]], raw["raw/midi_pitch"])
        d = stats["duration"]
        np.testing.assert_allclose(x[:, dims["duration"][0]], (raw["raw/duration"] - d["mean"]) / d["stds"], rtol=1e-12)
        np.testing.assert_array_equal(seg["location/beat"], raw["location/beat"])
        np.testing.assert_array_equal(seg["label/labels"], labels[key])
        assert meta["folds"]["performer4fold"] is not None


def test_rerunning_skips_what_is_done(cache, data_dir, original):
    before = {p.name: p.stat().st_mtime_ns for p in (cache / cache_files.RAW).iterdir()}
    segments = {p.name: p.stat().st_mtime_ns for p in (cache / cache_files.SEGMENTS).iterdir()}
    assert main(["data", "prepare", "--original", str(original.root), "--data", str(data_dir), "--out", str(cache)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (cache / cache_files.RAW).iterdir()} == before
    assert {p.name: p.stat().st_mtime_ns for p in (cache / cache_files.SEGMENTS).iterdir()} == segments


def test_user_correspondence_files_replace_the_alignment(cache, data_dir, original, tmp_path):
    key = REAL[0]
    user = tmp_path / "corresp"
    user.mkdir()
    shutil.copy(cache_files.corresp_path(cache, key), user / f"{key}_infer_corresp.txt")
    out = tmp_path / "cache"
    assert main(["data", "prepare", "--original", str(original.root), "--data", str(data_dir), "--out", str(out),
                 "--corresp", str(user), "--only", key]) == 0
    record = cache_files.read_manifest(out)["segments"][key]
    assert record["alignment"]["method"] == "user correspondence file"
    mine, _ = cache_files.read_tensors(cache_files.raw_path(out, key))
    theirs, _ = cache_files.read_tensors(cache_files.raw_path(cache, key))
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)


def test_check_on_real_segments(cache, original):
    from percepiano_parity.commands.check import exit_code, run_check
    from percepiano_parity.commands.options import resolve_options

    base = {"original": str(original.root), "data": str(cache), "model_config": "small", "batches": 1,
            "edge_cases": False, "training_checks": False}
    options = resolve_options(base, use_config_file=False)
    report = run_check(options)
    assert exit_code(report, options) == 0, [e.id for e in report.explanations]
    assert report.settings["data"]["input_width"] == 101
    assert sorted(report.settings["data"]["segments"][0]) == sorted(k for k in REAL if k != VALID_IN_FOLD_0)
    options = resolve_options({**base, "deviation": "features-78"}, use_config_file=False)
    report = run_check(options)
    assert exit_code(report, options) == 1
    assert report.explanations[0].id == "PP-INPUT-FEATURES"


def test_data_option_errors_are_one_line(data_dir, cache, original, capsys):
    from percepiano_parity.commands.options import UsageError, resolve_options

    assert main(["check", "--data", str(data_dir), "--original", str(original.root)]) == 2
    err = capsys.readouterr().err
    assert "not a prepared cache" in err and "parity data prepare" in err and len(err.strip().splitlines()) == 1
    assert main(["check", "--data", str(cache), "--data-split", "random8fold:0:train"]) == 2
    assert "SCHEME:FOLD:SPLIT" in capsys.readouterr().err
    with pytest.raises(UsageError, match="needs a live original"):
        resolve_options({"data": str(cache)}, use_config_file=False, environ={})
    with pytest.raises(UsageError, match="--max-notes cannot be combined with --data"):
        resolve_options({"data": str(cache), "max_notes": 20, "original": str(original.root)}, use_config_file=False)


def test_a_label_file_finding_counts_the_real_segments_it_changes(cache):
    from percepiano_parity.batches.canonical import CanonicalBatch
    from percepiano_parity.batches.real.labels import label_set_for
    from percepiano_parity.commands.check import add_real_label_evidence
    from percepiano_parity.core.findings import Finding, Severity
    from percepiano_parity.core.options import CheckOptions
    from percepiano_parity.core.report import CheckResult, Report

    assert label_set_for(f"labels/{LABEL}") == "labels" and label_set_for(LABEL) == "repo-root"
    assert label_set_for(f"./labels/repo-root/{LABEL}") == "repo-root" and label_set_for("other.json") is None
    finding = Finding("data", "data.label_file", "label_file", Severity.ERROR, "another label file",
                      evidence={"replica_file": LABEL, "original_file": f"labels/{LABEL}"})
    report = Report("han-total", [], [CheckResult("data", "failed", [finding])])
    from percepiano_parity.batches.real.loader import RealData

    batches = RealData.open(cache).batches(1, 0)
    add_real_label_evidence(report, CheckOptions(data=str(cache)), batches)
    real = finding.evidence["real_data"]
    assert real["segments"] == 5 and real["labels_differ"] == 1 and real["only_in_used_file"] == 0
    assert real["fed_labels_differ"] == ["Schubert_D935_no.3_4bars_Score2_1"]
    add_real_label_evidence(report, CheckOptions(), [CanonicalBatch(())])  # without --data: nothing to add
