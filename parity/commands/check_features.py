"""`parity check-features`: a user's feature extraction against the original's, on real performances.

    parity check-features --data CACHE --extractor mypkg.features:extract [--key-list NAME] [--segments N]

One named step per stage: the original's matrices from the cache (batches.real.loader) -> the
user's extractor on the same performances (subjects.user_data) -> the comparison per key and column
(compare.features) -> findings (checks.features) -> explanations (diagnosis) -> the usual report writers.
Exit codes as `parity check`: 0 equivalent, 1 a finding at or above --fail-on, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
from typing import Any

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.loader import (
    RealData,
    choose_segments,
    data_dir_of,
    labelled_keys,
    read_original_features,
)
from percepiano_parity.checks.features import CHECK, features_check
from percepiano_parity.commands.audit import run_info
from percepiano_parity.compare.features import ATOL, RTOL, compare_features
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.report import Report
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.subjects.user_data import make_request, run_extractor

DEFAULT_SEGMENTS = 8


def run_check_features(cache: str, extractor: str, *, key_list: str | None = None, segments: int = DEFAULT_SEGMENTS,
                       only: tuple[str, ...] = (), fail_on: Severity = Severity.WARNING) -> Report:
    """The report of one feature audit. Raises UsageError (one line) for a bad cache, extractor or answer."""
    if segments < 1:
        raise UsageError(f"--segments: expected a positive number, got {segments}")
    try:
        data = RealData.open(cache)
        chosen = choose_segments(data, segments, only)
        original = read_original_features(data, chosen, key_list)
    except cache_files.CacheError as exc:
        raise UsageError(f"--data: {exc}") from None
    base_keys = tuple(k for k in data.key_list(key_list).get("keys", ()))
    request = make_request(data.path, data.manifest, chosen, labelled_keys(data), data_dir_of(data), base_keys)
    candidate = run_extractor(extractor, request)
    comparison = compare_features(original, candidate)
    check = features_check(comparison, original.key_to_dim, candidate.key_to_dim, fail_on)
    root = data.manifest.get("original", {}).get("root")
    explanations, unexplained = diagnose(check.findings, context={"original_root": root} if root else {})
    subjects = [
        {"name": "original", "kind": "original feature pipeline (prepared cache)", "variant": original.key_list,
         "source": str(data.path), "revision": original.revision, "shims": [], "warnings": []},
        {"name": extractor, "kind": "user feature extractor", "variant": original.key_list, "source": extractor,
         "revision": "", "shims": [], "warnings": []},
    ]
    settings: dict[str, Any] = {
        "command": "check-features", "fail_on": fail_on.label, "data": str(data.path), "key_list": original.key_list,
        "key_list_source": original.source, "original_width": original.width, "replica_width": candidate.width,
        "segments": chosen, "unaligned_notes": comparison.unaligned_notes,
        "dataset_for_statistics": len(request.dataset), "tolerance": {"atol": ATOL, "rtol": RTOL},
        "replica_declared_stats": candidate.stats is not None,
    }
    return Report(variant=f"features:{original.key_list}", subjects=subjects, checks=[check],
                  explanations=explanations, unexplained=unexplained, settings=settings, run=run_info())


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The `check-features` subcommand on the `parity` parser's subparsers."""
    p = sub.add_parser("check-features", help="compare your feature extraction with the original's, per key and "
                       "column, on real performances of a prepared cache",
                       description="Run your feature extractor on real performances of a cache made by `parity "
                                   "data prepare` and compare its input matrices with the original's, per named "
                                   "key and column (see docs/cli.md).")
    p.add_argument("--data", metavar="CACHE", required=True, help="a cache made by `parity data prepare`")
    p.add_argument("--extractor", metavar="SPEC", required=True, help="module:function or path.py:function")
    p.add_argument("--key-list", metavar="NAME", default=None, help="the original's key list to compare with "
                   "(default: the cache's, published-splits: 101 columns)")
    p.add_argument("--segments", metavar="N", type=int, default=DEFAULT_SEGMENTS,
                   help=f"performances to compare (default {DEFAULT_SEGMENTS}, half of them with unaligned notes)")
    p.add_argument("--only", metavar="KEY", action="append", default=[], help="compare this performance; repeatable")
    p.add_argument("--report-dir", metavar="DIR", default="parity-report", help="(default: parity-report)")
    p.add_argument("--format", metavar="LIST", default="console,md,json,html,junit",
                   help="report formats, comma-separated, or 'all' (default: console,md,json,html,junit)")
    p.add_argument("--fail-on", metavar="SEVERITY", default="warning", help="info, warning or error (default warning)")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    p.set_defaults(handler=cmd_check_features)
    return p


def cmd_check_features(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.report_output import check_report_folder, consoles, emit_report
    from percepiano_parity.reports import parse_formats

    try:
        fail_on = Severity.parse(args.fail_on)
        formats = parse_formats(args.format)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_report_folder(args.report_dir, formats)
    report = run_check_features(args.data, args.extractor, key_list=args.key_list, segments=args.segments,
                                only=tuple(args.only), fail_on=fail_on)
    emit_report(report, formats, args.report_dir, fail_on, consoles()[0])
    return int(report.exit_code(fail_on))


__all__ = ["CHECK", "add_parser", "cmd_check_features", "run_check_features"]
