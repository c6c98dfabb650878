"""The deviation library: named switches that reproduce, on the faithful replica, the mistakes that cost
earlier PercePiano reproductions their rounds.

Each deviation changes a *copy* of a faithful model (or the recipe, or which variant is compared) so a user
can see what a mistake does and the self-test can prove the audit finds it. The diagnosis rules never see
these names: they work from findings only; `expected_explanation` is for the self-test to grade them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from percepiano_parity.core.config import ModelConfig
from percepiano_parity.replica.attention import ContextAttention
from percepiano_parity.replica.models import PercePianoModel
from percepiano_parity.replica.recipe import ORIGINAL_RECIPE, Recipe
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects import mistakes

Kind = Literal["model", "recipe", "variant", "data"]


@dataclass(frozen=True)
class Deviation:
    name: str
    number: int  # position in the reproduction history (issue catalogue)
    title: str
    kind: Kind
    variant: str  # the reference variant on which its effect shows
    expected_explanation: str  # the catalog id the diagnosis should put first
    expected_level: str | None = None  # where it sits (root-cause level), for forward-changing deviations
    candidate_variant: str | None = None  # for "compared the wrong model" deviations
    config_change: dict[str, object] | None = None
    model_change: Callable[[PercePianoModel], None] | None = None
    recipe_change: Callable[[Recipe], Recipe] | None = None
    quirk: bool = False  # "fixes" an original quirk: waivable as intended

    @property
    def changes_forward(self) -> bool:
        return self.expected_level is not None

    def build_candidate(self, config: ModelConfig, seed: int | None = None) -> PercePianoModel:
        """A fresh replica of the candidate variant with this deviation applied."""
        cfg = config.with_(**self.config_change) if self.config_change else config
        model = build(self.candidate_variant or self.variant, cfg, seed=seed)
        if self.model_change is not None:
            self.model_change(model)
        return model

    def recipe(self, base: Recipe = ORIGINAL_RECIPE) -> Recipe:
        return self.recipe_change(base) if self.recipe_change else base


# -- model changes -----------------------------------------------------------------------------------------

def _patch(level: str, module_factory: Callable[[PercePianoModel], nn.Module]) -> Callable[[PercePianoModel], None]:
    def change(model: PercePianoModel) -> None:
        patches = getattr(model, "level_patches", None)
        if patches is None:
            model.level_patches = nn.ModuleDict()
            patches = model.level_patches
        patches[level] = module_factory(model)
    return change


class Zero(nn.Module):
    """Replaces a level by zeros (the 'baseline' built by switching HAN outputs off)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def _small_head(model: PercePianoModel) -> None:
    c = model.config
    model.out_fc = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.head_width, 128), nn.GELU(),
                                 nn.Dropout(c.dropout), nn.Linear(128, c.num_label))


def _custom_head_init(model: PercePianoModel) -> None:
    with torch.no_grad():
        for m in model.out_fc:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=2.0)
                nn.init.uniform_(m.bias, -1.0, 1.0)


class HeadProjectionAttention(ContextAttention):
    """The mistaken attention: Linear(size, num_head) scores each head directly, no context vectors."""

    def __init__(self, size: int, num_head: int) -> None:
        nn.Module.__init__(self)
        self.attention_net = nn.Linear(size, num_head)
        self.num_head = num_head
        self.head_size = size // num_head

    def similarity(self, x: Tensor) -> Tensor:
        return torch.tanh(self.attention_net(x))


class ContextFreeAttention(ContextAttention):
    """A final attention without context vectors: softmax over time of Linear(x), per channel."""

    def __init__(self, size: int, num_head: int) -> None:
        nn.Module.__init__(self)
        self.attention_net = nn.Linear(size, size)
        self.num_head = size  # one "head" per channel
        self.head_size = 1

    def similarity(self, x: Tensor) -> Tensor:
        return self.attention_net(x)


def _replace_attentions(factory: Callable[[int, int], ContextAttention], *, head_only: bool
                        ) -> Callable[[PercePianoModel], None]:
    def change(model: PercePianoModel) -> None:
        _, head = model.head_modules()
        targets = [(n, m) for n, m in model.named_modules() if isinstance(m, ContextAttention)]
        for name, module in targets:
            if head_only and module is not head:
                continue
            size = module.attention_net.in_features
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, factory(size, module.num_head))
    return change


def _autocast(dtype: torch.dtype) -> Callable[[PercePianoModel], None]:
    def change(model: PercePianoModel) -> None:
        model.autocast_dtype = dtype
    return change


def _semantics(**changes: object) -> Callable[[PercePianoModel], None]:
    def change(model: PercePianoModel) -> None:
        model.semantics = model.semantics.with_(**changes)
    return change


def _drop_feature(name: str) -> Callable[[PercePianoModel], None]:
    def change(model: PercePianoModel) -> None:
        from percepiano_parity.batches.features import feature_columns, layout_for_width

        drop = set(feature_columns(name, layout_for_width(model.config.input_size)))  # 79 synthetic, 101 real
        keep = [i for i in range(model.config.input_size) if i not in drop]
        embedder = model.note_embedder
        embedder.fc = nn.Linear(len(keep), embedder.fc.out_features)
        embedder.input_columns = keep
    return change


def _measure_lstm_dropout(model: PercePianoModel) -> None:
    import warnings

    old = model.score_encoder.measure_rnn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that dropout needs 2+ layers: that is the point
        model.score_encoder.measure_rnn = nn.LSTM(old.input_size, old.hidden_size, old.num_layers, batch_first=True,
                                                  bidirectional=True, dropout=model.config.dropout)


def _beat_lstm(layers: int | None = None, bidirectional: bool = True) -> Callable[[PercePianoModel], None]:
    def change(model: PercePianoModel) -> None:
        old = model.score_encoder.beat_rnn
        hidden = old.hidden_size if bidirectional else 2 * old.hidden_size  # keep the output width
        n = layers or old.num_layers
        model.score_encoder.beat_rnn = nn.LSTM(old.input_size, hidden, n, batch_first=True,
                                               bidirectional=bidirectional, dropout=old.dropout if n > 1 else 0.0)
    return change


def _zero_hierarchy(model: PercePianoModel) -> None:
    for level in ("beat_spanned", "measure_spanned"):
        _patch(level, lambda m: Zero())(model)


# -- the library -------------------------------------------------------------------------------------------

DEVIATIONS: dict[str, Deviation] = {d.name: d for d in (
    Deviation("layernorm-han-output", 1, "LayerNorm(2048) on the HAN output", "model", "han-total",
              "PP-EXTRA-NORM", "total_note_cat",
              model_change=_patch("total_note_cat", lambda m: nn.LayerNorm(8 * m.config.encoder_size))),
    Deviation("layernorm-before-head", 2, "LayerNorm(512) before the head", "model", "han-total",
              "PP-EXTRA-NORM", "pooled",
              model_change=_patch("pooled", lambda m: nn.LayerNorm(m.config.head_width))),
    Deviation("head-512-128", 3, "head 512->128->19 instead of 512->512->19", "model", "han-total",
              "PP-HEAD-WIDTH", "logits", model_change=_small_head),
    Deviation("custom-head-init", 4, "custom head initialisation (Xavier gain 2.0, bias U(-1,1))", "model",
              "han-total", "PP-CUSTOM-INIT", None, model_change=_custom_head_init),
    Deviation("attention-head-projection", 5, "context attention projecting Linear(size, num_head)", "model",
              "han-total", "PP-ATTENTION-PROJECTION", "beat_nodes",
              model_change=_replace_attentions(HeadProjectionAttention, head_only=False)),
    Deviation("final-attention-no-context", 6, "a final attention without context vectors", "model", "han-total",
              "PP-ATTENTION-NO-CONTEXT", "pooled",
              model_change=_replace_attentions(ContextFreeAttention, head_only=True)),
    Deviation("autocast-bf16", 7, "bf16 autocast instead of FP32", "model", "han-total", "PP-PRECISION",
              "embedding", model_change=_autocast(torch.bfloat16)),
    Deviation("features-78", 8, "78 input features (section_tempo missing, later indices shifted)", "model",
              "han-total", "PP-INPUT-FEATURES", "embedding", model_change=_drop_feature("section_tempo")),
    Deviation("padded-lstm", 9, "padded instead of packed sequences into the LSTMs", "model", "han-total",
              "PP-PADDED-LSTM", "note", model_change=_semantics(pack_sequences=False)),
    Deviation("attention-no-mask", 10, "attention softmax over padded positions (no mask)", "model", "han-measure",
              "PP-ATTENTION-MASK", "pooled", model_change=_semantics(head_mask="none")),
    Deviation("split-baseline", 11, "'baseline' = the HAN with beat/measure outputs zeroed", "variant",
              "bilstm-note", "PP-WRONG-BASELINE", "beat_spanned", candidate_variant="han-total",
              model_change=_zero_hierarchy),
    Deviation("single-7layer-as-baseline", 12, "the 7-layer single LSTM where the scripts train the note-level one",
              "variant", "bilstm-note", "PP-WRONG-BASELINE", "note", candidate_variant="single-7layer"),
    Deviation("note-baseline-as-single", 12, "the note-level Bi-LSTM compared where the 7-layer one is meant",
              "variant", "single-7layer", "PP-WRONG-BASELINE", "note", candidate_variant="bilstm-note"),
    Deviation("lr-5e-5", 13, "lr 5e-5 instead of 2.5e-5", "recipe", "han-total", "PP-LEARNING-RATE",
              recipe_change=lambda r: r.with_(lr=5e-5)),
    Deviation("adamw", 14, "AdamW instead of Adam", "recipe", "han-total", "PP-OPTIMIZER",
              recipe_change=lambda r: r.with_(optimizer="AdamW")),
    Deviation("scheduler-per-epoch", 15, "LR scheduler stepped per epoch", "recipe", "han-total", "PP-SCHEDULER",
              recipe_change=lambda r: r.with_(scheduler_interval="epoch")),
    Deviation("scheduler-missing", 15, "LR scheduler missing", "recipe", "han-total", "PP-SCHEDULER",
              recipe_change=lambda r: r.with_(scheduler="none")),
    Deviation("clip-1.0", 16, "gradient clip 1.0 instead of 2.0", "recipe", "han-total", "PP-GRAD-CLIP",
              recipe_change=lambda r: r.with_(grad_clip=1.0)),
    Deviation("loss-on-logits", 17, "MSE on logits instead of after sigmoid", "recipe", "han-total", "PP-LOSS",
              recipe_change=lambda r: r.with_(loss="mse_on_logits")),
    Deviation("loss-bce", 17, "BCE instead of MSE after sigmoid", "recipe", "han-total", "PP-LOSS",
              recipe_change=lambda r: r.with_(loss="bce_with_logits")),
    Deviation("r2-variance-weighted", 18, "R2 averaged by variance instead of uniformly", "recipe", "han-total",
              "PP-R2-AVERAGE", recipe_change=lambda r: r.with_(r2_average="variance_weighted")),
    Deviation("dropout-0.1", 19, "dropout 0.1 instead of 0.2", "model", "han-total", "PP-DROPOUT", None,
              config_change={"dropout": 0.1}),
    Deviation("dropout-measure-lstm", 19, "dropout added to the measure LSTM", "model", "han-total", "PP-DROPOUT",
              None, model_change=_measure_lstm_dropout),
    Deviation("beat-lstm-1-layer", 20, "beat LSTM with 1 layer", "model", "han-total", "PP-BEAT-LSTM", "beat",
              model_change=_beat_lstm(layers=1)),
    Deviation("beat-lstm-unidirectional", 20, "beat LSTM unidirectional", "model", "han-total", "PP-BEAT-LSTM",
              "beat", model_change=_beat_lstm(bidirectional=False)),
    Deviation("span-off-by-one", 21, "spanning beats back to notes off by one (first beat clamped)", "model",
              "han-total", "PP-SPAN-OFFSET", "beat_spanned", model_change=_semantics(span_offset=-1)),
    Deviation("no-slice-regeneration", 22, "one sample per performance, no slice regeneration each epoch",
              "data", "han-total", "PP-SLICING",
              recipe_change=lambda r: r.with_(slices_regenerated_each_epoch=False)),
    Deviation("other-label-file", 23, "the other label file (repo root instead of labels/)", "data", "han-total",
              "PP-LABEL-FILE",
              recipe_change=lambda r: r.with_(label_file="label_2round_mean_reg_19_with0_rm_highstd0.json")),
    Deviation("corrected-span-count", 24, "a 'corrected' note count when spanning back to notes", "model",
              "han-total", "PP-SPAN-COUNT-QUIRK", "beat_spanned", model_change=_semantics(span_count="true_length"),
              quirk=True),
    Deviation("boundaries-any-change", 25, "beat/measure boundaries at every change of number", "model",
              "han-total", "PP-BOUNDARY-RULE", "beat_nodes", model_change=_semantics(boundary_rule="any_change")),
    Deviation("proper-final-mask", 26, "padding masked properly in the final pooling", "model", "han-total",
              "PP-PADDING-MASK-QUIRK", "pooled", model_change=_semantics(head_mask="length"), quirk=True),
    Deviation("adam-eps-1e-7", 27, "Adam eps 1e-7 instead of its default 1e-8", "recipe", "han-total", "PP-ADAM-EPS",
              recipe_change=lambda r: r.with_(eps=1e-7)),
    Deviation("loss-sum-reduction", 28, "MSE summed over the batch instead of averaged", "recipe", "han-total",
              "PP-LOSS-REDUCTION", recipe_change=lambda r: r.with_(loss_reduction="sum")),
    Deviation("clip-by-value", 29, "gradients clipped by value (2.0) instead of by norm", "recipe", "han-total",
              "PP-GRAD-CLIP-ALGORITHM", recipe_change=lambda r: r.with_(grad_clip_algorithm="value")),
    Deviation("accumulate-2", 30, "gradients accumulated over 2 batches per optimizer step", "recipe", "han-total",
              "PP-ACCUMULATION", recipe_change=lambda r: r.with_(accumulate_grad_batches=2)),
    Deviation("checkpoint-best-r2", 31, "the checkpoint with the best validation R2 kept, not the lowest loss",
              "recipe", "han-total", "PP-MODEL-SELECTION",
              recipe_change=lambda r: r.with_(checkpoint_criterion="valid_r2", checkpoint_mode="max")),
    # mistakes no catalog rule names (subjects.mistakes): explained by measured relations
    Deviation("softmax-over-heads", 32, "final pooling softmax over the heads instead of over time", "model",
              "han-total", "PP-REL-SOFTMAX-AXIS", "pooled",
              model_change=lambda m: mistakes.replace_attention(m, "head", mistakes.HeadSoftmaxAttention)),
    Deviation("concat-order", 33, "total_note_cat with beat_spanned and measure_spanned swapped", "model",
              "han-total", "PP-REL-FEATURE-ORDER", "total_note_cat",
              model_change=_patch("total_note_cat", lambda m: mistakes.SwappedBlocks())),
    Deviation("attention-no-tanh", 34, "beat attention scores without the tanh", "model", "han-total",
              "PP-REL-MISSING-OP", "beat_nodes",
              model_change=lambda m: mistakes.replace_attention(m, "score_encoder.beat_attention",
                                                                mistakes.NoTanhAttention)),
    Deviation("dropout-in-eval", 35, "the head's dropouts called functionally (active in eval)", "model",
              "han-total", "PP-REL-RANDOM-IN-EVAL", "logits", model_change=mistakes.head_dropout_always_on),
    Deviation("lstm-gate-order", 36, "a hand-written note LSTM reading its gates as i, g, f, o", "model",
              "han-total", "PP-REL-LSTM-GATE-ORDER", "note", model_change=mistakes.hand_note_lstm("igfo")),
    Deviation("sorted-batch-order", 37, "the note LSTM's output left in length-sorted batch order", "model",
              "han-total", "PP-REL-BATCH-ORDER", "note", model_change=_patch("note", lambda m: mistakes.SortedItems())),
    Deviation("scaled-attention-scores", 38, "final attention scores divided by sqrt(head size)", "model",
              "han-total", "PP-REL-SOFTMAX-TEMPERATURE", "pooled",
              model_change=lambda m: mistakes.replace_attention(m, "head", mistakes.ScaledScoresAttention)),
    Deviation("backward-not-reversed", 39, "the note LSTM's backward half left reversed in time", "model",
              "han-total", "PP-REL-TIME-REVERSAL", "note",
              model_change=_patch("note", lambda m: mistakes.BackwardNotReversed())),
)}


def get_deviation(name: str) -> Deviation:
    try:
        return DEVIATIONS[name]
    except KeyError:
        raise KeyError(f"unknown deviation {name!r}; see `parity deviations`") from None
