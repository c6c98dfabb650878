"""Any input width: a replica built for other input columns than the batch's (78, 84, 101, or a width no layout
has) is probed, fed the columns both have (by key name where a layout of its width is known, else by position),
and audited: a shape conflict on its input projection with the columns named (PP-INPUT-FEATURES), the rest of the
model compared on the shared columns, instead of the exit 2 of a failing first call."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from tiers import sweep
from torch import nn

from percepiano_parity.batches.canonical import collate
from percepiano_parity.batches.features import FEATURE_LAYOUT, column_plan, feature_columns, layout_offsets
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.commands.check import run_check
from percepiano_parity.commands.options import resolve_options
from percepiano_parity.core.findings import Severity
from percepiano_parity.replica import SMALL_CONFIG
from percepiano_parity.subjects.adapter import Adapter
from percepiano_parity.subjects.user_subject import make_user_subject

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"
_spec = importlib.util.spec_from_file_location("lightning_example_for_widths", EXAMPLE)
ex = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ex
_spec.loader.exec_module(ex)

SECTION_TEMPO = feature_columns("section_tempo")[0]


def test_column_plans_name_what_a_model_of_another_width_lacks_or_has_in_excess():
    plan = column_plan(79, 78)  # the yml's 78: VirtuosoNet's list without section_tempo
    assert (plan.by, plan.missing, plan.extra, plan.shared) == ("names", ("section_tempo",), (), 78)
    assert plan.unused_batch_columns == (SECTION_TEMPO,) and SECTION_TEMPO not in plan.columns
    plan = column_plan(79, 84)  # the module default with the five _unnorm copies
    assert plan.missing == () and all(k.endswith("_unnorm") for k in plan.extra) and len(plan.extra) == 5
    assert plan.columns[:79] == tuple(range(79)) and plan.columns[79:] == (None,) * 5
    plan = column_plan(79, 101)  # the published splits' layout: keys in another order, by name
    assert plan.by == "names" and plan.missing == ("midi_pitch",) and "mmidi_velocity" in plan.extra
    offsets = layout_offsets(FEATURE_LAYOUT)
    assert plan.columns[0] == offsets["duration"][0]  # its first column is the batch's duration column
    plan = column_plan(79, 77)  # no layout has 77 columns: by position, the batch's columns named
    assert plan.by == "position" and plan.missing == ("columns 77-78 (tempo_primo)",) and plan.shared == 77
    plan = column_plan(12, 14)  # no layout of either width: positions only
    assert (plan.missing, plan.extra) == ((), ("columns 12-13",))


class Narrow(nn.Module):
    """Takes 78 columns; records what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(78, 19)
        self.seen = None

    def forward(self, x, note_locations):
        self.seen = x
        return self.fc(x).mean(1)


def test_a_model_built_for_fewer_columns_is_probed_and_fed_the_columns_both_have():
    model = Narrow()
    subject = make_user_subject(model, Adapter(), spec="narrow", variant="han-total", config=SMALL_CONFIG)
    c = subject.call.conventions
    assert (c.input, c.input_width) == ("padded", 78) and subject.input_plan.missing == ("section_tempo",)
    assert "79 columns are refused; the model takes 78" in c.detected["input_width"]
    assert "it lacks section_tempo" in c.detected["input_width"]
    rows = {r["convention"]: r for r in subject.info.extra["conventions"]}
    assert rows["input_columns"]["value"] == "78 of 79 by names"
    edges = generate_batches(0, 3, config=SMALL_CONFIG, max_notes=24, include_edge_cases=True)
    batch = next(b for b in edges if "edge:unequal-lengths" in b.tags)  # padding is visible
    inp = collate(batch)
    subject.call(model, inp)
    keep = [k for k in range(79) if k != SECTION_TEMPO]
    real = torch.arange(model.seen.shape[1]).unsqueeze(0) < inp.lengths.unsqueeze(1)
    for i, seg in enumerate(batch.segments):  # exactly the batch's values, section_tempo left out
        assert torch.equal(model.seen[i, : seg.length], seg.features[:, keep])
    assert float(model.seen[~real].abs().max()) == 0.0


def _resized(width: int):
    def build(variant="han-total", config=None):
        model = ex.PercePianoLit(config or ex.DEFAULT_CONFIG)
        model.embed.fc = nn.Linear(width, model.embed.fc.out_features)
        return model, ex.LitAdapter()
    return build


build_78, build_101, build_77 = _resized(78), _resized(101), _resized(77)


@pytest.mark.original
@pytest.mark.parametrize("width, missing, extra_word", sweep([
    (78, "section_tempo", None), (101, "midi_pitch", "mmidi_pitch"), (77, "columns 77-78 (tempo_primo)", None)],
    fast={"78"}))
def test_a_replica_of_another_width_is_a_shape_conflict_with_the_columns_named(original, width, missing, extra_word):
    options = {"replica": f"{__file__}:build_{width}", "original": str(original.root), "model_config": "small",
               "batches": 1, "max_notes": 24, "edge_cases": False, "training_checks": False}
    report = run_check(resolve_options(options, use_config_file=False, environ={}))
    blocking = [e for e in report.explanations if e.severity >= Severity.WARNING]
    assert [e.id for e in blocking] == ["PP-INPUT-FEATURES"], [(e.id, e.title) for e in blocking]
    exp = blocking[0]
    assert f"{width} columns instead of 79" in exp.title and f"it lacks {missing}" in exp.replica_does
    if extra_word:
        assert extra_word in exp.replica_does
    assert "compared on the" in exp.effect and "set to 0 on both sides" in exp.effect
    (shape,) = [f for f in report.findings if f.kind == "structure.shape"]
    columns = shape.evidence["input_columns"]
    assert columns["model_width"] == width and missing in columns["missing"] and columns["zeroed"]
    assert f"it lacks {missing}" in shape.message
    # the rest of the model was compared on the shared columns: every level agrees
    assert not [f for f in report.findings if f.check == "forward" and f.severity >= Severity.WARNING]
    assert not report.unexplained
