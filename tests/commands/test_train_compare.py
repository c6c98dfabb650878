"""`parity train-compare` on the small real cache (one epoch, small model; the 2-epoch figures on the full cache are
in the README): the faithful replica's curves equal the original's within the measured noise, lr 5e-5 parts at
the first epoch, and the HTML report draws both curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from percepiano_parity.commands.cli import main

pytestmark = pytest.mark.original


def _run(cache: Path, original, out: Path, *extra: str) -> tuple[int, dict, str]:
    code = main(["train-compare", "--original", str(original.root), "--data", str(cache), "--epochs", "1",
                 "--model-config", "small", "--report-dir", str(out), "--format", "json,html", *extra])
    return code, json.loads((out / "report.json").read_text()), (out / "report.html").read_text()


def test_faithful_replica_trains_like_the_original(small_real_cache, original, tmp_path):
    code, report, html = _run(small_real_cache, original, tmp_path / "r")
    assert code == 0 and report["verdict"] == "equivalent", report["checks"][0]["findings"]
    (row,) = report["checks"][0]["tables"]["epochs"]
    assert row["original train_loss"] == pytest.approx(row["replica train_loss"], rel=1e-6)
    assert row["original valid_loss"] == pytest.approx(row["replica valid_loss"], rel=1e-6)
    assert row["original s"] > 0 and row["replica s"] > 0
    assert "Learning curves" in html


def test_a_doubled_learning_rate_parts_at_the_first_epoch(small_real_cache, original, tmp_path):
    code, report, html = _run(small_real_cache, original, tmp_path / "r", "--deviation", "lr-5e-5")
    assert code == 1
    first = report["explanations"][0]
    assert first["id"] == "PP-OUTCOME-PARTED" and first["effect"]["first_epoch"] == 1
    assert "valid_loss" in first["effect"]["what"]
    for text in ("Learning curves: valid loss", "original · epoch 1", "replica · epoch 1"):
        assert text in html, text


def test_bad_input_is_one_line_and_exit_2(small_real_cache, original, tmp_path, capsys):
    for args in (["--data", str(tmp_path)], ["--data", str(small_real_cache), "--deviation", "nope"],
                 ["--data", str(small_real_cache), "--epochs", "0"]):
        code = main(["train-compare", "--original", str(original.root), *args, "--report-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"


def test_a_users_replica_trains_through_its_adapter_like_the_original(small_real_cache, original, tmp_path):
    """`--replica` takes the user's model through the adapter of `parity check`: paired by the same forward
    comparison, called through its calling path, stepped with its own configure_optimizers and loss."""
    code, report, _ = _run(small_real_cache, original, tmp_path / "r", "--replica", f"{EXAMPLE}:build")
    assert code == 0 and report["verdict"] == "equivalent", report["checks"][0]["findings"]
    (row,) = report["checks"][0]["tables"]["epochs"]
    assert row["original train_loss"] == pytest.approx(row["replica train_loss"], rel=1e-6)
    assert report["settings"]["replica"] == f"{EXAMPLE}:build"


def test_a_users_replica_with_a_doubled_learning_rate_parts(small_real_cache, original, tmp_path):
    faster = tmp_path / "faster.py"
    faster.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('example_under_test', {str(EXAMPLE)!r})\n"
        "example = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(example)\n\n\n"
        "def build(variant='han-total', config=None):\n"
        "    model, adapter = example.build(variant, config)\n"
        "    model.lr = 5e-5  # the one change: its configure_optimizers reads it\n"
        "    return model, adapter\n")
    code, report, _ = _run(small_real_cache, original, tmp_path / "r", "--replica", f"{faster}:build")
    assert code == 1
    assert report["explanations"][0]["id"] == "PP-OUTCOME-PARTED"


def test_replica_and_deviation_together_are_refused(small_real_cache, original, tmp_path, capsys):
    code = main(["train-compare", "--original", str(original.root), "--data", str(small_real_cache),
                 "--replica", f"{EXAMPLE}:build", "--deviation", "lr-5e-5", "--report-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--replica" in err, err
