"""Report writers: each renders the one `view.ReportView` of a `core.report.Report`; none computes anything.
report.json is the Report itself (`Report.to_dict`), every other format its view.

`write_reports` lays the report out once, renders every requested file format to a string first and only then
writes the set atomically, so a failed run never leaves a half-written report directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.reports.atomic import write_all_atomic
from percepiano_parity.reports.console import render_console
from percepiano_parity.reports.html import render_html
from percepiano_parity.reports.json_report import render_json
from percepiano_parity.reports.junit import render_junit
from percepiano_parity.reports.markdown import render_markdown
from percepiano_parity.reports.view import ReportView

FORMATS: frozenset[str] = frozenset({"console", "md", "json", "html", "junit"})
FILE_NAMES: dict[str, str] = {"md": "report.md", "json": "report.json", "html": "report.html", "junit": "junit.xml"}

# format -> writer of (the report, its view)
FILE_RENDERERS: dict[str, Callable[[Report, ReportView], str]] = {
    "md": lambda report, view: render_markdown(view),
    "json": lambda report, view: render_json(report),
    "html": lambda report, view: render_html(view),
    "junit": lambda report, view: render_junit(view),
}


def parse_formats(text: str) -> tuple[str, ...]:
    """'console,md' -> ('console', 'md'); 'all' for every format. ValueError names unknown formats."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"no report format given; choose from {', '.join(sorted(FORMATS))} (or 'all')")
    if "all" in names:
        return ("console", *FILE_NAMES)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(n) for n in dict.fromkeys(unknown))}; "
                         f"choose from {', '.join(sorted(FORMATS))} (or 'all')")
    return tuple(dict.fromkeys(names))


def write_reports(
    report: Report,
    report_dir: str | os.PathLike[str],
    formats: Iterable[str],
    fail_on: Severity | str,
    console: Console | None = None,
) -> list[Path]:
    """Print the console report (if asked) and write the file formats into `report_dir`.

    Returns the paths written, in FILE_NAMES order. All files are rendered before any is written; if one
    fails to render, nothing is written.
    """
    wanted = set(formats)
    unknown = wanted - FORMATS
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(sorted(map(repr, unknown)))}; "
                         f"choose from {', '.join(sorted(FORMATS))}")
    view = ReportView.of(report, fail_on)
    if "console" in wanted:
        render_console(view, None, console if console is not None else Console())
    directory = Path(report_dir)
    rendered = {directory / name: FILE_RENDERERS[fmt](report, view)
                for fmt, name in FILE_NAMES.items() if fmt in wanted}
    if not rendered:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    return write_all_atomic(rendered)


__all__ = [
    "FILE_NAMES",
    "FORMATS",
    "ReportView",
    "parse_formats",
    "render_console",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "write_reports",
]

