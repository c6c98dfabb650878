"""The replica's loss is read by measurement: its values on two batches are matched against a family of
relations to the logits it was computed from (elementwise loss x reduction, or a constant factor), and the
relation that holds is named with its ratio to the original's loss and its element count; when none holds,
the closest one and its residual are reported; when the replica's code fails, the reading says why."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from percepiano_parity.batches.plan import unequal_length_batches
from percepiano_parity.core.config import SMALL_CONFIG
from percepiano_parity.subjects.calling import LossCall, loss_call, model_input
from percepiano_parity.subjects.recipe import read_loss

F = nn.functional


class Head(nn.Module):
    """Logits from the mean of each item's note features (enough to give every item its own logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(SMALL_CONFIG.input_size, SMALL_CONFIG.num_label)

    def forward(self, x, note_locations):
        padded, lengths = nn.utils.rnn.pad_packed_sequence(x, batch_first=True)
        return self.fc(padded.sum(1) / lengths[:, None])


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    model = Head()
    batches = unequal_length_batches(2, 5, batch_size=3, config=SMALL_CONFIG, max_notes=16)
    return model, [model_input(model, b) for b in batches]


def _read(inputs, formula):
    model, batches = inputs
    call = LossCall(lambda m, inp, _i: formula(m(inp.x, inp.note_locations), inp.labels), "test loss")
    return read_loss(model, None, call, batches)


@pytest.mark.parametrize(("formula", "kind", "reduction", "factor"), [
    (lambda z, y: F.mse_loss(torch.sigmoid(z), y), "mse_after_sigmoid", "mean", 1.0),
    (lambda z, y: F.mse_loss(torch.sigmoid(z), y, reduction="sum"), "mse_after_sigmoid", "sum", 3 * 19.0),
    (lambda z, y: ((torch.sigmoid(z) - y) ** 2).sum(-1).mean(), "mse_after_sigmoid", "sum_over_labels", 19.0),
    (lambda z, y: F.mse_loss(z, y), "mse_on_logits", "mean", None),
    (lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="sum"), "bce_with_logits", "sum", None),
    (lambda z, y: 0.5 * F.mse_loss(torch.sigmoid(z), y), "mse_after_sigmoid", "mean x 0.5", 0.5),
], ids=["mean", "sum", "sum-over-labels", "mse-on-logits", "bce-sum", "half"])
def test_the_relation_that_holds_is_named(inputs, formula, kind, reduction, factor):
    reading = _read(inputs, formula)
    assert (reading.kind, reading.reduction) == (kind, reduction)
    assert reading.residual <= 1e-4 and reading.error is None
    assert reading.elements == 3 * 19
    if factor is not None:  # float32 losses: the ratio to the original's holds to ~1e-6 relative
        assert reading.ratio == pytest.approx(factor, rel=1e-5)


def test_without_a_relation_the_closest_is_reported(inputs):
    model = inputs[0]
    extra = sum(p.pow(2).sum() for p in model.parameters())
    reading = _read(inputs, lambda z, y: F.mse_loss(torch.sigmoid(z), y) + 0.01 * extra)
    assert reading.kind is None and reading.reduction is None
    kind, _, relation = reading.closest.partition(", ")
    assert reading.residual > 1e-4 and kind in ("mse_after_sigmoid", "mse_on_logits", "bce_with_logits",
                                                "l1_after_sigmoid") and relation


def test_a_failing_loss_is_a_reading_with_its_reason(inputs):
    def broken(z, y):
        raise KeyError("labels")

    reading = _read(inputs, broken)
    assert reading.kind is None and "KeyError" in reading.error


def test_the_loss_call_prefers_the_adapter_then_training_step():
    class WithStep(Head):
        def training_step(self, batch, batch_idx):
            return {"loss": F.mse_loss(torch.sigmoid(self(batch.x, batch.note_locations)), batch.labels)}

    class Adapter:
        def loss(self, model, model_input):
            return torch.tensor(1.0)

    model = WithStep()
    assert loss_call(model, None).source == "WithStep.training_step"
    assert loss_call(model, Adapter()).source == "adapter.loss"
    assert loss_call(Head(), None) is None
