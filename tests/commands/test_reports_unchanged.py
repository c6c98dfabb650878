"""Behaviour is pinned by golden reports: `parity check` on the shipped bundle for the faithful replica and four
library deviations must give report.json byte for byte as recorded (its volatile `run` section aside).

An intended change of a report regenerates them: `python tools/golden_reports.py --update` (and the diff of
tests/golden/ is then part of the review).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import golden_reports  # noqa: E402


@pytest.mark.parametrize("scenario", list(golden_reports.SCENARIOS))
def test_report_is_byte_for_byte_the_golden_one(scenario):
    expected = (golden_reports.GOLDEN / f"{scenario}.json").read_text()
    got = golden_reports.report_text(scenario)
    if got != expected:
        diff = "\n".join(list(difflib.unified_diff(expected.splitlines(), got.splitlines(), "golden", "now",
                                                   lineterm="", n=1))[:60])
        pytest.fail(f"report.json of {scenario} changed (regenerate with tools/golden_reports.py --update if "
                    f"intended):\n{diff}")
