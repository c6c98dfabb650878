"""Hierarchy operations on small hand-worked examples (values worked out by hand from the original's rules)."""

from __future__ import annotations

import math

import pytest
import torch

from percepiano_parity import replica
from percepiano_parity.batches.canonical import CanonicalBatch, Segment
from percepiano_parity.replica.hierarchy import (
    HierarchyError,
    make_higher_node,
    measure_segments_in_beat_space,
    note_segments,
    segment_softmax,
    span_note_counts,
    span_to_notes,
)
from percepiano_parity.replica.voices import run_voices


def _segs(s) -> list[tuple[int, int, int]]:
    return list(zip(s.item.tolist(), s.start.tolist(), s.end.tolist(), strict=True))


def test_beats_not_starting_at_zero_and_padding() -> None:
    beats = torch.tensor([[3, 3, 4, 5, 5, 5, 0, 0], [0, 1, 1, 2, 0, 0, 0, 0]])
    s = note_segments(beats)
    assert _segs(s) == [(0, 0, 2), (0, 2, 3), (0, 3, 6), (1, 0, 1), (1, 1, 3), (1, 3, 4)]
    assert s.num_nodes.tolist() == [3, 3] and s.node.tolist() == [0, 1, 2, 0, 1, 2]


def test_one_note_beats_each_make_a_node() -> None:
    s = note_segments(torch.tensor([[1, 2, 3, 4]]))
    assert _segs(s) == [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4)]


def test_jump_of_two_merges_two_beats() -> None:
    # only a rise by exactly 1 starts a beat: 1 -> 3 is not a boundary
    s = note_segments(torch.tensor([[1, 1, 3, 3, 4]]))
    assert _segs(s) == [(0, 0, 4), (0, 4, 5)]


def test_all_zero_row_is_rejected_like_the_original() -> None:
    with pytest.raises(HierarchyError, match="only zero"):
        note_segments(torch.tensor([[1, 2], [0, 0]]))


def test_segment_softmax_is_per_segment_and_head() -> None:
    scores = torch.tensor([[[0.0, 1.0], [math.log(2.0), 1.0], [0.0, 5.0]]])  # (1, 3, 2 heads)
    s = note_segments(torch.tensor([[1, 1, 2]]))
    w = segment_softmax(scores, s)
    assert torch.allclose(w[0, :, 0], torch.tensor([1 / 3, 2 / 3, 1.0]))
    assert torch.allclose(w[0, :, 1], torch.tensor([0.5, 0.5, 1.0]))


def test_one_covered_position_broadcasts_like_the_original() -> None:
    # beats [-1, 0]: boundaries [0, 1, 1], so only position 0 gets a softmax weight; the original multiplies that
    # (N, 1, H) row with the (N, 2, H, C) input, which broadcasts it over both positions (found by fuzzing)
    s = note_segments(torch.tensor([[-1, 0]]))
    w = segment_softmax(torch.tensor([[[0.3, -2.0], [4.0, 1.0]]]), s)
    assert w.shape == (1, 2, 2) and torch.equal(w, torch.ones(1, 2, 2))
    with pytest.raises(HierarchyError, match="cover 2 positions but the sequence has 3") as caught:
        segment_softmax(torch.zeros(1, 3, 2), note_segments(torch.tensor([[0, 1, 0]])))
    assert caught.value.original_error == "RuntimeError"


def test_higher_node_weights_channels_head_wise() -> None:
    lower = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]]])  # 2 heads of width 1
    weights = torch.tensor([[[0.25, 1.0], [0.75, 0.0], [1.0, 1.0]]])
    nodes = make_higher_node(lower, weights, note_segments(torch.tensor([[1, 1, 2]])), num_head=2)
    assert nodes.tolist() == [[[0.25 * 1 + 0.75 * 3, 10.0], [5.0, 50.0]]]


def test_measure_boundaries_live_in_beat_space() -> None:
    beats = torch.tensor([[0, 0, 1, 2, 2, 3]])
    measures = torch.tensor([[1, 1, 1, 2, 2, 2]])
    s = measure_segments_in_beat_space(beats, measures, torch.tensor([4]))
    assert _segs(s) == [(0, 0, 2), (0, 2, 4)]


def test_measure_change_inside_a_beat_gives_an_empty_zero_node() -> None:
    # the measure changes between two notes of beat 0: boundaries [0, 0, 2] -> an empty first segment
    beats = torch.tensor([[0, 0, 1, 1]])
    measures = torch.tensor([[1, 2, 2, 2]])
    s = measure_segments_in_beat_space(beats, measures, torch.tensor([2]))
    assert _segs(s) == [(0, 0, 0), (0, 0, 2)]
    lower = torch.tensor([[[1.0], [2.0]]])
    w = segment_softmax(torch.zeros(1, 2, 1), s)
    nodes = make_higher_node(lower, w, s, num_head=1)
    assert nodes.tolist() == [[[0.0], [1.5]]]


def test_span_counts_follow_the_argmin_quirk() -> None:
    assert span_note_counts(torch.tensor([[3, 3, 4, 5, 0]])).tolist() == [4]  # drop into padding
    assert span_note_counts(torch.tensor([[0, 1, 2]])).tolist() == [3]  # argmin 0 -> 1 -> whole row
    # the longest item whose first note is alone in its beat is truncated at its first chord
    assert span_note_counts(torch.tensor([[5, 6, 6, 7]])).tolist() == [2]


def test_span_copies_each_notes_beat_and_zeroes_after_the_count() -> None:
    nodes = torch.tensor([[[10.0], [20.0], [30.0]]])
    assert span_to_notes(nodes, torch.tensor([[5, 5, 6, 7]])).flatten().tolist() == [10.0, 10.0, 20.0, 30.0]
    assert span_to_notes(nodes, torch.tensor([[5, 6, 6, 7]])).flatten().tolist() == [10.0, 20.0, 0.0, 0.0]


def test_length_one_sequences() -> None:
    assert span_note_counts(torch.tensor([[4]])).tolist() == [1]  # alone: runs
    with pytest.raises(HierarchyError, match="length-1 items only"):
        span_note_counts(torch.tensor([[4], [2]]))


def test_voice_gaps_and_voice_zero() -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 2, batch_first=True, bidirectional=True)
    notes = torch.randn(1, 4, 3)
    a = run_voices(notes, torch.tensor([[1, 2, 1, 0]]), lstm)
    b = run_voices(notes, torch.tensor([[1, 7, 1, 0]]), lstm)  # a gap in voice numbers changes nothing
    assert torch.equal(a, b)
    assert a[0, 3].abs().sum() == 0  # voice 0 belongs to no voice
    alone, _ = lstm(notes[:, [0, 2]])  # voice 1 is its own sequence
    assert torch.allclose(a[0, [0, 2]], alone[0], atol=1e-6)


def _segment(name: str, beats: list[int], measures: list[int], voices: list[int]) -> Segment:
    t = len(beats)
    g = torch.Generator().manual_seed(t)
    return Segment(name, torch.randn(t, 79, generator=g), torch.tensor(beats), torch.tensor(measures),
                   torch.tensor(voices), torch.ones(t, dtype=torch.long), torch.rand(19, generator=g))


@pytest.mark.parametrize("variant", list(replica.VARIANTS))
def test_very_unequal_lengths_and_length_one_items_run(variant: str) -> None:
    long = _segment("long", [i // 3 + 1 for i in range(90)], [i // 9 + 1 for i in range(90)],
                    [1 + i % 2 for i in range(90)])
    short = _segment("short", [1], [1], [1])
    mid = _segment("mid", [2, 2, 3, 4, 4], [1, 1, 1, 2, 2], [1, 2, 1, 1, 3])
    model = replica.build(variant, replica.SMALL_CONFIG, seed=0).eval()
    inp = replica.collate(CanonicalBatch((long, short, mid)))
    with torch.no_grad():
        out = model(inp.x, inp.note_locations)
    assert out.shape == (3, 19) and torch.isfinite(out).all()


def test_prediction_of_an_item_does_not_depend_on_its_position_in_the_batch() -> None:
    a = _segment("a", [1, 1, 2, 3, 3, 4], [1, 1, 1, 2, 2, 2], [1, 2, 1, 1, 2, 1])
    b = _segment("b", [1, 2, 2, 3], [1, 1, 2, 2], [1, 1, 2, 1])
    model = replica.build("han-measure", replica.SMALL_CONFIG, seed=0).eval()
    with torch.no_grad():
        ab = model(*_xl(CanonicalBatch((a, b))))
        ba = model(*_xl(CanonicalBatch((b, a))))
    assert torch.allclose(ab, ba.flip(0), atol=1e-6)


def _xl(batch: CanonicalBatch):
    inp = replica.collate(batch)
    return inp.x, inp.note_locations
