"""parity.training.checks_for: the three training checks together, as the audit integrates them."""

from __future__ import annotations

from parity.findings import Severity
from parity.training import checks_for, recipe_check
from replica.config import SMALL_CONFIG
from replica.deviations import get_deviation
from replica.recipe import ORIGINAL_RECIPE

QUICK = {"slicing": 100, "collate": 100, "loss": 100, "validation": 100}


def test_faithful_recipe_passes_all_three():
    results = checks_for(None, ORIGINAL_RECIPE, "han-total", SMALL_CONFIG, 7, data_counts=QUICK)
    assert [r.id for r in results] == ["recipe", "trajectory", "data"]
    assert all(r.status == "passed" for r in results), [(r.id, r.reason) for r in results]
    assert all(f.severity == Severity.INFO for r in results for f in r.findings)
    assert {"recipe", "steps", "data_ops", "label_files"} <= {t for r in results for t in r.tables}


def test_a_deviation_is_seen_by_the_recipe_and_the_trajectory():
    recorded = recipe_check.recorded_recipe()  # an already read recipe (as a bundle replays it) is accepted
    results = {r.id: r for r in checks_for(recorded, get_deviation("clip-1.0").recipe(), "han-total", None, 7,
                                           data_counts=QUICK)}
    assert {f.location for f in results["recipe"].findings if f.severity >= Severity.WARNING} == {"grad_clip"}
    assert "trajectory.grad_norm" in {f.kind for f in results["trajectory"].findings}
    assert results["data"].status == "passed"


def test_an_unreadable_candidate_skips_with_a_reason():
    results = checks_for(None, object(), "han-total", SMALL_CONFIG, 7, data_counts=QUICK)
    by_id = {r.id: r for r in results}
    assert by_id["recipe"].status == "skipped" and "cannot read" in by_id["recipe"].reason
    assert by_id["trajectory"].status == "skipped"
