"""`parity check`'s console in and out of a terminal, `--verbose`, `--version` (in-process; the audit itself is
replaced by a hand-built report, so these tests cost no model run)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from reports_fixture import make_report

import percepiano_parity
from percepiano_parity.commands import check as check_module
from percepiano_parity.commands.cli import CI_WIDTH, console_width, main, tool_version

ROOT = Path(__file__).resolve().parents[2]


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def canned(monkeypatch, tmp_path):
    """`parity check` that returns the hand-built report (a mismatch) instead of running an audit."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(check_module, "run_check", lambda options, **kwargs: make_report())
    return tmp_path


def test_outside_a_terminal_the_console_is_ci_sized(canned, capsys):
    assert main(["check", "--format", "console", "--report-dir", str(canned / "r")]) == 1
    out = capsys.readouterr().out
    assert "(failing rows only; --verbose prints every table" in out
    assert "encoder.layers.44.weight_ih_l0" not in out  # a passing row of the gradient table
    assert max(len(line) for line in out.splitlines()) <= CI_WIDTH


def test_verbose_prints_every_table(canned, capsys):
    assert main(["check", "--verbose", "--format", "console", "--report-dir", str(canned / "r")]) == 1
    out = capsys.readouterr().out
    assert "encoder.layers.44.weight_ih_l0" in out and "top 40 of 46" in out  # passing rows too
    assert "Attention entropy per head" in out and "Structure diff" in out  # passing checks' tables too
    assert "failing rows only" not in out


def test_width_is_columns_or_120_outside_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert console_width(_Stream(False)) == 120
    monkeypatch.setenv("COLUMNS", "88")
    assert console_width(_Stream(False)) == 88
    monkeypatch.setenv("COLUMNS", "wide")
    assert console_width(_Stream(False)) == 120
    assert console_width(_Stream(True)) is None  # a terminal: rich measures it


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out == f"parity {version}" == f"parity {tool_version()}"
    assert percepiano_parity.__version__ == version
