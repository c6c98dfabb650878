"""Measure the note-location structure of the real PercePiano score excerpts (needs music21).

Run from the project root:

    python tools/score_stats.py --scores ../shared/percepiano-data/scores/score_xml --out parity/data/score_stats.json

Writes a small JSON (well under 100 KB) that `parity.batches` uses to generate structurally realistic batches:
summarised histograms over all scores, one compact record per score, the label distribution and the note-on
counts of the performance MIDI files. How beats, measures and voices are derived is documented in
`parity/score_structure.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from percepiano_parity.batches.score_structure import (  # noqa: E402
    count_midi_note_ons,
    histogram,
    is_segment_excerpt,
    label_stats,
    read_score,
    structure_record,
    summarise_structures,
)

LABEL_FILE = "label_2round_mean_reg_19_with0_rm_highstd0.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=Path, required=True, help="folder of MusicXML excerpts (score_xml)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--labels", type=Path, default=None,
                        help=f"label JSON (default: <scores>/../../labels/{LABEL_FILE})")
    parser.add_argument("--performances", type=Path, default=None,
                        help="folder of performance MIDI files (default: <scores>/../../performances)")
    args = parser.parse_args(argv)

    data_root = args.scores.resolve().parents[1]
    labels = args.labels or data_root / "labels" / LABEL_FILE
    performances = args.performances or data_root / "performances"

    files = sorted(args.scores.glob("*.musicxml")) + sorted(args.scores.glob("*.xml"))
    if not files:
        parser.error(f"no MusicXML files in {args.scores}")
    structures = []
    excluded = []
    for i, path in enumerate(files, 1):
        structure = read_score(path)
        if is_segment_excerpt(structure.name):
            structures.append(structure)
        else:  # e.g. a whole piece kept next to its excerpts: not a segment the models ever see
            excluded.append({"name": structure.name, "num_notes": structure.num_notes,
                             "num_measures": structure.num_measures})
        if i % 50 == 0:
            print(f"read {i}/{len(files)} scores", file=sys.stderr)

    result: dict = {
        "format": 1,
        "source": "PercePiano score_xml excerpts (JonghoKimSNU/PercePiano e672299), measured with music21",
        "method": "see parity/score_structure.py: continuous beat/measure indices on the time-signature grid",
        "summary": summarise_structures(structures),
        "scores": [structure_record(s) for s in structures],
        "excluded_scores": excluded,
    }

    if labels.is_file():
        result["labels"] = label_stats(labels)
    else:
        print(f"warning: no label file at {labels}; label stats left out", file=sys.stderr)

    midis = sorted(performances.glob("*.mid")) if performances.is_dir() else []
    if midis:
        counts = [count_midi_note_ons(p) for p in midis]
        result["performance_note_counts"] = {"source": "performances/*.mid note-ons (velocity > 0)",
                                             "count": len(counts), "histogram": histogram(counts)}
    else:
        print(f"warning: no performance MIDI in {performances}; using score note counts", file=sys.stderr)
        result["performance_note_counts"] = {"source": "score note counts (no performance MIDI found)",
                                             "count": len(structures),
                                             "histogram": histogram(s.num_notes for s in structures)}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, separators=(",", ":"), sort_keys=False)
    args.out.write_text(text + "\n")
    s = result["summary"]
    print(f"wrote {args.out} ({len(text) / 1024:.1f} KB): {s['num_scores']} scores, "
          f"notes/beat median {s['notes_per_beat_summary']['median']}, "
          f"beats/measure median {s['beats_per_measure_summary']['median']}, voices {s['num_voices']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
