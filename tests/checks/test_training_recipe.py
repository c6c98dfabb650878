"""Recipe check: every recipe deviation is caught, the faithful recipe is not, and the original's recipe is
read from a checkout at run time (a synthetic one written here, and the real one when PERCEPIANO_ORIGINAL)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

from percepiano_parity.checks import recipe as recipe_check
from percepiano_parity.checks.recipe import mismatched, original_recipe, read_candidate, rows_by_key
from percepiano_parity.core.findings import Severity
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE
from percepiano_parity.subjects.deviations import get_deviation

ROOT = os.environ.get("PERCEPIANO_ORIGINAL")

# deviation -> the recipe keys it must be reported under (AdamW differs from Adam in its class and in how it
# couples weight decay: decoupled instead of added to the gradient)
EXPECTED_KEYS = {
    "lr-5e-5": {"lr"}, "adamw": {"optimizer", "weight_decay_coupling"}, "scheduler-per-epoch": {"scheduler_interval"},
    "scheduler-missing": {"scheduler"}, "clip-1.0": {"grad_clip"}, "loss-on-logits": {"loss"}, "loss-bce": {"loss"},
    "r2-variance-weighted": {"r2_average"}, "no-slice-regeneration": {"slices_regenerated_each_epoch"},
    "other-label-file": {"label_file"}, "adam-eps-1e-7": {"eps"}, "loss-sum-reduction": {"loss_reduction"},
    "clip-by-value": {"grad_clip_algorithm"}, "checkpoint-best-r2": {"checkpoint_criterion", "checkpoint_mode"},
    "accumulate-2": {"accumulate_grad_batches"},
}


def _sources() -> list:
    out = [None]
    if ROOT:
        out.append(Path(ROOT))
    return out


@pytest.mark.parametrize("source", _sources(), ids=lambda s: "checkout" if s else "recorded")
def test_faithful_recipe_gives_nothing_above_info(source):
    result = recipe_check.run(source, ORIGINAL_RECIPE, "han-total")
    assert result.status == "passed"
    assert all(f.severity == Severity.INFO for f in result.findings), [f.message for f in result.findings]
    rows = rows_by_key(result)
    assert set(rows) >= set(recipe_check.KEYS)
    assert all(rows[k]["status"] == "match" for k in recipe_check.KEYS)
    reference = next(f for f in result.findings if f.kind == "recipe.reference")
    assert reference.evidence["source"] == ("recorded" if source is None else str(source))


@pytest.mark.parametrize("source", _sources(), ids=lambda s: "checkout" if s else "recorded")
@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_each_recipe_deviation_is_caught(name, source):
    result = recipe_check.run(source, get_deviation(name).recipe(), "han-total")
    assert mismatched(result) == EXPECTED_KEYS[name]
    finding = next(f for f in result.findings if f.kind == "recipe.mismatch")
    assert finding.severity >= Severity.WARNING
    assert finding.location in EXPECTED_KEYS[name]
    assert {"original", "replica", "source"} <= set(finding.evidence)
    if source is None:
        assert finding.evidence["source"].startswith("recorded")
    else:
        assert ":" in finding.evidence["source"]  # file:line


def test_epochs_and_validation_are_warnings_and_seed_info():
    result = recipe_check.run(None, ORIGINAL_RECIPE.with_(epochs=50, seed=3), "han-total")
    severities = {f.location: f.severity for f in result.findings if f.kind == "recipe.mismatch"}
    assert severities == {"epochs": Severity.WARNING, "seed": Severity.INFO}


def test_optimizer_pair_and_lightning_module_are_read():
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = torch.optim.Adam(params, lr=2.5e-5, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3000, gamma=0.98)
    pair = read_candidate((opt, sched, "step"))
    assert pair.values["scheduler_interval"] == "iteration"
    result = recipe_check.run(None, (opt, sched, "step"), "han-total")
    assert not mismatched(result)
    assert rows_by_key(result)["grad_clip"]["status"] == "unknown"  # not knowable from the objects

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

        def configure_optimizers(self):
            o = torch.optim.AdamW(self.parameters(), lr=5e-5)
            return [o], [torch.optim.lr_scheduler.StepLR(o, step_size=3000, gamma=0.98)]

    result = recipe_check.run(None, Module(), "han-total")
    # AdamW (decoupled decay), lr 5e-5, its default weight decay 0.01, and Lightning's default interval (epoch)
    assert mismatched(result) == {"optimizer", "weight_decay_coupling", "lr", "weight_decay", "scheduler_interval"}

    def configure():
        o = torch.optim.Adam(params, lr=2.5e-5, weight_decay=1e-5)
        return {"optimizer": o}

    assert mismatched(recipe_check.run(None, configure, "han-total")) == {"scheduler"}


# -- the original's recipe is read from text, at run time ----------------------------------------------------

PARSER = '''
import argparse

def get_parser():
    p = argparse.ArgumentParser("x")
    p.add_argument("--th_seed", default=7, type=int)
    p.add_argument("--no_augment", action="store_true")
    p.add_argument("--num_epochs", type=int, default=100)
    p.add_argument("--label_file_path", type=str, default="somewhere.json")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--len_slice", type=int, default=5000)
    p.add_argument("--weight_decay", type=float, default=1e-5)
    p.add_argument("--lr_decay_step", type=float, default=3000)
    p.add_argument("--lr_decay_rate", type=float, default=0.98)
    p.add_argument("--grad_clip", type=float, default=1)
    p.add_argument("--multi_level", type=str, default="")
    return p
'''

TRAIN = '''
import torch
from sklearn.metrics import r2_score


def get_batch_result(net, data, loss_calculator, where, is_valid=False, args=None):
    squash = torch.sigmoid
    out = net(data)
    if args.multi_level:
        loss = loss_calculator(squash(out[-1]), data.labels)
    else:
        loss = loss_calculator(out, data.labels)
    return out, loss


def train_step(net, data, opt, scheduler, loss_calculator, log, where, args, it):
    _, loss = get_batch_result(net, data, loss_calculator, where, args=args)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
    opt.step()


def get_validation_loss(net, loader, loss_calculator, where, args=None):
    valid_loss, truth, guess = [0.0], [], []
    valid_loss = sum(valid_loss) / len(loader.dataset)
    r2 = r2_score(truth, guess, multioutput="variance_weighted")
    return valid_loss, r2


def train(args, net, where, epochs, criterion, name):
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, gamma=args.lr_decay_rate, step_size=args.lr_decay_step)
    args.iters_per_checkpoint = len(loader)
    for epoch in range(epochs):
        for data in loader:
            train_step(net, data, opt, scheduler, criterion, None, where, args, 0)
        scheduler.step()
        is_best = valid_loss < lowest
'''

MAIN = '''
from torch import nn


def main():
    if args.pc_grad:
        criterion = nn.L1Loss()
    else:
        criterion = nn.MSELoss()
'''

SCRIPT = '''
lrs=(2.5e-5)
for lr in "${lrs[@]}"
do
    python virtuoso/__main__.py \\
    --label_file_path label_2round_mean_reg_19_with0_rm_highstd0.json \\
    --batch_size 8 \\
    --multi_level total_note_cat \\
    --lr $lr \\
    --no_augment
done
'''


@pytest.fixture()
def synthetic_checkout(tmp_path: Path) -> Path:
    code = tmp_path / "virtuoso" / "virtuoso"
    code.mkdir(parents=True)
    (code / "parser.py").write_text(textwrap.dedent(PARSER))
    (code / "train_m2pf.py").write_text(textwrap.dedent(TRAIN))
    (code / "__main__.py").write_text(textwrap.dedent(MAIN))
    scripts = tmp_path / "virtuoso" / "scripts" / "demo"
    scripts.mkdir(parents=True)
    (scripts / "run.sh").write_text(SCRIPT)
    (tmp_path / "README.md").write_text("- `labels/label_2round_mean_reg_19_with0_rm_highstd0.json` is the path.\n")
    return tmp_path


def test_recipe_is_read_from_a_checkout(synthetic_checkout: Path):
    orig = original_recipe(synthetic_checkout, "han-total")
    assert orig.mode == "checkout"
    v = orig.values
    assert v["optimizer"] == "AdamW" and v["lr"] == 2.5e-5 and v["batch_size"] == 8
    assert v["grad_clip"] == 1.0 and v["key_augmentation"] is False
    assert v["scheduler_interval"] == "epoch"  # stepped once per epoch in this checkout
    assert v["r2_average"] == "variance_weighted"
    assert v["slices_regenerated_each_epoch"] is False
    assert v["loss"] == "mse_after_sigmoid"
    assert v["label_file"] == "labels/label_2round_mean_reg_19_with0_rm_highstd0.json"
    assert v["weight_decay_coupling"] == "decoupled" and v["amsgrad"] is False and v["eps"] == 1e-8
    assert v["grad_clip_algorithm"] == "norm" and v["accumulate_grad_batches"] == 1
    assert v["loss_reduction"] == "mean" and v["checkpoint_mode"] == "min" and v["early_stopping"] == "none"
    assert "train_m2pf.py:" in orig.sources["early_stopping"] and "__main__.py:" in orig.sources["loss_reduction"]
    assert orig.sources["lr"].count("run.sh") >= 1 and "parser.py:" in orig.sources["lr"]
    assert "train_m2pf.py:" in orig.sources["optimizer"]
    result = recipe_check.run(synthetic_checkout, ORIGINAL_RECIPE, "han-total")
    assert mismatched(result) == {"optimizer", "weight_decay_coupling", "scheduler_interval", "grad_clip",
                                  "r2_average", "slices_regenerated_each_epoch"}


@pytest.mark.skipif(not ROOT, reason="PERCEPIANO_ORIGINAL not set: point it at a PercePiano checkout "
                                     "(e.g. ../shared/percepiano-original) to read the real recipe")
def test_real_checkout_recipe_equals_the_recorded_one():
    orig = original_recipe(Path(ROOT), "han-total")
    assert orig.as_recipe() == ORIGINAL_RECIPE
    assert orig.sources["scheduler_interval"].startswith("virtuoso/virtuoso/train_m2pf.py:")
    assert orig.extra["update_order"] == "forward+loss, zero_grad, backward, clip, optimizer.step, scheduler.step"
    for variant in ("bilstm-note", "han-measure", "virtuosonet-skip", "single-7layer"):
        assert original_recipe(Path(ROOT), variant).as_recipe() == ORIGINAL_RECIPE
