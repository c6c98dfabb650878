"""The bundled replica as an audit subject, with level-by-level teacher forcing."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from percepiano_parity.batches.canonical import CanonicalBatch, ModelInput, collate
from percepiano_parity.replica.models import PercePianoModel
from percepiano_parity.subjects.subject import SubjectInfo, Taps


@contextmanager
def preserved_state(model: nn.Module):
    """Leave the user's model as it was: training mode and any gradients it held."""
    was_training = model.training
    saved = {name: p.grad for name, p in model.named_parameters()}
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.grad = saved.get(name)
        model.train(was_training)


def training_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """The original's loss for the multi-level models: MSE of sigmoid(logits) against the labels."""
    return nn.functional.mse_loss(torch.sigmoid(logits.float()), labels.float())


def _model_input(model: nn.Module, batch: CanonicalBatch) -> ModelInput:
    """Collate and move to the model's device and floating dtype (float64 copies are used for noise floors)."""
    param = next(model.parameters())
    inp = collate(batch).to(param.device)
    if param.dtype != torch.float32:
        x = inp.x
        inp = ModelInput(x=PackedSequence(x.data.to(param.dtype), x.batch_sizes, x.sorted_indices,
                                          x.unsorted_indices),
                         note_locations=inp.note_locations, labels=inp.labels.to(param.dtype), lengths=inp.lengths)
    return inp


class ReplicaSubject:
    """Runs a `PercePianoModel` (faithful or with a deviation) and records its levels."""

    def __init__(self, model: PercePianoModel, info: SubjectInfo) -> None:
        self.model = model
        self.info = info

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        taps = Taps(subject=self.info.name)
        inp = _model_input(self.model, batch)
        with preserved_state(self.model):
            self.model.train(train)
            for p in self.model.parameters():
                p.grad = None
            with torch.set_grad_enabled(grads):
                # through __call__, so hooks on the model itself see the whole forward
                logits = self.model(inp.x, inp.note_locations, inp.lengths, on_level=taps.record_level,
                                    on_attention=taps.record_attention)
                loss = training_loss(logits, inp.labels)
                taps.loss = float(loss.detach())
                if grads:
                    loss.backward()
                    taps.record_grads(dict(self.model.named_parameters()))
        return taps

    # -- teacher forcing ----------------------------------------------------------------------------------
    def level_inputs(self, level: str) -> tuple[str, ...]:
        return self.model.level_graph().get(level, ())

    def run_level(self, level: str, inputs: Mapping[str, Tensor], batch: CanonicalBatch) -> Tensor:
        inp = _model_input(self.model, batch)
        device = inp.labels.device
        ctx = self.model.context(inp.note_locations, inp.lengths)
        dtype = next(self.model.parameters()).dtype
        with preserved_state(self.model), torch.no_grad():
            self.model.eval()
            cast = {k: v.to(device=device, dtype=dtype) for k, v in inputs.items()}
            with torch.autocast(device.type, dtype=self.model.autocast_dtype or torch.bfloat16,
                                enabled=self.model.autocast_dtype is not None):
                return self.model.compute_level(level, cast, ctx, inp.x).detach().cpu()
