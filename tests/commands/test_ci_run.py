"""The two test tiers as `.ci/run` and the README state them: the README's test command is the fast tier
(`-m "not slow"`), `.ci/run` runs exactly it and then the slow tier, with chromium installed and required."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tiers import sweep

ROOT = Path(__file__).resolve().parents[2]


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("Run the tests"):]
    return re.search(r"```bash\n(.*?)\n```", block, re.S).group(1).strip()


def _ci_lines() -> list[str]:
    return [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_the_readme_command_then_the_slow_tier():
    command = _readme_test_command()
    assert command.endswith('python -m pytest -q -m "not slow"'), command
    lines = _ci_lines()
    assert command in lines
    rest = lines[lines.index(command) + 1:]
    assert "python -m pytest -q -m slow" in rest


def test_ci_installs_chromium_and_requires_the_browser_test():
    lines = _ci_lines()
    first_pytest = next(i for i, line in enumerate(lines) if "pytest" in line)
    before = "\n".join(lines[:first_pytest])
    assert "apt-get install -y -q chromium" in before
    assert "export PARITY_REQUIRE_BROWSER=1" in before


def test_a_sweep_keeps_its_named_cases_fast_and_marks_the_others_slow():
    params = sweep(["a", "b", ("c", 1)], fast={"b", "c"})
    assert [p.id for p in params] == ["a", "b", "c"]
    assert [[m.name for m in p.marks] for p in params] == [["slow"], [], []]
    assert params[2].values == ("c", 1)
    with pytest.raises(ValueError, match="not in the sweep"):
        sweep(["a"], fast={"z"})
