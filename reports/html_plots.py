"""The plots of report.html, as inline SVG figures: per-level relative error (also each explanation's picture),
attention entropy per head with the flagged heads marked, gradient error per parameter. They draw the
report's values as they are; nothing is computed beyond picking the columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from percepiano_parity.reports._svg import Mark, Series, bar_chart, hbar_chart, line_chart
from percepiano_parity.reports.view import ReportView, TableView

TOP_GRADIENTS = 40

ORIGINAL_COLOR = "#4e79a7"
REPLICA_COLOR = "#f28e2b"
LOCAL_COLOR = "#59a14f"
FLOOR_COLOR = "#666666"
TOLERANCE_COLOR = "#c62828"


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>\n{svg}\n</figure>"


def _unique_labels(labels: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def level_error_plot(table: TableView | None, *, root: str | None = None) -> str | None:
    """Per-level relative error against the relative noise floor (a band) and tolerance (dashed); local
    against cumulative where both were measured; `root` (an explanation's root level) tinted."""
    if table is None or not table.records:
        return None
    names = table.texts("level")
    labels = _unique_labels(names)
    if table.has_numbers("local_max_rel") and table.has_numbers("cumulative_max_rel"):
        series = [
            Series("local (this level alone)", table.floats("local_max_rel"), LOCAL_COLOR),
            Series("cumulative (as run)", table.floats("cumulative_max_rel"), ORIGINAL_COLOR),
        ]
    elif table.has_numbers("max_rel"):
        series = [Series("max rel", table.floats("max_rel"), ORIGINAL_COLOR)]
    else:
        return None
    bands = [Mark("noise floor (relative)", table.floats("floor_rel"), FLOOR_COLOR)] \
        if table.has_numbers("floor_rel") else []
    marks = [Mark("tolerance (relative)", table.floats("tolerance_rel"), TOLERANCE_COLOR, "6 3")] \
        if table.has_numbers("tolerance_rel") else []
    highlight = names.index(root) if root in names else None
    svg = bar_chart(title="Per-level error (max relative difference)", categories=labels, series=series,
                    marks=marks, bands=bands, log=True, y_label="max relative error",
                    flagged=table.marked_rows("status", "bad"), highlight=highlight,
                    highlight_label="root level" if highlight is not None else "")
    caption = ("Per-level error: greatest relative difference at each level, in forward order, against the "
               "level's relative noise floor (grey band) and tolerance (dashed); red labels are levels beyond "
               "tolerance.")
    if table.has_numbers("local_max_rel"):
        caption += " Local: the level run on the reference's own inputs; cumulative: as the model runs."
    if highlight is not None:
        caption += f" The root level {names[highlight]} is tinted."
    return _figure(caption, svg)


def attention_plot(table: TableView | None) -> str | None:
    if table is None or not (table.has_numbers("original_mean") or table.has_numbers("replica_mean")):
        return None
    labels = _unique_labels([module + (f" · h{head}" if value is not None else "")
                             for module, head, value in zip(table.texts("module"), table.texts("head"),
                                                            table.values("head"), strict=True)])
    series = [
        Series("original", table.floats("original_mean"), ORIGINAL_COLOR, table.floats("original_min"),
               table.floats("original_max")),
        Series("replica", table.floats("replica_mean"), REPLICA_COLOR, table.floats("replica_min"),
               table.floats("replica_max")),
    ]
    svg = bar_chart(title="Attention entropy per head", categories=labels, series=series, log=False,
                    y_label="mean attention entropy", flagged=table.flagged_rows("flag"))
    return _figure("Attention entropy per head: mean over items, original beside replica; whiskers span the "
                   "minimum and maximum. Red labels are the heads the attention check flags (entropy shifted "
                   "or collapsed).", svg)


def gradient_plot(table: TableView | None) -> str | None:
    """The parameters with the largest relative gradient difference. With absolute floors in the table, their
    absolute difference is drawn against the floor (one unit per plot); otherwise the relative difference."""
    if table is None:
        return None
    ranked = table.worst("max_rel", TOP_GRADIENTS)
    if not ranked.records:
        return None
    absolute = ranked.has_numbers("floor") and ranked.has_numbers("max_abs")
    key, what = ("max_abs", "absolute") if absolute else ("max_rel", "relative")
    marks = [Mark("noise floor (absolute)", ranked.floats("floor"), FLOOR_COLOR, "2 2")] if absolute else []
    svg = hbar_chart(title="Gradient error per parameter", labels=ranked.texts("param"),
                     values=ranked.floats(key), color=REPLICA_COLOR, name=f"gradient max {what} error",
                     marks=marks)
    n, shown = len(table.records), len(ranked.records)
    where = f"top {shown} of {n}" if n > shown else f"all {shown}"
    return _figure(f"Gradient error per parameter: greatest {what} difference of each parameter's gradient"
                   + (" against its noise floor (dashed)" if absolute else "")
                   + f" ({where} parameters, largest relative difference first).", svg)


def outcome_plots(table: TableView | None) -> list[str | None]:
    """`parity train-compare`: both sides' curves per epoch (train loss, valid loss, valid R2)."""
    if table is None or not table.records:
        return []
    epochs = [f"epoch {epoch}" for epoch in table.texts("epoch")]
    out: list[str | None] = []
    for metric, label in (("train_loss", "train loss"), ("valid_loss", "valid loss"), ("valid_r2", "valid R2")):
        series = [Series(side, table.floats(f"{side} {metric}"), color)
                  for side, color in (("original", ORIGINAL_COLOR), ("replica", REPLICA_COLOR))]
        svg = line_chart(title=f"{label} per epoch", xs=epochs, series=series, y_label=label)
        out.append(_figure(f"Learning curves: {label} of the original and the replica after each epoch.", svg))
    return out


def plots_section(view: ReportView) -> list[str]:
    figures = [
        level_error_plot(view.table("forward", "levels")),
        attention_plot(view.table("attention", "heads")),
        gradient_plot(view.table("backward", "params")),
        *outcome_plots(view.table("outcome", "epochs")),
    ]
    figures = [f for f in figures if f]
    if not figures:
        return []
    return ['<section id="plots"><h2>Plots</h2>', *figures, "</section>"]
