"""`parity check --data CACHE --dataset SPEC`: test datasets (tests/fixtures/user_datasets.py) on the real segments of
a small cache, against the original's loader; each data deviation is named first with the count of segments it
affects, and the original's own loader through the same path is EQUIVALENT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from percepiano_parity.batches.real.loader import RealData
from percepiano_parity.checks.dataset import dataset_check
from percepiano_parity.commands.cli import main
from percepiano_parity.diagnosis import diagnose

DATASETS = Path(__file__).resolve().parents[1] / "fixtures" / "user_datasets.py"
SPLIT = "performer4fold:0:train"  # 4 of the 5 small-cache performances (54-120 notes); _4_08 validates

pytestmark = pytest.mark.original


def _explain(cache: Path, name: str):
    check = dataset_check(RealData.open(cache), SPLIT, f"{DATASETS}:{name}", seed=0)
    explanations, unexplained = diagnose(check.findings)
    assert unexplained == []
    return check, explanations


def test_a_faithful_dataset_passes(small_real_cache):
    check, explanations = _explain(small_real_cache, "faithful")
    assert check.findings == [] and explanations == []
    assert len(check.tables["segments"]) == 4


def test_locations_numbered_from_one(small_real_cache):
    check, explanations = _explain(small_real_cache, "from_one")
    assert explanations[0].id == "PP-DATA-LOCATION-OFFSET" and len(explanations) == 1
    assert explanations[0].effect_measured["segments_affected"] == 4
    assert explanations[0].effect_measured["offsets"] == "+1"
    assert {f.location for f in check.findings} == {"beat", "measure", "voice", "section"}


def test_its_own_folds(small_real_cache):
    _, explanations = _explain(small_real_cache, "own_folds")
    (exp,) = explanations
    assert exp.id == "PP-DATA-FOLDS"
    assert (exp.effect_measured["missing"], exp.effect_measured["extra"]) == (2, 1)
    assert exp.effect_measured["segments_affected"] == 3 and "1 from valid" in exp.replica_does


def test_unaligned_notes_given_minus_one(small_real_cache):
    check, explanations = _explain(small_real_cache, "unaligned_minus_one")
    (exp,) = explanations
    assert exp.id == "PP-DATA-LOCATIONS" and "only the unaligned notes" in exp.replica_does
    # the two train performances with unaligned notes (3 and 1 notes)
    assert exp.effect_measured["segments_affected"] == 2 and exp.effect_measured["notes"] == 8  # beat + measure
    assert {f.location for f in check.findings} == {"beat", "measure"}


def _check(cache: Path, original, spec: str, out: Path) -> tuple[int, dict, dict[str, str]]:
    code = main(["check", "--original", str(original.root), "--data", str(cache), "--dataset", spec, "--batches", "1",
                 "--no-edge-cases", "--no-training-checks", "--model-config", "small", "--report-dir", str(out),
                 "--format", "md,json,html,junit"])
    texts = {p.name: p.read_text() for p in out.iterdir()}
    return code, json.loads(texts["report.json"]), texts


def test_the_original_loader_through_the_same_path_is_equivalent(small_real_cache, original, tmp_path):
    code, report, _ = _check(small_real_cache, original, "original", tmp_path / "r")
    assert code == 0 and report["verdict"] == "equivalent"
    (dataset,) = [c for c in report["checks"] if c["id"] == "dataset"]
    assert dataset["status"] == "passed" and len(dataset["tables"]["segments"]) == 4


def test_fixed_length_is_named_first_in_every_format(small_real_cache, original, tmp_path):
    code, report, texts = _check(small_real_cache, original, f"{DATASETS}:fixed_length", tmp_path / "r")
    assert code == 1
    first = report["explanations"][0]
    assert first["id"] == "PP-DATA-FIXED-LENGTH"
    # 2 shorter segments padded to 64 rows, the 120-note one cut to 64; the 64-note one is untouched
    assert (first["effect"]["segments_affected"], first["effect"]["padded"], first["effect"]["truncated"]) == (3, 2, 1)
    assert first["effect"]["fixed_length"] == 64 and first["effect"]["notes_cut"] == 56
    for name, text in texts.items():
        assert "PP-DATA-FIXED-LENGTH" in text and "3 of 4 segments" in text, name


def test_bad_dataset_is_one_line_and_exit_2(small_real_cache, original, tmp_path, capsys):
    for args in (["--dataset", f"{DATASETS}:without_keys", "--data", str(small_real_cache)],
                 ["--dataset", f"{DATASETS}:faithful"]):
        code = main(["check", "--original", str(original.root), *args, "--batches", "1", "--no-edge-cases",
                     "--no-training-checks", "--model-config", "small", "--report-dir", str(tmp_path / "r")])
        err = "".join(line for line in capsys.readouterr().err.splitlines(keepends=True)
                      if not line.startswith("parity: ["))  # progress lines (one per stage) outside a terminal
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_performances_outside_every_split_are_counted_as_such(small_real_cache, tmp_path):
    """A performance without labels has no fold (None in the manifest, as 13 of the full cache's): it is in no
    split on either side, and the manifest is still read."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(small_real_cache, cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    record = manifest["segments"]["Schubert_D960_mv3_8bars_4_08"]
    record["labels"], record["folds"] = ["repo-root"], {"performer4fold": None, "composition4fold": None}
    (cache / "manifest.json").write_text(json.dumps(manifest))
    check = dataset_check(RealData.open(cache), SPLIT, f"{DATASETS}:own_folds", seed=0)
    (finding,) = check.findings
    assert finding.kind == "dataset.fold_membership" and finding.evidence["extra_from"] == {}
    assert finding.metrics["missing"] == 2
