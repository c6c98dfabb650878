"""Nested report data (settings, run details, noise floors) laid out as tables instead of raw JSON.

A mapping becomes one table of its plain values (key, value) and one table per nested mapping: a mapping of
mappings gives one row per key (the noise floor of each level: level, abs, rel), a flat mapping gives name /
value rows, and a `reasons` mapping beside the values becomes their reason column (the tolerances). Lists
print as text joined with "; ". Nothing is computed: every cell is a value of the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from percepiano_parity.reports._common import fmt, table_columns

FOLD_ROWS = 20  # tables longer than this are folded (HTML <details>, Markdown <details>)


@dataclass(frozen=True)
class Section:
    """One table: its title ("" for the plain values of the top mapping), columns and rows."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]]

    @property
    def fold(self) -> bool:
        return len(self.rows) > FOLD_ROWS


@dataclass(frozen=True)
class Labels:
    """How a nested mapping is titled and what its key and value columns are called."""

    title: str
    key: str = "name"
    value: str = "value"


# report.noise_floors: what each nested mapping holds
FLOOR_LABELS: dict[str, Labels] = {
    "levels": Labels("Per level (float64 vs float32 of the faithful computation)", "level"),
    "grads": Labels("Per gradient", "parameter", "floor"),
    "attention": Labels("Per attention map", "map", "floor"),
}
SETTINGS_LABELS: dict[str, Labels] = {
    "config": Labels("Model configuration", "field"),
    "tolerances": Labels("Tolerances", "tolerance"),
}
RUN_LABELS: dict[str, Labels] = {"versions": Labels("Versions", "package", "version")}


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


def sections(data: Mapping[str, Any], labels: Mapping[str, Labels] | None = None,
             key_name: str = "key") -> list[Section]:
    """`data` as tables (see the module docstring): first the plain values, then one per nested mapping."""
    labels = labels or {}
    plain: list[dict[str, Any]] = []
    nested: list[Section] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            nested.append(_nested(str(key), value, labels.get(str(key), Labels(str(key)))))
        else:
            plain.append({key_name: key, "value": plain_text(value)})
    out = [Section("", [key_name, "value"], plain)] if plain else []
    return out + nested


def _nested(key: str, value: Mapping[str, Any], label: Labels) -> Section:
    if all(isinstance(v, Mapping) for v in value.values()):
        rows = [{label.key: k, **{str(c): plain_text(x) for c, x in dict(v).items()}} for k, v in value.items()]
        return Section(label.title, table_columns(rows, (label.key,)), rows)
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
    return Section(label.title, columns, rows)


def key_columns(section: Section) -> Sequence[str]:
    """The column that names the row (set in code font by the writers)."""
    return section.columns[:1]
