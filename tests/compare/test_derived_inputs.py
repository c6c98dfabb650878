"""Inputs computed outside the levels: a level that agrees on the original's inputs (teacher forced) but not in
the free run is given something else besides the levels; the input the replica derives differently is named, how
it differs, and shown to be the cause by putting the original's value in its place (compare.derived_inputs).

The replicas are one-place changes of the worked example (docs/lightning_example.py), written here: lengths
computed one short, beat numbers +1, voice numbers counted from 0. Each is explained the same way, by measurement.
Items of unequal lengths are needed: the original is blind to a shift of every beat number, padding included,
until padding meets real notes (max_notes 96 keeps some of the drawn lengths, 51 to 413 notes, apart).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from tiers import sweep

from percepiano_parity.commands.check import run_check
from percepiano_parity.commands.options import resolve_options
from percepiano_parity.compare.derived_inputs import suspects
from percepiano_parity.core.findings import Severity

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"
_spec = importlib.util.spec_from_file_location("lightning_example_for_derived_inputs", EXAMPLE)
ex = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ex
_spec.loader.exec_module(ex)


class OneShort(ex.PercePianoLit):
    """The example's forward with its lengths computed one short (the only change)."""

    def forward(self, x, note_locations):
        beat, measure, voice = note_locations["beat"], note_locations["measure"], note_locations["voice"]
        lengths = ex.packed_lengths(x) - 1
        embedding = self.embed(x)
        note = self.notes(embedding, lengths)
        voice_out = self.voices(embedding, voice)
        beat_out = self.beats(self.beat_pool(note, voice_out, beat))
        measure_out = self.measures(self.measure_pool(beat_out, beat, measure))
        total = torch.cat([note, voice_out, self.beat_span(beat_out, beat),
                           self.measure_span(measure_out, measure)], dim=-1)
        return self.head(self.pool(self.contract(total)))


class BeatPlusOne(ex.PercePianoLit):
    """Beat numbers shifted by one before the hierarchy (padding included)."""

    def forward(self, x, note_locations):
        return super().forward(x, {**note_locations, "beat": note_locations["beat"] + 1})


class VoiceFromZero(ex.PercePianoLit):
    """Voices renumbered from 0, which the voice LSTM reads as "no voice"."""

    def forward(self, x, note_locations):
        return super().forward(x, {**note_locations, "voice": (note_locations["voice"] - 1).clamp_min(0)})


def _factory(cls):
    def build(variant="han-total", config=None):
        return cls(config or ex.DEFAULT_CONFIG), ex.LitAdapter()
    return build


build_one_short, build_beat_plus_one, build_voice_from_zero = (_factory(OneShort), _factory(BeatPlusOne),
                                                               _factory(VoiceFromZero))


def test_suspects_are_named_by_how_they_relate_to_the_originals_inputs():
    lengths = torch.tensor([5, 3, 2])
    real = torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)
    beat = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 0, 0], [3, 4, 0, 0, 0]])
    inputs = {"lengths": lengths, "mask": real, "beat": beat}
    records = [{"index": k, "op": "op", "where": "f.py:1", "value": v} for k, v in enumerate((
        lengths, lengths - 1, ~real, beat + 1, beat + torch.tensor([[0], [2], [0]]), beat.t().contiguous()))]
    found = {s.index: s.how for s in suspects(records, inputs, real)}
    assert 0 not in found and 5 not in found  # equal (in either layout): nothing to suspect
    assert found[1] == "lengths are one short for every item"
    assert found[2].startswith("the mask of real notes is inverted")
    assert found[3] == "beat numbers +1 on every note"
    assert found[4] == "beat numbers are offset per item (item 1 +2; the other items agree)"
    order = [s.index for s in suspects(records, inputs, real)]
    assert order.index(4) > max(order.index(1), order.index(2), order.index(3))  # simplest relations first


def audit(original, case: str):
    options = {"replica": f"{__file__}:build_{case}", "original": str(original.root), "model_config": "small",
               "batches": 1, "max_notes": 96, "edge_cases": False, "training_checks": False}
    return run_check(resolve_options(options, use_config_file=False, environ={}))


@pytest.mark.original
@pytest.mark.parametrize("case, level, how, line", sweep([
    ("one_short", "note", "lengths are one short for every item", "lengths = ex.packed_lengths(x) - 1"),
    ("beat_plus_one", "beat_nodes", "beat numbers +1 on every note", '"beat": note_locations["beat"] + 1'),
    ("voice_from_zero", "voice", "voice numbers -1 on every note", '"voice": (note_locations["voice"] - 1)'),
], fast={"one_short"}))
def test_an_input_computed_outside_the_levels_is_named_and_shown_to_be_the_cause(original, case, level, how, line):
    report = audit(original, case)
    levels = {row["level"]: row for row in report.check("forward").tables["levels"]}
    assert levels[level]["status"] == "mismatch"  # it differs in the free run ...
    (finding,) = [f for f in report.findings if f.kind == "forward.derived_input"]
    assert finding.evidence["root_level"] == level and finding.evidence["how"] == how
    # ... although on the original's inputs it agrees, and with the original's value in place the logits agree
    assert "logits" in finding.evidence["agree"]
    assert finding.metrics["logits_residual"] <= levels["logits"]["tolerance"] < finding.metrics["logits_baseline"]
    source = Path(__file__).read_text().splitlines()
    lineno = int(finding.evidence["where"].rsplit(":", 1)[1])
    assert finding.evidence["where"].startswith(__file__) and line in source[lineno - 1]
    first = report.explanations[0]
    assert (first.id, first.root_level) == ("PP-DERIVED-INPUT", level)
    assert first.title == f"An input computed outside the levels differs: {how}"
    assert "test_derived_inputs.py:" in first.replica_does and "teacher forced" in first.replica_does
    assert [e.id for e in report.explanations if e.severity >= Severity.WARNING] == ["PP-DERIVED-INPUT"]
    assert not report.unexplained
