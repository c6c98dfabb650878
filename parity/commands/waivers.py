"""Waivers: named deviations accepted on purpose, with a reason, so CI fails only on new ones.

File format (TOML):

    [[waiver]]
    id = "PP-SPAN-COUNT-QUIRK"          # an explanation id (see `parity explain`), or
    # finding = "forward:forward.mismatch:logits"   # a finding key for an unexplained finding
    reason = "we intentionally count notes correctly when spanning beats"

Waived items stay in every report, marked waived with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import field_validator, model_validator

from percepiano_parity.core.report import Explanation
from percepiano_parity.core.schema import Schema, validated
from percepiano_parity.core.validation import InputError, read_toml


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
