"""Rules for deviations the structure shows: another variant, an added normalisation, the head's width, the
beat LSTM's shape, dropout settings, a custom initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.compare.structure import level_of
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import (
    Rule,
    SourceRef,
    about_modules,
    downstream,
    having,
    module_of,
    root_of,
)

VARIANT_MODULES = {
    "note_contractor": "bilstm-note / single-7layer", "note_attention": "bilstm-note / single-7layer",
    "voice_contractor": "han-voice", "voice_attention": "han-voice", "beat_attention": "han-beat",
    "measure_attention": "han-measure", "performance_contractor": "han-total",
    "performance_final_attention": "han-total", "lstm": "single-7layer", "score_encoder": "a HAN variant",
}


def _variant_modules(findings: Sequence[Finding]) -> tuple[set[str], set[str]]:
    """Top-level modules only the original has, and only the replica has. A module of one variant paired by its
    shapes with a module of another (the original's note_contractor with a replica's performance_contractor)
    counts as one of each: the pairing is by computation, the variant is by which modules exist."""
    missing = {module_of(f).split(".")[0] for f in having(findings, "structure.missing_parameter")}
    extra = {module_of(f).split(".")[0] for f in having(findings, "structure.extra_module")}
    for f in having(findings, "structure.shape") + having(findings, "structure.setting"):
        other = str(f.evidence.get("candidate_name") or f.evidence.get("candidate_module") or "")
        ref_top, cand_top = module_of(f).split(".")[0], other.split(".")[0]
        if ref_top != cand_top and ref_top in VARIANT_MODULES and cand_top in VARIANT_MODULES and \
                VARIANT_MODULES[ref_top] != VARIANT_MODULES[cand_top]:
            missing.add(ref_top)
            extra.add(cand_top)
    return missing, extra


def _wrong_variant(findings: Sequence[Finding]) -> list[Finding] | None:
    missing, extra = _variant_modules(findings)
    only_reference = (missing - extra) & set(VARIANT_MODULES)
    only_candidate = (extra - missing) & set(VARIANT_MODULES)
    if not (only_reference and only_candidate):
        return None
    claimed = [f for f in findings if f.check in ("structure", "init", "forward", "backward", "attention")]
    return claimed


def _wrong_variant_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    missing, extra = _variant_modules(claimed)
    ref = sorted((missing - extra) & set(VARIANT_MODULES))
    cand = sorted((extra - missing) & set(VARIANT_MODULES))
    return {"reference_modules": ", ".join(ref), "candidate_modules": ", ".join(cand),
            "candidate_looks_like": ", ".join(sorted({VARIANT_MODULES[m] for m in cand})),
            "trained_only_by_candidate": len([f for f in having(claimed, "backward.grad_presence")
                                              if f.evidence.get("side") == "candidate"])}


_NORM_TYPES = ("LayerNorm", "BatchNorm1d", "BatchNorm2d", "RMSNorm", "GroupNorm", "InstanceNorm1d")


def _extra_normalisation(findings: Sequence[Finding]) -> list[Finding] | None:
    norms = having(findings, "structure.extra_module", where=lambda f: f.evidence.get("module_type") in _NORM_TYPES)
    if not norms:
        return None
    return norms + about_modules(findings, {f.location for f in norms}) + downstream(findings, root_of(findings))


def _norm_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    norms = having(claimed, "structure.extra_module")
    return {"modules": ", ".join(sorted({f"{f.evidence.get('module_type')} at {f.location}" for f in norms}))}


def _out_fc_changed(findings: Sequence[Finding]) -> list[Finding]:
    def head(f: Finding) -> bool:
        return module_of(f).startswith("out_fc.")
    return [f for f in findings if f.check == "structure" and f.kind in (
        "structure.shape", "structure.setting", "structure.extra_module", "structure.missing_parameter") and head(f)]


def _head_width(findings: Sequence[Finding]) -> list[Finding] | None:
    changed = _out_fc_changed(findings)
    if not any(f.kind in ("structure.shape", "structure.setting") for f in changed):
        return None
    return changed + about_modules(findings, {"out_fc"}) + downstream(findings, root_of(findings))


def _head_width_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "structure.shape", where=lambda f: f.location == "out_fc.1.weight"):
        return {"original_hidden": f.evidence["reference_shape"][0], "replica_hidden": f.evidence["candidate_shape"][0]}
    for f in having(claimed, "structure.extra_module", where=lambda f: f.location == "out_fc.1"):
        return {"replica_hidden": f.evidence.get("module_settings", {}).get("out_features")}
    return {}


_LSTM_SHAPE_KEYS = {"num_layers", "bidirectional", "hidden_size", "input_size", "proj_size"}


def module_changes(findings: Sequence[Finding]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Module -> (reference settings, candidate settings), from setting findings, or from the missing-parameter
    and extra-module findings of a module whose parameters could not be paired at all."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for f in having(findings, "structure.setting"):
        out[f.location] = (dict(f.evidence.get("reference", {})), dict(f.evidence.get("candidate", {})))
    reference = {module_of(f): f.evidence.get("module_settings", {})
                 for f in having(findings, "structure.missing_parameter")}
    for f in having(findings, "structure.extra_module"):
        if f.location in reference and f.location not in out:
            out[f.location] = (dict(reference[f.location]), dict(f.evidence.get("module_settings", {})))
    return out


def _changed_keys(ref: dict[str, Any], cand: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (ref.get(k), cand.get(k)) for k in sorted(set(ref) | set(cand)) if ref.get(k) != cand.get(k)}


def _beat_lstm_modules(findings: Sequence[Finding]) -> dict[str, dict[str, tuple[Any, Any]]]:
    out = {}
    for module, (ref, cand) in module_changes(findings).items():
        changed = _changed_keys(ref, cand)
        if ref.get("type") in ("LSTM", "GRU", "RNN") and level_of(module + ".") == "beat" and set(
                changed) & _LSTM_SHAPE_KEYS:
            out[module] = changed
    return out


def _beat_lstm(findings: Sequence[Finding]) -> list[Finding] | None:
    modules = _beat_lstm_modules(findings)
    if not modules:
        return None
    return about_modules(findings, set(modules)) + downstream(findings, root_of(findings))


def _beat_lstm_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    changes = [f"{k} {old} -> {new}" for changed in _beat_lstm_modules(claimed).values()
               for k, (old, new) in changed.items()]
    return {"changes": ", ".join(changes)}


def _dropout_findings(findings: Sequence[Finding]) -> list[Finding]:
    settings = having(findings, "structure.setting", where=lambda f: bool(f.evidence.get("changed")) and set(
        f.evidence["changed"]) <= {"dropout", "p"})
    return settings + having(findings, "structure.dropout")


def _dropout(findings: Sequence[Finding]) -> list[Finding] | None:
    found = _dropout_findings(findings)
    return found or None


def _dropout_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    changes = []
    for f in having(claimed, "structure.setting"):
        for k, (old, new) in sorted(f.evidence.get("changed", {}).items()):
            changes.append(f"{f.location}.{k} {old} -> {new}")
    for f in having(claimed, "structure.dropout"):
        ref = [m.get("p") for m in f.evidence.get("reference", [])]
        cand = [m.get("p") for m in f.evidence.get("candidate", [])]
        changes.append(f"dropout modules p={ref} -> p={cand}")
    return {"changes": "; ".join(changes)}


def _custom_init(findings: Sequence[Finding]) -> list[Finding] | None:
    found = having(findings, "init.distribution")
    return found or None


def _init_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    ratios = [f.metrics.get("std_ratio") for f in claimed if f.metrics.get("std_ratio") is not None]
    worst = max(ratios, key=lambda r: max(r, 1 / r) if r else float("inf"), default=None)
    return {"tensors": len(claimed), "worst_std_ratio": worst,
            "parameters": ", ".join(sorted(f.location for f in claimed)[:6])}


RULES: list[Rule] = [
    # ---- the wrong model altogether --------------------------------------------------------------------
    Rule(
        id="PP-WRONG-BASELINE", title="A different PercePiano variant than the one compared", whole_model=True,
        severity=Severity.ERROR,
        original_does="Builds the compared variant's own modules ({reference_modules}); __main__ picks the class "
                      "from --multi_level / --ablation, and the published baseline is `--multi_level note` (the "
                      "2-layer note Bi-LSTM with note_contractor + note_attention), not the 7-layer "
                      "VirtuosoNetSingle and not the HAN with parts switched off.",
        replica_does="Has another variant's modules ({candidate_modules}; looks like {candidate_looks_like}) and "
                     "lacks the compared variant's; {trained_only_by_candidate} parameters get gradients only in "
                     "the replica.",
        effect="Every number differs from the first divergent level on (logits by up to {logits_max_abs:.3g}); a "
               "baseline built this way is not the paper's baseline, so comparisons against it are meaningless.",
        fix="Build the variant the original's script trains (see `parity variants`): for the Bi-LSTM baseline "
            "`--multi_level note`, i.e. replica variant bilstm-note.",
        match=_wrong_variant, measure=_wrong_variant_measure,
        refs=(SourceRef("__main__.py", r"if args\.multi_level:"),
              SourceRef("model_m2pf.py", r'if "note" in self\.multi_level'),
              SourceRef("../scripts/composition4fold/0_run_comp_multilevel_note.sh", r"multi_levels=")),
        priority=5),
    # ---- added / resized modules ---------------------------------------------------------------------------
    Rule(
        id="PP-EXTRA-NORM", title="A normalisation layer the original does not have",
        severity=Severity.ERROR,
        original_does="No normalisation anywhere in the HAN: raw LSTM outputs, contractors and attentions.",
        replica_does="Adds {modules}, which rescales every feature of its level.",
        effect="Changes every level from {root_level} on (logits by up to {logits_max_abs:.3g}) and the "
               "gradients of everything before it; shifts the attention entropy of the pooling and the scale the "
               "head sees, so training dynamics differ.",
        fix="Remove the normalisation module.",
        match=_extra_normalisation, measure=_norm_measure,
        refs=(SourceRef("model_m2pf.py", r"class VirtuosoNetMultiLevel"),
              SourceRef("encoder_score.py", r"class HanEncoder")),
        fix_action="remove_module", priority=20),
    Rule(
        id="PP-HEAD-WIDTH", title="Prediction head width differs ({replica_hidden} hidden units instead of "
                                  "{original_hidden})",
        severity=Severity.ERROR,
        original_does="out_fc = Dropout(0.2), Linear(512, 512), GELU, Dropout(0.2), Linear(512, 19): the hidden "
                      "layer is as wide as the pooled vector.",
        replica_does="Uses a hidden layer of {replica_hidden} units in out_fc.",
        effect="Different logits (by up to {logits_max_abs:.3g}) and a different number of head parameters; the "
               "head's initial scale changes with its fan-in.",
        fix="Make out_fc's hidden Linear encoder_size*2 -> encoder_size*2 (512 -> 512).",
        match=_head_width, measure=_head_width_measure,
        refs=(SourceRef("model_m2pf.py", r"nn\.Linear\(net_param\.encoder\.size \* 2, net_param\.encoder\.size \* 2\)"),),
        fix_action="restore_shape", priority=22),
    Rule(
        id="PP-BEAT-LSTM", title="Beat LSTM shape differs ({changes})",
        severity=Severity.ERROR,
        original_does="beat_rnn = LSTM(1024, 256, 2 layers, bidirectional, dropout 0.2) over the beat nodes.",
        replica_does="Builds the beat LSTM with {changes}.",
        effect="Beat-level outputs differ from the beat LSTM on (root level {root_level}), and with them the "
               "measure level, the spanned beat/measure vectors and the logits (up to {logits_max_abs:.3g}).",
        fix="Use a 2-layer bidirectional LSTM with the original's sizes for beat_rnn.",
        match=_beat_lstm, measure=_beat_lstm_measure,
        refs=(SourceRef("encoder_score.py", r"self\.beat_rnn = nn\.LSTM"),),
        fix_action="restore_setting", priority=24),
    Rule(
        id="PP-DROPOUT", title="Dropout differs from the original's ({changes})",
        severity=Severity.ERROR,
        original_does="drop_out 0.2 (han_bigger256_concat.yml): inter-layer dropout in the note, voice and beat "
                      "LSTMs, none in the 1-layer measure LSTM (no dropout argument), and Dropout(0.2) before each "
                      "of out_fc's two Linears; none in the embedder or the attentions.",
        replica_does="Sets dropout differently: {changes}.",
        effect="No effect in evaluation (the forward in eval mode matches); in training, a different amount of "
               "regularisation and a different dropout RNG stream, so training curves and final scores differ.",
        fix="Use p=0.2 where the original has dropout, and none in measure_rnn.",
        match=_dropout, measure=_dropout_measure,
        refs=(SourceRef("../ymls/shared/label19/han_bigger256_concat.yml", r"drop_out:"),
              SourceRef("encoder_score.py", r"self\.lstm = nn\.LSTM\(net_params\.note\.size"),
              SourceRef("encoder_score.py", r"self\.measure_rnn = nn\.LSTM"),
              SourceRef("model_m2pf.py", r"nn\.Dropout\(net_param\.drop_out\)")),
        fix_action="restore_setting", priority=26),
    # ---- initialisation ------------------------------------------------------------------------------------------
    Rule(
        id="PP-CUSTOM-INIT", title="Custom weight initialisation",
        severity=Severity.WARNING,
        original_does="Uses PyTorch defaults only (Linear: kaiming-uniform(a=sqrt 5), bias U(+-1/sqrt(fan_in)); "
                      "LSTM: U(+-1/sqrt(hidden))) plus context vectors U(-1, 1); no other init anywhere.",
        replica_does="Initialises {tensors} tensors differently (worst std ratio {worst_std_ratio:.2f}: "
                     "{parameters}).",
        effect="Same architecture, different starting point: early training (loss scale, gradient norms, which "
               "attention heads specialise) differs, and with a 2.5e-5 learning rate the gap persists for many "
               "epochs. The forward with copied weights is unaffected.",
        fix="Remove the custom init and build the modules in the original's order after torch.manual_seed(7).",
        match=_custom_init, measure=_init_measure,
        refs=(SourceRef("module.py", r"nn\.init\.uniform_\(self\.context_vector"),),
        priority=40),
]


# -- parameters shared where the original has two modules ----------------------------------------------------

def _tied(findings: Sequence[Finding]) -> list[Finding] | None:
    hits = having(findings, "structure.tied_parameters")
    if not hits:
        return None
    return hits + downstream(findings, root_of(findings)) + [
        f for f in findings if f.kind in ("structure.missing_parameter", "init.distribution")
        and any(f.location.startswith(str(m)) for h in hits for m in h.evidence.get("reference_modules", []))]


def _tied_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    hit = next((f for f in claimed if f.kind == "structure.tied_parameters"), None)
    if hit is None:
        return {}
    ref = hit.evidence.get("reference_modules") or []
    cand = hit.evidence.get("candidate_names") or [m for m in [hit.evidence.get("candidate_module")] if m]
    return {"reference_modules": " and ".join(map(str, ref)) or None,
            "candidate_modules": " and ".join(map(str, cand)) or None,
            "shared_module": str(cand[0]) if cand else None}


RULES.append(Rule(
    id="PP-TIED-PARAMETERS",
    title="One module used twice where the original has two«: {candidate_modules}»",
    severity=Severity.ERROR,
    original_does="Has two modules with their own parameters«: {reference_modules}», trained separately.",
    replica_does="Uses one module (the same parameter objects) for both«: {candidate_modules}»; the original's "
                 "two weight sets cannot both be copied in, so one of the levels computes with the other's weights.",
    effect="The levels computed by the second use differ from the original's and every level after them; in "
           "training both uses pull the same weights, so the model has fewer parameters than the original's.",
    fix="Give each use its own module (e.g. copy.deepcopy or a second constructor call) so each gets its own "
        "weights.",
    match=_tied, measure=_tied_measure, fix_action="untie", priority=21))
