"""The `parity` command.

    parity check [--original PATH | --reference BUNDLE] [--replica SPEC | --deviation NAME] [--variant ID] ...
    parity check-features --data CACHE --extractor SPEC   (commands.check_features)
    parity variants | explain ID | selftest | record | doctor | deviations

Exit codes (core.report.ExitCode, decided here and nowhere else):
    0  equivalent (or only waived / information findings)
    1  a finding at or above --fail-on (with --fail-on-new: a new explanation)
    2  usage or load error: bad option or config, missing checkout, unreadable bundle, waivers or mapping file,
       a replica factory or adapter that fails, a batch a model rejects; one line on stderr
    3  internal error (a bug in the tool): one line on stderr, `--debug` shows the traceback
Test hooks (see parity.run_check): PARITY_TEST_INTERNAL_ERROR=1 makes `parity check` fail with exit code 3;
PARITY_TEST_REFERENCE=replica makes the faithful bundled replica the reference when none is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from percepiano_parity.commands.options import (
    OPTIONS,
    ORIGINAL_ENV,
    UsageError,
    find_config,
    read_config,
    resolve_options,
)
from percepiano_parity.core.report import ExitCode

PROG = "parity"


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (raised, so main() decides the exit code)."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(f"{self.prog}: {message} (see {self.prog} --help)")


# ------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Audit a PercePiano re-implementation against the original, level "
                                            "by level.", epilog="Exit codes: 0 equivalent, 1 mismatch, 2 usage or "
                                                                "load error, 3 internal error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    check = sub.add_parser("check", help="compare a replica with the original (or a recorded reference)",
                           description="Compare a replica with the original, level by level, and write reports. "
                                       "Options override [tool.parity] in ./pyproject.toml or ./parity.toml.")
    for option in OPTIONS:
        if option.is_flag:
            check.add_argument(option.flag, dest=option.name, action="store_const", const=option.const,
                               default=None, help=option.help)
        else:
            shown = f" (default: {option.default})" if option.default is not None else ""
            check.add_argument(option.flag, dest=option.name, default=None, metavar=option.metavar,
                               help=option.help + shown)
    check.add_argument("--config", metavar="FILE", default=None,
                       help="read options from this TOML file instead of ./pyproject.toml or ./parity.toml")
    check.set_defaults(handler=cmd_check)

    variants = sub.add_parser("variants", help="which variants the original builds and which scripts train them")
    variants.add_argument("--original", metavar="PATH", default=None, help="a checkout of the original")
    variants.set_defaults(handler=cmd_variants)

    explain = sub.add_parser("explain", help="what an explanation id means, with the original's source lines")
    explain.add_argument("id", metavar="ID", help="an explanation id such as PP-EXTRA-NORM")
    explain.add_argument("--original", metavar="PATH", default=None, help="cite lines of this checkout")
    explain.set_defaults(handler=cmd_explain)

    selftest = sub.add_parser("selftest", help="prove the audit catches every deviation of the library")
    selftest.add_argument("--original", metavar="PATH", default=None,
                          help="use the original as the reference (default: the faithful replica)")
    selftest.set_defaults(handler=cmd_selftest)

    record = sub.add_parser("record", help="record a reference bundle from a checkout of the original")
    record.add_argument("--original", metavar="PATH", required=True, help="a checkout of the original")
    record.add_argument("--variant", metavar="ID", required=True, help="which variant to record")
    record.add_argument("--out", metavar="BUNDLE", required=True, help="the bundle folder to write")
    record.add_argument("--seed", metavar="S", default="0", help="seed for the model and the batches (default 0)")
    record.add_argument("--batches", metavar="N", default="3", help="realistic batches to record (default 3)")
    record.add_argument("--model-config", metavar="{default,small,FILE.yml}", default="small",
                        help="model size to record (default: small, which keeps the bundle small)")
    record.add_argument("--max-notes", metavar="N", default="40", help="cap the notes per segment (default 40)")
    record.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    record.set_defaults(handler=cmd_record)

    doctor = sub.add_parser("doctor", help="versions, threads, determinism, original shims, bundles")
    doctor.add_argument("--original", metavar="PATH", default=None, help="a checkout of the original")
    doctor.set_defaults(handler=cmd_doctor)

    deviations = sub.add_parser("deviations", help="the deviation library: name<TAB>title, one per line")
    deviations.set_defaults(handler=cmd_deviations)

    data = sub.add_parser("data", help="real PercePiano data: prepare a cache for `parity check --data`")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    data_sub.required = True
    prepare = data_sub.add_parser("prepare", help="align every performance, run the original's feature pipeline "
                                  "and write a cache (see docs/cli.md)")
    prepare.add_argument("--original", metavar="PATH", default=None, help="a checkout of the original (also "
                         f"[tool.parity] original or ${ORIGINAL_ENV})")
    prepare.add_argument("--data", metavar="DIR", required=True, help="laid out like ../shared/percepiano-data")
    prepare.add_argument("--out", metavar="CACHE", required=True, help="the cache folder to write (or complete)")
    prepare.add_argument("--corresp", metavar="DIR", default=None, help="your <performance>_infer_corresp.txt "
                         "files, used instead of aligning where present")
    prepare.add_argument("--score-midi", choices=("render", "published"), default="render",
                         help="score MIDI the performances are aligned to: rendered by the original from the "
                              "MusicXML (default) or the published files")
    prepare.add_argument("--only", metavar="KEY", action="append", default=[],
                         help="prepare only this performance (label key or file name); repeatable")
    prepare.add_argument("--force", action="store_true", help="redo performances that are already done")
    prepare.set_defaults(handler=cmd_data_prepare)

    from percepiano_parity.commands.check_features import add_parser as add_check_features

    add_check_features(sub)
    from percepiano_parity.commands.train_compare import add_parser as add_train_compare

    add_train_compare(sub)
    for p in (parser, check, variants, explain, selftest, record, doctor, deviations, data, prepare):
        if p is not check:
            p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    return parser


# ------------------------------------------------------------------------------------------ helpers


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _consoles() -> tuple[Any, Any]:
    from rich.console import Console

    return Console(), Console(stderr=True)


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


STAGES = {"prepare": "mapping weights and tracing both models", "batch": "comparing batches"}


# ------------------------------------------------------------------------------------------ check


def cmd_check(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.check import run_check
    from percepiano_parity.reports import render_console, write_reports
    from percepiano_parity.reports.console import progress

    cli = {option.name: getattr(args, option.name) for option in OPTIONS}
    options = resolve_options(cli, config_path=args.config)
    args.debug_from_config = options.debug
    out, err = _consoles()
    with progress(err) as bar:
        current: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            text = STAGES.get(stage, stage)
            if current.get("stage") != stage:  # one bar per stage, with that stage's own total
                if "task" in current:
                    bar.remove_task(current["task"])
                current.update(stage=stage, task=bar.add_task(text, total=total or None))
            bar.update(current["task"], completed=done)

        def on_note(message: str) -> None:
            err.print(f"{PROG}: note: {message}", markup=False, highlight=False, soft_wrap=True)

        report = run_check(options, progress=on_progress, notify=on_note)
    files = [f for f in options.formats if f != "console"]
    try:  # files first (atomically): a console piped into `head` must not cost the reports
        written = write_reports(report, options.report_dir, files, options.severity) if files else []
    except OSError as exc:
        raise UsageError(f"cannot write reports to {options.report_dir}: {exc.strerror or exc}") from None
    if "console" in options.formats:
        render_console(report, options.severity, out)
    if written:
        names = ", ".join(p.name for p in written)
        print(f"reports written to {options.report_dir}: {names}",
              file=sys.stdout if "console" in options.formats else sys.stderr)
    return int(report.exit_code(options.severity, new_only=options.fail_on_new))


# ------------------------------------------------------------------------------------------ variants


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


def cmd_selftest(args: argparse.Namespace) -> int:
    from percepiano_parity.reports.console import progress

    try:
        from percepiano_parity.commands.selftest import format_matrix, run_selftest
    except ImportError:
        raise UsageError("the self-test is not available in this installation (parity.selftest is missing)") \
            from None
    kwargs: dict[str, Any] = {}
    if args.original:
        kwargs["original"] = _load_original(args.original, "--original")
    _, err = _consoles()
    with progress(err) as bar:
        current: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if "task" not in current:
                current["task"] = bar.add_task("self-test", total=total or None)
            bar.update(current["task"], description=f"self-test: {stage}", completed=done, total=total or None)

        result = run_selftest(progress=on_progress, **kwargs)
    print(format_matrix(result))
    return ExitCode.OK if result.ok else ExitCode.MISMATCH


# ------------------------------------------------------------------------------------------ record


def cmd_record(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.options import OPTION_BY_NAME, CheckOptions
    from percepiano_parity.commands.record_bundle import record_bundle
    from percepiano_parity.subjects.bundle import BundleError
    from percepiano_parity.subjects.reference import model_config_for

    values = {}
    for name, raw in (("variant", args.variant), ("seed", args.seed), ("batches", args.batches),
                      ("model_config", args.model_config), ("max_notes", args.max_notes)):
        try:
            values[name] = OPTION_BY_NAME[name].parse(raw)
        except ValueError as exc:
            raise UsageError(f"{OPTION_BY_NAME[name].flag}: {exc}") from None
    config = model_config_for(CheckOptions(model_config=values["model_config"]))
    original = _load_original(args.original, "--original")
    try:
        out = record_bundle(original, values["variant"], config, values["seed"], args.out,
                            n_batches=values["batches"], max_notes=values["max_notes"], overwrite=args.overwrite)
    except BundleError as exc:
        raise UsageError(f"record: {exc}") from None
    print(f"recorded {values['variant']} (seed {values['seed']}, {values['batches']} batches, "
          f"{values['model_config']} config) into {out}")
    return 0


# ------------------------------------------------------------------------------------------ doctor, deviations


def cmd_doctor(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.doctor import run_doctor

    path, origin = _configured_original(args.original)
    lines = run_doctor(path, origin, emit=lambda line: print(line.render(), flush=True))
    return ExitCode.MISMATCH if any(line.status == "fail" for line in lines) else ExitCode.OK


def cmd_deviations(args: argparse.Namespace) -> int:
    from percepiano_parity.subjects.deviations import DEVIATIONS

    for deviation in DEVIATIONS.values():
        print(f"{deviation.name}\t{deviation.title}")
    return 0


# ------------------------------------------------------------------------------------------ data


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.data_prepare import PrepareOptions, prepare, summary_line
    from percepiano_parity.reports.console import progress

    path, _ = _configured_original(args.original)
    options = PrepareOptions(original=path, data=args.data, out=args.out, corresp=args.corresp,
                             score_midi=args.score_midi, only=tuple(args.only), force=args.force)
    _, err = _consoles()
    with progress(err) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        manifest = prepare(options, progress=on_progress)
    print(summary_line(manifest, args.out))
    return ExitCode.OK


# ------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        _err(str(exc).removeprefix(f"{PROG}: "))
        return ExitCode.USAGE
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    from percepiano_parity.original_adapter.errors import OriginalLoadError

    try:
        return int(args.handler(args))
    except (UsageError, OriginalLoadError) as exc:
        if debug or getattr(args, "debug_from_config", False):
            traceback.print_exc()
        _err(str(exc))
        return ExitCode.USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - the outermost layer maps every other failure to exit code 3
        debug = debug or bool(getattr(args, "debug_from_config", False))
        if debug:
            traceback.print_exc()
        text = " ".join(str(exc).split())
        print(f"{PROG}: internal error: {type(exc).__name__}: {text[:300]}"
              + ("" if debug else " (run again with --debug for the traceback)"), file=sys.stderr)
        return ExitCode.INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
