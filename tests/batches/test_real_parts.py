"""The parts of the real-data path that need no original: names, folds, the correspondence format, the exact
round trip of the original's feature dict, alignment of real files, hazard counting and the loader's order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from percepiano_parity.batches.real.alignment import CorrespError, Note, Row, read_corresp, write_corresp
from percepiano_parity.batches.real.cache import FeatureEncodingError, decode_features, encode_features
from percepiano_parity.batches.real.hazards import segment_hazards, summarise
from percepiano_parity.batches.real.splits import (
    PerformanceNameError,
    composition_folds,
    parse_performance,
    parse_split,
    performer_folds,
    performer_id,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "percepiano-data"
needs_data = pytest.mark.skipif(not (DATA / "performances").is_dir(), reason=f"{DATA} not present")


def test_names_follow_the_original_rule():
    name = parse_performance("Schubert_D960_mv3_8bars_8_13.mid")
    assert (name.piece, name.bars, name.player, name.segment) == ("Schubert_D960_mv3", 8, "8", "13")
    assert name.score_stem == "Schubert_D960_mv3_8bars_Score_13"
    assert name.group == "Schubert_D960_mv3_8bars_13.mid"
    assert name.name_note is None
    spaced = parse_performance(" Schubert_D935_no.3_4bars_2_1.mid")
    assert spaced.key == "Schubert_D935_no.3_4bars_2_1" and "whitespace" in (spaced.name_note or "")
    assert parse_performance("Beethoven_WoO80_var10_8bars_Score2_8.mid").score_stem == \
        "Beethoven_WoO80_var10_8bars_Score_8"
    with pytest.raises(PerformanceNameError):
        parse_performance("notes.mid")


def test_performer_folds():
    names = [parse_performance(f) for f in (
        "Schubert_D960_mv3_8bars_1_01.mid", "Schubert_D960_mv3_8bars_3_01.mid", "Schubert_D960_mv3_8bars_10_01.mid",
        "Beethoven_WoO80_thema_8bars_2_1.mid", "Beethoven_WoO80_thema_8bars_Score_1.mid",
        "Beethoven_WoO80_thema_8bars_Score2_1.mid", "Beethoven_WoO80_thema_8bars_7_1.mid")]
    assert [performer_id(n) for n in names] == [1, 3, 10, 1, 0, -1, 4]
    table = performer_folds(names, [n.key for n in names if "_Score_" not in n.key])
    assert table["Schubert_D960_mv3_8bars_1_01"] == ["test"] * 4
    assert table["Schubert_D960_mv3_8bars_3_01"] == ["valid", "train", "train", "train"]
    assert table["Schubert_D960_mv3_8bars_10_01"] == ["train", "train", "train", "valid"]
    assert table["Beethoven_WoO80_thema_8bars_7_1"] == ["valid", "train", "train", "train"]  # Beethoven player 7: id 4
    assert "Beethoven_WoO80_thema_8bars_Score_1" not in table  # not in the label domain
    with pytest.raises(ValueError, match="performer table"):
        performer_id(parse_performance("Beethoven_WoO80_thema_8bars_5_1.mid"))


def test_composition_folds_keep_groups_together_and_are_deterministic():
    names = [parse_performance(f"Piece{p}_8bars_{player}_{seg}.mid") for p in range(4) for seg in range(5)
             for player in (1, 2, 3)]
    keys = [n.key for n in names]
    first, second = composition_folds(names, keys), composition_folds(list(reversed(names)), keys)
    assert first == second  # the listing is sorted first
    test_share = sum(1 for row in first.values() if row[0] == "test") / len(first)
    assert 0.15 <= test_share < 0.3
    by_group: dict[str, set[tuple]] = {}
    for n in names:
        by_group.setdefault(n.group, set()).add(tuple(first[n.key]))
    assert all(len(rows) == 1 for rows in by_group.values())
    assert all(row.count("valid") <= 1 for row in first.values())


def test_composition_folds_end_when_no_group_can_be_drawn():
    names = [parse_performance(f"Piece{p}_8bars_1_1.mid") for p in range(5)]  # five groups of one
    assert all(row == ["train" if f != i % 4 else "valid" for f in range(4)]
               for i, row in enumerate(composition_folds(names, [n.key for n in names]).values()))


def test_parse_split():
    assert parse_split("composition4fold:3:valid") == ("composition4fold", 3, "valid")
    for bad in ("random8fold:0:train", "performer4fold:4:train", "performer4fold:0", "performer4fold:x:test"):
        with pytest.raises(ValueError, match="SCHEME:FOLD:SPLIT"):
            parse_split(bad)


def test_corresp_round_trip_and_errors():
    rows = [Row(Note(1.5, 60, 70), Note(1.0, 60, 64)), Row(None, Note(2.0, 62, 64)), Row(Note(3.25, 61, 50), None)]
    text = write_corresp(rows)
    assert text.splitlines()[0].startswith("//")  # one field: skipped by the original's reader
    assert text.splitlines()[1].split("\t")[:5] == ["0", "1.500000", "C4", "60", "70"]
    assert text.splitlines()[2].split("\t")[:5] == ["*", "-1", "*", "-1", "-1"]
    assert read_corresp(text) == rows
    with pytest.raises(CorrespError, match=":2: 3 tab-separated"):
        read_corresp("//v\n1\t2\t3\n")
    with pytest.raises(CorrespError, match="no correspondence rows"):
        read_corresp("//v\n")


def test_feature_dict_round_trip_is_exact():
    features = {
        "midi_pitch": [60, 62, 64], "duration": [0.5, np.float64(1.25), 1], "pitch": [[0.1, 1, 0], [0.2, 0, 1],
                                                                                    [0.3, 0, 0]],
        "qpm_primo": 1.9, "num_notes": 3, "composer_vec": [0] * 16 + [1], "tempo_primo": [0, 1],
        "note_location": {"beat": [0, 0, 1], "measure": [0, 0, 0], "voice": [1, 0, 2], "section": [0, 0, 0]},
        "labels": None,
    }
    tensors, kinds = encode_features(features)
    assert kinds == {"midi_pitch": "note", "duration": "note", "pitch": "note-vector", "qpm_primo": "global",
                     "num_notes": "global", "composer_vec": "global-vector", "tempo_primo": "global-vector"}
    back = decode_features(tensors, kinds)
    assert back["midi_pitch"] == [60, 62, 64] and all(type(v) is int for v in back["midi_pitch"])
    assert back["duration"] == [0.5, 1.25, 1.0] and back["qpm_primo"] == 1.9 and back["num_notes"] == 3
    assert back["pitch"][1] == [0.2, 0.0, 1.0] and back["composer_vec"][-1] == 1
    assert back["note_location"] == features["note_location"]
    assert set(decode_features(tensors, kinds, only=("qpm_primo",))) == {"qpm_primo", "num_notes"}
    with pytest.raises(FeatureEncodingError, match="NoneType"):
        encode_features({"num_notes": 2, "velocity": [1, None]})


def test_hazard_counts():
    counts = segment_hazards([0, 1, 3, 3, -1, 4], [0, 0, 1, 1, -1, 2], [1, 0, 2, 2, 0, 1])
    assert counts == {"beat_jump": 2, "measure_jump": 1, "beat_drop": 1, "measure_drop": 1, "negative": 1,
                      "voice_zero": 2, "lone_first": 1}
    per = {"a": counts, "b": segment_hazards([0, 0, 1], [0, 0, 1], [1, 1, 1])}
    summary = summarise(per, {"a": 6, "b": 3}, [["a", "b"], ["b"]])
    assert summary["beat_jump"]["segment_share"] == 0.5 and summary["beat_jump"]["batch_share"] == 0.5
    assert summary["lone_first"]["batch_share_longest"] == 0.5
    assert summary["voice_zero"]["rate"] == round(2 / 9, 5)


def test_loader_order_is_the_random_samplers():
    from torch.utils.data import RandomSampler

    from percepiano_parity.batches.real.loader import RealData

    data = RealData(Path("."), {})
    generator = torch.Generator()
    generator.manual_seed(5)
    assert data.order(10, 5, shuffle=True) == list(RandomSampler(range(10), generator=generator))
    assert data.order(4, 5, shuffle=False) == [0, 1, 2, 3]


@needs_data
def test_alignment_of_a_real_performance():
    pytest.importorskip("parangonar")
    from percepiano_parity.batches.real.alignment import align, read_notes

    perf = DATA / "performances" / "Schubert_D960_mv2_16bars_1_01.mid"
    score = DATA / "scores" / "score_midi" / "Schubert_D960_mv2_16bars_Score_01.mid"
    result = align(score, perf)
    counts = result.counts
    assert counts["match"] + counts["deletion"] == result.score_notes == len(read_notes(score, "s"))
    assert counts["match"] + counts["insertion"] == result.performance_notes
    assert counts["match"] >= 0.9 * result.score_notes
    assert all(r.performance.pitch == r.score.pitch for r in result.rows if r.kind == "match")


def test_shipped_real_hazards_are_a_measurement():
    text = (Path(__file__).resolve().parents[2] / "parity" / "data" / "real_hazards.json").read_text()
    hazards = json.loads(text)["hazards"]
    assert hazards["segments"] >= 0.95 * 1202 and hazards["batches"] > 0
    assert hazards["voice_zero"]["count"] > 0
