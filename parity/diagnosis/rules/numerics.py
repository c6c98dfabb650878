"""Rules for numbers and inputs: a forward that is not finite, reduced precision, input features of
another width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.batches.features import column_plan
from percepiano_parity.compare.structure import level_of
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import (
    Rule,
    SourceRef,
    about_modules,
    downstream,
    having,
    level_refs,
    module_of,
    root_of,
)

# ----------------------------------------------------------------------------------------------------------
# A subject whose forward (or loss) is not finite: one explanation instead of NaN in every figure.
#
# Tried before every other rule: NaN or infinite values make every later comparison meaningless, so the
# explanation claims the `forward.non_finite` finding and every finding whose figures are not finite (the
# levels, loss and gradients that inherit them). Findings with finite figures (a separate deviation upstream)
# stay for the other rules.

CONSEQUENCE_CHECKS = ("forward", "backward", "attention", "precision")


def _not_finite(finding: Finding) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for v in finding.metrics.values())


def _non_finite(findings: Sequence[Finding]) -> list[Finding] | None:
    hits = having(findings, "forward.non_finite")
    if not hits:
        return None
    levels = {f.location for f in hits}
    consequences = [f for f in findings if f.kind != "forward.non_finite" and f.check in CONSEQUENCE_CHECKS
                    and (_not_finite(f) or (f.kind.startswith("forward.first_divergent")
                                            and (f.evidence.get("root_level") or f.location) in levels))]
    return hits + consequences


def _measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    first = having(claimed, "forward.non_finite")[0]
    ev = first.evidence
    module = ev.get("module")
    origin = "an operation the audit could not locate (no module of the model returned it)"
    if module is not None:
        where = f"module {module}" if module else "the model's own forward"
        origin = f"{where} ({ev.get('module_type', '?')})"
        if ev.get("op"):
            origin += f", operation {ev['op']}" + (f" at {ev['at']}" if ev.get("at") else "")
    return {"subject": ev.get("subject", "replica"), "what": ev.get("what", "NaN"), "level": first.location,
            "part": "loss" if first.location == "loss" else "output", "origin": origin,
            "batch": ev.get("batch"), "bad": first.metrics.get("non_finite"), "numel": first.metrics.get("numel")}


NON_FINITE_RULES: list[Rule] = [
    Rule(
        id="PP-NON-FINITE", title="The {subject}'s {part} is not finite ({what} from level {level})",
        severity=Severity.ERROR,
        original_does="Finite activations, loss and gradients on every batch of the audit.",
        replica_does="The {subject} produces {what} values at level {level} ({bad} of {numel} elements on batch "
                     "{batch}); first produced by {origin}.",
        effect="Every later level, the loss and the gradients are {what} too, so no other figure of this run can "
               "be compared; training would diverge at once.",
        fix="Look at {origin}: a division by zero, the log or square root of a value that is not positive, an "
            "overflow, or a weight that is already NaN. Fix it there, then run the audit again.",
        match=_non_finite, measure=_measure, priority=1, tags=("numerics",)),
]


# ----------------------------------------------------------------------------------------------------------
# A batch one side raises on and the other does not (checks.forward raise findings): the crash is the deviation.
# Each rule claims its findings only: the batches both sides ran on are compared and explained as usual.


def _raise_measure(kind: str, side: str) -> Any:
    def measure(claimed: Sequence[Finding]) -> dict[str, Any]:
        hits = having(claimed, kind)
        if not hits:
            return {}
        first = hits[0].evidence
        failure = first.get(side) or {}
        words = [f"batch {f.evidence['batch'] + 1} ({', '.join(f.evidence.get('tags') or []) or 'generated'}; "
                 f"lengths {', '.join(map(str, (f.evidence.get('lengths') or [])[:4]))})" for f in hits[:4]]
        out: dict[str, Any] = {
            "raise_count": len(hits), "raise_batches": "; ".join(words) + (" ..." if len(hits) > 4 else ""),
            "exception": failure.get("type"), "message": failure.get("message"),
            "where": (failure.get("where") or "").split(", in ")[0] or None,
            "kind": failure.get("kind"), "batch_word": "batch" if len(hits) == 1 else "batches"}
        clamps = [c for c in first.get("candidate_clamps") or [] if c.get("integer")]
        if clamps:
            out.update(clamp_op=clamps[0]["op"], clamp_where=clamps[0]["where"].split(", in ")[0] or None,
                       clamp_changed=clamps[0]["changed"])
        return out
    return measure


def _original_raise_site(claimed: Sequence[Finding], root: Path | None) -> list[str]:
    """The original's line that raised, when it lies in the checkout (cited like the rules' source lines)."""
    out = []
    for f in having(claimed, "forward.original_raises"):
        where = ((f.evidence.get("reference") or {}).get("where") or "").split(", in ")[0]
        if where and root is not None and (Path(root) / where.rsplit(":", 1)[0]).is_file() and where not in out:
            out.append(where)
    return out


RAISE_RULES: list[Rule] = [
    Rule(
        id="PP-RAISES", title="The replica raises {exception} on {raise_count} {batch_word} the original runs",
        severity=Severity.ERROR,
        original_does="Runs {raise_batches} and returns logits.",
        replica_does="Raises {exception}: {message} (at {where}).",
        effect="A training or evaluation run that meets such a batch stops where the original's goes on; the "
               "{batch_word} could not be compared (the audit compared every other batch).",
        fix="Look at {where}: the inputs of the batch (the forward check lists its items and lengths) are ones "
            "the original takes; make that code take them too.",
        match=lambda findings: having(findings, "forward.replica_raises") or None,
        measure=_raise_measure("forward.replica_raises", "candidate"), priority=2, tags=("raises",)),
    Rule(
        id="PP-RAISES-ORIGINAL-ONLY",
        title="The original raises {kind} on {raise_count} {batch_word} where the replica returns values",
        severity=Severity.WARNING,
        original_does="Raises {exception} on {raise_batches} ({message}, at {where}).",
        replica_does="Returns values there«: it clamps ({clamp_op} at {clamp_where} changed {clamp_changed} index "
                     "values on the first of them)».",
        effect="The replica computes outputs for inputs the original cannot take, so whatever it learns or "
               "predicts on them has no counterpart in the original; on inputs the original takes nothing changes.",
        fix="Raise where the original raises (or keep such inputs from reaching the model); to keep the more "
            "permissive behaviour on purpose, waive PP-RAISES-ORIGINAL-ONLY with a reason.",
        match=lambda findings: having(findings, "forward.original_raises") or None,
        measure=_raise_measure("forward.original_raises", "reference"), locate=_original_raise_site, priority=3,
        tags=("raises",)),
]


# ----------------------------------------------------------------------------------------------------------
# An input computed outside the levels (checks.forward `forward.derived_input`): the first divergent level agrees on
# the original's inputs, and putting the original's value of one derived input in its place makes it agree in the
# free run too. The explanation is that measurement; it claims the level and everything downstream.


def _derived_input(findings: Sequence[Finding]) -> list[Finding] | None:
    hits = having(findings, "forward.derived_input")
    if not hits:
        return None
    return hits + downstream(findings, hits[0].evidence.get("root_level"))


def _derived_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    hits = having(claimed, "forward.derived_input")
    if not hits:
        return {}
    ev = hits[0].evidence
    hint = {"offset": f"without the {ev.get('offset', 0):+d}" if ev.get("offset") else None,
            "inverted": "not inverted", "item_offsets": "for every item alike"}.get(str(ev.get("relation")))
    return {"level": ev.get("root_level"), "how": ev.get("how"), "input_words": ev.get("words"), "op": ev.get("op"),
            "where": ev.get("where_short") or ev.get("where"), "agree_words": ev.get("agree_words"),
            "fix_hint": hint}


def _derived_refs(claimed: Sequence[Finding], root: Path | None) -> list[str]:
    hits = having(claimed, "forward.derived_input")
    return level_refs(hits[0].evidence.get("root_level"), root) if hits else []


DERIVED_INPUT_RULES: list[Rule] = [
    Rule(
        id="PP-DERIVED-INPUT", title="An input computed outside the levels differs: {how}",
        severity=Severity.ERROR,
        original_does="Computes {level} from the batch's own {input_words}, as the tool passes them to the replica "
                      "too.",
        replica_does="Derives {input_words} itself ({op} at {where}): {how}. With the original's values put in their "
                     "place, {agree_words}; on the original's inputs alone (teacher forced) {level} already agreed.",
        effect="{level} differs although the code of the level itself is right, and so does every level after it"
               "«; the logits by up to {logits_max_abs:.3g}».",
        fix="Derive {input_words} as the original has them, at {where}«: {fix_hint}».",
        match=_derived_input, measure=_derived_measure, locate=_derived_refs, priority=5, tags=("inputs",)),
]


# ----------------------------------------------------------------------------------------------------------
# Rules for numbers and inputs: reduced precision, and input features of another width.


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
    out: dict[str, Any] = {}
    for f in having(claimed, "structure.shape"):
        out = {"original_features": f.evidence["reference_shape"][1], "replica_features": f.evidence["candidate_shape"][1]}
        columns = f.evidence.get("input_columns") or {}
        break
    else:
        columns = {}
        for f in having(claimed, "structure.setting"):
            old, new = f.evidence["changed"]["in_features"]
            out = {"original_features": old, "replica_features": new}
            break
    if not out:
        return {}
    if not columns and isinstance(out["original_features"], int) and isinstance(out["replica_features"], int):
        plan = column_plan(out["original_features"], out["replica_features"])
        columns = plan.to_dict() if plan.by == "names" else {}  # named by the layouts; positions are a guess
    out.update(missing_columns=", ".join(columns.get("missing") or []) or None,
               extra_columns=", ".join(columns.get("extra") or []) or None,
               matched_by={"names": "key name", "position": "position"}.get(str(columns.get("by")))
               if columns.get("filled") else None,
               shared_columns=columns.get("shared") if columns.get("filled") else None,
               zeroed_note=None if not columns.get("filled") else
               "the columns it lacks set to 0 on both sides" if columns.get("zeroed") else
               "the columns it lacks still feed the original" if columns.get("missing") else
               "its extra columns filled with zeros",
               shift_note="a missing column shifts every later column's meaning" if columns.get("by") != "names"
               or not columns.get("filled") else None)
    return out


PRECISION_RULES: list[Rule] = [
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
        replica_does="Builds its input projection for {replica_features} feature columns«, matched to the "
                     "original's by {matched_by}»«: it lacks {missing_columns}»«; it has {extra_columns}, which the "
                     "original's input does not hold»«; fed by position, {shift_note}».",
        effect="Weights trained on one layout are meaningless on the other«; the logits differ by up to "
               "{logits_max_abs:.3g}»«. The rest of the model was compared on the {shared_columns} columns both "
               "have ({zeroed_note})».",
        fix="Build the input projection for the original's {original_features} columns, in its layout "
            "(batches.features: the original's key lists)«, including {missing_columns}»«, without "
            "{extra_columns}».",
        match=_embedder_width, measure=_embedder_measure,
        refs=(SourceRef("utils.py", r"def get_input_size_from_training_data"),
              SourceRef("note_embedder.py", r"self\.fc = nn\.Linear\(self\.input_size"),
              SourceRef("pyScoreParser/data_for_training.py", r"^VNET_INPUT_KEYS")),
        priority=12),
]
