"""`parity explain ID`: one catalog entry as plain text, with its references located in a checkout if given."""

from __future__ import annotations

import difflib
import re
import textwrap
from pathlib import Path

from percepiano_parity.diagnosis.catalog import RULES, rule_by_id
from percepiano_parity.diagnosis.rule import Rule

WIDTH = 100


def _unfilled(text: str) -> str:
    """Catalog texts carry "{figure:spec}" placeholders filled at diagnosis time; show them as <figure>."""
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:![rsa])?(?::[^{}]*)?\}", r"<\1>", text)


def _para(label: str, text: str) -> list[str]:
    body = textwrap.wrap(_unfilled(text), WIDTH - 4, break_on_hyphens=False) or [""]
    return [f"{label}:", *("    " + line for line in body)]


def close_ids(rule_id: str, n: int = 5) -> list[str]:
    ids = [r.id for r in RULES]
    key = rule_id.strip().upper()
    if not key.startswith("PP-"):
        key = "PP-" + key
    close = difflib.get_close_matches(key, ids, n=n, cutoff=0.5)
    return close or [i for i in ids if any(part in i for part in key.split("-")[1:] if len(part) > 2)][:n]


def get_rule(rule_id: str) -> Rule:
    """The rule with this id (case-insensitive, "PP-" optional); KeyError with a one-line hint otherwise."""
    key = rule_id.strip().upper()
    rule = rule_by_id(key) or rule_by_id("PP-" + key)
    if rule is None:
        close = close_ids(rule_id)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known ids: {', '.join(r.id for r in RULES)}"
        raise KeyError(f"unknown explanation id {rule_id!r}{hint}")
    return rule


def explain_text(rule_id: str, original_root: str | Path | None = None) -> str:
    """Title, severity, what the original does (with references, located in `original_root` when given),
    what a replica with this deviation does, the effect on training, the fix, and the quirk note."""
    rule = get_rule(rule_id)
    root = Path(original_root) if original_root is not None else None
    lines = [f"{rule.id}: {_unfilled(rule.title)}",
             f"severity: {rule.severity.label}" + ("   (the original's own quirk: waivable)" if rule.quirk else "")]
    lines += _para("What the original does", rule.original_does)
    if rule.refs:
        lines.append("    where:" if root is None else f"    where (in {root}):")
        for ref in rule.refs:
            if root is None:
                lines.append(f"      {ref.path}  (line matching /{ref.pattern}/)")
            else:
                located = ref.locate(root)
                lines.append(f"      {located}" if located else
                             f"      {ref.path}: no line matches /{ref.pattern}/ in this checkout")
    lines += _para("What the replica does", rule.replica_does)
    lines += _para("Expected effect on training", rule.effect)
    lines += _para("Fix", rule.fix)
    if rule.fix_action:
        lines.append(f"    mechanical fix: {rule.fix_action}")
    if rule.quirk:
        lines += _para("Quirk", "This explanation describes a quirk of the original code, not a bug of the "
                                "replica. A replica that departs from it on purpose can waive it as an intended "
                                f"fix: add a [[waiver]] with id = \"{rule.id}\" and a reason to the waivers file.")
    lines.append("")
    lines.append("Figures in <angle brackets> are measured from the findings when an audit explains them.")
    return "\n".join(lines)


__all__ = ["close_ids", "explain_text", "get_rule"]
