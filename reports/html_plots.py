"""The plots of report.html, as inline SVG figures: per-level relative error (also each explanation's picture),
attention entropy per head with the flagged heads marked, gradient error per parameter. They draw the
report's values as they are; nothing is computed beyond picking the columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from percepiano_parity.core.report import Report
from percepiano_parity.reports._common import as_float, fmt, status_tone, table_rows
from percepiano_parity.reports._svg import Mark, Series, bar_chart, hbar_chart, line_chart

TOP_GRADIENTS = 40

ORIGINAL_COLOR = "#4e79a7"
REPLICA_COLOR = "#f28e2b"
LOCAL_COLOR = "#59a14f"
FLOOR_COLOR = "#666666"
TOLERANCE_COLOR = "#c62828"



def report_rows(report: Report, check_id: str, table: str) -> list[Mapping[str, Any]]:
    check = report.check(check_id)
    return table_rows(check.tables.get(table) or []) if check is not None else []


def _present(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(as_float(r.get(key)) is not None for r in rows)


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>\n{svg}\n</figure>"


def _unique_labels(labels: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def level_error_plot(rows: Sequence[Mapping[str, Any]], *, root: str | None = None) -> str | None:
    """Per-level relative error against the relative noise floor (a band) and tolerance (dashed); local
    against cumulative where both were measured; `root` (an explanation's root level) tinted."""
    if not rows:
        return None
    names = [fmt(r.get("level")) for r in rows]
    labels = _unique_labels(names)
    if _present(rows, "local_max_rel") and _present(rows, "cumulative_max_rel"):
        series = [
            Series("local (this level alone)", [as_float(r.get("local_max_rel")) for r in rows], LOCAL_COLOR),
            Series("cumulative (as run)", [as_float(r.get("cumulative_max_rel")) for r in rows], ORIGINAL_COLOR),
        ]
    elif _present(rows, "max_rel"):
        series = [Series("max rel", [as_float(r.get("max_rel")) for r in rows], ORIGINAL_COLOR)]
    else:
        return None
    bands = [Mark("noise floor (relative)", [as_float(r.get("floor_rel")) for r in rows], FLOOR_COLOR)] \
        if _present(rows, "floor_rel") else []
    marks = [Mark("tolerance (relative)", [as_float(r.get("tolerance_rel")) for r in rows], TOLERANCE_COLOR, "6 3")] \
        if _present(rows, "tolerance_rel") else []
    flagged = frozenset(i for i, r in enumerate(rows) if status_tone(r.get("status")) == "bad")
    highlight = names.index(root) if root in names else None
    svg = bar_chart(title="Per-level error (max relative difference)", categories=labels, series=series,
                    marks=marks, bands=bands, log=True, y_label="max relative error", flagged=flagged,
                    highlight=highlight, highlight_label="root level" if highlight is not None else "")
    caption = ("Per-level error: greatest relative difference at each level, in forward order, against the "
               "level's relative noise floor (grey band) and tolerance (dashed); red labels are levels beyond "
               "tolerance.")
    if _present(rows, "local_max_rel"):
        caption += " Local: the level run on the reference's own inputs; cumulative: as the model runs."
    if highlight is not None:
        caption += f" The root level {names[highlight]} is tinted."
    return _figure(caption, svg)


def attention_plot(rows: Sequence[Mapping[str, Any]]) -> str | None:
    if not rows or not (_present(rows, "original_mean") or _present(rows, "replica_mean")):
        return None
    labels = []
    for r in rows:
        head = r.get("head")
        labels.append(fmt(r.get("module")) + (f" · h{fmt(head)}" if head is not None else ""))
    labels = _unique_labels(labels)

    def col(key: str) -> list[float | None]:
        return [as_float(r.get(key)) for r in rows]

    series = [
        Series("original", col("original_mean"), ORIGINAL_COLOR, col("original_min"), col("original_max")),
        Series("replica", col("replica_mean"), REPLICA_COLOR, col("replica_min"), col("replica_max")),
    ]
    flagged = frozenset(i for i, r in enumerate(rows) if _is_flag(r.get("flag")))
    svg = bar_chart(title="Attention entropy per head", categories=labels, series=series, log=False,
                    y_label="mean attention entropy", flagged=flagged)
    return _figure("Attention entropy per head: mean over items, original beside replica; whiskers span the "
                   "minimum and maximum. Red labels are the heads the attention check flags (entropy shifted "
                   "or collapsed).", svg)


def _is_flag(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in {"", "ok", "no", "false", "none", "-", "—"}
    return bool(value)


def gradient_plot(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The parameters with the largest relative gradient difference. With absolute floors in the table, their
    absolute difference is drawn against the floor (one unit per plot); otherwise the relative difference."""
    ranked = [r for r in rows if as_float(r.get("max_rel")) is not None]
    if not ranked:
        return None

    def rank(r: Mapping[str, Any]) -> float:
        x = as_float(r.get("max_rel"))
        return float("inf") if x is None or x != x else x

    ranked = sorted(ranked, key=rank, reverse=True)[:TOP_GRADIENTS]
    absolute = _present(ranked, "floor") and _present(ranked, "max_abs")
    key, what = ("max_abs", "absolute") if absolute else ("max_rel", "relative")
    marks = [Mark("noise floor (absolute)", [as_float(r.get("floor")) for r in ranked], FLOOR_COLOR, "2 2")] \
        if absolute else []
    svg = hbar_chart(title="Gradient error per parameter", labels=[fmt(r.get("param")) for r in ranked],
                     values=[as_float(r.get(key)) for r in ranked], color=REPLICA_COLOR,
                     name=f"gradient max {what} error", marks=marks)
    shown = f"top {len(ranked)} of {len(rows)}" if len(rows) > len(ranked) else f"all {len(ranked)}"
    return _figure(f"Gradient error per parameter: greatest {what} difference of each parameter's gradient"
                   + (" against its noise floor (dashed)" if absolute else "")
                   + f" ({shown} parameters, largest relative difference first).", svg)


def outcome_plots(rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """`parity train-compare`: both sides' curves per epoch (train loss, valid loss, valid R2)."""
    if not rows:
        return []
    epochs = [f"epoch {fmt(r.get('epoch'))}" for r in rows]
    out: list[str | None] = []
    for metric, label in (("train_loss", "train loss"), ("valid_loss", "valid loss"), ("valid_r2", "valid R2")):
        series = [Series(side, [as_float(r.get(f"{side} {metric}")) for r in rows], color)
                  for side, color in (("original", ORIGINAL_COLOR), ("replica", REPLICA_COLOR))]
        svg = line_chart(title=f"{label} per epoch", xs=epochs, series=series, y_label=label)
        out.append(_figure(f"Learning curves: {label} of the original and the replica after each epoch.", svg))
    return out


def plots_section(report: Report) -> list[str]:
    figures = [
        level_error_plot(report_rows(report, "forward", "levels")),
        attention_plot(report_rows(report, "attention", "heads")),
        gradient_plot(report_rows(report, "backward", "params")),
        *outcome_plots(report_rows(report, "outcome", "epochs")),
    ]
    figures = [f for f in figures if f]
    if not figures:
        return []
    return ['<section id="plots"><h2>Plots</h2>', *figures, "</section>"]
