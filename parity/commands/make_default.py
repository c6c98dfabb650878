"""Rebuild the default bundles shipped in `parity/data/bundles/` from a checkout of the original.

    python -m percepiano_parity.commands.make_default --original ../shared/percepiano-original

Records the HAN (`han-total`) and the Bi-LSTM baseline (`bilstm-note`) at `replica.SMALL_CONFIG`, seed 7 (the
original's `th_seed`), on two generated batches (batch seed 7): one realistic batch of 4 segments of 24 notes,
and the `edge:length-1` batch (24, 1 and 12 notes: padding, and the one-note item whose padding the original's
span wraps to index -1). The bundles in place are replaced. Same checkout and library versions give the same
bytes. Both bundles together stay under 2 MB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from percepiano_parity.commands.record_bundle import record_bundle
from percepiano_parity.replica.config import SMALL_CONFIG
from percepiano_parity.subjects.bundle import DEFAULT_BUNDLES, DEFAULT_VARIANTS
from percepiano_parity.subjects.bundle.format import BundleError

SEED = 7
SETTINGS = {"n_batches": 1, "batch_size": 4, "max_notes": 24, "include_edge_cases": ("edge:length-1",)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m percepiano_parity.commands.make_default", description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="path of the PercePiano checkout to record")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write <variant>/ bundles into (default: the package's data/bundles)")
    args = parser.parse_args(argv)
    from percepiano_parity import original_adapter

    try:
        original = original_adapter.load(args.original)
    except original_adapter.OriginalLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = 0
    for variant in DEFAULT_VARIANTS:
        out = args.out / variant if args.out else DEFAULT_BUNDLES[variant]
        try:
            path = record_bundle(original, variant, SMALL_CONFIG, SEED, out, overwrite=True, **SETTINGS)
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        size = sum(f.stat().st_size for f in path.iterdir())
        total += size
        print(f"{variant}: {path} ({size / 1024:.0f} KiB)")
    print(f"total {total / 1024:.0f} KiB; original revision {original.revision}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
