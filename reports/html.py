"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external resources).

Layout: verdict banner, subjects, explanations (each with its picture first: the per-level relative error,
local against cumulative, its root level marked and the noise floor as a band; then the facts; then its
evidence folded and grouped by check), unexplained findings, drift, plots (per-level error, attention entropy
per head with the heads the check warns about flagged, gradient error per parameter), noise floors as tables,
then one section per check with its findings and tables, and finally settings and run details as tables. All
report text is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.reports._common import (
    blocking_keys,
    coerce_fail_on,
    columns_for,
    drift_lists,
    evidence_by_check,
    explained_by,
    findings_by_key,
    fmt,
    fmt_fix_status,
    header,
    measured_effects,
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
from percepiano_parity.reports._sections import FLOOR_LABELS, RUN_LABELS, SETTINGS_LABELS, Labels, sections
from percepiano_parity.reports.html_plots import level_error_plot, plots_section, report_rows

COLLAPSE_ROWS = 50

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
.card figure { margin: 8px 0 4px; border: none; padding: 0; }
.card details h4 { margin: 8px 0 2px; font-size: 13px; }
.fix-failed { color: var(--warn); font-weight: 600; }
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
    body += plots_section(report)
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
    levels = report_rows(report, "forward", "levels")
    for e in ordered_explanations(report.explanations):
        out.append(_explanation(e, by_key, levels))
    out.append("</section>")
    return out


def _explanation(e: Explanation, by_key: Mapping[str, Any], levels: Sequence[Mapping[str, Any]] = ()) -> str:
    classes = f"card {e.severity.label}" + (" waived" if e.waived else "")
    waived = ' <span class="waived-tag">WAIVED</span>' if e.waived else ""
    out = [f'<article class="{classes}" id="expl-{escape(_anchor(e.id))}">',
           f"<h3>{_sev(e.severity)} {_code(e.id)} {_e(e.title)}{waived}</h3>"]
    if levels and (e.root_level or any(str(k).startswith("forward:") for k in e.evidence)):
        picture = level_error_plot(levels, root=e.root_level)
        if picture:
            out.append(picture)
    if e.waived:
        out.append(f"<p><strong>Waived:</strong> {_e(e.waiver_reason or 'no reason given')}</p>")
    status = fmt_fix_status(e)
    shown = f'<span class="fix-failed">{escape(status)}</span>' if status.startswith("fix failed") else escape(status)
    facts = [("Root level", _code(e.root_level)), ("First divergent op", _code(e.first_divergent_op)),
             ("Fix verified", shown)]
    if e.quirk:
        facts.append(("Original's quirk", "yes — a replica may fix it on purpose"))
    facts += [("What the original does", _e(e.original_does)), ("What the replica does", _e(e.replica_does)),
              ("Effect", _e(e.effect))]
    measured = measured_effects(e)
    if measured:
        items = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in measured)
        facts.append(("Measured effect", f'<ul class="plain">{items}</ul>'))
    facts.append(("Fix", _e(e.fix)))
    if e.original_refs:
        facts.append(("In the original", ", ".join(_code(r) for r in e.original_refs)))
    out.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    out.append(_evidence(e, by_key))
    out.append("</article>")
    return "\n".join(out)


def _evidence(e: Explanation, by_key: Mapping[str, Any]) -> str:
    """The evidence folded, grouped by the check that found it."""
    groups = evidence_by_check(e)
    counts = " · ".join(f"{escape(check)} {len(keys)}" for check, keys in groups)
    plural = "s" if len(e.evidence) != 1 else ""
    out = [f'<details class="evidence"><summary><strong>Evidence</strong> ({len(e.evidence)} finding{plural}'
           + (f": {counts}" if counts else "") + ")</summary>"]
    for check, keys in groups:
        items = []
        for key in keys:
            finding = by_key.get(key)
            detail = f" — {_sev(finding.severity)} {_e(finding.message)}" if finding else ""
            items.append(f"<li>{_code(key)}{detail}</li>")
        out.append(f'<h4>{escape(check)} ({len(keys)})</h4><ul class="plain">{"".join(items)}</ul>')
    out.append("</details>")
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


# ---------------------------------------------------------------------------------------------- checks


def _tables(data: Mapping[str, Any], labels: Mapping[str, Labels]) -> list[str]:
    """A nested mapping as tables (reports._sections), long ones folded."""
    out = []
    for section in sections(data, labels):
        if section.title:
            out.append(f"<h3>{escape(section.title)}</h3>")
        table = html_table(section.columns, section.rows, code=section.columns[:1])
        out.append(f"<details><summary>{len(section.rows)} rows</summary>\n{table}\n</details>"
                   if section.fold else table)
    return out


def _noise_floors(report: Report) -> list[str]:
    if not report.noise_floors:
        return []
    return ['<section id="noise-floors"><h2>Noise floors</h2>', *_tables(report.noise_floors, FLOOR_LABELS),
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
    for title, data, labels in (("Settings", report.settings, SETTINGS_LABELS), ("Run", report.run, RUN_LABELS)):
        if data:
            out += [f"<h2>{title}</h2>", *_tables(data, labels)]
    out.append("</section>")
    return out
