"""Rules for numbers and inputs: reduced precision, and input features of another width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.compare.structure import level_of
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.match import (
    about_modules,
    downstream,
    module_of,
    root_of,
)
from percepiano_parity.diagnosis.rule import Rule, SourceRef, having


def _precision(findings: Sequence[Finding]) -> list[Finding] | None:
    lowered = having(findings, "precision.activations") + having(
        findings, "recipe.mismatch", where=lambda f: f.location == "precision")
    if not lowered:
        return None
    # relation tests at a level of lowered precision measure the rounding, not a second cause
    relations = [f for f in findings if f.kind.startswith("forward.relation") or f.kind == "forward.root"]
    return lowered + having(findings, "precision.parameters") + downstream(findings, None) + relations


def _precision_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "precision.activations"):
        return {"dtypes": ", ".join(f.evidence.get("candidate_dtypes", [])), "lowered_levels": f.metrics.get("levels")}
    for f in having(claimed, "recipe.mismatch"):
        return {"dtypes": str(f.evidence.get("replica"))}
    return {}


def _embedder_width(findings: Sequence[Finding]) -> list[Finding] | None:
    def at_embedding(f: Finding) -> bool:
        return level_of(module_of(f) + ".") == "embedding"

    changed = having(findings, "structure.shape", where=lambda f: at_embedding(f) and len(
        f.evidence.get("reference_shape", [])) == 2 and f.evidence["reference_shape"][1] != f.evidence.get(
        "candidate_shape", [0, 0])[1]) + having(
        findings, "structure.setting", where=lambda f: at_embedding(f) and "in_features" in f.evidence.get("changed", {}))
    if not changed:
        return None
    modules = {module_of(f) for f in changed}
    return about_modules(findings, modules) + downstream(findings, root_of(findings))


def _embedder_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "structure.shape"):
        return {"original_features": f.evidence["reference_shape"][1], "replica_features": f.evidence["candidate_shape"][1]}
    for f in having(claimed, "structure.setting"):
        old, new = f.evidence["changed"]["in_features"]
        return {"original_features": old, "replica_features": new}
    return {}


RULES: list[Rule] = [
    # ---- precision and inputs ----------------------------------------------------------------------------
    Rule(
        id="PP-PRECISION", title="Reduced precision (autocast) instead of float32", whole_model=True,
        severity=Severity.ERROR,
        original_does="Trains and evaluates in float32: no autocast and no half() anywhere in train_m2pf.py.",
        replica_does="Runs levels in a lower precision ({dtypes}).",
        effect="Rounding of ~1e-3 relative per level; LSTM recurrences and softmaxes amplify it (logits move by "
               "up to {logits_max_abs:.3g} here); gradients are noisier, and small learning rates (2.5e-5) can "
               "stall in bf16.",
        fix="Run in float32: drop torch.autocast / .half() / bf16 mixed precision.",
        match=_precision, measure=_precision_measure, refs=(SourceRef("train_m2pf.py", r"def train_step"),),
        fix_action="float32", priority=10),
    Rule(
        id="PP-INPUT-FEATURES", title="Input features differ: {replica_features} columns instead of {original_features}",
        severity=Severity.ERROR,
        original_does="Takes the input width from the training pickles (79 columns: VirtuosoNet's 78 score "
                      "features with section_tempo added as the 6th key), not from the yml's 78; MixEmbedder "
                      "applies one Linear to all of them.",
        replica_does="Feeds {replica_features} feature columns to the note embedder; a missing column shifts "
                     "every later column's meaning.",
        effect="The embedding differs for every note, and so does every level after it (logits by up to "
               "{logits_max_abs:.3g}); weights trained on one layout are meaningless on the other.",
        fix="Use the original's 79-column layout (replica.features.FEATURE_LAYOUT), including section_tempo.",
        match=_embedder_width, measure=_embedder_measure,
        refs=(SourceRef("utils.py", r"def get_input_size_from_training_data"),
              SourceRef("note_embedder.py", r"self\.fc = nn\.Linear\(self\.input_size"),
              SourceRef("pyScoreParser/data_for_training.py", r"^VNET_INPUT_KEYS")),
        priority=12),
]
