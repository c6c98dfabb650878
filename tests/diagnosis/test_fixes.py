"""Verified fixes: applied to a copy of the candidate, re-run, and reported; the user's model is untouched.

The audits of the verified fixes are the self-test's, shared through tests/audit_cache.py (one audit per
deviation per session)."""

from __future__ import annotations

import audit_cache
import pytest
import torch
from tiers import sweep

from percepiano_parity import replica
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.commands.audit import AuditSettings, audit
from percepiano_parity.subjects.deviations import get_deviation
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo


@pytest.mark.parametrize("name", sweep(["layernorm-han-output", "attention-head-projection",
                                        "final-attention-no-context", "beat-lstm-1-layer"],
                                       fast={"layernorm-han-output"}))
def test_fix_is_verified_and_explains_the_difference(name: str) -> None:
    dev = get_deviation(name)
    first = audit_cache.deviation_audit(name).report.explanations[0]
    assert first.id == dev.expected_explanation
    assert first.fix_verified is True
    assert first.effect_measured["share_of_logits_difference_explained"] > 0.99


def test_the_users_model_is_untouched_by_the_audit_and_its_fixes() -> None:
    """A deviation whose own weights differ from the reference's (one beat LSTM layer: another construction
    order): the audit compares a private copy holding the reference's weights and tries the fix on a copy."""
    dev = get_deviation("beat-lstm-1-layer")
    config = replica.SMALL_CONFIG
    batches = generate_batches(1, seed=3, batch_size=3, config=config, max_notes=24, include_edge_cases=False)
    user_model = dev.build_candidate(config, seed=7)
    before = {k: v.clone() for k, v in user_model.state_dict().items()}
    reference = replica.build(dev.variant, config, seed=7)
    assert any(not torch.equal(v, reference.state_dict()[k]) for k, v in before.items() if k in reference.state_dict())
    report, _ = audit(ReplicaSubject(reference, SubjectInfo("original", "t", dev.variant)),
                      ReplicaSubject(user_model, SubjectInfo("replica", "t", dev.variant)), batches,
                      AuditSettings(variant=dev.variant, config=config))
    assert report.explanations[0].fix_verified is True
    after = user_model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
