"""Small variants of the worked example docs/lightning_example.py, each changed in one place the way real
re-implementations go wrong (or, for the controls, rewritten without changing what they compute). Each
`build_*` is a factory `parity check --replica tests/checks/lightning_variants.py:build_*` can call; the
example itself is loaded from its file and subclassed, never edited.

Stand-ins for Lightning's Trainer callbacks (`Checkpoint`, `Stopping`, `FakeTrainer`) carry only the attributes
the tool reads, so the tests run without pytorch-lightning installed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

_PATH = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"
_spec = importlib.util.spec_from_file_location("lightning_example_for_variants", _PATH)
assert _spec is not None and _spec.loader is not None
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)

F = nn.functional
Lit = ex.PercePianoLit
LitAdapter = ex.LitAdapter


# The pairing `parity check` settles for the worked example by shapes, call order and values (the example's
# adapter declares none; test_trajectory_runs_replica_code checks that the engine finds exactly this): tests that
# run a training check directly, without the engine, pass it as the audit's pairing.
EXAMPLE_PAIRING = {
    "note_embedder.fc": "embed.fc",
    "score_encoder.lstm": "notes.lstm",
    "score_encoder.voice_net": "voices.lstm",
    "score_encoder.beat_attention": "beat_pool.attention",
    "score_encoder.beat_rnn": "beats.lstm",
    "score_encoder.measure_attention": "measure_pool.attention",
    "score_encoder.measure_rnn": "measures.lstm",
    "performance_encoder.performance_contractor": "unused_performance_encoder.contractor",
    "performance_encoder.performance_final_attention": "unused_performance_encoder.attention",
    "performance_contractor": "contract",
    "performance_final_attention": "pool.attention",
    "out_fc": "head",
}


def _factory(cls: type, adapter: type = LitAdapter) -> Any:
    def build(variant: str = "han-total", config: Any = None) -> tuple[nn.Module, Any]:
        return cls(config or ex.DEFAULT_CONFIG), adapter()
    return build


# ---------------------------------------------------------------------------------------------- the recipe


class SumLoss(Lit):
    """training_step sums the squared errors over the batch instead of averaging them."""

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        logits = self(batch.x, batch.note_locations)
        return F.mse_loss(torch.sigmoid(logits), batch.labels, reduction="sum")


class AdamEps(Lit):
    """Adam with eps=1e-7 (the original leaves Adam's default 1e-8)."""

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay, eps=1e-7)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3000, gamma=0.98)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class SortedLabels(Lit):
    """training_step pairs the logits with the labels in length-sorted order (a batch sorted for packing
    whose labels were never sorted back): harmless only when every item has the same length."""

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        logits = self(batch.x, batch.note_locations)
        order = batch.lengths.argsort(descending=True, stable=True)
        return F.mse_loss(torch.sigmoid(logits[order]), batch.labels)


build_sum_loss = _factory(SumLoss)
build_adam_eps = _factory(AdamEps)
build_sorted_labels = _factory(SortedLabels)


# ---------------------------------------------------------------------------------------------- calling


class TakesBatch(Lit):
    """forward takes the whole batch object; only the adapter knows how to call it."""

    def forward(self, batch: Any) -> Tensor:  # type: ignore[override]
        return super().forward(batch.x, batch.note_locations)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return F.mse_loss(torch.sigmoid(self(batch)), batch.labels)


class TakesBatchAdapter(LitAdapter):
    def forward(self, model: nn.Module, model_input: Any) -> Tensor:
        return model(model_input)


build_takes_batch = _factory(TakesBatch, TakesBatchAdapter)


# ---------------------------------------------------------------------------------------------- randomness


class HandLSTM(nn.Module):
    """A bidirectional multi-layer LSTM written out step by step, with nn.LSTM's parameter names, gate order
    (i, f, g, o), initialisation and inter-layer dropout, the dropout applied with nn.functional inside."""

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.hidden, self.layers, self.dropout = hidden, layers, dropout
        for layer in range(layers):
            width = input_size if layer == 0 else 2 * hidden
            for suffix in ("", "_reverse"):
                for name, shape in (("weight_ih", (4 * hidden, width)), ("weight_hh", (4 * hidden, hidden)),
                                    ("bias_ih", (4 * hidden,)), ("bias_hh", (4 * hidden,))):
                    self.register_parameter(f"{name}_l{layer}{suffix}", nn.Parameter(torch.empty(shape)))
        bound = 1.0 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _direction(self, x: Tensor, lengths: Tensor, name: str, reverse: bool) -> Tensor:
        n, t, _ = x.shape
        steps = torch.arange(t).expand(n, t)
        index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps) if reverse else steps
        seq = x.gather(1, index[..., None].expand_as(x))
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        w_ih, w_hh = getattr(self, f"weight_ih_{name}"), getattr(self, f"weight_hh_{name}")
        bias = getattr(self, f"bias_ih_{name}") + getattr(self, f"bias_hh_{name}")
        outs = []
        for step in range(t):
            i, f, g, o = (seq[:, step] @ w_ih.T + h @ w_hh.T + bias).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        out = torch.stack(outs, 1)
        return out.gather(1, index[..., None].expand_as(out))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        valid = (torch.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
        out = x
        for layer in range(self.layers):
            out = torch.cat([self._direction(out, lengths, f"l{layer}", False),
                             self._direction(out, lengths, f"l{layer}_reverse", True)], dim=-1) * valid
            if layer < self.layers - 1:
                out = F.dropout(out, self.dropout, self.training)
        return out


class HandNoteLSTM(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.lstm = HandLSTM(config.note_size, config.note_size, config.note_layers, config.dropout)

    def forward(self, embedding: Tensor, lengths: Tensor) -> Tensor:
        return self.lstm(embedding, lengths.cpu())


class HandCellNotes(Lit):
    """Control: the note LSTM as a faithful hand-written cell whose dropout lives inside the custom module."""

    def __init__(self, config: Any = ex.DEFAULT_CONFIG, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        torch_lstm = self.notes.lstm
        self.notes = HandNoteLSTM(config)
        self.notes.lstm.load_state_dict(torch_lstm.state_dict())


class FunctionalHeadDropout(Lit):
    """The head's dropouts as nn.functional.dropout(x, p): active even in eval mode."""

    def __init__(self, config: Any = ex.DEFAULT_CONFIG, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.p = config.dropout

    def forward(self, x: PackedSequence, note_locations: Any) -> Tensor:
        captured: dict[str, Tensor] = {}
        handle = self.pool.register_forward_hook(lambda _m, _a, out: captured.__setitem__("pooled", out))
        try:
            super().forward(x, note_locations)
        finally:
            handle.remove()
        head = self.head
        hidden = head[2](head[1](F.dropout(captured["pooled"], self.p)))
        return head[4](F.dropout(hidden, self.p))


class NoisyLogits(Lit):
    """Training-mode noise drawn with torch.randn_like: randomness no dropout switch reaches."""

    def forward(self, x: PackedSequence, note_locations: Any) -> Tensor:
        logits = super().forward(x, note_locations)
        return logits + 1e-3 * torch.randn_like(logits) if self.training else logits


build_hand_cell_notes = _factory(HandCellNotes)
build_functional_head_dropout = _factory(FunctionalHeadDropout)
build_noisy_logits = _factory(NoisyLogits)


# ---------------------------------------------------------------------------------------------- Lightning


class Checkpoint:
    """Stands in for lightning's ModelCheckpoint (the attributes the tool reads)."""

    def __init__(self, monitor: str | None = None, mode: str = "min", save_top_k: int = 1) -> None:
        self.monitor, self.mode, self.save_top_k = monitor, mode, save_top_k


class Stopping:
    """Stands in for lightning's EarlyStopping."""

    def __init__(self, monitor: str, mode: str = "min", patience: int = 3) -> None:
        self.monitor, self.mode, self.patience = monitor, mode, patience


class FakeTrainer:
    """Stands in for a lightning Trainer after construction (attributes, not arguments)."""

    def __init__(self, **kwargs: Any) -> None:
        self.gradient_clip_val = kwargs.get("gradient_clip_val")
        self.gradient_clip_algorithm = kwargs.get("gradient_clip_algorithm")
        self.accumulate_grad_batches = kwargs.get("accumulate_grad_batches", 1)
        self.precision = kwargs.get("precision", "32-true")
        self.max_epochs = kwargs.get("max_epochs", 1000)
        self.max_steps = -1
        self.check_val_every_n_epoch = 1
        self.callbacks = list(kwargs.get("callbacks", [])) or [Checkpoint()]  # Lightning adds a default one


# what the original does, as Trainer arguments
FAITHFUL_TRAINER = {"gradient_clip_val": 2.0, "max_epochs": 100, "callbacks": [Checkpoint("val_loss", "min")]}


def adapter_with(**attributes: Any) -> LitAdapter:
    """The example's adapter with extra attributes (trainer, trainer_kwargs, loss, training_batch...)."""
    adapter = LitAdapter()
    for name, value in attributes.items():
        setattr(adapter, name, value)
    return adapter
