"""`parity train-compare`: the original and a replica trained side by side on real data (checks.outcome), a long
run, not CI. The replica is the bundled one, a library deviation of it, or the user's own through the same
adapter as `parity check --replica`.

    parity train-compare --original PATH --data CACHE [--fold K] [--epochs N]
                         [--replica module:factory | --deviation NAME]
                         [--model-config default|small|FILE.yml] [--max-batches N] [--seed S]

One named step per stage: the reference and the candidate (subjects), the replica loaded with the original's
initial weights (a user's model: paired as `parity check` pairs it, by a forward comparison on the first training
batch, then stepped through its own calling path, optimizer and loss as the trajectory check reads them), the real
batches of the fold (batches.real.loader), the three runs (original, replica, replica one float32 rounding step
off: the noise; compare.training.train_compare) and the comparison (checks.outcome), diagnosis, the report
writers (with the curves in the HTML report). Exit codes as `parity check`.
"""

from __future__ import annotations

import argparse
from typing import Any

from percepiano_parity.batches.real.cache import CacheError
from percepiano_parity.batches.real.loader import RealData
from percepiano_parity.checks.outcome import outcome_check
from percepiano_parity.commands.audit import run_info
from percepiano_parity.compare.training import (
    OriginalSide,
    Probe,
    ReplicaSide,
    perturb_last_bit,
    spec_of,
    train_compare,
)
from percepiano_parity.compare.weight_mapping import copy_weights, map_weights
from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.options import CheckOptions
from percepiano_parity.core.report import Report
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
from percepiano_parity.subjects.sides import resolve_candidate, resolve_reference


def run_train_compare(original: str, cache: str, *, fold: int = 0, epochs: int = 2, deviation: str | None = None,
                      replica: str | None = None, variant: str = "han-total", model_config: str = "default",
                      max_batches: int | None = None, seed: int = 0, fail_on: Severity = Severity.WARNING,
                      progress: Any = None, notify: Any = None) -> Report:
    """Train both sides and report. Raises UsageError (one line) for a bad cache, original or option; the user's
    replica (`replica`: module:factory or path.py:factory) fails with the one-line error of `parity check`."""
    if epochs < 1 or not 0 <= fold <= 3 or (max_batches is not None and max_batches < 1):
        raise UsageError("--epochs and --max-batches must be positive and --fold one of 0-3")
    if replica and deviation:
        raise UsageError("--deviation applies to the bundled replica; it cannot be combined with --replica")
    try:
        data = RealData.open(cache)
    except CacheError as exc:
        raise UsageError(f"--data: {exc}") from None
    if deviation is not None:
        from percepiano_parity.subjects.deviations import DEVIATIONS

        if deviation not in DEVIATIONS:
            raise UsageError(f"--deviation: unknown deviation {deviation!r}; see `parity deviations`")
    options = CheckOptions(original=original, data=cache, variant=variant, model_config=model_config,
                           deviation=deviation, replica=replica, seed=seed, training_checks=False)
    reference = resolve_reference(options, notify or (lambda _m: None))
    candidate = resolve_candidate(options, reference.variant, reference.config, reference.seed)
    original_model = reference.original.build(reference.variant, reference.config, reference.seed)
    model = candidate.subject.model
    num_label = reference.config.num_label
    split = f"performer4fold:{fold}"

    def train(epoch: int) -> list:
        n = max_batches or 10 ** 6
        return data.batches(n, seed + epoch, f"{split}:train", num_label=num_label)

    valid = data.batches(max_batches or 10 ** 6, seed, f"{split}:valid", num_label=num_label)
    recipe = candidate.recipe if candidate.recipe is not None else ORIGINAL_RECIPE
    if candidate.call is not None:  # a user's model: paired, called and trained as `parity check` does
        spec, adapter, loss, overrides = _user_side(options, reference, candidate, train(0)[:2])
    else:
        spec, adapter, loss, overrides = spec_of(recipe), None, None, None
    mapping = map_weights(original_model, model, overrides=overrides)
    copy_weights(original_model, model, mapping)
    same_start = (f"the original's, copied into the replica ({len(mapping.pairs)} tensors mapped, "
                  f"{len(mapping.unmatched_reference)} of the original's unmatched)")
    probe = Probe(weight_decay_scale=1.0, step_size=ORIGINAL_RECIPE.scheduler_step_size)
    described = "replica" if candidate.call is None else f"replica {replica}" + (
        f" with its own loss ({loss.source})" if loss is not None else "")
    sides = [OriginalSide(reference.original, reference.variant, original_model, ORIGINAL_RECIPE),
             ReplicaSide("replica", model, spec, described, adapter=adapter, loss=loss),
             ReplicaSide("noise", model, spec, f"{described}, initial weights one float32 step off",
                         adapter=adapter, loss=loss)]
    perturb_last_bit(sides[2].model)
    curves = train_compare(sides, train, valid, epochs, probe, progress)
    settings = {"command": "train-compare", "fail_on": fail_on.label, "data": str(data.path), "split": split,
                "epochs": epochs, "train_batches_per_epoch": len(train(0)), "valid_batches": len(valid),
                "model_config": model_config, "deviation": deviation, "seed": seed,
                "initial_weights": same_start,
                "dropout": "off on both sides", "recipe_replica": recipe.to_dict() if hasattr(recipe, "to_dict")
                else str(recipe)}
    if replica:
        settings["replica"] = replica
    check = outcome_check(curves[0], curves[1], curves[2], settings={"deviation": deviation})
    explanations, unexplained = diagnose(check.findings)
    subjects = [{"name": "original", "kind": "original (train_m2pf.train_step)", "variant": reference.variant,
                 "source": str(reference.original.root), "revision": reference.subject.info.revision,
                 "shims": [], "warnings": []},
                {"name": candidate.subject.info.name, "kind": candidate.subject.info.kind,
                 "variant": reference.variant, "source": candidate.subject.info.source, "revision": "",
                 "shims": [], "warnings": []}]
    return Report(variant=reference.variant, subjects=subjects, checks=[check], explanations=explanations,
                  unexplained=unexplained, settings=settings, run=run_info())


def _user_side(options: CheckOptions, reference: Any, candidate: Any, first: list) -> tuple[Any, Any, Any, Any]:
    """(optimizer spec, calling adapter, own loss or None, weight-map overrides) of a user's model.

    The pairing is the one `parity check` settles (names, call order, then values on a forward comparison of the
    first training batch, and the adapter's mapping); the model is then called through the calling path that
    comparison used, with the optimizer and the training loss the recipe check reads from it.
    """
    from percepiano_parity.commands.check import compare, read_inputs, settled_pairs
    from percepiano_parity.subjects.calling import CalledThrough, model_input
    from percepiano_parity.subjects.recipe import read_candidate

    comparison = compare(reference, candidate, first[:1], options, read_inputs(options), None, compare_init=False)
    adapter = CalledThrough(candidate.adapter, candidate.call)
    model = candidate.subject.model
    read = read_candidate(candidate.recipe, model=model, adapter=adapter,
                          inputs=[model_input(model, b) for b in first])
    spec = spec_of(read)
    spec.param_names = {id(p): n for n, p in model.named_parameters()}
    return spec, adapter, read.loss, settled_pairs(comparison)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("train-compare", help="train the original and the replica side by side on real data and "
                       "compare their learning curves (a long run, not CI)")
    p.add_argument("--original", metavar="PATH", required=True, help="a checkout of the original")
    p.add_argument("--data", metavar="CACHE", required=True, help="a cache made by `parity data prepare`")
    p.add_argument("--fold", metavar="K", type=int, default=0, help="performer4fold fold 0-3 (default 0)")
    p.add_argument("--epochs", metavar="N", type=int, default=2, help="epochs (default 2)")
    p.add_argument("--replica", metavar="SPEC", default=None, help="your replica (module:factory or path.py:factory, "
                   "with its adapter as for `parity check --replica`; default: the bundled faithful replica)")
    p.add_argument("--deviation", metavar="NAME", default=None, help="train a library deviation of the replica")
    p.add_argument("--variant", metavar="ID", default="han-total", help="(default han-total)")
    p.add_argument("--model-config", metavar="CONFIG", default="default", help="default, small or FILE.yml")
    p.add_argument("--max-batches", metavar="N", type=int, default=None, help="cap the batches of each epoch and "
                   "of validation (default: the whole split)")
    p.add_argument("--seed", metavar="S", type=int, default=0, help="model and batch-order seed (default 0)")
    p.add_argument("--report-dir", metavar="DIR", default="parity-report", help="(default: parity-report)")
    p.add_argument("--format", metavar="LIST", default="console,md,json,html,junit", help="report formats")
    p.add_argument("--fail-on", metavar="SEVERITY", default="warning", help="info, warning or error")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    p.set_defaults(handler=cmd_train_compare)
    return p


def cmd_train_compare(args: argparse.Namespace) -> int:
    from percepiano_parity.commands.report_output import check_report_folder, consoles, emit_report
    from percepiano_parity.reports import parse_formats
    from percepiano_parity.reports.progress import progress

    try:
        fail_on = Severity.parse(args.fail_on)
        formats = parse_formats(args.format)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_report_folder(args.report_dir, formats)  # before the training runs: not after them
    out, err = consoles()
    with progress(err) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done)

        report = run_train_compare(args.original, args.data, fold=args.fold, epochs=args.epochs,
                                   deviation=args.deviation, replica=args.replica, variant=args.variant,
                                   model_config=args.model_config,
                                   max_batches=args.max_batches, seed=args.seed, fail_on=fail_on,
                                   progress=on_progress)
    emit_report(report, formats, args.report_dir, fail_on, out)
    return int(report.exit_code(fail_on))
