"""Findings: the plain-data result of one check on one tap.

A finding says *what* differs, where, and by how much; it never says why (that is diagnosis). Its message
follows torch.testing's anatomy: what is not close, how many elements, the greatest difference and the
tolerance that would have allowed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}; use info, warning or error") from None


CHECK_IDS: tuple[str, ...] = (
    "structure", "init", "forward", "backward", "attention", "precision", "recipe", "trajectory", "data",
)
# checks a report has only when asked for (--dataset, parity check-features, parity train-compare)
OPTIONAL_CHECK_IDS: tuple[str, ...] = ("dataset", "features", "outcome")
ALL_CHECK_IDS: tuple[str, ...] = CHECK_IDS + OPTIONAL_CHECK_IDS


@dataclass(frozen=True)
class Finding:
    check: str  # one of CHECK_IDS
    kind: str  # machine-readable pattern id, e.g. "forward.mismatch", "structure.extra_module"
    location: str  # level, parameter, module path or recipe key
    severity: Severity
    message: str  # one line
    metrics: dict[str, Any] = field(default_factory=dict)  # JSON-able numbers and short strings
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-able details (both sides' values, ...)

    @property
    def key(self) -> str:
        """Stable identity used by waivers, drift comparison and explanations."""
        return f"{self.check}:{self.kind}:{self.location}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "check": self.check,
            "kind": self.kind,
            "location": self.location,
            "severity": self.severity.label,
            "message": self.message,
            "metrics": self.metrics,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            check=data["check"], kind=data["kind"], location=data["location"],
            severity=Severity.parse(data["severity"]), message=data["message"],
            metrics=dict(data.get("metrics", {})), evidence=dict(data.get("evidence", {})),
        )
