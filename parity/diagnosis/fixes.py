"""Verified fixes: apply an explanation's fix mechanically to a copy of the candidate and measure it.

A fix is applied only to a deep copy (never the user's object or files). The affected checks are re-run on
the same batches; the fix is verified when the findings the explanation claimed disappear, and its effect is
how much of the logits and loss difference it removes. Explanations without a mechanical fix get `None`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import Explanation

FixFn = Callable[[nn.Module, Sequence[Finding]], bool]


def _set_module(model: nn.Module, path: str, module: nn.Module | None) -> bool:
    parent_name, _, attr = path.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        return False
    if isinstance(parent, nn.ModuleDict) and module is None:
        if attr in parent:
            del parent[attr]
            return True
        return False
    if module is None:
        module = nn.Identity()
    setattr(parent, attr, module)
    return True


def _remove_module(model: nn.Module, findings: Sequence[Finding]) -> bool:
    done = False
    for f in findings:
        if f.kind == "structure.extra_module" and not f.evidence.get("on_model_root"):
            done = _set_module(model, f.location, None) or done
    return done


def _float32(model: nn.Module, findings: Sequence[Finding]) -> bool:
    if getattr(model, "autocast_dtype", None) is None and all(p.dtype.is_floating_point and p.dtype.itemsize == 4
                                                               for p in model.parameters()):
        return False
    if hasattr(model, "autocast_dtype"):
        model.autocast_dtype = None
    model.float()
    return True


def _module_from_settings(settings: dict[str, Any]) -> nn.Module | None:
    kind = settings.get("type")
    if kind == "LSTM":
        return nn.LSTM(settings["input_size"], settings["hidden_size"], settings["num_layers"],
                       batch_first=settings.get("batch_first", True), bidirectional=settings["bidirectional"],
                       dropout=settings.get("dropout", 0.0), bias=settings.get("bias", True))
    if kind == "Linear":
        return nn.Linear(settings["in_features"], settings["out_features"], bias=settings.get("bias", True))
    if kind == "Dropout":
        return nn.Dropout(settings["p"])
    if kind == "GELU":
        return nn.GELU(approximate=settings.get("approximate", "none"))
    if kind == "ContextAttention":
        from percepiano_parity.replica.attention import ContextAttention

        size = settings.get("head_size", 0) * settings.get("num_head", 0)
        return ContextAttention(size, settings["num_head"]) if size else None
    return None


def _restore_setting(model: nn.Module, findings: Sequence[Finding]) -> bool:
    """Rebuild modules with the reference's settings (weights are re-copied from the reference afterwards)."""
    import warnings

    done = False
    for f in findings:
        if f.kind == "structure.setting":
            settings, target = f.evidence.get("reference", {}), f.evidence.get("candidate_module", f.location)
        elif f.kind == "structure.shape":
            settings = f.evidence.get("module_settings_reference", {})
            target = f.evidence.get("candidate_name", f.location).rsplit(".", 1)[0]
        else:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = _module_from_settings(settings)
        if module is not None:
            done = _set_module(model, target, module) or done
    for f in findings:  # dropout probabilities in call order
        if f.kind == "structure.dropout":
            ref_seq, cand_seq = f.evidence.get("reference", []), f.evidence.get("candidate", [])
            if len(ref_seq) == len(cand_seq):
                for r, c in zip(ref_seq, cand_seq, strict=True):
                    done = _set_module(model, c["at"], nn.Dropout(r["p"])) or done
    return done


def _restore_module(model: nn.Module, findings: Sequence[Finding]) -> bool:
    """Put back a module the candidate replaced: rebuilt from the reference's settings of the module that
    owns a parameter missing on the candidate side (e.g. a context attention without its context vector)."""
    import warnings

    done = False
    rebuilt: set[str] = set()
    for f in findings:
        if f.kind != "structure.missing_parameter":
            continue
        path, settings = f.evidence.get("module", ""), f.evidence.get("module_settings", {})
        if not path or path in rebuilt:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = _module_from_settings(settings)
        if module is not None and _set_module(model, path, module):
            rebuilt.add(path)
            done = True
    return done


def _restore_semantics(model: nn.Module, findings: Sequence[Finding]) -> bool:
    from percepiano_parity.replica.semantics import FAITHFUL

    if getattr(model, "semantics", None) is None or model.semantics == FAITHFUL:
        return False
    model.semantics = FAITHFUL
    return True


def _relation_spec(findings: Sequence[Finding], *kinds: str) -> dict[str, Any] | None:
    """The fix spec of the first claimed relation finding (of one of `kinds`, when given) that has one."""
    for f in findings:
        if f.kind == "forward.relation" and f.evidence.get("fix") and (not kinds or f.evidence.get("kind") in kinds):
            return dict(f.evidence["fix"])
    return None


def _op_patch(model: nn.Module, spec: dict[str, Any] | None) -> bool:
    from percepiano_parity.diagnosis.fix_patches import DROPOUTS, install_op_patch, op_transform

    if not spec:
        return False
    transform = op_transform(spec)
    if transform is None:
        return False
    if spec.get("action") == "eval_randomness_off":
        return install_op_patch(model, None, DROPOUTS, None, transform)
    return install_op_patch(model, spec.get("module", ""), frozenset({str(spec["name"])}), spec.get("site"), transform)


def _patch_op(model: nn.Module, findings: Sequence[Finding]) -> bool:
    return _op_patch(model, _relation_spec(findings, "different_arguments", "different_op", "extra_op"))


def _patch_op_input(model: nn.Module, findings: Sequence[Finding]) -> bool:
    return _op_patch(model, _relation_spec(findings, "missing_op"))


def _eval_randomness_off(model: nn.Module, findings: Sequence[Finding]) -> bool:
    return _op_patch(model, _relation_spec(findings, "random_in_eval"))


def _softmax_axis(model: nn.Module, findings: Sequence[Finding]) -> bool:
    """The softmax at the first divergent operation, called with the original's axis (measured there)."""
    return _op_patch(model, _relation_spec(findings, "different_arguments"))


def _softmax_scale(model: nn.Module, findings: Sequence[Finding]) -> bool:
    return _op_patch(model, _relation_spec(findings, "missing_op", "extra_op", "different_arguments"))


def _level_patch(model: nn.Module, findings: Sequence[Finding]) -> bool:
    from percepiano_parity.diagnosis.fix_patches import install_level_patch

    spec = _relation_spec(findings, "feature_permutation", "item_permutation", "time_reversal")
    return bool(spec) and install_level_patch(model, spec)


def _zero_padding_rows(model: nn.Module, findings: Sequence[Finding]) -> bool:
    from percepiano_parity.diagnosis.fix_patches import install_padding_patch

    spec = _relation_spec(findings, "padding_rows")
    return bool(spec) and install_padding_patch(model, spec)


def _permute_gate_rows(model: nn.Module, findings: Sequence[Finding]) -> bool:
    from percepiano_parity.diagnosis.fix_patches import install_gate_patch

    spec = _relation_spec(findings, "lstm_gate_order")
    return bool(spec) and install_gate_patch(model, str(spec["module"]), list(spec["blocks"]))


def _untie(model: nn.Module, findings: Sequence[Finding]) -> bool:
    """Give every later use of a shared module its own copy (the reference's weights are copied in afterwards)."""
    done = False
    for f in findings:
        if f.kind != "structure.tied_parameters":
            continue
        paths = [str(p) for p in f.evidence.get("candidate_names", [])]  # every name the shared module has
        if len(paths) < 2:
            continue
        try:
            first = model.get_submodule(paths[0])
        except AttributeError:
            continue
        for path in paths[1:]:
            done = _set_module(model, path, copy.deepcopy(first)) or done
    return done


FIXES: dict[str, FixFn] = {
    "untie": _untie,
    "patch_op": _patch_op,
    "patch_op_input": _patch_op_input,
    "eval_randomness_off": _eval_randomness_off,
    "softmax_axis": _softmax_axis,
    "softmax_scale": _softmax_scale,
    "permute_level_output": _level_patch,
    "reorder_level_items": _level_patch,
    "reverse_level_time": _level_patch,
    "permute_gate_rows": _permute_gate_rows,
    "zero_padding_rows": _zero_padding_rows,
    "remove_module": _remove_module,
    "float32": _float32,
    "restore_setting": _restore_setting,
    "restore_shape": _restore_setting,
    "restore_semantics": _restore_semantics,
    "restore_module": _restore_module,
}


def apply_fix(action: str, model: nn.Module, findings: Sequence[Finding]) -> nn.Module | None:
    """A fixed deep copy of `model`, or None when the action does not apply mechanically."""
    fn = FIXES.get(action)
    if fn is None:
        return None
    fixed = copy.deepcopy(model)
    return fixed if fn(fixed, findings) else None


def verify(explanation: Explanation, findings_before: Sequence[Finding], findings_after: Sequence[Finding],
           logits_before: float, logits_after: float, loss_before: float, loss_after: float) -> None:
    """Record on the explanation whether its findings disappeared and how much difference it accounts for."""
    claimed = {k for k in explanation.evidence}
    after = {f.key for f in findings_after if f.severity >= Severity.WARNING}
    significant_before = {f.key for f in findings_before if f.key in claimed and f.severity >= Severity.WARNING}
    explanation.fix_verified = not (significant_before & after)

    def share(before: float, after_: float) -> float | None:
        return None if before == 0 else max(0.0, 1.0 - after_ / before)
    explanation.effect_measured = {
        **explanation.effect_measured,
        "logits_max_abs_before": logits_before, "logits_max_abs_after": logits_after,
        "loss_diff_before": loss_before, "loss_diff_after": loss_after,
        "share_of_logits_difference_explained": share(logits_before, logits_after),
        "share_of_loss_difference_explained": share(loss_before, loss_after),
        "remaining_significant_findings": len(after),
    }
