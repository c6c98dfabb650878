"""Record (or check) the golden reports: `parity check` on the shipped bundle for the faithful replica and
four library deviations, report.json without its volatile `run` section, machine paths replaced; each
report.json is validated against the shipped schema first.

    python tools/golden_reports.py --update      # rewrite tests/golden/*.json (after an intended change)
    python tools/golden_reports.py               # compare, exit 1 on any difference

The test `tests/commands/test_reports_unchanged.py` runs the same comparison: a refactoring that changes a
single byte of a report (other than `run`) fails it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SCENARIOS: dict[str, list[str]] = {
    "faithful": [],
    "layernorm-han-output": ["--deviation", "layernorm-han-output"],
    "head-512-128": ["--deviation", "head-512-128"],
    "padded-lstm": ["--deviation", "padded-lstm"],
    "boundaries-any-change": ["--deviation", "boundaries-any-change"],
}


def normalise(text: str) -> str:
    """Machine paths out: the checkout root and the shared folder beside it."""
    shared = str(ROOT.parent / "shared")
    return text.replace(str(ROOT), "<repo>").replace(shared, "<shared>")


def _schema_errors(report: dict) -> list[str]:
    """The shipped schema's verdict on a report (every report written here validates); [] without jsonschema."""
    from percepiano_parity.core.report import schema_errors

    try:
        return schema_errors(report)
    except ImportError as exc:
        print(f"golden: not validated: {exc}", file=sys.stderr)
        return []


def report_text(name: str) -> str:
    """report.json of one scenario, `run` removed, paths normalised, as canonical JSON text."""
    env = {k: v for k, v in os.environ.items() if k not in ("PERCEPIANO_ORIGINAL", "PARITY_TEST_REFERENCE")}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "percepiano_parity", "check", *SCENARIOS[name], "--format", "json",
               "--report-dir", tmp]
        done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        report = json.loads((Path(tmp) / "report.json").read_text())
    problems = _schema_errors(report)
    if problems:
        raise RuntimeError(f"report.json of {name} does not validate against the shipped schema: "
                           + "; ".join(problems[:5]))
    report.pop("run", None)
    return normalise(json.dumps(report, indent=1, sort_keys=True)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the golden files")
    args = parser.parse_args(argv)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    differ = []
    for name in SCENARIOS:
        text = report_text(name)
        path = GOLDEN / f"{name}.json"
        if args.update:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
        elif not path.exists() or path.read_text() != text:
            differ.append(name)
    if differ:
        print(f"reports differ from tests/golden: {', '.join(differ)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
