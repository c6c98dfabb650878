"""report.md: the whole report as GitHub-flavoured Markdown, explanations first.

Text from the report is escaped for Markdown tables (pipes, newlines) and for raw HTML, so a report
pasted into a CI summary shows exactly what the run found.
"""

from __future__ import annotations

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.reports.view import (
    MISSING,
    CheckView,
    ExplanationView,
    PartView,
    ReportView,
    TableView,
    view_of,
)


def _text(value: str | None) -> str:
    """Inline text on one line, with "<" escaped so report text can never open an HTML tag."""
    return " ".join((value or MISSING).split()).replace("<", "&lt;")


def _cell(value: str | None) -> str:
    return _text(value).replace("|", "\\|") or MISSING


def _code(value: str | None) -> str:
    text = " ".join((value or MISSING).split())
    if text == MISSING:
        return MISSING
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _code_cell(value: str | None) -> str:
    return _code(value).replace("|", "\\|")


def md_table(table: TableView) -> list[str]:
    """A Markdown table; numeric columns right-aligned; code columns in backticks."""
    lines = [
        "| " + " | ".join(_cell(c.name) for c in table.columns) + " |",
        "|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|",
    ]
    for row in table.rows:
        cells = [_code_cell(cell.text) if column.code and not cell.empty else _cell(cell.text)
                 for column, cell in zip(table.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: Report | ReportView, fail_on: Severity | str | None = None) -> str:
    view = view_of(report, fail_on)
    summary = view.summary
    out: list[str] = [f"# PercePiano parity report — {_code(view.variant)}", ""]
    out += [f"**Verdict: {summary.verdict.upper()}** — {_text(summary.counts_line())}.", ""]

    out += _subjects(view)
    out += _explanations(view)
    out += _unexplained(view)
    out += _drift(view)
    out += _part(view.parts.get("noise_floors"))
    out += _checks(view)
    for name, part in view.parts.items():
        if name != "noise_floors":
            out += _part(part)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def _subjects(view: ReportView) -> list[str]:
    if not view.subjects:
        return []
    out = ["## Subjects", ""]
    for subject in view.subjects:
        out.append(f"- **{_text(subject.label)}**" + (f" ({_text(subject.kind)})" if subject.kind else ""))
        out.append(f"  - source: {_code(subject.source)}")
        out.append(f"  - revision: {_code(subject.revision)}")
        if subject.shims:
            out.append(f"  - shims ({len(subject.shims)}):")
            for name, reason in subject.shims:
                out.append(f"    - {_code(name)}" + (f" — {_text(reason)}" if reason else ""))
        if subject.warnings:
            out.append(f"  - warnings ({len(subject.warnings)}):")
            out += [f"    - {_text(w)}" for w in subject.warnings]
    out.append("")
    return out


def _explanations(view: ReportView) -> list[str]:
    out = ["## Explanations", ""]
    if not view.explanations:
        return out + ["No deviation was diagnosed.", ""]
    for e in view.explanations:
        out += _explanation(e)
    return out


def _explanation(e: ExplanationView) -> list[str]:
    marker = " *(waived)*" if e.waived else ""
    out = [f"### {_code(e.id)} — {_text(e.title)}{marker}", ""]
    if e.waived:
        out += [f"> **Waived:** {_text(e.waiver_reason)}", ""]
    out += [
        f"- **Severity:** {e.severity.label}",
        f"- **Root level:** {_code(e.root_level)}",
        f"- **First divergent op:** {_code(e.first_divergent_op)}",
        f"- **Fix verified:** {_text(e.fix_status)}",
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
    if e.measured:
        out.append("**Measured effect:**")
        out += [f"- {_text(k)}: {_text(v)}" for k, v in e.measured]
        out.append("")
    out += [f"**Fix:** {_text(e.fix)}", ""]
    if e.original_refs:
        out.append("**In the original:** " + ", ".join(_code(r) for r in e.original_refs))
        out.append("")
    out.append(f"**Evidence** ({len(e.evidence)} finding{'s' if len(e.evidence) != 1 else ''}):")
    for item in e.evidence:
        detail = f" — {item.finding.severity.label}: {_text(item.finding.message)}" if item.finding else ""
        out.append(f"- {_code(item.key)}{detail}")
    out.append("")
    return out


def _unexplained(view: ReportView) -> list[str]:
    if not view.unexplained:
        return []
    out = ["## Unexplained findings", "", "No rule explains these findings:", ""]
    for item in view.unexplained:
        detail = f" — {item.finding.severity.label}: {_text(item.finding.message)}" if item.finding else ""
        out.append(f"- {_code(item.key)}{detail}")
    return out + [""]


def _drift(view: ReportView) -> list[str]:
    if not view.drift:
        return []
    out = ["## Drift since the previous report", ""]
    for name, ids in view.drift:
        shown = ", ".join(_code(i) for i in ids) if ids else "none"
        out.append(f"- **{name.capitalize()}** ({len(ids)}): {shown}")
    return out + [""]


def _part(part: PartView | None) -> list[str]:
    """A part of the report (noise floors, settings, run) under its heading: its plain values first, then
    one table per nested mapping under a ### title; long tables folded."""
    if part is None:
        return []
    out = [f"## {part.title}", ""]
    for table in part.tables:
        lines = md_table(table)
        if table.title:
            out += [f"### {_text(table.title)}", ""]
        if table.fold:
            out += ["<details>", f"<summary>{len(table.rows)} rows</summary>", "", *lines, "", "</details>", ""]
        else:
            out += [*lines, ""]
    return out


def _checks(view: ReportView) -> list[str]:
    out = ["## Checks", ""]
    if view.checks_table is None:
        return out + ["No checks ran.", ""]
    out += md_table(view.checks_table) + [""]
    for c in view.checks:
        out += _check(c)
    return out


def _check(check: CheckView) -> list[str]:
    out = [f"### {_code(check.id)} — {_text(check.status)}", ""]
    if check.reason:
        out += [f"*{'Skipped' if check.skipped else 'Note'}:* {_text(check.reason)}", ""]
    if check.findings_table is not None:
        out += ["**Findings**", "", *md_table(check.findings_table), ""]
    elif not check.skipped:
        out += ["No findings.", ""]
    for table in check.tables:
        out += [f"#### {_text(table.title)} ({_code(table.name)})", "", *md_table(table), ""]
    return out
