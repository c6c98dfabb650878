"""junit.xml: one testsuite per run, one testcase per check, for CI dashboards.

A testcase fails exactly when its check has blocking findings (at or above --fail-on and not waived), so
the number of failures is non-zero exactly when the verdict is "mismatch". Skipped checks are skipped with
their reason; non-blocking findings are listed in the testcase's system-out.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.reports.view import FindingView, ReportView, view_of

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: object) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup but not control characters)."""
    return _INVALID_XML.sub("\ufffd", str(text))


def _line(f: FindingView) -> str:
    expl = f.explained_by
    return f"[{f.severity.label}] {f.location}: {f.message}" + (f" (explained by {', '.join(expl)})" if expl else "")


def render_junit(report: Report | ReportView, fail_on: Severity | str | None = None) -> str:
    view = view_of(report, fail_on)
    summary = view.summary
    counts = {"tests": str(len(view.checks)), "failures": str(summary.checks_blocking), "errors": "0",
              "skipped": str(summary.checks_skipped)}

    root = ET.Element("testsuites", {"name": "parity", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": _x(f"parity.{view.variant}"), **counts})
    props = ET.SubElement(suite, "properties")
    for name, value in (("variant", view.variant), ("verdict", summary.verdict), ("fail_on", view.fail_on.label)):
        ET.SubElement(props, "property", {"name": name, "value": _x(value)})

    if view.explanations:  # the diagnosis, for people reading the CI view
        lines = []
        for e in view.explanations:
            where = f" at {e.root_level}" if e.root_level else ""
            lines.append(f"{e.id} [{e.severity.label}]{' WAIVED' if e.waived else ''}{where}: {e.title}; {e.fix_line}")
        ET.SubElement(suite, "system-out").text = _x("\n".join(lines))
    for check in view.checks:
        case = ET.SubElement(suite, "testcase", {"classname": "parity", "name": _x(check.id)})
        if check.skipped:
            ET.SubElement(case, "skipped", {"message": _x(check.reason or "skipped")})
            continue
        failing = check.blocking
        if failing:
            first = failing[0]
            more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
            failure = ET.SubElement(case, "failure", {
                "message": _x(f"{first.location}: {first.message}{more}"),
                "type": check.worst_blocking.label if check.worst_blocking is not None else "",
            })
            failure.text = _x("\n".join(_line(f) for f in failing))
        others = [f for f in check.findings if not f.blocking]
        if others:
            out = ET.SubElement(case, "system-out")
            out.text = _x("\n".join(_line(f) for f in others))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
