"""The terminal report: verdict first, then explanations, then each check's findings and tables.

Everything is built from rich `Text` and `Table` objects (never markup strings), so text from the report
cannot be mistaken for style tags, and the same renderables print as plain text when the console is not a
terminal. The caller passes the `Console`; tests give one writing to a StringIO without colour.

`compact=True` is the CI-sized form (what `parity check` prints outside a terminal unless `--verbose`): the
verdict, the explanations without their evidence lists (counted per check instead), the check summary, and of
each check only its blocking findings and the table rows it marked bad or warned about; passing checks add
nothing. A passing run fits in about 25 lines.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.reports.progress import LineProgress, progress
from percepiano_parity.reports.view import (
    MISSING,
    CheckView,
    ExplanationView,
    ReportView,
    TableView,
    view_of,
)

__all__ = ["LineProgress", "progress", "render_console", "render_table"]

MAX_TABLE_ROWS = 40
MAX_FINDINGS = 25
MAX_TEXT_WIDTH = 32
# the compact form: at most this many unexplained findings, blocking findings and marked rows per table
COMPACT_UNEXPLAINED = 10
COMPACT_FINDINGS = 10
COMPACT_ROWS = 15

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
TONE_STYLE = {"bad": "red", "warn": "yellow", "good": "green"}
STATUS_STYLE = {"failed": "bold red", "passed": "green", "skipped": "dim", "waived": "magenta"}


def _sev(severity: Severity) -> Text:
    return Text(severity.label.upper(), style=SEVERITY_STYLE.get(severity, ""))


def render_console(report: Report | ReportView, fail_on: Severity | str | None, console: Console, *,
                   compact: bool = False) -> None:
    """Print the report (or its view) on `console`; `compact` for the CI-sized form (see the module
    docstring)."""
    view = view_of(report, fail_on)
    summary = view.summary
    verdict = Text()
    verdict.append(" EQUIVALENT " if summary.equivalent else " MISMATCH ",
                   style="bold white on green" if summary.equivalent else "bold white on red")
    verdict.append(f"  {view.variant}  ", style="bold")
    verdict.append(summary.counts_line())
    console.print(verdict)
    _explanations(view, console, compact)
    _unexplained(view, console, compact)
    _check_summary(view, console)
    for check in view.checks:
        if check.skipped:
            continue
        if compact:
            _compact_check(check, console)
        else:
            _check(check, console)
    _skipped(view, console)
    _drift(view, console)
    _subjects(view, console, compact)
    if not compact:
        _parts(view, console)
    if compact:
        console.print(Text("(failing rows only; --verbose prints every table, report.md holds them all)",
                           style="dim"))


def _subjects(view: ReportView, console: Console, compact: bool = False) -> None:
    if not view.subjects:
        return
    console.print()
    console.print(Rule(Text("Subjects", style="bold"), align="left"))
    for subject in view.subjects:
        line = Text(f"{subject.label}: ", style="bold")
        line.append(subject.source or MISSING)
        if subject.revision:
            line.append(f" @ {subject.revision}", style="dim")
        console.print(line)
        if compact and subject.shims:
            console.print(Text(f"  {len(subject.shims)} shim{'s' if len(subject.shims) != 1 else ''}: "
                               + ", ".join(name for name, _ in subject.shims), style="dim"))
        for name, reason in () if compact else subject.shims:
            console.print(Text(f"  shim {name}" + (f": {reason}" if reason else ""), style="dim"))
        for warning in subject.warnings:
            console.print(Text(f"  warning: {warning}", style="yellow"))


def _parts(view: ReportView, console: Console) -> None:
    """The tables of the report's parts that their labels mark for the console (`view.PARTS`)."""
    for part in view.parts.values():
        if part.console:
            console.print()
            console.print(Rule(Text(part.title, style="bold"), align="left"))
            for table in part.console:
                _table(table, console)


def _explanations(view: ReportView, console: Console, compact: bool = False) -> None:
    if not view.explanations:
        return
    console.print()
    console.print(Rule(Text(f"Explanations ({len(view.explanations)})", style="bold"), align="left"))
    for e in view.explanations:
        console.print(_explanation_panel(e, compact))


def _explanation_panel(e: ExplanationView, compact: bool = False) -> Panel:
    title = Text()
    title.append(e.id, style="bold")
    title.append("  ")
    title.append_text(_sev(e.severity))
    if e.waived:
        title.append("  WAIVED", style="magenta")
    title.append(f"  {e.title}")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    facts = Text(f"root level {e.root_level or MISSING} · first divergent op {e.first_divergent_op or MISSING} · ")
    facts.append(e.fix_line, style="yellow" if e.fix_failed else "")
    if e.quirk:
        facts.append(" · the original's own quirk")
    grid.add_row("", facts)
    if e.waived:
        grid.add_row("waived", Text(e.waiver_reason))
    grid.add_row("original", Text(e.original_does))
    grid.add_row("replica", Text(e.replica_does))
    grid.add_row("effect", Text(e.effect))
    for key, value in e.measured:
        grid.add_row("", Text(f"{key}: {value}"))
    grid.add_row("fix", Text(e.fix))
    if e.original_refs:
        grid.add_row("see", Text(", ".join(e.original_refs)))
    evidence = Text()
    if compact:
        evidence.append(", ".join(f"{check} {len(items)}" for check, items in e.evidence_groups))
        evidence.append("  (listed in report.md; --verbose prints them)", style="dim")
    else:
        for i, item in enumerate(e.evidence):
            if i:
                evidence.append("\n")
            evidence.append(item.key)
            if item.finding is not None:
                evidence.append(f"  {item.finding.message}", style="dim")
    grid.add_row(f"evidence ({len(e.evidence)})", evidence)
    return Panel(grid, title=title, title_align="left", box=box.ROUNDED)


def _unexplained(view: ReportView, console: Console, compact: bool = False) -> None:
    if not view.unexplained:
        return
    console.print()
    console.print(Rule(Text(f"Unexplained findings ({len(view.unexplained)})", style="bold"), align="left"))
    shown = view.unexplained[:COMPACT_UNEXPLAINED] if compact else view.unexplained
    for item in shown:
        line = Text("  ")
        if item.finding is not None:
            line.append_text(_sev(item.finding.severity))
            line.append(" ")
        line.append(item.key)
        if item.finding is not None:
            line.append(f"  {item.finding.message}", style="dim")
        console.print(line)
    if len(shown) < len(view.unexplained):
        console.print(Text(f"  … {len(view.unexplained) - len(shown)} more (see report.md)", style="dim"))


def _check_summary(view: ReportView, console: Console) -> None:
    if not view.checks:
        console.print(Text("No checks ran.", style="yellow"))
        return
    table = Table(title="Checks", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("check")
    table.add_column("status")
    for severity, _ in view.checks[0].counts:
        table.add_column(severity.label, justify="right")
    for check in view.checks:
        table.add_row(
            Text(check.id),
            Text(check.status, style=STATUS_STYLE.get(check.status, "")),
            *[Text(str(n) if n else "·") for _, n in check.counts],
        )
    console.print()
    console.print(table)


def _check(check: CheckView, console: Console) -> None:
    title = Text(f"{check.id} ", style="bold")
    title.append(check.status, style=STATUS_STYLE.get(check.status, ""))
    console.print(Rule(title, align="left"))
    if check.reason:
        console.print(Text(check.reason, style="dim"))
    if check.findings:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("location", overflow="fold")
        table.add_column("message", overflow="fold", ratio=1)
        for f in check.findings[:MAX_FINDINGS]:
            sev = _sev(f.severity)
            if f.blocking:
                sev.append(" !", style="bold red")
            table.add_row(sev, Text(f.location), Text(f.message))
        console.print(table)
        if len(check.findings) > MAX_FINDINGS:
            console.print(Text(f"  … {len(check.findings) - MAX_FINDINGS} more findings (see report.md)",
                               style="dim"))
    for table_view in check.tables:
        _table(table_view, console)


def _compact_check(check: CheckView, console: Console) -> None:
    """A check in the CI-sized form: nothing unless it failed; then its blocking findings and the table rows
    it marked bad or warned about."""
    if check.status != "failed":
        return
    findings = check.blocking
    title = Text(f"{check.id} ", style="bold")
    title.append(check.status, style=STATUS_STYLE.get(check.status, ""))
    console.print(Rule(title, align="left"))
    if check.reason:
        console.print(Text(check.reason, style="dim"))
    if findings:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("location", overflow="fold")
        table.add_column("message", overflow="fold", ratio=1)
        for f in findings[:COMPACT_FINDINGS]:
            table.add_row(_sev(f.severity), Text(f.location), Text(f.message))
        console.print(table)
        if len(findings) > COMPACT_FINDINGS:
            console.print(Text(f"  … {len(findings) - COMPACT_FINDINGS} more blocking findings (see report.md)",
                               style="dim"))
    for table_view in check.tables:
        marked = table_view.marked()
        if marked is not None:
            _table(marked, console, limit=COMPACT_ROWS)


def _table(table: TableView, console: Console, *, limit: int = MAX_TABLE_ROWS) -> None:
    """`table` at most `limit` rows of it, leaving out its optional columns while it is wider than the
    console; a note says what was cut."""
    shown = table.head(limit)
    dropped = []
    for optional in shown.optional:
        if _estimated_width(shown.without(dropped)) <= console.width:
            break
        if optional in shown.column_names:
            dropped.append(optional)
    console.print(render_table(shown.without(dropped)))
    note = shown.cut
    if dropped:
        note = "; ".join(filter(None, [note, "narrow console: left out " + ", ".join(dropped)]))
    if note:
        console.print(Text(f"  {note} (see report.md for all)", style="dim"))


def _estimated_width(table: TableView) -> int:
    """What render_table needs: widest cell or header word, plus two spaces of padding, per column."""
    total = 4
    for j, column in enumerate(table.columns):
        cells = max((len(row[j].text) for row in table.rows), default=1)
        words = max(len(word) for word in column.header.split())
        total += max(min(cells, MAX_TEXT_WIDTH), words) + 2
    return total


def render_table(table: TableView) -> Table:
    """A rich Table of the view's table; numeric columns right-justified, status-like cells coloured."""
    out = Table(title=table.title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
    for j, column in enumerate(table.columns):
        # Cells keep their width (long text up to MAX_TEXT_WIDTH); headers wrap at spaces instead.
        width = max((len(row[j].text) for row in table.rows), default=1)
        if column.numeric:
            stacked = Text("\n".join(column.name.split("_")), justify="right")  # narrow header, narrow column
            out.add_column(stacked, justify="right", min_width=width, overflow="fold")
        else:
            out.add_column(column.header, min_width=min(width, MAX_TEXT_WIDTH), overflow="fold")
    for row in table.rows:
        out.add_row(*[Text(cell.text, style=TONE_STYLE.get(cell.tone or "", "")) for cell in row])
    return out


def _skipped(view: ReportView, console: Console) -> None:
    skipped = view.skipped
    if not skipped:
        return
    console.print()
    console.print(Rule(Text(f"Skipped ({len(skipped)})", style="bold"), align="left"))
    for check in skipped:
        console.print(Text(f"  {check.id}: ", style="bold").append(check.reason or "no reason given", style=""))


def _drift(view: ReportView, console: Console) -> None:
    if not view.drift:
        return
    console.print()
    console.print(Rule(Text("Drift since the previous report", style="bold"), align="left"))
    styles = {"new": "red", "gone": "green", "unchanged": "dim"}
    for name, ids in view.drift:
        line = Text(f"  {name} ({len(ids)}): ", style=styles[name])
        line.append(", ".join(ids) if ids else "none")
        console.print(line)
