"""Layout helpers shared by the writers: how a value prints, which columns a table has, in what order things
appear. Nothing here decides anything about parity; the verdict and the findings come from the `Report`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from percepiano_parity.core.findings import CHECK_IDS, Finding, Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report

MISSING = "—"


@dataclass(frozen=True)
class TableSpec:
    """How a known table is titled and which columns lead (the rest follow in first-seen order)."""

    title: str
    columns: tuple[str, ...]


KNOWN_TABLES: dict[tuple[str, str], TableSpec] = {
    ("forward", "levels"): TableSpec(
        "Per-level error",
        ("level", "space", "max_abs", "max_rel", "cosine", "beyond_tol", "pad_max_abs", "local_max_rel",
         "cumulative_max_rel", "floor", "floor_rel", "tolerance", "tolerance_rel", "status"),
    ),
    ("attention", "heads"): TableSpec(
        "Attention entropy per head",
        ("module", "head", "original_mean", "replica_mean", "original_min", "original_max", "replica_min",
         "replica_max", "flag"),
    ),
    ("backward", "params"): TableSpec(
        "Gradient error per parameter", ("param", "max_abs", "max_rel", "cosine", "floor", "status"),
    ),
    ("structure", "diff"): TableSpec("Structure diff", ("path", "original", "replica")),
}


def coerce_fail_on(fail_on: Severity | str) -> Severity:
    return fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))


# ---------------------------------------------------------------------------------------------- values


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool | Severity)


def as_float(value: Any) -> float | None:
    """A plottable float, or None. Accepts numbers and the strings JSON uses for non-finite values."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in {"nan", "inf", "+inf", "-inf", "infinity", "-infinity"}:
        return float(value)
    return None


def fmt_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    a = abs(x)
    if a < 1e-3 or a >= 1e5:
        return f"{x:.2g}"  # 3.1e-07
    text = f"{x:.4g}"
    if abs(float(text)) == 1.0 and a != 1.0:
        # Cosine-like values: show enough digits to tell them from 1.
        for digits in range(5, 17):
            text = f"{x:.{digits}g}"
            if abs(float(text)) != 1.0:
                break
    return text


def fmt(value: Any) -> str:
    """One cell or field as text."""
    if value is None:
        return MISSING
    if isinstance(value, Severity):
        return value.label
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return str(value) if value != "" else MISSING
    if isinstance(value, Enum):
        return fmt(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt_float(value)
    if isinstance(value, Mapping | list | tuple):
        return compact_json(value)
    return str(value)


def compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        return str(value)


def fmt_fix_verified(value: bool | None) -> str:
    if value is None:
        return "not tried"
    return "yes" if value else "no"


def fix_error(e: Explanation) -> str | None:
    """Why the attempt to verify the explanation's fix failed (diagnosis records it), or None."""
    error = e.effect_measured.get("fix_error") if isinstance(e.effect_measured, Mapping) else None
    return " ".join(str(error).split()) if error else None


def fmt_fix_status(e: Explanation) -> str:
    """"yes", "no", "not tried", or "fix failed: <reason>" when the attempt itself failed."""
    error = fix_error(e)
    if e.fix_verified is None and error:
        return f"fix failed: {error}"
    return fmt_fix_verified(e.fix_verified)


def measured_effects(e: Explanation) -> list[tuple[str, Any]]:
    """The explanation's measured effects in their order, without the fix error (shown as the fix status)."""
    data = e.effect_measured if isinstance(e.effect_measured, Mapping) else {}
    return [(str(k), v) for k, v in data.items() if k != "fix_error" or e.fix_verified is not None]


# ---------------------------------------------------------------------------------------------- tables


def table_title(check_id: str, name: str) -> str:
    spec = KNOWN_TABLES.get((check_id, name))
    return spec.title if spec else name.replace("_", " ").capitalize()


def table_columns(rows: Sequence[Mapping[str, Any]], leading: Iterable[str] = ()) -> list[str]:
    """Union of row keys in first-seen order, with `leading` columns (those present) first."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    lead = [c for c in leading if c in seen]
    return lead + [c for c in seen if c not in lead]


def columns_for(check_id: str, name: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    spec = KNOWN_TABLES.get((check_id, name))
    return table_columns(rows, spec.columns if spec else ())


def numeric_columns(rows: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> set[str]:
    """Columns whose present values are all numbers (at least one present)."""
    out = set()
    for col in columns:
        values = [row.get(col) for row in rows if row.get(col) is not None]
        if values and all(is_number(v) or as_float(v) is not None for v in values):
            out.add(col)
    return out


def header(column: str) -> str:
    return column.replace("_", " ")


STATUS_BAD = {"fail", "failed", "mismatch", "error", "diverged", "beyond", "regressed", "differs"}
STATUS_WARN = {"warn", "warning", "flagged", "near", "inherited", "shifted", "collapsed", "unverified"}
STATUS_GOOD = {"ok", "pass", "passed", "equal", "within", "equivalent", "match"}


def status_tone(value: Any) -> str | None:
    """'bad' / 'warn' / 'good' for status-like cells (judged by their first word), None otherwise."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower().split()[0]
    if text in STATUS_BAD:
        return "bad"
    if text in STATUS_WARN:
        return "warn"
    if text in STATUS_GOOD:
        return "good"
    return None


def failing_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows a check marked bad or warned about (a status-like cell of tone bad or warn), in order."""
    return [row for row in rows if any(status_tone(v) in ("bad", "warn") for v in row.values())]


# ---------------------------------------------------------------------------------------------- ordering


def ordered_checks(checks: Iterable[CheckResult]) -> list[CheckResult]:
    order = {cid: i for i, cid in enumerate(CHECK_IDS)}
    return sorted(checks, key=lambda c: order.get(c.id, len(order)))


def ordered_explanations(explanations: Iterable[Explanation]) -> list[Explanation]:
    """Most consequential first: severity, then unwaived before waived, then how much evidence."""
    return sorted(explanations, key=lambda e: (-int(e.severity), e.waived, -len(e.evidence)))


def ordered_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: -int(f.severity))


# ---------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    verdict: str  # "equivalent" | "mismatch"
    fail_on: Severity
    blocking: int
    blocking_by_severity: dict[str, int]
    waived: int
    checks_by_status: dict[str, int]
    findings_by_severity: dict[str, int]

    @property
    def equivalent(self) -> bool:
        return self.verdict == "equivalent"

    def counts_line(self) -> str:
        parts = []
        if self.blocking:
            detail = ", ".join(f"{n} {label}" for label, n in self.blocking_by_severity.items() if n)
            parts.append(f"{self.blocking} blocking finding{'s' if self.blocking != 1 else ''} "
                         f"at or above {self.fail_on.label} ({detail})")
        else:
            parts.append(f"no blocking findings at or above {self.fail_on.label}")
        if self.waived:
            parts.append(f"{self.waived} waived")
        checks = ", ".join(f"{n} {status}" for status, n in self.checks_by_status.items())
        total = sum(self.checks_by_status.values())
        parts.append(f"{total} check{'s' if total != 1 else ''}: {checks}" if total else "no checks")
        return "; ".join(parts)


def summarize(report: Report, fail_on: Severity) -> Summary:
    blocking = report.blocking(fail_on)
    waived_keys = {k for e in report.explanations if e.waived for k in e.evidence}
    by_sev = {s.label: 0 for s in sorted(Severity, reverse=True)}
    for f in blocking:
        by_sev[f.severity.label] += 1
    statuses: dict[str, int] = {}
    for status in ("passed", "failed", "waived", "skipped"):
        n = sum(1 for c in report.checks if c.status == status)
        if n:
            statuses[status] = n
    for c in report.checks:
        if c.status not in ("passed", "failed", "waived", "skipped"):
            statuses[c.status] = statuses.get(c.status, 0) + 1
    all_sev = {s.label: 0 for s in sorted(Severity, reverse=True)}
    for f in report.findings:
        all_sev[f.severity.label] += 1
    return Summary(
        verdict=report.verdict(fail_on),
        fail_on=fail_on,
        blocking=len(blocking),
        blocking_by_severity=by_sev,
        waived=sum(1 for f in report.findings if f.key in waived_keys),
        checks_by_status=statuses,
        findings_by_severity=all_sev,
    )


def findings_by_key(report: Report) -> dict[str, Finding]:
    out: dict[str, Finding] = {}
    for f in report.findings:
        out.setdefault(f.key, f)
    return out


def explained_by(report: Report) -> dict[str, list[str]]:
    """Finding key -> ids of the explanations that cover it."""
    out: dict[str, list[str]] = {}
    for e in report.explanations:
        for key in e.evidence:
            out.setdefault(key, []).append(e.id)
    return out


def evidence_by_check(e: Explanation) -> list[tuple[str, list[str]]]:
    """The explanation's evidence keys grouped by the check that found them (the key's first part), in the
    order of the checks."""
    groups: dict[str, list[str]] = {}
    for key in e.evidence:
        groups.setdefault(str(key).split(":", 1)[0], []).append(key)
    order = {cid: i for i, cid in enumerate(CHECK_IDS)}
    return sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def blocking_keys(report: Report, fail_on: Severity) -> set[str]:
    return {f.key for f in report.blocking(fail_on)}


def mapping_table(data: Mapping[str, Any], key_name: str = "name") -> tuple[list[str], list[dict[str, Any]]]:
    """Lay a mapping out as rows: a mapping of mappings gives one row per key; otherwise key/value rows."""
    if data and all(isinstance(v, Mapping) for v in data.values()):
        rows = [{key_name: k, **dict(v)} for k, v in data.items()]
        return table_columns(rows, (key_name,)), rows
    rows = [{key_name: k, "value": v} for k, v in data.items()]
    return [key_name, "value"], rows


def table_rows(rows: Any) -> list[Mapping[str, Any]]:
    """Rows as mappings; anything else becomes a one-cell row, so a malformed table still shows."""
    if not isinstance(rows, list | tuple):
        rows = [rows]
    return [row if isinstance(row, Mapping) else {"value": row} for row in rows]


def subject_dicts(subjects: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Subjects as mappings (reports hold SubjectInfo as dicts; a dataclass is accepted too)."""
    out: list[Mapping[str, Any]] = []
    for subject in subjects:
        if isinstance(subject, Mapping):
            out.append(subject)
        elif dataclasses.is_dataclass(subject) and not isinstance(subject, type):
            out.append(dataclasses.asdict(subject))
        else:
            out.append({"name": str(subject)})
    return out


def subject_label(subject: Mapping[str, Any], index: int) -> str:
    return str(subject.get("name") or ("original" if index == 0 else f"subject {index}"))


def shim_text(shim: Any) -> tuple[str, str]:
    """(name, reason) of a shim record."""
    if isinstance(shim, Mapping):
        return str(shim.get("name", "?")), str(shim.get("reason", "") or "")
    return str(shim), ""


def drift_lists(drift: Mapping[str, Any] | None) -> list[tuple[str, list[str]]]:
    if drift is None:
        return []
    return [(name, [str(x) for x in drift.get(name, []) or []]) for name in ("new", "gone", "unchanged")]
