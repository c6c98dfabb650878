"""Waivers: named deviations accepted on purpose, with a reason, so CI fails only on new ones.

File format (TOML):

    [[waiver]]
    id = "PP-SPAN-COUNT-QUIRK"          # an explanation id (see `parity explain`), or
    # finding = "forward:forward.mismatch:logits"   # a finding key for an unexplained finding
    reason = "we intentionally count notes correctly when spanning beats"

Waived items stay in every report, marked waived with their reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from percepiano_parity.core.report import Explanation


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
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read waivers file {p}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"waivers file {p} is not valid TOML: {exc}") from None
        items = []
        for i, entry in enumerate(data.get("waiver", [])):
            if not isinstance(entry, dict) or not entry.get("reason"):
                raise ValueError(f"{p}: waiver #{i + 1} needs a reason")
            if not entry.get("id") and not entry.get("finding"):
                raise ValueError(f"{p}: waiver #{i + 1} needs an id or a finding key")
            items.append(Waiver(reason=str(entry["reason"]), id=str(entry.get("id", "")),
                                finding=str(entry.get("finding", ""))))
        return cls(items, str(p))

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
