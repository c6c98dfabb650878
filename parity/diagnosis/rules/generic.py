"""Generic fallbacks, tried after every specific rule: what no known deviation explains is still grouped and
named (shapes, extra or missing modules, settings, recipe, data, trajectory, levels, gradients, forward).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import (
    LEVEL_WHAT,
    Matcher,
    Rule,
    SourceRef,
    about_modules,
    downstream,
    having,
    level_refs,
    model_consequences,
    module_of,
    root_of,
    significant,
    training_consequences,
)
from percepiano_parity.diagnosis.rules.recipe import recipe_figures


def _any_recipe(findings: Sequence[Finding]) -> list[Finding] | None:
    mismatches = having(findings, "recipe.mismatch")
    if not mismatches:
        return None
    return mismatches + significant(training_consequences(findings))


def _generic_structure(kinds: tuple[str, ...], where: Callable[[Finding], bool] | None = None) -> Matcher:
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        hits = significant([f for f in findings if f.kind in kinds and (where is None or where(f))])
        if not hits:
            return None
        modules = {module_of(f) for f in hits}
        return hits + about_modules(findings, modules) + downstream(findings, root_of(findings))
    return match


def _modules_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    modules = sorted({module_of(f) for f in claimed if f.check == "structure" and f.kind != "structure.param_count"})
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


def _unexplained_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    root = root_of(claimed)
    if root:
        out["level_what"] = LEVEL_WHAT.get(root)
    tested = next((f for f in claimed if f.kind == "forward.relations_tested"), None)
    if tested is not None:
        kinds = sorted({t["kind"].replace("_", " ") for t in tested.evidence.get("tested", [])})
        out["tested"] = ", ".join(kinds) if kinds else None
        closest = tested.evidence.get("closest") or {}
        out["closest_kind"] = closest.get("kind", "").replace("_", " ") or None
        out["closest_residual"] = closest.get("residual")
        first_op = tested.evidence.get("first_op") or {}
        out["first_op"] = first_op.get("op")
        out["baseline"] = tested.evidence.get("level_baseline")
        if out["baseline"] is None:
            out["baseline"] = next((t.get("baseline") for t in [closest] if t.get("baseline") is not None), None)
        out["inputs"] = ("computed from its own inputs (the replica cannot run one level alone)"
                         if tested.evidence.get("teacher_forced") is False else "on the original's own inputs")
    return out


def _unexplained_refs(claimed: Sequence[Finding], root_dir: Path | None) -> list[str]:
    return level_refs(root_of(claimed), root_dir)


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


RULES: list[Rule] = [
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
                      "bidirectional LSTMs).",
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
        effect="Training differs from the original's ({trajectory_phrase}).",
        fix="Restore the original's value ({recipe_source}).",
        match=_any_recipe,
        measure=recipe_figures,
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
        effect="Training diverges from the original's ({trajectory_phrase}).",
        fix="Compare the training loop with train_m2pf.train_step step by step.",
        match=_check_family("trajectory."), measure=recipe_figures,
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
        id="PP-FORWARD-UNEXPLAINED-LEVEL", title="Forward divergence at {root_level} that no tested relation explains",
        severity=Severity.ERROR,
        original_does="At {root_level}: «{level_what}».",
        replica_does="Computes {root_level} differently«: {inputs} it differs by {baseline} relative»"
                     "«; tested {tested}, the closest ({closest_kind}) still leaves {closest_residual}»"
                     "«; first divergent operation {first_op}».",
        effect="Every level from {root_level} on differs«, the logits by up to {logits_max_abs:.3g}»«, the loss by "
               "{loss_max_abs:.2g}».",
        fix="Compare the code of level {root_level} with the original's (the cited lines)«, starting at "
            "{first_op}»; the forward table shows whether the error is local to it or inherited.",
        match=_forward_unexplained, measure=_unexplained_measure, locate=_unexplained_refs,
        priority=95),
]
