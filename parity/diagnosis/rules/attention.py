"""Rules for the attentions: a changed projection, missing context vectors, and where the pooling puts its
attention (padding masked where the original attends to it, or not masked where the original masks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import (
    Rule,
    SourceRef,
    about_modules,
    downstream,
    final_padding_mass,
    having,
    pattern_measure,
    root_of,
    semantic,
    waivable,
)

PAD_EPS = 1e-6  # attention mass on padding below this is "none"


def _projected_attentions(findings: Sequence[Finding]) -> set[str]:
    """ContextAttention modules whose attention_net projects to fewer outputs than its input size."""
    out = set()
    for f in having(findings, "structure.shape", where=lambda f: f.location.endswith("attention_net.weight")):
        rs, cs = f.evidence.get("reference_shape", []), f.evidence.get("candidate_shape", [])
        if len(rs) == 2 and len(cs) == 2 and rs[0] == rs[1] and cs[0] < rs[0]:
            out.add(f.location.removesuffix(".attention_net.weight"))
    return out


def _attention_projection(findings: Sequence[Finding]) -> list[Finding] | None:
    modules = _projected_attentions(findings)
    if not modules:
        return None
    return about_modules(findings, modules) + downstream(findings, root_of(findings)) + having(
        findings, "attention.head_count")


def _projection_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    modules = _projected_attentions(claimed)
    outs = sorted({f.evidence["candidate_shape"][0] for f in having(claimed, "structure.shape")
                   if f.location.endswith("attention_net.weight")})
    return {"attentions": len(modules), "attention_modules": ", ".join(sorted(modules)),
            "projection_outputs": ", ".join(str(o) for o in outs)}


def _missing_context(findings: Sequence[Finding]) -> set[str]:
    return {f.location.removesuffix(".context_vector") for f in having(
        findings, "structure.missing_parameter",
        where=lambda f: f.location.endswith("context_vector") and f.evidence.get("used_by_original", True))}


def _attention_no_context(findings: Sequence[Finding]) -> list[Finding] | None:
    modules = _missing_context(findings)
    if not modules:
        return None
    return about_modules(findings, modules) + downstream(findings, root_of(findings)) + having(
        findings, "attention.head_count")


def _no_context_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {"attention_modules": ", ".join(sorted(_missing_context(claimed)))}
    for f in having(claimed, "attention.head_count"):
        out["original_heads"] = f.metrics.get("reference_heads")
        out["replica_heads"] = f.metrics.get("candidate_heads")
    return out


def _original_attends_padding(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    mass = final_padding_mass(findings)
    return mass is not None and mass[0] > PAD_EPS and mass[1] <= PAD_EPS


def _candidate_attends_padding(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    mass = final_padding_mass(findings)
    return mass is not None and mass[1] > PAD_EPS and mass[0] <= PAD_EPS


RULES: list[Rule] = [
    # ---- attention -------------------------------------------------------------------------------------------
    Rule(
        id="PP-ATTENTION-PROJECTION",
        title="Context attention projects Linear(size, heads) instead of Linear(size, size) + context vectors",
        severity=Severity.ERROR,
        original_does="ContextAttention projects with Linear(size, size), takes tanh, splits the result into heads "
                      "and scores each head by a dot product with its learned context vector (H, size/H, 1), "
                      "drawn U(-1, 1) right after the Linear.",
        replica_does="Scores each head directly with Linear(size, {projection_outputs}) and has no context vectors "
                     "({attentions} attention modules: {attention_modules}).",
        effect="Different scores in every pooling from the first attention on (root level {root_level}); fewer "
               "parameters, a different initialisation order for everything built after it, and logits off "
               "by up to {logits_max_abs:.3g}.",
        fix="Implement ContextAttention as the original does: Linear(size, size), tanh, per-head dot product with "
            "context vectors.",
        match=_attention_projection, measure=_projection_measure,
        refs=(SourceRef("module.py", r"class ContextAttention"),
              SourceRef("module.py", r"self\.context_vector = torch\.nn\.Parameter"),
              SourceRef("module.py", r"similarity = torch\.bmm\(attention_split")),
        fix_action="restore_module", priority=15),
    Rule(
        id="PP-ATTENTION-NO-CONTEXT", title="An attention without context vectors",
        severity=Severity.ERROR,
        original_does="Every pooling, the final one included, is a ContextAttention with {original_heads} heads, "
                      "each scored by a learned context vector.",
        replica_does="Pools without context vectors ({attention_modules}): softmax over time of a projection, "
                     "{replica_heads} 'heads'.",
        effect="The pooled vector and everything after it differ (logits by up to {logits_max_abs:.3g}); the "
               "attention's entropy and its number of heads change.",
        fix="Use ContextAttention(size, 8) for the pooling: tanh(Linear(size, size)) split into heads, dot product "
            "with context vectors, softmax over time per head.",
        match=_attention_no_context, measure=_no_context_measure,
        refs=(SourceRef("module.py", r"self\.context_vector = torch\.nn\.Parameter"),
              SourceRef("model_m2pf.py", r"self\.performance_final_attention = ContextAttention")),
        fix_action="restore_module", priority=16),
    Rule(
        id="PP-PADDING-MASK-QUIRK", title="Padding masked in the final pooling (the original attends to it)",
        severity=Severity.WARNING, quirk=True,
        original_does="ContextAttention masks a position only when its row sums to exactly zero. The head's input "
                      "comes out of a biased Linear (the contractor), so padded rows equal the bias and are not "
                      "masked: the softmax covers padding and a prediction depends on the longest item in its "
                      "batch. This is the original's quirk.",
        replica_does="Masks padded positions by length: no attention mass on padding, where the original puts up "
                     "to {original_padding_mass:.2f} of a head's weight on it.",
        effect="Changes the pooled vector of every item shorter than the longest in its batch (logits by up to "
               "{logits_max_abs:.3g}, attention entropy by {entropy_delta:+.3f} nats); makes predictions "
               "independent of batch composition, which the original's are not. " + waivable("PP-PADDING-MASK-QUIRK"),
        fix="To reproduce the paper, mask only rows whose sum is exactly zero (similarity[x.sum(-1) == 0] = -1e10); "
            "to keep the correction, waive PP-PADDING-MASK-QUIRK with a reason.",
        match=semantic(("pooled", "contracted"), _original_attends_padding), measure=pattern_measure,
        refs=(SourceRef("module.py", r"similarity\[x\.sum\(-1\)==0\] = -1e10"),
              SourceRef("model_m2pf.py", r"self\.performance_contractor = nn\.Linear")),
        fix_action="restore_semantics", priority=34),
    Rule(
        id="PP-ATTENTION-MASK", title="Attention softmax over padded positions (no mask)",
        severity=Severity.ERROR,
        original_does="ContextAttention sets the score of every all-zero row to -1e10 before the softmax; for "
                      "the beat- and measure-level heads the input is a raw LSTM output padded with zeros, so "
                      "padding gets no weight.",
        replica_does="Takes the softmax over padded positions as well: up to {replica_padding_mass:.2f} of a "
                     "head's weight lands on padding the original masks.",
        effect="Items with fewer nodes than the longest in their batch get a diluted pooled vector (logits by up "
               "to {logits_max_abs:.3g}, attention entropy by {entropy_delta:+.3f} nats); predictions depend on "
               "batch composition.",
        fix="Mask all-zero rows before the softmax: similarity[x.sum(-1) == 0] = -1e10.",
        match=semantic(("pooled", "contracted", "beat_nodes", "measure_nodes"), _candidate_attends_padding),
        measure=pattern_measure,
        refs=(SourceRef("module.py", r"similarity\[x\.sum\(-1\)==0\] = -1e10"),),
        fix_action="restore_semantics", priority=35),
]
