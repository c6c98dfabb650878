"""The comparison engine: map weights, run both subjects on the same batches, fold what they recorded.

Flow (one way): canonical batches -> subjects -> taps -> aggregates (ComparisonState) -> checks ->
findings -> diagnosis -> report. The engine never judges; it measures. Taps of one batch are dropped once
folded, so memory does not grow with the number of batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from parity.aggregate import AttentionAgg, BatchProfile, DiffAgg, LevelAgg, batch_profile, real_mask
from parity.mapping import WeightMap, copy_weights, map_weights
from parity.noise import FloorMeter, NoiseFloors
from parity.state import ComparisonState, InitStat
from parity.structure import describe, recording_calls, trace_calls
from parity.subject import Subject, TeacherForcible
from parity.taps import Taps
from parity.tolerance import Tolerances
from replica.batch import CanonicalBatch
from replica.config import ModelConfig

Progress = Callable[[str, int, int], None]


@dataclass
class EngineOptions:
    tolerances: Tolerances = field(default_factory=Tolerances)
    local_error: bool = True
    floors: bool = True
    floor_batches: int = 1
    init_check: bool = True  # both models are freshly built with the same seed
    mapping_overrides: dict[str, str] | None = None
    progress: Progress | None = None
    reuse_floors: NoiseFloors | None = None  # floors measured by an earlier run on the same batches


class EngineError(RuntimeError):
    """A comparison that cannot proceed (a subject failed on a batch, nothing could be mapped)."""


def _init_stats(reference: torch.nn.Module, candidate: torch.nn.Module, wm: WeightMap) -> list[InitStat]:
    ref = dict(reference.named_parameters())
    cand = dict(candidate.named_parameters())
    stats = []
    for r, c in wm.pairs.items():
        a, b = ref[r].detach().double(), cand[c].detach().double()
        stats.append(InitStat(
            reference=r, candidate=c, identical=bool(torch.equal(ref[r].detach().cpu(), cand[c].detach().cpu()
                                                                  .to(ref[r].dtype))),
            ref_std=float(a.std()) if a.numel() > 1 else 0.0, cand_std=float(b.std()) if b.numel() > 1 else 0.0,
            ref_absmax=float(a.abs().max()), cand_absmax=float(b.abs().max()),
            ref_mean=float(a.mean()), cand_mean=float(b.mean()), numel=a.numel()))
    return stats


def _scale(ref: Tensor, mask: Tensor | None) -> float:
    a = ref.detach().abs().double()
    if mask is not None:
        m = mask
        while m.dim() < a.dim():
            m = m.unsqueeze(-1)
        a = a * m
    return float(a.max()) if a.numel() else 0.0


class Engine:
    def __init__(self, reference: Subject, candidate: Subject, *, variant: str, config: ModelConfig,
                 options: EngineOptions | None = None) -> None:
        self.reference = reference
        self.candidate = candidate
        self.variant = variant
        self.config = config
        self.options = options or EngineOptions()
        self.state = ComparisonState(variant=variant, reference_name=reference.info.name,
                                     candidate_name=candidate.info.name)
        self._floor_meter: FloorMeter | None = None
        # call orders (reference, candidate) for structure descriptions; recorded during the first batch
        # when the names alone pair every parameter, so no extra forward pass is spent on tracing
        self._call_orders: tuple[list[str], list[str]] | None = None

    # -- preparation --------------------------------------------------------------------------------------
    def prepare(self, first_batch: CanonicalBatch) -> None:
        st, ref, cand = self.state, self.reference, self.candidate
        recorded = getattr(ref, "structure", None)
        ref_order: list[str] | None = None
        if callable(recorded):  # a recorded reference (bundle): {"description": ..., "call_order": [...]}
            structure = recorded()
            ref_order = list(structure["call_order"])
            st.reference_structure = structure["description"]
        wm = map_weights(ref.model, cand.model, overrides=self.options.mapping_overrides)
        if wm.unmatched_reference and wm.unmatched_candidate:
            # names alone leave parameters unpaired: trace both forwards and pair the rest by call order
            if ref_order is None:
                ref_order = trace_calls(ref.model, lambda: ref.run(first_batch, grads=False))
            cand_order = trace_calls(cand.model, lambda: cand.run(first_batch, grads=False))
            wm = map_weights(ref.model, cand.model, reference_order=ref_order, candidate_order=cand_order,
                             overrides=self.options.mapping_overrides)
            self._call_orders = (ref_order, cand_order)
        if not callable(recorded):
            st.reference_structure = describe(ref.model, self._call_orders[0] if self._call_orders else None)
        st.candidate_structure = describe(cand.model, self._call_orders[1] if self._call_orders else None)
        if not wm.pairs:
            raise EngineError("no parameter of the candidate could be paired with the reference; give a mapping "
                              "override file")
        st.weight_map = wm
        if self.options.init_check:
            st.init = _init_stats(ref.model, cand.model, wm)
        else:
            st.init_note = "initial weights are not available for the reference (recorded bundle or checkpoint)"
        # the candidate gets a private copy holding the reference's weights; the user's object is untouched
        cand.model = copy.deepcopy(cand.model)
        copy_weights(ref.model, cand.model, wm)
        st.reference_param_dtypes = {n: str(p.dtype).removeprefix("torch.") for n, p in ref.model.named_parameters()}
        st.candidate_param_dtypes = {n: str(p.dtype).removeprefix("torch.") for n, p in cand.model.named_parameters()}
        if self.options.reuse_floors is not None:
            st.floors = self.options.reuse_floors
        elif self.options.floors:
            try:
                self._floor_meter = FloorMeter(self.variant, self.config, ref.model.state_dict())
                st.floors = self._floor_meter.floors
            except (RuntimeError, KeyError, ValueError) as exc:
                st.floors.method = f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); " \
                                   "fixed minimum tolerances only"
        else:
            st.floors.method = "disabled; fixed minimum tolerances only"
        st.local_available = self.options.local_error and isinstance(cand, TeacherForcible) and \
            hasattr(cand, "run_level")
        if not st.local_available:
            st.local_note = ("the candidate's adapter cannot run one level on given inputs; root cause falls back "
                             "to cumulative error") if self.options.local_error else "local error disabled"

    # -- per batch ----------------------------------------------------------------------------------------
    def fold_batch(self, index: int, batch: CanonicalBatch) -> None:
        st = self.state
        if self._floor_meter is not None and st.floors.batches < self.options.floor_batches:
            self._floor_meter.measure(batch)
        if self._call_orders is None:
            with recording_calls(self.reference.model) as ref_order, recording_calls(self.candidate.model) as cand_order:
                ref_taps = self._run(self.reference, batch, index)
                cand_taps = self._run(self.candidate, batch, index)
            self._call_orders = (ref_order, cand_order)
            if not callable(getattr(self.reference, "structure", None)):
                st.reference_structure = describe(self.reference.model, ref_order)
            st.candidate_structure = describe(self.candidate.model, cand_order)
        else:
            ref_taps = self._run(self.reference, batch, index)
            cand_taps = self._run(self.candidate, batch, index)
        self._fold_levels(index, batch, ref_taps, cand_taps)
        self._fold_grads(index, ref_taps, cand_taps)
        self._fold_attention(index, ref_taps, cand_taps)
        self._fold_patterns(batch, ref_taps, cand_taps)
        st.batches += 1
        st.batch_tags.extend(t for t in batch.tags if t not in st.batch_tags)

    def _run(self, subject: Subject, batch: CanonicalBatch, index: int) -> Taps:
        try:
            return subject.run(batch, grads=True)
        except Exception as exc:  # a subject failing on a batch is a finding about the batch, reported upward
            raise EngineError(f"the {subject.info.name} failed on batch {index} "
                              f"({', '.join(batch.tags) or 'generated'}): {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

    def _fold_levels(self, index: int, batch: CanonicalBatch, ref_taps: Taps, cand_taps: Taps) -> None:
        st, tol = self.state, self.options.tolerances
        lengths = torch.tensor(batch.lengths)
        st.levels_only_reference |= set(ref_taps.levels) - set(cand_taps.levels)
        st.levels_only_candidate |= set(cand_taps.levels) - set(ref_taps.levels)
        for level, ref in ref_taps.levels.items():
            cand = cand_taps.levels.get(level)
            if cand is None:
                continue
            agg = st.levels.setdefault(level, LevelAgg(level))
            agg.ref_dtype = ref_taps.dtypes.get(level, "")
            agg.cand_dtype = cand_taps.dtypes.get(level, "")
            agg.floor_abs = st.floors.levels.get(level, 0.0)
            agg.floor_rel = st.floors.level_rel(level)
            real, padded = real_mask(level, ref, cand, lengths)
            threshold = tol.threshold(agg.floor_abs, _scale(ref, real))
            agg.real.fold(ref, cand.to(torch.float32), real, threshold, index)
            if padded is not None and bool(padded.any()):
                agg.padded.fold(ref, cand.to(torch.float32), padded, max(threshold, tol.min_rel), index)
            if st.local_available:
                self._fold_local(agg, level, batch, ref_taps, ref, real, threshold, index)
        if ref_taps.loss is not None and cand_taps.loss is not None:
            st.losses.append((ref_taps.loss, cand_taps.loss))
            thr = max(tol.loss_abs, tol.floor_multiple * st.floors.loss)
            st.loss.fold(torch.tensor([ref_taps.loss]), torch.tensor([cand_taps.loss]), None, thr, index)

    def _fold_local(self, agg: LevelAgg, level: str, batch: CanonicalBatch, ref_taps: Taps, ref: Tensor,
                    real: Tensor | None, threshold: float, index: int) -> None:
        cand: TeacherForcible = self.candidate  # type: ignore[assignment]
        deps = cand.level_inputs(level)
        if any(d not in ref_taps.levels for d in deps):
            agg.local_note = f"inputs {', '.join(d for d in deps if d not in ref_taps.levels)} not recorded"
            return
        try:
            out = cand.run_level(level, {d: ref_taps.levels[d] for d in deps}, batch)
        except Exception as exc:  # noqa: BLE001 - a level that cannot take the reference's inputs
            agg.local_note = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
            if agg.local is None:
                agg.local = DiffAgg()
            agg.local.batches += 1
            if agg.local.shape_mismatch is None:
                agg.local.shape_mismatch = (list(ref.shape), [])
            return
        if agg.local is None:
            agg.local = DiffAgg()
        agg.local.fold(ref, out.to(torch.float32), real, threshold, index)

    def _fold_grads(self, index: int, ref_taps: Taps, cand_taps: Taps) -> None:
        st, tol = self.state, self.options.tolerances
        st.reference_with_grad |= set(ref_taps.grads)
        global_scale = max((_scale(g, None) for g in ref_taps.grads.values()), default=0.0)
        for r, c in st.weight_map.pairs.items():
            g_r, g_c = ref_taps.grads.get(r), cand_taps.grads.get(c)
            if g_r is None and g_c is None:
                continue
            if g_r is None:
                st.grad_only_candidate.add(r)
                continue
            if g_c is None:
                st.grad_only_reference.add(r)
                continue
            agg = st.grads.setdefault(r, DiffAgg())
            floor = st.floors.grads.get(r, 0.0)
            thr = tol.threshold(floor, _scale(g_r, None), grad=True, global_scale=global_scale)
            agg.fold(g_r, g_c.to(torch.float32), None, thr, index)

    def _fold_attention(self, index: int, ref_taps: Taps, cand_taps: Taps) -> None:
        st, tol = self.state, self.options.tolerances
        for name in set(ref_taps.attention) | set(cand_taps.attention):
            agg = st.attention.setdefault(name, AttentionAgg(name))
            floor = st.floors.attention.get(name, 0.0)
            agg.fold(ref_taps.attention.get(name), cand_taps.attention.get(name),
                     max(tol.floor_multiple * floor, tol.min_rel), index)

    def _fold_patterns(self, batch: CanonicalBatch, ref_taps: Taps, cand_taps: Taps) -> None:
        """Where mismatches sit (items, rows, batches) and attention mass on padding: evidence for diagnosis."""
        st, tol = self.state, self.options.tolerances
        profile: BatchProfile = batch_profile(batch)
        for level, agg in st.levels.items():
            ref, cand = ref_taps.levels.get(level), cand_taps.levels.get(level)
            if ref is None or cand is None:
                continue
            real, _ = real_mask(level, ref, cand, profile.lengths) if ref.shape == cand.shape else (None, None)
            threshold = tol.threshold(agg.floor_abs, _scale(ref, real))
            agg.pattern.fold(level, ref, cand.to(torch.float32), real, threshold, profile)
        final = st.attention.get("attn.final")
        ref_w = ref_taps.attention.get("attn.final")
        if final is not None and ref_w is not None:
            padded = self._final_padding(ref_taps, ref_w.shape[1], profile)
            if padded is not None:
                final.fold_padding(ref_w, cand_taps.attention.get("attn.final"), padded)

    def _final_padding(self, ref_taps: Taps, length: int, profile: BatchProfile) -> Tensor | None:
        """Padded positions of the head's pooling input: notes past each item's length for note-space heads,
        all-zero rows of the reference's beat or measure output for node-space heads."""
        if "contracted" in ref_taps.levels or "beat" not in ref_taps.levels:
            if length != int(profile.lengths.max()):
                return None
            return torch.arange(length).unsqueeze(0) >= profile.lengths.unsqueeze(1)
        order = ("beat", "measure") if "beat" in self.variant else ("measure", "beat")
        for source in order:
            value = ref_taps.levels.get(source)
            if value is not None and value.dim() == 3 and value.shape[1] == length:
                return (value == 0).all(-1)
        return None

    def locate_first_op(self, batch: CanonicalBatch) -> None:
        """Name the first divergent operation inside the root-cause level (teacher forced)."""
        from parity.checks.forward import root_level
        from parity.ops import first_divergent_op

        st = self.state
        level = root_level(st)
        if level is None:
            return
        if not st.local_available:
            st.ops = {"level": level, "available": False, "reason": st.local_note}
            return
        if callable(getattr(self.reference, "structure", None)):
            st.ops = {"level": level, "available": False,
                      "reason": "recorded reference: operation outputs inside a level are not in the bundle"}
            return
        cand: TeacherForcible = self.candidate  # type: ignore[assignment]
        try:
            ref_levels = self.reference.run(batch, grads=False).levels
            deps = cand.level_inputs(level)
            result = first_divergent_op(self.reference, self.candidate, st.weight_map, level, batch,
                                        {d: ref_levels[d] for d in deps if d in ref_levels})
        except Exception as exc:  # noqa: BLE001 - diagnosis is add-only: a failure here never changes a verdict
            result = {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:200]}
        st.ops = {"level": level, **result}

    # -- whole run ----------------------------------------------------------------------------------------
    def run(self, batches: Sequence[CanonicalBatch]) -> ComparisonState:
        if not batches:
            raise EngineError("no batches to compare")
        progress = self.options.progress
        if progress:
            progress("prepare", 0, len(batches))
        self.prepare(batches[0])
        for i, batch in enumerate(batches):
            self.fold_batch(i, batch)
            if progress:
                progress("batch", i + 1, len(batches))
        self.locate_first_op(batches[0])
        return self.state
