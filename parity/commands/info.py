"""The read-only information commands of `parity`: `variants`, `deviations` and `explain ID`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from percepiano_parity.commands.options import ORIGINAL_ENV, UsageError, find_config, read_config

if TYPE_CHECKING:
    from percepiano_parity.diagnosis.rule import Rule

# ----------------------------------------------------------------------------------------------------------
# `parity explain ID`: one catalog entry as plain text, with its references located in a checkout if given.

WIDTH = 100


def _unfilled(text: str) -> str:
    """Catalog texts carry "{figure:spec}" placeholders filled at diagnosis time; show them as <figure>."""
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:![rsa])?(?::[^{}]*)?\}", r"<\1>", text)


def _para(label: str, text: str) -> list[str]:
    body = textwrap.wrap(_unfilled(text), WIDTH - 4, break_on_hyphens=False) or [""]
    return [f"{label}:", *("    " + line for line in body)]


def close_ids(rule_id: str, n: int = 5) -> list[str]:
    from percepiano_parity.diagnosis.catalog import RULES  # the catalog imports torch: only when asked

    ids = [r.id for r in RULES]
    key = rule_id.strip().upper()
    if not key.startswith("PP-"):
        key = "PP-" + key
    close = difflib.get_close_matches(key, ids, n=n, cutoff=0.5)
    return close or [i for i in ids if any(part in i for part in key.split("-")[1:] if len(part) > 2)][:n]


def get_rule(rule_id: str) -> Rule:
    """The rule with this id (case-insensitive, "PP-" optional); KeyError with a one-line hint otherwise."""
    from percepiano_parity.diagnosis.catalog import RULES, rule_by_id

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


# ----------------------------------------------------------------------------------------------------------
# The read-only information commands of `parity`: `variants` (what the original and the replica can build) and
# `explain ID` (one explanation's full text), with how the original's checkout is found for them.


def _configured_original(explicit: str | None) -> tuple[str | None, str]:
    """A checkout path from the option, the config file or the environment, with where it came from."""
    if explicit:
        return explicit, "--original"
    found = find_config()
    if found is not None:
        table = read_config(found)
        if table.get("original"):
            return str(table["original"]), f"original in {found}"
    if os.environ.get(ORIGINAL_ENV):
        return os.environ[ORIGINAL_ENV], f"${ORIGINAL_ENV}"
    return None, ""


def _load_original(path: str, origin: str) -> Any:
    from percepiano_parity import original_adapter

    try:
        return original_adapter.load(path)
    except original_adapter.OriginalLoadError as exc:
        raise UsageError(f"original ({origin}): {exc}") from None


def cmd_variants(args: argparse.Namespace) -> int:
    path, origin = _configured_original(args.original)
    if path is None:
        return _replica_variants()
    from percepiano_parity import original_adapter
    from percepiano_parity.original_adapter.locate import describe, resolve_root
    from percepiano_parity.original_adapter.scripts import analyse_scripts

    try:
        root = resolve_root(path)
        checkout = describe(root)
        analysis = analyse_scripts(root)
    except original_adapter.OriginalLoadError as exc:
        raise UsageError(f"original ({origin}): {exc}") from None
    code = (checkout.code_dir / "model_m2pf.py").read_text(errors="replace")
    trained = analysis.trained()
    not_trained = analysis.not_trained()
    print(f"Variants of the original at {root} ({origin}), revision {checkout.revision}")
    for warning in checkout.warnings:
        print(f"  warning: {warning}")
    print(f"{len(analysis.scripts)} scripts under virtuoso/scripts; {len(analysis.training_runs)} training runs")
    print()
    for vid, (class_name, multi_level) in original_adapter.VARIANTS.items():
        builds = f"class {class_name}(" in code
        how = f"{class_name}(multi_level={multi_level})" if multi_level else class_name
        by_script: dict[str, list[Any]] = {}
        for ev in trained.get(vid, ()):
            by_script.setdefault(ev.file, []).append(ev)
        if by_script:
            status = f"trained by {len(by_script)} published script{'s' if len(by_script) != 1 else ''}"
        else:
            status = "not trained by any published script"
        print(f"{vid:<17} {how:<50} {'builds' if builds else 'class missing'}; {status}")
        for script, lines in sorted(by_script.items()):
            print(f"    {script}")
            for ev in sorted(lines, key=lambda e: e.line):
                print(f"      {ev.line:>4}: {ev.text}")
        if not by_script:
            print(f"    {not_trained.get(vid, '')}")
    return 0


def _replica_variants() -> int:
    from percepiano_parity.commands.check import default_bundles
    from percepiano_parity.replica.variants import VARIANTS

    shipped = default_bundles()
    print("No checkout of the original given (--original PATH, [tool.parity] original or "
          f"${ORIGINAL_ENV}); the replica's variant table:")
    print()
    print(f"{'ID':<17} {'ORIGINAL CLASS':<22} {'--multi_level':<15} {'BUNDLE':<7} DESCRIPTION")
    for v in VARIANTS.values():
        print(f"{v.id:<17} {v.original_class:<22} {v.multi_level or '-':<15} "
              f"{'yes' if v.id in shipped else 'no':<7} {v.description}")
    return 0


# ------------------------------------------------------------------------------------------ explain


def cmd_explain(args: argparse.Namespace) -> int:
    path, origin = _configured_original(args.original)
    root = None
    if path is not None:
        from percepiano_parity import original_adapter
        from percepiano_parity.original_adapter.locate import resolve_root

        try:
            root = resolve_root(path)
        except original_adapter.OriginalLoadError as exc:
            raise UsageError(f"original ({origin}): {exc}") from None
    print(explanation_text(args.id, root))
    return 0


def explanation_text(rule_id: str, original_root: Any = None) -> str:
    """`parity explain`'s text (see explain_text); an unknown id is a UsageError with a one-line hint."""
    try:
        return explain_text(rule_id, original_root=original_root).rstrip("\n")
    except (KeyError, LookupError, ValueError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise UsageError(str(message)) from None


# ------------------------------------------------------------------------------------------ selftest

