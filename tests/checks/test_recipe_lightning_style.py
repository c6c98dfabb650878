"""Lightning-style recipes are read in full: every optimizer hyper-parameter from `configure_optimizers` (its
dict form included), clipping, precision, accumulation and model selection from a Trainer the adapter gives
(an object, its keyword arguments, or a callable), hyper-parameters from `hparams` and `__init__` defaults,
and the loss as the replica's `training_step` computes it. Each variant of the worked example is explained by
the rule that names its difference, in texts that describe that difference and never say "n/a"."""

from __future__ import annotations

import pytest
import torch
from lightning_variants import (
    FAITHFUL_TRAINER,
    AdamEps,
    Checkpoint,
    FakeTrainer,
    Lit,
    Stopping,
    SumLoss,
    adapter_with,
)

from percepiano_parity.batches.plan import unequal_length_batches
from percepiano_parity.checks import recipe as recipe_check
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.core.findings import Severity
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.original_adapter.recipe import recorded_recipe
from percepiano_parity.subjects.calling import model_input


def _audit(model, adapter=None, trainer=None):
    adapter = adapter or adapter_with(trainer_kwargs=trainer if trainer is not None else FAITHFUL_TRAINER)
    inputs = [model_input(model, b) for b in unequal_length_batches(2, 0, batch_size=3, config=SMALL_CONFIG,
                                                                     max_notes=16)]
    read = recipe_check.read_candidate(model, model=model, adapter=adapter, inputs=inputs)
    result = recipe_check.compare(recorded_recipe(), read)
    explanations, _ = diagnose(result.findings)
    return result, explanations


def _texts(explanation) -> str:
    return " ".join([explanation.title, explanation.original_does, explanation.replica_does, explanation.effect,
                     explanation.fix])


def _configured(**optimizer_changes):
    class Variant(Lit):
        def configure_optimizers(self):
            kwargs = {"lr": self.lr, "weight_decay": self.weight_decay, **optimizer_changes}
            cls = kwargs.pop("cls", torch.optim.Adam)
            params = kwargs.pop("params", None)
            optimizer = cls(params(self) if params else self.parameters(), **kwargs)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3000, gamma=0.98)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    return Variant(SMALL_CONFIG)


def test_the_example_with_the_original_trainer_matches_on_every_key_it_tells():
    result, explanations = _audit(Lit(SMALL_CONFIG))
    assert recipe_check.mismatched(result) == set() and explanations == []
    rows = recipe_check.rows_by_key(result)
    for key in ("grad_clip", "grad_clip_algorithm", "accumulate_grad_batches", "precision", "epochs", "loss",
                "loss_reduction", "checkpoint_criterion", "checkpoint_mode", "early_stopping", "amsgrad",
                "weight_decay_coupling"):
        assert rows[key]["status"] == "match", (key, rows[key])
    assert rows["grad_clip"]["replica_source"] == "adapter.trainer_kwargs: gradient_clip_val=2.0"
    assert rows["loss"]["replica_source"].startswith("PercePianoLit.training_step, measured: mse_after_sigmoid, mean")
    # the example's configure_optimizers also returns "gradient_clip_val", which Lightning ignores: said so
    reference = next(f for f in result.findings if f.kind == "recipe.reference")
    assert any("gradient_clip_val" in note for note in reference.evidence["replica_notes"])


def test_without_a_trainer_the_trainer_keys_are_unknown_with_a_hint():
    result, _ = _audit(Lit(SMALL_CONFIG), adapter=adapter_with())
    rows = recipe_check.rows_by_key(result)
    assert {rows[k]["status"] for k in ("grad_clip", "precision", "checkpoint_criterion")} == {"unknown"}
    reference = next(f for f in result.findings if f.kind == "recipe.reference")
    assert "grad_clip" in reference.evidence["unknown"] and "trainer" in reference.evidence["unknown_hint"]


def test_adam_eps_is_explained_as_eps_not_as_adamw():
    result, explanations = _audit(AdamEps(SMALL_CONFIG))
    assert recipe_check.mismatched(result) == {"eps"}
    first = explanations[0]
    assert first.id == "PP-ADAM-EPS" and first.title == "Adam epsilon differs (eps: 1e-08 -> 1e-07)"
    text = _texts(first)
    assert "1e-07" in first.effect and "smaller steps" in first.effect
    assert "AdamW" not in first.effect + first.fix and "decoupled" not in first.effect + first.fix
    assert "n/a" not in text


@pytest.mark.parametrize(("changes", "keys", "rule", "says"), [
    ({"cls": torch.optim.AdamW}, {"optimizer", "weight_decay_coupling"}, "PP-OPTIMIZER", "decoupled"),
    ({"decoupled_weight_decay": True}, {"weight_decay_coupling"}, "PP-OPTIMIZER", "decoupled"),
    ({"amsgrad": True}, {"amsgrad"}, "PP-AMSGRAD", "running maximum"),
    ({"betas": (0.9, 0.99)}, {"betas"}, "PP-ADAM-BETAS", "-> [0.9, 0.99]"),
    ({"weight_decay": 1e-2}, {"weight_decay"}, "PP-WEIGHT-DECAY", "1000 x"),
    ({"params": lambda m: [{"params": [p for n, p in m.named_parameters() if not n.endswith("bias")]},
                           {"params": [p for n, p in m.named_parameters() if n.endswith("bias")],
                            "weight_decay": 0.0}]},
     {"weight_decay"}, "PP-WEIGHT-DECAY", "per group"),
], ids=["adamw", "adam-decoupled", "amsgrad", "betas", "weight-decay", "no-decay-on-biases"])
def test_each_optimizer_setting_is_read_and_explained_by_its_own_rule(changes, keys, rule, says):
    result, explanations = _audit(_configured(**changes))
    assert recipe_check.mismatched(result) == keys
    assert explanations[0].id == rule
    assert says in _texts(explanations[0]) and "n/a" not in _texts(explanations[0])


def test_the_dict_form_of_configure_optimizers_with_interval_and_frequency():
    class EveryTwoEpochs(Lit):
        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3000, gamma=0.98)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch",
                                                             "frequency": 2}}

    result, explanations = _audit(EveryTwoEpochs(SMALL_CONFIG))
    assert recipe_check.rows_by_key(result)["scheduler_interval"]["replica"] == "every 2 epochs"
    assert explanations[0].id == "PP-SCHEDULER"


@pytest.mark.parametrize(("trainer", "keys", "rule", "says"), [
    ({**FAITHFUL_TRAINER, "gradient_clip_algorithm": "value"}, {"grad_clip_algorithm"}, "PP-GRAD-CLIP-ALGORITHM",
     "element"),
    ({"max_epochs": 100, "callbacks": [Checkpoint("val_loss")]}, {"grad_clip"}, "PP-GRAD-CLIP", "no clipping"),
    ({**FAITHFUL_TRAINER, "accumulate_grad_batches": 4}, {"accumulate_grad_batches"}, "PP-ACCUMULATION", "4"),
    ({**FAITHFUL_TRAINER, "callbacks": [Checkpoint("val_r2", "max")]}, {"checkpoint_criterion", "checkpoint_mode"},
     "PP-MODEL-SELECTION", "best valid_r2"),
    ({"gradient_clip_val": 2.0, "max_epochs": 100}, {"checkpoint_criterion"}, "PP-MODEL-SELECTION", "last epoch"),
    ({**FAITHFUL_TRAINER, "precision": "bf16-mixed"}, {"precision"}, "PP-PRECISION", "bf16"),
], ids=["clip-by-value", "no-clip", "accumulate", "best-r2", "default-checkpoint", "bf16"])
def test_trainer_arguments_are_read_and_explained(trainer, keys, rule, says):
    result, explanations = _audit(Lit(SMALL_CONFIG), trainer=trainer)
    assert recipe_check.mismatched(result) == keys
    assert explanations[0].id == rule
    assert says in _texts(explanations[0])
    if rule != "PP-PRECISION":  # the precision rule's texts are the forward precision check's
        assert "n/a" not in _texts(explanations[0])


def test_early_stopping_is_a_warning_and_a_model_selection_difference():
    trainer = {**FAITHFUL_TRAINER, "callbacks": [Checkpoint("val_loss"), Stopping("val_loss", patience=5)]}
    result, explanations = _audit(Lit(SMALL_CONFIG), trainer=trainer)
    (finding,) = [f for f in result.findings if f.kind == "recipe.mismatch"]
    assert finding.location == "early_stopping" and finding.severity == Severity.WARNING
    assert finding.evidence["replica"] == "val_loss (min, patience 5)"
    assert explanations[0].id == "PP-MODEL-SELECTION" and "stops early" in explanations[0].replica_does


@pytest.mark.parametrize("given", ["object", "callable", "trainer_kwargs"])
def test_a_trainer_object_a_callable_or_its_arguments(given):
    kwargs = {**FAITHFUL_TRAINER, "gradient_clip_val": 1.0}
    adapter = {"object": adapter_with(trainer=FakeTrainer(**kwargs)),
               "callable": adapter_with(trainer=lambda model: kwargs),
               "trainer_kwargs": adapter_with(trainer_kwargs=kwargs)}[given]
    result, explanations = _audit(Lit(SMALL_CONFIG), adapter=adapter)
    assert recipe_check.mismatched(result) == {"grad_clip"}
    assert explanations[0].id == "PP-GRAD-CLIP" and "1.0 instead of 2.0" in explanations[0].replica_does


def test_hyper_parameters_from_hparams_attributes_and_init_defaults():
    class WithDefaults(Lit):
        def __init__(self, config=SMALL_CONFIG, batch_size: int = 16, seed: int = 7) -> None:
            super().__init__(config)
            self.hparams = {"seed": 3}  # as save_hyperparameters() would record it

    result, _ = _audit(WithDefaults())
    rows = recipe_check.rows_by_key(result)
    assert rows["batch_size"]["replica"] == 16 and rows["batch_size"]["status"] == "mismatch"
    assert rows["batch_size"]["replica_source"] == "WithDefaults.__init__ default batch_size"
    assert rows["seed"]["replica"] == 3 and rows["seed"]["replica_source"] == "hparams.seed"


def test_the_sum_reduction_of_training_step_is_measured_and_explained():
    result, explanations = _audit(SumLoss(SMALL_CONFIG))
    (finding,) = [f for f in result.findings if f.kind == "recipe.mismatch"]
    assert finding.location == "loss_reduction" and finding.evidence["replica"] == "sum"
    # 3 items x 19 labels: the summed loss is 57 x the mean, to float32 rounding (relative 1e-6)
    assert finding.metrics["loss_elements"] == 57
    assert finding.metrics["loss_ratio"] == pytest.approx(57, rel=1e-6)
    first = explanations[0]
    assert first.id == "PP-LOSS-REDUCTION" and first.title == "Loss reduced by sum instead of the mean"
    assert "3 items x 19 labels = 57 elements" in first.replica_does and "57 x the original's" in first.replica_does
    assert "n/a" not in _texts(first)
