"""`parity check-features`: test extractors (tests/fixtures/feature_extractors.py) against the original's features of
five real performances; each known difference is named by key and column with its explanation id, in every
report format. The layout comparison itself is also tested on small hand-made layouts (no data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from percepiano_parity.commands.cli import main
from percepiano_parity.compare.features import compare_layouts

EXTRACTORS = Path(__file__).resolve().parents[1] / "fixtures" / "feature_extractors.py"


def _run(cache: Path, name: str, out: Path, capsys) -> tuple[int, dict, dict[str, str]]:
    code = main(["check-features", "--data", str(cache), "--extractor", f"{EXTRACTORS}:{name}",
                 "--report-dir", str(out), "--format", "all"])
    console = capsys.readouterr().out
    texts = {p.name: p.read_text() for p in out.iterdir()}
    texts["console"] = console
    return code, json.loads(texts["report.json"]), texts


def _explanation(report: dict, rule_id: str) -> dict:
    found = [e for e in report["explanations"] if e["id"] == rule_id]
    assert found, [e["id"] for e in report["explanations"]]
    return found[0]


def _in_every_format(texts: dict[str, str], *parts: str) -> None:
    for name, text in texts.items():
        for part in parts:
            assert part in text, (name, part)


# ------------------------------------------------------------------------------------------ layouts, no data


def test_a_missing_key_shifts_every_later_column():
    original = {"a": (0, 1), "section_tempo": (1, 2), "b": (2, 5), "c": (5, 6)}
    candidate = {"a": (0, 1), "b": (1, 4), "c": (4, 5)}
    d = compare_layouts(original, candidate)
    assert (d.missing, d.extra, d.reordered) == (["section_tempo"], [], [])
    assert (d.first_column, d.original_at, d.candidate_at) == (1, "section_tempo[0]", "b[0]")
    assert (d.shifted, d.shift) == (["b", "c"], -1)


def test_reordered_and_resized_keys():
    d = compare_layouts({"a": (0, 1), "b": (1, 2), "c": (2, 4)}, {"b": (0, 1), "a": (1, 2), "c": (2, 5)})
    assert d.reordered == ["a"] and d.width_changed == {"c": (2, 3)} and d.first_column == 0
    assert not compare_layouts({"a": (0, 2)}, {"a": (0, 2)}).differs


# ------------------------------------------------------------------------------------------ real performances


@pytest.mark.original
def test_the_faithful_extractor_is_equivalent(small_real_cache, tmp_path, capsys):
    code, report, _ = _run(small_real_cache, "faithful", tmp_path / "r", capsys)
    assert code == 0 and report["verdict"] == "equivalent"
    rows = report["checks"][0]["tables"]["keys"]
    assert len(rows) == 44 and {r["status"] for r in rows} == {"ok"}  # 39 keys + 5 _unnorm copies, 101 columns
    assert report["settings"]["original_width"] == report["settings"]["replica_width"] == 101


@pytest.mark.original
def test_dropping_section_tempo_names_the_key_and_the_column(small_real_cache, tmp_path, capsys):
    code, report, texts = _run(small_real_cache, "without_section_tempo", tmp_path / "r", capsys)
    assert code == 1
    exp = _explanation(report, "PP-FEAT-MISSING-KEY")
    assert exp["effect"]["first_column"] == 79 and exp["effect"]["keys"] == "section_tempo"
    assert exp["effect"]["replica_at"] == "velocity[0]" and exp["effect"]["shift"] == -1
    assert set(exp["evidence"]) == {"features:features.layout:layout", "features:features.missing_key:section_tempo"}
    assert report["unexplained"] == []
    _in_every_format(texts, "PP-FEAT-MISSING-KEY", "section_tempo", "column 79")


@pytest.mark.original
def test_one_key_fewer_z_scored(small_real_cache, tmp_path, capsys):
    code, report, texts = _run(small_real_cache, "following_rest_raw", tmp_path / "r", capsys)
    assert code == 1
    exp = _explanation(report, "PP-FEAT-NORMALISATION")
    assert exp["effect"]["first_column"] == 4 and "following_rest (column 4: not z-scored)" in exp["effect"]["keys"]
    (finding,) = report["checks"][0]["findings"]
    assert finding["location"] == "following_rest" and finding["evidence"]["how"] == "not-zscored"
    assert finding["evidence"]["original"]["stds"] > 0 and finding["evidence"]["replica"] is None
    _in_every_format(texts, "PP-FEAT-NORMALISATION", "following_rest", "column 4")


@pytest.mark.original
@pytest.mark.parametrize(("name", "how", "keys", "column"), [
    ("drops_unaligned", "dropped", [], None),
    ("unaligned_minus_one", "given other values", ["beat_position", "xml_position"], 7),
])
def test_unaligned_notes_handled_otherwise(small_real_cache, tmp_path, capsys, name, how, keys, column):
    code, report, texts = _run(small_real_cache, name, tmp_path / "r", capsys)
    assert code == 1
    exp = _explanation(report, "PP-FEAT-UNALIGNED-NOTES")
    # two of the five performances have inserted unaligned notes (3 and 1)
    assert exp["effect"]["how"] == how and exp["effect"]["segments_affected"] == 2
    assert exp["effect"]["notes_affected"] == 4
    (finding,) = report["checks"][0]["findings"]
    assert finding["evidence"]["keys"] == keys and finding["evidence"]["first_column"] == column
    _in_every_format(texts, "PP-FEAT-UNALIGNED-NOTES", "unaligned")
    if column is not None:
        _in_every_format(texts, "beat_position", f"column {column}")


@pytest.mark.original
def test_bad_input_is_one_line_and_exit_2(small_real_cache, tmp_path, capsys):
    for args in (["--extractor", f"{EXTRACTORS}:not_a_mapping"], ["--extractor", f"{EXTRACTORS}:nowhere"],
                 ["--extractor", "no_such_module_xyz:f"], ["--extractor", f"{EXTRACTORS}:faithful", "--only", "x_1"]):
        code = main(["check-features", "--data", str(small_real_cache), *args, "--report-dir", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert main(["check-features", "--data", str(tmp_path), "--extractor", f"{EXTRACTORS}:faithful"]) == 2
    assert "not a prepared cache" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
