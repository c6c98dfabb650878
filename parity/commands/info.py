"""The read-only information commands of `parity`: `variants` (what the original and the replica can build) and
`explain ID` (one explanation's full text), with how the original's checkout is found for them."""

from __future__ import annotations

import argparse
import os
from typing import Any

from percepiano_parity.commands.options import ORIGINAL_ENV, UsageError, find_config, read_config


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
    """parity.explain's text, or the catalog entry when that module is not installed."""
    from percepiano_parity.diagnosis import RULES, rule_by_id

    try:
        from percepiano_parity.diagnosis.explain import explain_text
    except ImportError:
        explain_text = None
    known = ", ".join(sorted(r.id for r in RULES))
    if explain_text is not None:
        try:
            text = explain_text(rule_id, original_root=original_root)
        except (KeyError, LookupError, ValueError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise UsageError(str(message)) from None
        if text:
            return str(text).rstrip("\n")
        raise UsageError(f"unknown explanation id {rule_id!r}; known ids: {known}")
    rule = rule_by_id(rule_id)
    if rule is None:
        raise UsageError(f"unknown explanation id {rule_id!r}; known ids: {known}")
    return "\n".join([
        f"{rule.id}: {rule.title} [{rule.severity.label}]",
        f"  original does: {rule.original_does}",
        f"  replica does:  {rule.replica_does}",
        f"  effect:        {rule.effect}",
        f"  fix:           {rule.fix}",
    ])


# ------------------------------------------------------------------------------------------ selftest
