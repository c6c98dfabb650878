"""The original's feature pipeline through the adapter: its shims, its key lists, and our fold rule against its own
performer map on every shared file name."""

from __future__ import annotations

import random
from pathlib import Path

import numpy
import pytest

from percepiano_parity.batches import features as layout
from percepiano_parity.batches.real.splits import parse_performance, performer_id

DATA = Path(__file__).resolve().parents[3] / "shared" / "percepiano-data"

pytestmark = pytest.mark.original


@pytest.fixture(scope="module")
def pipeline(original):
    from percepiano_parity.original_adapter.features import load_feature_pipeline

    return load_feature_pipeline(original.root)


def test_the_pipeline_imports_with_recorded_shims_and_leaves_numpy_alone(pipeline):
    names = {s["name"] for s in pipeline.shims}
    assert "numpy.lib.npyio.save" in names  # numpy 2 removed it; the original imports it
    assert not hasattr(numpy.lib.npyio, "save")  # lent only while importing
    assert "pretty_midi" not in names  # the real one: the pipeline reads every MIDI file with it
    assert pipeline.isolated["data_class"].__file__.endswith("pyScoreParser/data_class.py")


def test_key_lists_are_the_ones_the_layout_table_names(pipeline):
    lists = pipeline.key_lists()
    assert lists["module-default"].keys == layout.DEFAULT_INPUT_KEYS
    assert lists["published-splits"].keys == layout.SPLIT_INPUT_KEYS
    assert lists["published-splits-perffeatonly"].keys == layout.PERFORMANCE_ONLY_KEYS
    assert lists["published-splits"].source.startswith("pyScoreParser/m2pf_dataset_performerfold.py:")


@pytest.mark.skipif(not (DATA / "performances").is_dir(), reason=f"{DATA} not present")
def test_our_performer_ids_equal_the_originals_on_every_file(pipeline):
    from percepiano_parity.original_adapter.features import FEATURE_SHIMS
    from percepiano_parity.original_adapter.isolation import import_isolated
    from percepiano_parity.original_adapter.shims import FEATURE_ATTRIBUTE_SHIMS, lend_attributes

    state = random.getstate()  # the script seeds the global random module when imported
    try:
        with lend_attributes(FEATURE_ATTRIBUTE_SHIMS):
            script = import_isolated(pipeline.isolated.code_dir, ["m2pf_dataset_performerfold"], FEATURE_SHIMS,
                                     base=pipeline.isolated)["m2pf_dataset_performerfold"]
    finally:
        random.setstate(state)
    names = [parse_performance(p.name) for p in sorted((DATA / "performances").glob("*.mid"))]
    assert len(names) == 1202
    for name in names:
        assert performer_id(name) == script.get_performer_fold_map(f"all_2rounds/{name.key}.mid"), name.file
