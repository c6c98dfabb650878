"""The `parity` command.

    parity check [--original PATH | --reference BUNDLE] [--replica SPEC | --deviation NAME] [--variant ID] ...
    parity check-features --data CACHE --extractor SPEC   (commands.check_features)
    parity variants | explain ID | selftest | record | doctor | deviations

Exit codes (core.report.ExitCode, decided here and nowhere else):
    0  equivalent (or only waived / information findings)
    1  a finding at or above --fail-on (with --fail-on-new: a new explanation)
    2  usage or load error: bad option or config, missing checkout, unreadable bundle, waivers or mapping file,
       a replica factory or adapter that fails, a batch a model rejects; one line on stderr
    3  internal error (a bug in the tool): one line on stderr that says so and where to report it, `--debug`
       shows the traceback
  130  interrupted (Ctrl-C), 143 terminated (SIGTERM): one line; earlier reports stay as they were
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

from percepiano_parity.commands.info import (  # noqa: F401 - explanation_text stays importable here
    _configured_original,
    _load_original,
    cmd_explain,
    cmd_variants,
    explanation_text,
)
from percepiano_parity.commands.options import (
    OPTIONS,
    ORIGINAL_ENV,
    UsageError,
    resolve_options,
)
from percepiano_parity.commands.report_output import CI_WIDTH, console_width, consoles  # noqa: F401 - public here
from percepiano_parity.core.errors import describe, location, user_frame
from percepiano_parity.core.interrupts import Interrupted, signals_as_interrupted
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
    parser.add_argument("--version", action="version", version=f"{PROG} {tool_version()}")
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
    check.add_argument("-v", "--verbose", action="store_true", default=False,
                       help="print every table on the console; outside a terminal the console report is "
                            "CI-sized by default (verdict, explanations, failing rows only)")
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


def tool_version() -> str:
    """The installed distribution's version (the package's own when run from a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    from percepiano_parity import __version__

    try:
        return version("percepiano-parity")
    except PackageNotFoundError:
        return __version__


STAGES = {"prepare": "mapping weights and tracing both models", "batch": "comparing batches"}


# ------------------------------------------------------------------------------------------ check


def cmd_check(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.check import run_check
    from percepiano_parity.commands.report_output import check_report_folder, emit_report
    from percepiano_parity.reports.progress import progress

    cli = {option.name: getattr(args, option.name) for option in OPTIONS}
    options = resolve_options(cli, config_path=args.config)
    args.debug_from_config = options.debug
    check_report_folder(options.report_dir, options.formats)  # before the audit: not after minutes of work
    out, err = consoles()
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
    emit_report(report, options.formats, options.report_dir, options.severity, out, verbose=args.verbose)
    return int(report.exit_code(options.severity, new_only=options.fail_on_new))


# ------------------------------------------------------------------------------------------ variants


def cmd_selftest(args: argparse.Namespace) -> int:
    from percepiano_parity.reports.progress import progress

    try:
        from percepiano_parity.commands.selftest import format_matrix, run_selftest
    except ImportError:
        raise UsageError("the self-test is not available in this installation (parity.selftest is missing)") \
            from None
    kwargs: dict[str, Any] = {}
    if args.original:
        kwargs["original"] = _load_original(args.original, "--original")
    _, err = consoles()
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
    from percepiano_parity.commands.record import record_bundle
    from percepiano_parity.subjects.bundle import BundleError
    from percepiano_parity.subjects.sides import model_config_for

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
    _, err = consoles()
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
    """Run the command line; returns the exit code (see the module docstring).

    Ctrl-C (SIGINT) and SIGTERM anywhere in the run end it with one line and 130 / 143, after the report
    writers have removed their temporary files; the previous reports stay as they were.
    """
    with signals_as_interrupted():
        try:
            return _main(argv)
        except Interrupted as exc:  # also while the handler's imports (torch) are still loading
            _err(exc.word)
            return exc.exit_code


def _main(argv: Sequence[str] | None) -> int:
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
    try:
        return int(args.handler(args))
    except UsageError as exc:
        if debug or getattr(args, "debug_from_config", False):
            traceback.print_exc()
        _err(str(exc))
        return ExitCode.USAGE
    except Interrupted:
        raise
    except KeyboardInterrupt:  # raised by code with our signal handlers in place: treat it like a Ctrl-C
        _err("interrupted")
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except BaseException as exc:  # noqa: BLE001 - the outermost layer maps every other failure to an exit code
        return _unexpected(exc, debug or bool(getattr(args, "debug_from_config", False)))


def _unexpected(exc: BaseException, debug: bool) -> int:
    """A failure no guard caught: the user's code (exit 2) when the traceback ends in it, else our bug (3)."""
    from percepiano_parity.original_adapter.errors import OriginalLoadError

    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, OriginalLoadError):
        _err(str(exc))
        return ExitCode.USAGE
    if user_frame(exc) is not None:
        where = location(exc)
        _err(f"your code failed during the run: {describe(exc)}" + (f" (at {where})" if where else ""))
        return ExitCode.USAGE
    print(f"{PROG}: internal error: {describe(exc)}; this is a bug in percepiano-parity, not in your code or "
          f"data: please report it to {bug_tracker()} with the output of the same command run with --debug"
          + ("" if debug else " (which shows the traceback)"), file=sys.stderr)
    return ExitCode.INTERNAL


def bug_tracker() -> str:
    """Where to report a bug of ours: the package's "Issues" URL when its metadata has one."""
    from importlib import metadata

    try:
        urls = metadata.metadata("percepiano-parity").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "tracker") and url.strip():
            return url.strip()
    return "the percepiano-parity issue tracker"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
