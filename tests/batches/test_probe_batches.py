"""Probe batches for the training checks hold items of pairwise different lengths, with the longest at
different positions, and are valid batches for the original's code paths."""

from __future__ import annotations

import pytest

from percepiano_parity.batches.plan import probe_lengths, unequal_length_batches, validate_batches
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.core.options import MIN_NOTES


def test_lengths_are_spread_and_pairwise_different():
    assert probe_lengths(4, 32) == [32, 25, 17, 10]
    assert len(set(probe_lengths(8, 48))) == 8 and min(probe_lengths(8, 48)) >= MIN_NOTES


def test_batches_shuffle_the_lengths_and_validate():
    batches = unequal_length_batches(5, 11, batch_size=4, config=SMALL_CONFIG, max_notes=32)
    lengths = [[len(s.beat) for s in b.segments] for b in batches]
    assert all(sorted(x, reverse=True) == probe_lengths(4, 32) for x in lengths)
    assert len({x.index(32) for x in lengths}) > 1
    validate_batches(batches, SMALL_CONFIG)
    assert unequal_length_batches(5, 11, batch_size=4, config=SMALL_CONFIG, max_notes=32)[0].segments[0].name == \
        batches[0].segments[0].name  # deterministic


def test_a_max_notes_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="at least"):
        unequal_length_batches(1, 0, batch_size=2, config=SMALL_CONFIG, max_notes=MIN_NOTES - 1)
