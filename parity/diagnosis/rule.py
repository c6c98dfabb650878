"""A diagnosis rule: a pattern over findings that names one deviation and explains it; the matcher
vocabulary the rules compose; and where in the original each level is computed.
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
from percepiano_parity.core.levels import level_order
from percepiano_parity.core.report import Explanation

# ----------------------------------------------------------------------------------------------------------
# The matcher vocabulary the rules of every family compose: which findings are consequences of a change at a
# level, where the mismatches sit, what a structure finding is about, and the forward-semantics rule shape.

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]


FORWARD_KINDS = ("forward.mismatch", "forward.shape_mismatch", "forward.local_mismatch", "forward.padding_mismatch",
                 "forward.first_divergent")


ATTENTION_KINDS = ("attention.entropy_shift", "attention.weights_mismatch", "attention.collapsed",
                   "attention.head_count")


def downstream(findings: Sequence[Finding], from_level: str | None) -> list[Finding]:
    """Findings that are consequences of a change at `from_level`: forward findings at or after it,
    the loss and gradients, attention shifts, and the first-divergence summary."""
    start = level_order(from_level) if from_level else -1
    out = []
    for f in findings:
        if f.check == "forward" and f.kind in FORWARD_KINDS:
            if f.kind == "forward.first_divergent" or level_order(f.location) >= start:
                out.append(f)
        elif f.check == "backward" and f.kind in ("backward.loss", "backward.grad_mismatch"):
            out.append(f)
        elif f.check == "attention" and f.kind in ATTENTION_KINDS:
            if level_order(f.location) >= start - 1:
                out.append(f)
    return out


def model_consequences(findings: Sequence[Finding]) -> list[Finding]:
    """Every forward, backward and attention finding: for deviations that change the forward as a whole."""
    return [f for f in findings if f.check in ("forward", "backward", "attention")]


def training_consequences(findings: Sequence[Finding], data_kinds: tuple[str, ...] = ()) -> list[Finding]:
    """Trajectory findings (a recipe change moves the whole trajectory) and the given data findings."""
    return [f for f in findings if f.kind.startswith("trajectory.") or f.kind in data_kinds]


def root_of(findings: Sequence[Finding]) -> str | None:
    for f in findings:
        if f.kind == "forward.first_divergent":
            return f.evidence.get("root_level") or f.location
    return None


def structure_significant(findings: Sequence[Finding]) -> list[Finding]:
    return significant(having(findings, check="structure"))


def module_of(f: Finding) -> str:
    """The module a structure or init finding is about (reference naming where both exist)."""
    if "module" in f.evidence:
        return str(f.evidence["module"])
    if f.kind in ("structure.shape", "init.distribution"):
        return f.location.rsplit(".", 1)[0]
    return f.location


def within(module: str, roots: set[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def about_modules(findings: Sequence[Finding], modules: set[str]) -> list[Finding]:
    """Structure and init findings about these modules (or their children)."""
    return [f for f in findings if f.check in ("structure", "init") and within(module_of(f), modules)]


def pattern_at(findings: Sequence[Finding], level: str | None) -> dict[str, Any] | None:
    for f in findings:
        if f.check == "forward" and f.location == level and f.kind in ("forward.mismatch", "forward.shape_mismatch",
                                                                       "forward.local_mismatch"):
            return f.evidence.get("pattern")
    return None


def final_padding_mass(findings: Sequence[Finding]) -> tuple[float, float] | None:
    for f in findings:
        ev = f.evidence
        if f.location == "attn.final" and "reference_padding_mass" in ev and "candidate_padding_mass" in ev:
            if ev["reference_padding_mass"] is not None and ev["candidate_padding_mass"] is not None:
                return float(ev["reference_padding_mass"]), float(ev["candidate_padding_mass"])
    return None


def metric(findings: Sequence[Finding], kind: str, location: str, name: str) -> Any:
    for f in findings:
        if f.kind == kind and f.location == location:
            return f.metrics.get(name)
    return None


def semantic(levels: tuple[str, ...], test: Callable[[Sequence[Finding], dict[str, Any]], bool]) -> Matcher:
    """A forward-semantics rule: no structure change left, the root level is one of `levels`, and the
    evidence there passes `test`. Claims every forward, backward and attention finding."""
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        if structure_significant(findings):
            return None
        root = root_of(findings)
        if root not in levels:
            return None
        pattern = pattern_at(findings, root) or {}
        if not test(findings, pattern):
            return None
        return model_consequences(findings)
    return match


def pattern_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    root = root_of(claimed)
    pattern = pattern_at(claimed, root) or {}
    out = {k: pattern.get(k) for k in ("rows_bad", "items_bad", "longest_items_bad_share", "shorter_items_bad_share",
                                       "batches_bad", "batches", "batches_with_gap")}
    out["root_max_abs"] = metric(claimed, "forward.mismatch", root or "", "max_abs")
    mass = final_padding_mass(claimed)
    if mass is not None:
        out["original_padding_mass"], out["replica_padding_mass"] = mass
    for f in having(claimed, "attention.entropy_shift", where=lambda f: f.location == "attn.final"):
        out["entropy_delta"] = f.metrics.get("worst_delta")
    return out


def recipe_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = []
    for f in having(claimed, "recipe.mismatch"):
        pairs.append(f"{f.location}: {f.evidence.get('original')!r} -> {f.evidence.get('replica')!r}")
        out.setdefault("original_value", f.evidence.get("original"))
        out.setdefault("replica_value", f.evidence.get("replica"))
        out.setdefault("recipe_source", f.evidence.get("source"))
    if pairs:
        out["recipe_changes"] = "; ".join(pairs)
    for f in claimed:
        if f.kind.startswith("trajectory.") and f.kind != "trajectory.drift":
            out.setdefault("first_differing_step", f.metrics.get("first_differing_step"))
            out["trajectory_max_rel"] = max(out.get("trajectory_max_rel") or 0.0, f.metrics.get("max_rel_diff") or 0.0)
        if f.kind.startswith("data."):
            out.setdefault("data_cases_differing", f.metrics.get("differ"))
    return out


def waivable(rule_id: str) -> str:
    return (f"This is the original's own quirk: a replica that changes it on purpose can waive this explanation as "
            f"an intended fix (a [[waiver]] with id = '{rule_id}' and a reason), but its numbers will then not "
            "reproduce the paper's.")


# ----------------------------------------------------------------------------------------------------------
# A diagnosis rule: a pattern over findings that names one deviation and explains it.
#
# Rules see only findings (never the deviation that produced them, never the models). A rule claims the
# findings it explains; one deviation that shows up at twenty levels becomes one explanation. Diagnosis
# only describes: it never changes a check's verdict (findings keep their severities).


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


# ----------------------------------------------------------------------------------------------------------
# Where in the original each level is computed, so an explanation points at the code for its own level.
#
# Each entry is a SourceRef (file under virtuoso/virtuoso/ and a regular expression; the first matching line of
# the user's checkout is cited at run time). Operation-level explanations cite the original's own line of the
# counterpart operation instead (recorded by the operation trace).

LEVEL_REFS: dict[str, tuple[SourceRef, ...]] = {
    "embedding": (SourceRef("model_m2pf.py", r"x_embedded = self\.note_embedder\(x\)"),),
    "note": (SourceRef("encoder_score.py", r"note_out,\s*_ = self\.lstm\(x\)"),),
    "voice": (SourceRef("encoder_score.py", r"def run_voice_net"),),
    "beat_nodes": (SourceRef("encoder_score.py", r"beat_nodes = make_higher_node\(hidden_out"),
                   SourceRef("model_utils.py", r"def make_higher_node")),
    "beat": (SourceRef("encoder_score.py", r"beat_hidden_out = run_hierarchy_lstm_with_pack"),),
    "measure_nodes": (SourceRef("encoder_score.py", r"measure_nodes = make_higher_node\(beat_hidden_out"),),
    "measure": (SourceRef("encoder_score.py", r"measure_hidden_out = run_hierarchy_lstm_with_pack"),),
    "beat_spanned": (SourceRef("encoder_score.py", r"beat_out_spanned = span_beat_to_note_num"),
                     SourceRef("model_utils.py", r"def span_beat_to_note_num")),
    "measure_spanned": (SourceRef("encoder_score.py", r"measure_out_spanned = span_beat_to_note_num"),),
    "total_note_cat": (SourceRef("encoder_score.py", r"'total_note_cat': torch\.cat"),),
    "contracted": (SourceRef("model_m2pf.py", r"self\.performance_contractor = nn\.Linear"),),
    "pooled": (SourceRef("module.py", r"softmax_weight = torch\.softmax\(similarity, dim=1\)"),
               SourceRef("module.py", r"class ContextAttention")),
    "logits": (SourceRef("model_m2pf.py", r"self\.out_fc = nn\.Sequential"),),
}


# What each level is in the original, in a few words (the explanation of a level no rule names cites it).
LEVEL_WHAT: dict[str, str] = {
    "embedding": "the Linear note embedder applied to the packed note features",
    "note": "the note Bi-LSTM over the embedded notes, packed with each piece's own length",
    "voice": "one Bi-LSTM run per voice, its output scattered back to the voice's notes (zeros for voice 0)",
    "beat_nodes": "per beat, a multi-head context attention (tanh projection, softmax over the beat's notes) "
                  "pooling cat(note, voice)",
    "beat": "the beat Bi-LSTM over the beat nodes",
    "measure_nodes": "per measure, the context attention pooling the beat outputs (boundaries in beat space)",
    "measure": "the measure Bi-LSTM over the measure nodes",
    "beat_spanned": "each note copies its beat's LSTM output",
    "measure_spanned": "each note copies its measure's LSTM output",
    "total_note_cat": "cat(note, voice, beat_spanned, measure_spanned) along the features",
    "contracted": "the head's contractor Linear",
    "pooled": "the head's context attention over time (softmax over the notes, padding masked by a zero row sum)",
    "logits": "out_fc: dropout, Linear, exact GELU, dropout, Linear",
}


def level_refs(level: str | None, root: Path | None) -> list[str]:
    """"path:line" citations of the original's code for `level` in the checkout at `root`."""
    refs = LEVEL_REFS.get(level or "", ())
    return [r for r in (ref.locate(root) for ref in refs) if r]


def checkout_relative(site: str | None, root: Path | None) -> str | None:
    """An absolute "file:line" inside the checkout as "virtuoso/virtuoso/file.py:line" (None outside it)."""
    if not site or root is None:
        return None
    path, _, line = site.rpartition(":")
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    return f"{rel.as_posix()}:{line}"
