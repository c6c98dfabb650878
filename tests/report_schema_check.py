"""Every report.json the test suite writes must validate against the shipped schema (conftest runs this after
each test on its tmp_path, and once at the end over every temporary folder of the session)."""

from __future__ import annotations

import json
from pathlib import Path

from percepiano_parity.core.report import schema_errors


def invalid_reports(root: Path, seen: set[Path] | None = None) -> dict[Path, list[str]]:
    """report.json files under `root` that do not validate, with their problems; `seen` skips (and collects)
    files already checked."""
    bad: dict[Path, list[str]] = {}
    for path in sorted(Path(root).rglob("report.json")):
        if seen is not None:
            if path in seen:
                continue
            seen.add(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            bad[path] = [f"unreadable: {exc}"]
            continue
        problems = schema_errors(data)
        if problems:
            bad[path] = problems
    return bad


def describe(bad: dict[Path, list[str]]) -> str:
    return "report.json files that do not validate against percepiano_parity/data/report.schema.json:\n" + \
        "\n".join(f"  {path}:\n" + "\n".join(f"    {p}" for p in problems[:8]) for path, problems in bad.items())
