"""Writing reports: atomic files, all-or-nothing sets, format parsing, reading report.json back."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from reports_fixture import make_report
from rich.console import Console

from percepiano_parity import reports
from percepiano_parity.core.findings import Severity
from percepiano_parity.reports import FILE_NAMES, FORMATS, parse_formats, write_reports
from percepiano_parity.reports.atomic import write_all_atomic, write_atomic
from percepiano_parity.reports.json_report import load_report_json


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_atomic_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "report.md"
    write_atomic(target, "x" * 10_000)
    write_atomic(target, "short\n")
    assert target.read_text() == "short\n"
    write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert listing(tmp_path) == ["report.md"]


def test_write_atomic_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["report.md"]


def test_write_all_atomic_writes_nothing_when_one_value_is_bad(tmp_path):
    with pytest.raises(TypeError):
        write_all_atomic({tmp_path / "a.md": "fine", tmp_path / "b.json": 42})  # type: ignore[dict-item]
    assert listing(tmp_path) == []


def test_write_all_atomic_cleans_up_when_a_temp_write_fails(tmp_path):
    missing_dir = tmp_path / "nope" / "b.json"
    with pytest.raises(OSError):
        write_all_atomic({tmp_path / "a.md": "fine", missing_dir: "x"})
    assert listing(tmp_path) == []


def test_write_reports_writes_every_format(tmp_path):
    console = Console(file=StringIO(), width=120, color_system=None, force_terminal=False)
    out_dir = tmp_path / "out" / "nested"
    paths = write_reports(make_report(), out_dir, FORMATS, Severity.WARNING, console)
    assert [p.name for p in paths] == list(FILE_NAMES.values())
    assert listing(out_dir) == sorted(FILE_NAMES.values())
    assert console.file.getvalue().lstrip().startswith("MISMATCH")
    data = load_report_json(out_dir / "report.json")
    assert data["verdict"] == "mismatch"
    assert (out_dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_write_reports_console_only_writes_no_files(tmp_path):
    console = Console(file=StringIO(), width=120, color_system=None, force_terminal=False)
    assert write_reports(make_report(), tmp_path / "none", ["console"], "warning", console) == []
    assert not (tmp_path / "none").exists()
    assert "MISMATCH" in console.file.getvalue()


def test_a_render_that_raises_leaves_the_previous_set_untouched(tmp_path, monkeypatch):
    write_reports(make_report(), tmp_path, ["md", "json"], Severity.WARNING)
    before = {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)}

    def broken(report, fail_on):
        raise RuntimeError("renderer bug")

    monkeypatch.setitem(reports.FILE_RENDERERS, "html", broken)
    report = make_report(run={"time": "later"})
    with pytest.raises(RuntimeError, match="renderer bug"):
        write_reports(report, tmp_path, ["md", "json", "html", "junit"], Severity.WARNING)
    assert {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)} == before

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        write_reports(report, fresh, ["json", "html"], Severity.WARNING)
    assert not fresh.exists()


def test_write_reports_refuses_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="'pdf'"):
        write_reports(make_report(), tmp_path, ["md", "pdf"], Severity.WARNING)
    assert listing(tmp_path) == []


def test_parse_formats():
    assert parse_formats("console,md") == ("console", "md")
    assert parse_formats(" MD , json,md ") == ("md", "json")
    assert set(parse_formats("all")) == FORMATS
    with pytest.raises(ValueError, match=r"'pdf', 'xml'.*choose from console, html, json, junit, md"):
        parse_formats("md,pdf,xml")
    with pytest.raises(ValueError, match="no report format"):
        parse_formats(" , ")


def test_load_report_json_refuses_what_is_not_a_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a parity report: not JSON"):
        load_report_json(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="no schema_version"):
        load_report_json(bad)
    bad.write_text(json.dumps({"schema_version": "9.0", "verdict": "equivalent", "variant": "x", "checks": []}))
    with pytest.raises(ValueError, match="schema_version 9.0"):
        load_report_json(bad)
    bad.write_text(json.dumps({"schema_version": "1.0"}))
    with pytest.raises(ValueError, match="missing verdict, variant, checks"):
        load_report_json(bad)
