"""junit.xml: one testsuite per run, one testcase per check, for CI dashboards.

A testcase fails exactly when its check has blocking findings (at or above --fail-on and not waived), so
the number of failures is non-zero exactly when the verdict is "mismatch". Skipped checks are skipped with
their reason; non-blocking findings are listed in the testcase's system-out.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import Report
from percepiano_parity.reports._common import (
    coerce_fail_on,
    explained_by,
    fmt_fix_status,
    ordered_checks,
    ordered_explanations,
    ordered_findings,
)

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: object) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup but not control characters)."""
    return _INVALID_XML.sub("\ufffd", str(text))


def _line(f: Finding, covered: dict[str, list[str]]) -> str:
    expl = covered.get(f.key)
    return f"[{f.severity.label}] {f.location}: {f.message}" + (f" (explained by {', '.join(expl)})" if expl else "")


def render_junit(report: Report, fail_on: Severity) -> str:
    fail_on = coerce_fail_on(fail_on)
    checks = ordered_checks(report.checks)
    blocking = {f.key for f in report.blocking(fail_on)}
    covered = explained_by(report)
    n_failed = sum(1 for c in checks if c.status != "skipped" and any(f.key in blocking for f in c.findings))
    n_skipped = sum(1 for c in checks if c.status == "skipped")
    counts = {"tests": str(len(checks)), "failures": str(n_failed), "errors": "0", "skipped": str(n_skipped)}

    root = ET.Element("testsuites", {"name": "parity", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": _x(f"parity.{report.variant}"), **counts})
    props = ET.SubElement(suite, "properties")
    for name, value in (("variant", report.variant), ("verdict", report.verdict(fail_on)),
                        ("fail_on", fail_on.label)):
        ET.SubElement(props, "property", {"name": name, "value": _x(value)})

    if report.explanations:  # the diagnosis, for people reading the CI view
        lines = []
        for e in ordered_explanations(report.explanations):
            where = f" at {e.root_level}" if e.root_level else ""
            status = fmt_fix_status(e)
            fix = status if status.startswith("fix failed") else f"fix verified {status}"
            lines.append(f"{e.id} [{e.severity.label}]{' WAIVED' if e.waived else ''}{where}: {e.title}; {fix}")
        ET.SubElement(suite, "system-out").text = _x("\n".join(lines))
    for check in checks:
        case = ET.SubElement(suite, "testcase", {"classname": "parity", "name": _x(check.id)})
        if check.status == "skipped":
            ET.SubElement(case, "skipped", {"message": _x(check.reason or "skipped")})
            continue
        findings = ordered_findings(check.findings)
        failing = [f for f in findings if f.key in blocking]
        if failing:
            worst = max(f.severity for f in failing)
            first = failing[0]
            more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
            failure = ET.SubElement(case, "failure", {
                "message": _x(f"{first.location}: {first.message}{more}"),
                "type": worst.label,
            })
            failure.text = _x("\n".join(_line(f, covered) for f in failing))
        others = [f for f in findings if f.key not in blocking]
        if others:
            out = ET.SubElement(case, "system-out")
            out.text = _x("\n".join(_line(f, covered) for f in others))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
