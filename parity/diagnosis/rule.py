"""A diagnosis rule: a pattern over findings that names one deviation and explains it.

Rules see only findings (never the deviation that produced them, never the models). A rule claims the
findings it explains; one deviation that shows up at twenty levels becomes one explanation. Diagnosis
only describes: it never changes a check's verdict (findings keep their severities).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from parity.findings import Finding, Severity
from parity.report import Explanation

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]


@dataclass(frozen=True)
class SourceRef:
    """Where in the user's checkout the original does what the explanation says, found at run time."""

    file: str  # relative to virtuoso/virtuoso/ in the checkout
    pattern: str  # regular expression matched line by line; the first match is cited

    def locate(self, root: Path | None) -> str | None:
        if root is None:
            return None
        path = root / "virtuoso" / "virtuoso" / self.file
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        rx = re.compile(self.pattern)
        for i, line in enumerate(lines, 1):
            if rx.search(line):
                return f"virtuoso/virtuoso/{self.file}:{i}"
        return None


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    original_does: str
    replica_does: str
    effect: str
    fix: str
    match: Matcher
    refs: tuple[SourceRef, ...] = ()
    quirk: bool = False  # the original's own quirk: a replica may waive it as an intended fix
    fix_action: str | None = None  # name of a mechanical fix (see parity.fixes), None when there is none
    priority: int = 50  # lower runs first; specific rules before generic ones
    tags: tuple[str, ...] = field(default=())

    def explain(self, claimed: Sequence[Finding], root: Path | None) -> Explanation:
        refs = [r for r in (ref.locate(root) for ref in self.refs) if r]
        return Explanation(
            id=self.id, title=self.title, severity=self.severity, original_does=self.original_does,
            replica_does=self.replica_does, effect=self.effect, fix=self.fix,
            evidence=sorted({f.key for f in claimed}), original_refs=refs, quirk=self.quirk,
        )


# -- small matcher vocabulary (rules compose these) --------------------------------------------------------

def having(findings: Sequence[Finding], kind: str | None = None, check: str | None = None,
           where: Callable[[Finding], bool] | None = None) -> list[Finding]:
    return [f for f in findings if (kind is None or f.kind == kind) and (check is None or f.check == check)
            and (where is None or where(f))]


def significant(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity >= Severity.WARNING]
