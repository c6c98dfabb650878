"""original_adapter against the real original checkout (PERCEPIANO_ORIGINAL).

Locally and in CI: PERCEPIANO_ORIGINAL=../shared/percepiano-original. Elsewhere these tests skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy
import pytest
import torch
from sklearn.metrics import r2_score

from percepiano_parity import original_adapter
from percepiano_parity.batches.canonical import CanonicalBatch, Segment, collate
from percepiano_parity.core.config import DEFAULT_CONFIG, SMALL_CONFIG
from percepiano_parity.core.levels import ATTENTIONS, LEVELS
from percepiano_parity.original_adapter import OriginalLoadError, load
from percepiano_parity.original_adapter.isolation import top_level_names
from percepiano_parity.original_adapter.locate import VALIDATED_FINGERPRINT
from percepiano_parity.subjects.subject import Subject

pytestmark = pytest.mark.original

ROOT = os.environ.get("PERCEPIANO_ORIGINAL")
if not ROOT:
    pytest.skip("PERCEPIANO_ORIGINAL not set: point it at a PercePiano checkout (e.g. ../shared/percepiano-original) "
                "to run the tests against the real original", allow_module_level=True)

PARAMS_AT_DEFAULT = {
    "han-total": 15_269_907, "han-measure": 14_220_819, "han-beat": 14_220_819, "han-voice": 14_745_619,
    "bilstm-note": 14_483_475, "virtuosonet-skip": 13_957_651, "single-7layer": 11_333_139,
}
HIERARCHY = set(LEVELS)
# Levels each variant records, and the module prefixes that never receive a gradient (facts sheet §1).
EXPECTED = {
    "han-total": (HIERARCHY, ("performance_encoder.",)),
    "han-measure": (HIERARCHY - {"contracted"}, ("performance_encoder.",)),
    "han-beat": (HIERARCHY - {"contracted"},
                 ("performance_encoder.", "score_encoder.measure_attention.", "score_encoder.measure_rnn.")),
    "han-voice": (HIERARCHY, ("performance_encoder.", "score_encoder.beat_attention.", "score_encoder.beat_rnn.",
                              "score_encoder.measure_attention.", "score_encoder.measure_rnn.")),
    "bilstm-note": (HIERARCHY, ("performance_encoder.", "score_encoder.voice_net.", "score_encoder.beat_attention.",
                                "score_encoder.beat_rnn.", "score_encoder.measure_attention.",
                                "score_encoder.measure_rnn.")),
    "virtuosonet-skip": (HIERARCHY, ()),
    "single-7layer": ({"embedding", "note", "contracted", "pooled", "logits"}, ()),
}
WRAPPED_GLOBALS = {
    "encoder_score": ("make_higher_node", "run_hierarchy_lstm_with_pack", "span_beat_to_note_num"),
    "model_utils": ("get_softmax_by_boundary",),
    "module": ("torch",),
}


def segment(name: str, beat_steps: list[int], first_beat: int, beats_per_measure: int, seed: int,
            input_size: int = 79, num_label: int = 19) -> Segment:
    """Realistic locations: beats non-decreasing by 0 (chord) or 1, measures rising by one every few beats
    (and only where a beat changes), voices 1-3."""
    beats = [first_beat]
    for step in beat_steps:
        beats.append(beats[-1] + step)
    beat = torch.tensor(beats)
    measure = 1 + beat // beats_per_measure
    t = len(beats)
    g = torch.Generator().manual_seed(seed)
    return Segment(name=name, features=torch.randn(t, input_size, generator=g), beat=beat, measure=measure,
                   voice=torch.tensor([1 + (i % 3) for i in range(t)]), section=torch.ones(t, dtype=torch.int64),
                   label=torch.rand(num_label, generator=g))


def small_batch(input_size: int = 79) -> CanonicalBatch:
    a = segment("a", [0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1], 0, 4, 1, input_size)  # 12 notes, starts at beat 0
    b = segment("b", [1, 0, 0, 1, 1, 0, 1, 1, 1, 0] * 2 + [1, 0, 1, 1, 0, 1, 1, 0, 1], 3, 3, 2, input_size)  # 30
    c = segment("c", [0, 1, 1, 0, 1, 1], 10, 4, 3, input_size)  # 7 notes
    return CanonicalBatch((a, b, c))


@pytest.fixture(scope="module")
def original() -> original_adapter.Original:
    return load(ROOT)


def segments_of(values: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) runs of a location sequence, split where it steps by exactly one."""
    bounds = [0] + [i + 1 for i in range(len(values) - 1) if values[i + 1] - values[i] == 1] + [len(values)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def assert_no_observers_left(original: original_adapter.Original, model: torch.nn.Module,
                             before: dict[tuple[str, str], object]) -> None:
    for (module_name, attr), obj in before.items():
        assert vars(original.isolated[module_name])[attr] is obj, f"{module_name}.{attr} still wrapped"
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, name
    if hasattr(model, "score_encoder"):
        assert "run_voice_net" not in vars(model.score_encoder)
    assert all(p.grad is None for p in model.parameters())


def globals_snapshot(original: original_adapter.Original) -> dict[tuple[str, str], object]:
    return {(m, a): vars(original.isolated[m])[a] for m, attrs in WRAPPED_GLOBALS.items() for a in attrs}


# -- loading -------------------------------------------------------------------------------------------
def test_the_snapshot_is_the_validated_version_and_loads_cleanly(original: original_adapter.Original) -> None:
    assert original.checkout.fingerprint == VALIDATED_FINGERPRINT
    assert original.warnings == []
    assert original.lazy_imports == ()  # the model path imports nothing at call time
    code = original.checkout.code_dir
    for name in top_level_names(code):
        module = sys.modules.get(name)
        assert module is None or not str(getattr(module, "__file__", "")).startswith(str(code)), name


def test_shims_are_exactly_arraysetops_and_pretty_midi() -> None:
    expected = set()
    if int(numpy.__version__.split(".")[0]) >= 2:
        expected.add("numpy.lib.arraysetops")
    if importlib.util.find_spec("pretty_midi") is None:
        expected.add("pretty_midi")
    fresh = load(ROOT)
    assert {s["name"] for s in fresh.shims} == expected
    assert not expected & set(sys.modules)


def test_all_variants_build_with_the_published_parameter_counts(original: original_adapter.Original) -> None:
    for variant, count in PARAMS_AT_DEFAULT.items():
        model = original.build(variant, DEFAULT_CONFIG)
        assert sum(p.numel() for p in model.parameters()) == count, variant


def test_same_seed_same_weights(original: original_adapter.Original) -> None:
    one, two = original.build("han-measure", SMALL_CONFIG, seed=3), original.build("han-measure", SMALL_CONFIG, seed=3)
    for (name, p), q in zip(one.named_parameters(), two.parameters(), strict=True):
        assert torch.equal(p, q), name


# -- scripts -------------------------------------------------------------------------------------------
def test_scripts_say_which_variants_were_trained(original: original_adapter.Original) -> None:
    analysis = original.scripts()
    trained = analysis.trained()
    assert set(trained) == {"bilstm-note", "han-total", "han-measure", "han-beat", "han-voice", "virtuosonet-skip"}
    assert set(analysis.not_trained()) == {"single-7layer"}
    assert "--ablation" in analysis.not_trained()["single-7layer"]
    skip = [str(e) for e in trained["virtuosonet-skip"]]
    assert skip[0].startswith("virtuoso/scripts/randomfold/2_run_random.sh:10:")
    assert any('multi_levels=("note")' in str(e) for e in trained["bilstm-note"])
    args = analysis.training_args()
    assert set(args["--lr"]) == {"2.5e-5"}
    assert set(args["--batch_size"]) == {"8"}
    assert set(args["--no_augment"]) == {""}
    assert set(args["-yml"]) == {"ymls/shared/label19/han_bigger256_concat.yml"}
    assert set(args["--num_labels"]) == {"19"}
    assert any(str(e).endswith("lrs=(2.5e-5)") for e in args["--lr"]["2.5e-5"])


# -- running -------------------------------------------------------------------------------------------
def test_han_total_records_every_level_and_attention(original: original_adapter.Original) -> None:
    batch = small_batch()
    subject = original.subject("han-total", SMALL_CONFIG)
    assert isinstance(subject, Subject)
    assert subject.info.kind == "original-checkout" and subject.info.revision == original.revision
    before = globals_snapshot(original)
    modes = [m.training for m in subject.model.modules()]

    taps = subject.run(batch)

    n, t = 3, 30
    beats = max(int(s.beat[-1] - s.beat[0]) + 1 for s in batch.segments)
    measures = max(int(s.measure[-1] - s.measure[0]) + 1 for s in batch.segments)
    shapes = {
        "embedding": (n, t, 16), "note": (n, t, 32), "voice": (n, t, 32), "beat_nodes": (n, beats, 64),
        "beat": (n, beats, 32), "measure_nodes": (n, measures, 32), "measure": (n, measures, 32),
        "beat_spanned": (n, t, 32), "measure_spanned": (n, t, 32), "total_note_cat": (n, t, 128),
        "contracted": (n, t, 32), "pooled": (n, 32), "logits": (n, 19),
    }
    assert list(taps.levels) == list(LEVELS)
    assert {k: tuple(v.shape) for k, v in taps.levels.items()} == shapes
    total = taps.levels["total_note_cat"]
    for part, name in enumerate(("note", "voice", "beat_spanned", "measure_spanned")):
        assert torch.equal(total[..., 32 * part: 32 * (part + 1)], taps.levels[name]), name

    assert list(taps.attention) == list(ATTENTIONS)
    attn_beat, attn_measure, attn_final = (taps.attention[k] for k in ATTENTIONS)
    assert attn_beat.shape == (n, t, 8) and attn_measure.shape == (n, beats, 8) and attn_final.shape == (n, t, 8)
    for i, seg in enumerate(batch.segments):
        for start, end in segments_of(seg.beat):
            torch.testing.assert_close(attn_beat[i, start:end].sum(0), torch.ones(8))
        assert not attn_beat[i, seg.length:].any()
        zero_shifted = seg.beat - seg.beat[0]
        for start, end in segments_of(seg.measure):
            nodes = zero_shifted[start:end]
            torch.testing.assert_close(attn_measure[i, int(nodes[0]): int(nodes[-1]) + 1].sum(0), torch.ones(8))
        assert not attn_measure[i, int(zero_shifted[-1]) + 1:].any()
    torch.testing.assert_close(attn_final.sum(1), torch.ones(n, 8))
    # the recorded head weights are the ones that produced the pooled vector
    contracted = taps.levels["contracted"].view(n, t, 8, 4)
    pooled = (contracted * attn_final.unsqueeze(-1)).sum(1).reshape(n, 32)
    torch.testing.assert_close(pooled, taps.levels["pooled"])

    names = [name for name, _ in subject.model.named_parameters()]
    assert set(taps.grads) == {x for x in names if not x.startswith("performance_encoder.")}
    assert taps.loss is not None and taps.loss > 0
    assert_no_observers_left(original, subject.model, before)
    assert [m.training for m in subject.model.modules()] == modes


def test_observing_does_not_change_the_result(original: original_adapter.Original) -> None:
    batch = small_batch()
    subject = original.subject("han-total", SMALL_CONFIG)
    taps = subject.run(batch, grads=False)
    inputs = collate(batch)
    subject.model.eval()
    with torch.no_grad():
        logits = subject.model(inputs.x, None, None, inputs.note_locations)[-1]
    assert torch.equal(taps.levels["logits"], logits)
    expected = torch.nn.MSELoss()(torch.sigmoid(logits), inputs.labels)
    assert taps.loss == pytest.approx(float(expected))
    assert taps.grads == {}


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_each_variant_records_its_levels_and_gradients(original: original_adapter.Original, variant: str) -> None:
    levels, no_grad = EXPECTED[variant]
    subject = original.subject(variant, SMALL_CONFIG)
    before = globals_snapshot(original)
    taps = subject.run(small_batch())
    assert set(taps.levels) == levels
    expected_maps = {"attn.final"} if variant == "single-7layer" else set(ATTENTIONS)
    assert set(taps.attention) == expected_maps
    names = [name for name, _ in subject.model.named_parameters()]
    assert set(taps.grads) == {name for name in names if not name.startswith(no_grad)}
    assert_no_observers_left(original, subject.model, before)


def test_default_config_run(original: original_adapter.Original) -> None:
    subject = original.subject("han-total", DEFAULT_CONFIG)
    taps = subject.run(small_batch())
    assert taps.levels["total_note_cat"].shape == (3, 30, 2048)
    assert taps.attention["attn.beat"].shape[-1] == 8
    params = dict(subject.model.named_parameters())
    assert set(params) - set(taps.grads) == {
        "performance_encoder.performance_contractor.weight", "performance_encoder.performance_contractor.bias",
        "performance_encoder.performance_final_attention.attention_net.weight",
        "performance_encoder.performance_final_attention.attention_net.bias",
        "performance_encoder.performance_final_attention.context_vector",
    }
    assert sum(params[name].numel() for name in taps.grads) == 13_957_651  # facts sheet §1


def test_modes_and_existing_gradients_are_restored(original: original_adapter.Original) -> None:
    subject = original.subject("han-measure", SMALL_CONFIG)
    subject.model.eval()
    marker = torch.full_like(subject.model.out_fc[1].bias, 7.0)
    subject.model.out_fc[1].bias.grad = marker
    torch.manual_seed(0)
    subject.run(small_batch(), train=True)
    assert not any(m.training for m in subject.model.modules())
    assert subject.model.out_fc[1].bias.grad is marker


def test_a_batch_the_original_rejects_is_one_line(original: original_adapter.Original) -> None:
    subject = original.subject("bilstm-note", SMALL_CONFIG)
    before = globals_snapshot(original)
    bad = segment("all-zero-measures", [0, 1, 1, 0], 0, 4, 5)
    bad = Segment(**{**bad.__dict__, "measure": torch.zeros(5, dtype=torch.int64)})
    with pytest.raises(OriginalLoadError) as error:
        subject.run(CanonicalBatch((bad,)))
    message = str(error.value)
    assert message.startswith("the original rejected batch (1 segments, lengths 5): ") and "\n" not in message
    assert_no_observers_left(original, subject.model, before)
    with pytest.raises(OriginalLoadError, match="does not fit the original model"):
        subject.run(small_batch(input_size=78))


# -- data and training functions -----------------------------------------------------------------------
def test_data_ops_expose_the_originals_collate_loss_and_r2() -> None:
    fresh = load(ROOT)
    ops = fresh.data_ops
    assert ops.make_slicing_indexes_by_measure(40, [1] * 40, 5000) == [(0, 40)]
    batch = small_batch()
    collated = ops.collate(batch)
    ours = collate(batch)
    assert torch.equal(collated[0].data, ours.x.data) and torch.equal(collated[0].batch_sizes, ours.x.batch_sizes)
    for key, value in ours.note_locations.items():
        assert torch.equal(collated[4][key], value), key
    assert torch.equal(collated[8], ours.labels)

    subject = fresh.subject("han-measure", SMALL_CONFIG)
    taps = subject.run(batch, grads=False)
    subject.model.eval()
    with torch.no_grad():
        sigmoid_out, loss = ops.batch_loss(subject.model, collated, multi_level=True)
    assert float(loss) == pytest.approx(taps.loss)
    valid_loss, metrics = ops.validation(subject.model, [collated], n_samples=3, multi_level=True)
    assert valid_loss == pytest.approx(taps.loss / 3)  # sum of batch means over the number of samples
    assert metrics["R2"] == pytest.approx(r2_score(ours.labels.numpy(), sigmoid_out.numpy()))

    shim_names = {s["name"] for s in fresh.shims}
    assert {"train_m2pf", "dataset", "logger"} <= set(fresh.modules)
    for name in ("tqdm", "wandb"):
        assert (name in shim_names) == (importlib.util.find_spec(name) is None)
    assert not shim_names & set(sys.modules)
    assert not any(str(getattr(m, "__file__", "")).startswith(str(Path(fresh.checkout.code_dir)))
                   for m in list(sys.modules.values()))
