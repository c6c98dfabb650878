"""What CI accepts between rounds: waivers (named deviations accepted on purpose, with a reason) and the
drift between two runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, field_validator, model_validator

from percepiano_parity.commands.options import UsageError
from percepiano_parity.core.report import Explanation, Report
from percepiano_parity.core.validation import InputError, Schema, read_toml, validated

# ----------------------------------------------------------------------------------------------------------
# Waivers: named deviations accepted on purpose, with a reason, so CI fails only on new ones.
#
# File format (TOML):
#
#     [[waiver]]
#     id = "PP-SPAN-COUNT-QUIRK"          # an explanation id (see `parity explain`), or
#     # finding = "forward:forward.mismatch:logits"   # a finding key for an unexplained finding
#     reason = "we intentionally count notes correctly when spanning beats"
#
# Waived items stay in every report, marked waived with their reason.


class WaiverEntry(Schema):
    """One `[[waiver]]` table: a reason, and an explanation id or a finding key."""

    reason: str
    id: str = ""
    finding: str = ""

    @field_validator("reason")
    @classmethod
    def _said(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason: expected a non-empty reason for the waiver")
        return value

    @model_validator(mode="after")
    def _names_something(self) -> WaiverEntry:
        if not self.id and not self.finding:
            raise ValueError("needs an id (an explanation id, see `parity explain`) or a finding key")
        return self


class WaiversFile(Schema):
    """A waivers file: any number of `[[waiver]]` tables and nothing else."""

    waiver: list[WaiverEntry] = []


@dataclass(frozen=True)
class Waiver:
    reason: str
    id: str = ""
    finding: str = ""


@dataclass
class Waivers:
    items: list[Waiver] = field(default_factory=list)
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> Waivers:
        """Read and check a waivers file; InputError (one line, exit code 2) for a bad value, including an
        explanation id no rule has (a waiver that could never apply is a typo, not a no-op)."""
        from percepiano_parity.diagnosis import RULES

        p = Path(path)
        source = f"waivers file {p}"
        parsed = validated(WaiversFile, read_toml(p, what="waivers file"), source=source)
        known = {rule.id for rule in RULES}
        for i, entry in enumerate(parsed.waiver, 1):
            if entry.id and entry.id not in known:
                raise InputError(f"{source}: waiver[{i}].id: unknown explanation id {entry.id!r}; known ids: "
                                 f"{', '.join(sorted(known))} (see `parity explain ID`)")
        return cls([Waiver(reason=e.reason, id=e.id, finding=e.finding) for e in parsed.waiver], str(p))

    def reason_for(self, explanation: Explanation) -> str | None:
        for w in self.items:
            if w.id and w.id == explanation.id:
                return w.reason
            if w.finding and w.finding in explanation.evidence:
                return w.reason
        return None

    def apply(self, explanations: list[Explanation]) -> None:
        for e in explanations:
            reason = self.reason_for(e)
            if reason is not None:
                e.waived = True
                e.waiver_reason = reason


# ----------------------------------------------------------------------------------------------------------
# Drift between two runs: which explanations are new, which are gone, which stayed.
#
# Explanations are compared by their stable ids (see `parity explain`), so a CI job can accept the deviations
# it already knows (and has waived or scheduled) and fail only on new ones (`--fail-on-new`). Findings that no
# rule explains have no id; they are compared by finding key and listed as `finding:<key>`.


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
