"""Verified fixes: applied to a copy of the candidate, re-run, and reported; the user's model is untouched.

The audits are the self-test's, shared through tests/audit_cache.py (one audit per deviation per session)."""

from __future__ import annotations

import audit_cache
import pytest
import torch
from tiers import sweep

from percepiano_parity.commands.selftest import MODEL_SEED
from percepiano_parity.subjects.deviations import get_deviation


@pytest.mark.parametrize("name", sweep(["layernorm-han-output", "attention-head-projection",
                                        "final-attention-no-context", "beat-lstm-1-layer"],
                                       fast={"layernorm-han-output"}))
def test_fix_is_verified_and_explains_the_difference(name: str) -> None:
    dev = get_deviation(name)
    run = audit_cache.deviation_audit(name)
    first = run.report.explanations[0]
    assert first.id == dev.expected_explanation
    assert first.fix_verified is True
    assert first.effect_measured["share_of_logits_difference_explained"] > 0.99
    # the fix was tried on a copy: the audited model still has the weights (and parameters) it was built with
    after = run.candidate.model.state_dict()
    built = dev.build_candidate(run.settings.config, seed=MODEL_SEED).state_dict()
    assert list(after) == list(built) and all(torch.equal(after[k], built[k]) for k in built)
