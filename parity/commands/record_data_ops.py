"""Record the original's data-op outputs on the generated cases, for data checks without a checkout.

    python -m percepiano_parity.commands.record_data_ops --original ../shared/percepiano-original \\
        --out parity/data/data_ops_reference.json

Runs the original's `make_slicing_indexes_by_measure`, `FeatureCollate`, `get_batch_result` (both branches),
`get_validation_loss` and its `r2_score` through `original_adapter` on the cases of `checks.training.cases`
(fixed seed), and writes their outputs with the cases' input fingerprints and both label files'
fingerprints. Only outputs are stored (slices, short digests, rounded floats), never the original's code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from percepiano_parity.checks.training import cases as gen
from percepiano_parity.checks.training.data_outputs import (
    DEFAULT_COUNTS,
    PREFIX,
    inputs_digests,
    original_outputs,
)
from percepiano_parity.checks.training.label_files import default_data_roots, label_file_fingerprints
from percepiano_parity.checks.training.trajectory_sides import single_thread

COMMAND = ("python -m percepiano_parity.commands.record_data_ops --original PATH "
           "--out parity/data/data_ops_reference.json")


def record(original_path: str | Path, counts: dict[str, int] | None = None, seed: int = gen.DEFAULT_SEED,
           data_roots: list[Path] | None = None) -> dict:
    from percepiano_parity import original_adapter

    counts = {**DEFAULT_COUNTS, **(counts or {})}
    original = original_adapter.load(original_path)
    with single_thread():
        outputs = original_outputs(original, counts, seed)
    roots = [original.root, *(data_roots or default_data_roots())]
    return {
        "format": 1,
        "generated_by": COMMAND,
        "original": {"revision": original.revision, "shims": [s["name"] for s in original.shims]},
        "seed": seed,
        "counts": counts,
        "inputs_digest": inputs_digests(counts, seed),
        "inputs_digest_prefix": {k: v for k, v in inputs_digests({k: min(n, PREFIX) for k, n in counts.items()},
                                                                 seed).items() if counts[k] >= PREFIX},
        "label_files": label_file_fingerprints(roots),
        **outputs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="the PercePiano checkout to record from")
    parser.add_argument("--out", required=True, help="where to write the JSON")
    parser.add_argument("--seed", type=int, default=gen.DEFAULT_SEED)
    for key, value in DEFAULT_COUNTS.items():
        parser.add_argument(f"--{key}", type=int, default=value, help=f"number of {key} cases (default {value})")
    args = parser.parse_args(argv)
    counts = {k: getattr(args, k) for k in DEFAULT_COUNTS}
    started = time.perf_counter()
    data = record(args.original, counts, args.seed)
    text = json.dumps(data, separators=(",", ":"), sort_keys=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(out)
    print(f"wrote {out} ({len(text) / 1024:.0f} KiB, {sum(counts.values())} cases, "
          f"{time.perf_counter() - started:.1f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
