"""pytest plugin: run a parity check from a project's own tests.

Registered as the `parity` pytest11 entry point, so installing percepiano-parity makes the fixture available
(without installing: `pytest -p parity.pytest_plugin`):

    from percepiano_parity.commands.pytest_plugin import assert_parity

    def test_my_replica_is_faithful(parity_check):
        report = parity_check(replica="mypkg.model:build", variant="han-total", batches=1)
        assert_parity(report)                       # fails with the explanations, most serious first

`parity_check(**options)` takes the `parity check` options as keyword arguments (underscores for dashes:
`fail_on="error"`, `max_notes=64`, `compare_to="old/report.json"`, `report_dir=...`), reads [tool.parity] from
the current folder like the command does, runs the same pipeline (`parity.run_check`) and returns the
`core.report.Report`. A usage problem (bad option, missing checkout, failing factory) fails the test with
its one-line message. Reports are written only when `report_dir` is given or `--parity-report-dir` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from percepiano_parity.commands.options import UsageError, resolve_options
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report

__all__ = ["Severity", "assert_parity", "failure_message", "parity_check"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "PercePiano parity checks")
    group.addoption("--parity-report-dir", default=None, metavar="DIR",
                    help="write the reports of every parity_check run into DIR/<test name>/")


def _severity(fail_on: Severity | str) -> Severity:
    return fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))


def failure_message(report: Report, fail_on: Severity | str = Severity.WARNING, *, new_only: bool = False) -> str:
    """What a failed parity assertion says: verdict, then each blocking explanation with its fix, then the
    blocking findings no rule explains."""
    severity = _severity(fail_on)
    blocking = report.blocking(severity)
    keys = {f.key for f in blocking}
    lines = [f"PercePiano parity: {report.variant}: mismatch at or above {severity.label} "
             f"({len(blocking)} blocking finding{'s' if len(blocking) != 1 else ''})"]
    new = set((report.drift or {}).get("new", [])) if new_only else None
    for e in report.explanations:
        if e.waived or not keys.intersection(e.evidence):
            continue
        if new is not None and e.id not in new:
            continue
        where = f" at {e.root_level}" if e.root_level else ""
        lines.append(f"  {e.id} [{e.severity.label}]{where}: {e.title}")
        lines.append(f"      fix: {e.fix}")
    explained = {k for e in report.explanations for k in e.evidence}
    loose = [f for f in blocking if f.key not in explained]
    if loose:
        lines.append("  findings no rule explains:")
        lines.extend(f"    {f.key}: {f.message}" for f in loose[:10])
        if len(loose) > 10:
            lines.append(f"    ... and {len(loose) - 10} more")
    waived = [e.id for e in report.explanations if e.waived]
    if waived:
        lines.append(f"  waived: {', '.join(waived)}")
    lines.append("  (`parity explain ID` describes an explanation; write reports with report_dir=... for the details)")
    return "\n".join(lines)


def assert_parity(report: Report, fail_on: Severity | str = Severity.WARNING, *, new_only: bool = False) -> None:
    """Fail (AssertionError with a readable message) unless the report is equivalent at `fail_on`.

    `new_only`: with a report made with `compare_to=`, only explanations new since then count.
    """
    __tracebackhide__ = True
    if int(report.exit_code(_severity(fail_on), new_only=new_only)) != 0:
        raise AssertionError(failure_message(report, fail_on, new_only=new_only))


@pytest.fixture
def parity_check(request: pytest.FixtureRequest) -> Callable[..., Report]:
    """Call with `parity check` options as keyword arguments; returns the Report (see the module docstring)."""
    from percepiano_parity.commands.check import run_check

    default_dir = request.config.getoption("--parity-report-dir", default=None)

    def run(**options: Any) -> Report:
        __tracebackhide__ = True
        report_dir = options.pop("report_dir", None)
        formats = options.pop("format", None)
        from percepiano_parity.commands.report_output import check_report_dir
        from percepiano_parity.reports import FILE_NAMES, write_reports

        target = report_dir or (Path(default_dir) / request.node.name if default_dir else None)
        wanted = [f for f in (formats or "md,json,html,junit").split(",") if f != "console"]
        try:
            resolved = resolve_options(options)
            if target:  # before the audit, as the command does
                check_report_dir(target, [FILE_NAMES[f] for f in wanted if f in FILE_NAMES], label="report_dir")
            report = run_check(resolved)
        except UsageError as exc:
            pytest.fail(f"parity_check: {exc}", pytrace=False)
        if target:
            write_reports(report, target, wanted, resolved.severity)
        return report

    return run
