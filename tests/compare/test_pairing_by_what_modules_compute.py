"""Pairing the replica's modules with the original's by what they compute (shapes, call order, values), and a
mapping that never aborts the audit: shared modules, entries naming nothing and pairs of two shapes are findings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.checks import run_model_checks
from percepiano_parity.checks.structure import mapping_findings
from percepiano_parity.commands.check import run_check
from percepiano_parity.commands.options import resolve_options
from percepiano_parity.compare.engine import Engine, EngineOptions
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.compare.weight_mapping import Group, WeightMap, settle_by_values
from percepiano_parity.core.findings import Severity
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.adapter import Adapter, resolve_mapping
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo
from percepiano_parity.subjects.user_subject import call_factory, load_factory, make_user_subject

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "lightning_example.py"


@pytest.fixture(scope="module")
def batches():
    return generate_batches(1, 0, batch_size=3, config=SMALL_CONFIG, max_notes=20, include_edge_cases=False)


def example(**adapter):
    model, _ = call_factory(load_factory(f"{EXAMPLE}:build"), "ex", variant="han-total", config=SMALL_CONFIG, seed=0)
    return model, Adapter(**adapter)


def compare(model, adapter, batches, **options):
    subject = make_user_subject(model, adapter, spec="ex", variant="han-total", config=SMALL_CONFIG)
    reference = ReplicaSubject(build("han-total", SMALL_CONFIG, seed=0), SubjectInfo("original", "x", "han-total"))
    state = Engine(reference, subject, variant="han-total", config=SMALL_CONFIG,
                   options=EngineOptions(**options)).run(batches)
    return state, [f for c in run_model_checks(state, Tolerances()) for f in c.findings]


def test_same_shaped_lstms_whose_call_order_and_names_disagree_are_paired_by_their_outputs(batches):
    model, adapter = example()
    names = load_factory(f"{EXAMPLE}:build").__globals__

    class Neutral(names["PercePianoLit"]):
        """The note and voice LSTMs under names that say nothing, the voice one run first."""

        def __init__(self, config):
            super().__init__(config)
            notes, voices = self.notes, self.voices
            del self.notes, self.voices
            self.rnn_a, self.rnn_b = notes, voices

        def forward(self, x, note_locations):
            beat, measure, voice = note_locations["beat"], note_locations["measure"], note_locations["voice"]
            embedding = self.embed(x)
            voice_out = self.rnn_b(embedding, voice)
            note = self.rnn_a(embedding, names["packed_lengths"](x))
            beat_out = self.beats(self.beat_pool(note, voice_out, beat))
            measure_out = self.measures(self.measure_pool(beat_out, beat, measure))
            total = torch.cat([note, voice_out, self.beat_span(beat_out, beat),
                               self.measure_span(measure_out, measure)], dim=-1)
            return self.head(self.pool(self.contract(total)))

    torch.manual_seed(0)
    state, findings = compare(Neutral(SMALL_CONFIG), adapter, batches)
    assert [g for g in state.weight_map.resolved if not g.get("equivalent")]
    settled = next(f for f in findings if f.kind == "structure.paired_by_values")
    assert settled.severity == Severity.INFO and "score_encoder.lstm -> rnn_a.lstm" in settled.message
    assert not [f for f in findings if f.severity >= Severity.WARNING]


def test_a_pairing_values_cannot_settle_is_a_visible_warning():
    group = Group(["a.lstm", "b.lstm"], ["x", "y"], {"a.lstm": "x", "b.lstm": "y"}, {"a.lstm": "y", "b.lstm": "x"})
    undecided = WeightMap(undecided=[group])
    final = settle_by_values(undecided, lambda choices: WeightMap(pairs={str(choices): "p"}),
                             lambda wm: (5, 0.2, 1.0))  # both assignments equally far from the reference
    assert final.ambiguous == [group.to_list()] and not final.resolved
    state = ComparisonState(variant="han-total", weight_map=final)
    (finding,) = mapping_findings(state)
    assert finding.kind == "structure.ambiguous_mapping" and finding.severity == Severity.WARNING
    clear = settle_by_values(undecided, lambda choices: WeightMap(pairs={str(choices): "p"}),
                             lambda wm: (7 if "'order'" in next(iter(wm.pairs)) else 5, 0.2, 1.0))
    assert clear.resolved[0]["chosen"] == group.by_order and not clear.ambiguous


def test_one_lstm_used_twice_is_a_tied_finding_and_the_audit_goes_on(batches):
    model, adapter = example(mapping={"score_encoder.lstm": "notes.lstm", "score_encoder.voice_net": "voices.lstm"})
    model.voices.lstm = model.notes.lstm
    state, findings = compare(model, adapter, batches)
    tied = next(f for f in findings if f.kind == "structure.tied_parameters")
    assert tied.severity == Severity.ERROR and tied.location == "score_encoder.voice_net"
    assert tied.evidence["reference_modules"] == ["score_encoder.lstm", "score_encoder.voice_net"]
    assert tied.evidence["candidate_module"] == "notes.lstm" and "voices.lstm" in tied.evidence["candidate_names"]
    assert not any(f.kind == "structure.missing_parameter" and "voice_net" in f.location for f in findings)
    assert "voice" in state.levels and state.levels["voice"].real.exceeded  # the forward was still compared


def test_the_tied_case_through_the_command_is_a_mismatch_not_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_TEST_REFERENCE", "replica")
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    (tmp_path / "tied.py").write_text(textwrap.dedent(f'''
        import importlib.util
        spec = importlib.util.spec_from_file_location("lightning_example_for_tied", r"{EXAMPLE}")
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)

        class Adapter:
            mapping = {{"score_encoder.lstm": "notes.lstm", "score_encoder.voice_net": "voices.lstm"}}

        def build(config):
            model = example.PercePianoLit(config)
            model.voices.lstm = model.notes.lstm
            return model, Adapter()
    '''))
    options = resolve_options({"replica": f"{tmp_path / 'tied.py'}:build", "batches": 1, "max_notes": 16,
                               "edge_cases": False, "training_checks": False, "report_dir": str(tmp_path / "out")})
    report = run_check(options)
    assert report.verdict(options.severity) == "mismatch"
    assert any(f.kind == "structure.tied_parameters" for f in report.findings)
    assert report.check("forward").status == "failed"


def test_mapping_entries_naming_nothing_or_pairing_two_shapes_are_findings(batches):
    model, adapter = example(mapping={"note_embedder.fc": "embed.fc", "out_fc.4": "head.99"})
    overrides = resolve_mapping(adapter, build("han-total", SMALL_CONFIG), model)  # what the adapter says
    overrides["score_encoder.lstm.weight_ih_l0"] = "voices.lstm.bias_hh_l0"  # a --mapping entry of two shapes
    state, findings = compare(model, adapter, batches, mapping_overrides=overrides)
    entries = [f for f in findings if f.kind == "structure.mapping_entry"]
    assert {f.evidence["candidate"] for f in entries} == {"head.99.weight", "head.99.bias"}
    assert all(f.severity == Severity.WARNING for f in entries)
    shape = next(f for f in findings if f.kind == "structure.shape")
    assert shape.message == ("mapped pair score_encoder.lstm.weight_ih_l0 -> voices.lstm.bias_hh_l0 has shapes "
                             f"{tuple(build('han-total', SMALL_CONFIG).score_encoder.lstm.weight_ih_l0.shape)} "
                             f"and {tuple(model.voices.lstm.bias_hh_l0.shape)}")
    assert state.levels and "logits" in state.levels  # the remaining checks ran


def test_a_resized_linear_is_a_shape_conflict_not_a_missing_and_an_extra_module(batches):
    model, adapter = example()
    width = 4 * SMALL_CONFIG.encoder_size
    model.head[1] = torch.nn.Linear(model.head[1].in_features, width)
    model.head[4] = torch.nn.Linear(width, SMALL_CONFIG.num_label)
    state, findings = compare(model, adapter, batches)
    kinds = {f.kind for f in findings if f.check == "structure"}
    assert "structure.shape" in kinds and not kinds & {"structure.missing_parameter", "structure.extra_module"}
    assert {r for r, _, _, _ in state.weight_map.shape_conflicts} >= {"out_fc.1.weight", "out_fc.4.weight"}
