"""Where every command's report goes: the folder checked before any work, then the report files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.core.validation import InputError

# ----------------------------------------------------------------------------------------------------------
# The report folder, checked before the audit runs: a folder that cannot be written is refused in one line
# (exit code 2) at the start, not found after minutes of work with the result lost.
#
# Nothing is created: the check walks up to the nearest folder that exists, makes sure every missing part can
# be created there, and writes (then removes) a probe file in it. Report files that exist but cannot be
# replaced (a folder in the place of `report.md`) are refused too.


def check_report_dir(path: str | os.PathLike[str], file_names: Iterable[str] = (), *, label: str = "--report-dir"
                     ) -> None:
    """Refuse (`InputError`) a report folder the report files `file_names` could not be written into."""
    target = Path(path).expanduser()
    existing = target
    while not existing.exists():
        if existing.is_symlink():
            raise InputError(f"{label} {target}: {existing} is a broken symbolic link")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{label} {target}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".parity-probe-", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"{label} {target}: cannot write in {existing}: {exc.strerror or exc}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    if existing == target:
        for name in file_names:
            if (target / name).is_dir():
                raise InputError(f"{label} {target}: {target / name} is a folder; a report file cannot replace it")


# ----------------------------------------------------------------------------------------------------------
# Where every command's report goes: the folder checked before any work, then the report files (atomically,
# first), the console report (CI-sized outside a terminal unless verbose) and the line naming the files.
#
# `parity check`, `parity check-features` and `parity train-compare` share this step, so an unwritable folder is
# refused in one line before minutes of work, and a piped console never costs the files.

CI_WIDTH = 120  # console width outside a terminal when $COLUMNS is not set


def console_width(stream: Any) -> int | None:
    """None on a terminal (rich measures it); elsewhere $COLUMNS, or 120 when it is unset or not a number."""
    if stream.isatty():
        return None
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return CI_WIDTH
    return columns if columns > 0 else CI_WIDTH


def consoles() -> tuple[Any, Any]:
    """(stdout, stderr) rich consoles at the width `console_width` gives each."""
    from rich.console import Console

    return Console(width=console_width(sys.stdout)), Console(stderr=True, width=console_width(sys.stderr))


def check_report_folder(report_dir: str, formats: Sequence[str]) -> None:
    """Refuse, before any work, a folder the asked-for report files could not be written into (InputError)."""
    from percepiano_parity.reports import FILE_NAMES

    files = [f for f in formats if f != "console"]
    if files:
        check_report_dir(report_dir, [FILE_NAMES[f] for f in files])


def emit_report(report: Report, formats: Sequence[str], report_dir: str, fail_on: Severity, out: Any, *,
                verbose: bool = False) -> None:
    """The report files first (a console piped into `head` must not cost them), then the console report,
    then the line that names the files (on stderr when there is no console report)."""
    from percepiano_parity.reports import render_console, write_reports

    files = [f for f in formats if f != "console"]
    try:
        written = write_reports(report, report_dir, files, fail_on) if files else []
    except OSError as exc:
        raise UsageError(f"cannot write reports to {report_dir}: {exc.strerror or exc}") from None
    if "console" in formats:  # CI-sized outside a terminal unless verbose
        render_console(report, fail_on, out, compact=not out.is_terminal and not verbose)
    if written:
        print(f"reports written to {report_dir}: {', '.join(p.name for p in written)}",
              file=sys.stdout if "console" in formats else sys.stderr)
