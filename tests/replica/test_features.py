"""The 79-column note-feature layout (batches.features)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from percepiano_parity.batches.features import (
    DEFAULT_INPUT_KEYS,
    FEATURE_LAYOUT,
    LAYOUTS,
    feature_columns,
    key_lists_from_checkout,
    layout_offsets,
    total_width,
)
from percepiano_parity.core.config import DEFAULT_CONFIG


def test_widths_sum_to_the_model_input_size():
    assert total_width(FEATURE_LAYOUT) == 79 == DEFAULT_CONFIG.input_size
    assert all(width >= 1 for _, width in FEATURE_LAYOUT)
    assert [name for name, _ in FEATURE_LAYOUT] == list(DEFAULT_INPUT_KEYS)


def test_offsets_are_contiguous_and_cover_every_column():
    offsets = layout_offsets()
    start = 0
    for name, width in FEATURE_LAYOUT:
        assert offsets[name] == (start, start + width)
        start += width
    assert start == 79
    covered = sorted(c for name, _ in FEATURE_LAYOUT for c in feature_columns(name))
    assert covered == list(range(79))


def test_section_tempo_is_one_column_after_the_first_five_scalars():
    assert feature_columns("section_tempo") == [5]
    assert feature_columns("pitch") == list(range(14, 27))  # octave + 12 pitch classes
    assert feature_columns("composer_vec") == list(range(51, 68))
    with pytest.raises(KeyError, match="unknown feature"):
        feature_columns("no_such_feature")


def test_other_key_lists_of_the_original_have_their_own_widths():
    assert {name: total_width(layout) for name, layout in LAYOUTS.items()} == {
        "published-79": 79, "default-keys-with-unnorm-84": 84, "split-scripts-101": 101,
        "split-scripts-perffeatonly-9": 9,
    }
    # the 78-column VirtuosoNet list is the 79 without section_tempo
    assert total_width(tuple(b for b in FEATURE_LAYOUT if b[0] != "section_tempo")) == 78


ROOT = os.environ.get("PERCEPIANO_ORIGINAL")


@pytest.mark.skipif(not ROOT, reason="PERCEPIANO_ORIGINAL not set: the key lists are re-read from a real checkout")
def test_key_lists_read_from_the_checkout_match_the_layout():
    found = key_lists_from_checkout(Path(ROOT))
    default = [v for k, v in found.items() if "data_for_training.py:" in k and v["name"] == "VNET_INPUT_KEYS"]
    assert default and default[0]["keys"] == list(DEFAULT_INPUT_KEYS)
    assert default[0]["width"] == 79 and default[0]["width_with_unnorm"] == 84
    widths = sorted({v["width_with_unnorm"] for v in found.values() if v["name"] == "VNET_INPUT_KEYS"})
    assert widths == [9, 84, 101]
    assert not any(v["unknown_widths"] for v in found.values())
