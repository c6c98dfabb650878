"""An explanation never prints a figure it did not measure: no "n/a", no placeholder left behind."""

from __future__ import annotations

import re

import pytest

from percepiano_parity.diagnosis.catalog import RULES
from percepiano_parity.diagnosis.rule import fill


def test_missing_figures_leave_out_their_part():
    assert fill("Module settings differ ({setting_changes})", {}) == "Module settings differ"
    assert fill("Differs (up to {a:.3g} at {b}); logits by {c:.2g}.", {"b": "note", "a": 0.5}) == \
        "Differs (up to 0.5 at note)."
    assert fill("a«, first step {s}» end", {}) == "a end"
    assert fill("a«, first step {s}» end", {"s": 3}) == "a, first step 3 end"


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_every_rule_text_fills_without_figures(rule):
    for text in (rule.title, rule.original_does, rule.replica_does, rule.effect, rule.fix):
        out = fill(text, {})
        assert "n/a" not in out and "{" not in out and not re.search(r"<[a-z_]+>", out), (rule.id, out)
        assert out.strip(), (rule.id, text)
