"""Benchmark: `parity data prepare` on the whole PercePiano data set, from an empty cache.

    python bench/prepare.py --original PATH --data ../shared/percepiano-data --cache DIR --out FILE.json

Runs the full preparation once (the cache folder must not exist yet; it is kept, for `parity check --data`),
then a second time on the finished cache (everything is skipped but stage 2's check of what changed), and
writes the figures the README reports: coverage and failures by stage, wall and CPU time of both runs, the
per-performance alignment and extraction times recorded by stage 1 (median, 95th percentile, max), the measured
input widths and the hazard shares. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from percepiano_parity.commands.data_prepare import PrepareOptions, prepare  # noqa: E402


def _timed(options: PrepareOptions) -> tuple[dict[str, Any], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    manifest = prepare(options)
    return manifest, time.perf_counter() - wall, time.process_time() - cpu


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {"median": round(statistics.median(ordered), 4), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 4),
            "max": round(ordered[-1], 4), "sum": round(sum(ordered), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cache", required=True, help="a folder that does not exist yet")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if Path(args.cache).exists():
        parser.error(f"{args.cache} exists: the benchmark starts from an empty cache")
    options = PrepareOptions(original=args.original, data=args.data, out=args.cache)
    manifest, wall, cpu = _timed(options)
    _, rerun_wall, rerun_cpu = _timed(options)
    segments = manifest["segments"].values()
    failed = manifest["failed"]
    figures = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_after": os.getloadavg()},
        "performances": manifest["data"]["performances"],
        "prepared": manifest["summary"]["prepared"],
        "coverage": manifest["summary"]["coverage"],
        "failed_by_stage": {stage: sum(1 for r in failed.values() if (r or {}).get("stage") == stage)
                            for stage in sorted({(r or {}).get("stage") for r in failed.values()})},
        "first_run": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                      "stage2_s": manifest["summary"]["stage2_seconds"]},
        "rerun": {"wall_s": round(rerun_wall, 1), "cpu_s": round(rerun_cpu, 1)},
        "per_performance_s": {"align": _quantiles([s["seconds"]["align"] for s in segments]),
                              "extract": _quantiles([s["seconds"]["extract"] for s in segments])},
        "input_widths": {name: entry["width"] for name, entry in manifest["key_lists"].items()},
        "notes": {"total": sum(s["notes"] for s in segments), "inserted_unaligned": sum(s["inserted"] for s in segments),
                  "score_notes_matched": sum(s["matched"] for s in segments),
                  "score_notes": sum(s["score_notes"] for s in segments)},
        "published_score_midi_below_90pct_paired": sum(
            1 for s in segments if s.get("published_score_midi_pairs")
            and s["published_score_midi_pairs"][0] < 0.9 * s["published_score_midi_pairs"][1]),
        "hazards": {k: v for k, v in manifest["hazards"].items() if isinstance(v, dict)},
    }
    args.out.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: figures[k] for k in ("prepared", "performances", "first_run", "rerun", "input_widths")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
