"""A diagnosis rule: a pattern over findings that names one deviation and explains it.

Rules see only findings (never the deviation that produced them, never the models). A rule claims the
findings it explains; one deviation that shows up at twenty levels becomes one explanation. Diagnosis
only describes: it never changes a check's verdict (findings keep their severities).
"""

from __future__ import annotations

import math
import posixpath
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import Explanation

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]


@dataclass(frozen=True)
class SourceRef:
    """Where in the user's checkout the original does what the explanation says, found at run time."""

    file: str  # relative to virtuoso/virtuoso/ in the checkout ("../scripts/..." for the training scripts)
    pattern: str  # regular expression matched line by line; the first match is cited

    @property
    def path(self) -> str:
        """The file relative to the checkout root, e.g. "virtuoso/virtuoso/utils.py"."""
        return posixpath.normpath(posixpath.join("virtuoso", "virtuoso", self.file))

    def locate(self, root: Path | None) -> str | None:
        """"path:line" of the first line matching the pattern in the checkout at `root`, or None."""
        if root is None:
            return None
        try:
            lines = (Path(root) / self.path).read_text(errors="replace").splitlines()
        except OSError:
            return None
        rx = re.compile(self.pattern)
        for i, line in enumerate(lines, 1):
            if rx.search(line):
                return f"{self.path}:{i}"
        return None


class _Missing:
    pass


_MISSING = _Missing()


class _MeasuredFormatter(string.Formatter):
    """str.format for explanation templates; a figure that was not measured raises _Unmeasured."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        value = kwargs.get(str(key), _MISSING)
        if value is _MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
            raise _Unmeasured(str(key))
        return value

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return super().format_field(value, format_spec)
        except (TypeError, ValueError):
            return str(value)


class _Unmeasured(LookupError):
    pass


_OPTIONAL = re.compile(r"«([^«»]*)»")


def fill(template: str, measured: Mapping[str, Any]) -> str:
    """Fill "{name:spec}" placeholders of a rule text with measured figures.

    Nothing is made up for a figure that was not measured: a part written «like this {name}» is left out when
    any figure in it is missing; elsewhere, the innermost parenthesised group holding the missing figure, or
    else its clause (between commas, semicolons or colons), is left out.
    """
    formatter = _MeasuredFormatter()
    values = {k: v for k, v in measured.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}

    def optional(m: re.Match[str]) -> str:
        try:
            return formatter.vformat(m.group(1), (), values)
        except _Unmeasured:
            return ""

    text = _OPTIONAL.sub(optional, template)
    for _ in range(20):
        missing = next(((literal_end, name) for literal_end, name in _placeholder_positions(text)
                        if name not in values), None)
        if missing is None:
            break
        text = _drop_around(text, missing[0])
    out = " ".join(formatter.vformat(text, (), values).split()).replace(" .", ".").replace(" ,", ",")
    return out[:1].upper() + out[1:] if template[:1].isupper() else out


def _placeholder_positions(text: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    for literal, name, spec, conv in string.Formatter().parse(text):
        pos += len(literal)
        if name is not None:
            out.append((pos, name))
            pos += len(name) + 2 + (len(spec) + 1 if spec else 0) + (len(conv) + 1 if conv else 0)
    return out


def _outside_braces(text: str) -> list[bool]:
    """For each character, whether it lies outside every {placeholder}."""
    out, depth = [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        out.append(depth == 0)
        if ch == "}":
            depth = max(0, depth - 1)
    return out


def _drop_around(text: str, at: int) -> str:
    """Remove the innermost (...) around position `at`, else the clause around it (delimiters inside other
    placeholders, such as a format spec's colon, do not count)."""
    free = _outside_braces(text)
    depth, open_at = 0, -1
    for i in range(at - 1, -1, -1):
        if not free[i]:
            continue
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            if depth == 0:
                open_at = i
                break
            depth -= 1
    if open_at >= 0:
        depth, close = 0, -1
        for i in range(at, len(text)):
            if not free[i]:
                continue
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                if depth == 0:
                    close = i
                    break
                depth -= 1
        if close > 0:
            return text[:open_at].rstrip() + text[close + 1:]
    start = max((i for i in range(at) if free[i] and text[i] in ",;:"), default=-1)
    end = min((i for i in range(at, len(text)) if free[i] and text[i] in ",;."), default=len(text))
    if start < 0:
        # the first clause: leave out just the figure and the small word that leads to it ("at", "by", ...)
        close = text.index("}", at) + 1
        head = text[:at].rstrip()
        word = head.rsplit(" ", 1)[-1] if head else ""
        if word.lower() in _LEADING_WORDS:
            head = head[: len(head) - len(word)].rstrip()
        return (head + " " + text[close:].lstrip()).strip()
    return text[:start] + text[end:]


_LEADING_WORDS = frozenset({"at", "by", "of", "in", "from", "to", "for", "on", "with", "as", "is", "the", "a", "an"})


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template.replace("«", "").replace("»", "")) if name}


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
    # the cause acts on several levels at once (reduced precision: every level; padding instead of packing:
    # every LSTM level): while this rule matches, a later level of these whose own error is beyond tolerance
    # follows from it and is not an independent root. True: every level.
    whole_model: bool | tuple[str, ...] = False
    # figures read from the claimed findings (e.g. {"logits_max_abs": 0.012}); the title, replica_does and
    # effect texts may use them as "{name:.2g}" placeholders, filled at diagnosis time
    measure: Callable[[Sequence[Finding]], dict[str, Any]] | None = None
    # source pointers that depend on the findings (the level or operation named), cited before `refs`
    locate: Callable[[Sequence[Finding], Path | None], list[str]] | None = None

    def measured(self, claimed: Sequence[Finding]) -> dict[str, Any]:
        figures = common_measures(claimed)
        if self.measure is not None:
            figures.update(self.measure(claimed))
        return {k: v for k, v in figures.items() if v is not None}

    def explain(self, claimed: Sequence[Finding], root: Path | None) -> Explanation:
        refs = list(self.locate(claimed, root)) if self.locate is not None else []
        refs += [r for r in (ref.locate(root) for ref in self.refs) if r and r not in refs]
        figures = self.measured(claimed)
        # never graver than what it explains (a generic rule over warnings stays a warning)
        worst = max((f.severity for f in claimed), default=self.severity)
        return Explanation(
            id=self.id, title=fill(self.title, figures), severity=min(self.severity, worst),
            original_does=fill(self.original_does, figures), replica_does=fill(self.replica_does, figures),
            effect=fill(self.effect, figures), fix=fill(self.fix, figures),
            evidence=sorted({f.key for f in claimed}), original_refs=refs, quirk=self.quirk,
            effect_measured={k: _jsonable(v) for k, v in figures.items()},
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def common_measures(claimed: Sequence[Finding]) -> dict[str, Any]:
    """Figures every explanation reports when its findings carry them: how far the logits and the loss moved,
    how many levels differ, where the divergence starts."""
    out: dict[str, Any] = {}
    for f in claimed:
        if f.kind == "forward.mismatch" and f.location == "logits":
            out["logits_max_abs"] = f.metrics.get("max_abs")
        elif f.kind == "backward.loss":
            out["loss_max_abs"] = f.metrics.get("max_abs")
        elif f.kind == "forward.first_divergent":
            out["root_level"] = f.evidence.get("root_level") or f.location
            out["first_divergent_level"] = f.evidence.get("first_divergent_level") or f.location
    levels = sorted({f.location for f in claimed if f.kind in ("forward.mismatch", "forward.shape_mismatch")})
    if levels:
        out["levels_differing"] = len(levels)
    return out


# -- small matcher vocabulary (rules compose these) --------------------------------------------------------

def having(findings: Sequence[Finding], kind: str | None = None, check: str | None = None,
           where: Callable[[Finding], bool] | None = None) -> list[Finding]:
    return [f for f in findings if (kind is None or f.kind == kind) and (check is None or f.check == check)
            and (where is None or where(f))]


def significant(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity >= Severity.WARNING]
