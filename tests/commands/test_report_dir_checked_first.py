"""The report folder is checked before the audit runs, without creating anything."""

from __future__ import annotations

import pytest

from percepiano_parity.commands.report_output import check_report_dir
from percepiano_parity.core.errors import UsageError


def test_a_folder_that_can_be_made_passes_and_nothing_is_created(tmp_path):
    check_report_dir(tmp_path / "not" / "yet" / "there", ["report.md"])
    check_report_dir(tmp_path, ["report.md", "junit.xml"])
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe file left


def test_a_file_on_the_way_is_refused(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(UsageError, match=r"^--report-dir .*taken/reports: .*taken is a file, not a folder$"):
        check_report_dir(tmp_path / "taken" / "reports")


def test_a_report_file_that_cannot_be_replaced_is_refused(tmp_path):
    (tmp_path / "report.md").mkdir()
    with pytest.raises(UsageError, match=r"report.md is a folder; a report file cannot replace it"):
        check_report_dir(tmp_path, ["report.json", "report.md"])
    check_report_dir(tmp_path, ["report.json"])  # only the files this run writes matter


def test_a_folder_that_cannot_be_written_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"^report_dir /proc/parity-reports: cannot write in /proc"):
        check_report_dir("/proc/parity-reports", label="report_dir")
