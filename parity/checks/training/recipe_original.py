"""The original's effective recipe for a variant: read from a checkout (see recipe_source), or the recorded one
(`replica.recipe.ORIGINAL_RECIPE` with `SOURCES`) when there is no checkout or a bundle recorded it.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from percepiano_parity.checks.training.recipe_source import (  # noqa: F401
    KEYS,
    LONGEST_SEGMENT,
    MAIN,
    PARSER,
    README,
    RECIPE_DESTS,
    REPLICA_UPDATE_ORDER,
    TRAIN,
    Argument,
    LoopFact,
    Setting,
    _call_text,
    _called_in_loader_loop,
    _criterion_facts,
    _evaluate_condition,
    _find,
    _functions,
    _kwarg_source,
    _line_at,
    _literal,
    _sigmoid_aliases,
    _under_if,
    effective_arguments,
    parse_parser_defaults,
    read_loop_facts,
)
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, SOURCES, Recipe


@dataclass
class OriginalRecipe:
    """The original's effective configuration for one variant."""

    values: dict[str, Any]
    sources: dict[str, str]
    mode: str  # "checkout" or "recorded"
    root: Path | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # update order, valid-loss divisor...

    def as_recipe(self) -> Recipe:
        """The configuration as a replica Recipe (keys the checkout did not tell keep the recorded values)."""
        fields = {k: v for k, v in self.values.items() if k in Recipe.__dataclass_fields__ and v is not None}
        if "betas" in fields:
            fields["betas"] = tuple(fields["betas"])
        if fields.get("grad_clip") is not None:
            fields["grad_clip"] = float(fields["grad_clip"])
        return ORIGINAL_RECIPE.with_(**fields)


def recipe_values(recipe: Recipe) -> dict[str, Any]:
    """A Recipe as the recipe check's values: its fields (betas as a tuple) and the weight-decay coupling."""
    values = recipe.to_dict()
    values["betas"] = tuple(values["betas"])
    values["weight_decay_coupling"] = recipe.weight_decay_coupling
    return values


def recorded_recipe() -> OriginalRecipe:
    values = recipe_values(ORIGINAL_RECIPE)
    return OriginalRecipe(values, {k: f"recorded: {SOURCES.get(k, 'replica.recipe.ORIGINAL_RECIPE')}" for k in values},
                          "recorded", notes=["no checkout: compared against the recorded recipe "
                                             "(replica.recipe.ORIGINAL_RECIPE and SOURCES)"])


def _roots(source: Any) -> tuple[Path, Path, Any] | None:
    """(checkout root, code dir, scripts analysis) of an adapter Original or a checkout path."""
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        from percepiano_parity.original_adapter.scripts import analyse_scripts

        root = Path(source)
        code = root / "virtuoso" / "virtuoso"
        if not (code / "parser.py").is_file():
            return None
        return root, code, analyse_scripts(root)
    root = Path(source.root)
    code = Path(source.checkout.code_dir) if hasattr(source, "checkout") else root / "virtuoso" / "virtuoso"
    return root, code, source.scripts() if hasattr(source, "scripts") else None


def original_recipe(source: Any, variant: str) -> OriginalRecipe:
    """The original's effective recipe for `variant`, from a checkout (Original or path), else recorded. An
    OriginalRecipe (e.g. replayed from a bundle) is returned as it is."""
    if isinstance(source, OriginalRecipe):
        return source
    found = _roots(source)
    if found is None:
        return recorded_recipe()
    root, code_dir, scripts = found
    parser_path = code_dir / "parser.py"
    if not parser_path.is_file():
        rec = recorded_recipe()
        rec.notes.append(f"{parser_path} missing")
        return rec
    args, notes = effective_arguments(parse_parser_defaults(parser_path), scripts, variant)
    facts, fact_notes = read_loop_facts(code_dir, root)
    notes += fact_notes
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    plain = {k: s.value for k, s in args.items()}

    def from_arg(key: str, dest: str, transform: Callable[[Any], Any] = lambda v: v, prefix: str = "") -> None:
        if dest in args:
            values[key] = transform(args[dest].value)
            sources[key] = "; ".join(([prefix] if prefix else []) + list(args[dest].sources))

    def from_fact(key: str, fact: str, value: Any = None) -> None:
        if fact in facts:
            values[key] = facts[fact].value if value is None else value
            sources[key] = facts[fact].source

    from_fact("optimizer", "optimizer")
    call = facts.get("optimizer_call")
    opt_class = values.get("optimizer")
    given = _call_keywords(call.value) if call else {}
    convert: dict[str, Callable[[Any], Any]] = {"lr": float, "weight_decay": float, "eps": float, "amsgrad": bool,
                                                "decoupled_weight_decay": bool, "betas": tuple}
    for key in ("lr", "weight_decay", "betas", "eps", "amsgrad", "decoupled_weight_decay"):
        ref = given.get(key)
        if ref and ref.startswith("args."):
            from_arg(key, ref[5:], convert[key], prefix=f"{call.source} ({key}={ref})")
        elif ref is not None:
            try:
                values[key], sources[key] = convert[key](ast.literal_eval(ref)), f"{call.source} ({key}={ref})"
            except (ValueError, SyntaxError, TypeError):
                notes.append(f"{key}={ref} in the optimizer call is not a literal: not read")
        elif opt_class and hasattr(torch.optim, opt_class):
            default = inspect.signature(getattr(torch.optim, opt_class)).parameters.get(key)
            if default is not None and default.default is not inspect.Parameter.empty:
                values[key] = tuple(default.default) if key == "betas" else default.default
                sources[key] = f"{call.source if call else TRAIN} (not passed: torch.optim.{opt_class} default)"
    if opt_class:
        decoupled = opt_class == "AdamW" or bool(values.pop("decoupled_weight_decay", False))
        values["weight_decay_coupling"] = "decoupled" if decoupled else "l2"
        sources["weight_decay_coupling"] = (
            f"{sources.get('optimizer', TRAIN)}: " + ("weight decay decoupled from the adaptive step" if decoupled
                                                      else "weight decay added to the gradient (L2), not decoupled"))
    sources.pop("decoupled_weight_decay", None)
    from_fact("scheduler", "scheduler")
    sched_call = facts.get("scheduler_call")
    for key, kw in (("scheduler_step_size", "step_size"), ("scheduler_gamma", "gamma")):
        ref = _kwarg_source(sched_call.value, kw) if sched_call else None
        if ref and ref.startswith("args."):
            from_arg(key, ref[5:], prefix=f"{sched_call.source} ({kw}={ref})")
    from_fact("scheduler_interval", "scheduler_interval")
    if "clip" in facts:
        ref = facts["clip"].value
        if ref.startswith("args."):
            from_arg("grad_clip", ref[5:], float, prefix=facts["clip"].source)
        else:
            try:
                values["grad_clip"], sources["grad_clip"] = float(ref), facts["clip"].source
            except ValueError:
                pass
        from_fact("grad_clip_algorithm", "clip_algorithm")
    else:
        values["grad_clip"], sources["grad_clip"] = None, f"{TRAIN}: no clip_grad_norm_ in train_step"
    from_fact("accumulate_grad_batches", "accumulate_grad_batches")
    from_arg("batch_size", "batch_size", int)
    from_arg("epochs", "num_epochs", int)
    from_fact("precision", "precision")
    loss_kind = _loss_kind(facts, plain, variant)
    if loss_kind:
        values["loss"], sources["loss"] = loss_kind
    reduction = _loss_reduction(facts, plain)
    if reduction:
        values["loss_reduction"], sources["loss_reduction"] = reduction
    from_fact("r2_average", "r2_average")
    if "no_augment" in args:
        values["key_augmentation"] = not bool(args["no_augment"].value)
        sources["key_augmentation"] = "; ".join(args["no_augment"].sources)
    from_arg("slice_length", "len_slice", int)
    from_fact("slices_regenerated_each_epoch", "slices_regenerated_each_epoch")
    from_fact("validation", "validation")
    from_fact("checkpoint_criterion", "checkpoint_criterion")
    from_fact("checkpoint_mode", "checkpoint_mode")
    from_fact("early_stopping", "early_stopping")
    if "label_file_path" in args:
        given = args["label_file_path"].value
        intended = facts.get("label_file_intended")
        values["label_file"] = intended.value if intended else given
        sources["label_file"] = "; ".join(
            ([f"intended per {intended.source}"] if intended else [])
            + [f"scripts pass {given!r} relative to virtuoso/, where no such file exists"]
            + list(args["label_file_path"].sources[-2:]))
        values["label_file_as_passed"] = given
    from_arg("seed", "th_seed", int)
    extra = {k: facts[k].value for k in ("update_order", "valid_loss_divisor") if k in facts}
    for key in KEYS:
        if key not in values:
            values[key] = recipe_values(ORIGINAL_RECIPE).get(key)
            sources[key] = f"recorded: {SOURCES.get(key, '')} (not found in the checkout)"
            notes.append(f"{key}: not found in the checkout, recorded value used")
    return OriginalRecipe(values, sources, "checkout", root=root, notes=notes, extra=extra)


def _loss_kind(facts: dict[str, LoopFact], args: dict[str, Any], variant: str) -> tuple[str, str] | None:
    criterion, where = None, ""
    for key in sorted(k for k in facts if k.startswith("criterion_")):
        condition, cls = facts[key].value
        truth = _evaluate_condition(condition, args)
        if truth:
            criterion, where = cls, facts[key].source
    branch = "multi_level" if args.get("multi_level") or variant.startswith(("han-", "bilstm")) else "single"
    call = facts.get(f"loss_call_{branch}")
    if call is None:
        return None
    kind = call.value
    if criterion is not None and not criterion.startswith("MSELoss"):
        kind = {"BCEWithLogitsLoss": "bce_with_logits", "BCELoss": "bce"}.get(criterion.split("(")[0], criterion)
    return kind, f"{call.source}; criterion {criterion or 'MSELoss (assumed)'} at {where or MAIN}"


def _loss_reduction(facts: dict[str, LoopFact], args: dict[str, Any]) -> tuple[str, str] | None:
    """The reduction of the criterion __main__ builds for these arguments (torch's default "mean")."""
    for key in sorted(k for k in facts if k.startswith("criterion_")):
        condition, cls = facts[key].value
        if _evaluate_condition(condition, args):
            found = re.search(r"reduction\s*=\s*['\"](\w+)['\"]", cls)
            return (found.group(1) if found else "mean"), (
                f"{facts[key].source}" + ("" if found else " (torch's default reduction 'mean')"))
    return None


def _call_keywords(call: str) -> dict[str, str]:
    """keyword -> source text of the first call in a statement (`x = th.optim.Adam(..., lr=args.lr)`)."""
    try:
        tree = ast.parse(call.strip())
    except SyntaxError:
        return {m.group(1): m.group(2).strip() for m in re.finditer(r"\b(\w+)\s*=\s*([^,()]+)", call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.keywords:
            return {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
    return {}


def from_bundle(bundle: Any) -> OriginalRecipe | None:
    """The recipe a reference bundle recorded from the checkout (None when it recorded none)."""
    recorded = getattr(bundle, "recipe", None)
    if recorded is None:
        return None
    values = dict(recorded["values"])
    if isinstance(values.get("betas"), list):
        values["betas"] = tuple(values["betas"])
    sources = dict(recorded.get("sources", {}))
    later = [k for k in KEYS if k not in values]  # keys this version reads that the bundle did not record
    recorded_values = recorded_recipe()
    for key in later:
        values[key] = recorded_values.values.get(key)
        sources[key] = recorded_values.sources.get(key, "")
    notes = list(recorded.get("notes", [])) + ([f"not in the bundle, recorded values used: {', '.join(later)}"]
                                               if later else []) + [
        f"read from the checkout ({recorded.get('mode')}) at recording time, revision "
        f"{bundle.manifest.get('original', {}).get('revision', '?')}; replayed from the bundle {bundle.path}"]
    return OriginalRecipe(values, sources, "recorded", notes=notes,
                          extra=dict(recorded.get("extra", {})))
