"""ParityCallback in a real PyTorch Lightning Trainer.fit on the worked example (docs/lightning_example.py).

The example's model is duck-typed; here it becomes a real `pytorch_lightning.LightningModule` with the example's
own stages, forward, training_step and configure_optimizers, audited through the example's own adapter against
the shipped reference bundle (SMALL_CONFIG, seed 7, its two batches). A tiny fit on the CPU: one batch of 4 items, one epoch.
"""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from percepiano_parity.core.levels import LEVELS

pl = pytest.importorskip("pytorch_lightning", reason="the callback test needs pytorch-lightning (test extra)")

from percepiano_parity import ParityCallback, ParityMismatchError  # noqa: E402
from percepiano_parity.batches.canonical import collate  # noqa: E402
from percepiano_parity.batches.synthetic import generate_batches  # noqa: E402
from percepiano_parity.core.config import SMALL_CONFIG  # noqa: E402
from percepiano_parity.core.findings import Severity  # noqa: E402
from percepiano_parity.subjects.user_subject import load_factory  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "lightning_example.py"
SEED = 7  # the shipped han-total bundle's seed


def _example():
    build = load_factory(f"{EXAMPLE}:build")
    return build, sys.modules[build.__module__]


class NormedSpan(nn.Module):
    """The example's measure span followed by a LayerNorm: the deviation the gate must catch."""

    def __init__(self, span: nn.Module, width: int) -> None:
        super().__init__()
        self.span = span
        self.norm = nn.LayerNorm(width)

    def forward(self, nodes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        return self.norm(self.span(nodes, numbers))


class LitPercePiano(pl.LightningModule):
    """The worked example as a real LightningModule: its stages (same names, same construction order, so the
    example's LitAdapter applies unchanged), and its forward, training_step and configure_optimizers."""

    def __init__(self, layernorm: bool = False) -> None:
        super().__init__()
        build, _ = _example()
        inner, self.example_adapter = build("han-total", SMALL_CONFIG)
        self._example = type(inner)
        for name, child in inner.named_children():
            self.add_module(name, child)
        self.config, self.lr, self.weight_decay = inner.config, inner.lr, inner.weight_decay
        if layernorm:
            self.measure_span = NormedSpan(self.measure_span, 2 * SMALL_CONFIG.measure_size)
        self.training_steps = 0
        self.optimizer_steps = 0

    def forward(self, x, note_locations):
        return self._example.forward(self, x, note_locations)

    def training_step(self, batch, batch_idx):
        self.training_steps += 1
        return self._example.training_step(self, batch, batch_idx)

    def configure_optimizers(self):
        conf = dict(self._example.configure_optimizers(self))
        conf.pop("gradient_clip_val", None)  # a Trainer argument in Lightning, not part of this dict
        return conf

    def on_before_optimizer_step(self, optimizer):
        self.optimizer_steps += 1

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)


def _loader():
    batch = generate_batches(1, SEED, batch_size=4, config=SMALL_CONFIG, max_notes=16, include_edge_cases=False)[0]
    return torch.utils.data.DataLoader([collate(batch)], batch_size=None, collate_fn=lambda item: item)


def _trainer(tmp_path: Path, callback) -> pl.Trainer:
    return pl.Trainer(default_root_dir=str(tmp_path), max_epochs=1, limit_train_batches=1, accelerator="cpu",
                      devices=1, logger=pl.loggers.CSVLogger(str(tmp_path), name="logs"), callbacks=[callback],
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0)


def _fit(trainer: pl.Trainer, module: LitPercePiano) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|sync_dist|"
                                                  "LightningModule.*training_step|val_dataloader).*")
        trainer.fit(module, train_dataloaders=_loader())


def test_equivalent_module_is_audited_logged_and_trained(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(SEED)
    module = LitPercePiano()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    callback = ParityCallback(adapter=module.example_adapter)
    trainer = _trainer(tmp_path, callback)
    _fit(trainer, module)

    (stage, result), = callback.results
    assert stage == "fit start"
    assert result.report.verdict(Severity.WARNING) == "equivalent", result.mismatch
    assert result.mismatch is None
    # audited through the example's adapter (the --replica path): every level of the original was found by value
    # in the module and compared
    levels = {row["level"] for row in result.report.check("forward").tables["levels"]}
    assert set(LEVELS) <= levels
    replica = result.report.subjects[1]
    assert replica["kind"] == "user-replica" and replica["extra"]["adapter"] == "LitAdapter"
    assert result.report.settings["replica"].startswith("user: LitPercePiano (LightningModule, fit start)")
    # report files where the trainer keeps its outputs
    assert result.report_path == tmp_path / "parity-report" / "report.md"
    assert sorted(p.name for p in (tmp_path / "parity-report").iterdir()) == [
        "junit.xml", "report.html", "report.json", "report.md"]
    # the headline figures reached the trainer's logger
    rows = list(csv.DictReader((Path(trainer.logger.log_dir) / "metrics.csv").open()))
    logged = {k: v for row in rows for k, v in row.items() if k.startswith("parity/") and v != ""}
    assert float(logged["parity/equivalent"]) == 1.0
    assert float(logged["parity/blocking_findings"]) == 0.0
    assert float(logged["parity/explanations"]) == 0.0
    assert 0.0 <= float(logged["parity/worst_level_rel_error"]) < 1e-5
    # and the fit went on: one training step, one optimizer step, the weights moved
    assert module.training_steps == 1 and module.optimizer_steps == 1 and trainer.global_step == 1
    assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_layernorm_deviation_stops_the_fit_before_the_first_optimizer_step(tmp_path, monkeypatch):
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(SEED)
    module = LitPercePiano(layernorm=True)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    # a model deviation: the model checks find it (the training checks would too, at twice the cost)
    callback = ParityCallback(adapter=module.example_adapter, training_checks=False)
    trainer = _trainer(tmp_path, callback)
    with pytest.raises(ParityMismatchError) as caught:
        _fit(trainer, module)

    message = str(caught.value)
    report_md = tmp_path / "parity-report" / "report.md"
    assert "\n" not in message and message.startswith("parity: MISMATCH han-total")
    assert f"report: {report_md}" in message
    # the cause, and where it first shows: the span's own value is found before the norm (levels by value), so the
    # first level that differs is the concatenation the normalised span feeds
    assert "PP-EXTRA-NORM" in message and "total_note_cat" in message
    assert caught.value.report_path == report_md and report_md.is_file()
    assert caught.value.report.verdict(Severity.WARNING) == "mismatch"
    # stopped before any step: nothing trained, the module untouched
    assert module.training_steps == 0 and module.optimizer_steps == 0 and trainer.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_warn_only_lets_the_fit_proceed_audits_every_epoch_and_finds_a_declared_adapter(tmp_path, monkeypatch):
    """on_mismatch="warn": the mismatch is a warning with the same line, and training goes on; every_n_epochs=1
    audits again after the epoch (into its own folder, logged at that step); without an adapter argument the
    module's own `parity_adapter` is used."""
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(SEED)
    module = LitPercePiano(layernorm=True)
    module.parity_adapter = module.example_adapter
    callback = ParityCallback(on_mismatch="warn", every_n_epochs=1, report_dir=tmp_path / "audit",
                              training_checks=False)
    trainer = _trainer(tmp_path, callback)
    with pytest.warns(UserWarning) as caught:
        _fit(trainer, module)
    lines = [str(w.message) for w in caught if str(w.message).startswith("parity: MISMATCH")]
    assert len(lines) == 2
    assert lines[0].endswith(f"report: {tmp_path / 'audit' / 'report.md'}")
    assert lines[1].endswith(f"report: {tmp_path / 'audit' / 'epoch-1' / 'report.md'}")
    assert module.optimizer_steps == 1 and trainer.global_step == 1
    assert [stage for stage, _ in callback.results] == ["fit start", "epoch 1"]
    assert all(result.report.subjects[1]["extra"]["adapter"] == type(module.example_adapter).__qualname__
               for _, result in callback.results)
    rows = list(csv.DictReader((Path(trainer.logger.log_dir) / "metrics.csv").open()))
    steps = sorted(int(row["step"]) for row in rows if row.get("parity/equivalent") not in (None, ""))
    assert steps == [0, 1]  # each audit logged at the step it ran


def test_callback_refuses_bad_settings():
    from percepiano_parity.core.errors import UsageError

    with pytest.raises(UsageError, match="on_mismatch"):
        ParityCallback(on_mismatch="ignore")
    with pytest.raises(UsageError, match="every_n_epochs"):
        ParityCallback(every_n_epochs=0)
