"""Reference bundles: record once, check anywhere.

Most tests record a FAKE original (the faithful replica wrapped as a subject named "original"), so they run
without the original checkout. The last tests compare the shipped default bundles with the live original
when PERCEPIANO_ORIGINAL points at a checkout, and skip with a reason otherwise.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from tiers import sweep

from percepiano_parity.commands.audit import AuditSettings, audit
from percepiano_parity.commands.record import record_bundle
from percepiano_parity.compare.engine import Engine
from percepiano_parity.compare.structure import describe, trace_calls
from percepiano_parity.core.findings import Severity
from percepiano_parity.original_adapter.locate import VALIDATED_FINGERPRINT
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.bundle import (
    BATCHES,
    DEFAULT_BUNDLES,
    DEFAULT_VARIANTS,
    MANIFEST,
    STRUCTURE,
    WEIGHTS,
    Bundle,
    BundleError,
    load_bundle,
    taps_file,
)
from percepiano_parity.subjects.deviations import DEVIATIONS
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import Subject, SubjectInfo

SEED = 7
TINY = {"n_batches": 1, "batch_size": 3, "max_notes": 16, "include_edge_cases": ("edge:length-1",)}
DEVIATION_VARIANTS = sorted({d.variant for d in DEVIATIONS.values() if d.kind in ("model", "variant")})
MODEL_DEVIATIONS = sorted(n for n, d in DEVIATIONS.items() if d.kind in ("model", "variant"))
HANDFUL = ("layernorm-han-output", "head-512-128", "padded-lstm", "autocast-bf16", "attention-no-mask")


def fake_original(variant: str, seed: int = SEED) -> ReplicaSubject:
    """The faithful replica posing as the original (same names, same seed-built weights)."""
    info = SubjectInfo(name="original", kind="fake-original", variant=variant, revision="fake-revision",
                       shims=({"name": "fake_shim", "reason": "test"},), warnings=("fake warning",),
                       extra={"fingerprint": "fake-fingerprint", "class": "FakeOriginal"})
    return ReplicaSubject(build(variant, SMALL_CONFIG, seed=seed), info)


def replica_subject(model: torch.nn.Module, variant: str) -> ReplicaSubject:
    return ReplicaSubject(model, SubjectInfo(name="replica", kind="bundled-replica", variant=variant))


def settings(variant: str) -> AuditSettings:
    return AuditSettings(variant=variant, config=SMALL_CONFIG, seed=SEED)


def above_info(report) -> list[str]:
    return [f"{f.key}: {f.message}" for c in report.checks for f in c.findings if f.severity > Severity.INFO]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is several times faster than two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, Path]:
    """One fake bundle per variant the deviation library needs (SMALL_CONFIG, 2 tiny batches)."""
    root = tmp_path_factory.mktemp("bundles")
    return {v: record_bundle(None, v, SMALL_CONFIG, SEED, root / v, subject=fake_original(v), **TINY)
            for v in DEVIATION_VARIANTS}


@pytest.fixture()
def han_copy(recorded, tmp_path) -> Path:
    """A private copy of the han-total bundle, to tamper with."""
    return Path(shutil.copytree(recorded["han-total"], tmp_path / "han-total"))


# -- round trip ---------------------------------------------------------------------------------------------

def test_round_trip_equals_the_live_subject(recorded):
    bundle = load_bundle(recorded["han-total"], expect_variant="han-total", expect_config=SMALL_CONFIG)
    live = fake_original("han-total")
    assert (bundle.variant, bundle.config, bundle.seed) == ("han-total", SMALL_CONFIG, SEED)
    assert [b.tags[0] for b in bundle.batches] == ["normal", "edge:length-1"]  # normal batches add hazard: tags
    assert bundle.batches[1].lengths == [16, 1, 8]  # padding is exercised
    state = live.model.state_dict()
    assert set(bundle.weights) == set(state)
    assert all(torch.equal(bundle.weights[k], state[k]) for k in state)
    for batch, taps in zip(bundle.batches, bundle.taps, strict=True):
        want = live.run(batch, grads=True)
        assert set(taps.levels) == set(want.levels) and set(taps.grads) == set(want.grads)
        assert set(taps.attention) == set(want.attention)
        assert all(torch.equal(taps.levels[k], want.levels[k]) for k in want.levels)
        assert all(torch.equal(taps.grads[k], want.grads[k]) for k in want.grads)
        assert all(torch.equal(taps.attention[k], want.attention[k]) for k in want.attention)
        assert taps.loss == want.loss and taps.dtypes == want.dtypes


def test_batches_round_trip_bit_exact(recorded):
    from percepiano_parity.batches.synthetic import generate_batches

    bundle = load_bundle(recorded["bilstm-note"])
    fresh = [b for b in generate_batches(1, SEED, batch_size=3, config=SMALL_CONFIG, max_notes=16,
                                         include_edge_cases=True) if b.tags[0] in ("normal", "edge:length-1")]
    for got, want in zip(bundle.batches, fresh, strict=True):
        assert got.tags == want.tags and [s.name for s in got.segments] == [s.name for s in want.segments]
        for a, b in zip(got.segments, want.segments, strict=True):
            for f in ("features", "beat", "measure", "voice", "section", "label"):
                assert getattr(a, f).dtype == getattr(b, f).dtype and torch.equal(getattr(a, f), getattr(b, f))


def test_manifest_says_what_was_recorded(recorded):
    bundle = load_bundle(recorded["han-total"])
    m = bundle.manifest
    assert m["kind"] == "percepiano-parity-bundle" and m["schema_version"] == 1
    assert m["config"] == SMALL_CONFIG.to_dict() and m["n_batches"] == 2
    assert m["original"]["revision"] == "fake-revision" and m["original"]["fingerprint"] == "fake-fingerprint"
    assert m["shims"] == [{"name": "fake_shim", "reason": "test"}]
    assert set(m["recorded_with"]) == {"python", "torch", "numpy", "safetensors"}
    assert m["tolerances"]["floor_multiple"] == 5.0
    assert bundle.supported_checks == ("structure", "init", "forward", "backward", "attention", "precision")
    assert not m["recipe"]["recorded"] and "subject" in m["recipe"]["reason"]
    files = sorted(p.name for p in recorded["han-total"].iterdir())
    assert files == sorted([MANIFEST, STRUCTURE, WEIGHTS, BATCHES, taps_file(0), taps_file(1)])
    assert set(m["files"]) == set(files) - {MANIFEST}
    assert all(len(e["sha256"]) == 64 for e in m["files"].values())


def test_recording_is_deterministic(recorded, tmp_path):
    again = record_bundle(None, "bilstm-note", SMALL_CONFIG, SEED, tmp_path / "b", subject=fake_original("bilstm-note"),
                          **TINY)
    for name in json.loads((again / MANIFEST).read_text())["files"]:
        assert (again / name).read_bytes() == (recorded["bilstm-note"] / name).read_bytes(), name


def test_loading_runs_no_pickle(recorded, monkeypatch):
    def forbidden(*_a, **_k):
        raise AssertionError("a bundle must load without pickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    bundle = load_bundle(recorded["han-total"])
    assert bundle.reference_subject().run(bundle.batches[0]).levels


# -- the replayed subject ------------------------------------------------------------------------------------

def test_replay_subject_protocol_and_info(recorded):
    bundle = load_bundle(recorded["han-total"])
    subject = bundle.reference_subject()
    assert isinstance(subject, Subject)
    info = subject.info
    assert (info.name, info.kind, info.variant) == ("original", "reference-bundle", "han-total")
    assert info.source == str(recorded["han-total"]) and info.revision == "fake-revision"
    assert info.shims == ({"name": "fake_shim", "reason": "test"},) and "fake warning" in info.warnings
    no_grads = subject.run(bundle.batches[1], grads=False)
    assert not no_grads.grads and no_grads.levels and no_grads.loss == bundle.taps[1].loss
    assert subject.run(bundle.batches[1]).grads


def test_replay_rejects_unrecorded_batches_and_train_mode(recorded):
    from percepiano_parity.batches.synthetic import generate_batches

    subject = load_bundle(recorded["han-total"]).reference_subject()
    other = generate_batches(1, SEED + 1, batch_size=2, config=SMALL_CONFIG, max_notes=16, include_edge_cases=False)
    with pytest.raises(BundleError, match="batch not in bundle"):
        subject.run(other[0])
    with pytest.raises(BundleError, match="eval-mode"):
        subject.run(load_bundle(recorded["han-total"]).batches[0], train=True)


def test_engine_uses_recorded_structure_and_never_runs_the_skeleton(recorded):
    bundle = load_bundle(recorded["han-total"])
    reference = bundle.reference_subject()

    def boom(*_args):
        raise AssertionError("the replayed skeleton must never run")

    reference.model.register_forward_pre_hook(boom)
    engine = Engine(reference, replica_subject(build("han-total", SMALL_CONFIG, seed=SEED), "han-total"),
                    variant="han-total", config=SMALL_CONFIG)
    engine.prepare(bundle.batches[0])
    assert engine.state.reference_structure == bundle.structure["description"]
    assert engine.state.weight_map.identity and not engine.state.weight_map.unmatched_reference
    engine.fold_batch(0, bundle.batches[0])


def test_engine_without_structure_hook_still_traces(recorded):
    live = fake_original("han-total")
    batch = load_bundle(recorded["han-total"]).batches[0]
    engine = Engine(live, replica_subject(build("han-total", SMALL_CONFIG, seed=SEED), "han-total"),
                    variant="han-total", config=SMALL_CONFIG)
    engine.prepare(batch)
    engine.fold_batch(0, batch)  # with names that pair every parameter, call order is recorded on batch 0
    order = trace_calls(live.model, lambda: live.run(batch, grads=False))
    traced = dict(engine.state.reference_structure)
    # the dropout and activation calls of batch 0 are recorded too (compared by behaviour, not by module)
    assert any(call["fn"] == "dropout" for call in traced.pop("functions"))
    assert traced == describe(live.model, order)
    assert traced == load_bundle(recorded["han-total"]).structure["description"]


# -- audits: replayed == live ---------------------------------------------------------------------------------

def test_faithful_replica_passes_against_a_bundle(recorded):
    for variant, path in recorded.items():
        bundle = load_bundle(path)
        report, _ = audit(bundle.reference_subject(), replica_subject(build(variant, SMALL_CONFIG, seed=SEED), variant),
                          bundle.batches, settings(variant))
        assert above_info(report) == [], variant


# Naming the first divergent operation inside a level (an INFO diagnosis) watches the reference model's modules
# run, and the relation tests replay the reference's operations; a recorded reference holds level taps, not
# operations, so those findings (and the residuals, operations and fix attempts they feed) differ by design and
# are left out here: what must agree is every other finding, the statuses, and which explanation comes first at
# which level.
LIVE_ONLY_KIND = "forward.first_divergent_op"
LIVE_ONLY_PREFIX = "forward.relation"
# relations judged by replaying the reference's operations: against a recording, the same root is explained by
# the generic rule (which says what was tested)
OPERATION_RULES = {"PP-REL-MISSING-OP", "PP-REL-EXTRA-OP", "PP-REL-DIFFERENT-OP", "PP-REL-OP-ARGUMENTS"}


def _outcome(reference, candidate, batches, variant):
    """Everything a report says about the comparison: findings (key, severity, message, metrics), check
    statuses and explanations; the subjects' descriptions (which differ by design) are left out."""
    try:
        report, _ = audit(reference, candidate, batches, settings(variant))
    except Exception as exc:  # noqa: BLE001 - both sides must fail alike
        return ("error", type(exc).__name__), []
    def live_only(kind: str) -> bool:
        return kind == LIVE_ONLY_KIND or kind.startswith(LIVE_ONLY_PREFIX)

    findings = sorted((f.key, f.severity.label, f.message, json.dumps(f.metrics, sort_keys=True, default=str))
                      for c in report.checks for f in c.findings if not live_only(f.kind))
    statuses = [(c.id, c.status) for c in report.checks]
    explanations = [("PP-FORWARD-UNEXPLAINED-LEVEL" if e.id in OPERATION_RULES else e.id, e.root_level,
                     e.severity.label) for e in report.explanations]
    return ("ok", findings, statuses, explanations), above_info(report)


@pytest.mark.parametrize("name", sweep(MODEL_DEVIATIONS, fast={"layernorm-han-output"}))
def test_replayed_audit_agrees_with_live(recorded, name):
    dev = DEVIATIONS[name]
    bundle = load_bundle(recorded[dev.variant], expect_variant=dev.variant, expect_config=SMALL_CONFIG)
    cand_variant = dev.candidate_variant or dev.variant

    def candidate():
        return replica_subject(dev.build_candidate(SMALL_CONFIG, seed=SEED), cand_variant)

    live, _ = _outcome(fake_original(dev.variant), candidate(), bundle.batches, dev.variant)
    replayed, problems = _outcome(bundle.reference_subject(), candidate(), bundle.batches, dev.variant)
    assert replayed == live
    if name in HANDFUL:
        assert problems, f"{name} should be detected"


# -- validation: one clear line --------------------------------------------------------------------------------

def _error(path, **kwargs) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_flipped_value_is_caught_and_names_the_file(han_copy):
    target = han_copy / taps_file(0)
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01  # one bit of one float in the data section
    target.write_bytes(bytes(data))
    message = _error(han_copy)
    assert taps_file(0) in message and "sha256" in message


def test_truncated_file(han_copy):
    target = han_copy / WEIGHTS
    target.write_bytes(target.read_bytes()[:1000])
    message = _error(han_copy)
    assert WEIGHTS in message and "truncated" in message


def test_missing_file(han_copy):
    (han_copy / BATCHES).unlink()
    assert BATCHES in _error(han_copy) and "missing" in _error(han_copy)


def test_foreign_and_missing_bundles(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / MANIFEST).write_text(json.dumps({"name": "something else", "values": [1, 2, 3]}))
    assert "not a percepiano-parity bundle" in _error(foreign)
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.json").write_text("{}")
    assert "no manifest.json" in _error(other)
    assert "does not exist" in _error(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    assert "corrupt" in _error(broken)


def _edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key].update(value)
        else:
            manifest[key] = value
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_unknown_schema_version(han_copy):
    _edit_manifest(han_copy, schema_version=99)
    assert "schema version 99" in _error(han_copy)


def test_wrong_variant_or_config(recorded):
    path = recorded["han-total"]
    assert "recorded for variant 'han-total', not 'bilstm-note'" in _error(path, expect_variant="bilstm-note")
    message = _error(path, expect_config=SMALL_CONFIG.with_(note_size=32))
    assert "note_size 16 (asked 32)" in message
    load_bundle(path, expect_variant="han-total", expect_config=SMALL_CONFIG.to_dict())


def test_weights_not_fitting_the_skeleton(han_copy):
    _edit_manifest(han_copy, variant="han-measure")
    assert "do not fit the han-measure replica skeleton" in _error(han_copy)


def test_version_drift_warns(han_copy):
    _edit_manifest(han_copy, recorded_with={"torch": "0.0.1", "numpy": "0.0.2"})
    bundle = load_bundle(han_copy)
    assert any("torch 0.0.1" in w for w in bundle.warnings) and any("numpy 0.0.2" in w for w in bundle.warnings)
    assert not any("python" in w for w in bundle.warnings)
    assert set(bundle.warnings) <= set(bundle.reference_subject().info.warnings)


def test_record_refuses_to_replace_what_is_not_a_bundle(tmp_path, recorded):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="already exists"):
        record_bundle(None, "bilstm-note", SMALL_CONFIG, SEED, tmp_path, subject=fake_original("bilstm-note"), **TINY)
    with pytest.raises(ValueError, match="unknown edge-case tags"):
        record_bundle(None, "bilstm-note", SMALL_CONFIG, SEED, tmp_path / "x", subject=fake_original("bilstm-note"),
                      include_edge_cases=("edge:nope",))
    assert (tmp_path / "keep.txt").read_text() == "mine"


# -- the shipped default bundles ------------------------------------------------------------------------------

def test_default_bundles_are_shipped_small():
    assert set(DEFAULT_BUNDLES) == set(DEFAULT_VARIANTS) == {"han-total", "bilstm-note"}
    root = next(iter(DEFAULT_BUNDLES.values())).parent
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 2_000_000, total
    # pyproject's package-data glob `data/bundles/*/*` covers every shipped file
    assert all(p.parent.parent == root for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("variant", DEFAULT_VARIANTS)
def test_default_bundle_loads_and_the_faithful_replica_passes(variant):
    bundle: Bundle = load_bundle(DEFAULT_BUNDLES[variant], expect_variant=variant, expect_config=SMALL_CONFIG)
    assert bundle.seed == SEED and len(bundle.batches) == 2
    assert bundle.manifest["original"]["fingerprint"] == VALIDATED_FINGERPRINT  # the e672299 snapshot
    assert bundle.manifest["original"]["class"] == "VirtuosoNetMultiLevel"
    report, _ = audit(bundle.reference_subject(), replica_subject(build(variant, SMALL_CONFIG, seed=SEED), variant),
                      bundle.batches, settings(variant))
    assert above_info(report) == []
    assert "recipe" in bundle.supported_checks and bundle.recipe["values"]["lr"] == 2.5e-5


def test_default_bundle_recipe_feeds_the_recipe_check():
    from percepiano_parity.checks import recipe as recipe_check
    from percepiano_parity.original_adapter import recipe as recipe_original
    from percepiano_parity.replica.recipe import ORIGINAL_RECIPE

    bundle = load_bundle(DEFAULT_BUNDLES["han-total"])
    same = recipe_check.compare(recipe_original.from_bundle(bundle), recipe_check.read_candidate(ORIGINAL_RECIPE))
    assert same.status == "passed"
    other = recipe_check.compare(recipe_original.from_bundle(bundle), recipe_check.read_candidate(ORIGINAL_RECIPE.with_(lr=5e-5)))
    assert recipe_check.mismatched(other) == {"lr"}


# -- the live original (PERCEPIANO_ORIGINAL) ------------------------------------------------------------------

# `original` (tests/conftest.py) loads the checkout through the adapter, or skips with the reason.

@pytest.mark.original
def test_make_default_reproduces_the_shipped_bundles(original, tmp_path):
    from percepiano_parity.commands import record

    assert record.main(["default-bundles", "--original", str(original.root), "--out", str(tmp_path)]) == 0
    for variant in DEFAULT_VARIANTS:
        fresh = load_bundle(tmp_path / variant)
        shipped = load_bundle(DEFAULT_BUNDLES[variant])
        assert fresh.manifest["original"]["revision"] == shipped.manifest["original"]["revision"]
        assert [b.lengths for b in fresh.batches] == [b.lengths for b in shipped.batches]
        assert all(torch.equal(fresh.weights[k], shipped.weights[k]) for k in shipped.weights)
        assert fresh.structure == shipped.structure
        for a, b in zip(fresh.taps, shipped.taps, strict=True):
            assert a.levels.keys() == b.levels.keys() and a.grads.keys() == b.grads.keys()
            for k in b.levels:
                torch.testing.assert_close(a.levels[k], b.levels[k], rtol=1e-5, atol=1e-7)
            for k in b.grads:
                torch.testing.assert_close(a.grads[k], b.grads[k], rtol=1e-4, atol=1e-9)
            for k in b.attention:
                torch.testing.assert_close(a.attention[k], b.attention[k], rtol=1e-5, atol=1e-7)
            assert a.loss == pytest.approx(b.loss, rel=1e-6)


@pytest.mark.original
@pytest.mark.parametrize("variant", DEFAULT_VARIANTS)
def test_original_and_shipped_bundle_audit_alike(original, variant):
    bundle = load_bundle(DEFAULT_BUNDLES[variant], expect_variant=variant, expect_config=SMALL_CONFIG)

    def candidate():
        return replica_subject(build(variant, SMALL_CONFIG, seed=SEED), variant)

    replayed, _ = _outcome(bundle.reference_subject(), candidate(), bundle.batches, variant)
    live, _ = _outcome(original.subject(variant, SMALL_CONFIG, SEED), candidate(), bundle.batches, variant)
    assert replayed == live


@pytest.mark.slow
@pytest.mark.original
def test_data_ops_can_be_recorded(original, tmp_path):
    path = record_bundle(original, "bilstm-note", SMALL_CONFIG, SEED, tmp_path / "b", n_batches=1, batch_size=2,
                         max_notes=16, include_edge_cases=False, data_ops=True)
    bundle = load_bundle(path)
    assert {"recipe", "data"} <= set(bundle.supported_checks)
    assert {"slicing", "collate", "loss", "r2", "validation", "counts", "inputs_digest"} <= set(bundle.data_ops)
    assert json.loads(bundle.data_ops_path.read_text()) == bundle.data_ops
