"""The seeded batch generator (parity.batches) and the score measurements it is calibrated on."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from percepiano_parity import replica
from percepiano_parity.batches.score_structure import (
    beats_per_measure,
    make_continuous,
    notes_per_beat,
)
from percepiano_parity.batches.synthetic import (
    EDGE_TAGS,
    HAZARD_TAGS,
    LABEL_RANGE,
    batch_summary,
    edge_cases,
    generate_batches,
    load_stats,
    structure_problems,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared/percepiano-data"
STATS = load_stats()


def _hist_range(hist: dict[str, int]) -> tuple[int, int]:
    keys = [int(k) for k in hist]
    return min(keys), max(keys)


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.tags == y.tags
        assert len(x) == len(y)
        for s, t in zip(x.segments, y.segments, strict=True):
            assert s.name == t.name
            for key in ("features", "beat", "measure", "voice", "section", "label"):
                u, v = getattr(s, key), getattr(t, key)
                assert u.dtype == v.dtype and torch.equal(u, v), key


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_batches():
    _assert_same(generate_batches(3, 123, max_notes=60), generate_batches(3, 123, max_notes=60))


def test_different_seed_different_batches():
    a = generate_batches(1, 1, include_edge_cases=False)[0]
    b = generate_batches(1, 2, include_edge_cases=False)[0]
    assert a.lengths != b.lengths or not torch.equal(a.segments[0].features, b.segments[0].features)
    ea, eb = edge_cases(1, max_notes=60), edge_cases(2, max_notes=60)
    assert not torch.equal(ea[0].segments[0].features, eb[0].segments[0].features)


def test_batch_k_does_not_depend_on_how_many_were_asked_for():
    _assert_same(generate_batches(2, 9, include_edge_cases=False),
                 generate_batches(4, 9, include_edge_cases=False)[:2])


# --------------------------------------------------------------------------- structure


@pytest.fixture(scope="module")
def normal_batches():
    return [b for seed in range(25) for b in generate_batches(2, seed, include_edge_cases=False)]


@pytest.fixture(scope="module")
def template_batches():
    """The same batches without the real hazards (synthetic_hazards), as the score templates make them."""
    return [b for seed in range(25) for b in generate_batches(2, seed, include_edge_cases=False, hazards=False)]


def test_normal_batches_follow_the_original_conventions(normal_batches):
    lo, hi = _hist_range(STATS["performance_note_counts"]["histogram"])
    for batch in normal_batches:
        assert batch.tags[0] == "normal" and set(batch.tags[1:]) <= set(HAZARD_TAGS) and len(batch) == 8
        batch.validate(input_size=79, num_label=19)
        jumps = 0
        for seg in batch.segments:
            assert structure_problems(seg) == [], (seg.name, structure_problems(seg))
            assert lo <= seg.length <= hi
            assert seg.features.shape == (seg.length, 79) and seg.features.dtype == torch.float32
            assert seg.label.shape == (19,) and seg.label.dtype == torch.float32
            assert LABEL_RANGE[0] <= float(seg.label.min()) and float(seg.label.max()) <= LABEL_RANGE[1]
            # rises by 0 or 1 (one rise of 2 in a hazard batch), measures open on a new beat, never an all-zero
            # row, no -1; voice 0 only on some notes
            steps = torch.diff(seg.beat).tolist()
            assert set(steps) <= {0, 1, 2}
            jumps += steps.count(2)
            assert set(torch.diff(seg.measure).tolist()) <= {0, 1}
            starts = torch.nonzero(torch.diff(seg.measure)).flatten() + 1
            assert bool((seg.beat[starts] > seg.beat[starts - 1]).all())
            assert int(seg.beat.max()) > 0 and int(seg.measure.max()) > 0
            assert int(seg.voice.min()) >= 0 and int(seg.voice.max()) > 0 and bool((seg.section == 1).all())
        assert jumps == ("hazard:beat-jump" in batch.tags)


def test_first_beat_distribution_matches_the_stats(normal_batches):
    firsts = [int(s.beat[0]) for b in normal_batches for s in b.segments]
    share = sum(f != 0 for f in firsts) / len(firsts)
    assert abs(share - STATS["summary"]["first_beat_nonzero_share"]) < 0.1
    assert set(firsts) <= {int(k) for k in STATS["summary"]["first_beat"]}


def test_texture_is_within_the_real_ranges(template_batches):
    summary = STATS["summary"]
    npb_lo, npb_hi = _hist_range(summary["notes_per_beat"])
    bpm_lo, bpm_hi = _hist_range(summary["beats_per_measure"])
    v_lo, v_hi = _hist_range(summary["num_voices"])
    npb, voices = [], []
    for batch in template_batches:
        for seg in batch.segments:
            counts = notes_per_beat(seg.beat.tolist())
            npb += counts[:-1]  # the last beat may be cut by the segment end
            bpm = beats_per_measure(seg.beat.tolist(), seg.measure.tolist())
            assert all(bpm_lo <= c <= bpm_hi for c in bpm[:-1])
            voices.append(len(set(seg.voice.tolist())))
    assert npb_lo <= min(npb) and max(npb) <= npb_hi
    assert abs(statistics.median(npb) - summary["notes_per_beat_summary"]["median"]) <= 2
    assert v_lo - 1 <= min(voices) and max(voices) <= v_hi  # a short cut can miss a rare voice


def test_max_notes_caps_lengths():
    for batch in generate_batches(3, 4, max_notes=60):
        for seg in batch.segments:
            assert 1 <= seg.length <= 60
    with pytest.raises(ValueError):
        generate_batches(1, 0, max_notes=3)


def test_small_caps_keep_two_beats_and_two_measures():
    for seed in range(10):
        for batch in generate_batches(3, seed, max_notes=8, include_edge_cases=False):
            for seg in batch.segments:
                assert seg.length == 8
                assert structure_problems(seg) == []


def test_config_sets_widths():
    config = replica.SMALL_CONFIG.with_(input_size=12, num_label=5)
    for batch in generate_batches(1, 0, config=config, max_notes=20):
        batch.validate(input_size=12, num_label=5)


# --------------------------------------------------------------------------- edge cases


def test_edge_cases_present_and_tagged():
    batches = generate_batches(1, 0, max_notes=60)
    edge = [b for b in batches if any(t.startswith("edge:") for t in b.tags)]
    assert [b.tags[0] for b in edge] == list(EDGE_TAGS)
    assert generate_batches(1, 0, max_notes=60, include_edge_cases=False, hazards=False)[0].tags == ("normal",)
    for batch in edge:
        batch.validate(input_size=79, num_label=19)
        for seg in batch.segments:
            assert structure_problems(seg, normal=False) == [], (batch.tags, structure_problems(seg, normal=False))
            assert seg.length <= 60


@pytest.mark.parametrize("max_notes", [None, 60])
def test_edge_cases_are_what_their_tags_say(max_notes):
    by_tag = {b.tags[0]: b for b in edge_cases(3, max_notes=max_notes)}

    one = by_tag["edge:length-1"]
    single = [s for s in one.segments if s.length == 1]
    assert len(single) == 1 and len(one) >= 2
    n_beats = max(len(set(s.beat.tolist())) for s in one.segments)
    n_measures = max(len(set(s.measure.tolist())) for s in one.segments)
    assert 0 < int(single[0].beat[0]) < n_beats and 0 < int(single[0].measure[0]) < n_measures

    for seg in by_tag["edge:one-note-beats"].segments:
        assert set(notes_per_beat(seg.beat.tolist())) == {1}

    offsets = [(int(s.beat[0]), int(s.measure[0])) for s in by_tag["edge:beats-not-starting-at-0"].segments]
    assert (17, 5) in offsets and all(b > 0 and m > 0 for b, m in offsets)

    lengths = by_tag["edge:unequal-lengths"].lengths
    assert max(lengths) >= 4 * min(lengths)

    (seg,) = by_tag["edge:single-item"].segments
    assert int(seg.beat[0]) == int(seg.beat[1])

    (seg,) = by_tag["edge:single-item-lone-first-note"].segments
    assert int(seg.beat[1]) == int(seg.beat[0]) + 1


def test_batch_summary():
    batch = edge_cases(0, max_notes=60)[0]
    summary = batch_summary(batch)
    assert summary["tags"] == ["edge:length-1"] and summary["size"] == 3
    assert summary["lengths"] == batch.lengths and 1 in summary["lengths"]
    assert len(summary["beats"]) == len(summary["measures"]) == len(summary["voices"]) == 3
    json.dumps(summary)


# --------------------------------------------------------------------------- end to end through the replica


def test_generated_batches_run_through_every_replica_variant():
    batches = generate_batches(2, 0, config=replica.SMALL_CONFIG, max_notes=60)
    assert any(b.tags[0].startswith("edge:") for b in batches)
    for variant in replica.VARIANTS:
        model = replica.build(variant, replica.SMALL_CONFIG, seed=0).eval()
        for batch in batches:
            inp = replica.collate(batch)
            with torch.no_grad():
                out = model(inp.x, inp.note_locations)
            assert out.shape == (len(batch), replica.SMALL_CONFIG.num_label), (variant, batch.tags)
            assert bool(torch.isfinite(out).all()), (variant, batch.tags)


# --------------------------------------------------------------------------- the measurements behind the stats


def test_continuous_indices_and_counts():
    assert make_continuous([0, 0, 1, 4, 4, 5]) == [0, 0, 1, 2, 2, 3]
    assert make_continuous([3, 3, 4]) == [1, 1, 2]
    assert make_continuous([1, 2, 2]) == [1, 2, 2]
    assert notes_per_beat([0, 0, 1, 2, 2, 2]) == [2, 1, 3]
    assert beats_per_measure([0, 0, 1, 2, 2, 3], [0, 0, 0, 1, 1, 1]) == [2, 2]


def test_shipped_stats_are_small_and_complete():
    path = Path(__file__).resolve().parents[2] / "parity/data/score_stats.json"
    assert path.stat().st_size < 100_000
    labels = STATS["labels"]
    assert labels["count"] == 1189 and len(labels["mean"]) == len(labels["std"]) == 19
    assert labels["names"] == sorted(labels["names"]) and len(labels["names"]) == 50
    assert _hist_range(STATS["performance_note_counts"]["histogram"]) == (51, 413)
    assert STATS["summary"]["num_scores"] == len(STATS["scores"]) > 200


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/percepiano-data is not available")
def test_real_scores_match_the_shipped_stats():
    pytest.importorskip("music21")
    from percepiano_parity.batches.score_structure import read_score, structure_record

    files = sorted((DATA / "scores/score_xml").glob("*.musicxml"))
    records = {r["name"]: r for r in STATS["scores"]}
    chosen = [p for p in files if p.stem in records][:: max(len(files) // 5, 1)][:5]
    assert len(chosen) == 5
    summary = STATS["summary"]
    npb_lo, npb_hi = _hist_range(summary["notes_per_beat"])
    bpm_lo, bpm_hi = _hist_range(summary["beats_per_measure"])
    for path in chosen:
        s = read_score(path)
        assert set(b - a for a, b in zip(s.beat, s.beat[1:], strict=False)) <= {0, 1}
        assert set(b - a for a, b in zip(s.measure, s.measure[1:], strict=False)) <= {0, 1}
        assert all(npb_lo <= c <= npb_hi for c in notes_per_beat(s.beat))
        assert all(bpm_lo <= c <= bpm_hi for c in beats_per_measure(s.beat, s.measure))
        assert structure_record(s) == records[s.name]  # the shipped stats are reproducible
