"""Rules for the training recipe: learning rate, optimizer, schedule, clipping, loss, R2 averaging, slicing and
the label file, each from the recipe check, with the trajectory and data findings it moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.match import (
    Matcher,
    recipe_measure,
    training_consequences,
)
from percepiano_parity.diagnosis.rule import Rule, SourceRef, having, significant


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
        effect="Every update is scaled differently from the first step on (trajectories differ from step "
               "{first_differing_step}); convergence speed and the best-validation epoch move.",
        fix="Use lr 2.5e-5.",
        match=_recipe(("lr",), trajectory_test=_lr_from_start), measure=recipe_measure,
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
        match=_recipe(("optimizer", "weight_decay", "betas", "eps")), measure=recipe_measure,
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
        measure=recipe_measure,
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
        match=_recipe(("grad_clip",)), measure=recipe_measure,
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
        match=_recipe(("loss",), data_kinds=("data.loss",)), measure=recipe_measure,
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
        match=_recipe(("r2_average",), data_kinds=("data.r2",)), measure=recipe_measure,
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
        measure=recipe_measure,
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
        match=_recipe(("label_file",), data_kinds=("data.label_file",)), measure=recipe_measure,
        refs=(SourceRef("dataset.py", r"self\.label_map = json\.load"), SourceRef("parser.py", r'"--label_file_path"')),
        fix_action="restore_recipe", priority=52),
]
