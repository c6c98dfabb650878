"""report.html: one self-contained page (inline CSS and SVG, no scripts, no external resources).

Layout: verdict banner, subjects, explanations (each with its picture first: the per-level relative error,
local against cumulative, its root level marked and the noise floor as a band; then the facts; then its
evidence folded and grouped by check), unexplained findings, drift, plots (per-level error, attention entropy
per head with the heads the check warns about flagged, gradient error per parameter), noise floors as tables,
then one section per check with its findings and tables, and finally settings and run details as tables. All
report text is escaped.
"""

from __future__ import annotations

from html import escape

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.reports.html_plots import level_error_plot, plots_section
from percepiano_parity.reports.view import (
    MISSING,
    CheckView,
    ExplanationView,
    PartView,
    ReportView,
    TableView,
    anchor,
    view_of,
)

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


def _e(value: str | None) -> str:
    return escape(value or MISSING, quote=True)


def _code(value: str | None) -> str:
    return f"<code>{_e(value)}</code>" if value else MISSING


def _sev(severity: Severity) -> str:
    return f'<span class="sev {severity.label}">{severity.label}</span>'


def html_table(table: TableView) -> str:
    out = ["<table>",
           "<thead><tr>" + "".join(f"<th>{escape(c.header)}</th>" for c in table.columns) + "</tr></thead>",
           "<tbody>"]
    for row in table.rows:
        cells = []
        for column, cell in zip(table.columns, row, strict=True):
            classes = []
            if column.numeric:
                classes.append("num")
            if cell.tone:
                classes.append(cell.tone)
            attr = f' class="{" ".join(classes)}"' if classes else ""
            text = _code(cell.text) if column.code and not cell.empty else _e(cell.text)
            cells.append(f"<td{attr}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _maybe_collapsed(table: str, n_rows: int) -> str:
    if n_rows <= COLLAPSE_ROWS:
        return table
    return f"<details><summary>{n_rows} rows</summary>\n{table}\n</details>"


def render_html(report: Report | ReportView, fail_on: Severity | str | None = None) -> str:
    view = view_of(report, fail_on)
    summary = view.summary
    verdict = summary.verdict
    body: list[str] = [
        f'<header class="banner {escape(verdict)}"><h1>{escape(verdict.upper())}</h1>'
        f"<p>PercePiano parity · variant <strong>{_e(view.variant)}</strong> · fail on "
        f"{escape(view.fail_on.label)}</p><p>{_e(summary.counts_line())}</p></header>",
        '<nav><a href="#subjects">Subjects</a><a href="#explanations">Explanations</a>'
        + ('<a href="#drift">Drift</a>' if view.drift is not None else "")
        + '<a href="#plots">Plots</a><a href="#checks">Checks</a><a href="#settings">Settings</a></nav>',
        "<main>",
    ]
    body += _subjects(view)
    body += _explanations(view)
    body += _unexplained(view)
    body += _drift(view)
    body += plots_section(view)
    body += _noise_floors(view.parts.get("noise_floors"))
    body += _checks(view)
    body += _settings_and_run([p for name, p in view.parts.items() if name != "noise_floors"])
    body.append("</main>")
    title = f"PercePiano parity — {view.variant or MISSING} — {verdict.upper()}"
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


def _subjects(view: ReportView) -> list[str]:
    out = ['<section id="subjects"><h2>Subjects</h2>']
    if not view.subjects:
        out.append('<p class="muted">No subject information.</p>')
    for subject in view.subjects:
        out.append(f"<h3>{_e(subject.label)} <span class=\"muted\">{_e(subject.kind)}</span></h3>")
        out.append(f"<p>source {_code(subject.source)} · revision {_code(subject.revision)}</p>")
        if subject.shims:
            items = []
            for name, reason in subject.shims:
                items.append(f"<li>{_code(name)}" + (f" — {escape(reason)}" if reason else "") + "</li>")
            out.append(f"<p>Shims ({len(subject.shims)}):</p><ul class=\"plain\">{''.join(items)}</ul>")
        if subject.warnings:
            items = "".join(f'<li class="warn">{_e(w)}</li>' for w in subject.warnings)
            out.append(f'<p>Warnings ({len(subject.warnings)}):</p><ul class="plain">{items}</ul>')
    out.append("</section>")
    return out


def _explanations(view: ReportView) -> list[str]:
    out = ['<section id="explanations"><h2>Explanations</h2>']
    if not view.explanations:
        out.append('<p class="muted">No deviation was diagnosed.</p>')
    levels = view.table("forward", "levels")
    for e in view.explanations:
        out.append(_explanation(e, levels))
    out.append("</section>")
    return out


def _explanation(e: ExplanationView, levels: TableView | None) -> str:
    classes = f"card {e.severity.label}" + (" waived" if e.waived else "")
    waived = ' <span class="waived-tag">WAIVED</span>' if e.waived else ""
    out = [f'<article class="{classes}" id="expl-{escape(e.anchor)}">',
           f"<h3>{_sev(e.severity)} {_code(e.id)} {_e(e.title)}{waived}</h3>"]
    if e.concerns_levels:
        picture = level_error_plot(levels, root=e.root_level)
        if picture:
            out.append(picture)
    if e.waived:
        out.append(f"<p><strong>Waived:</strong> {_e(e.waiver_reason)}</p>")
    shown = f'<span class="fix-failed">{escape(e.fix_status)}</span>' if e.fix_failed else escape(e.fix_status)
    facts = [("Root level", _code(e.root_level)), ("First divergent op", _code(e.first_divergent_op)),
             ("Fix verified", shown)]
    if e.quirk:
        facts.append(("Original's quirk", "yes — a replica may fix it on purpose"))
    facts += [("What the original does", _e(e.original_does)), ("What the replica does", _e(e.replica_does)),
              ("Effect", _e(e.effect))]
    if e.measured:
        items = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in e.measured)
        facts.append(("Measured effect", f'<ul class="plain">{items}</ul>'))
    facts.append(("Fix", _e(e.fix)))
    if e.original_refs:
        facts.append(("In the original", ", ".join(_code(r) for r in e.original_refs)))
    out.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    out.append(_evidence(e))
    out.append("</article>")
    return "\n".join(out)


def _evidence(e: ExplanationView) -> str:
    """The evidence folded, grouped by the check that found it."""
    counts = " · ".join(f"{escape(check)} {len(items)}" for check, items in e.evidence_groups)
    plural = "s" if len(e.evidence) != 1 else ""
    out = [f'<details class="evidence"><summary><strong>Evidence</strong> ({len(e.evidence)} finding{plural}'
           + (f": {counts}" if counts else "") + ")</summary>"]
    for check, group in e.evidence_groups:
        items = []
        for item in group:
            finding = item.finding
            detail = f" — {_sev(finding.severity)} {_e(finding.message)}" if finding else ""
            items.append(f"<li>{_code(item.key)}{detail}</li>")
        out.append(f'<h4>{escape(check)} ({len(group)})</h4><ul class="plain">{"".join(items)}</ul>')
    out.append("</details>")
    return "\n".join(out)


def _unexplained(view: ReportView) -> list[str]:
    if not view.unexplained:
        return []
    items = []
    for item in view.unexplained:
        finding = item.finding
        detail = f" — {_sev(finding.severity)} {_e(finding.message)}" if finding else ""
        items.append(f"<li>{_code(item.key)}{detail}</li>")
    return ['<section id="unexplained"><h2>Unexplained findings</h2>',
            f"<p>No rule explains these findings:</p><ul class=\"plain\">{''.join(items)}</ul></section>"]


def _drift(view: ReportView) -> list[str]:
    if not view.drift:
        return []
    tone = {"new": "bad", "gone": "good", "unchanged": "muted"}
    out = ['<section id="drift"><h2>Drift since the previous report</h2><ul class="plain">']
    for name, ids in view.drift:
        shown = ", ".join(_code(i) for i in ids) if ids else "none"
        out.append(f'<li><span class="{tone[name]}">{escape(name.capitalize())} ({len(ids)})</span>: {shown}</li>')
    out.append("</ul></section>")
    return out


# ---------------------------------------------------------------------------------------------- checks


def _tables(part: PartView) -> list[str]:
    """A part's tables (plain values first, then one per nested mapping), long ones folded."""
    out = []
    for table in part.tables:
        if table.title:
            out.append(f"<h3>{escape(table.title)}</h3>")
        text = html_table(table)
        out.append(f"<details><summary>{len(table.rows)} rows</summary>\n{text}\n</details>" if table.fold else text)
    return out


def _noise_floors(part: PartView | None) -> list[str]:
    if part is None:
        return []
    return [f'<section id="noise-floors"><h2>{escape(part.title)}</h2>', *_tables(part), "</section>"]


def _checks(view: ReportView) -> list[str]:
    out = ['<section id="checks"><h2>Checks</h2>']
    if view.checks_table is None:
        out.append('<p class="muted">No checks ran.</p>')
    else:
        out.append(html_table(view.checks_table))
    for c in view.checks:
        out += _check(c)
    out.append("</section>")
    return out


def _check(check: CheckView) -> list[str]:
    out = [f'<section id="check-{escape(check.anchor)}">',
           f'<h3>{_code(check.id)} <span class="status-{escape(anchor(check.status))}">{_e(check.status)}</span></h3>']
    if check.reason:
        label = "Skipped" if check.skipped else "Note"
        out.append(f"<p><em>{label}:</em> {_e(check.reason)}</p>")
    if check.findings:
        out.append("<table><thead><tr><th>severity</th><th>blocking</th><th>location</th><th>kind</th>"
                   "<th>message</th><th>explained by</th></tr></thead><tbody>")
        for f in check.findings:
            expl = ", ".join(f'<a href="#expl-{escape(anchor(i))}">{escape(i)}</a>' for i in f.explained_by)
            out.append(f"<tr><td>{_sev(f.severity)}</td><td class=\"{'bad' if f.blocking else 'muted'}\">"
                       f"{'yes' if f.blocking else 'no'}</td><td>{_code(f.location)}</td><td>{_code(f.kind)}</td>"
                       f"<td>{_e(f.message)}</td><td>{expl or MISSING}</td></tr>")
        out.append("</tbody></table>")
    elif not check.skipped:
        out.append('<p class="muted">No findings.</p>')
    for table in check.tables:
        out.append(f"<h4>{escape(table.title)} <span class=\"muted\">({escape(table.name)})</span></h4>")
        out.append(_maybe_collapsed(html_table(table), len(table.rows)))
    out.append("</section>")
    return out


def _settings_and_run(parts: list[PartView]) -> list[str]:
    out = ['<section id="settings">']
    for part in parts:
        out += [f"<h2>{escape(part.title)}</h2>", *_tables(part)]
    out.append("</section>")
    return out
