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

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.reports._common import (
    as_float,
    blocking_keys,
    coerce_fail_on,
    columns_for,
    drift_lists,
    evidence_by_check,
    failing_rows,
    findings_by_key,
    fmt,
    fmt_fix_status,
    header,
    measured_effects,
    numeric_columns,
    ordered_checks,
    ordered_explanations,
    ordered_findings,
    shim_text,
    status_tone,
    subject_dicts,
    subject_label,
    summarize,
    table_rows,
    table_title,
)
from percepiano_parity.reports.progress import LineProgress, progress

__all__ = ["LineProgress", "progress", "render_console", "render_table"]

MAX_TABLE_ROWS = 40
MAX_FINDINGS = 25
MAX_TEXT_WIDTH = 32
# the compact form: at most this many unexplained findings, blocking findings and marked rows per table
COMPACT_UNEXPLAINED = 10
COMPACT_FINDINGS = 10
COMPACT_ROWS = 15
# Columns a known table can do without on a narrow console, least useful first.
DROP_WHEN_NARROW: dict[tuple[str, str], tuple[str, ...]] = {
    ("forward", "levels"): ("pad_max_abs", "beyond_tol", "space", "max_abs", "floor", "tolerance", "cosine"),
    ("attention", "heads"): ("original_min", "replica_min", "original_max", "replica_max"),
    ("backward", "params"): ("max_abs", "floor", "cosine"),
}

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
TONE_STYLE = {"bad": "red", "warn": "yellow", "good": "green"}
STATUS_STYLE = {"failed": "bold red", "passed": "green", "skipped": "dim", "waived": "magenta"}


def _sev(severity: Severity) -> Text:
    return Text(severity.label.upper(), style=SEVERITY_STYLE.get(severity, ""))


def render_console(report: Report, fail_on: Severity, console: Console, *, compact: bool = False) -> None:
    """Print the report on `console`; `compact` for the CI-sized form (see the module docstring)."""
    fail_on = coerce_fail_on(fail_on)
    summary = summarize(report, fail_on)
    verdict = Text()
    verdict.append(" EQUIVALENT " if summary.equivalent else " MISMATCH ",
                   style="bold white on green" if summary.equivalent else "bold white on red")
    verdict.append(f"  {report.variant}  ", style="bold")
    verdict.append(summary.counts_line())
    console.print(verdict)
    _explanations(report, console, compact)
    _unexplained(report, console, compact)
    _check_summary(report, console)
    blocking = blocking_keys(report, fail_on)
    for check in ordered_checks(report.checks):
        if check.status == "skipped":
            continue
        if compact:
            _compact_check(check, blocking, console)
        else:
            _check(check, blocking, console)
    _skipped(report, console)
    _drift(report, console)
    _subjects(report, console, compact)
    if compact:
        console.print(Text("(failing rows only; --verbose prints every table, report.md holds them all)",
                           style="dim"))


def _subjects(report: Report, console: Console, compact: bool = False) -> None:
    if not report.subjects:
        return
    console.print()
    console.print(Rule(Text("Subjects", style="bold"), align="left"))
    for i, subject in enumerate(subject_dicts(report.subjects)):
        line = Text(f"{subject_label(subject, i)}: ", style="bold")
        line.append(fmt(subject.get("source")))
        revision = subject.get("revision")
        if revision:
            line.append(f" @ {revision}", style="dim")
        console.print(line)
        shims = [shim_text(shim) for shim in subject.get("shims") or []]
        if compact and shims:
            console.print(Text(f"  {len(shims)} shim{'s' if len(shims) != 1 else ''}: "
                               + ", ".join(name for name, _ in shims), style="dim"))
        for name, reason in [] if compact else shims:
            console.print(Text(f"  shim {name}" + (f": {reason}" if reason else ""), style="dim"))
        for warning in subject.get("warnings") or []:
            console.print(Text(f"  warning: {warning}", style="yellow"))


def _explanations(report: Report, console: Console, compact: bool = False) -> None:
    if not report.explanations:
        return
    console.print()
    console.print(Rule(Text(f"Explanations ({len(report.explanations)})", style="bold"), align="left"))
    by_key = findings_by_key(report)
    for e in ordered_explanations(report.explanations):
        console.print(_explanation_panel(e, by_key, compact))


def _explanation_panel(e: Explanation, by_key: Mapping[str, Any], compact: bool = False) -> Panel:
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
    facts = Text(f"root level {fmt(e.root_level)} · first divergent op {fmt(e.first_divergent_op)} · ")
    status = fmt_fix_status(e)
    facts.append(status if status.startswith("fix failed") else f"fix verified {status}",
                 style="yellow" if status.startswith("fix failed") else "")
    if e.quirk:
        facts.append(" · the original's own quirk")
    grid.add_row("", facts)
    if e.waived:
        grid.add_row("waived", Text(e.waiver_reason or "no reason given"))
    grid.add_row("original", Text(e.original_does))
    grid.add_row("replica", Text(e.replica_does))
    grid.add_row("effect", Text(e.effect))
    for key, value in measured_effects(e):
        grid.add_row("", Text(f"{key}: {fmt(value)}"))
    grid.add_row("fix", Text(e.fix))
    if e.original_refs:
        grid.add_row("see", Text(", ".join(e.original_refs)))
    evidence = Text()
    if compact:
        evidence.append(", ".join(f"{check} {len(keys)}" for check, keys in evidence_by_check(e)))
        evidence.append("  (listed in report.md; --verbose prints them)", style="dim")
    else:
        for i, key in enumerate(e.evidence):
            if i:
                evidence.append("\n")
            evidence.append(key)
            finding = by_key.get(key)
            if finding is not None:
                evidence.append(f"  {finding.message}", style="dim")
    grid.add_row(f"evidence ({len(e.evidence)})", evidence)
    return Panel(grid, title=title, title_align="left", box=box.ROUNDED)


def _unexplained(report: Report, console: Console, compact: bool = False) -> None:
    if not report.unexplained:
        return
    by_key = findings_by_key(report)
    console.print()
    console.print(Rule(Text(f"Unexplained findings ({len(report.unexplained)})", style="bold"), align="left"))
    keys = sorted(report.unexplained)
    shown = keys[:COMPACT_UNEXPLAINED] if compact else keys
    for key in shown:
        finding = by_key.get(key)
        line = Text("  ")
        if finding is not None:
            line.append_text(_sev(finding.severity))
            line.append(" ")
        line.append(key)
        if finding is not None:
            line.append(f"  {finding.message}", style="dim")
        console.print(line)
    if len(shown) < len(keys):
        console.print(Text(f"  … {len(keys) - len(shown)} more (see report.md)", style="dim"))


def _check_summary(report: Report, console: Console) -> None:
    checks = ordered_checks(report.checks)
    if not checks:
        console.print(Text("No checks ran.", style="yellow"))
        return
    table = Table(title="Checks", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("check")
    table.add_column("status")
    for severity in sorted(Severity, reverse=True):
        table.add_column(severity.label, justify="right")
    for check in checks:
        counts = [sum(1 for f in check.findings if f.severity == s) for s in sorted(Severity, reverse=True)]
        table.add_row(
            Text(check.id),
            Text(check.status, style=STATUS_STYLE.get(check.status, "")),
            *[Text(str(n) if n else "·") for n in counts],
        )
    console.print()
    console.print(table)


def _check(check: CheckResult, blocking: set[str], console: Console) -> None:
    title = Text(f"{check.id} ", style="bold")
    title.append(check.status, style=STATUS_STYLE.get(check.status, ""))
    console.print(Rule(title, align="left"))
    if check.reason:
        console.print(Text(check.reason, style="dim"))
    findings = ordered_findings(check.findings)
    if findings:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("location", overflow="fold")
        table.add_column("message", overflow="fold", ratio=1)
        for f in findings[:MAX_FINDINGS]:
            sev = _sev(f.severity)
            if f.key in blocking:
                sev.append(" !", style="bold red")
            table.add_row(sev, Text(f.location), Text(f.message))
        console.print(table)
        if len(findings) > MAX_FINDINGS:
            console.print(Text(f"  … {len(findings) - MAX_FINDINGS} more findings (see report.md)", style="dim"))
    for name, raw_rows in check.tables.items():
        rows = table_rows(raw_rows)
        if rows:
            _table(check.id, name, rows, console)


def _compact_check(check: CheckResult, blocking: set[str], console: Console) -> None:
    """A check in the CI-sized form: nothing unless it failed; then its blocking findings and the table rows
    it marked bad or warned about."""
    findings = [f for f in ordered_findings(check.findings) if f.key in blocking]
    tables = []
    for name, raw in check.tables.items():
        rows = table_rows(raw)
        bad = failing_rows(rows)
        if bad:
            tables.append((name, rows, bad))
    if check.status != "failed":
        return
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
    for name, rows, bad in tables:
        _table(check.id, name, bad, console, limit=COMPACT_ROWS, of=len(rows))


def _table(check_id: str, name: str, rows: Sequence[Mapping[str, Any]], console: Console, *,
           limit: int = MAX_TABLE_ROWS, of: int | None = None) -> None:
    """`rows` as a table, at most `limit` of them; `of`: how many rows the whole table has when `rows` are
    only the marked ones (compact form)."""
    shown = list(rows)
    what = "rows" if of is None else f"marked rows ({of} in all)"
    note = "" if of is None else f"{len(rows)} of {of} rows marked"
    if (check_id, name) == ("backward", "params") and len(rows) > limit:
        ranked = sorted(rows, key=lambda r: _rank_value(r.get("max_rel")), reverse=True)
        shown = ranked[:limit]
        note = f"top {limit} of {len(rows)} {what} by max rel"
    elif len(rows) > limit:
        shown = list(rows[:limit])
        note = f"first {limit} of {len(rows)} {what}"
    columns = columns_for(check_id, name, rows)
    dropped = []
    for optional in DROP_WHEN_NARROW.get((check_id, name), ()):
        if _estimated_width(columns, shown) <= console.width:
            break
        if optional in columns:
            columns.remove(optional)
            dropped.append(optional)
    console.print(render_table(table_title(check_id, name), columns, shown))
    if dropped:
        note = "; ".join(filter(None, [note, "narrow console: left out " + ", ".join(dropped)]))
    if note:
        console.print(Text(f"  {note} (see report.md for all)", style="dim"))


def _estimated_width(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> int:
    """What render_table needs: widest cell or header word, plus two spaces of padding, per column."""
    total = 4
    for column in columns:
        cells = max((len(fmt(row.get(column))) for row in rows), default=1)
        words = max(len(word) for word in header(column).split())
        total += max(min(cells, MAX_TEXT_WIDTH), words) + 2
    return total


def _rank_value(value: Any) -> float:
    x = as_float(value)
    if x is None:
        return float("-inf")
    return float("inf") if x != x else x  # nan ranks first: it is the worst


def render_table(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Table:
    """A rich Table of rows; numeric columns right-justified, status-like cells coloured."""
    numeric = numeric_columns(rows, columns)
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
    for j, column in enumerate(columns):
        # Cells keep their width (long text up to MAX_TEXT_WIDTH); headers wrap at spaces instead.
        width = max((len(row[j]) for row in cells), default=1)
        if column in numeric:
            stacked = Text("\n".join(column.split("_")), justify="right")  # narrow header over a narrow column
            table.add_column(stacked, justify="right", min_width=width, overflow="fold")
        else:
            table.add_column(header(column), min_width=min(width, MAX_TEXT_WIDTH), overflow="fold")
    for row, texts in zip(rows, cells, strict=True):
        table.add_row(*[Text(text, style=TONE_STYLE.get(status_tone(row.get(c)) or "", ""))
                        for c, text in zip(columns, texts, strict=True)])
    return table


def _skipped(report: Report, console: Console) -> None:
    skipped = [c for c in ordered_checks(report.checks) if c.status == "skipped"]
    if not skipped:
        return
    console.print()
    console.print(Rule(Text(f"Skipped ({len(skipped)})", style="bold"), align="left"))
    for check in skipped:
        console.print(Text(f"  {check.id}: ", style="bold").append(check.reason or "no reason given", style=""))


def _drift(report: Report, console: Console) -> None:
    lists = drift_lists(report.drift)
    if not lists:
        return
    console.print()
    console.print(Rule(Text("Drift since the previous report", style="bold"), align="left"))
    styles = {"new": "red", "gone": "green", "unchanged": "dim"}
    for name, ids in lists:
        line = Text(f"  {name} ({len(ids)}): ", style=styles[name])
        line.append(", ".join(ids) if ids else "none")
        console.print(line)
