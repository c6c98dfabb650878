"""A user's replica as an audit subject: factory loading, adapter validation, level capture, mapping."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.commands.options import UsageError
from percepiano_parity.compare.engine import Engine
from percepiano_parity.compare.weight_mapping import map_weights
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.replica import SMALL_CONFIG, build
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo, TeacherForcible
from percepiano_parity.subjects.user_subject import (
    DEFAULT_ADAPTER,
    Adapter,
    AdapterError,
    TeacherForcedUserSubject,
    UserSubject,
    call_factory,
    load_factory,
    make_user_subject,
    recipe_source,
    resolve_mapping,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "lightning_example.py"


@pytest.fixture(scope="module")
def batch():
    return generate_batches(1, 0, batch_size=3, config=SMALL_CONFIG, max_notes=16, include_edge_cases=False)[0]


@pytest.fixture(scope="module")
def example():
    factory = load_factory(f"{EXAMPLE}:build")
    return call_factory(factory, "example", variant="han-total", config=SMALL_CONFIG, seed=0)


def test_load_factory_errors_are_one_line_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="expected module:factory"):
        load_factory("no_colon")
    with pytest.raises(UsageError, match="does not exist"):
        load_factory(f"{tmp_path / 'missing.py'}:build")
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_anywhere\n")
    with pytest.raises(UsageError, match=r"your replica module failed: ModuleNotFoundError: .*broken.py:1"):
        load_factory(f"{broken}:build")
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        load_factory(f"{EXAMPLE}:nope")
    with pytest.raises(UsageError, match="not callable"):
        load_factory(f"{EXAMPLE}:MASK_VALUE")


def test_load_factory_by_module_name():
    assert load_factory("replica:build") is build


def test_call_factory_passes_only_accepted_arguments_after_seeding():
    seen = {}

    def factory(config, seed):
        seen.update(config=config, seed=seed)
        return build("han-total", config)

    model, adapter = call_factory(factory, "f", variant="han-total", config=SMALL_CONFIG, seed=5)
    assert seen == {"config": SMALL_CONFIG, "seed": 5} and adapter is DEFAULT_ADAPTER
    reference = build("han-total", SMALL_CONFIG, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))


@pytest.mark.parametrize("returned, message", [
    (lambda: 42, "returned int"),
    (lambda: (nn.Identity(), None), "without parameters"),
    (lambda: (_ for _ in ()).throw(ValueError("bad size")), "failed: ValueError: bad size"),
])
def test_call_factory_rejects_what_is_not_a_model(returned, message):
    with pytest.raises(UsageError, match=message):
        call_factory(returned, "f", variant="han-total", config=SMALL_CONFIG, seed=0)


def test_adapter_names_are_checked_against_levels_and_modules():
    model = build("han-total", SMALL_CONFIG)
    with pytest.raises(AdapterError, match="unknown level 'beats'"):
        call_factory(lambda: (model, Adapter(levels={"beats": "score_encoder"})), "f", variant="han-total",
                     config=SMALL_CONFIG, seed=0)
    with pytest.raises(AdapterError, match="not a module of the model"):
        call_factory(lambda: (model, Adapter(levels={"note": "score_encoder.no_lstm"})), "f", variant="han-total",
                     config=SMALL_CONFIG, seed=0)
    with pytest.raises(AdapterError, match="unknown attention map"):
        call_factory(lambda: (model, Adapter(attention={"attn.voice": "score_encoder"})), "f",
                     variant="han-total", config=SMALL_CONFIG, seed=0)


def test_mapping_by_module_prefix_or_function(example):
    model, _ = example
    reference = build("han-total", SMALL_CONFIG)
    adapter = Adapter(mapping={"note_embedder.fc": "embed.fc", "score_encoder.lstm": "notes.lstm", "out_fc": "head"})
    mapping = resolve_mapping(adapter, reference, model)
    assert len(mapping) == sum(1 for n, _ in reference.named_parameters()
                               if n.startswith(("note_embedder.", "score_encoder.lstm.", "out_fc.")))
    assert mapping["score_encoder.lstm.weight_ih_l0"] == "notes.lstm.weight_ih_l0"
    assert mapping["out_fc.4.bias"] == "head.4.bias"
    renamed = Adapter(mapping=lambda name: name.replace("note_embedder.", "embed.") if "embedder" in name else None)
    assert resolve_mapping(renamed, reference, model) == {"note_embedder.fc.weight": "embed.fc.weight",
                                                          "note_embedder.fc.bias": "embed.fc.bias"}
    # a mapping naming what the replica lacks is kept, and the comparison reports it (mapping never aborts)
    bad = resolve_mapping(Adapter(mapping={"out_fc": "classifier"}), reference, model)
    assert bad["out_fc.1.weight"] == "classifier.1.weight"
    problems = map_weights(reference, model, overrides=bad).bad_overrides
    assert {p["candidate"] for p in problems} == {f"classifier.{k}.{w}" for k in (1, 4) for w in ("weight", "bias")}
    assert {p["problem"] for p in problems} == {"not a parameter of the replica"}


def test_example_levels_are_found_by_value_and_match_the_replica(example, batch):
    model, adapter = example
    subject = make_user_subject(model, adapter, spec="example", variant="han-total", config=SMALL_CONFIG)
    assert isinstance(subject, TeacherForcedUserSubject) and isinstance(subject, TeacherForcible)
    reference = ReplicaSubject(build("han-total", SMALL_CONFIG, seed=0), SubjectInfo("original", "x", "han-total"))
    Engine(reference, subject, variant="han-total", config=SMALL_CONFIG).prepare(batch)  # pairs weights, locates
    assert set(subject.sites) == (set(LEVELS) - {"logits"}) | set(ATTENTIONS)
    assert all(site.found and site.site.line > 0 for site in subject.sites.values())
    mine, theirs = subject.run(batch), reference.run(batch)
    assert list(mine.levels) == [level for level in LEVELS if level in theirs.levels]
    for level, value in theirs.levels.items():
        assert mine.levels[level].shape == value.shape, level
        assert torch.allclose(mine.levels[level], value, atol=1e-6), level
    assert set(mine.attention) == {"attn.beat", "attn.measure", "attn.final"}
    assert mine.loss == pytest.approx(theirs.loss, abs=1e-7)
    assert set(mine.grads) == {n for n, _ in model.named_parameters() if not n.startswith("unused_")}
    assert all(p.grad is None for p in model.parameters())  # the user's model is left as it was
    assert subject.model is not model  # the audit runs a private copy holding the reference's weights
    local = subject.run_level("beat", {"beat_nodes": theirs.levels["beat_nodes"]}, batch)
    assert torch.allclose(local, theirs.levels["beat"], atol=1e-6)


def test_bare_module_records_logits_and_gradients_only(batch):
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build("han-total", SMALL_CONFIG)

        def forward(self, x, note_locations):
            return self.inner(x, note_locations)

    subject = make_user_subject(Wrapper(), DEFAULT_ADAPTER, spec="w", variant="han-total", config=SMALL_CONFIG)
    assert type(subject) is UserSubject
    taps = subject.run(batch)
    assert list(taps.levels) == ["logits"] and taps.grads and taps.loss is not None


def test_packed_outputs_and_module_inputs_are_normalised(batch):
    model = build("han-total", SMALL_CONFIG)
    adapter = Adapter(levels={"embedding": "note_embedder", "total_note_cat": "performance_contractor:input"})
    taps = make_user_subject(model, adapter, spec="m", variant="han-total", config=SMALL_CONFIG).run(batch)
    n, t = len(batch), max(batch.lengths)
    assert taps.levels["embedding"].shape == (n, t, SMALL_CONFIG.note_size)  # PackedSequence -> padded
    assert taps.levels["total_note_cat"].shape == (n, t, 8 * SMALL_CONFIG.encoder_size)


def test_wrong_logits_and_crashing_models_are_adapter_errors(batch):
    class Five(Adapter):
        def forward(self, model, model_input):
            return model(model_input.x, model_input.note_locations)[:, :5]

    model = build("han-total", SMALL_CONFIG)
    with pytest.raises(AdapterError, match=r"logits of shape \(2, 5\).*expected \(2, 19\)"):  # on the probe
        make_user_subject(model, Five(), spec="m", variant="han-total", config=SMALL_CONFIG).run(batch)

    class Crash(Adapter):
        def forward(self, model, model_input):
            raise IndexError("index 40 is out of bounds")

    with pytest.raises(UsageError, match=r"your adapter.forward on the probe batch \(2 short segments\) failed: "
                                         r"IndexError: index 40 is out of bounds \(at .*test_user_subject.py:\d+, "
                                         r"in forward\)"):
        make_user_subject(model, Crash(), spec="m", variant="han-total", config=SMALL_CONFIG).run(batch)


def test_recipe_source_prefers_the_adapter_then_configure_optimizers(example):
    model, adapter = example
    assert recipe_source(model, adapter) is model
    assert recipe_source(build("han-total", SMALL_CONFIG), DEFAULT_ADAPTER) is None
    opt = object()
    assert recipe_source(model, type("A", (), {"recipe": lambda self, m: opt})()) is opt


def test_factory_file_may_import_its_neighbours(tmp_path):
    (tmp_path / "helpers_for_parity_test.py").write_text("WIDTH = 19\n")
    (tmp_path / "mine.py").write_text(textwrap.dedent('''
        import helpers_for_parity_test
        from percepiano_parity.replica import build

        def make(config):
            assert config.num_label == helpers_for_parity_test.WIDTH
            return build("han-total", config)
    '''))
    model, _ = call_factory(load_factory(f"{tmp_path / 'mine.py'}:make"), "mine", variant="han-total",
                            config=SMALL_CONFIG, seed=0)
    assert isinstance(model, nn.Module)
