"""The writers lay out the same Report: JSON, Markdown, console, HTML and JUnit."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from io import StringIO

import pytest
from reports_fixture import LEVEL_ROWS, SCRIPT_INFO, make_report
from rich.console import Console
from rich.progress import Progress

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import SCHEMA_VERSION, CheckResult, Report
from percepiano_parity.reports.console import progress, render_console, render_table
from percepiano_parity.reports.html import render_html
from percepiano_parity.reports.json_report import render_json, to_jsonable
from percepiano_parity.reports.junit import render_junit
from percepiano_parity.reports.markdown import render_markdown
from percepiano_parity.reports.view import TableView, fmt, table_columns

WARNING = Severity.WARNING


def plain_console(width: int = 120) -> Console:
    return Console(file=StringIO(), width=width, color_system=None, force_terminal=False)


def console_text(report, fail_on=WARNING, width: int = 120) -> str:
    console = plain_console(width)
    render_console(report, fail_on, console)
    return console.file.getvalue()


# ---------------------------------------------------------------------------------------------- common


def test_value_formatting():
    assert fmt(3.14159e-07) == "3.1e-07"
    assert fmt(None) == "—"
    assert fmt(float("nan")) == "nan" and fmt(float("-inf")) == "-inf"
    assert fmt(0.9999999997) == "0.9999999997"  # cosine near 1 keeps the digits that matter
    assert fmt(0.031) == "0.031" and fmt(812) == "812" and fmt(True) == "yes"


def test_table_columns_are_the_union_in_first_seen_order():
    assert table_columns([{"a": 1, "b": 2}, {"c": 3, "a": 4}]) == ["a", "b", "c"]
    assert table_columns([{"a": 1, "b": 2}], leading=("b", "zz")) == ["b", "a"]


# ---------------------------------------------------------------------------------------------- json


def test_json_is_byte_identical_across_renders():
    assert render_json(make_report()) == render_json(make_report())


def test_json_differs_only_in_run():
    one = render_json(make_report(run={"time": "2026-01-01T00:00:00Z", "host": "a"}))
    two = render_json(make_report(run={"time": "2026-02-02T11:11:11Z", "host": "b", "extra": 1}))
    assert one != two
    assert one.split('"run":')[0] == two.split('"run":')[0]  # run is the last section
    a, b = json.loads(one), json.loads(two)
    a.pop("run"), b.pop("run")
    assert a == b


def test_json_has_the_schema_fields_and_no_bare_nan():
    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(render_json(make_report()), parse_constant=no_constants)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["verdict"] == "mismatch"
    assert data["run"]["host"] == "ci-1"
    assert [c["id"] for c in data["checks"]] == [
        "structure", "init", "forward", "backward", "attention", "recipe", "trajectory",
    ]
    for check in data["checks"]:
        assert {"id", "status", "findings"} <= check.keys()
    for expl in data["explanations"]:
        assert {"id", "title", "severity", "evidence"} <= expl.keys()
    grad = next(c for c in data["checks"] if c["id"] == "backward")["findings"][0]
    assert grad["metrics"]["nan_seen"] == "nan" and grad["metrics"]["ratio"] == "inf"
    logits = next(c for c in data["checks"] if c["id"] == "forward")["tables"]["levels"][-1]
    assert logits["max_abs"] == "inf" and logits["max_rel"] == "nan"


def test_jsonable_converts_tuples_sets_and_refuses_unknown_types():
    assert to_jsonable({"a": (1, 2.0), "b": {3, 1}, "c": float("-inf")}) == {"a": [1, 2.0], "b": [1, 3], "c": "-inf"}
    with pytest.raises(TypeError, match=r"\$\.x"):
        to_jsonable({"x": object()})


# ---------------------------------------------------------------------------------------------- markdown


def test_markdown_orders_explanations_before_checks():
    md = render_markdown(make_report(), WARNING)
    assert md.startswith("# PercePiano parity report — `han_note`")
    assert "**Verdict: MISMATCH**" in md.splitlines()[2]
    assert md.index("## Explanations") < md.index("## Checks")
    assert md.index("PP-LAYERNORM-OUTPUT") < md.index("PP-DROPOUT")  # error before (waived) warning
    assert "*(waived)*" in md and "intentional, see docs/deviations.md" in md
    assert md.index("## Unexplained findings") < md.index("## Drift since the previous report") < md.index("## Checks")
    assert "**New** (1): `PP-LAYERNORM-OUTPUT`" in md
    assert "## Noise floors" in md
    assert "tensorboard` — imported for logging only" in md and "checkout has local changes" in md


def test_markdown_lays_out_checks_and_tables():
    md = render_markdown(make_report(), WARNING)
    assert "#### Per-level error (`levels`)" in md
    assert "#### Attention entropy per head (`heads`)" in md
    assert "#### Gradient error per parameter (`params`)" in md
    assert "#### Structure diff (`diff`)" in md
    assert "needs --train-steps > 0" in md  # skipped reason
    assert "\\| missing in original" in md  # pipe escaped inside a table cell
    assert "<script>" not in md and "&lt;script>" in md
    header = next(line for line in md.splitlines() if line.startswith("| level |"))
    assert header.split(" | ")[:4] == ["| level", "space", "max_abs", "max_rel"]
    assert "| note | note | 2.1e-07 | 3.1e-07 | 0.9999999997 |" in md
    assert "| logits | pooled | inf | nan | — |" in md  # missing keys show as a dash


# ---------------------------------------------------------------------------------------------- console


def test_console_is_plain_text_with_verdict_and_explanations_first():
    out = console_text(make_report())
    assert "\x1b" not in out
    assert out.splitlines()[0].lstrip().startswith("MISMATCH")
    assert "4 blocking findings" in out.splitlines()[0]
    first_check = out.index("Per-level error")
    assert out.index("PP-LAYERNORM-OUTPUT") < out.index("PP-DROPOUT") < first_check
    assert "WAIVED" in out
    assert "trajectory: needs --train-steps > 0" in out
    assert "new (1): PP-LAYERNORM-OUTPUT" in out
    assert "<script>alert('x')</script>" in out  # rich markup is not interpreted


def test_console_equivalent_and_tables():
    report = make_report()
    report.checks = [c for c in report.checks if c.id != "forward"]
    out = console_text(report, Severity.ERROR)
    assert out.splitlines()[0].lstrip().startswith("EQUIVALENT")
    assert "Attention entropy per head" in out and "Structure diff" in out
    assert "top 40 of 46" in out  # long gradient table trimmed to the largest errors


def test_console_narrow_drops_optional_columns():
    out = console_text(make_report(), width=80)
    assert "left out" in out and "pad_max_abs" in out
    for line in out.splitlines():
        assert len(line) <= 80


def test_console_numeric_columns_are_right_justified():
    table = render_table(TableView.build("t", "t", [{"name": "a", "value": 1.5}, {"name": "b", "value": None}],
                                         ["name", "value"]))
    assert [c.justify for c in table.columns] == ["left", "right"]


def test_progress_is_one_line_per_step_off_terminal_and_rich_on_terminal():
    console = plain_console()
    with progress(console) as bar:
        ticks = iter([0.0, 1.25, 2.5, 2.5])
        bar.clock = lambda: next(ticks)
        bar.start = 0.0
        task = bar.add_task("forward", total=3)
        bar.advance(task)
        bar.update(task, total=3)  # nothing new: no line
        bar.update(task, description="backward", advance=1)
        bar.add_task("diagnosis")
    assert console.file.getvalue().splitlines() == [
        "parity: [    0.0s] forward",
        "parity: [    1.2s] forward 1/3",
        "parity: [    2.5s] backward 2/3",
        "parity: [    2.5s] diagnosis",
    ]
    terminal = Console(file=StringIO(), width=80, force_terminal=True)
    with progress(terminal) as bar:
        assert isinstance(bar, Progress)
        bar.advance(bar.add_task("x", total=1))


# ---------------------------------------------------------------------------------------------- html


class _TagBalance(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "line", "path"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def test_html_is_self_contained_and_escaped():
    page = render_html(make_report(), WARNING)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page  # no scripts, and the finding's <script> is escaped
    assert "&lt;script&gt;alert(" in page
    assert page.count("<svg") == 4  # three plots, and the picture of the explanation with a root level
    assert "MISMATCH" in page and "PP-LAYERNORM-OUTPUT" in page and "WAIVED" in page
    assert page.index('id="explanations"') < page.index('id="drift"') < page.index('id="checks"')
    parser = _TagBalance()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []


def test_html_plots_use_local_and_cumulative_series_and_marks():
    page = render_html(make_report(), WARNING)
    assert "local (this level alone)" in page and "cumulative (as run)" in page
    assert "noise floor" in page and "tolerance" in page
    assert "top 40 of 46" in page


def test_html_without_tables_has_no_plots():
    report = make_report()
    for check in report.checks:
        check.tables = {}
    page = render_html(report, WARNING)
    assert "<svg" not in page and 'id="plots"' not in page


def test_html_level_plot_falls_back_to_max_rel_and_shows_nan():
    report = make_report()
    rows = [{k: v for k, v in r.items() if k not in ("local_max_rel", "cumulative_max_rel")} for r in LEVEL_ROWS]
    report.check("forward").tables["levels"] = rows
    page = render_html(report, WARNING)
    assert "max rel" in page and "local (this level alone)" not in page
    assert "logits · max rel: nan" in page


# ---------------------------------------------------------------------------------------------- junit


def test_junit_one_testcase_per_check_failures_only_when_blocking():
    root = ET.fromstring(render_junit(make_report(), WARNING))
    suite = root.find("testsuite")
    assert suite.get("name") == "parity.han_note"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "structure", "init", "forward", "backward", "attention", "recipe", "trajectory",
    ]
    assert all(c.get("classname") == "parity" for c in cases)
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"structure", "forward", "backward"}  # recipe is waived, attention only info
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "3", "1")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [c.get("name") for c in skipped] == ["trajectory"]
    assert skipped[0].find("skipped").get("message") == "needs --train-steps > 0"
    forward = next(c for c in cases if c.get("name") == "forward").find("failure")
    assert forward.get("type") == "error" and "measure" in forward.text and "PP-LAYERNORM-OUTPUT" in forward.text


def test_junit_threshold_and_control_characters():
    report = make_report()
    report.checks.append(CheckResult("data", "failed", [
        Finding("data", "data.mismatch", "batch\x00", Severity.ERROR, "bad \x07 byte"),
    ]))
    root = ET.fromstring(render_junit(report, Severity.ERROR))
    suite = root.find("testsuite")
    failed = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed == ["forward", "data"]
    assert suite.get("failures") == "2"
    attention = next(c for c in suite.findall("testcase") if c.get("name") == "attention")
    assert SCRIPT_INFO.message in attention.find("system-out").text  # non-blocking findings, escaped by XML


# ---------------------------------------------------------------------------------------------- robustness


def odd_report():
    return Report(
        variant="bare",
        subjects=[],
        checks=[
            CheckResult("forward", "passed", tables={
                "levels": [{"level": "note"}, {"max_rel": 1e-9, "extra": [1, 2]}, "not a row"],
                "empty": [],
            }),
            CheckResult("custom_check", "passed", tables={"misc": [{"a": None, "b": {"x": 1}}]}),
        ],
    )


def empty_report():
    return Report(variant="none", subjects=[], checks=[])


@pytest.mark.parametrize("writer", ["md", "json", "html", "junit", "console"])
@pytest.mark.parametrize("build", [odd_report, empty_report])
def test_writers_cope_with_sparse_reports(writer, build):
    report = build()
    if writer == "md":
        out = render_markdown(report, WARNING)
        assert "**Verdict: EQUIVALENT**" in out
    elif writer == "json":
        out = render_json(report)
        assert json.loads(out)["drift"] is None
    elif writer == "html":
        out = render_html(report, WARNING)
        assert "EQUIVALENT" in out
    elif writer == "junit":
        out = render_junit(report, WARNING)
        assert ET.fromstring(out).find("testsuite").get("failures") == "0"
    else:
        out = console_text(report)
        assert out.lstrip().startswith("EQUIVALENT")
    if report.checks:
        assert "custom_check" in out
