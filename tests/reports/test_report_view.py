"""The report view: one object, laid out once, that every writer renders; the writers agree on what it holds."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from enum import Enum
from io import StringIO

import pytest
from reports_fixture import (
    GRAD_WARNING,
    HEAD_ROWS,
    LEVEL_ROWS,
    LN_ERROR,
    PARAM_ROWS,
    STRUCT_WARNING,
    make_report,
)
from rich.console import Console

from percepiano_parity import reports
from percepiano_parity.core.findings import Severity
from percepiano_parity.reports import view as view_module
from percepiano_parity.reports.console import render_console
from percepiano_parity.reports.html import render_html
from percepiano_parity.reports.junit import render_junit
from percepiano_parity.reports.markdown import render_markdown
from percepiano_parity.reports.view import Labels, PartSpec, ReportView, TableView

WARNING = Severity.WARNING


def console_text(report, *, compact: bool = False, width: int = 120) -> str:
    console = Console(file=StringIO(), width=width, color_system=None, force_terminal=False)
    render_console(report, WARNING, console, compact=compact)
    return console.file.getvalue()


def plain_values(value, path="view"):
    """Every leaf of the view, with where it sits; the view holds only plain data."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from plain_values(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from plain_values(v, f"{path}[{k!r}]")
    elif isinstance(value, list | tuple | frozenset | set):
        for i, v in enumerate(value):
            yield from plain_values(v, f"{path}[{i}]")
    else:
        yield path, value


def test_the_view_is_plain_frozen_data():
    view = ReportView.of(make_report(), WARNING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.variant = "other"  # type: ignore[misc]
    odd = [(path, type(v).__name__) for path, v in plain_values(view)
           if not (v is None or isinstance(v, str | int | float | bool | Enum))]
    assert odd == []  # no Report, Finding or Explanation object handed to a writer


def test_a_writer_renders_a_view_as_it_renders_the_report():
    report = make_report()
    view = ReportView.of(report, WARNING)
    assert render_markdown(view) == render_markdown(report, WARNING)
    assert render_html(view) == render_html(report, WARNING)
    assert render_junit(view) == render_junit(report, WARNING)
    assert console_text(view) == console_text(report)


def test_write_reports_lays_the_report_out_once(tmp_path, monkeypatch):
    calls = []
    original = ReportView.of.__func__

    def counted(cls, report, fail_on):
        calls.append(fail_on)
        return original(cls, report, fail_on)

    monkeypatch.setattr(ReportView, "of", classmethod(counted))
    console = Console(file=StringIO(), width=120, color_system=None, force_terminal=False)
    written = reports.write_reports(make_report(), tmp_path, ["console", "md", "json", "html", "junit"], "error",
                                    console)
    assert [p.name for p in written] == ["report.md", "report.json", "report.html", "junit.xml"]
    assert calls == ["error"]


def test_the_writers_agree_on_the_order_of_explanations_and_checks():
    report = make_report()
    view = ReportView.of(report, WARNING)
    ids = [e.id for e in view.explanations]
    checks = [c.id for c in view.checks]
    assert ids == ["PP-LAYERNORM-OUTPUT", "PP-DROPOUT"]  # error before the waived warning

    def order(text: str, names: list[str]) -> list[str]:
        return sorted(names, key=text.index)

    md, page, console = render_markdown(view), render_html(view), console_text(view)
    junit = ET.fromstring(render_junit(view)).find("testsuite")
    assert order(md, ids) == order(page, ids) == order(console, ids) == ids
    assert [line.split()[0] for line in junit.find("system-out").text.splitlines()] == ids
    assert [c.get("name") for c in junit.findall("testcase")] == checks
    md_checks = re.findall(r"^### `([a-z_]+)` — ", md, flags=re.M)
    page_checks = re.findall(r'<section id="check-([a-z_-]+)">', page)
    assert md_checks == page_checks == checks


def test_a_check_table_is_laid_out_once_columns_first_known_then_seen():
    view = ReportView.of(make_report(), WARNING)
    levels = view.table("forward", "levels")
    assert levels.title == "Per-level error"
    assert levels.column_names[:4] == ["level", "space", "max_abs", "max_rel"]
    numeric = {c.name for c in levels.columns if c.numeric}
    assert {"max_abs", "max_rel", "cosine"} <= numeric and "level" not in numeric and "status" not in numeric
    beat = levels.rows[2]
    status = beat[levels.column_names.index("status")]
    assert (status.text, status.tone) == ("fail", "bad")
    pad = beat[levels.column_names.index("pad_max_abs")]
    assert (pad.text, pad.empty) == ("—", True)
    assert view.table("forward", "nothing") is None


def test_marked_rows_and_cuts_say_what_a_short_form_leaves_out():
    view = ReportView.of(make_report(), WARNING)
    params = view.table("backward", "params")
    top = params.head(10)
    assert top.cut == f"top 10 of {len(PARAM_ROWS)} rows by max rel"
    assert top.texts("param")[0] == "note_fc.weight"  # the worst gradient first
    marked = view.table("forward", "levels").marked()
    failing = [r for r in LEVEL_ROWS if r["status"] == "fail"]
    assert marked.marked_of == len(LEVEL_ROWS) and len(marked.records) == len(failing)
    assert marked.head(1).cut == f"first 1 of {len(failing)} marked rows ({len(LEVEL_ROWS)} in all)"
    assert marked.head(40).cut == f"{len(failing)} of {len(LEVEL_ROWS)} rows marked"
    assert view.table("attention", "heads").flagged_rows("flag") == frozenset(
        i for i, r in enumerate(HEAD_ROWS) if r.get("flag"))
    narrow = params.without(["max_abs", "floor"])
    assert narrow.column_names == ["param", "max_rel", "cosine", "status"] and len(narrow.rows[0]) == 4


def test_a_table_added_to_a_part_shows_in_every_writer_from_its_labels_alone(monkeypatch):
    """One entry in PARTS is all a new table of the run needs; `console=True` adds it to the full console."""
    report = make_report(run={"time": "t", "stage_times": {"forward": 1.5, "diagnosis": 0.25}})
    run = view_module.PARTS["run"]
    monkeypatch.setitem(view_module.PARTS, "run", PartSpec(run.attribute, run.title, {
        **run.labels, "stage_times": Labels("Stage times", "stage", "seconds", console=True)}))
    md = render_markdown(report, WARNING)
    assert "### Stage times\n\n| stage | seconds |\n|---|---:|\n| `forward` | 1.5 |\n| `diagnosis` | 0.25 |" in md
    assert "<h3>Stage times</h3>" in render_html(report, WARNING)
    full, compact = console_text(report), console_text(report, compact=True)
    assert "Stage times" in full and re.search(r"forward\s+1\.5", full)
    assert "Stage times" not in compact


def test_a_nested_mapping_without_labels_still_shows_titled_by_its_key():
    report = make_report(run={"time": "t", "stage_times": {"forward": 1.5}})
    md = render_markdown(report, WARNING)
    assert "### stage_times\n\n| name | value |" in md
    assert "stage_times" not in console_text(report)  # the console prints a part's table only when asked


def test_explanations_carry_their_display_fields():
    report = make_report()
    explanation = report.explanations[1]
    explanation.fix_verified = None
    explanation.effect_measured = {"fix_error": "RuntimeError:\n  shapes", "logits": 0.25}
    explanation.evidence = [GRAD_WARNING.key, LN_ERROR.key, STRUCT_WARNING.key, "later:kind:somewhere"]
    e = next(e for e in ReportView.of(report, WARNING).explanations if e.id == explanation.id)
    assert (e.fix_status, e.fix_failed, e.fix_line) == ("fix failed: RuntimeError: shapes", True,
                                                        "fix failed: RuntimeError: shapes")
    assert e.measured == (("logits", "0.25"),)  # the fix error is the status, not a measured effect
    assert [check for check, _ in e.evidence_groups] == ["structure", "forward", "backward", "later"]
    assert [item.finding.key if item.finding else None for item in e.evidence] == [*explanation.evidence[:3], None]
    assert e.concerns_levels and e.root_level == "beat"


def test_table_view_builds_from_rows_like_the_report_holds_them():
    table = TableView.build("t", "T", [{"a": 1, "b": "x"}, {"a": None, "b": ""}], ["a", "b"], code=["b"])
    assert [(c.name, c.numeric, c.code) for c in table.columns] == [("a", True, False), ("b", False, True)]
    assert [[(c.text, c.empty) for c in row] for row in table.rows] == [
        [("1", False), ("x", False)], [("—", True), ("—", True)]]
