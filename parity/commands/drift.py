"""Drift between two runs: which explanations are new, which are gone, which stayed.

Explanations are compared by their stable ids (see `parity explain`), so a CI job can accept the deviations
it already knows (and has waived or scheduled) and fail only on new ones (`--fail-on-new`). Findings that no
rule explains have no id; they are compared by finding key and listed as `finding:<key>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict

from percepiano_parity.commands.options import UsageError
from percepiano_parity.core.report import Report
from percepiano_parity.core.schema import Schema, validated


class _Explained(Schema):
    model_config = ConfigDict(extra="ignore")

    id: str


class PreviousReport(Schema):
    """The parts of an earlier report.json that drift reads."""

    variant: str
    explanations: list[_Explained] = []
    unexplained: list[str] = []


def load_previous(path: str | Path) -> dict[str, Any]:
    """An earlier report.json as a dict; UsageError (one line) when it is not a readable parity report."""
    from percepiano_parity.reports.json_report import load_report_json

    try:
        data = load_report_json(path)
    except FileNotFoundError:
        raise UsageError(f"--compare-to {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--compare-to {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise UsageError(f"--compare-to: {exc}") from None
    validated(PreviousReport, {k: data[k] for k in PreviousReport.model_fields if k in data},
              source=f"--compare-to {path}")
    return data


def ids_of(explanations: Any, unexplained: Any) -> list[str]:
    out = []
    for e in explanations or []:
        eid = e.get("id") if isinstance(e, Mapping) else getattr(e, "id", None)
        if eid:
            out.append(str(eid))
    out.extend(f"finding:{key}" for key in unexplained or [])
    return sorted(dict.fromkeys(out))


def compute_drift(report: Report, previous: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"new": [...], "gone": [...], "unchanged": [...]}: ids in this report vs the previous one."""
    now = ids_of(report.explanations, report.unexplained)
    before = ids_of(previous.get("explanations"), previous.get("unexplained"))
    return {
        "new": sorted(set(now) - set(before)),
        "gone": sorted(set(before) - set(now)),
        "unchanged": sorted(set(now) & set(before)),
    }


def drift_note(report: Report, previous: Mapping[str, Any]) -> str | None:
    """A one-line caveat when the two reports are not about the same comparison."""
    if previous.get("variant") and previous.get("variant") != report.variant:
        return (f"the previous report is for variant {previous.get('variant')}, this one for {report.variant}: "
                "drift compares different models")
    return None
