"""The report view: what every writer shows, laid out once as plain data, so console, Markdown, HTML and JUnit
agree on every text, order and column.

    view = ReportView.of(report, fail_on)      # or view_of(report_or_view, fail_on) in a writer

It holds the verdict line, the explanations in order with their display fields, the unexplained findings,
drift, the checks in order with their findings (blocking or not, which explanations cover them) and their
tables (columns in order, numeric or code font, each cell's text and tone), and the nested parts (noise floors,
settings, run) as tables. Writers only render it; nothing in them counts, orders or formats a value. Nothing
here decides anything about parity either: the verdict and the findings come from the `Report`.

Adding a table to a part (the settings, the run) is one entry in that part's labels (`PARTS`); a nested
mapping without an entry still shows, titled by its key. An entry with `console=True` is also printed by the
console's full form (`--verbose`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from percepiano_parity.core.findings import CHECK_IDS, Finding, Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report

MISSING = "—"
FOLD_ROWS = 20  # part tables longer than this are folded (HTML and Markdown <details>)


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
    """One cell or field as text (MISSING for None and the empty string)."""
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
        return _compact_json(value)
    return str(value)


def _compact_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        return str(value)


def _text_or_none(value: Any) -> str | None:
    """The value as text, None where there is nothing to show (None or "")."""
    return None if value is None or value == "" else fmt(value)


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


def anchor(text: str) -> str:
    """A fragment id for `text` (letters and digits kept, the rest "-")."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())


# ---------------------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableSpec:
    """How a known table is titled, which columns lead (the rest follow in first-seen order), which a narrow
    medium may leave out (least useful first) and by which column its rows rank when only some fit."""

    title: str
    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()
    rank_by: str | None = None


KNOWN_TABLES: dict[tuple[str, str], TableSpec] = {
    ("forward", "levels"): TableSpec(
        "Per-level error",
        ("level", "space", "max_abs", "max_rel", "cosine", "beyond_tol", "pad_max_abs", "local_max_rel",
         "cumulative_max_rel", "floor", "floor_rel", "tolerance", "tolerance_rel", "status"),
        optional=("pad_max_abs", "beyond_tol", "space", "max_abs", "floor", "tolerance", "cosine"),
    ),
    ("attention", "heads"): TableSpec(
        "Attention entropy per head",
        ("module", "head", "original_mean", "replica_mean", "original_min", "original_max", "replica_min",
         "replica_max", "flag"),
        optional=("original_min", "replica_min", "original_max", "replica_max"),
    ),
    ("backward", "params"): TableSpec(
        "Gradient error per parameter", ("param", "max_abs", "max_rel", "cosine", "floor", "status"),
        optional=("max_abs", "floor", "cosine"), rank_by="max_rel",
    ),
    ("structure", "diff"): TableSpec("Structure diff", ("path", "original", "replica")),
}


def table_columns(rows: Sequence[Mapping[str, Any]], leading: Iterable[str] = ()) -> list[str]:
    """Union of row keys in first-seen order, with `leading` columns (those present) first."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    lead = [c for c in leading if c in seen]
    return lead + [c for c in seen if c not in lead]


def table_rows(rows: Any) -> list[Mapping[str, Any]]:
    """Rows as mappings; anything else becomes a one-cell row, so a malformed table still shows."""
    if not isinstance(rows, list | tuple):
        rows = [rows]
    return [row if isinstance(row, Mapping) else {"value": row} for row in rows]


def _numeric(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Every present value of the column is a number (at least one present)."""
    values = [row.get(column) for row in rows if row.get(column) is not None]
    return bool(values) and all(is_number(v) or as_float(v) is not None for v in values)


def _rank_value(value: Any) -> float:
    x = as_float(value)
    if x is None:
        return float("-inf")
    return float("inf") if x != x else x  # nan ranks first: it is the worst


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # every present value is a number: right-aligned
    code: bool = False  # names the row, a location or a kind: code font

    @property
    def header(self) -> str:
        return self.name.replace("_", " ")


@dataclass(frozen=True)
class Cell:
    text: str  # the value as `fmt` prints it
    tone: str | None = None  # "bad" / "warn" / "good" for a status-like value
    empty: bool = False  # the value is None or "": shown as MISSING, never in code font


@dataclass(frozen=True)
class TableView:
    """One table laid out: columns in order, one tuple of cells per row; `records` are the report's rows as
    they are (the plots read their values). `cut` says how the rows were cut when not all are shown."""

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    records: tuple[Mapping[str, Any], ...]
    spec: TableSpec | None = None
    marked_of: int | None = None  # how many rows the whole table has when these are only the marked ones
    cut: str = ""
    fold: bool = False

    @classmethod
    def build(cls, name: str, title: str, records: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
              code: Iterable[str] = (), spec: TableSpec | None = None, marked_of: int | None = None,
              cut: str = "", fold: bool = False) -> TableView:
        code = set(code)
        cols = tuple(Column(c, _numeric(records, c), c in code) for c in columns)
        rows = tuple(tuple(Cell(fmt(r.get(c)), status_tone(r.get(c)), r.get(c) is None or r.get(c) == "")
                           for c in columns) for r in records)
        return cls(name, title, cols, rows, tuple(records), spec, marked_of, cut, fold)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def optional(self) -> tuple[str, ...]:
        """Columns a narrow medium may leave out, least useful first."""
        return self.spec.optional if self.spec else ()

    def _rebuilt(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str], **changes: Any) -> TableView:
        fields = {"spec": self.spec, "marked_of": self.marked_of, "cut": self.cut, "fold": self.fold, **changes}
        code = [c.name for c in self.columns if c.code]
        return TableView.build(self.name, self.title, records, columns, code=code, **fields)

    def marked(self) -> TableView | None:
        """The rows the check marked bad or warned about (a status-like cell of tone bad or warn), their
        columns laid out again; None when no row is marked."""
        bad = [r for r in self.records if any(status_tone(v) in ("bad", "warn") for v in r.values())]
        if not bad:
            return None
        return self._rebuilt(bad, table_columns(bad, self.spec.columns if self.spec else ()),
                             marked_of=len(self.records))

    def head(self, limit: int) -> TableView:
        """At most `limit` rows: the worst by the spec's ranking column when it has one, else the first; `cut`
        says which."""
        n = len(self.records)
        what = "rows" if self.marked_of is None else f"marked rows ({self.marked_of} in all)"
        cut = "" if self.marked_of is None else f"{n} of {self.marked_of} rows marked"
        shown = list(self.records)
        rank_by = self.spec.rank_by if self.spec else None
        if rank_by and n > limit:
            shown = sorted(self.records, key=lambda r: _rank_value(r.get(rank_by)), reverse=True)[:limit]
            cut = f"top {limit} of {n} {what} by {rank_by.replace('_', ' ')}"
        elif n > limit:
            shown = shown[:limit]
            cut = f"first {limit} of {n} {what}"
        return self._rebuilt(shown, self.column_names, cut=cut)

    def without(self, columns: Iterable[str]) -> TableView:
        """The same rows without these columns."""
        drop = set(columns)
        keep = [i for i, c in enumerate(self.columns) if c.name not in drop]
        return dataclasses.replace(self, columns=tuple(self.columns[i] for i in keep),
                                   rows=tuple(tuple(row[i] for i in keep) for row in self.rows))

    def worst(self, column: str, limit: int) -> TableView:
        """The rows with a number in `column`, largest first (nan first: it is the worst), at most `limit`."""
        ranked = sorted(self.records, key=lambda r: _rank_value(r.get(column)), reverse=True)
        return self._rebuilt([r for r in ranked if as_float(r.get(column)) is not None][:limit], self.column_names)

    def values(self, column: str) -> list[Any]:
        """The column's values as the report holds them (None where absent), for plots."""
        return [r.get(column) for r in self.records]

    def floats(self, column: str) -> list[float | None]:
        """The column's values as floats (None where absent or not a number), for plots."""
        return [as_float(r.get(column)) for r in self.records]

    def has_numbers(self, column: str) -> bool:
        return any(x is not None for x in self.floats(column))

    def texts(self, column: str) -> list[str]:
        return [fmt(r.get(column)) for r in self.records]

    def marked_rows(self, column: str, tone: str = "bad") -> frozenset[int]:
        """Indices of the rows whose `column` is status-like of this tone."""
        return frozenset(i for i, r in enumerate(self.records) if status_tone(r.get(column)) == tone)

    def flagged_rows(self, column: str) -> frozenset[int]:
        """Indices of the rows whose `column` raises a flag (any value but an empty or negative one)."""
        return frozenset(i for i, r in enumerate(self.records) if is_flag(r.get(column)))


def is_flag(value: Any) -> bool:
    """A flag column's value raises the flag (anything but None, False, "", "ok", "no", "none", a dash)."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in {"", "ok", "no", "false", "none", "-", "—"}
    return bool(value)


def _check_table(check_id: str, name: str, raw: Any) -> TableView | None:
    """A check's table; None when it has no rows (a table that is not a list of rows is shown as one)."""
    records = table_rows(raw) if raw else []
    if not records:
        return None
    spec = KNOWN_TABLES.get((check_id, name))
    title = spec.title if spec else name.replace("_", " ").capitalize()
    return TableView.build(name, title, records, table_columns(records, spec.columns if spec else ()), spec=spec)


# ---------------------------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Labels:
    """How a nested mapping of a part is titled, what its key and value columns are called, and whether the
    console's full form prints it too."""

    title: str
    key: str = "name"
    value: str = "value"
    console: bool = False


@dataclass(frozen=True)
class PartSpec:
    """A mapping of the report shown as tables: the Report attribute, its heading, its nested mappings' labels."""

    attribute: str
    title: str
    labels: Mapping[str, Labels] = field(default_factory=dict)


# The nested report data laid out as tables, in the order the writers show them. Add a table's labels here.
PARTS: dict[str, PartSpec] = {
    "noise_floors": PartSpec("noise_floors", "Noise floors", {
        "levels": Labels("Per level (float64 vs float32 of the faithful computation)", "level"),
        "grads": Labels("Per gradient", "parameter", "floor"),
        "attention": Labels("Per attention map", "map", "floor"),
    }),
    "settings": PartSpec("settings", "Settings", {
        "config": Labels("Model configuration", "field"),
        "tolerances": Labels("Tolerances", "tolerance"),
    }),
    "run": PartSpec("run", "Run", {"versions": Labels("Versions", "package", "version")}),
}


def plain_text(value: Any) -> Any:
    """A list as one line of text ("a; b", pairs as "a → b"); other values unchanged."""
    if isinstance(value, list | tuple):
        if not value:
            return None
        parts = []
        for item in value:
            if isinstance(item, list | tuple):
                parts.append(" → ".join(fmt(x) for x in item))
            else:
                parts.append(fmt(item))
        return "; ".join(parts)
    return value


@dataclass(frozen=True)
class PartView:
    """A part as tables: first the plain values (title ""), then one per nested mapping. A mapping of mappings
    gives one row per key, a flat mapping key / value rows, and a `reasons` mapping beside the values becomes
    their reason column. The first column names the row (code font). `console` lists the tables the console's
    full form prints."""

    name: str
    title: str
    tables: tuple[TableView, ...]
    console: tuple[TableView, ...] = ()


def part_view(name: str, data: Mapping[str, Any], spec: PartSpec, key_name: str = "key") -> PartView:
    plain: list[dict[str, Any]] = []
    nested: list[tuple[TableView, bool]] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            label = spec.labels.get(str(key), Labels(str(key)))
            nested.append((_nested(str(key), value, label), label.console))
        else:
            plain.append({key_name: key, "value": plain_text(value)})
    tables = [_part_table("", "", plain, [key_name, "value"])] if plain else []
    tables += [t for t, _ in nested]
    return PartView(name, spec.title, tuple(tables), tuple(t for t, console in nested if console))


def _part_table(name: str, title: str, rows: list[dict[str, Any]], columns: list[str]) -> TableView:
    return TableView.build(name, title, rows, columns, code=columns[:1], fold=len(rows) > FOLD_ROWS)


def _nested(key: str, value: Mapping[str, Any], label: Labels) -> TableView:
    if all(isinstance(v, Mapping) for v in value.values()):
        rows = [{label.key: k, **{str(c): plain_text(x) for c, x in dict(v).items()}} for k, v in value.items()]
        return _part_table(key, label.title, rows, table_columns(rows, (label.key,)))
    reasons = value.get("reasons")
    reasons = reasons if isinstance(reasons, Mapping) else None
    rows = []
    for k, v in value.items():
        if reasons is not None and k == "reasons":
            continue
        row = {label.key: k, label.value: plain_text(v)}
        if reasons is not None:
            row["reason"] = reasons.get(k)
        rows.append(row)
    columns = [label.key, label.value] + (["reason"] if reasons is not None else [])
    return _part_table(key, label.title, rows, columns)


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
    checks_blocking: int = 0  # checks (not skipped) with a blocking finding: JUnit's failures
    checks_skipped: int = 0

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
    blocking_keys = {f.key for f in blocking}
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
        checks_blocking=sum(1 for c in report.checks
                            if c.status != "skipped" and any(f.key in blocking_keys for f in c.findings)),
        checks_skipped=sum(1 for c in report.checks if c.status == "skipped"),
    )


# ---------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class FindingView:
    key: str
    check: str
    kind: str
    location: str
    severity: Severity
    message: str
    blocking: bool  # at or above --fail-on and not waived
    explained_by: tuple[str, ...]  # ids of the explanations whose evidence holds it, in the report's order


@dataclass(frozen=True)
class EvidenceView:
    """A finding key an explanation cites (or no rule explains), with the finding when the report has it."""

    key: str
    finding: FindingView | None


@dataclass(frozen=True)
class ExplanationView:
    id: str
    title: str
    severity: Severity
    waived: bool
    waiver_reason: str  # "no reason given" when waived without one
    root_level: str | None
    first_divergent_op: str | None
    fix_status: str  # "yes", "no", "not tried", or "fix failed: <reason>"
    fix_failed: bool  # the attempt to verify the fix itself failed
    quirk: bool
    original_does: str
    replica_does: str
    effect: str
    measured: tuple[tuple[str, str], ...]  # measured effects as (key, text), without the fix error
    fix: str
    original_refs: tuple[str, ...]
    evidence: tuple[EvidenceView, ...]
    evidence_groups: tuple[tuple[str, tuple[EvidenceView, ...]], ...]  # by the check that found them
    concerns_levels: bool  # has a root level or forward evidence: its picture is the per-level error
    anchor: str

    @property
    def fix_line(self) -> str:
        """"fix verified yes" or "fix failed: <reason>"."""
        return self.fix_status if self.fix_failed else f"fix verified {self.fix_status}"


@dataclass(frozen=True)
class CheckView:
    id: str
    status: str
    reason: str
    findings: tuple[FindingView, ...]  # most severe first
    counts: tuple[tuple[Severity, int], ...]  # findings per severity, most severe first
    worst: str | None
    tables: tuple[TableView, ...]  # the check's non-empty tables, in its order
    findings_table: TableView | None  # the findings as a table (Markdown)
    anchor: str

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def blocking(self) -> tuple[FindingView, ...]:
        """The findings that block (most severe first)."""
        return tuple(f for f in self.findings if f.blocking)

    @property
    def worst_blocking(self) -> Severity | None:
        return max((f.severity for f in self.findings if f.blocking), default=None)


@dataclass(frozen=True)
class SubjectView:
    label: str
    kind: str | None
    source: str | None
    revision: str | None
    shims: tuple[tuple[str, str], ...]  # (name, reason)
    warnings: tuple[str, ...]


def _subject_dicts(subjects: Iterable[Any]) -> list[Mapping[str, Any]]:
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


def _shim(shim: Any) -> tuple[str, str]:
    if isinstance(shim, Mapping):
        return str(shim.get("name", "?")), str(shim.get("reason", "") or "")
    return str(shim), ""


def _subject(subject: Mapping[str, Any], index: int) -> SubjectView:
    return SubjectView(
        label=str(subject.get("name") or ("original" if index == 0 else f"subject {index}")),
        kind=_text_or_none(subject.get("kind")),
        source=_text_or_none(subject.get("source")),
        revision=_text_or_none(subject.get("revision")),
        shims=tuple(_shim(s) for s in subject.get("shims") or []),
        warnings=tuple(str(w) for w in subject.get("warnings") or []),
    )


def _fix_status(e: Explanation) -> tuple[str, bool]:
    error = e.effect_measured.get("fix_error") if isinstance(e.effect_measured, Mapping) else None
    error = " ".join(str(error).split()) if error else None
    if e.fix_verified is None and error:
        return f"fix failed: {error}", True
    if e.fix_verified is None:
        return "not tried", False
    return ("yes" if e.fix_verified else "no"), False


def _explanation(e: Explanation, findings: Mapping[str, FindingView], has_levels: bool) -> ExplanationView:
    evidence = tuple(EvidenceView(key, findings.get(key)) for key in e.evidence)
    groups: dict[str, list[EvidenceView]] = {}
    for item in evidence:
        groups.setdefault(str(item.key).split(":", 1)[0], []).append(item)
    order = {cid: i for i, cid in enumerate(CHECK_IDS)}
    ordered = sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    data = e.effect_measured if isinstance(e.effect_measured, Mapping) else {}
    status, failed = _fix_status(e)
    return ExplanationView(
        id=e.id, title=e.title, severity=e.severity, waived=e.waived,
        waiver_reason=e.waiver_reason or "no reason given",
        root_level=_text_or_none(e.root_level), first_divergent_op=_text_or_none(e.first_divergent_op),
        fix_status=status, fix_failed=failed, quirk=bool(e.quirk),
        original_does=e.original_does, replica_does=e.replica_does, effect=e.effect,
        measured=tuple((str(k), fmt(v)) for k, v in data.items() if k != "fix_error" or e.fix_verified is not None),
        fix=e.fix, original_refs=tuple(e.original_refs), evidence=evidence,
        evidence_groups=tuple((check, tuple(items)) for check, items in ordered),
        concerns_levels=has_levels and bool(e.root_level or any(str(k).startswith("forward:") for k in e.evidence)),
        anchor=anchor(e.id),
    )


FINDING_COLUMNS = ("severity", "blocking", "location", "kind", "message", "explained by")
CHECK_COLUMNS = ("check", "status", "findings", "worst", "note")


def _check(check: CheckResult, findings: Sequence[FindingView]) -> CheckView:
    tables = [_check_table(check.id, name, raw) for name, raw in check.tables.items()]
    severities = sorted(Severity, reverse=True)
    worst = check.worst()
    rows = [{"severity": f.severity.label, "blocking": f.blocking, "location": f.location, "kind": f.kind,
             "message": f.message, "explained by": ", ".join(f.explained_by) or None} for f in findings]
    findings_table = (TableView.build("findings", "Findings", rows, FINDING_COLUMNS, code=("location", "kind"))
                      if rows else None)
    return CheckView(
        id=check.id, status=check.status, reason=check.reason, findings=tuple(findings),
        counts=tuple((s, sum(1 for f in check.findings if f.severity == s)) for s in severities),
        worst=worst.label if worst is not None else None,
        tables=tuple(t for t in tables if t is not None), findings_table=findings_table, anchor=anchor(check.id),
    )


# ---------------------------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class ReportView:
    """Everything the writers show, laid out (see the module docstring); build it with `ReportView.of`."""

    variant: str
    fail_on: Severity
    summary: Summary
    subjects: tuple[SubjectView, ...]
    explanations: tuple[ExplanationView, ...]  # most consequential first
    unexplained: tuple[EvidenceView, ...]  # by key
    drift: tuple[tuple[str, tuple[str, ...]], ...] | None  # (new / gone / unchanged, ids); None without drift
    checks: tuple[CheckView, ...]  # in the order of CHECK_IDS, others after
    checks_table: TableView | None  # one row per check (Markdown, HTML)
    parts: dict[str, PartView]  # the PARTS present in the report, in PARTS order

    @classmethod
    def of(cls, report: Report, fail_on: Severity | str) -> ReportView:
        fail_on = coerce_fail_on(fail_on)
        blocking = {f.key for f in report.blocking(fail_on)}
        covered: dict[str, list[str]] = {}
        for e in report.explanations:
            for key in e.evidence:
                covered.setdefault(key, []).append(e.id)

        def finding(f: Finding) -> FindingView:
            return FindingView(f.key, f.check, f.kind, f.location, f.severity, f.message, f.key in blocking,
                               tuple(covered.get(f.key, [])))

        by_key: dict[str, FindingView] = {}
        for f in report.findings:
            by_key.setdefault(f.key, finding(f))
        order = {cid: i for i, cid in enumerate(CHECK_IDS)}
        checks = tuple(_check(c, [finding(f) for f in sorted(c.findings, key=lambda f: -int(f.severity))])
                       for c in sorted(report.checks, key=lambda c: order.get(c.id, len(order))))
        levels = next((c for c in report.checks if c.id == "forward"), None)
        has_levels = bool(levels is not None and levels.tables.get("levels"))
        explanations = sorted(report.explanations, key=lambda e: (-int(e.severity), e.waived, -len(e.evidence)))
        drift = None
        if report.drift is not None:
            drift = tuple((name, tuple(str(x) for x in report.drift.get(name, []) or []))
                          for name in ("new", "gone", "unchanged"))
        rows = [{"check": c.id, "status": c.status, "findings": len(c.findings), "worst": c.worst,
                 "note": c.reason or None} for c in checks]
        parts = {name: part_view(name, data, spec) for name, spec in PARTS.items()
                 if (data := getattr(report, spec.attribute, None))}
        return cls(
            variant=report.variant, fail_on=fail_on, summary=summarize(report, fail_on),
            subjects=tuple(_subject(s, i) for i, s in enumerate(_subject_dicts(report.subjects))),
            explanations=tuple(_explanation(e, by_key, has_levels) for e in explanations),
            unexplained=tuple(EvidenceView(k, by_key.get(k)) for k in sorted(report.unexplained)),
            drift=drift, checks=checks,
            checks_table=TableView.build("checks", "Checks", rows, CHECK_COLUMNS, code=("check",)) if rows else None,
            parts=parts,
        )

    def table(self, check_id: str, name: str) -> TableView | None:
        """A check's table by name (the first check with that id), or None."""
        check = next((c for c in self.checks if c.id == check_id), None)
        return next((t for t in check.tables if t.name == name), None) if check is not None else None

    @property
    def skipped(self) -> tuple[CheckView, ...]:
        return tuple(c for c in self.checks if c.skipped)


def coerce_fail_on(fail_on: Severity | str) -> Severity:
    return fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))


def view_of(report: Report | ReportView, fail_on: Severity | str | None = None) -> ReportView:
    """The view a writer renders: `report` itself when it is one already, else laid out at `fail_on`
    (default: the report's own setting, else warning)."""
    if isinstance(report, ReportView):
        return report
    if fail_on is None:
        fail_on = str(report.settings.get("fail_on", "warning"))
    return ReportView.of(report, fail_on)
