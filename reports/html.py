"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external resources).

Layout: verdict banner, subjects, explanations, unexplained findings, drift, plots (per-level error,
attention entropy per head, gradient error per parameter), noise floors, then one section per check with
its findings and tables, and finally settings and run details. All report text is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.reports._common import (
    as_float,
    blocking_keys,
    coerce_fail_on,
    columns_for,
    drift_lists,
    explained_by,
    findings_by_key,
    fmt,
    fmt_fix_verified,
    header,
    mapping_table,
    numeric_columns,
    ordered_checks,
    ordered_explanations,
    ordered_findings,
    shim_text,
    status_tone,
    subject_dicts,
    subject_label,
    summarize,
    table_rows,
    table_title,
)
from percepiano_parity.reports._svg import Mark, Series, bar_chart, hbar_chart, line_chart

COLLAPSE_ROWS = 50
TOP_GRADIENTS = 40

ORIGINAL_COLOR = "#4e79a7"
REPLICA_COLOR = "#f28e2b"
LOCAL_COLOR = "#59a14f"
FLOOR_COLOR = "#666666"
TOLERANCE_COLOR = "#c62828"

CSS = """
:root { --bad: #c62828; --good: #2e7d32; --warn: #b26a00; --muted: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1d;
       background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 0 20px 40px; }
.banner { padding: 18px 20px; color: #fff; }
.banner.equivalent { background: var(--good); }
.banner.mismatch { background: var(--bad); }
.banner h1 { margin: 0; font-size: 26px; letter-spacing: .04em; }
.banner p { margin: 4px 0 0; }
nav { padding: 8px 20px; background: #eee; border-bottom: 1px solid var(--line); }
nav a { margin-right: 14px; color: #234; }
h2 { margin-top: 32px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { margin-bottom: 6px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f0f0f0;
       padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0 16px; background: #fff; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
.good { color: var(--good); }
.muted { color: var(--muted); }
.sev { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 11px; font-weight: 700;
       color: #fff; text-transform: uppercase; }
.sev.error { background: var(--bad); } .sev.warning { background: var(--warn); } .sev.info { background: #1565c0; }
.card { background: #fff; border: 1px solid var(--line); border-left: 5px solid var(--bad); border-radius: 4px;
        padding: 10px 16px; margin: 12px 0; }
.card.warning { border-left-color: var(--warn); } .card.info { border-left-color: #1565c0; }
.card.waived { opacity: .8; border-left-color: #888; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0; }
.card dt { font-weight: 600; } .card dd { margin: 0; }
.waived-tag { color: #6a1b9a; font-weight: 700; }
figure { margin: 12px 0 24px; overflow-x: auto; background: #fff; border: 1px solid var(--line);
         padding: 8px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-bottom: 6px; }
.status-failed { color: var(--bad); font-weight: 700; } .status-passed { color: var(--good); font-weight: 700; }
.status-skipped { color: var(--muted); } .status-waived { color: #6a1b9a; font-weight: 700; }
details > summary { cursor: pointer; color: #234; margin: 6px 0; }
ul.plain { margin: 4px 0; }
"""


def _e(value: Any) -> str:
    return escape(fmt(value), quote=True)


def _code(value: Any) -> str:
    return f"<code>{_e(value)}</code>" if value not in (None, "") else "—"


def _sev(severity: Severity) -> str:
    return f'<span class="sev {severity.label}">{severity.label}</span>'


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower())


def html_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, code: Sequence[str] = ()) -> str:
    numeric = numeric_columns(rows, columns)
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{escape(header(c))}</th>" for c in columns) + "</tr></thead>",
           "<tbody>"]
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            classes = []
            if c in numeric:
                classes.append("num")
            tone = status_tone(value)
            if tone:
                classes.append(tone)
            attr = f' class="{" ".join(classes)}"' if classes else ""
            text = _code(value) if c in code and value is not None else _e(value)
            cells.append(f"<td{attr}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _maybe_collapsed(table: str, n_rows: int) -> str:
    if n_rows <= COLLAPSE_ROWS:
        return table
    return f"<details><summary>{n_rows} rows</summary>\n{table}\n</details>"


def render_html(report: Report, fail_on: Severity) -> str:
    fail_on = coerce_fail_on(fail_on)
    summary = summarize(report, fail_on)
    verdict = summary.verdict
    body: list[str] = [
        f'<header class="banner {escape(verdict)}"><h1>{escape(verdict.upper())}</h1>'
        f"<p>PercePiano parity · variant <strong>{_e(report.variant)}</strong> · fail on "
        f"{escape(fail_on.label)}</p><p>{_e(summary.counts_line())}</p></header>",
        '<nav><a href="#subjects">Subjects</a><a href="#explanations">Explanations</a>'
        + ('<a href="#drift">Drift</a>' if report.drift is not None else "")
        + '<a href="#plots">Plots</a><a href="#checks">Checks</a><a href="#settings">Settings</a></nav>',
        "<main>",
    ]
    body += _subjects(report)
    body += _explanations(report)
    body += _unexplained(report)
    body += _drift(report)
    body += _plots(report)
    body += _noise_floors(report)
    body += _checks(report, fail_on)
    body += _settings_and_run(report)
    body.append("</main>")
    title = f"PercePiano parity — {fmt(report.variant)} — {verdict.upper()}"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
    ]) + "\n"


def _subjects(report: Report) -> list[str]:
    out = ['<section id="subjects"><h2>Subjects</h2>']
    if not report.subjects:
        out.append('<p class="muted">No subject information.</p>')
    for i, subject in enumerate(subject_dicts(report.subjects)):
        out.append(f"<h3>{_e(subject_label(subject, i))} <span class=\"muted\">{_e(subject.get('kind'))}</span></h3>")
        out.append(f"<p>source {_code(subject.get('source'))} · revision {_code(subject.get('revision'))}</p>")
        shims = list(subject.get("shims") or [])
        if shims:
            items = []
            for shim in shims:
                name, reason = shim_text(shim)
                items.append(f"<li>{_code(name)}" + (f" — {escape(reason)}" if reason else "") + "</li>")
            out.append(f"<p>Shims ({len(shims)}):</p><ul class=\"plain\">{''.join(items)}</ul>")
        warnings = list(subject.get("warnings") or [])
        if warnings:
            items = "".join(f'<li class="warn">{_e(w)}</li>' for w in warnings)
            out.append(f'<p>Warnings ({len(warnings)}):</p><ul class="plain">{items}</ul>')
    out.append("</section>")
    return out


def _explanations(report: Report) -> list[str]:
    out = ['<section id="explanations"><h2>Explanations</h2>']
    if not report.explanations:
        out.append('<p class="muted">No deviation was diagnosed.</p>')
    by_key = findings_by_key(report)
    for e in ordered_explanations(report.explanations):
        out.append(_explanation(e, by_key))
    out.append("</section>")
    return out


def _explanation(e: Explanation, by_key: Mapping[str, Any]) -> str:
    classes = f"card {e.severity.label}" + (" waived" if e.waived else "")
    waived = ' <span class="waived-tag">WAIVED</span>' if e.waived else ""
    out = [f'<article class="{classes}" id="expl-{escape(_anchor(e.id))}">',
           f"<h3>{_sev(e.severity)} {_code(e.id)} {_e(e.title)}{waived}</h3>"]
    if e.waived:
        out.append(f"<p><strong>Waived:</strong> {_e(e.waiver_reason or 'no reason given')}</p>")
    facts = [("Root level", _code(e.root_level)), ("First divergent op", _code(e.first_divergent_op)),
             ("Fix verified", escape(fmt_fix_verified(e.fix_verified)))]
    if e.quirk:
        facts.append(("Original's quirk", "yes — a replica may fix it on purpose"))
    facts += [("What the original does", _e(e.original_does)), ("What the replica does", _e(e.replica_does)),
              ("Effect", _e(e.effect))]
    if e.effect_measured:
        items = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in e.effect_measured.items())
        facts.append(("Measured effect", f'<ul class="plain">{items}</ul>'))
    facts.append(("Fix", _e(e.fix)))
    if e.original_refs:
        facts.append(("In the original", ", ".join(_code(r) for r in e.original_refs)))
    out.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    items = []
    for key in e.evidence:
        finding = by_key.get(key)
        detail = f" — {_sev(finding.severity)} {_e(finding.message)}" if finding else ""
        items.append(f"<li>{_code(key)}{detail}</li>")
    out.append(f"<p><strong>Evidence</strong> ({len(e.evidence)})</p><ul class=\"plain\">{''.join(items)}</ul>")
    out.append("</article>")
    return "\n".join(out)


def _unexplained(report: Report) -> list[str]:
    if not report.unexplained:
        return []
    by_key = findings_by_key(report)
    items = []
    for key in sorted(report.unexplained):
        finding = by_key.get(key)
        detail = f" — {_sev(finding.severity)} {_e(finding.message)}" if finding else ""
        items.append(f"<li>{_code(key)}{detail}</li>")
    return ['<section id="unexplained"><h2>Unexplained findings</h2>',
            f"<p>No rule explains these findings:</p><ul class=\"plain\">{''.join(items)}</ul></section>"]


def _drift(report: Report) -> list[str]:
    lists = drift_lists(report.drift)
    if not lists:
        return []
    tone = {"new": "bad", "gone": "good", "unchanged": "muted"}
    out = ['<section id="drift"><h2>Drift since the previous report</h2><ul class="plain">']
    for name, ids in lists:
        shown = ", ".join(_code(i) for i in ids) if ids else "none"
        out.append(f'<li><span class="{tone[name]}">{escape(name.capitalize())} ({len(ids)})</span>: {shown}</li>')
    out.append("</ul></section>")
    return out


# ---------------------------------------------------------------------------------------------- plots


def _rows(report: Report, check_id: str, table: str) -> list[Mapping[str, Any]]:
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


def level_error_plot(rows: Sequence[Mapping[str, Any]]) -> str | None:
    if not rows:
        return None
    labels = _unique_labels([fmt(r.get("level")) for r in rows])
    if _present(rows, "local_max_rel") and _present(rows, "cumulative_max_rel"):
        series = [
            Series("local (this level alone)", [as_float(r.get("local_max_rel")) for r in rows], LOCAL_COLOR),
            Series("cumulative (as run)", [as_float(r.get("cumulative_max_rel")) for r in rows], ORIGINAL_COLOR),
        ]
    elif _present(rows, "max_rel"):
        series = [Series("max rel", [as_float(r.get("max_rel")) for r in rows], ORIGINAL_COLOR)]
    else:
        return None
    marks = [Mark(name, [as_float(r.get(key)) for r in rows], color, dash)
             for key, name, color, dash in (("floor", "noise floor", FLOOR_COLOR, "2 2"),
                                            ("tolerance", "tolerance", TOLERANCE_COLOR, "6 3"))
             if _present(rows, key)]
    flagged = frozenset(i for i, r in enumerate(rows) if status_tone(r.get("status")) == "bad")
    svg = bar_chart(title="Per-level error (max relative difference)", categories=labels, series=series,
                    marks=marks, log=True, y_label="max relative error", flagged=flagged)
    return _figure("Per-level error: greatest relative difference at each level, in forward order. Dashed "
                   "lines mark each level's noise floor and tolerance; red labels are levels beyond tolerance.", svg)


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
                   "minimum and maximum. Red labels are flagged heads.", svg)


def _is_flag(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in {"", "ok", "no", "false", "none", "-", "—"}
    return bool(value)


def gradient_plot(rows: Sequence[Mapping[str, Any]]) -> str | None:
    ranked = [r for r in rows if as_float(r.get("max_rel")) is not None]
    if not ranked:
        return None

    def rank(r: Mapping[str, Any]) -> float:
        x = as_float(r.get("max_rel"))
        return float("inf") if x is None or x != x else x

    ranked = sorted(ranked, key=rank, reverse=True)[:TOP_GRADIENTS]
    marks = [Mark("noise floor", [as_float(r.get("floor")) for r in ranked], FLOOR_COLOR, "2 2")] \
        if _present(ranked, "floor") else []
    svg = hbar_chart(title="Gradient error per parameter", labels=[fmt(r.get("param")) for r in ranked],
                     values=[as_float(r.get("max_rel")) for r in ranked], color=REPLICA_COLOR,
                     name="gradient max relative error", marks=marks)
    shown = f"top {len(ranked)} of {len(rows)}" if len(rows) > len(ranked) else f"all {len(ranked)}"
    return _figure(f"Gradient error per parameter: greatest relative difference of each parameter's gradient "
                   f"({shown} parameters, largest first).", svg)


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


def _plots(report: Report) -> list[str]:
    figures = [
        level_error_plot(_rows(report, "forward", "levels")),
        attention_plot(_rows(report, "attention", "heads")),
        gradient_plot(_rows(report, "backward", "params")),
        *outcome_plots(_rows(report, "outcome", "epochs")),
    ]
    figures = [f for f in figures if f]
    if not figures:
        return []
    return ['<section id="plots"><h2>Plots</h2>', *figures, "</section>"]


# ---------------------------------------------------------------------------------------------- checks


def _noise_floors(report: Report) -> list[str]:
    if not report.noise_floors:
        return []
    columns, rows = mapping_table(report.noise_floors)
    return ['<section id="noise-floors"><h2>Noise floors</h2>', html_table(columns, rows, code=("name",)),
            "</section>"]


def _checks(report: Report, fail_on: Severity) -> list[str]:
    checks = ordered_checks(report.checks)
    out = ['<section id="checks"><h2>Checks</h2>']
    if not checks:
        out.append('<p class="muted">No checks ran.</p>')
    else:
        rows = [{"check": c.id, "status": c.status, "findings": len(c.findings),
                 "worst": c.worst().label if c.worst() is not None else None, "note": c.reason or None}
                for c in checks]
        out.append(html_table(["check", "status", "findings", "worst", "note"], rows, code=("check",)))
    blocking = blocking_keys(report, fail_on)
    covered = explained_by(report)
    for c in checks:
        out += _check(c, blocking, covered)
    out.append("</section>")
    return out


def _check(check: CheckResult, blocking: set[str], covered: Mapping[str, list[str]]) -> list[str]:
    out = [f'<section id="check-{escape(_anchor(check.id))}">',
           f'<h3>{_code(check.id)} <span class="status-{escape(_anchor(check.status))}">{_e(check.status)}</span></h3>']
    if check.reason:
        label = "Skipped" if check.status == "skipped" else "Note"
        out.append(f"<p><em>{label}:</em> {_e(check.reason)}</p>")
    if check.findings:
        out.append("<table><thead><tr><th>severity</th><th>blocking</th><th>location</th><th>kind</th>"
                   "<th>message</th><th>explained by</th></tr></thead><tbody>")
        for f in ordered_findings(check.findings):
            expl = ", ".join(f'<a href="#expl-{escape(_anchor(i))}">{escape(i)}</a>' for i in covered.get(f.key, []))
            is_blocking = f.key in blocking
            out.append(f"<tr><td>{_sev(f.severity)}</td><td class=\"{'bad' if is_blocking else 'muted'}\">"
                       f"{'yes' if is_blocking else 'no'}</td><td>{_code(f.location)}</td><td>{_code(f.kind)}</td>"
                       f"<td>{_e(f.message)}</td><td>{expl or '—'}</td></tr>")
        out.append("</tbody></table>")
    elif check.status != "skipped":
        out.append('<p class="muted">No findings.</p>')
    for name, raw_rows in check.tables.items():
        rows = table_rows(raw_rows)
        if not rows:
            continue
        columns = columns_for(check.id, name, rows)
        out.append(f"<h4>{escape(table_title(check.id, name))} <span class=\"muted\">({escape(name)})</span></h4>")
        out.append(_maybe_collapsed(html_table(columns, rows), len(rows)))
    out.append("</section>")
    return out


def _settings_and_run(report: Report) -> list[str]:
    out = ['<section id="settings">']
    for title, data in (("Settings", report.settings), ("Run", report.run)):
        if data:
            columns, rows = mapping_table(data, key_name="key")
            out += [f"<h2>{title}</h2>", html_table(columns, rows, code=("key",))]
    out.append("</section>")
    return out
