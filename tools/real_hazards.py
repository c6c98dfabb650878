"""Copy the hazard statistics of a prepared real-data cache into the file the synthetic batches read.

Run from the project root after `parity data prepare` (see the README's "Real data"):

    python tools/real_hazards.py --cache /path/to/cache --out parity/data/real_hazards.json

`parity/batches/synthetic.py` reads the per-segment and per-batch shares in it and makes the default
synthetic batches hit every hazard at least as often as the real segments do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from percepiano_parity.batches.real.cache import read_manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="a cache made by `parity data prepare`")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.cache)
    summary = manifest["summary"]
    record = {
        "format": 1,
        "source": f"parity data prepare on {manifest['data']['dir']} with the original at revision "
                  f"{manifest['original']['revision']} ({summary['prepared']} of {summary['selected']} "
                  f"performances; alignment {manifest['alignment']['matcher']}, score MIDI "
                  f"{manifest['alignment']['score_midi']})",
        "method": "parity/batches/real/hazards.py",
        "hazards": manifest["hazards"],
    }
    args.out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
