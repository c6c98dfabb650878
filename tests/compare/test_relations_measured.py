"""Relation tests on tensors whose relation is known: each finds it, with its parameters and a residual at
float rounding, and finds nothing where there is nothing to find."""

from __future__ import annotations

import torch

from percepiano_parity.compare.relations import layout, softmax
from percepiano_parity.compare.relations.result import blocks_of, describe_blocks

TOL = 1e-5


def _batch(seed: int = 0, lengths=(5, 9, 7), width: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), width, generator=g)
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    return x, lengths_t


def test_feature_blocks_swapped_are_named_with_their_ranges():
    ref, _ = _batch()
    cand = torch.cat([ref[..., :8], ref[..., 12:], ref[..., 8:12]], dim=-1)
    rel = layout.feature_permutation("total_note_cat", ref, cand, TOL)
    assert rel.holds and rel.residual == 0.0
    assert "feature blocks [8:12] and [12:16] swapped" in rel.summary
    assert rel.fix["action"] == "permute_level_output"


def test_no_permutation_when_values_differ():
    ref, _ = _batch()
    rel = layout.feature_permutation("note", ref, ref * 1.01, TOL)
    assert not rel.holds


def test_items_sorted_by_length_are_recognised_as_such():
    ref, lengths = _batch()
    order = torch.sort(lengths, descending=True, stable=True).indices
    rel = layout.item_permutation("note", ref, ref[order], TOL, lengths)
    assert rel.holds and rel.details["order"] == "length_desc"
    assert rel.fix == {"action": "reorder_level_items", "level": "note", "order": "length_desc"}


def test_time_reversal_of_half_the_channels_within_each_length():
    ref, lengths = _batch()
    cand = ref.clone()
    for b, n in enumerate(lengths.tolist()):
        cand[b, :n, 8:] = ref[b, :n, 8:].flip(0)
    rel = layout.time_reversal("note", ref, cand, TOL, lengths)
    assert rel.holds and rel.details["channels"] == [[8, 16]]


def _scores(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, 11, 8, generator=torch.Generator().manual_seed(seed))


def test_softmax_over_another_axis_is_measured_from_the_weights_alone():
    s = _scores()
    rel = softmax.normalisation_axis("pooled", torch.softmax(s, 1), torch.softmax(s, 2), TOL)
    assert rel.holds and rel.details["replica_axis"] == 2 and rel.details["original_axis"] == 1
    assert rel.residual < 1e-6


def test_softmax_temperature_factor_is_fitted():
    s = _scores()
    rel = softmax.temperature("pooled", torch.softmax(s, 1), torch.softmax(s / 8 ** 0.5, 1), TOL)
    assert rel.holds
    assert abs(rel.details["factor"] - 8 ** -0.5) < 1e-6


def test_same_weights_hold_no_relation():
    w = torch.softmax(_scores(), 1)
    assert not softmax.normalisation_axis("pooled", w, w, TOL).holds
    assert not softmax.temperature("pooled", w, w, TOL).holds


def test_blocks_of_a_permutation():
    assert blocks_of([0, 1, 4, 5, 2, 3]) == [(0, 2, 0), (2, 4, 4), (4, 6, 2)]
    assert describe_blocks(blocks_of([0, 1, 4, 5, 2, 3])) == "feature blocks [2:4] and [4:6] swapped"
