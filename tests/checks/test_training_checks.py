"""parity.training.checks_for: the three training checks together, as the audit integrates them."""

from __future__ import annotations

from percepiano_parity.checks.training import checks_for
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.core.findings import Severity
from percepiano_parity.original_adapter import recipe as recipe_original
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
from percepiano_parity.subjects.deviations import get_deviation

QUICK = {"slicing": 100, "collate": 100, "loss": 100, "validation": 100}


def test_faithful_recipe_passes_all_three():
    results = checks_for(None, ORIGINAL_RECIPE, "han-total", SMALL_CONFIG, 7, data_counts=QUICK)
    assert [r.id for r in results] == ["recipe", "trajectory", "data"]
    assert all(r.status == "passed" for r in results), [(r.id, r.reason) for r in results]
    assert all(f.severity == Severity.INFO for r in results for f in r.findings)
    assert {"recipe", "steps", "data_ops", "label_files"} <= {t for r in results for t in r.tables}


def test_a_deviation_is_seen_by_the_recipe_and_the_trajectory():
    recorded = recipe_original.recorded_recipe()  # an already read recipe (as a bundle replays it) is accepted
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
