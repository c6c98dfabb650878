"""The published JSON Schema of report.json: shipped with the package, a valid draft 2020-12 schema that accepts
the reports the tool writes and refuses broken ones. (conftest validates every report.json the suite writes.)"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest
from reports_fixture import make_report

from percepiano_parity.core.findings import ALL_CHECK_IDS
from percepiano_parity.core.report import SCHEMA_VERSION, report_schema, schema_errors, schema_path
from percepiano_parity.reports.json_report import render_json

jsonschema = pytest.importorskip("jsonschema", reason="validating needs jsonschema (test extra)")
ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def test_schema_is_shipped_as_package_data_and_is_a_valid_schema():
    path = schema_path()
    assert path.is_file() and path.parent.name == "data"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(path.match(p) for p in patterns["percepiano_parity"])  # installed with the package
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("/draft/2020-12/schema")


def test_schema_follows_the_code():
    schema = report_schema()
    assert schema["$defs"]["check_id"]["enum"] == list(ALL_CHECK_IDS)
    assert re.fullmatch(schema["properties"]["schema_version"]["pattern"], SCHEMA_VERSION)
    assert set(schema["required"]) == set(json.loads(render_json(make_report())))


def test_reports_of_every_kind_validate():
    assert schema_errors(json.loads(render_json(make_report()))) == []
    for golden in sorted(GOLDEN.glob("*.json")):  # recorded real runs (their volatile `run` taken out)
        data = json.loads(golden.read_text())
        assert schema_errors({**data, "run": {}}) == [], golden.name


@pytest.mark.parametrize("break_it, where", [
    (lambda r: r.update(verdict="maybe"), "$.verdict"),
    (lambda r: r.pop("checks"), "$: 'checks' is a required property"),
    (lambda r: r.update(schema_version="2.0"), "$.schema_version"),
    (lambda r: r["checks"][0].update(id="speed"), "$.checks[0].id"),
    (lambda r: r["checks"][0]["findings"][0].update(severity="fatal"), "$.checks[0].findings[0].severity"),
    (lambda r: r["checks"][0]["findings"][0].update(message="two\nlines"), "$.checks[0].findings[0].message"),
    (lambda r: r["explanations"][0].update(fix_verified="yes"), "$.explanations[0].fix_verified"),
    (lambda r: r["explanations"][0].update(id="layernorm"), "$.explanations[0].id"),
    (lambda r: r.update(drift={"new": []}), "$.drift"),
    (lambda r: r["checks"][6].update(reason=""), "$.checks[6].reason"),  # a skipped check says why
])
def test_broken_reports_are_refused_with_where(break_it, where):
    report = copy.deepcopy(json.loads(render_json(make_report())))
    break_it(report)
    problems = schema_errors(report)
    assert problems and any(p.startswith(where) for p in problems), problems


def test_later_minor_versions_may_add_optional_fields():
    report = json.loads(render_json(make_report()))
    report["schema_version"] = "1.7"
    report["explanations"][0]["relation"] = {"slope": 1.0, "residual": 1e-9}
    report["checks"][0]["duration_s"] = 0.5
    assert schema_errors(report) == []
