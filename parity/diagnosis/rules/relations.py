"""Rules for measured relations: what no catalog rule names, explained from measurements alone.

At each root-cause level the comparison tests a family of relations between the replica's value (computed
from the original's own inputs) and the original's (compare.relations); one that holds arrives as a
`forward.relation` finding with its residual, the operation and the original's line. Each kind has its own
stable id here; the texts are the measurement itself ("equals the original's with feature blocks [64:96] and
[96:128] swapped, residual 0"), and the fix is the relation's inverse, applied and verified mechanically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import Matcher, Rule, checkout_relative, downstream, level_refs


def _relation_findings(findings: Sequence[Finding], kind: str) -> list[Finding]:
    return [f for f in findings if f.kind == "forward.relation" and f.evidence.get("kind") == kind]


def relation_matcher(kind: str) -> Matcher:
    """The relation finding of this kind at the root in view, and everything downstream of that root."""
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        hits = _relation_findings(findings, kind)
        if not hits:
            return None
        best = min(hits, key=lambda f: (f.evidence.get("root_index", 0), f.evidence.get("rank", 0)))
        level = best.evidence.get("root_level")
        rivals = [f for f in findings if f.kind == "forward.relation" and f.evidence.get("root_level") == level]
        if any(f.evidence.get("rank", 0) < best.evidence.get("rank", 0) for f in rivals):
            return None  # another relation measured better at this root: its rule explains it
        others = [f for f in findings if f.kind == "forward.relation" and f is not best
                  and f.evidence.get("root_level") == level]
        return [best, *others, *_same_call_seen_by_structure(findings, best), *downstream(findings, level)]
    return match


_ACTIVATIONS = ("relu", "gelu", "tanh", "silu", "elu", "sigmoid", "softplus", "leaky_relu")


def _same_call_seen_by_structure(findings: Sequence[Finding], relation: Finding) -> list[Finding]:
    """The structure check's dropout / activation sequence finding, when the relation's operation is one of
    those: the same call, seen by the order of calls rather than measured (one mistake, one explanation)."""
    ops = " ".join(str(relation.evidence.get(k) or "") for k in ("op", "original_op")).lower()
    kinds = (["structure.dropout"] if "dropout" in ops else []) + \
        (["structure.activation"] if any(a in ops for a in _ACTIVATIONS) else [])
    return [f for f in findings if f.kind in kinds]


def relation_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    rel = next((f for f in claimed if f.kind == "forward.relation"), None)
    if rel is None:
        return {}
    ev = rel.evidence
    out: dict[str, Any] = {
        "level": ev.get("root_level"), "summary": ev.get("summary"), "residual": ev.get("residual"),
        "baseline": ev.get("baseline"), "op": (ev.get("op") or "").split(" at ")[0] or None,
        "op_site": ev.get("op_short"), "original_op": (ev.get("original_op") or "").split(" at ")[0] or None,
        "original_site": ev.get("original_short"), "relation": ev.get("kind"),
        "also_holds": ", ".join(f.evidence.get("kind", "") for f in claimed
                                if f.kind == "forward.relation" and f is not rel) or None,
    }
    details = ev.get("details") or {}
    for key in ("replica_order", "torch_order", "module", "factor", "temperature", "function", "missing", "extra",
                "padding_level", "original_fills", "replica_fills"):
        if key in details:
            out[key] = details[key]
    if "zeroed_share" in details:
        out["zeroed_share"] = details["zeroed_share"]
    return out


def relation_refs(claimed: Sequence[Finding], root: Path | None) -> list[str]:
    """The original's line of the counterpart operation when the trace saw one, else the level's code."""
    rel = next((f for f in claimed if f.kind == "forward.relation"), None)
    if rel is None:
        return []
    own = checkout_relative(rel.evidence.get("original_site"), root)
    return ([own] if own else []) + level_refs(rel.evidence.get("root_level"), root)


def _rule(rule_id: str, kind: str, title: str, original_does: str, replica_does: str, effect: str, fix: str,
          fix_action: str | None, priority: int) -> Rule:
    return Rule(id=rule_id, title=title, severity=Severity.ERROR, original_does=original_does,
                replica_does=replica_does, effect=effect, fix=fix, match=relation_matcher(kind),
                measure=relation_measure, locate=relation_refs, fix_action=fix_action, priority=priority,
                tags=("relation",))


_EFFECT = ("Every level from {level} on differs«, {levels_differing} levels»«, the logits by up to "
           "{logits_max_abs:.3g}», and so do the gradients; the relation accounts for the difference at {level} "
           "with a residual of {residual}« (without it: {baseline})».")

RULES: list[Rule] = [
    _rule("PP-REL-RANDOM-IN-EVAL", "random_in_eval", "Randomness active in eval«: {function}»",
          "In eval mode the forward is deterministic: every dropout is off (nn.Dropout follows model.eval()).",
          "{summary}«, at {op_site}».",
          "Evaluation and validation predictions are noisy, so the validation loss that selects the checkpoint, "
          "the reported R2 and every comparison with the original change from call to call.",
          "Make the operation follow the model's mode: use nn.Dropout modules, or pass training=self.training "
          "to nn.functional.dropout«({op_site})».",
          "eval_randomness_off", 3),
    _rule("PP-REL-PADDING-ROWS", "padding_rows", "A difference carried in by the padding rows of {padding_level}",
          "Leaves the rows past each item's length as its own computation makes them (here: {original_fills}), and "
          "its later computation reads them: the head's pooling masks only rows whose sum is exactly zero, after "
          "a Linear with bias, so padding rows take part in its attention.",
          "At {level}, {summary} (residual {residual}; without the change: {baseline}).",
          "Only the items whose padding rows differ change«, at {level} and after it (logits by up to "
          "{logits_max_abs:.3g})»; which items depends on batch composition, so it shifts between runs.",
          "Leave the padding rows of {padding_level} as the original does ({original_fills})«, at {op_site}».",
          "zero_padding_rows", 26),
    _rule("PP-REL-LSTM-GATE-ORDER", "lstm_gate_order",
          "LSTM gate rows read in another order«: {replica_order} instead of {torch_order}»",
          "Uses torch LSTMs, whose 4H rows of every weight and bias are the gates i, f, g, o in that order.",
          "{summary}.", _EFFECT,
          "Read the gate rows in PyTorch's order (i, f, g, o)«, in {module}», or reorder the weights' gate "
          "blocks when converting them.",
          "permute_gate_rows", 27),
    _rule("PP-REL-FEATURE-ORDER", "feature_permutation", "Features in another order at {level}",
          "Concatenates the features of {level} in its own order (see the cited line).",
          "Computes the same values in other columns: at {level}, {summary} (residual {residual}).", _EFFECT,
          "Concatenate in the original's order (the cited line); the head's weights trained on one order do not "
          "fit the other.",
          "permute_level_output", 28),
    _rule("PP-REL-BATCH-ORDER", "item_permutation", "Batch items in another order at {level}",
          "Returns every level in the batch order it was given (pack_padded_sequence with enforce_sorted=False "
          "restores it).",
          "At {level}, {summary} (residual {residual}).",
          "Each piece is paired with another piece's hidden states from {level} on, so predictions and labels "
          "no longer belong together («logits differ by up to {logits_max_abs:.3g}»).",
          "Restore the batch order after a sorted pack (index with the inverse permutation), or pack with "
          "enforce_sorted=False.",
          "reorder_level_items", 28),
    _rule("PP-REL-TIME-REVERSAL", "time_reversal", "Reversed in time at {level}",
          "Keeps every level in note order; a backward LSTM's output is aligned with the notes.",
          "At {level}, {summary} (residual {residual}).", _EFFECT,
          "Flip the reversed channels back within each item's length (or run the reverse direction on packed "
          "sequences).",
          "reverse_level_time", 28),
    _rule("PP-REL-SOFTMAX-AXIS", "normalisation_axis", "Attention softmax over another axis at {level}",
          "Normalises the attention scores over time (dim=1 of (N, L, heads)): each head's weights over the notes "
          "sum to one.",
          "{summary}«, at {op_site}».", _EFFECT,
          "Take the softmax over the time axis (dim=1)«, at {op_site}».",
          "softmax_axis", 28),
    _rule("PP-REL-SOFTMAX-TEMPERATURE", "softmax_temperature", "Attention scores scaled before the softmax at {level}",
          "Takes the softmax of the raw scores <tanh(W x + b), context> (no scaling).",
          "At {level}, {summary} (residual {residual}).", _EFFECT,
          "Remove the scaling of the scores before the softmax (a factor of 1).",
          "softmax_scale", 28),
    _rule("PP-REL-OP-ARGUMENTS", "different_arguments", "An operation called with other arguments«: {op}» at {level}",
          "Calls «{original_op} »as in the cited line.",
          "{summary}«; at {op_site}».", _EFFECT,
          "Call «{op} »with the original's arguments«, at {op_site}».",
          "patch_op", 28),
    _rule("PP-REL-MISSING-OP", "missing_op", "An operation of the original missing at {level}«: {missing}»",
          "Applies «{missing} »before «{op}» (the cited line).",
          "{summary}«; at {op_site}».", _EFFECT,
          "Apply «{missing} »as the original does«, before {op} at {op_site}».",
          "patch_op_input", 28),
    _rule("PP-REL-EXTRA-OP", "extra_op", "An operation the original does not have at {level}«: {extra}»",
          "Does not apply this operation (the next computation takes the value directly).",
          "{summary}«; at {op_site}».", _EFFECT,
          "Remove «{extra} »«at {op_site}».",
          "patch_op", 28),
    _rule("PP-REL-DIFFERENT-OP", "different_op", "Another operation at {level}«: {op} instead of {original_op}»",
          "Applies «{original_op} »at this point (the cited line).",
          "{summary}«; at {op_site}».", _EFFECT,
          "Use «{original_op} »as the original does«, at {op_site}».",
          "patch_op", 28),
]
