"""Rules for the training recipe: learning rate, optimizer, schedule, clipping, loss, R2 averaging, slicing and
the label file, each from the recipe check, with the trajectory and data findings it moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.match import (
    Matcher,
    training_consequences,
)
from percepiano_parity.diagnosis.rule import Rule, SourceRef, having, significant
from percepiano_parity.diagnosis.rules.recipe_figures import recipe_figures


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
