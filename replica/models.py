"""The PercePiano model variants, each a graph of named levels.

Mirrors original `model_m2pf.py` classes `VirtuosoNetMultiLevel`, `VirtuosoNet` and `VirtuosoNetSingle`, and
`encoder_perf.py` class `HanSkipEncoder`. Parameter names, shapes and construction order are the original's:

* every multi-level variant also builds the HanSkip `performance_encoder` that its forward never calls, and
  the note/voice/beat variants run the whole hierarchy although their head ignores part of it. We build and
  run these too: the same seed then gives bit-identical initial weights, a state dict loads strictly, and
  batches the original rejects (bad beat numbers) are rejected here as well. Their parameters simply never
  receive a gradient, exactly as in the original.
* the model returns logits; the sigmoid belongs to the loss (see replica.recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from percepiano_parity.core.config import ModelConfig
from percepiano_parity.replica.attention import ContextAttention
from percepiano_parity.replica.context import LevelContext
from percepiano_parity.replica.embedder import NoteEmbedder
from percepiano_parity.replica.encoder import HanEncoder
from percepiano_parity.replica.fast_lstm import FastLSTM
from percepiano_parity.replica.hierarchy import nonzero_rows
from percepiano_parity.replica.semantics import FAITHFUL, Semantics

Recorder = Callable[[str, Tensor], None]

TRUNK_GRAPH: dict[str, tuple[str, ...]] = {
    "embedding": (),
    "note": ("embedding",),
    "voice": ("embedding",),
    "beat_nodes": ("note", "voice"),
    "beat": ("beat_nodes",),
    "measure_nodes": ("beat",),
    "measure": ("measure_nodes",),
    "beat_spanned": ("beat",),
    "measure_spanned": ("measure",),
    "total_note_cat": ("note", "voice", "beat_spanned", "measure_spanned"),
}


def make_out_fc(config: ModelConfig) -> nn.Sequential:
    """Dropout, Linear(512, 512), exact GELU, Dropout, Linear(512, labels): the original's out_fc."""
    width = config.head_width
    return nn.Sequential(
        nn.Dropout(config.dropout),
        nn.Linear(width, width),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(width, config.num_label),
    )


class HanSkipEncoder(nn.Module):
    """Contract total_note_cat to 512 and pool it with context attention (original `HanSkipEncoder`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.performance_contractor = nn.Linear(8 * config.encoder_size, config.head_width)
        self.performance_final_attention = ContextAttention(config.head_width, config.num_heads)


class PercePianoModel(nn.Module):
    """Common forward machinery: run the level graph in order, record levels, apply the head."""

    variant: str = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.semantics: Semantics = FAITHFUL
        self.autocast_dtype: torch.dtype | None = None

    # subclasses provide the graph and the head
    def level_graph(self) -> dict[str, tuple[str, ...]]:
        raise NotImplementedError

    def head_modules(self) -> tuple[nn.Module | None, ContextAttention]:
        """(contractor or None, pooling attention) of this variant's head."""
        raise NotImplementedError

    # -- level computation --------------------------------------------------------------------------------
    def compute_level(self, level: str, inputs: Mapping[str, Tensor], ctx: LevelContext, x: PackedSequence
                      | None = None) -> Tensor:
        """Compute one level from the levels it depends on (and the packed features for `embedding`).

        A module registered under `level_patches[level]` (the deviation library's seam for an added layer)
        is applied to the level's output.
        """
        value = self._compute_unpatched(level, inputs, ctx, x)
        patches: nn.ModuleDict | None = getattr(self, "level_patches", None)
        if patches is not None and level in patches:
            patch = patches[level]
            value = patch(value, ctx.lengths) if getattr(patch, "wants_lengths", False) else patch(value)
        return value

    def _compute_unpatched(self, level: str, inputs: Mapping[str, Tensor], ctx: LevelContext,
                           x: PackedSequence | None) -> Tensor:
        if level == "embedding":
            if x is None:
                raise ValueError("the embedding level needs the packed features")
            return self._embed(x, ctx)
        if level == "contracted":
            contractor, _ = self.head_modules()
            assert contractor is not None
            return contractor(self._contractor_input(inputs))
        if level == "pooled":
            (source,) = self.level_graph()["pooled"]
            return self._pool(inputs[source], ctx, node_space=source in ("beat", "measure"))
        if level == "logits":
            return self.out_fc(inputs["pooled"])
        return self._trunk_level(level, inputs, ctx)

    def _contractor_input(self, inputs: Mapping[str, Tensor]) -> Tensor:
        sources = self.level_graph()["contracted"]
        return inputs[sources[0]] if len(sources) == 1 else torch.cat([inputs[s] for s in sources], dim=-1)

    def _trunk_level(self, level: str, inputs: Mapping[str, Tensor], ctx: LevelContext) -> Tensor:
        encoder: HanEncoder = self.score_encoder  # type: ignore[assignment]
        if level == "total_note_cat":
            return encoder.total_note_cat(*(inputs[name] for name in TRUNK_GRAPH[level]))
        method = getattr(encoder, level)
        return method(*(inputs[name] for name in TRUNK_GRAPH[level]), ctx)

    def _embed(self, x: PackedSequence, ctx: LevelContext) -> Tensor:
        embedder: NoteEmbedder = self.note_embedder  # type: ignore[assignment]
        if ctx.semantics.pack_sequences:
            padded, _ = pad_packed_sequence(embedder(x), batch_first=True, total_length=ctx.max_length)
            return padded
        raw, _ = pad_packed_sequence(x, batch_first=True, total_length=ctx.max_length)
        return embedder(raw)

    def _pool(self, source: Tensor, ctx: LevelContext, *, node_space: bool) -> Tensor:
        _, attention = self.head_modules()
        if node_space:
            real = torch.arange(source.shape[1]).unsqueeze(0) < nonzero_rows(source).unsqueeze(1)
        else:
            real = ctx.note_mask()
        weights = attention.weights(source, mask=ctx.semantics.head_mask, real=real)
        ctx.record_attention("attn.final", weights)
        return attention.pool(source, weights)

    # -- running ------------------------------------------------------------------------------------------
    def context(self, note_locations: Mapping[str, Tensor], lengths: Tensor | None,
                on_attention: Recorder | None = None) -> LevelContext:
        locations = {k: v.long() for k, v in note_locations.items()}
        if lengths is None:
            lengths = (locations["beat"] != 0).long().sum(1)  # only used by deviations when not given
        return LevelContext(locations=locations, lengths=lengths.cpu(), semantics=self.semantics,
                            on_attention=on_attention)

    def run_levels(self, x: PackedSequence, note_locations: Mapping[str, Tensor], lengths: Tensor | None = None,
                   *, on_level: Recorder | None = None, on_attention: Recorder | None = None) -> dict[str, Tensor]:
        """Run every level in forward order; returns them all (the last one is `logits`)."""
        if lengths is None:
            lengths = _packed_lengths(x)
        ctx = self.context(note_locations, lengths, on_attention)
        out: dict[str, Tensor] = {}
        device_type = x.data.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            for level, deps in self.level_graph().items():
                value = self.compute_level(level, {d: out[d] for d in deps}, ctx, x)
                out[level] = value
                if on_level is not None:
                    on_level(level, value)
        return out

    def forward(self, x: PackedSequence, note_locations: Mapping[str, Tensor], lengths: Tensor | None = None, *,
                on_level: Recorder | None = None, on_attention: Recorder | None = None) -> Tensor:
        """The logits (N, num_label); with recorders, every level and attention map on the way."""
        return self.run_levels(x, note_locations, lengths, on_level=on_level, on_attention=on_attention)["logits"]


def _packed_lengths(x: PackedSequence) -> Tensor:
    """Per-sequence lengths of a PackedSequence, in the original batch order."""
    batch_sizes = x.batch_sizes
    lengths_sorted = (batch_sizes.unsqueeze(0) > torch.arange(int(batch_sizes[0])).unsqueeze(1)).sum(1)
    if x.unsorted_indices is None:
        return lengths_sorted
    return lengths_sorted[x.unsorted_indices]


HEAD_GRAPHS: dict[str, dict[str, tuple[str, ...]]] = {
    "total_note_cat": {"contracted": ("total_note_cat",), "pooled": ("contracted",), "logits": ("pooled",)},
    "note": {"contracted": ("note",), "pooled": ("contracted",), "logits": ("pooled",)},
    "voice": {"contracted": ("note", "voice"), "pooled": ("contracted",), "logits": ("pooled",)},
    "beat": {"pooled": ("beat",), "logits": ("pooled",)},
    "measure": {"pooled": ("measure",), "logits": ("pooled",)},
}


class MultiLevelModel(PercePianoModel):
    """One prediction head on one level of the hierarchy (original `VirtuosoNetMultiLevel`, one level)."""

    def __init__(self, config: ModelConfig, level: str) -> None:
        super().__init__(config)
        if level not in HEAD_GRAPHS:
            raise ValueError(f"unknown level {level!r}; expected one of {', '.join(HEAD_GRAPHS)}")
        self.level = level
        width = config.head_width
        self.note_embedder = NoteEmbedder(config.input_size, config.note_size)
        self.score_encoder = HanEncoder(config)
        self.performance_encoder = HanSkipEncoder(config)  # built, never called (as in the original)
        # heads in the original's __init__ order: measure, beat, voice, note, total_note_cat
        if level == "measure":
            self.measure_attention = ContextAttention(width, config.num_heads)
        if level == "beat":
            self.beat_attention = ContextAttention(width, config.num_heads)
        if level == "voice":
            self.voice_contractor = nn.Linear(4 * config.encoder_size, width)
            self.voice_attention = ContextAttention(width, config.num_heads)
        if level == "note":
            self.note_contractor = nn.Linear(2 * config.encoder_size, width)
            self.note_attention = ContextAttention(width, config.num_heads)
        if level == "total_note_cat":
            self.performance_contractor = nn.Linear(8 * config.encoder_size, width)
            self.performance_final_attention = ContextAttention(width, config.num_heads)
        self.out_fc = make_out_fc(config)

    def level_graph(self) -> dict[str, tuple[str, ...]]:
        return {**TRUNK_GRAPH, **HEAD_GRAPHS[self.level]}

    def head_modules(self) -> tuple[nn.Module | None, ContextAttention]:
        return {
            "measure": lambda: (None, self.measure_attention),
            "beat": lambda: (None, self.beat_attention),
            "voice": lambda: (self.voice_contractor, self.voice_attention),
            "note": lambda: (self.note_contractor, self.note_attention),
            "total_note_cat": lambda: (self.performance_contractor, self.performance_final_attention),
        }[self.level]()


class VirtuosoNetSkip(PercePianoModel):
    """The base model: total_note_cat through the HanSkip performance encoder (original `VirtuosoNet`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.note_embedder = NoteEmbedder(config.input_size, config.note_size)
        self.score_encoder = HanEncoder(config)
        self.performance_encoder = HanSkipEncoder(config)
        self.out_fc = make_out_fc(config)

    def level_graph(self) -> dict[str, tuple[str, ...]]:
        return {**TRUNK_GRAPH, **HEAD_GRAPHS["total_note_cat"]}

    def head_modules(self) -> tuple[nn.Module | None, ContextAttention]:
        enc: HanSkipEncoder = self.performance_encoder
        return enc.performance_contractor, enc.performance_final_attention


class SingleLSTMModel(PercePianoModel):
    """One deep Bi-LSTM over notes, no hierarchy (original `VirtuosoNetSingle`, the `--ablation` model).

    Its depth is the sum of the note, voice, beat and measure layer counts (2+2+2+1 = 7).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        layers = config.note_layers + config.voice_layers + config.beat_layers + config.measure_layers
        self.note_embedder = NoteEmbedder(config.input_size, config.note_size)
        self.lstm = FastLSTM(config.note_size, config.note_size, layers, batch_first=True, bidirectional=True,
                            dropout=config.dropout)
        self.note_contractor = nn.Linear(2 * config.encoder_size, config.head_width)
        self.note_attention = ContextAttention(config.head_width, config.num_heads)
        self.out_fc = make_out_fc(config)

    def level_graph(self) -> dict[str, tuple[str, ...]]:
        return {"embedding": (), "note": ("embedding",), **HEAD_GRAPHS["note"]}

    def head_modules(self) -> tuple[nn.Module | None, ContextAttention]:
        return self.note_contractor, self.note_attention

    def _trunk_level(self, level: str, inputs: Mapping[str, Tensor], ctx: LevelContext) -> Tensor:
        if level != "note":
            raise KeyError(level)
        return ctx.run_sequence_lstm(self.lstm, inputs["embedding"])
