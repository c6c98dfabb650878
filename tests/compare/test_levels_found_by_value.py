"""The original's levels found by value in a replica written in another style, with their source lines; a level
found nowhere stands in by its nearest tensor, and a level nothing fits is a warning, never an info."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiers import sweep

from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.checks import forward, run_model_checks
from percepiano_parity.compare.aggregate import DiffAgg, LevelAgg
from percepiano_parity.compare.engine import Engine
from percepiano_parity.compare.locate import locate
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Severity
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.diagnosis import diagnose
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.adapter import Adapter
from percepiano_parity.subjects.level_sites import Counts
from percepiano_parity.subjects.recording import Recorded, Site
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo
from percepiano_parity.subjects.user_subject import call_factory, load_factory, make_user_subject

ROOT = Path(__file__).resolve().parents[2]
FOREIGN = ROOT / "tests" / "fixtures" / "foreign_replica.py"
EXAMPLE = ROOT / "docs" / "lightning_example.py"


def audit(spec: str, batches, adapter=None):
    model, made = call_factory(load_factory(spec), spec, variant="han-total", config=SMALL_CONFIG, seed=0)
    subject = make_user_subject(model, adapter or made, spec=spec, variant="han-total", config=SMALL_CONFIG)
    reference = ReplicaSubject(build("han-total", SMALL_CONFIG, seed=0), SubjectInfo("original", "x", "han-total"))
    engine = Engine(reference, subject, variant="han-total", config=SMALL_CONFIG)
    state = engine.run(batches)
    return state, run_model_checks(state, Tolerances())


@pytest.fixture(scope="module")
def batches():
    return generate_batches(2, 1, batch_size=4, config=SMALL_CONFIG, max_notes=24, include_edge_cases=False)


def test_every_level_of_the_foreign_style_replica_is_found_with_its_source_line(batches):
    state, checks = audit(f"{FOREIGN}:build", batches)
    assert all(c.status == "passed" for c in checks), [(c.id, [f.key for f in c.findings]) for c in checks]
    assert set(state.located) == (set(LEVELS) - {"logits"}) | set(ATTENTIONS) and not state.not_located
    for name, site in state.located.items():
        assert site["found"] == "yes" and site["source"].startswith("fixtures/foreign_replica.py:"), name
    layouts = {name: site["layout"] for name, site in state.located.items()}
    assert "channels" in layouts["voice"]  # the voice half of a preallocated cat(note, voice) buffer
    assert state.located["attn.beat"]["occurrence"] == "all (concatenated)"  # one softmax per segment
    assert state.located["note"]["op"] == "lstm" and state.located["note"]["module"].endswith("note_lstm")
    rows = {r["level"]: r for r in next(c for c in checks if c.id == "forward").tables["located"]}
    assert set(rows) == set(state.located)
    calling = next(f for c in checks for f in c.findings if f.kind == "forward.calling_conventions")
    assert "location_base beat=1, measure=1 (declared)" in calling.message


def test_the_worked_example_needs_no_levels_and_no_mapping(batches):
    state, checks = audit(f"{EXAMPLE}:build", batches)
    assert all(c.status == "passed" for c in checks)
    assert all(site["found"] == "yes" for site in state.located.values())
    renamed = {(r, c) for r, (c, _) in state.weight_map.module_pairs().items()}
    assert ("note_embedder.fc", "embed.fc") in renamed and not state.weight_map.unmatched_candidate


@pytest.mark.parametrize("factory, rule, level", sweep([
    ("build_padded_lstm", "PP-PADDED-LSTM", "note"),
    ("build_span_offset", "PP-SPAN-OFFSET", "beat_spanned"),
    ("build_layernorm", "PP-EXTRA-NORM", "contracted"),
    ("build_head_width", "PP-HEAD-WIDTH", "logits"),
], fast={"build_padded_lstm"}, name=lambda case: "-".join(case)))
def test_an_injected_mistake_is_explained_first_at_its_level(factory, rule, level):
    batches = generate_batches(2, 0, batch_size=4, config=SMALL_CONFIG, max_notes=64, include_edge_cases=False)
    assert any(len(set(b.lengths)) > 1 for b in batches)  # padding, so that packing matters
    state, checks = audit(f"{FOREIGN}:{factory}", batches)
    findings = [f for c in checks for f in c.findings]
    explanations, _ = diagnose(findings, state)
    assert explanations and explanations[0].id == rule and explanations[0].root_level == level
    located = state.located.get(level)
    if located is not None and level != "logits":
        assert located["found"] == "nearest" and located["source"].startswith("fixtures/foreign_replica.py:")


def test_a_packed_node_level_named_in_the_adapter_keeps_its_node_count(batches):
    model, _ = call_factory(load_factory(f"{EXAMPLE}:build"), "ex", variant="han-total", config=SMALL_CONFIG, seed=0)
    subject = make_user_subject(model, Adapter(levels={"beat": "beats.lstm", "measure": "measures.lstm"}), spec="ex",
                                variant="han-total", config=SMALL_CONFIG)
    reference = ReplicaSubject(build("han-total", SMALL_CONFIG, seed=0), SubjectInfo("original", "x", "han-total"))
    mine, theirs = subject.run(batches[0], grads=False), reference.run(batches[0], grads=False)
    for level in ("beat", "measure"):  # (N, nodes, C), not padded to the note count
        assert mine.levels[level].shape == theirs.levels[level].shape


def test_a_level_nothing_fits_is_a_warning_and_a_lone_layout_error_is_never_inherited():
    state = ComparisonState(variant="han-total")
    state.levels_only_reference = {"beat"}
    state.not_located = ["beat"]
    bad = DiffAgg(batches=1, shape_mismatch=([2, 3, 4], [2, 9, 4]))
    state.levels["measure"] = LevelAgg("measure", real=bad, local=DiffAgg(batches=1, numel=4))
    result = forward.run(state)
    missing = next(f for f in result.findings if f.kind == "forward.missing_level")
    assert missing.severity == Severity.WARNING and "cannot be compared" in missing.message
    measure = next(f for f in result.findings if f.location == "measure" and f.kind.startswith("forward.shape"))
    assert measure.severity == Severity.ERROR  # no earlier level differs: nothing to inherit from


def _recorded(index: int, op: str, tensor) -> Recorded:
    return Recorded(index, Site(op, "m", "model.py", index + 1, "forward"), 0, "output", tensor, tensor._version)


def test_a_level_found_nowhere_is_left_out_when_what_is_computed_from_it_matches():
    g = torch.Generator().manual_seed(0)
    counts = Counts(2, {"note": torch.tensor([3, 3]), "beat": torch.tensor([2, 2])})
    note, voice, other = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    other[0] = voice[0]  # half the rows equal: it stands for voice if voice is found nowhere
    nodes = torch.randn(2, 2, 8, generator=g)
    graph = {"note": (), "voice": (), "beat_nodes": ("note", "voice")}
    levels = {"note": note, "voice": voice, "beat_nodes": nodes}
    kept_elsewhere = [_recorded(0, "lstm", note), _recorded(1, "odd", other), _recorded(2, "pool", nodes)]
    sites = locate(levels, {}, kept_elsewhere, counts, graph)
    assert set(sites) == {"note", "beat_nodes"}  # voice: a layout not known here, its consumer matches
    departing = [_recorded(0, "lstm", note), _recorded(1, "odd", other), _recorded(2, "pool", nodes + 1)]
    sites = locate(levels, {}, departing, counts, graph)
    assert sites["voice"].site.op == "odd" and not sites["voice"].found  # the nearest stands in
    assert sites["beat_nodes"].site.op == "pool" and not sites["beat_nodes"].found
