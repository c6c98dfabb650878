"""The catalog of known deviations: one rule per mistake a re-implementation of PercePiano can make.

Ids are stable (reports, waivers and CI refer to them). Each rule matches a pattern of findings only.
Order matters: specific rules run before generic ones and claim the findings they explain, including the
consequences downstream of the level where the deviation sits, so one deviation becomes one explanation.

How look-alike deviations are told apart (all from findings):

* structure first: a changed attention projection, a missing context vector, an added normalisation, the
  head's width, the beat LSTM's shape, dropout settings and another variant's modules each leave their own
  structure findings;
* without any structure change, the forward check's evidence says where the mismatches sit
  (`evidence["pattern"]`, see parity.aggregate.PatternAgg) and the attention check how much attention mass
  each side puts on padding:

  ============================  ==================  ===============================================================
  rule                          root level          pattern
  ============================  ==================  ===============================================================
  PP-PADDED-LSTM                note (an LSTM)      the longest item of every batch agrees; shorter items differ
  PP-BOUNDARY-RULE              beat/measure nodes  only batches whose beat/measure numbers jump by 2 or more differ
  PP-SPAN-COUNT-QUIRK           *_spanned           every differing note is zero in the original and sits past the
                                                    original's span note count
  PP-SPAN-OFFSET                *_spanned           notes of each item's first beat agree, later notes differ
  PP-PADDING-MASK-QUIRK         pooled              the original attends to padded rows, the candidate does not
  PP-ATTENTION-MASK             pooled              the candidate attends to padded rows the original masks
  ============================  ==================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from parity.diagnosis.rule import Rule, SourceRef, having, significant
from parity.findings import Finding, Severity
from parity.levels import level_order
from parity.structure import level_of

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]

FORWARD_KINDS = ("forward.mismatch", "forward.shape_mismatch", "forward.local_mismatch", "forward.padding_mismatch",
                 "forward.first_divergent")
ATTENTION_KINDS = ("attention.entropy_shift", "attention.weights_mismatch", "attention.collapsed",
                   "attention.head_count")
PAD_EPS = 1e-6  # attention mass on padding below this is "none"


# -- consequences --------------------------------------------------------------------------------------------

def downstream(findings: Sequence[Finding], from_level: str | None) -> list[Finding]:
    """Findings that are consequences of a change at `from_level`: forward findings at or after it,
    the loss and gradients, attention shifts, and the first-divergence summary."""
    start = level_order(from_level) if from_level else -1
    out = []
    for f in findings:
        if f.check == "forward" and f.kind in FORWARD_KINDS:
            if f.kind == "forward.first_divergent" or level_order(f.location) >= start:
                out.append(f)
        elif f.check == "backward" and f.kind in ("backward.loss", "backward.grad_mismatch"):
            out.append(f)
        elif f.check == "attention" and f.kind in ATTENTION_KINDS:
            if level_order(f.location) >= start - 1:
                out.append(f)
    return out


def model_consequences(findings: Sequence[Finding]) -> list[Finding]:
    """Every forward, backward and attention finding: for deviations that change the forward as a whole."""
    return [f for f in findings if f.check in ("forward", "backward", "attention")]


def training_consequences(findings: Sequence[Finding], data_kinds: tuple[str, ...] = ()) -> list[Finding]:
    """Trajectory findings (a recipe change moves the whole trajectory) and the given data findings."""
    return [f for f in findings if f.kind.startswith("trajectory.") or f.kind in data_kinds]


def root_of(findings: Sequence[Finding]) -> str | None:
    for f in findings:
        if f.kind == "forward.first_divergent":
            return f.evidence.get("root_level") or f.location
    return None


def _structure_significant(findings: Sequence[Finding]) -> list[Finding]:
    return significant(having(findings, check="structure"))


def _module_of(f: Finding) -> str:
    """The module a structure or init finding is about (reference naming where both exist)."""
    if "module" in f.evidence:
        return str(f.evidence["module"])
    if f.kind in ("structure.shape", "init.distribution"):
        return f.location.rsplit(".", 1)[0]
    return f.location


def _within(module: str, roots: set[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _about_modules(findings: Sequence[Finding], modules: set[str]) -> list[Finding]:
    """Structure and init findings about these modules (or their children)."""
    return [f for f in findings if f.check in ("structure", "init") and _within(_module_of(f), modules)]


def _pattern(findings: Sequence[Finding], level: str | None) -> dict[str, Any] | None:
    for f in findings:
        if f.check == "forward" and f.location == level and f.kind in ("forward.mismatch", "forward.shape_mismatch",
                                                                       "forward.local_mismatch"):
            return f.evidence.get("pattern")
    return None


def _final_padding_mass(findings: Sequence[Finding]) -> tuple[float, float] | None:
    for f in findings:
        ev = f.evidence
        if f.location == "attn.final" and "reference_padding_mass" in ev and "candidate_padding_mass" in ev:
            if ev["reference_padding_mass"] is not None and ev["candidate_padding_mass"] is not None:
                return float(ev["reference_padding_mass"]), float(ev["candidate_padding_mass"])
    return None


def _metric(findings: Sequence[Finding], kind: str, location: str, name: str) -> Any:
    for f in findings:
        if f.kind == kind and f.location == location:
            return f.metrics.get(name)
    return None


def _semantic(levels: tuple[str, ...], test: Callable[[Sequence[Finding], dict[str, Any]], bool]) -> Matcher:
    """A forward-semantics rule: no structure change left, the root level is one of `levels`, and the
    evidence there passes `test`. Claims every forward, backward and attention finding."""
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        if _structure_significant(findings):
            return None
        root = root_of(findings)
        if root not in levels:
            return None
        pattern = _pattern(findings, root) or {}
        if not test(findings, pattern):
            return None
        return model_consequences(findings)
    return match


def _share(pattern: dict[str, Any], key: str) -> float | None:
    value = pattern.get(key)
    return float(value) if value is not None else None


# -- structure-based matchers ----------------------------------------------------------------------------------

VARIANT_MODULES = {
    "note_contractor": "bilstm-note / single-7layer", "note_attention": "bilstm-note / single-7layer",
    "voice_contractor": "han-voice", "voice_attention": "han-voice", "beat_attention": "han-beat",
    "measure_attention": "han-measure", "performance_contractor": "han-total",
    "performance_final_attention": "han-total", "lstm": "single-7layer", "score_encoder": "a HAN variant",
}


def _wrong_variant(findings: Sequence[Finding]) -> list[Finding] | None:
    missing = {_module_of(f).split(".")[0] for f in having(findings, "structure.missing_parameter")}
    extra = {_module_of(f).split(".")[0] for f in having(findings, "structure.extra_module")}
    only_reference = (missing - extra) & set(VARIANT_MODULES)
    only_candidate = (extra - missing) & set(VARIANT_MODULES)
    if not (only_reference and only_candidate):
        return None
    claimed = [f for f in findings if f.check in ("structure", "init", "forward", "backward", "attention")]
    return claimed


def _wrong_variant_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    missing = {_module_of(f).split(".")[0] for f in having(claimed, "structure.missing_parameter")}
    extra = {_module_of(f).split(".")[0] for f in having(claimed, "structure.extra_module")}
    ref = sorted((missing - extra) & set(VARIANT_MODULES))
    cand = sorted((extra - missing) & set(VARIANT_MODULES))
    return {"reference_modules": ", ".join(ref), "candidate_modules": ", ".join(cand),
            "candidate_looks_like": ", ".join(sorted({VARIANT_MODULES[m] for m in cand})),
            "trained_only_by_candidate": len([f for f in having(claimed, "backward.grad_presence")
                                              if f.evidence.get("side") == "candidate"])}


def _precision(findings: Sequence[Finding]) -> list[Finding] | None:
    lowered = having(findings, "precision.activations") + having(
        findings, "recipe.mismatch", where=lambda f: f.location == "precision")
    if not lowered:
        return None
    return lowered + having(findings, "precision.parameters") + downstream(findings, None)


def _precision_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "precision.activations"):
        return {"dtypes": ", ".join(f.evidence.get("candidate_dtypes", [])), "lowered_levels": f.metrics.get("levels")}
    for f in having(claimed, "recipe.mismatch"):
        return {"dtypes": str(f.evidence.get("replica"))}
    return {}


def _embedder_width(findings: Sequence[Finding]) -> list[Finding] | None:
    def at_embedding(f: Finding) -> bool:
        return level_of(_module_of(f) + ".") == "embedding"

    changed = having(findings, "structure.shape", where=lambda f: at_embedding(f) and len(
        f.evidence.get("reference_shape", [])) == 2 and f.evidence["reference_shape"][1] != f.evidence.get(
        "candidate_shape", [0, 0])[1]) + having(
        findings, "structure.setting", where=lambda f: at_embedding(f) and "in_features" in f.evidence.get("changed", {}))
    if not changed:
        return None
    modules = {_module_of(f) for f in changed}
    return _about_modules(findings, modules) + downstream(findings, root_of(findings))


def _embedder_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "structure.shape"):
        return {"original_features": f.evidence["reference_shape"][1], "replica_features": f.evidence["candidate_shape"][1]}
    for f in having(claimed, "structure.setting"):
        old, new = f.evidence["changed"]["in_features"]
        return {"original_features": old, "replica_features": new}
    return {}


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
    return _about_modules(findings, modules) + downstream(findings, root_of(findings)) + having(
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
    return _about_modules(findings, modules) + downstream(findings, root_of(findings)) + having(
        findings, "attention.head_count")


def _no_context_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {"attention_modules": ", ".join(sorted(_missing_context(claimed)))}
    for f in having(claimed, "attention.head_count"):
        out["original_heads"] = f.metrics.get("reference_heads")
        out["replica_heads"] = f.metrics.get("candidate_heads")
    return out


_NORM_TYPES = ("LayerNorm", "BatchNorm1d", "BatchNorm2d", "RMSNorm", "GroupNorm", "InstanceNorm1d")


def _extra_normalisation(findings: Sequence[Finding]) -> list[Finding] | None:
    norms = having(findings, "structure.extra_module", where=lambda f: f.evidence.get("module_type") in _NORM_TYPES)
    if not norms:
        return None
    return norms + _about_modules(findings, {f.location for f in norms}) + downstream(findings, root_of(findings))


def _norm_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    norms = having(claimed, "structure.extra_module")
    return {"modules": ", ".join(sorted({f"{f.evidence.get('module_type')} at {f.location}" for f in norms}))}


def _out_fc_changed(findings: Sequence[Finding]) -> list[Finding]:
    def head(f: Finding) -> bool:
        return _module_of(f).startswith("out_fc.")
    return [f for f in findings if f.check == "structure" and f.kind in (
        "structure.shape", "structure.setting", "structure.extra_module", "structure.missing_parameter") and head(f)]


def _head_width(findings: Sequence[Finding]) -> list[Finding] | None:
    changed = _out_fc_changed(findings)
    if not any(f.kind in ("structure.shape", "structure.setting") for f in changed):
        return None
    return changed + _about_modules(findings, {"out_fc"}) + downstream(findings, root_of(findings))


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
    reference = {_module_of(f): f.evidence.get("module_settings", {})
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
    return _about_modules(findings, set(modules)) + downstream(findings, root_of(findings))


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


# -- forward-semantics matchers (no structure change) ------------------------------------------------------------

def _padded_lstm_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    longest, shorter = _share(pattern, "longest_items_bad_share"), _share(pattern, "shorter_items_bad_share")
    return longest == 0.0 and bool(shorter)


def _boundary_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    with_gap = _share(pattern, "bad_batches_with_gap_share")
    return with_gap == 1.0 and pattern.get("batches_bad", 0) < pattern.get("batches", 0)


def _span_count_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    zero, after = _share(pattern, "ref_zero_share"), _share(pattern, "after_span_count_share")
    return zero is not None and after is not None and zero >= 0.999 and after >= 0.999


def _span_offset_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    first, zero = _share(pattern, "first_group_share"), _share(pattern, "ref_zero_share")
    return first == 0.0 and (zero or 0.0) < 0.999


def _original_attends_padding(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    mass = _final_padding_mass(findings)
    return mass is not None and mass[0] > PAD_EPS and mass[1] <= PAD_EPS


def _candidate_attends_padding(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    mass = _final_padding_mass(findings)
    return mass is not None and mass[1] > PAD_EPS and mass[0] <= PAD_EPS


def _pattern_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    root = root_of(claimed)
    pattern = _pattern(claimed, root) or {}
    out = {k: pattern.get(k) for k in ("rows_bad", "items_bad", "longest_items_bad_share", "shorter_items_bad_share",
                                       "batches_bad", "batches", "batches_with_gap")}
    out["root_max_abs"] = _metric(claimed, "forward.mismatch", root or "", "max_abs")
    mass = _final_padding_mass(claimed)
    if mass is not None:
        out["original_padding_mass"], out["replica_padding_mass"] = mass
    for f in having(claimed, "attention.entropy_shift", where=lambda f: f.location == "attn.final"):
        out["entropy_delta"] = f.metrics.get("worst_delta")
    return out


# -- recipe and data matchers ------------------------------------------------------------------------------------

def _recipe(keys: tuple[str, ...], data_kinds: tuple[str, ...] = (),
            trajectory_test: Callable[[Finding], bool] | None = None) -> Matcher:
    """recipe.mismatch at one of `keys` (or, without one, the given data findings / a trajectory pattern);
    claims the trajectory and data consequences."""
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        mismatches = having(findings, "recipe.mismatch", where=lambda f: f.location in keys)
        data = significant([f for f in findings if f.kind in data_kinds])
        trajectory = [f for f in significant(findings) if trajectory_test is not None and trajectory_test(f)]
        if mismatches or data:
            return mismatches + data + significant(training_consequences(findings, data_kinds))
        if trajectory and not having(findings, "recipe.mismatch"):
            return significant(training_consequences(findings))
        return None
    return match


def _recipe_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = []
    for f in having(claimed, "recipe.mismatch"):
        pairs.append(f"{f.location}: {f.evidence.get('original')!r} -> {f.evidence.get('replica')!r}")
        out.setdefault("original_value", f.evidence.get("original"))
        out.setdefault("replica_value", f.evidence.get("replica"))
        out.setdefault("recipe_source", f.evidence.get("source"))
    if pairs:
        out["recipe_changes"] = "; ".join(pairs)
    for f in claimed:
        if f.kind.startswith("trajectory.") and f.kind != "trajectory.drift":
            out.setdefault("first_differing_step", f.metrics.get("first_differing_step"))
            out["trajectory_max_rel"] = max(out.get("trajectory_max_rel") or 0.0, f.metrics.get("max_rel_diff") or 0.0)
        if f.kind.startswith("data."):
            out.setdefault("data_cases_differing", f.metrics.get("differ"))
    return out


def _any_recipe(findings: Sequence[Finding]) -> list[Finding] | None:
    mismatches = having(findings, "recipe.mismatch")
    if not mismatches:
        return None
    return mismatches + significant(training_consequences(findings))


def _lr_from_start(f: Finding) -> bool:
    return f.kind == "trajectory.lr" and f.metrics.get("first_differing_step") == 0


def _lr_later(f: Finding) -> bool:
    return f.kind == "trajectory.lr" and (f.metrics.get("first_differing_step") or 0) > 0


# -- generic fallbacks --------------------------------------------------------------------------------------------

def _generic_structure(kinds: tuple[str, ...], where: Callable[[Finding], bool] | None = None) -> Matcher:
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        hits = significant([f for f in findings if f.kind in kinds and (where is None or where(f))])
        if not hits:
            return None
        modules = {_module_of(f) for f in hits}
        return hits + _about_modules(findings, modules) + downstream(findings, root_of(findings))
    return match


def _modules_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    modules = sorted({_module_of(f) for f in claimed if f.check == "structure" and f.kind != "structure.param_count"})
    settings = []
    for f in having(claimed, "structure.setting"):
        settings += [f"{f.location}.{k} {v[0]!r} -> {v[1]!r}" for k, v in sorted(f.evidence.get("changed", {}).items())]
    shapes = [f"{f.location} {tuple(f.evidence.get('reference_shape', []))} -> "
              f"{tuple(f.evidence.get('candidate_shape', []))}" for f in having(claimed, "structure.shape")]
    return {"modules": ", ".join(modules[:8]) + (" ..." if len(modules) > 8 else ""),
            "setting_changes": "; ".join(settings) or None, "shape_changes": "; ".join(shapes[:4]) or None}


def _forward_unexplained(findings: Sequence[Finding]) -> list[Finding] | None:
    hits = significant([f for f in findings if f.check in ("forward", "attention")]) + having(findings, "backward.loss")
    if not hits:
        return None
    return model_consequences(findings)


def _gradient_flow(findings: Sequence[Finding]) -> list[Finding] | None:
    if significant(having(findings, check="forward")):
        return None  # the gradients follow a forward difference: explained with it
    hits = significant(having(findings, check="backward"))
    return hits or None


def _gradient_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    presence = having(claimed, "backward.grad_presence")
    return {"params_grad_presence_differs": len(presence),
            "params_grad_differs": len(having(claimed, "backward.grad_mismatch"))}


def _check_family(prefix: str) -> Matcher:
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        hits = significant([f for f in findings if f.kind.startswith(prefix)])
        return hits or None
    return match


def _missing_level(findings: Sequence[Finding]) -> list[Finding] | None:
    hits = significant(having(findings, "forward.missing_level") + having(findings, "attention.missing"))
    return hits or None


def _locations_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    return {"locations": ", ".join(sorted({f.location for f in claimed})[:8])}


# -- the catalog -----------------------------------------------------------------------------------------------

def _waivable(rule_id: str) -> str:
    return (f"This is the original's own quirk: a replica that changes it on purpose can waive this explanation as "
            f"an intended fix (a [[waiver]] with id = '{rule_id}' and a reason), but its numbers will then not "
            "reproduce the paper's.")

RULES: list[Rule] = [
    # ---- the wrong model altogether --------------------------------------------------------------------
    Rule(
        id="PP-WRONG-BASELINE", title="A different PercePiano variant than the one compared",
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
    # ---- precision and inputs ----------------------------------------------------------------------------
    Rule(
        id="PP-PRECISION", title="Reduced precision (autocast) instead of float32",
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
    # ---- forward semantics (no structure change) ---------------------------------------------------------------
    Rule(
        id="PP-PADDED-LSTM", title="Padded instead of packed sequences into the LSTMs",
        severity=Severity.ERROR,
        original_does="Feeds the note LSTM a PackedSequence (pack_sequence in the collate; pack_padded_sequence "
                      "otherwise), the voice LSTM packed per-voice sequences, and the beat/measure LSTMs packed "
                      "nodes (run_hierarchy_lstm_with_pack), so padding never enters a recurrence.",
        replica_does="Runs an LSTM over zero-padded tensors: the longest item of each batch agrees "
                     "(longest items differing: {longest_items_bad_share:.0%}), shorter items differ "
                     "({shorter_items_bad_share:.0%}), because the backward direction starts in the padding.",
        effect="Every item shorter than the longest in its batch gets different LSTM states (up to "
               "{root_max_abs:.3g} at {root_level}); predictions depend on batch composition; logits move by up "
               "to {logits_max_abs:.3g}.",
        fix="Pack the sequences (pack_padded_sequence with the real lengths, enforce_sorted=False) before every "
            "LSTM and unpack after.",
        match=_semantic(("note", "voice", "beat", "measure"), _padded_lstm_test), measure=_pattern_measure,
        refs=(SourceRef("dataset.py", r"pack_sequence\("),
              SourceRef("encoder_score.py", r"pack_padded_sequence\(x, x\.shape\[1\]"),
              SourceRef("model_utils.py", r"def run_hierarchy_lstm_with_pack")),
        fix_action="restore_semantics", priority=30),
    Rule(
        id="PP-BOUNDARY-RULE", title="Beat/measure boundaries placed at every change of number",
        severity=Severity.ERROR,
        original_does="Starts a new beat (measure) only where the number rises by exactly 1 (find_boundaries_batch: "
                      "diff == 1); a jump of 2 is not a boundary, so the two beats merge into one node.",
        replica_does="Starts a node at every change of number: the nodes differ exactly in the batches whose "
                     "beat or measure numbers jump ({batches_bad} of {batches} batches differ, all of them with "
                     "a jump).",
        effect="On data with gaps in beat/measure numbers the beat nodes, their LSTM and the spanned vectors "
               "differ (up to {root_max_abs:.3g} at {root_level}; logits by up to {logits_max_abs:.3g}); on gap-"
               "free data nothing changes.",
        fix="Place a boundary only where the number rises by exactly 1, as the original does.",
        match=_semantic(("beat_nodes", "measure_nodes"), _boundary_test), measure=_pattern_measure,
        refs=(SourceRef("utils.py", r"beat_numbers\[:,1:\] - beat_numbers\[:,:-1\] == 1"),
              SourceRef("utils.py", r"def find_boundaries\("),),
        fix_action="restore_semantics", priority=31),
    Rule(
        id="PP-SPAN-COUNT-QUIRK", title="Spanning beats back to notes uses the true note count (the original "
                                        "truncates)",
        severity=Severity.WARNING, quirk=True,
        original_does="span_beat_to_note_num takes the note count from cal_length_from_padded_beat_numbers = "
                      "argmin(diff(beat numbers)) + 1, and 1 means the whole row. In the longest item of a batch, "
                      "whose first note is alone in its beat, the argmin lands on the first chord, so every later "
                      "note gets an all-zero beat (or measure) vector. This is the original's quirk.",
        replica_does="Spans every real note: {rows_bad} notes in {items_bad} items that the original leaves at "
                     "zero get their beat vector here (all differing notes are zero in the original and lie past "
                     "its span count).",
        effect="Changes the spanned vectors of those notes by up to {root_max_abs:.3g} and the logits by up to "
               "{logits_max_abs:.3g} (loss by {loss_max_abs:.2g}); it hits the longest item of every batch whose "
               "first note is alone in its beat, and every item at batch size 1 (the eval scripts). " + _waivable("PP-SPAN-COUNT-QUIRK"),
        fix="To reproduce the paper, use the original's count (argmin of the beat-number difference + 1, with 1 "
            "meaning the whole row); to keep the correction, waive PP-SPAN-COUNT-QUIRK with a reason.",
        match=_semantic(("beat_spanned", "measure_spanned"), _span_count_test), measure=_pattern_measure,
        refs=(SourceRef("utils.py", r"def cal_length_from_padded_beat_numbers"),
              SourceRef("utils.py", r"torch\.min\(torch\.diff\(beat_numbers"),
              SourceRef("model_utils.py", r"len_note = cal_length_from_padded_beat_numbers")),
        fix_action="restore_semantics", priority=32),
    Rule(
        id="PP-SPAN-OFFSET", title="Beat/measure vectors spanned back to the wrong notes (index offset)",
        severity=Severity.ERROR,
        original_does="Note n receives node (beat[n] - beat[0]) of its item: zero-shifted beat (measure) numbers "
                      "index the LSTM outputs directly.",
        replica_does="Indexes the nodes with an offset: the notes of each item's first beat agree, later notes get "
                     "a neighbouring node ({rows_bad} notes in {items_bad} items differ).",
        effect="Every note after the first beat carries the wrong beat context (up to {root_max_abs:.3g} at "
               "{root_level}); logits move by up to {logits_max_abs:.3g}.",
        fix="Index with the zero-shifted number itself: node = beat[n] - beat[0], no offset and no clamping.",
        match=_semantic(("beat_spanned", "measure_spanned"), _span_offset_test), measure=_pattern_measure,
        refs=(SourceRef("model_utils.py", r"zero_shifted_beat_number = beat_number - beat_number\[:,0:1\]"),
              SourceRef("model_utils.py", r"def span_beat_to_note_num")),
        fix_action="restore_semantics", priority=33),
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
               "independent of batch composition, which the original's are not. " + _waivable("PP-PADDING-MASK-QUIRK"),
        fix="To reproduce the paper, mask only rows whose sum is exactly zero (similarity[x.sum(-1) == 0] = -1e10); "
            "to keep the correction, waive PP-PADDING-MASK-QUIRK with a reason.",
        match=_semantic(("pooled", "contracted"), _original_attends_padding), measure=_pattern_measure,
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
        match=_semantic(("pooled", "contracted", "beat_nodes", "measure_nodes"), _candidate_attends_padding),
        measure=_pattern_measure,
        refs=(SourceRef("module.py", r"similarity\[x\.sum\(-1\)==0\] = -1e10"),),
        fix_action="restore_semantics", priority=35),
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
    # ---- recipe --------------------------------------------------------------------------------------------------
    Rule(
        id="PP-LEARNING-RATE", title="Learning rate differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="Adam with lr 2.5e-5: every training script passes --lr 2.5e-5 (the parser's default is "
                      "1e-4).",
        replica_does="Trains with lr {replica_value}.",
        effect="Every update is scaled differently from the first step on (trajectories differ from step "
               "{first_differing_step}); convergence speed and the best-validation epoch move.",
        fix="Use lr 2.5e-5.",
        match=_recipe(("lr",), trajectory_test=_lr_from_start), measure=_recipe_measure,
        refs=(SourceRef("parser.py", r'"--lr"'),
              SourceRef("../scripts/composition4fold/2_run_comp_multilevel_total.sh", r"lrs=\(")),
        fix_action="restore_recipe", priority=45),
    Rule(
        id="PP-OPTIMIZER", title="Optimizer differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="torch.optim.Adam(lr, weight_decay=1e-5): L2 added to the gradient (not decoupled AdamW), "
                      "betas (0.9, 0.999), eps 1e-8.",
        replica_does="Uses {replica_value}.",
        effect="Weight decay acts differently (decoupled vs through the adaptive step), so parameters drift apart "
               "from the first step (first differing step {first_differing_step}).",
        fix="Use torch.optim.Adam with weight_decay=1e-5.",
        match=_recipe(("optimizer", "weight_decay", "betas", "eps")), measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"optimizer = th\.optim\.Adam\("),
              SourceRef("parser.py", r'"--weight_decay"')),
        fix_action="restore_recipe", priority=46),
    Rule(
        id="PP-SCHEDULER", title="Learning-rate schedule differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="StepLR(step_size=3000, gamma=0.98), stepped once per iteration inside train_step (the lr "
                      "becomes 2.45e-5 at iteration 3000).",
        replica_does="Schedules the learning rate differently ({replica_value}).",
        effect="The learning rate departs from the original's at the first decay step (trajectories differ from "
               "step {first_differing_step}); over 100 epochs the original decays the lr many times.",
        fix="Step StepLR(step_size=3000, gamma=0.98) after every optimizer step.",
        match=_recipe(("scheduler", "scheduler_interval", "scheduler_step_size", "scheduler_gamma"),
                      trajectory_test=_lr_later),
        measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"StepLR\("), SourceRef("train_m2pf.py", r"scheduler\.step\(\)"),
              SourceRef("parser.py", r'"--lr_decay_step"')),
        fix_action="restore_recipe", priority=47),
    Rule(
        id="PP-GRAD-CLIP", title="Gradient clipping differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="clip_grad_norm_(all parameters, 2.0) before every optimizer step.",
        replica_does="Clips at {replica_value}.",
        effect="Whenever the gradient norm exceeds the smaller threshold, updates shrink; loss and gradient-norm "
               "trajectories differ from step {first_differing_step}.",
        fix="Clip the global gradient norm at 2.0.",
        match=_recipe(("grad_clip",)), measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"clip_grad_norm_"), SourceRef("parser.py", r'"--grad_clip"')),
        fix_action="restore_recipe", priority=48),
    Rule(
        id="PP-LOSS", title="Training loss differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="MSELoss(sigmoid(logits), labels), mean over all elements; the model returns logits and the "
                      "sigmoid belongs to the loss (validation reports sigmoid outputs too).",
        replica_does="Computes the loss as {replica_value}.",
        effect="Different gradients from the first step and a different loss scale; the validation loss that "
               "selects the best checkpoint is not comparable ({data_cases_differing} generated cases differ).",
        fix="Use MSE between sigmoid(logits) and the labels.",
        match=_recipe(("loss",), data_kinds=("data.loss",)), measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"loss = loss_calculator\(sigmoid\(logitss\[-1\]\), targets\)"),
              SourceRef("__main__.py", r"criterion = nn\.MSELoss\(\)")),
        fix_action="restore_recipe", priority=49),
    Rule(
        id="PP-R2-AVERAGE", title="R2 averaged differently ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="sklearn r2_score(y_true, y_pred) with the default uniform_average over the 19 label "
                      "columns, on float32 sigmoid outputs.",
        replica_does="Averages R2 as {replica_value}.",
        effect="Reported R2 is not comparable with the paper's ({data_cases_differing} generated cases differ); "
               "training itself is unaffected.",
        fix="Use r2_score(y_true, y_pred) with multioutput='uniform_average'.",
        match=_recipe(("r2_average",), data_kinds=("data.r2",)), measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"r2 = r2_score\(y_true, y_pred\)"),),
        fix_action="restore_recipe", priority=50),
    Rule(
        id="PP-SLICING", title="Training slices not regenerated each epoch",
        severity=Severity.WARNING,
        original_does="Calls train_loader.dataset.update_slice_info() at the start of every epoch; performances "
                      "longer than len_slice (5000 notes) get new random slices each time (all PercePiano "
                      "segments are shorter, so each is one slice).",
        replica_does="Keeps one fixed set of slices ({recipe_changes}).",
        effect="No effect on the published data (every segment is one slice); on longer performances the model "
               "sees fewer distinct windows and over-fits them.",
        fix="Regenerate the slices at the start of every epoch.",
        match=_recipe(("slices_regenerated_each_epoch", "slice_length"), data_kinds=("data.slicing",)),
        measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"update_slice_info\(\)"),
              SourceRef("data_process.py", r"def make_slicing_indexes_by_measure")),
        fix_action="restore_recipe", priority=51),
    Rule(
        id="PP-LABEL-FILE", title="Another label file than the original's",
        severity=Severity.ERROR,
        original_does="Reads the mean labels from label_2round_mean_reg_19_with0_rm_highstd0.json; the README "
                      "points to labels/ (1,189 keys), the repository root holds a different file (1,202 keys, 13 "
                      "Score2 labels and 492 pianist indices differ).",
        replica_does="Reads {replica_value}.",
        effect="Different training targets for the keys whose labels differ, and extra or missing segments: "
               "scores are not comparable with the paper's.",
        fix="Use labels/label_2round_mean_reg_19_with0_rm_highstd0.json, the file the README names.",
        match=_recipe(("label_file",), data_kinds=("data.label_file",)), measure=_recipe_measure,
        refs=(SourceRef("dataset.py", r"self\.label_map = json\.load"), SourceRef("parser.py", r'"--label_file_path"')),
        fix_action="restore_recipe", priority=52),
    # ---- generic fallbacks ---------------------------------------------------------------------------------------
    Rule(
        id="PP-SHAPE", title="Parameter shapes differ ({shape_changes})",
        severity=Severity.ERROR,
        original_does="Builds each module with the sizes of han_bigger256_concat.yml (see `parity variants` for "
                      "the layer list).",
        replica_does="Has differently shaped parameters in {modules}.",
        effect="Weights cannot be exchanged with the original; every level from {root_level} on differs (logits "
               "by up to {logits_max_abs:.3g}).",
        fix="Give these modules the original's sizes.",
        match=_generic_structure(("structure.shape",)), measure=_modules_measure,
        refs=(SourceRef("encoder_score.py", r"class HanEncoder"), SourceRef("model_m2pf.py", r"class VirtuosoNetMultiLevel")),
        fix_action="restore_shape", priority=80),
    Rule(
        id="PP-EXTRA-MODULE", title="Modules the original does not have ({modules})",
        severity=Severity.ERROR,
        original_does="Has no such module (see `parity variants` for the original's layer list).",
        replica_does="Adds {modules}.",
        effect="Changes the computation from {root_level} on (logits by up to {logits_max_abs:.3g}) and the "
               "initialisation order of everything built after it.",
        fix="Remove the module.",
        match=_generic_structure(("structure.extra_module",)), measure=_modules_measure,
        refs=(SourceRef("model_m2pf.py", r"class VirtuosoNetMultiLevel"),),
        fix_action="remove_module", priority=81),
    Rule(
        id="PP-MISSING-MODULE", title="Modules of the original missing ({modules})",
        severity=Severity.ERROR,
        original_does="Builds and uses {modules}.",
        replica_does="Has no partner for these parameters.",
        effect="The computation differs from {root_level} on (logits by up to {logits_max_abs:.3g}); a state "
               "dict of the original cannot load.",
        fix="Add the module as the original builds it.",
        match=_generic_structure(("structure.missing_parameter",),
                                 where=lambda f: bool(f.evidence.get("used_by_original", True))),
        measure=_modules_measure,
        refs=(SourceRef("model_m2pf.py", r"class VirtuosoNetMultiLevel"), SourceRef("encoder_score.py", r"class HanEncoder")),
        fix_action="restore_module", priority=82),
    Rule(
        id="PP-SETTING", title="Module settings differ ({setting_changes})",
        severity=Severity.ERROR,
        original_does="Configures its modules as han_bigger256_concat.yml and model_m2pf.py say (e.g. exact GELU, "
                      "bidirectional LSTMs, batch_first).",
        replica_does="Configures {modules} differently: {setting_changes}.",
        effect="The modules compute something else (root level {root_level}; logits by up to "
               "{logits_max_abs:.3g}).",
        fix="Restore the original's settings for these modules.",
        match=_generic_structure(("structure.setting", "structure.activation")), measure=_modules_measure,
        refs=(SourceRef("encoder_score.py", r"class HanEncoder"),),
        fix_action="restore_setting", priority=83),
    Rule(
        id="PP-RECIPE", title="Training recipe differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="Trains with the parser defaults overridden by the published scripts (batch 8, lr 2.5e-5, "
                      "100 epochs, Adam, StepLR per iteration, clip 2.0).",
        replica_does="Uses {recipe_changes}.",
        effect="Training dynamics differ (first differing step {first_differing_step}).",
        fix="Restore the original's value ({recipe_source}).",
        match=_any_recipe,
        measure=_recipe_measure,
        refs=(SourceRef("parser.py", r"def get_parser|argparse\.ArgumentParser"),),
        fix_action="restore_recipe", priority=85),
    Rule(
        id="PP-DATA", title="Data handling differs ({locations})",
        severity=Severity.ERROR,
        original_does="Slices, collates and scores data with dataset.py / data_process.py / train_m2pf.py.",
        replica_does="Produces different outputs for {locations}.",
        effect="Different inputs or metrics than the original's for the same data.",
        fix="Match the original's data functions (see the data check's table).",
        match=_check_family("data."), measure=_locations_measure,
        refs=(SourceRef("dataset.py", r"def update_slice_info"),), priority=86),
    Rule(
        id="PP-TRAJECTORY", title="Training trajectory differs with no recipe difference found",
        severity=Severity.ERROR,
        original_does="Runs train_step: forward, zero_grad, backward, clip 2.0, Adam step, StepLR step.",
        replica_does="Ends up with different losses, gradient norms, learning rates or parameters "
                     "({locations}).",
        effect="Training diverges from the original's from step {first_differing_step} on.",
        fix="Compare the training loop with train_m2pf.train_step step by step.",
        match=_check_family("trajectory."), measure=_recipe_measure,
        refs=(SourceRef("train_m2pf.py", r"def train_step"),), priority=87),
    Rule(
        id="PP-MISSING-LEVEL", title="Levels or attention maps not exposed ({locations})",
        severity=Severity.WARNING,
        original_does="Computes every level of the hierarchy (note, voice, beat, measure, spanned, head).",
        replica_does="Does not expose {locations}, so they cannot be compared.",
        effect="Mismatches at these levels cannot be located; the audit is less precise.",
        fix="Record the level in the adapter (see parity.levels.LEVELS for the names).",
        match=_missing_level, measure=_locations_measure, priority=88),
    Rule(
        id="PP-GRADIENT-FLOW", title="Gradients differ while the forward agrees",
        severity=Severity.ERROR,
        original_does="Backpropagates MSE(sigmoid(logits), labels) through every module used by the head; modules "
                      "the head ignores get no gradient.",
        replica_does="Gives {params_grad_presence_differs} parameters a gradient on one side only and "
                     "{params_grad_differs} a different gradient.",
        effect="Training updates different parameters (or by different amounts) although the predictions agree.",
        fix="Look for detach(), no_grad or requires_grad changes, and for modules the head uses differently.",
        match=_gradient_flow, measure=_gradient_measure,
        refs=(SourceRef("train_m2pf.py", r"def train_step"),), priority=89),
    Rule(
        id="PP-FORWARD-UNEXPLAINED-LEVEL", title="Forward divergence with no known cause, root level {root_level}",
        severity=Severity.ERROR,
        original_does="See the original's code for level {root_level} (parity.levels describes each level).",
        replica_does="Computes level {root_level} differently although structure and settings agree.",
        effect="Every level from {root_level} on differs (logits by up to {logits_max_abs:.3g}, loss by "
               "{loss_max_abs:.2g}).",
        fix="Compare the code of level {root_level} with the original's line by line; the forward table shows "
            "whether the error is local to it or inherited.",
        match=_forward_unexplained, refs=(SourceRef("encoder_score.py", r"def run_beat_and_measure"),),
        priority=95),
]


def rule_by_id(rule_id: str) -> Rule | None:
    return next((r for r in RULES if r.id == rule_id), None)


__all__ = ["RULES", "downstream", "model_consequences", "root_of", "rule_by_id", "significant"]
