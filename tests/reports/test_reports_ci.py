"""Reports for CI logs and for people looking rather than reading: the compact console, a failed fix attempt in
every format, noise floors and settings as tables, each explanation's picture first with its evidence folded,
relative floors and tolerances in the plots, flagged attention heads."""

from __future__ import annotations

import re
from io import StringIO

from reports_fixture import make_report
from rich.console import Console

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.reports.console import render_console
from percepiano_parity.reports.html import render_html
from percepiano_parity.reports.junit import render_junit
from percepiano_parity.reports.markdown import render_markdown

WARNING = Severity.WARNING
FLOORS = {
    "method": "faithful replica, float64 vs float32",
    "batches": 1,
    "levels": {"embedding": {"abs": 4.5e-07, "rel": 2.5e-07}, "beat": {"abs": 3.2e-08, "rel": 1.7e-07}},
    "grads_measured": True,
    "grads": {f"encoder.w{i}": 1e-12 * (i + 1) for i in range(25)},
    "attention": {"attn.beat": 6e-08},
    "loss": 0.0,
}
SETTINGS = {"variant": "han_note", "config": {"note_size": 16, "dropout": 0.2}, "seed": 7, "fail_on": "warning",
            "tolerances": {"min_rel": 1e-6, "reasons": {"min_rel": "float32 LSTM stacks differ by ~1e-6"}},
            "notes": ["first note", "second note"], "mapping_overrides": [["a.weight", "b.weight"]]}


def compact(report: Report, width: int = 120) -> list[str]:
    console = Console(file=StringIO(), width=width, color_system=None, force_terminal=False)
    render_console(report, WARNING, console, compact=True)
    return console.file.getvalue().splitlines()


def passing_report() -> Report:
    report = make_report()
    report.explanations, report.unexplained, report.drift = [], [], None
    for check in report.checks:
        check.findings = []
        if check.status != "skipped":
            check.status = "passed"
        check.tables = {name: [{**row, **{k: ("ok" if k == "status" else "") for k in ("status", "flag") if k in row}}
                               for row in rows] for name, rows in check.tables.items()}  # copies: rows are shared
    return report


def failed_fix_report() -> Report:
    report = make_report()
    explanation: Explanation = report.explanations[1]
    explanation.fix_verified = None
    explanation.effect_measured = {"logits_max_rel": 0.05, "fix_error": "RuntimeError: shapes differ\nat load"}
    return report


# ---------------------------------------------------------------------------------------------- console


def test_compact_console_of_a_passing_run_is_short_and_has_no_tables():
    lines = compact(passing_report())
    assert lines[0].lstrip().startswith("EQUIVALENT")
    assert len(lines) <= 40
    assert not any("Per-level error" in line or "Gradient error" in line for line in lines)
    assert "(failing rows only; --verbose prints every table, report.md holds them all)" in lines


def test_compact_console_of_a_failing_run_starts_with_the_explanations_and_shows_failing_rows_only():
    text = "\n".join(compact(make_report()))
    before = text[:text.index("Explanations (2)")].strip().splitlines()
    assert before[0].lstrip().startswith("MISMATCH") and len(before) <= 2  # the verdict (wrapped), then them
    assert "evidence (2) forward 2" in text  # evidence counted per check, not listed
    assert "forward:forward.mismatch:beat" not in text.split("Checks")[0]
    # the forward table keeps only its failing rows (beat, measure, logits), not embedding / note
    forward = text[text.index("forward failed"):text.index("backward failed")]
    assert "beat" in forward and not re.search(r"^\s+embedding\s", forward, re.M)
    assert "3 of 5 rows marked" in forward
    # the gradient table: the one failing parameter of 46
    backward = text[text.index("backward failed"):]
    assert "note_fc.weight" in backward and "encoder.layers.0" not in backward
    # passing checks print nothing beyond their line in the summary
    assert "attention passed ─" not in text


def test_compact_console_caps_long_lists():
    report = make_report()
    report.checks[2].findings = report.checks[2].findings * 30  # 60 blocking findings in forward
    text = "\n".join(compact(report))
    assert "… 50 more blocking findings (see report.md)" in text


# ---------------------------------------------------------------------------------------------- fix failed


def test_a_failed_fix_attempt_is_shown_in_every_format():
    report = failed_fix_report()
    reason = "fix failed: RuntimeError: shapes differ at load"
    assert reason in "\n".join(compact(report, width=200))
    assert f"- **Fix verified:** {reason}" in render_markdown(report, WARNING)
    page = render_html(report, WARNING)
    assert f'<span class="fix-failed">{reason}</span>' in page
    assert "Fix verified: not tried" not in page
    assert reason in render_junit(report, WARNING)
    # the reason is not repeated among the measured effects; the other measured effects stay
    md = render_markdown(report, WARNING)
    assert "- fix_error:" not in md and "- logits_max_rel: 0.05" in md


def test_renderers_tolerate_new_optional_explanation_fields():
    report = make_report()
    report.explanations[1].effect_measured = {"relation": {"slope": 1.0, "residual": 2e-9}, "new": [1, 2]}
    for render in (render_markdown, render_html, render_junit):
        assert "PP-LAYERNORM-OUTPUT" in render(report, WARNING)
    assert "relation" in "\n".join(compact(report))


# ---------------------------------------------------------------------------------------------- tables


def test_markdown_noise_floors_are_a_table_per_level_and_settings_are_tables():
    report = make_report()
    report.noise_floors, report.settings = FLOORS, SETTINGS
    md = render_markdown(report, WARNING)
    floors = md[md.index("## Noise floors"):md.index("## Checks")]
    assert "{" not in floors  # no raw JSON
    assert "| level | abs | rel |" in floors and "| `embedding` | 4.5e-07 | 2.5e-07 |" in floors
    assert "### Per gradient" in floors and "<summary>25 rows</summary>" in floors  # long tables folded
    settings = md[md.index("## Settings"):]
    assert "{" not in settings
    assert "### Model configuration" in settings and "| `note_size` | 16 |" in settings
    assert "| `min_rel` | 1e-06 | float32 LSTM stacks differ by ~1e-6 |" in settings
    assert "| `notes` | first note; second note |" in settings
    assert "| `mapping_overrides` | a.weight → b.weight |" in settings


def test_html_noise_floors_and_settings_are_tables_not_json():
    report = make_report()
    report.noise_floors, report.settings = FLOORS, SETTINGS
    page = render_html(report, WARNING)
    tail = page[page.index('id="noise-floors"'):page.index('id="checks"')] + page[page.index('id="settings"'):]
    assert "{" not in tail and "&quot;" not in tail
    assert "<h3>Per level (float64 vs float32 of the faithful computation)</h3>" in tail
    assert "<td><code>embedding</code></td>" in tail and "<h3>Model configuration</h3>" in tail


# ---------------------------------------------------------------------------------------------- html


def test_each_explanation_shows_its_picture_first_and_its_evidence_folded_by_check():
    page = render_html(make_report(), WARNING)
    card = page[page.index('id="expl-pp-layernorm-output"'):]
    card = card[:card.index("</article>")]
    assert card.index("<figure>") < card.index("<dl>") < card.index('<details class="evidence">')
    assert "root level" in card and "The root level beat is tinted." in card
    assert "<summary><strong>Evidence</strong> (2 findings: forward 2)</summary>" in card
    assert "<h4>forward (2)</h4>" in card
    waived = page[page.index('id="expl-pp-dropout"'):]
    assert "<figure>" not in waived[:waived.index("</article>")]  # no level evidence, no level picture


def test_level_plot_draws_relative_errors_against_relative_floors_and_tolerances():
    page = render_html(make_report(), WARNING)
    assert "noise floor (relative)" in page and "tolerance (relative)" in page
    assert "embedding · noise floor (relative): 2e-07" in page  # floor_rel, not the absolute floor 1e-07
    assert "beat · tolerance (relative): 1.5e-06" in page
    levels = page[page.index("Per-level error (max relative difference)"):page.index("Attention entropy")]
    assert "noise floor (relative): 1e-07" not in levels
    # the gradient plot draws absolute differences against the absolute floors: one unit per plot
    assert "note_fc.weight · gradient max absolute error: 1e-05" in page
    assert "note_fc.weight · noise floor (absolute): 1e-07" in page


def test_attention_heads_the_check_warns_about_are_flagged_in_plot_and_table():
    report = make_report()
    heads = [dict(row) for row in report.check("attention").tables["heads"]]  # copies: rows are shared
    heads[1]["flag"] = "shifted"
    report.check("attention").tables["heads"] = heads
    page = render_html(report, WARNING)
    label = re.search(r'fill="#c62828" font-weight="bold"><title>attn\.beat · h1</title>', page)
    assert label is not None  # the flagged head's label is red in the plot
    assert '<td class="warn">shifted</td>' in page  # and marked in the table


def test_junit_lists_the_explanations():
    xml = render_junit(make_report(), WARNING)
    assert "PP-LAYERNORM-OUTPUT [error] at beat: LayerNorm applied to the beat output; fix verified yes" in xml


def test_skipped_check_with_reason_and_unknown_status_tone():
    report = Report("v", [], [CheckResult("recipe", "skipped", reason="no recipe")])
    assert "recipe: no recipe" in "\n".join(compact(report))
