"""Render report.json files through every writer (console full, narrow and CI-sized, Markdown, HTML, JUnit), to
pin the writers' output byte for byte: the golden reports (tests/golden/*.json) are read back into a `Report`
and laid out by each writer; tests/golden/renderings/digests.json holds the SHA-256 of each rendering (the renderings
themselves are about 2 MB).

    python tools/render_reports.py                               # compare with the digests, exit 1 on a change
    python tools/render_reports.py --update                      # rewrite the digests (after an intended change)
    python tools/render_reports.py --out DIR [REPORT.json ...]   # write the renderings (default: the golden ones)

To see what changed, write the renderings with `--out` before and after the change (`git stash`) and diff the
two folders. The test `tests/reports/test_renderings_unchanged.py` runs the same comparison. The console's
renderings depend on rich's layout, so they are compared only under the rich version they were recorded with.
The golden report.json files have their keys sorted, so tables list their extra columns in that order: the
renderings pin the writers, not what `parity check` prints (`--out` on a report.json it wrote covers that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from io import StringIO
from pathlib import Path
from typing import Any

from rich.console import Console

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult, Explanation, Report
from percepiano_parity.reports.console import render_console
from percepiano_parity.reports.html import render_html
from percepiano_parity.reports.junit import render_junit
from percepiano_parity.reports.markdown import render_markdown

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
DIGESTS = GOLDEN / "renderings" / "digests.json"  # beside, not among, the golden report.json files
CONSOLE = "console"  # renderings whose names start so depend on rich's version


def report_from_dict(data: Mapping[str, Any]) -> Report:
    """A `Report` from report.json as `Report.to_dict` wrote it (the verdict is recomputed, not read)."""

    def explanation(e: Mapping[str, Any]) -> Explanation:
        expected = e.get("expected_effect", "")
        effect = e.get("effect") or {}
        measured = {} if effect == {"expected": expected} else dict(effect)
        return Explanation(
            id=e["id"], title=e["title"], severity=Severity.parse(e["severity"]),
            original_does=e["original_does"], replica_does=e["replica_does"], effect=expected, fix=e["fix"],
            evidence=list(e.get("evidence", [])), original_refs=list(e.get("original_refs", [])),
            root_level=e.get("root_level"), first_divergent_op=e.get("first_divergent_op"),
            fix_verified=e.get("fix_verified"), effect_measured=measured, waived=bool(e.get("waived")),
            waiver_reason=e.get("waiver_reason", ""), quirk=bool(e.get("quirk")),
        )

    checks = [CheckResult(c["id"], c["status"], [Finding.from_dict(f) for f in c.get("findings", [])],
                          reason=c.get("reason", ""), tables=dict(c.get("tables", {})))
              for c in data.get("checks", [])]
    return Report(
        variant=data["variant"], subjects=list(data.get("subjects", [])), checks=checks,
        explanations=[explanation(e) for e in data.get("explanations", [])],
        unexplained=list(data.get("unexplained", [])), noise_floors=dict(data.get("noise_floors") or {}),
        settings=dict(data.get("settings") or {}), drift=data.get("drift"), run=dict(data.get("run") or {}),
    )


def _console(width: int, compact: bool) -> Callable[[Report, Severity], str]:
    def render(report: Report, fail_on: Severity) -> str:
        console = Console(file=StringIO(), width=width, color_system=None, force_terminal=False)
        render_console(report, fail_on, console, compact=compact)
        return console.file.getvalue()

    return render


# file name -> writer; the narrow console leaves columns out, the CI-sized one keeps only the marked rows
WRITERS: dict[str, Callable[[Report, Severity], str]] = {
    "console-120.txt": _console(120, False),
    "console-80.txt": _console(80, False),
    "console-ci-120.txt": _console(120, True),
    "report.md": render_markdown,
    "report.html": render_html,
    "junit.xml": render_junit,
}


def renderings(report: Report, fail_on: Severity = Severity.WARNING) -> dict[str, str]:
    """Every writer's output for `report`, by file name."""
    return {name: write(report, fail_on) for name, write in WRITERS.items()}


def golden_reports() -> dict[str, Report]:
    """The golden scenarios' reports, by scenario name."""
    return {path.stem: report_from_dict(json.loads(path.read_text())) for path in sorted(GOLDEN.glob("*.json"))}


def rich_version() -> str:
    from importlib.metadata import version

    return version("rich")


def digests(reports: Mapping[str, Report]) -> dict[str, dict[str, str]]:
    """scenario -> rendering name -> SHA-256 of its UTF-8 text."""
    return {scenario: {name: hashlib.sha256(text.encode("utf-8")).hexdigest()
                       for name, text in renderings(report).items()} for scenario, report in reports.items()}


def recorded() -> dict[str, Any]:
    """digests.json: {"rich": version, "digests": {scenario: {name: sha256}}}."""
    return json.loads(DIGESTS.read_text(encoding="utf-8"))


def changed(now: Mapping[str, Mapping[str, str]], stored: Mapping[str, Any]) -> list[str]:
    """The "scenario/name" renderings that differ from the stored digests (console ones only under the rich
    version they were recorded with)."""
    same_rich = stored.get("rich") == rich_version()
    out = []
    for scenario in sorted(set(now) | set(stored["digests"])):
        expected, got = stored["digests"].get(scenario, {}), now.get(scenario, {})
        for name in sorted(set(expected) | set(got)):
            if (same_rich or not name.startswith(CONSOLE)) and expected.get(name) != got.get(name):
                out.append(f"{scenario}/{name}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="*", type=Path, help="report.json files (default: the golden ones)")
    parser.add_argument("--out", type=Path, help="write the renderings here (one folder per report)")
    parser.add_argument("--update", action="store_true", help="rewrite tests/golden/renderings/digests.json")
    args = parser.parse_args(argv)
    reports = ({p.stem if p.name != "report.json" else p.parent.name: report_from_dict(json.loads(p.read_text()))
                for p in args.reports} if args.reports else golden_reports())
    if args.out:
        for scenario, report in reports.items():
            for name, text in renderings(report).items():
                path = args.out / scenario / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        print(f"wrote {len(reports)} reports x {len(WRITERS)} writers under {args.out}")
        return 0
    now = digests(reports)
    if args.update:
        DIGESTS.parent.mkdir(parents=True, exist_ok=True)
        DIGESTS.write_text(json.dumps({"rich": rich_version(), "digests": now}, indent=1, sort_keys=True) + "\n",
                           encoding="utf-8")
        print(f"wrote {DIGESTS.relative_to(ROOT)}")
        return 0
    differ = changed(now, recorded())
    if differ:
        print("renderings changed: " + ", ".join(differ))
        return 1
    print(f"unchanged: {len(reports)} reports x {len(WRITERS)} writers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
