"""The report: everything a run found, as one serialisable object that every writer consumes, and the
published JSON Schema of report.json shipped in the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from percepiano_parity.core.findings import ALL_CHECK_IDS, Finding, Severity

# ----------------------------------------------------------------------------------------------------------
# The report: everything a run found, as one serialisable object that every writer consumes.
#
# Writers in `reports/` only lay this out; nothing in them computes. `to_dict` is ordered and free of run
# details except under `run`, so report.json is byte-identical across runs with the same inputs.

SCHEMA_VERSION = "1.1"  # 1.1: noise_floors.grads_measured


class ExitCode(IntEnum):
    OK = 0  # equivalent, or only waived/information findings
    MISMATCH = 1  # a finding at or above the --fail-on threshold
    USAGE = 2  # bad option, missing checkout, unreadable bundle, load error
    INTERNAL = 3  # a bug in the tool


@dataclass
class CheckResult:
    id: str  # one of ALL_CHECK_IDS
    status: str  # "passed" | "failed" | "skipped" | "waived"
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""  # why skipped
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per-level metrics etc.

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "findings": [f.to_dict() for f in self.findings],
            "tables": self.tables,
        }


@dataclass
class Explanation:
    """Diagnosis of one deviation, covering the findings it explains."""

    id: str  # stable rule id, e.g. "PP-LAYERNORM-OUTPUT"
    title: str
    severity: Severity
    original_does: str
    replica_does: str
    effect: str
    fix: str
    evidence: list[str] = field(default_factory=list)  # finding keys explained
    original_refs: list[str] = field(default_factory=list)  # "path:line" in the user's checkout
    root_level: str | None = None
    first_divergent_op: str | None = None
    fix_verified: bool | None = None
    effect_measured: dict[str, Any] = field(default_factory=dict)
    waived: bool = False
    waiver_reason: str = ""
    quirk: bool = False  # the original's own quirk that a replica may intentionally fix

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity.label,
            "original_does": self.original_does,
            "replica_does": self.replica_does,
            "effect": self.effect_measured if self.effect_measured else {"expected": self.effect},
            "expected_effect": self.effect,
            "fix": self.fix,
            "evidence": self.evidence,
            "original_refs": self.original_refs,
            "root_level": self.root_level,
            "first_divergent_op": self.first_divergent_op,
            "fix_verified": self.fix_verified,
            "waived": self.waived,
            "waiver_reason": self.waiver_reason,
            "quirk": self.quirk,
        }


@dataclass
class Report:
    variant: str
    subjects: list[dict[str, Any]]  # SubjectInfo as dicts: original side first
    checks: list[CheckResult]
    explanations: list[Explanation] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)  # finding keys no rule explains
    noise_floors: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # seed, batches, tolerances, fail_on, device
    drift: dict[str, list[str]] | None = None  # new / gone / unchanged explanation ids vs an older report
    run: dict[str, Any] = field(default_factory=dict)  # time, host, versions: the only volatile part

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    def blocking(self, fail_on: Severity) -> list[Finding]:
        """Findings at or above the threshold that no waiver covers."""
        waived = {k for e in self.explanations if e.waived for k in e.evidence}
        return [f for f in self.findings if f.severity >= fail_on and f.key not in waived]

    def verdict(self, fail_on: Severity) -> str:
        return "mismatch" if self.blocking(fail_on) else "equivalent"

    def exit_code(self, fail_on: Severity, *, new_only: bool = False) -> ExitCode:
        if new_only and self.drift is not None:
            new = set(self.drift.get("new", []))
            blocking_ids = {e.id for e in self.explanations if not e.waived and e.severity >= fail_on}
            unexplained_blocking = [f for f in self.blocking(fail_on) if f.key in self.unexplained]
            return ExitCode.MISMATCH if (blocking_ids & new) or unexplained_blocking else ExitCode.OK
        return ExitCode.MISMATCH if self.blocking(fail_on) else ExitCode.OK

    def check(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def to_dict(self) -> dict[str, Any]:
        fail_on = Severity.parse(str(self.settings.get("fail_on", "warning")))
        order = {cid: i for i, cid in enumerate(ALL_CHECK_IDS)}
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict(fail_on),
            "variant": self.variant,
            "settings": self.settings,
            "subjects": self.subjects,
            "checks": [c.to_dict() for c in sorted(self.checks, key=lambda c: order.get(c.id, 99))],
            "explanations": [e.to_dict() for e in self.explanations],
            "unexplained": sorted(self.unexplained),
            "noise_floors": self.noise_floors,
            "drift": self.drift,
            "run": self.run,
        }


# ----------------------------------------------------------------------------------------------------------
# The published JSON Schema of report.json, shipped in the package (percepiano_parity/data/report.schema.json).
#
#     from percepiano_parity.core.report import schema_errors
#     problems = schema_errors(json.loads(Path("parity-report/report.json").read_text()))   # [] when valid
#
# The schema (draft 2020-12) describes every 1.x report: minor versions only add optional fields. Validating
# needs the `jsonschema` package (in the `test` extra); reading the schema does not.

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
