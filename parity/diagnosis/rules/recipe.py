"""Rules for the training recipe, and the figures and phrases their texts are filled with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import (
    Matcher,
    Rule,
    SourceRef,
    having,
    recipe_measure,
    significant,
    training_consequences,
)

# ----------------------------------------------------------------------------------------------------------
# The figures and phrases the recipe rules' texts are filled with, read from the findings they claim.
#
# Every placeholder a recipe rule uses is always filled here (a phrase says what was not measured instead of a
# blank): the recipe change, the trajectory's first differing step or that the probe did not show the change,
# and the per-key measurements (the loss ratio and element count, the clip values, the weight-decay ratio).

LABELS = 19  # the original's num_label
BATCH = 8  # the published scripts' --batch_size


def recipe_figures(claimed: Sequence[Finding]) -> dict[str, Any]:
    """recipe_measure's figures plus phrases every recipe rule may use (never left unfilled)."""
    out = recipe_measure(claimed)
    mismatches = having(claimed, "recipe.mismatch")
    by_key = {f.location: f for f in mismatches}
    if out.get("recipe_changes") is None:
        out["recipe_changes"] = "not read from the replica's objects; seen in the training trajectory"
    if not mismatches:
        out["replica_value"] = "a value the recipe check could not read"
    elif out.get("replica_value") is None:
        out["replica_value"] = "none"
    if not out.get("recipe_source"):
        out["recipe_source"] = "the original's recipe, see the recipe table"
    out["trajectory_phrase"] = _trajectory_phrase(claimed)
    for f in having(claimed, "trajectory.randomness"):
        out["randomness_max_rel"] = f.metrics.get("max_rel")
    if "r2_average" in by_key or any(f.kind.startswith("data.") for f in claimed):
        out["data_phrase"] = _data_phrase(claimed)
    # each group only for the keys it describes (the rules that use a phrase match only with those keys)
    for keys, phrases in ((("optimizer", "weight_decay_coupling", "weight_decay", "eps"), _optimizer_phrases),
                          (("grad_clip", "grad_clip_algorithm"), _clip_phrases), (("loss_reduction",), _loss_phrases),
                          (("checkpoint_criterion", "checkpoint_mode", "early_stopping"), _selection_phrases)):
        if any(k in by_key for k in keys):
            out.update(phrases(by_key))
    return out


def _trajectory_phrase(claimed: Sequence[Finding]) -> str:
    steps = [f for f in claimed if f.kind.startswith("trajectory.") and f.kind not in (
        "trajectory.summary", "trajectory.randomness") and f.metrics.get("first_differing_step") is not None]
    if not steps and not having(claimed, "trajectory.summary"):
        return "the training probe did not run, so its steps were not compared"
    if not steps:
        return ("the 5-step training probe shows no difference in loss, gradient norms, lr or parameters within "
                "its tolerances: too few steps for this setting to show")
    first = min(int(f.metrics["first_differing_step"]) for f in steps)
    named = {_SERIES.get(s) for f in steps for s in f.metrics.get("series") or ()} | {
        _SERIES.get(f.kind.removeprefix("trajectory.")) for f in steps}
    series = [n for n in ("the loss", "the gradient norms", "the learning rate", "the parameters") if n in named]
    if not series:
        return f"in the 5-step training probe the two sides part from step {first} on"
    listed = ", ".join(series[:-1]) + (" and " if len(series) > 1 else "") + series[-1]
    return f"in the 5-step training probe {listed} differ from step {first} on"


_SERIES = {"loss": "the loss", "grad_norm_before_clip": "the gradient norms", "grad_norm_after_clip": "the gradient norms",
           "grad_norm": "the gradient norms", "lr": "the learning rate", "drift": "the parameters"}


def _data_phrase(claimed: Sequence[Finding]) -> str:
    data = [f for f in claimed if f.kind.startswith("data.") and f.metrics.get("cases")]
    if not data:
        return "the data check compared no generated cases for it"
    differ = sum(int(f.metrics.get("differ") or 0) for f in data)
    cases = sum(int(f.metrics["cases"]) for f in data)
    return f"{differ} of {cases} generated cases differ"


def _value(f: Finding | None, side: str) -> Any:
    return None if f is None else f.evidence.get(side)


def _optimizer_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "optimizer" in by_key or "weight_decay_coupling" in by_key:
        out["optimizer_effect"] = _optimizer_effect(by_key)
    if "eps" in by_key:
        out["eps_phrase"] = _eps_phrase(by_key["eps"])
    if "weight_decay" in by_key:
        out["weight_decay_phrase"] = _decay_phrase(by_key["weight_decay"])
    return out


def _optimizer_effect(by_key: dict[str, Finding]) -> str:
    coupling = by_key.get("weight_decay_coupling")
    if coupling is not None and _value(coupling, "replica") == "decoupled":
        return ("weight decay is decoupled (as AdamW): the weights shrink by lr x weight_decay at every step apart "
                "from the adaptive step, where the original adds weight_decay x w to the gradient before Adam "
                "normalises it, so parameters with small gradients are decayed much harder there; the decay acts "
                "with another strength on every parameter from the first step")
    if coupling is not None:
        return ("weight decay is added to the gradient (L2, as torch.optim.Adam) where the original's optimizer "
                "decouples it, so the decay acts with another strength on every parameter from the first step")
    return (f"another update rule ({_value(by_key.get('optimizer'), 'replica')}) moves every parameter "
            "differently from the first step")


def _eps_phrase(eps: Finding) -> str:
    original, replica = _value(eps, "original"), _value(eps, "replica")
    if isinstance(original, (int, float)) and isinstance(replica, (int, float)):
        size = "smaller" if replica > original else "larger"
        return (f"with eps {replica:g} instead of {original:g}, parameters whose gradients are of the order of "
                f"{max(original, replica):g} or smaller take {size} steps than the original's")
    return f"with eps {replica!r} instead of {original!r} the steps of small-gradient parameters differ"


def _decay_phrase(decay: Finding) -> str:
    original, replica = _value(decay, "original"), _value(decay, "replica")
    if isinstance(original, (int, float)) and isinstance(replica, (int, float)) and original:
        return f"{replica:g} instead of {original:g} ({replica / original:.4g} x the original's pull towards zero)"
    if isinstance(replica, str):
        return f"{replica} instead of {original!r} on every parameter"
    return f"{replica!r} instead of {original!r}"


def _clip_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    clip = by_key.get("grad_clip")
    replica = _value(clip, "replica")
    original = _value(clip, "original")
    if clip is not None and replica is None:
        phrase = "no clipping at all (a Lightning Trainer clips only when gradient_clip_val is given)"
        effect = (f"Every step whose gradient norm exceeds {original} is rescaled to {original} in the original and "
                  "goes in unchanged in the replica: large gradients of early steps and rare batches move it further")
    elif clip is not None and original is None:
        phrase = f"clipping at a global norm of {replica} where the original does not clip"
        effect = f"Steps whose gradient norm exceeds {replica} are rescaled in the replica only"
    elif clip is not None:
        phrase = f"clipping at a global norm of {replica} instead of {original}"
        low, high = sorted((float(replica), float(original)))
        effect = (f"Steps whose gradient norm lies between {low:g} and {high:g} are rescaled on one side only, and "
                  f"steps above {high:g} are rescaled to another norm")
    else:
        phrase, effect = "the original's clip value", "Clipping acts as in the original"
    algorithm = by_key.get("grad_clip_algorithm")
    return {"clip_phrase": phrase, "clip_effect": effect, "clip_algorithm": _value(algorithm, "replica") or "value"}


def _loss_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    f = by_key.get("loss_reduction")
    reduction = _value(f, "replica")
    metrics = f.metrics if f is not None else {}
    ratio, items, labels = metrics.get("loss_ratio"), metrics.get("loss_items"), metrics.get("loss_labels")
    counted = {"sum": f"all items x labels ({BATCH} x {LABELS} = {BATCH * LABELS} at the published batch size)",
               "sum_over_labels": f"the {LABELS} labels of each item", "sum_over_items": "the items of a batch"}
    what = counted.get(str(reduction), f"a factor ({reduction})")
    if isinstance(ratio, (int, float)) and math.isfinite(ratio) and items and labels:
        measured = (f"measured on a probe batch of {items} items x {labels} labels = {items * labels} elements: "
                    f"the replica's loss is {ratio:.4g} x the original's on the same logits")
    else:
        measured = f"the replica's loss is the original's times the number of elements summed over ({what})"
    return {"reduction_phrase": f"sums over {what} instead of averaging; {measured}",
            "replica_reduction": str(reduction)}


def _selection_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    parts = []
    criterion, mode, stopping = (by_key.get(k) for k in ("checkpoint_criterion", "checkpoint_mode", "early_stopping"))
    if criterion is not None:
        replica = _value(criterion, "replica")
        parts.append({"last_epoch": "keeps the last epoch's weights (a checkpoint without a monitored metric)",
                      "none": "keeps no checkpoint"}.get(str(replica), f"keeps the checkpoint with the best {replica}"))
    if mode is not None:
        parts.append(f"selects the {'highest' if _value(mode, 'replica') == 'max' else 'lowest'} monitored value")
    if stopping is not None:
        parts.append(f"stops early on {_value(stopping, 'replica')}")
    return {"selection_phrase": "; ".join(parts) or "selects its model differently"}


# ----------------------------------------------------------------------------------------------------------
# Rules for the training recipe: learning rate, optimizer, schedule, clipping, loss, R2 averaging, slicing and
# the label file, each from the recipe check, with the trajectory and data findings it moves.


def _recipe(keys: tuple[str, ...], data_kinds: tuple[str, ...] = (),
            trajectory_test: Callable[[Finding], bool] | None = None, data_unless: tuple[str, ...] = ()) -> Matcher:
    """recipe.mismatch at one of `keys` (or, without one, the given data findings / a trajectory pattern);
    claims the trajectory and data consequences. Data findings alone do not match while a recipe mismatch at
    one of `data_unless` explains them (another rule's key)."""
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        mismatches = having(findings, "recipe.mismatch", where=lambda f: f.location in keys)
        data = significant([f for f in findings if f.kind in data_kinds])
        if not mismatches and having(findings, "recipe.mismatch", where=lambda f: f.location in data_unless):
            data = []
        trajectory = [f for f in significant(findings) if trajectory_test is not None and trajectory_test(f)]
        if mismatches or data:
            # the trajectory summary (info) says the probe ran, so the texts can say what it did not show
            return mismatches + data + significant(training_consequences(findings, data_kinds)) + having(
                findings, "trajectory.summary")
        if trajectory and not having(findings, "recipe.mismatch"):
            return significant(training_consequences(findings))
        return None
    return match


def _randomness(findings: Sequence[Finding]) -> list[Finding] | None:
    """Randomness the trajectory could not switch off: its differences may come from it, so it claims them."""
    if not having(findings, "trajectory.randomness"):
        return None
    return [f for f in findings if f.kind.startswith("trajectory.") and f.kind != "trajectory.summary"]


def _lr_from_start(f: Finding) -> bool:
    return f.kind == "trajectory.lr" and f.metrics.get("first_differing_step") == 0


def _lr_later(f: Finding) -> bool:
    return f.kind == "trajectory.lr" and (f.metrics.get("first_differing_step") or 0) > 0


RULES: list[Rule] = [
    # ---- recipe --------------------------------------------------------------------------------------------------
    Rule(
        id="PP-LEARNING-RATE", title="Learning rate differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="Adam with lr 2.5e-5: every training script passes --lr 2.5e-5 (the parser's default is "
                      "1e-4).",
        replica_does="Trains with lr {replica_value}.",
        effect="Every update is scaled differently from the first step on ({trajectory_phrase}); convergence "
               "speed and the best-validation epoch move.",
        fix="Use lr 2.5e-5.",
        match=_recipe(("lr",), trajectory_test=_lr_from_start), measure=recipe_figures,
        refs=(SourceRef("parser.py", r'"--lr"'),
              SourceRef("../scripts/composition4fold/2_run_comp_multilevel_total.sh", r"lrs=\(")),
        fix_action="restore_recipe", priority=45),
    Rule(
        id="PP-OPTIMIZER", title="Optimizer differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="torch.optim.Adam(lr, weight_decay=1e-5): weight decay added to the gradient (L2) before "
                      "the adaptive step, not decoupled as in AdamW.",
        replica_does="Uses {replica_value}.",
        effect="In the replica {optimizer_effect} ({trajectory_phrase}).",
        fix="Use torch.optim.Adam(params, lr=2.5e-5, weight_decay=1e-5): not AdamW, and not "
            "decoupled_weight_decay=True.",
        match=_recipe(("optimizer", "weight_decay_coupling")), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"optimizer = th\.optim\.Adam\("),
              SourceRef("parser.py", r'"--weight_decay"')),
        fix_action="restore_recipe", priority=46),
    Rule(
        id="PP-WEIGHT-DECAY", title="Weight decay differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="weight_decay=1e-5 on every parameter (biases and attention context vectors included), "
                      "added to the gradient by torch.optim.Adam.",
        replica_does="Decays with {weight_decay_phrase}.",
        effect="Each step pulls the weights towards zero with another strength, the more so where gradients "
               "are small ({trajectory_phrase}); over 100 epochs the weights' scale drifts from the original's.",
        fix="Pass weight_decay=1e-5 for all parameters (one param group).",
        match=_recipe(("weight_decay",)), measure=recipe_figures,
        refs=(SourceRef("parser.py", r'"--weight_decay"'), SourceRef("train_m2pf.py", r"optimizer = th\.optim\.Adam\(")),
        fix_action="restore_recipe", priority=53),
    Rule(
        id="PP-ADAM-EPS", title="Adam epsilon differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="torch.optim.Adam without an eps argument: eps = 1e-8 in the denominator sqrt(v) + eps.",
        replica_does="Uses eps {replica_value}.",
        effect="Adam divides every update by sqrt(v) + eps: {eps_phrase}, while parameters with large "
               "gradients move the same ({trajectory_phrase}).",
        fix="Leave eps at Adam's default 1e-8 (do not pass eps).",
        match=_recipe(("eps",)), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"optimizer = th\.optim\.Adam\("),), fix_action="restore_recipe",
        priority=54),
    Rule(
        id="PP-ADAM-BETAS", title="Adam betas differ ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="torch.optim.Adam without a betas argument: (0.9, 0.999), a gradient average over about 10 "
                      "steps and a squared-gradient average over about 1000.",
        replica_does="Uses betas {replica_value}.",
        effect="The moment averages remember another number of steps and their bias correction differs, so "
               "every update differs from the first step on ({trajectory_phrase}).",
        fix="Leave betas at Adam's default (0.9, 0.999) (do not pass betas).",
        match=_recipe(("betas",)), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"optimizer = th\.optim\.Adam\("),), fix_action="restore_recipe",
        priority=55),
    Rule(
        id="PP-AMSGRAD", title="AMSGrad variant of Adam ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="torch.optim.Adam with amsgrad=False (its default): each step divides by the current "
                      "squared-gradient average.",
        replica_does="Uses amsgrad {replica_value}.",
        effect="AMSGrad divides by the running maximum of that average instead, so a step size can only shrink: "
               "after a large gradient every later update of that parameter stays smaller than the original's "
               "({trajectory_phrase}).",
        fix="Use amsgrad=False (do not pass amsgrad).",
        match=_recipe(("amsgrad",)), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"optimizer = th\.optim\.Adam\("),), fix_action="restore_recipe",
        priority=56),
    Rule(
        id="PP-SCHEDULER", title="Learning-rate schedule differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="StepLR(step_size=3000, gamma=0.98), stepped once per iteration inside train_step (the lr "
                      "becomes 2.45e-5 at iteration 3000).",
        replica_does="Schedules the learning rate differently ({replica_value}).",
        effect="The learning rate departs from the original's at the first decay step ({trajectory_phrase}); "
               "over 100 epochs the original decays the lr many times.",
        fix="Step StepLR(step_size=3000, gamma=0.98) after every optimizer step.",
        match=_recipe(("scheduler", "scheduler_interval", "scheduler_step_size", "scheduler_gamma"),
                      trajectory_test=_lr_later),
        measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"StepLR\("), SourceRef("train_m2pf.py", r"scheduler\.step\(\)"),
              SourceRef("parser.py", r'"--lr_decay_step"')),
        fix_action="restore_recipe", priority=47),
    Rule(
        id="PP-GRAD-CLIP", title="Gradient clipping differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="clip_grad_norm_(all parameters, 2.0) before every optimizer step.",
        replica_does="Uses {clip_phrase}.",
        effect="{clip_effect} ({trajectory_phrase}).",
        fix="Clip the global gradient norm at 2.0 (Lightning: Trainer(gradient_clip_val=2.0)).",
        match=_recipe(("grad_clip",)), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"clip_grad_norm_"), SourceRef("parser.py", r'"--grad_clip"')),
        fix_action="restore_recipe", priority=48),
    Rule(
        id="PP-GRAD-CLIP-ALGORITHM", title="Gradients clipped by {clip_algorithm} instead of by norm",
        severity=Severity.ERROR,
        original_does="clip_grad_norm_(all parameters, 2.0): when the global L2 norm of all gradients exceeds "
                      "2.0, the whole gradient is rescaled by one factor and keeps its direction.",
        replica_does="Clips each gradient element to [-c, c] ({recipe_changes}).",
        effect="Clipping elements cuts the large ones and keeps the small ones, which changes the direction of "
               "the update, and it applies whatever the global norm is ({trajectory_phrase}).",
        fix="Clip by norm: clip_grad_norm_(params, 2.0) (Lightning: gradient_clip_algorithm=\"norm\").",
        match=_recipe(("grad_clip_algorithm",)), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"clip_grad_norm_"),), fix_action="restore_recipe", priority=57),
    Rule(
        id="PP-ACCUMULATION", title="Gradients accumulated over several batches ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="One optimizer step per batch of 8 (train_step zeroes, backpropagates, clips and steps "
                      "every iteration) and the scheduler counts those steps.",
        replica_does="Accumulates {replica_value} batches per optimizer step.",
        effect="The effective batch is larger and there are fewer optimizer and StepLR steps per epoch, so both "
               "the noise of the updates and the lr schedule differ ({trajectory_phrase}).",
        fix="Step the optimizer after every batch (Lightning: accumulate_grad_batches=1, its default).",
        match=_recipe(("accumulate_grad_batches",)), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"def train_step"),), fix_action="restore_recipe", priority=58),
    Rule(
        id="PP-LOSS", title="Training loss differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="MSELoss(sigmoid(logits), labels), mean over all elements; the model returns logits and the "
                      "sigmoid belongs to the loss (validation reports sigmoid outputs too).",
        replica_does="Computes the loss as {replica_value}.",
        effect="Different gradients from the first step and a different loss scale ({trajectory_phrase}); the "
               "validation loss that selects the best checkpoint is not comparable.",
        fix="Use MSE between sigmoid(logits) and the labels.",
        match=_recipe(("loss",), data_kinds=("data.loss",), data_unless=("loss_reduction",)),
        measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"loss = loss_calculator\(sigmoid\(logitss\[-1\]\), targets\)"),
              SourceRef("__main__.py", r"criterion = nn\.MSELoss\(\)")),
        fix_action="restore_recipe", priority=49),
    Rule(
        id="PP-LOSS-REDUCTION", title="Loss reduced by {replica_reduction} instead of the mean",
        severity=Severity.ERROR,
        original_does="nn.MSELoss() with its default reduction: the mean over all N x 19 elements of a batch.",
        replica_does="The replica's loss {reduction_phrase}.",
        effect="The gradient is multiplied by that count: Adam's normalisation cancels most of it, but the L2 "
               "weight decay (added to the gradient) weighs that many times less, clipping at 2.0 cuts nearly "
               "every step, a smaller last batch weighs less, and the validation loss that selects the "
               "checkpoint is on another scale ({trajectory_phrase}).",
        fix="Average over all elements: mse_loss(sigmoid(logits), labels) with reduction=\"mean\".",
        match=_recipe(("loss_reduction",), data_kinds=("data.loss",)), measure=recipe_figures,
        refs=(SourceRef("__main__.py", r"criterion = nn\.MSELoss\(\)"),
              SourceRef("train_m2pf.py", r"loss = loss_calculator\(sigmoid\(logitss\[-1\]\), targets\)")),
        fix_action="restore_recipe", priority=59),
    Rule(
        id="PP-MODEL-SELECTION", title="Model selection differs ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="Validates after every epoch of 100 and keeps the checkpoint with the lowest validation "
                      "loss (is_best = valid_loss < best_valid_loss), not the best R2; no early stopping.",
        replica_does="The replica {selection_phrase}.",
        effect="Another epoch's weights are reported, so test scores are not comparable with the paper's even "
               "when training is identical; training itself is unaffected ({trajectory_phrase}).",
        fix="Keep the checkpoint with the lowest validation loss (Lightning: ModelCheckpoint(monitor=<validation "
            "loss>, mode=\"min\")) and train all 100 epochs without EarlyStopping.",
        match=_recipe(("checkpoint_criterion", "checkpoint_mode", "early_stopping")), measure=recipe_figures,
        refs=(SourceRef("train_m2pf.py", r"is_best = valid_loss < best_valid_loss"),),
        fix_action="restore_recipe", priority=60),
    Rule(
        id="PP-TRAINING-RANDOMNESS", title="Randomness left in training mode that the tool cannot switch off",
        severity=Severity.WARNING,
        original_does="Draws random numbers in training only for dropout (nn.Dropout in out_fc, the LSTMs' "
                      "inter-layer dropout), which the trajectory check switches off on both sides.",
        replica_does="Changes its training-mode output between two calls with the same weights and different "
                     "seeds by up to {randomness_max_rel:.3g} of its magnitude, with every form of dropout switched off "
                     "(nn.Dropout, RNN dropout, functional dropout).",
        effect="Its trajectory cannot be compared step by step: differences may come from this randomness rather "
               "than from the recipe ({trajectory_phrase}).",
        fix="Draw random masks through nn.functional.dropout or nn.Dropout (the check can switch those off), "
            "and the original's dropout only: 0.2 between LSTM layers and before each Linear of the head.",
        match=_randomness, measure=recipe_figures,
        refs=(SourceRef("model_m2pf.py", r"nn\.Dropout\("),), priority=61),
    Rule(
        id="PP-R2-AVERAGE", title="R2 averaged differently ({recipe_changes})",
        severity=Severity.ERROR,
        original_does="sklearn r2_score(y_true, y_pred) with the default uniform_average over the 19 label "
                      "columns, on float32 sigmoid outputs.",
        replica_does="Averages R2 as {replica_value}.",
        effect="Reported R2 is not comparable with the paper's ({data_phrase}); training itself is unaffected.",
        fix="Use r2_score(y_true, y_pred) with multioutput='uniform_average'.",
        match=_recipe(("r2_average",), data_kinds=("data.r2",)), measure=recipe_figures,
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
        measure=recipe_figures,
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
        match=_recipe(("label_file",), data_kinds=("data.label_file",)), measure=recipe_figures,
        refs=(SourceRef("dataset.py", r"self\.label_map = json\.load"), SourceRef("parser.py", r'"--label_file_path"')),
        fix_action="restore_recipe", priority=52),
]
