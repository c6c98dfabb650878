"""The replica's variants have the original's parameter names, shapes and counts (pinned here)."""

from __future__ import annotations

import pytest
import torch

from percepiano_parity import replica
from percepiano_parity.compare.structure import level_of
from percepiano_parity.replica.variants import UnknownVariantError

# Parameter counts of the original at input 79, 19 labels (ORIGINAL_FACTS.md §1, verified by the adapter).
EXPECTED_TOTAL = {
    "han-total": 15_269_907,
    "han-measure": 14_220_819,
    "han-beat": 14_220_819,
    "han-voice": 14_745_619,
    "bilstm-note": 14_483_475,
    "virtuosonet-skip": 13_957_651,
    "single-7layer": 11_333_139,
}
# Parameters that never receive a gradient in the original (built but unused by the forward's result).
EXPECTED_NEVER_TRAINED = {
    "han-total": 1_312_256,
    "han-measure": 1_312_256,
    "han-beat": 3_152_384,
    "han-voice": 8_405_504,
    "bilstm-note": 11_035_136,
    "virtuosonet-skip": 0,
    "single-7layer": 0,
}
EXPECTED_PER_LEVEL_HAN_TOTAL = {
    "embedding": 20_480, "note": 2_629_632, "voice": 2_629_632, "beat_nodes": 1_050_624, "beat": 4_202_496,
    "measure_nodes": 263_168, "measure": 1_576_960, "contracted": 1_049_088 * 2, "pooled": 263_168 * 2,
    "logits": 272_403,
}


@pytest.mark.parametrize("variant", list(EXPECTED_TOTAL))
def test_parameter_count_matches_original(variant: str) -> None:
    model = replica.build(variant)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_TOTAL[variant]


@pytest.mark.parametrize("variant", list(EXPECTED_TOTAL))
def test_never_trained_parameters_get_no_gradient(variant: str) -> None:
    from percepiano_parity.batches.synthetic import generate_batches

    model = replica.build(variant, replica.SMALL_CONFIG, seed=0)
    batch = generate_batches(1, seed=1, batch_size=3, config=replica.SMALL_CONFIG, max_notes=30,
                             include_edge_cases=False)[0]
    inp = replica.collate(batch)
    torch.nn.functional.mse_loss(torch.sigmoid(model(inp.x, inp.note_locations)), inp.labels).backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    prefixes = replica.get_variant(variant).never_trained
    assert no_grad == {n for n, _ in model.named_parameters() if n.startswith(prefixes)} if prefixes else not no_grad
    full = replica.build(variant)
    unused = sum(p.numel() for n, p in full.named_parameters() if prefixes and n.startswith(prefixes))
    assert unused == EXPECTED_NEVER_TRAINED[variant]


def test_han_total_counts_per_level() -> None:
    model = replica.build("han-total")
    per_level: dict[str, int] = {}
    for name, p in model.named_parameters():
        per_level[level_of(name)] = per_level.get(level_of(name), 0) + p.numel()
    assert per_level == EXPECTED_PER_LEVEL_HAN_TOTAL


def test_han_total_names_and_shapes() -> None:
    shapes = {n: tuple(p.shape) for n, p in replica.build("han-total").named_parameters()}
    assert shapes["note_embedder.fc.weight"] == (256, 79)
    assert shapes["score_encoder.lstm.weight_ih_l0"] == (1024, 256)
    assert shapes["score_encoder.lstm.weight_ih_l1_reverse"] == (1024, 512)
    assert shapes["score_encoder.beat_attention.attention_net.weight"] == (1024, 1024)
    assert shapes["score_encoder.beat_attention.context_vector"] == (8, 128, 1)
    assert shapes["score_encoder.measure_attention.context_vector"] == (8, 64, 1)
    assert shapes["score_encoder.measure_rnn.weight_ih_l0"] == (1024, 512)
    assert "score_encoder.measure_rnn.weight_ih_l1" not in shapes  # one layer
    assert shapes["performance_contractor.weight"] == (512, 2048)
    assert shapes["performance_encoder.performance_contractor.weight"] == (512, 2048)
    assert shapes["out_fc.1.weight"] == (512, 512)
    assert shapes["out_fc.4.weight"] == (19, 512)


def test_dropout_placement_matches_original() -> None:
    model = replica.build("han-total")
    enc = model.score_encoder
    assert (enc.lstm.dropout, enc.voice_net.dropout, enc.beat_rnn.dropout, enc.measure_rnn.dropout) == (0.2, 0.2, 0.2, 0.0)
    assert [type(m).__name__ for m in model.out_fc] == ["Dropout", "Linear", "GELU", "Dropout", "Linear"]
    assert model.out_fc[2].approximate == "none"
    single = replica.build("single-7layer")
    assert single.lstm.num_layers == 7 and single.lstm.dropout == 0.2


def test_same_seed_same_weights_and_shared_trunk_across_variants() -> None:
    a = replica.build("han-total", replica.SMALL_CONFIG, seed=7).state_dict()
    b = replica.build("han-total", replica.SMALL_CONFIG, seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = replica.build("han-measure", replica.SMALL_CONFIG, seed=7).state_dict()
    trunk = [k for k in a if k.startswith(("note_embedder", "score_encoder", "performance_encoder"))]
    assert trunk and all(torch.equal(a[k], c[k]) for k in trunk)


def test_unknown_variant_is_one_clear_line() -> None:
    with pytest.raises(UnknownVariantError, match="unknown variant 'han-tota'; choose one of: han-total"):
        replica.build("han-tota")


def test_config_loads_from_an_original_style_yaml(tmp_path) -> None:
    yml = tmp_path / "m.yml"
    yml.write_text(
        "nn_params:\n  note: {size: 64, layer: 2}\n  voice: {size: 64, layer: 2}\n  beat: {size: 64, layer: 2}\n"
        "  measure: {size: 64, layer: 1}\n  encoder: {size: 64, layer: 2}\n  num_attention_head: 8\n"
        "  drop_out: 0.2\n  input_size: 78\n")
    cfg = replica.ModelConfig.from_yaml(yml)
    assert cfg.note_size == 64 and cfg.input_size == 79 and cfg.num_label == 19
    with pytest.raises(ValueError, match="no nn_params"):
        (tmp_path / "bad.yml").write_text("a: 1\n")
        replica.ModelConfig.from_yaml(tmp_path / "bad.yml")
