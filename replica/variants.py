"""The variant registry: ids (part of the user interface), what each mirrors, how to build it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from percepiano_parity.core.config import DEFAULT_CONFIG, ModelConfig
from percepiano_parity.replica.models import (
    MultiLevelModel,
    PercePianoModel,
    SingleLSTMModel,
    VirtuosoNetSkip,
)


@dataclass(frozen=True)
class Variant:
    id: str
    original_class: str  # class in the original's model_m2pf.py
    multi_level: str | None  # the original's --multi_level value, if any
    description: str
    factory: Callable[[ModelConfig], PercePianoModel]
    # modules the original builds (and we build) whose parameters never receive a gradient
    never_trained: tuple[str, ...] = ()


_HIERARCHY_UNUSED_BY_NOTE = ("score_encoder.voice_net", "score_encoder.beat_attention", "score_encoder.beat_rnn",
                             "score_encoder.measure_attention", "score_encoder.measure_rnn")

VARIANTS: dict[str, Variant] = {
    v.id: v
    for v in (
        Variant("han-total", "VirtuosoNetMultiLevel", "total_note_cat",
                "the HAN the published scripts train: note, voice, beat and measure outputs concatenated",
                lambda c: MultiLevelModel(c, "total_note_cat"), ("performance_encoder",)),
        Variant("han-measure", "VirtuosoNetMultiLevel", "measure", "HAN pooled at the measure level",
                lambda c: MultiLevelModel(c, "measure"), ("performance_encoder",)),
        Variant("han-beat", "VirtuosoNetMultiLevel", "beat", "HAN pooled at the beat level",
                lambda c: MultiLevelModel(c, "beat"),
                ("performance_encoder", "score_encoder.measure_attention", "score_encoder.measure_rnn")),
        Variant("han-voice", "VirtuosoNetMultiLevel", "voice", "HAN pooled at the voice level",
                lambda c: MultiLevelModel(c, "voice"),
                ("performance_encoder", "score_encoder.beat_attention", "score_encoder.beat_rnn",
                 "score_encoder.measure_attention", "score_encoder.measure_rnn")),
        Variant("bilstm-note", "VirtuosoNetMultiLevel", "note",
                "the published Bi-LSTM baseline: 2-layer note LSTM, contractor, attention",
                lambda c: MultiLevelModel(c, "note"), ("performance_encoder", *_HIERARCHY_UNUSED_BY_NOTE)),
        Variant("virtuosonet-skip", "VirtuosoNet", None, "VirtuosoNet with the HanSkipEncoder performance encoder",
                VirtuosoNetSkip),
        Variant("single-7layer", "VirtuosoNetSingle", None, "one 7-layer Bi-LSTM (the original's --ablation model)",
                SingleLSTMModel),
    )
}


class UnknownVariantError(ValueError):
    pass


def get_variant(variant_id: str) -> Variant:
    try:
        return VARIANTS[variant_id]
    except KeyError:
        raise UnknownVariantError(
            f"unknown variant {variant_id!r}; choose one of: {', '.join(VARIANTS)}"
        ) from None


def build(variant_id: str, config: ModelConfig | None = None, *, seed: int | None = None) -> PercePianoModel:
    """Build a faithful replica variant. With `seed`, torch's RNG is seeded first, as the original's
    `__main__` does (construction is its first RNG consumer), so initial weights equal the original's."""
    variant = get_variant(variant_id)
    if seed is not None:
        torch.manual_seed(seed)
    model = variant.factory(config or DEFAULT_CONFIG)
    model.variant = variant_id
    return model
