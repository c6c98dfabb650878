"""Behaviour is pinned by golden reports: `parity check` on the shipped bundle for the faithful replica and four
library deviations must say what the recorded report.json says, on any machine, and identical runs on one
machine must write the same bytes (the volatile `run` section aside).

Across machines a report is compared on meaning (tools/golden_reports.py `differences`): structure, ids, texts
and verdicts exactly, figures to 1e-3 relative with values at float32 rounding level (below the report's own
tolerance for their row) taken as equal, since another CPU's summation order moves the last digits. An intended
change of a report regenerates them: `python tools/golden_reports.py --update` (and the diff of tests/golden/ is
then part of the review).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import audit_cache
import pytest
from reports_fixture import make_report
from tiers import sweep

from percepiano_parity.reports.json_report import render_json

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import golden_reports  # noqa: E402

TWICE = "layernorm-han-output"  # the scenario run twice: explanations, relation tests and verified fixes in it


def golden(scenario: str) -> dict:
    return json.loads((golden_reports.GOLDEN / f"{scenario}.json").read_text())


@pytest.mark.parametrize("scenario", sweep(golden_reports.SCENARIOS, fast={"faithful", TWICE}))
def test_report_says_what_the_golden_one_says(scenario):
    got = json.loads(golden_reports.golden_text(audit_cache.golden_run(scenario), scenario))
    problems = golden_reports.differences(golden(scenario), got)
    assert not problems, (f"report.json of {scenario} changed in meaning (regenerate with tools/golden_reports.py "
                          "--update if intended):\n" + "\n".join(problems))


def test_the_same_audit_twice_writes_the_same_bytes():
    """Two runs of one scenario on this machine: report.json identical byte for byte up to its `run` section."""
    first = audit_cache.golden_run(TWICE)
    second = golden_reports.run_scenario(TWICE)
    assert golden_reports.without_run(first) == golden_reports.without_run(second)
    assert json.loads(first)["run"] and json.loads(second)["run"]


def test_the_byte_comparison_leaves_out_the_run_section_only():
    one = render_json(make_report(run={"time": "2026-01-01T00:00:00Z", "host": "a"}))
    other = render_json(make_report(run={"time": "2026-02-02T00:00:00Z", "host": "b", "threads": 2}))
    assert one != other and golden_reports.without_run(one) == golden_reports.without_run(other)
    changed = render_json(make_report(run={"time": "2026-01-01T00:00:00Z", "host": "a"})).replace("han_note", "han_x")
    assert golden_reports.without_run(changed) != golden_reports.without_run(one)
    with pytest.raises(ValueError, match="run section"):
        golden_reports.without_run(json.dumps({"run": {}, "verdict": "equivalent"}))


# -- the comparison on meaning, on a golden report changed by hand --------------------------------------------

def _floats(value, scale):
    if isinstance(value, dict):
        return {k: _floats(v, scale) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v, scale) for v in value]
    return value * scale if isinstance(value, float) else value


def _first(report: dict, check: str, kind: str) -> dict:
    (found,) = [f for c in report["checks"] if c["id"] == check for f in c["findings"] if f["kind"] == kind][:1]
    return found


def another_cpu(report: dict) -> dict:
    """What another CPU's run order does to a report: every figure moved by 2e-4 relative, noise floors by a
    factor 1.7, a level's local error 0 here and one float32 ulp there, a figure in a text printed one digit
    up, a table sorted by noise-level figures in another order."""
    out = _floats(report, 1 + 2e-4)
    for levels in out["noise_floors"]["levels"].values():
        levels["abs"] *= 1.7
    mismatch = next(f for c in out["checks"] for f in c["findings"]
                    if f.get("metrics", {}).get("local_max_abs") == 0.0)
    mismatch["metrics"]["local_max_abs"] = 2.0 ** -26
    mismatch["metrics"]["floor_abs"] *= 1.7
    grad = _first(out, "backward", "backward.grad_mismatch")
    grad["message"] = _last_digit_up(grad["message"])
    for check in out["checks"]:
        for rows in check.get("tables", {}).values():
            rows.reverse()
    return out


def _last_digit_up(text: str) -> str:
    """`text` with its first decimal number printed one unit up in its last digit ("0.269" -> "0.270")."""
    for match in re.finditer(r"(?<![\w.])\d+\.\d*[0-8](?![\w.])", text):
        number = match.group()
        return text[:match.start()] + number[:-1] + str(int(number[-1]) + 1) + text[match.end():]
    raise AssertionError(f"no decimal number in {text!r}")


def test_the_rounding_of_another_cpu_says_the_same():
    report = golden(TWICE)
    assert golden_reports.differences(report, another_cpu(report)) == []


def test_a_table_cut_to_its_largest_rows_may_hold_other_rows_within_tolerance():
    """The faithful run's gradient table, sorted by noise-level figures and cut to 60 rows, holds other rows on
    another CPU: an unflagged row for another is no difference, a flagged one is."""
    report = golden("faithful")
    params = next(c for c in report["checks"] if c["id"] == "backward")["tables"]["params"]
    assert params and all(row["status"] == "ok" for row in params)
    swapped = copy.deepcopy(report)
    rows = next(c for c in swapped["checks"] if c["id"] == "backward")["tables"]["params"]
    rows[-1] = {**rows[-1], "param": "some.other.weight"}
    assert golden_reports.differences(report, swapped) == []
    rows[-1]["status"] = "mismatch"
    assert golden_reports.differences(report, swapped)


def _set(path: str, value):
    def change(report: dict) -> None:
        *head, last = path.split("/")
        target = report
        for part in head:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(last) if isinstance(target, list) else last] = value(target[int(last) if isinstance(target, list)
                                                                               else last])
    return change


def _bump_count(report: dict) -> None:
    finding = _first(report, "forward", "forward.mismatch")
    finding["message"] = finding["message"].replace("Mismatched elements: ", "Mismatched elements: 1", 1)


def _swap_findings(report: dict) -> None:
    findings = next(c["findings"] for c in report["checks"] if len(c["findings"]) > 1)
    findings[0], findings[1] = findings[1], findings[0]


MEANING = {
    "an explanation's id": _set("explanations/0/id", lambda v: v + "-X"),
    "the verdict": _set("verdict", lambda v: "equivalent"),
    "a check's status": _set("checks/2/status", lambda v: "passed" if v != "passed" else "failed"),
    "a word of an explanation": _set("explanations/0/title", lambda v: v.replace(" ", " not ", 1)),
    "an integer in a text": _bump_count,
    "a measured effect by 1%": _set("explanations/0/effect/logits_max_abs_before", lambda v: v * 1.01),
    "a finding less": _set("checks/2/findings", lambda v: v[:-1]),
    "two findings in another order": _swap_findings,
    "a key less": _set("explanations/0", lambda v: {k: x for k, x in v.items() if k != "fix"}),
    "a figure that became null": _set("explanations/0/effect/logits_max_abs_before", lambda v: None),
}


@pytest.mark.parametrize("change", list(MEANING))
def test_a_change_of_meaning_is_a_difference(change):
    report = golden(TWICE)
    changed = copy.deepcopy(report)
    MEANING[change](changed)
    problems = golden_reports.differences(report, changed)
    assert problems, change
    # ... and it still shows on top of another CPU's rounding
    assert golden_reports.differences(another_cpu(report), changed), change
