"""Verified fixes: an explanation's mechanical fix applied to a private copy of the candidate (without
editing its code), the audit re-run on it, and what the fix accounts for.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.checks import run_model_checks
from percepiano_parity.compare.engine import Engine, EngineOptions
from percepiano_parity.compare.first_op import call_site, place_constants
from percepiano_parity.compare.noise import FloorMeter
from percepiano_parity.compare.relations.padding import model_lengths
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import Explanation, Report
from percepiano_parity.diagnosis.catalog import rule_by_id
from percepiano_parity.subjects.subject import Subject

# ----------------------------------------------------------------------------------------------------------
# Mechanical fixes for measured relations, applied to a private copy of the candidate without editing its code.
#
# A relation's inverse is installed on the copy with forward hooks, so the audit can re-run and see whether the
# explained findings disappear:
#
# * an operation patch: while the module that runs the operation executes, a `TorchFunctionMode` intercepts
#   the calls of that function at that source line and calls it with the original's arguments, with the
#   original's function, without it, or on the input the original gives it;
# * a level patch: the level's output (a module's output, or `level_patches` of the bundled replica) gets the
#   layout change undone: columns permuted back, batch items put back in order, channels flipped back in time;
# * a gate patch: while the LSTM-like module runs, its gate weights are seen in the reordered layout (a view
#   that gradients flow through back into the stored parameters, so gradients stay comparable).
# Hooks read the module they are called with, never a captured one, so deep copies of the patched model work.

DROPOUTS = frozenset({"dropout", "alpha_dropout", "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d"})


class OpPatch(TorchFunctionMode):
    """Calls of a function in `names` made at `site` (anywhere when None) go through `transform(func, args,
    kwargs)` instead."""

    def __init__(self, names: frozenset[str], site: str | None,
                 transform: Callable[[Callable[..., Any], tuple, dict], Any]) -> None:
        super().__init__()
        self.names, self.site, self.transform = names, site, transform

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.names and (self.site is None or call_site() == self.site):
            return self.transform(func, tuple(args), dict(kwargs))
        return func(*args, **kwargs)


def _with_constants(func: Callable[..., Any], args: tuple, kwargs: dict, constants: dict[str, Any]) -> Any:
    args_l = list(args)
    place_constants(func, args_l, kwargs, constants)
    return func(*args_l, **kwargs)


def _named_function(name: str) -> Callable[..., Any] | None:
    for owner in (torch.nn.functional, torch, torch.Tensor):
        fn = getattr(owner, name, None)
        if callable(fn):
            return fn
    return None


def op_transform(spec: dict[str, Any]) -> Callable[[Callable[..., Any], tuple, dict], Any] | None:
    """The call replacement a fix spec asks for (see the module docstring), or None when it cannot apply."""
    action = spec.get("action")
    constants = dict(spec.get("constants") or {})
    if action == "eval_randomness_off":
        return lambda func, args, kwargs: args[0] if args else kwargs.get("input")
    if action == "patch_op" and spec.get("identity"):
        return lambda func, args, kwargs: next(a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor))
    if action == "patch_op" and spec.get("replace_with"):
        other = _named_function(str(spec["replace_with"]))
        if other is None:
            return None
        return lambda func, args, kwargs: _with_constants(other, (args[0],), {}, {
            k: v for k, v in constants.items() if not k.isdigit() or k != "0"})
    if action == "patch_op":
        return lambda func, args, kwargs: _with_constants(func, args, kwargs, constants)
    if action == "patch_op_input":
        fn = _named_function(str(spec.get("apply")))
        if fn is None:
            return None
        position = int(spec.get("input_position", 0))
        extra = {k: v for k, v in constants.items() if k != "0"}

        def patch_input(func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
            tensors = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
            if position >= len(tensors):
                return func(*args, **kwargs)
            args_l = list(args)
            args_l[tensors[position]] = _with_constants(fn, (args_l[tensors[position]],), {}, extra)
            return func(*args_l, **kwargs)
        return patch_input
    return None


def install_op_patch(model: nn.Module, module_path: str | None, names: frozenset[str], site: str | None,
                     transform: Callable[[Callable[..., Any], tuple, dict], Any]) -> bool:
    """Run `model.<module_path>` under an OpPatch (entered by a pre-hook, left by an always-called hook).
    `module_path` None: the model and each of its direct children (a forward that calls its submodules'
    methods rather than the model itself still passes through one of them)."""
    if module_path is None:
        targets = [model, *model.children()]
    else:
        try:
            targets = [model.get_submodule(module_path) if module_path else model]
        except AttributeError:
            return False
    modes: list[OpPatch] = []

    def enter(_m: nn.Module, _a: Any) -> None:
        mode = OpPatch(names, site, transform)
        mode.__enter__()
        modes.append(mode)

    def leave(_m: nn.Module, _a: Any, _o: Any) -> None:
        if modes:
            modes.pop().__exit__(None, None, None)

    for module in targets:
        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave, always_call=True)
    return True


# ------------------------------------------------------------------------------------------ level patches


def _blocks_index(blocks: list[list[int]], width: int) -> Tensor:
    index = torch.arange(width)
    for start, end, source in blocks:
        index[start:end] = torch.arange(source, source + end - start)
    return index


def _real_lengths(value: Tensor) -> Tensor:
    """Notes per item, read from an (N, T, C) note-space value whose padding rows are zero."""
    return (value.detach().abs().sum(-1) > 0).sum(1)


def _lengths_from_inputs(args: tuple, n: int) -> Tensor | None:
    """A module's item lengths: a 1-D integer tensor of n entries among its inputs, else the non-zero rows of
    its first (N, T, C) input."""
    for a in args:
        if isinstance(a, Tensor) and a.dim() == 1 and a.numel() == n and not a.is_floating_point():
            return a.cpu()
    first = next((a for a in args if isinstance(a, Tensor) and a.dim() == 3), None)
    return _real_lengths(first).cpu() if first is not None else None


LevelTransform = Callable[[Tensor, Tensor | None], Tensor]


def level_transform(spec: dict[str, Any]) -> LevelTransform | None:
    """value, the batch's item lengths (None when unknown) -> the value with the layout change undone."""
    action = spec.get("action")
    if action == "permute_level_output":
        blocks = [list(b) for b in spec.get("blocks", [])]
        return lambda v, _lengths: v[..., _blocks_index(blocks, v.shape[-1]).to(v.device)]
    if action == "reorder_level_items":
        descending = spec.get("order") == "length_desc"

        def unsort(v: Tensor, lengths: Tensor | None) -> Tensor:
            # item k of the level holds batch item order[k]: put each back in its own slot
            if lengths is None:
                return v
            order = torch.sort(lengths, descending=descending, stable=True).indices.to(v.device)
            out = torch.empty_like(v)
            out[order] = v
            return out
        return unsort
    if action == "reverse_level_time":
        spans = [tuple(s) for s in spec.get("channels", [])]

        def unreverse(v: Tensor, lengths: Tensor | None) -> Tensor:
            out = v.clone()
            for b, length in enumerate((lengths if lengths is not None else _real_lengths(v)).tolist()):
                for s, e in spans:
                    out[b, :length, s:e] = v[b, :length, s:e].flip(0)
            return out
        return unreverse
    return None


class LevelPatch(nn.Module):
    """A bundled replica's `level_patches` entry applying a level transform (given the batch's lengths)."""

    wants_lengths = True

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = dict(spec)

    def forward(self, value: Tensor, lengths: Tensor | None = None) -> Tensor:
        transform = level_transform(self.spec)
        return transform(value, lengths) if transform is not None else value


def install_level_patch(model: nn.Module, spec: dict[str, Any]) -> bool:
    """Undo a level's layout change on `model` (see the module docstring); False when it cannot apply."""
    level, transform = spec.get("level"), level_transform(spec)
    if transform is None or not level:
        return False
    if hasattr(model, "compute_level"):  # the bundled replica: its level_patches seam
        patches = getattr(model, "level_patches", None)
        if patches is None:
            model.level_patches = nn.ModuleDict()
            patches = model.level_patches
        patches[level] = LevelPatch(spec) if level not in patches else _Chain(patches[level], LevelPatch(spec))
        return True
    where = spec.get("level_module")
    if not where and spec.get("level_site"):
        return _install_site_patch(model, dict(spec["level_site"]), transform)
    if not where:
        return False
    path, _, side = str(where).partition(":")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        return False
    if side == "input":
        def pre(_m: nn.Module, args: tuple) -> tuple:
            if not args or not isinstance(args[0], Tensor):
                return args
            return (transform(args[0], _lengths_from_inputs(args, args[0].shape[0])), *args[1:])
        module.register_forward_pre_hook(pre)
    else:
        def post(_m: nn.Module, args: tuple, out: Any) -> Any:
            if isinstance(out, Tensor):
                return transform(out, _lengths_from_inputs(args, out.shape[0]))
            return out
        module.register_forward_hook(post)
    return True


class _Chain(nn.Module):
    wants_lengths = True

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, value: Tensor, lengths: Tensor | None = None) -> Tensor:
        value = self.first(value, lengths) if getattr(self.first, "wants_lengths", False) else self.first(value)
        return self.second(value, lengths)


# ------------------------------------------------------------------------------------------ gate patches


def install_gate_patch(model: nn.Module, module_path: str, blocks: list[int]) -> bool:
    try:
        module = model.get_submodule(module_path)
    except AttributeError:
        return False
    names = [n for n, _ in module.named_parameters(recurse=False)
             if n.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh"))]
    if not names:
        return False
    order = list(blocks)

    def enter(m: nn.Module, _a: Any) -> None:
        stored = {n: m._parameters[n] for n in names}
        m.__dict__["_parity_gate_stored"] = stored
        for n, p in stored.items():
            m._parameters[n] = torch.cat([p.chunk(4, dim=0)[i] for i in order], dim=0)  # type: ignore[assignment]

    def leave(m: nn.Module, _a: Any, _o: Any) -> None:
        stored = m.__dict__.pop("_parity_gate_stored", None)
        if stored:
            m._parameters.update(stored)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave, always_call=True)
    return True


def _install_site_patch(model: nn.Module, site: dict[str, Any], transform: LevelTransform) -> bool:
    """Undo a layout change at the operation where a level was found by value (compare.locate): its result goes
    through the transform, with the batch's lengths read from the model's forward arguments. Only whole,
    padded (batch- or time-first) forms: a slice or a packed form cannot be undone in place."""
    if site.get("layout") not in ("batch_first", "time_first") or not site.get("whole") or \
            str(site.get("op", "")).startswith("module "):
        return False
    time_first = site["layout"] == "time_first"
    lengths: list[Tensor | None] = [None]

    def remember(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        lengths[0] = model_lengths(args, kwargs)

    def undo(func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        out = func(*args, **kwargs)
        value = out[0] if isinstance(out, tuple) else out
        if not isinstance(value, Tensor) or value.dim() != 3:
            return out
        v = value.transpose(0, 1) if time_first else value
        fixed = transform(v, lengths[0])
        fixed = fixed.transpose(0, 1) if time_first else fixed
        return (fixed, *out[1:]) if isinstance(out, tuple) else fixed

    model.register_forward_pre_hook(remember, with_kwargs=True)
    return install_op_patch(model, "", frozenset({str(site["op"])}), str(site["where"]), undo)


def install_padding_patch(model: nn.Module, spec: dict[str, Any]) -> bool:
    """Zero levels' padding rows at the operations where they were found by value (a whole tensor, or the
    channels of a concatenation a level is a slice of); see compare.relations.padding."""
    from percepiano_parity.compare.relations.padding import install_zero_padding

    return install_zero_padding(model, list(spec.get("targets") or [])) is not None


# ----------------------------------------------------------------------------------------------------------
# Verified fixes: apply an explanation's fix mechanically to a copy of the candidate and measure it.
#
# A fix is applied only to a deep copy (never the user's object or files). The affected checks are re-run on
# the same batches; the fix is verified when the findings the explanation claimed disappear, and its effect is
# how much of the logits and loss difference it removes. Explanations without a mechanical fix get `None`.

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

    spec = _relation_spec(findings, "feature_permutation", "item_permutation", "time_reversal")
    return bool(spec) and install_level_patch(model, spec)


def _zero_padding_rows(model: nn.Module, findings: Sequence[Finding]) -> bool:

    spec = _relation_spec(findings, "padding_rows")
    return bool(spec) and install_padding_patch(model, spec)


def _permute_gate_rows(model: nn.Module, findings: Sequence[Finding]) -> bool:

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


# ----------------------------------------------------------------------------------------------------------
# Verified fixes: each explanation's mechanical fix applied to a copy of the candidate, and the audit re-run on
# the first batches, so a report can say whether the fix makes the explained findings disappear and how much of
# the logits and loss difference it accounts for.

FIX_BATCHES = 2  # batches re-run per attempted fix (the first ones of the audit)


def verify_fixes_in_report(report: Report, state: ComparisonState, reference: Subject, candidate: Subject,
                           batches: Sequence[CanonicalBatch], variant: str, config: ModelConfig,
                           engine_options: EngineOptions, floor_meter: FloorMeter | None = None) -> None:
    """Apply each explanation's mechanical fix to a copy of the candidate, re-run, record the result.

    Diagnosis is add-only: a fix that cannot be applied or fails leaves `fix_verified` as None and never
    changes a verdict.
    """
    before = report.findings
    logits_before = state.levels["logits"].real.max_abs if "logits" in state.levels else 0.0
    loss_before = state.loss.max_abs
    for exp in report.explanations:
        rule = rule_by_id(exp.id)
        action = rule.fix_action if rule else None
        if not action:
            continue
        claimed = [f for f in before if f.key in set(exp.evidence)]
        try:
            fixed_model = apply_fix(action, candidate.model, claimed)
            if fixed_model is None:
                continue
            fixed = copy.copy(candidate)
            fixed.model = fixed_model
            options = copy.copy(engine_options)
            options.init_check = False
            options.reuse_floors = state.floors
            options.floor_meter = floor_meter  # can still add gradient floors the main run did not need
            options.progress = None
            engine = Engine(reference, fixed, variant=variant, config=config, options=options)
            after_state = engine.run(list(batches[:FIX_BATCHES]))
            after = [f for c in run_model_checks(after_state, engine_options.tolerances) for f in c.findings]
            logits_after = after_state.levels["logits"].real.max_abs if "logits" in after_state.levels else 0.0
            verify(exp, claimed, after, logits_before, logits_after, loss_before, after_state.loss.max_abs)
        except Exception as exc:  # noqa: BLE001 - diagnosis never breaks the audit
            exp.effect_measured = {**exp.effect_measured, "fix_error": f"{type(exc).__name__}: {exc}"[:200]}
