"""report.md: the whole report as GitHub-flavoured Markdown, explanations first.

Text from the report is escaped for Markdown tables (pipes, newlines) and for raw HTML, so a report
pasted into a CI summary shows exactly what the run found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.reports._common import (
    MISSING,
    blocking_keys,
    coerce_fail_on,
    columns_for,
    drift_lists,
    explained_by,
    findings_by_key,
    fmt,
    fmt_fix_status,
    measured_effects,
    numeric_columns,
    ordered_checks,
    ordered_explanations,
    ordered_findings,
    shim_text,
    subject_dicts,
    subject_label,
    summarize,
    table_rows,
    table_title,
)
from percepiano_parity.reports._sections import FLOOR_LABELS, RUN_LABELS, SETTINGS_LABELS, Labels, sections


def _text(value: Any) -> str:
    """Inline text on one line, with "<" escaped so report text can never open an HTML tag."""
    return " ".join(fmt(value).split()).replace("<", "&lt;")


def _cell(value: Any) -> str:
    return _text(value).replace("|", "\\|") or MISSING


def _code(value: Any) -> str:
    text = " ".join(fmt(value).split())
    if text == MISSING:
        return MISSING
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _code_cell(value: Any) -> str:
    return _code(value).replace("|", "\\|")


def md_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, code: Sequence[str] = ()) -> list[str]:
    """A Markdown table; numeric columns right-aligned; `code` columns in backticks."""
    numeric = numeric_columns(rows, columns)
    lines = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|",
    ]
    for row in rows:
        cells = [_code_cell(row.get(c)) if c in code and row.get(c) is not None else _cell(row.get(c))
                 for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: Report, fail_on: Severity) -> str:
    fail_on = coerce_fail_on(fail_on)
    summary = summarize(report, fail_on)
    out: list[str] = [f"# PercePiano parity report — {_code(report.variant)}", ""]
    out += [f"**Verdict: {summary.verdict.upper()}** — {_text(summary.counts_line())}.", ""]

    out += _subjects(report)
    out += _explanations(report)
    out += _unexplained(report)
    out += _drift(report)
    out += _noise_floors(report)
    out += _checks(report, fail_on)
    out += _settings_and_run(report)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def _subjects(report: Report) -> list[str]:
    if not report.subjects:
        return []
    out = ["## Subjects", ""]
    for i, subject in enumerate(subject_dicts(report.subjects)):
        label = subject_label(subject, i)
        kind = subject.get("kind")
        out.append(f"- **{_text(label)}**" + (f" ({_text(kind)})" if kind else ""))
        out.append(f"  - source: {_code(subject.get('source'))}")
        out.append(f"  - revision: {_code(subject.get('revision'))}")
        shims = list(subject.get("shims") or [])
        if shims:
            out.append(f"  - shims ({len(shims)}):")
            for shim in shims:
                name, reason = shim_text(shim)
                out.append(f"    - {_code(name)}" + (f" — {_text(reason)}" if reason else ""))
        warnings = list(subject.get("warnings") or [])
        if warnings:
            out.append(f"  - warnings ({len(warnings)}):")
            out += [f"    - {_text(w)}" for w in warnings]
    out.append("")
    return out


def _explanations(report: Report) -> list[str]:
    out = ["## Explanations", ""]
    if not report.explanations:
        return out + ["No deviation was diagnosed.", ""]
    by_key = findings_by_key(report)
    for e in ordered_explanations(report.explanations):
        out += _explanation(e, by_key)
    return out


def _explanation(e: Explanation, by_key: Mapping[str, Any]) -> list[str]:
    marker = " *(waived)*" if e.waived else ""
    out = [f"### {_code(e.id)} — {_text(e.title)}{marker}", ""]
    if e.waived:
        out += [f"> **Waived:** {_text(e.waiver_reason) if e.waiver_reason else 'no reason given'}", ""]
    out += [
        f"- **Severity:** {e.severity.label}",
        f"- **Root level:** {_code(e.root_level)}",
        f"- **First divergent op:** {_code(e.first_divergent_op)}",
        f"- **Fix verified:** {_text(fmt_fix_status(e))}",
    ]
    if e.quirk:
        out.append("- **Original's own quirk:** yes (a replica may fix it on purpose)")
    out += [
        "",
        f"**What the original does:** {_text(e.original_does)}",
        "",
        f"**What the replica does:** {_text(e.replica_does)}",
        "",
        f"**Effect:** {_text(e.effect)}",
        "",
    ]
    measured = measured_effects(e)
    if measured:
        out.append("**Measured effect:**")
        out += [f"- {_text(k)}: {_text(v)}" for k, v in measured]
        out.append("")
    out += [f"**Fix:** {_text(e.fix)}", ""]
    if e.original_refs:
        out.append("**In the original:** " + ", ".join(_code(r) for r in e.original_refs))
        out.append("")
    out.append(f"**Evidence** ({len(e.evidence)} finding{'s' if len(e.evidence) != 1 else ''}):")
    for key in e.evidence:
        finding = by_key.get(key)
        detail = f" — {finding.severity.label}: {_text(finding.message)}" if finding else ""
        out.append(f"- {_code(key)}{detail}")
    out.append("")
    return out


def _unexplained(report: Report) -> list[str]:
    if not report.unexplained:
        return []
    by_key = findings_by_key(report)
    out = ["## Unexplained findings", "", "No rule explains these findings:", ""]
    for key in sorted(report.unexplained):
        finding = by_key.get(key)
        detail = f" — {finding.severity.label}: {_text(finding.message)}" if finding else ""
        out.append(f"- {_code(key)}{detail}")
    return out + [""]


def _drift(report: Report) -> list[str]:
    lists = drift_lists(report.drift)
    if not lists:
        return []
    out = ["## Drift since the previous report", ""]
    for name, ids in lists:
        shown = ", ".join(_code(i) for i in ids) if ids else "none"
        out.append(f"- **{name.capitalize()}** ({len(ids)}): {shown}")
    return out + [""]


def _tables(data: Mapping[str, Any], labels: Mapping[str, Labels], heading: str) -> list[str]:
    """A nested mapping as tables (reports._sections): plain values first, then one table per nested
    mapping under a `heading` title; long tables folded."""
    out: list[str] = []
    for section in sections(data, labels):
        table = md_table(section.columns, section.rows, code=section.columns[:1])
        if section.title:
            out += [f"{heading} {_text(section.title)}", ""]
        if section.fold:
            out += ["<details>", f"<summary>{len(section.rows)} rows</summary>", "", *table, "", "</details>", ""]
        else:
            out += [*table, ""]
    return out


def _noise_floors(report: Report) -> list[str]:
    if not report.noise_floors:
        return []
    return ["## Noise floors", "", *_tables(report.noise_floors, FLOOR_LABELS, "###")]


def _checks(report: Report, fail_on: Severity) -> list[str]:
    checks = ordered_checks(report.checks)
    out = ["## Checks", ""]
    if not checks:
        return out + ["No checks ran.", ""]
    summary_rows = [
        {
            "check": c.id,
            "status": c.status,
            "findings": len(c.findings),
            "worst": c.worst().label if c.worst() is not None else None,
            "note": c.reason or None,
        }
        for c in checks
    ]
    out += md_table(["check", "status", "findings", "worst", "note"], summary_rows, code=("check",)) + [""]
    blocking = blocking_keys(report, fail_on)
    covered = explained_by(report)
    for c in checks:
        out += _check(c, blocking, covered)
    return out


def _check(check: CheckResult, blocking: set[str], covered: Mapping[str, list[str]]) -> list[str]:
    out = [f"### {_code(check.id)} — {_text(check.status)}", ""]
    if check.reason:
        out += [f"*{'Skipped' if check.status == 'skipped' else 'Note'}:* {_text(check.reason)}", ""]
    if check.findings:
        rows = [
            {
                "severity": f.severity.label,
                "blocking": f.key in blocking,
                "location": f.location,
                "kind": f.kind,
                "message": f.message,
                "explained by": ", ".join(covered.get(f.key, [])) or None,
            }
            for f in ordered_findings(check.findings)
        ]
        columns = ["severity", "blocking", "location", "kind", "message", "explained by"]
        out += ["**Findings**", "", *md_table(columns, rows, code=("location", "kind")), ""]
    elif check.status != "skipped":
        out += ["No findings.", ""]
    for name, raw_rows in check.tables.items():
        rows = table_rows(raw_rows)
        if not rows:
            continue
        columns = columns_for(check.id, name, rows)
        out += [f"#### {_text(table_title(check.id, name))} ({_code(name)})", "", *md_table(columns, rows), ""]
    return out


def _settings_and_run(report: Report) -> list[str]:
    out: list[str] = []
    for title, data, labels in (("Settings", report.settings, SETTINGS_LABELS), ("Run", report.run, RUN_LABELS)):
        if data:
            out += [f"## {title}", "", *_tables(data, labels, "###")]
    return out
