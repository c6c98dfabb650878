"""Every writer's output is pinned byte for byte: the golden reports (tests/golden/*.json), read back into a
Report, render through the console (full at 120 and 80 columns, CI-sized), Markdown, HTML and JUnit exactly as
recorded in tests/golden/renderings/digests.json.

An intended change of a writer regenerates them: `python tools/render_reports.py --update` (and
`python tools/render_reports.py --out DIR` before and after the change shows what changed).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import render_reports  # noqa: E402


@pytest.fixture(scope="module")
def golden():
    return render_reports.golden_reports()


@pytest.fixture(scope="module")
def stored():
    return render_reports.recorded()


def test_every_golden_scenario_has_recorded_renderings(golden, stored):
    assert set(stored["digests"]) == set(golden)
    assert all(set(names) == set(render_reports.WRITERS) for names in stored["digests"].values())


@pytest.mark.parametrize("writer", list(render_reports.WRITERS))
def test_the_writer_renders_the_golden_reports_as_recorded(writer, golden, stored):
    if writer.startswith(render_reports.CONSOLE) and stored["rich"] != render_reports.rich_version():
        pytest.skip(f"console renderings were recorded with rich {stored['rich']}, "
                    f"this is rich {render_reports.rich_version()}")
    write = render_reports.WRITERS[writer]
    changed = [scenario for scenario, report in golden.items()
               if hashlib.sha256(write(report, render_reports.Severity.WARNING).encode("utf-8")).hexdigest()
               != stored["digests"][scenario][writer]]
    assert changed == [], (f"{writer} of {', '.join(changed)} changed (tools/render_reports.py --out DIR before "
                           "and after shows how; --update records an intended change)")


def test_a_report_json_reads_back_into_the_report_it_was_written_from():
    """The renderings read the golden report.json files back: the round trip must keep what writers show."""
    from reports_fixture import make_report

    from percepiano_parity.reports.json_report import render_json

    report = make_report()
    again = render_reports.report_from_dict(json.loads(render_json(report)))
    assert render_json(again) == render_json(report)
    assert render_reports.renderings(again) == render_reports.renderings(report)
