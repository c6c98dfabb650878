"""The default synthetic batches carry the hazards of real data at least as often as the real segments do (the
shipped measurement, parity/data/real_hazards.json), plus the beat jump that tells a boundary rule apart; the
shipped bundles, recorded on them, make a default check catch `boundaries-any-change`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from percepiano_parity.batches.real.hazards import HAZARDS, segment_hazards, summarise
from percepiano_parity.batches.synthetic import (
    generate_batches,
    original_beat_nodes,
    quota,
    real_hazards,
    structure_problems,
)
from percepiano_parity.subjects.bundle import DEFAULT_BUNDLES, load_bundle

ROOT = Path(__file__).resolve().parents[2]


def _shares(batches):
    per, lengths, groups = {}, {}, []
    for k, batch in enumerate(batches):
        names = []
        for i, seg in enumerate(batch.segments):
            name = f"{k}.{i}"
            per[name] = segment_hazards(seg.beat.tolist(), seg.measure.tolist(), seg.voice.tolist())
            lengths[name] = seg.length
            names.append(name)
        groups.append(names)
    return summarise(per, lengths, groups)


def test_quota_gives_at_least_the_share_in_every_prefix():
    for share in (0.0, 0.00971, 0.12621, 0.5, 0.76539, 1.0):
        hits = 0
        for k in range(40):
            hits += quota(k, share)
            assert hits >= share * (k + 1) - 1e-9
            assert hits <= share * (k + 1) + 1


@pytest.mark.parametrize("seed,n", [(0, 3), (0, 1), (7, 12), (3, 5)])
def test_default_batches_hit_every_real_hazard_at_least_as_often(seed, n):
    real = real_hazards()
    synthetic = _shares(generate_batches(n, seed, include_edge_cases=False))
    for hazard in HAZARDS:
        assert synthetic[hazard]["batch_share"] >= real[hazard]["batch_share"], hazard
    assert synthetic["lone_first"]["batch_share_longest"] >= real["lone_first"]["batch_share_longest"]
    assert synthetic["voice_zero"]["rate"] >= 0.5 * real["voice_zero"]["rate"]  # per note, roughly the real rate
    assert synthetic["beat_jump"]["batch_share"] >= 0.5  # beyond the real 0: every other batch (the probe)


def test_hazards_keep_the_original_running_conventions():
    for batch in generate_batches(8, 1, include_edge_cases=False):
        nodes = [original_beat_nodes(s.beat.tolist()) for s in batch.segments]
        for seg in batch.segments:
            assert structure_problems(seg) == []
            assert (seg.voice > 0).any()
            shifted = seg.beat - seg.beat[0]
            assert int(shifted.max()) < max(nodes)  # a jump never points past the batch's beat nodes
    assert all(structure_problems(s, hazards=False) == [] for b in generate_batches(2, 1, include_edge_cases=False,
                                                                                    hazards=False)
               for s in b.segments)


def test_the_shipped_bundle_batches_carry_the_hazards():
    batches = load_bundle(DEFAULT_BUNDLES["han-total"]).batches
    normal = [b for b in batches if "normal" in b.tags]
    assert normal and {"hazard:voice-zero", "hazard:beat-jump", "hazard:lone-first-longest"} <= set(normal[0].tags)
    assert any(int((s.beat[1:] - s.beat[:-1]).max()) == 2 for s in normal[0].segments)


def test_default_check_catches_the_boundary_rule():
    """The golden report of `parity check --deviation boundaries-any-change` (kept equal to a live run by
    test_reports_unchanged.py): a mismatch explained first by PP-BOUNDARY-RULE at the beat nodes."""
    report = json.loads((ROOT / "tests" / "golden" / "boundaries-any-change.json").read_text())
    assert report["verdict"] == "mismatch"
    first = report["explanations"][0]
    assert first["id"] == "PP-BOUNDARY-RULE" and first["effect"]["root_level"] == "beat_nodes"
