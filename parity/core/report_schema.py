"""The published JSON Schema of report.json, shipped in the package (percepiano_parity/data/report.schema.json).

    from percepiano_parity.core.report_schema import schema_errors
    problems = schema_errors(json.loads(Path("parity-report/report.json").read_text()))   # [] when valid

The schema (draft 2020-12) describes every 1.x report: minor versions only add optional fields. Validating
needs the `jsonschema` package (in the `test` extra); reading the schema does not.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_FILE = "report.schema.json"


def schema_path() -> Path:
    """Where the schema file lies in the installed package (a real file: package data is not zipped)."""
    return Path(str(resources.files("percepiano_parity").joinpath("data", SCHEMA_FILE)))


@cache
def report_schema() -> dict[str, Any]:
    """The schema as a dict (read once)."""
    return json.loads(schema_path().read_text(encoding="utf-8"))


def schema_errors(report: Any, *, limit: int = 20) -> list[str]:
    """What makes `report` (report.json, parsed) invalid: one line per problem, `path: message`, at most
    `limit`; [] when it validates. ImportError (one line) when `jsonschema` is not installed."""
    try:
        import jsonschema
    except ImportError:
        raise ImportError("validating report.json needs the jsonschema package (pip install jsonschema, "
                          "or the test extra: pip install 'percepiano-parity[test]')") from None
    validator_class = jsonschema.validators.validator_for(report_schema())
    validator = validator_class(report_schema(), format_checker=validator_class.FORMAT_CHECKER)
    out = []
    for error in sorted(validator.iter_errors(report), key=lambda e: list(map(str, e.absolute_path))):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        out.append(f"{where}: {' '.join(error.message.split())[:300]}")
        if len(out) >= limit:
            break
    return out
