"""The edge cases the original raises on (batches.synthetic.RAISING_EDGE_TAGS): each one really makes the original
raise the exception its tag's description names, for every variant, and the faithful replica raises alike (its
HierarchyError names the original's exception), so a faithful replica agrees there."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from tiers import sweep

from percepiano_parity import replica
from percepiano_parity.batches.canonical import collate
from percepiano_parity.batches.synthetic import RAISING_EDGE_TAGS, raising_edge_cases, structure_problems

CONFIG = replica.SMALL_CONFIG


def test_raising_edge_cases_are_what_their_tags_say():
    by_tag = {b.tags[0]: b for b in raising_edge_cases(3, CONFIG, max_notes=48)}
    assert tuple(by_tag) == RAISING_EDGE_TAGS
    for tag in RAISING_EDGE_TAGS[:2]:
        (seg,) = by_tag[tag].segments  # alone: no longer item whose padded nodes would take the index
        assert int(seg.beat[1]) == int(seg.beat[0])  # the span covers the whole row
        key = "beat" if "beat" in tag else "measure"
        steps = torch.diff(getattr(seg, key)).tolist()
        assert steps.count(2) == 1 and set(steps) <= {0, 1, 2}
        assert f"{key} changes by [2] (only 0 or 1 allowed)" in structure_problems(seg, normal=False, hazards=False)
    assert set(by_tag[RAISING_EDGE_TAGS[2]].lengths) == {1} and len(by_tag[RAISING_EDGE_TAGS[2]]) >= 2


def _outcome(run) -> str:
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the original prints on some inputs
            run()
    except Exception as exc:  # noqa: BLE001 - the kind of error is what is compared
        return getattr(exc, "original_error", None) or type(exc).__name__
    return "ok"


@pytest.mark.original
@pytest.mark.parametrize("variant", sweep(replica.VARIANTS, fast={"han-total"}))
def test_the_original_raises_there_and_the_faithful_replica_raises_alike(original, variant):
    reference = original.build(variant, CONFIG, seed=7).eval()
    model = replica.build(variant, CONFIG, seed=7).eval()
    model.load_state_dict(reference.state_dict())
    for batch in raising_edge_cases(0, CONFIG, max_notes=48):
        inputs = collate(batch)
        with original.isolated.running():
            got = _outcome(lambda i=inputs: reference(i.x, None, None, i.note_locations))
        mine = _outcome(lambda i=inputs: model(i.x, i.note_locations))
        assert mine == got, (variant, batch.tags, got, mine)
        if variant.startswith("han"):
            assert got == "IndexError", (variant, batch.tags, got)
