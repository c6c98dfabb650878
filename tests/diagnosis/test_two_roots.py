"""Two independent mistakes are two explanations; what follows from a mistake is its evidence, not another.

The replica here both spans beats back to notes over the true note count and masks padding in the final
pooling: each is a root of its own (its level differs on the original's own inputs), so each gets its own
explanation, and the pooling's padding mass is evidence of the second, not of the first.
"""

from __future__ import annotations

from percepiano_parity.batches.selftest import selftest_batches
from percepiano_parity.commands.audit import AuditSettings, audit
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo


def _subject(name: str, **semantics: object) -> ReplicaSubject:
    model = build("han-total", SMALL_CONFIG, seed=7)
    if semantics:
        model.semantics = model.semantics.with_(**semantics)
    return ReplicaSubject(model, SubjectInfo(name, "bundled-replica", "han-total"))


def test_two_independent_mistakes_get_two_explanations():
    reference = _subject("original")
    candidate = _subject("replica", span_count="true_length", head_mask="length")
    batches = selftest_batches(SMALL_CONFIG, 0)[:3]
    report, state = audit(reference, candidate, batches, AuditSettings("han-total", SMALL_CONFIG, seed=0),
                          verify_fixes=False)
    roots = [r["level"] for r in state.relations]
    assert roots[:1] == ["beat_spanned"] and "pooled" in roots
    by_id = {e.id: e for e in report.explanations}
    assert {"PP-SPAN-COUNT-QUIRK", "PP-PADDING-MASK-QUIRK"} <= set(by_id)
    assert by_id["PP-SPAN-COUNT-QUIRK"].root_level == "beat_spanned"
    assert by_id["PP-PADDING-MASK-QUIRK"].root_level == "pooled"
    padding = [f.key for f in report.findings if f.location == "attn.final"]
    assert padding and not set(padding) & set(by_id["PP-SPAN-COUNT-QUIRK"].evidence)
