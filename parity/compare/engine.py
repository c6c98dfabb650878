"""The comparison engine: map weights, run both subjects on the same batches, fold what they recorded.

Flow (one way): canonical batches -> subjects -> taps -> aggregates (ComparisonState) -> checks ->
findings -> diagnosis -> report. The engine never judges; it measures. Taps of one batch are dropped once
folded, so memory does not grow with the number of batches.

Lean by default: each subject runs once per batch (forward and backward together); the evidence that only
serves to locate a mismatch (teacher-forced local error, where mismatches sit, gradient noise floors) is
computed only for what differs in that batch. None of it can turn a match into a mismatch: a floor only
raises a threshold, and local error and patterns only explain a level that already differs. `thorough`
computes all of it everywhere.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from percepiano_parity.batches.canonical import CanonicalBatch, Segment, collate
from percepiano_parity.compare.aggregate import (
    AttentionAgg,
    BatchProfile,
    DiffAgg,
    LevelAgg,
    batch_profile,
    real_mask,
)
from percepiano_parity.compare.locate import level_modules, locate
from percepiano_parity.compare.noise import FloorMeter, NoiseFloors, Tolerances
from percepiano_parity.compare.raises import batch_record, changed_by_clamps, describe_failure, outcome
from percepiano_parity.compare.relations.search import diagnosis_batch
from percepiano_parity.compare.state import ComparisonState, InitStat
from percepiano_parity.compare.structure import describe, recording_calls, recording_functions, trace_calls
from percepiano_parity.compare.weight_mapping import (
    WeightMap,
    copy_shared_columns,
    copy_weights,
    map_weights,
    settle_by_values,
)
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.subjects.recording import private_copy
from percepiano_parity.subjects.subject import Subject, Taps, TeacherForcible

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
    floor_meter: FloorMeter | None = None  # or that run's meter, which can still add gradient floors on demand
    # gradient floors and teacher-forced local error for every level of every batch, needed or not
    thorough: bool = False


class EngineError(RuntimeError):
    """A comparison that cannot proceed (no batch both subjects run on, nothing could be mapped)."""


class SideFailure(EngineError):
    """One subject raised on one batch (its exception is the cause): a finding about that batch, not the end of
    the audit (the engine records it and goes on with the other batches)."""

    wraps_side_failure = True

    def __init__(self, message: str, *, side: str, index: int) -> None:
        super().__init__(message)
        self.side, self.index = side, index


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
    """Largest magnitude of `ref` where `mask` holds (abs and max are exact in any dtype)."""
    a = ref.detach().abs()
    if mask is not None:
        m = mask
        while m.dim() < a.dim():
            m = m.unsqueeze(-1)
        a = torch.where(m, a, a.new_zeros(()))
    return float(a.max()) if a.numel() else 0.0


# the level an attention map weights (its rows are the map's positions)
ATTENTION_WEIGHS = {"attn.beat": "note", "attn.measure": "beat", "attn.final": "contracted"}


def _observable(name: str, ref_taps: Taps, ref: Tensor | None, cand: Tensor | None
                ) -> tuple[Tensor | None, Tensor | None]:
    """Both maps with the weights of all-zero rows of the weighted level set to 0 on both sides: a weight on a
    row that holds nothing (an empty beat node where beat numbers jump, padding) changes no output, so how a
    replica fills it is not a difference (a map over the same rows still has to agree everywhere else)."""
    weighted = ref_taps.levels.get(ATTENTION_WEIGHS.get(name, ""))
    if ref is None or cand is None or weighted is None or ref.shape != cand.shape or ref.dim() != 3 \
            or tuple(weighted.shape[:2]) != tuple(ref.shape[:2]):
        return ref, cand
    empty = (weighted.detach().abs().amax(-1) == 0).unsqueeze(-1).to(ref.device)
    if not bool(empty.any()):
        return ref, cand
    return ref.masked_fill(empty, 0.0), cand.masked_fill(empty.to(cand.device), 0.0)


LOCATING_ITEMS = 4  # items of the telling batch that levels are located on (the longest, the shortest, between)


def telling_batch(batches: Sequence[CanonicalBatch]) -> CanonicalBatch:
    """The batch that pairing and locating look at: of the normal batches (not edge cases), the one with the most
    distinct lengths, so that padding and packing differences show (the first one on a tie)."""
    return telling_order(batches)[0]


def telling_order(batches: Sequence[CanonicalBatch]) -> list[CanonicalBatch]:
    """Every batch in the order pairing and locating would take them: normal batches by most distinct lengths
    (the first one on a tie), then the edge cases in the same order."""
    def rank(b: CanonicalBatch) -> tuple[bool, int]:
        return any(t.startswith("edge:") for t in b.tags), -len(set(b.lengths))

    return sorted(batches, key=rank)


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
        self._functions_recorded = False  # dropout/activation calls, recorded during the first batch
        self._first_reference: Taps | None = None
        self._zeroed = False  # the batch columns a candidate of another width lacks are zeroed on both sides

    @property
    def floor_meter(self) -> FloorMeter | None:
        """The meter behind this run's floors (None when floors were reused, disabled or unavailable)."""
        return self._floor_meter

    # -- preparation --------------------------------------------------------------------------------------
    def prepare(self, first_batch: CanonicalBatch) -> None:
        st, ref, cand = self.state, self.reference, self.candidate
        recorded = getattr(ref, "structure", None)
        ref_order: list[str] | None = None
        if callable(recorded):  # a recorded reference (bundle): {"description": ..., "call_order": [...]}
            structure = recorded()
            ref_order = list(structure["call_order"])
            st.reference_structure = structure["description"]
        overrides = self.options.mapping_overrides
        wm = map_weights(ref.model, cand.model, overrides=overrides)
        if wm.by_structure:
            # names alone leave parameters unpaired: trace both forwards and pair the rest by what the modules
            # compute (shapes, call order; values where call order and names disagree)
            if ref_order is None:
                ref_order = trace_calls(ref.model, lambda: self._run(ref, first_batch, 0, grads=False),
                                        parameters=True)
            cand_order = trace_calls(cand.model, lambda: self._run(cand, first_batch, 0, grads=False),
                                     parameters=True)

            def build(choices: Mapping[tuple[str, ...], str]) -> WeightMap:
                return map_weights(ref.model, cand.model, reference_order=ref_order, candidate_order=cand_order,
                                   overrides=overrides, choices=choices)

            wm = settle_by_values(build({}), build, lambda alt: self._trial(alt, first_batch))
            self._call_orders = (ref_order, cand_order)
        if not callable(recorded):
            st.reference_structure = describe(ref.model, self._call_orders[0] if self._call_orders else None)
        st.candidate_structure = describe(cand.model, self._call_orders[1] if self._call_orders else None)
        st.weight_map = wm
        if self.options.init_check:
            st.init = _init_stats(ref.model, cand.model, wm)
        else:
            st.init_note = "initial weights are not available for the reference (recorded bundle or checkpoint)"
        # the candidate gets a private copy holding the reference's weights; the user's object is untouched, and
        # the hooks and taps the user registered on it keep recording where the user reads them
        cand.model = private_copy(cand.model)
        copy_weights(ref.model, cand.model, wm)
        plan = getattr(cand, "input_plan", None)
        if plan is not None:  # a candidate of another input width: its input projection takes the shared columns
            filled = copy_shared_columns(ref.model, cand.model, wm, plan.columns, plan.batch_width)
            st.input_columns = {**plan.to_dict(), "filled": filled, "zeroed": self._zeroed}
        if callable(getattr(cand, "capture", None)):
            self._locate(first_batch)
        st.reference_param_dtypes = {n: str(p.dtype).removeprefix("torch.") for n, p in ref.model.named_parameters()}
        st.candidate_param_dtypes = {n: str(p.dtype).removeprefix("torch.") for n, p in cand.model.named_parameters()}
        if self.options.floor_meter is not None:
            self._floor_meter = self.options.floor_meter
            st.floors = self._floor_meter.floors
        elif self.options.reuse_floors is not None:
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

    def _reference_taps(self, batch: CanonicalBatch) -> Taps:
        """The reference's recording of the first batch without gradients (for pairing and locating)."""
        if self._first_reference is None:
            self._first_reference = self._run(self.reference, batch, 0, grads=False)
        return self._first_reference

    def _trial(self, weight_map: WeightMap, batch: CanonicalBatch) -> tuple[int, float, float]:
        """With the reference's weights copied into a scratch copy of the candidate as `weight_map` pairs them:
        (reference levels found by value in its forward, largest |logits difference|, largest |reference logit|),
        for compare.weight_mapping."""
        ref, cand = self.reference, self.candidate
        expected = self._reference_taps(batch)
        own = cand.model
        scratch = copy.deepcopy(own)
        copy_weights(ref.model, scratch, weight_map)
        cand.model = scratch
        try:
            logits = self._run(cand, batch, 0, grads=False).levels["logits"]
            found = 0
            if callable(getattr(cand, "capture", None)):
                records, counts = cand.capture(batch)  # type: ignore[attr-defined]
                sites = locate(expected.levels, expected.attention, records, counts, cand.level_graph(),  # type: ignore
                               exact_only=True)
                found = sum(1 for site in sites.values() if site.found)
        finally:
            cand.model = own
        target = expected.levels["logits"]
        scale = float(target.abs().max())
        if logits.shape != target.shape:
            return found, float("inf"), scale
        return found, float((logits.double() - target.double()).abs().max()), scale

    def _locate(self, batch: CanonicalBatch) -> None:
        """Find the reference's levels in the candidate's forward by value (compare.locate), once, on the first
        batch; the candidate then records them at those sites on every batch."""
        st, cand = self.state, self.candidate
        items = len(batch)
        if not callable(getattr(self.reference, "structure", None)):  # a bundle replays its own batches only
            # a few items of unequal lengths show every layout, and recording every tensor of a forward is the
            # expensive part of locating: on LOCATING_ITEMS items it costs less than a plain forward of the batch
            batch = diagnosis_batch(batch, LOCATING_ITEMS)
        ref_taps = self._reference_taps(batch) if len(batch) == items else self._run(self.reference, batch, 0,
                                                                                      grads=False)
        st.located_on = {"items": len(batch), "of_items": items, "tags": list(batch.tags),
                         "lengths": list(batch.lengths)}
        try:
            records, counts = cand.capture(batch)  # type: ignore[attr-defined]
        except Exception as exc:  # a candidate failing on the batch is reported as in any run
            raise SideFailure(f"the {cand.info.name} failed on batch 0 ({', '.join(batch.tags) or 'generated'}): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                              side="candidate", index=0) from exc
        explicit = cand.explicit()  # type: ignore[attr-defined]
        sites = locate(ref_taps.levels, ref_taps.attention, records, counts, cand.level_graph(),  # type: ignore
                       skip=explicit, modules=level_modules(st.weight_map))
        cand.use_sites(sites)  # type: ignore[attr-defined]
        del records
        self._first_reference = None
        st.located = {name: site.describe() for name, site in sites.items()}
        wanted = [n for n in (*ref_taps.levels, *ref_taps.attention) if n != "logits" and n not in explicit]
        st.not_located = [n for n in wanted if n not in sites]
        derive = getattr(cand, "derive_missing", None)
        if callable(derive):
            derive(st.not_located)  # computed by the adapter's run_level from the replica's own inputs
            st.derived = [n for n in st.not_located if n in getattr(cand, "derived", ())]
        st.conventions = list(cand.info.extra.get("conventions", []))

    # -- per batch ----------------------------------------------------------------------------------------
    def fold_batch(self, index: int, batch: CanonicalBatch) -> None:
        """Run both subjects on one batch and fold what they recorded; a batch one of them (or both) raises on is
        recorded as such (`state.raised`, compare.raises) and the audit goes on with the next batch."""
        st = self.state
        record = self._call_orders is None or not self._functions_recorded
        runs = [self._attempt(subject, batch, index, record) for subject in (self.reference, self.candidate)]
        (ref_taps, ref_exc, ref_order, rf), (cand_taps, cand_exc, cand_order, cf) = runs
        if ref_exc is not None or cand_exc is not None:
            self._record_raise(index, batch, ref_exc, cand_exc)
            return
        assert ref_taps is not None and cand_taps is not None
        if record:
            if self._call_orders is None:
                self._call_orders = (ref_order or [], cand_order or [])
            self._functions_recorded = True
            orders = self._call_orders
            if not callable(getattr(self.reference, "structure", None)):
                st.reference_structure = describe(self.reference.model, orders[0], rf)
            st.candidate_structure = describe(self.candidate.model, orders[1], cf)
        # floors after both sides ran: the faithful replica that measures them raises where the original does
        if self._floor_meter is not None and st.floors.batches < self.options.floor_batches:
            self._floor_meter.measure(batch, grads=False)
            if self.options.thorough:
                self._floor_meter.ensure_grads()
        profile = batch_profile(batch)
        self._fold_levels(index, batch, profile, ref_taps, cand_taps)
        self._fold_grads(index, ref_taps, cand_taps)
        self._fold_attention(index, ref_taps, cand_taps)
        self._fold_final_padding(profile, ref_taps, cand_taps)
        st.batches += 1
        st.batch_tags.extend(t for t in batch.tags if t not in st.batch_tags)

    def _attempt(self, subject: Subject, batch: CanonicalBatch, index: int, record: bool
                 ) -> tuple[Taps | None, SideFailure | None, list[str] | None, list[dict] | None]:
        """(taps, None, call order, function calls) of one run, or (None, the failure, ...) when it raised;
        with `record`, the call order and function calls are recorded for the structure descriptions."""
        with contextlib.ExitStack() as stack:
            order = stack.enter_context(recording_calls(subject.model)) if record else None
            functions = stack.enter_context(recording_functions(subject.model)) if record else None
            try:
                taps = self._run(subject, batch, index)
            except SideFailure as exc:
                return None, exc, None, None
        return taps, None, order, functions

    def _record_raise(self, index: int, batch: CanonicalBatch, ref_exc: BaseException | None,
                      cand_exc: BaseException | None) -> None:
        """What each side did on a batch one of them raised on; for a candidate that returned values there, the
        clamps that changed values in its forward (an index clamped into range instead of raising)."""
        st = self.state
        entry = batch_record(index, batch)
        entry["reference"] = describe_failure(ref_exc, self.reference.info.source) if ref_exc is not None else None
        entry["candidate"] = describe_failure(cand_exc, self.candidate.info.source) if cand_exc is not None else None
        entry["outcome"] = outcome(entry["reference"], entry["candidate"])
        if cand_exc is None:
            try:
                with changed_by_clamps() as clamps:
                    self.candidate.run(batch, grads=False)
                entry["candidate_clamps"] = clamps[:4]
            except Exception as exc:  # noqa: BLE001 - evidence only: the candidate already ran on this batch
                entry["candidate_clamps_note"] = f"{type(exc).__name__}: {str(exc)[:120]}"
        st.raised.append(entry)
        st.batch_tags.extend(t for t in batch.tags if t not in st.batch_tags)

    def _run(self, subject: Subject, batch: CanonicalBatch, index: int, *, grads: bool = True) -> Taps:
        try:
            return subject.run(batch, grads=grads)
        except Exception as exc:  # a subject failing on a batch is a finding about the batch, reported upward
            side = "reference" if subject is self.reference else "candidate"
            raise SideFailure(f"the {subject.info.name} failed on batch {index} "
                              f"({', '.join(batch.tags) or 'generated'}): {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}", side=side, index=index) from exc

    def _fold_levels(self, index: int, batch: CanonicalBatch, profile: BatchProfile, ref_taps: Taps,
                     cand_taps: Taps) -> None:
        st, tol = self.state, self.options.tolerances
        lengths = profile.lengths
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
            # slack: error the candidate's recording itself may add (logits recovered from sigmoid outputs)
            threshold = tol.threshold(agg.floor_abs, _scale(ref, real)) + cand_taps.slack.get(level, 0.0)
            cand32 = cand.to(torch.float32)
            bad = agg.real.fold(ref, cand32, real, threshold, index)
            # a level found by value keeps the candidate's own padding convention: only real positions count
            if padded is not None and bool(padded.any()) and level not in cand_taps.located:
                agg.padded.fold(ref, cand32, padded, max(threshold, tol.min_rel), index)
            # where mismatches sit (items, rows, batches): evidence for diagnosis, only needed where they are
            if bad or self.options.thorough or ref.shape != cand.shape or ref.shape[0] != len(batch):
                agg.pattern.fold(level, ref, cand32, real if ref.shape == cand.shape else None, threshold, profile)
            else:
                agg.pattern.fold_clean(profile)
            # the level alone on the reference's inputs: tells a root cause from an inherited error
            if st.local_available and (bad or self.options.thorough):
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
        """Gradients against the floors known so far; when one exceeds the fixed minimum before the gradient
        floors were measured, the batch is folded again with them (earlier batches stayed under the minimum,
        so the floors cannot change their outcome)."""
        meter = self._floor_meter
        lazy = meter is not None and not meter.grads_measured
        before = {name: copy.copy(agg) for name, agg in self.state.grads.items()} if lazy else {}
        if self._fold_grads_once(index, ref_taps, cand_taps) and lazy:
            self.state.grads = before
            try:
                meter.ensure_grads()  # type: ignore[union-attr]
            except (RuntimeError, KeyError, ValueError) as exc:
                self.state.floors.method += f"; gradient floors unavailable ({type(exc).__name__})"
            self._fold_grads_once(index, ref_taps, cand_taps)

    def _fold_grads_once(self, index: int, ref_taps: Taps, cand_taps: Taps) -> bool:
        st, tol = self.state, self.options.tolerances
        bad = False
        st.reference_with_grad |= set(ref_taps.grads)
        scales = {name: _scale(g, None) for name, g in ref_taps.grads.items()}
        global_scale = max(scales.values(), default=0.0)
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
            thr = tol.threshold(floor, scales[r], grad=True, global_scale=global_scale)
            if g_c.shape != g_r.shape and g_c.numel() == g_r.numel():  # paired up to size-1 dimensions
                g_c = g_c.reshape(g_r.shape)
            bad = agg.fold(g_r, g_c.to(torch.float32), None, thr, index) or bad
        return bad

    def _fold_attention(self, index: int, ref_taps: Taps, cand_taps: Taps) -> None:
        st, tol = self.state, self.options.tolerances
        for name in set(ref_taps.attention) | set(cand_taps.attention):
            agg = st.attention.setdefault(name, AttentionAgg(name))
            floor = st.floors.attention.get(name, 0.0)
            ref, cand = _observable(name, ref_taps, ref_taps.attention.get(name), cand_taps.attention.get(name))
            agg.fold(ref, cand, max(tol.floor_multiple * floor, tol.min_rel), index)

    def _fold_final_padding(self, profile: BatchProfile, ref_taps: Taps, cand_taps: Taps) -> None:
        """Attention mass the head's pooling puts on padding: evidence for diagnosis."""
        st = self.state
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
        from percepiano_parity.compare.first_op import first_divergent_op
        from percepiano_parity.compare.state import root_level

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

    def search_relations(self, batches: Sequence[CanonicalBatch]) -> None:
        """Relation tests at every independent root level (compare.relations.search), on the first batch where
        that level differs. Add-only: a failure is recorded as a note and never changes a verdict."""
        from percepiano_parity.compare.relations.search import search
        from percepiano_parity.compare.state import independent_roots

        st = self.state
        forcible = st.local_available and callable(getattr(self.candidate, "run_level", None))
        for level in independent_roots(st):
            agg = st.levels[level]
            index = agg.real.first_bad_batch if agg.real.first_bad_batch is not None else 0
            batch = batches[min(index, len(batches) - 1)]
            try:
                result = search(level, self.reference, self.candidate, batch, st.weight_map,
                                st.floors.level_rel(level), teacher_forced=forcible)
            except Exception as exc:  # noqa: BLE001 - diagnosis is add-only
                result = {"level": level, "tested": [], "holds": [],
                          "note": f"relation tests failed: {type(exc).__name__}: {exc}"[:240]}
            result["batch"] = index
            st.relations.append(result)

    def find_derived_inputs(self, batches: Sequence[CanonicalBatch]) -> None:
        """When the first divergent level agrees on the original's own inputs (teacher forced) but not in the free
        run: the input computed outside the levels that differs (compare.derived_inputs), on the first batch where
        the level differs. Add-only: a failure is recorded as a note and never changes a verdict."""
        from percepiano_parity.compare.derived_inputs import find, reference_inputs
        from percepiano_parity.compare.state import first_divergent

        st = self.state
        level = first_divergent(st)
        agg = st.levels.get(level) if level is not None else None
        if agg is None or not st.local_available or agg.local is None or agg.local.exceeded:
            return
        index = agg.real.first_bad_batch if agg.real.first_bad_batch is not None else 0
        batch = batches[min(index, len(batches) - 1)]
        cand = self.candidate
        try:
            reference = self.reference.run(batch, grads=False).levels
            call, inp = getattr(cand, "call", None), collate(batch)
            values = call.values(cand.model, inp) if callable(getattr(call, "values", None)) else None
            thresholds = {name: st.levels[name].real.threshold for name in (level, "logits") if name in st.levels}
            result = find(level, batch, lambda: cand.run(batch, grads=False), reference,
                          reference_inputs(inp, values), thresholds)
        except Exception as exc:  # noqa: BLE001 - diagnosis is add-only
            result = {"level": level, "found": None, "tested": [],
                      "note": f"the inputs could not be measured: {type(exc).__name__}: {exc}"[:240]}
        result["batch"] = index
        st.derived_input = result

    # -- whole run ----------------------------------------------------------------------------------------
    def run(self, batches: Sequence[CanonicalBatch]) -> ComparisonState:
        if not batches:
            raise EngineError("no batches to compare")
        progress = self.options.progress
        if progress:
            progress("prepare", 0, len(batches))
        batches = self._on_shared_columns(batches)
        telling = self._prepare_on_a_batch_both_run(batches)
        if self.state.located_on:
            self.state.located_on.update(batch=next(i for i, b in enumerate(batches) if b is telling),
                                         batches=len(batches))
        for i, batch in enumerate(batches):
            self.fold_batch(i, batch)
            if progress:
                progress("batch", i + 1, len(batches))
        folded = [b for i, b in enumerate(batches) if i not in {r["batch"] for r in self.state.raised}]
        if not folded:
            first = self.state.raised[0] if self.state.raised else {}
            failure = first.get("candidate") or first.get("reference") or {}
            raise EngineError(f"no batch ran on both sides; on batch 0 the {self._side_name(first)} raised "
                              f"{failure.get('type')}: {failure.get('message')}"
                              + (f" (at {failure['where']})" if failure.get("where") else ""))
        self.locate_first_op(folded[0])
        self.search_relations(batches)
        self.find_derived_inputs(batches)
        return self.state

    def _on_shared_columns(self, batches: Sequence[CanonicalBatch]) -> list[CanonicalBatch]:
        """For a candidate built for another input width (subjects.calling: `input_plan`), the batches with the
        columns it does not take set to 0 for both sides, so the audit goes on on the columns both have. A
        recorded reference replays its own batches only: there the columns stay (the embedding then differs by
        what the lacking columns contribute)."""
        plan = getattr(self.candidate, "input_plan", None)
        unused = list(plan.unused_batch_columns) if plan is not None else []
        if not unused or callable(getattr(self.reference, "structure", None)):
            return list(batches)
        self._zeroed = True
        out = []
        for batch in batches:
            segments = []
            for seg in batch.segments:
                features = seg.features.clone()
                features[:, unused] = 0.0
                segments.append(Segment(seg.name, features, seg.beat, seg.measure, seg.voice, seg.section, seg.label))
            out.append(CanonicalBatch(segments=tuple(segments), tags=batch.tags))
        return out

    def _side_name(self, entry: Mapping[str, object]) -> str:
        return self.candidate.info.name if entry.get("candidate") else self.reference.info.name

    def _prepare_on_a_batch_both_run(self, batches: Sequence[CanonicalBatch]) -> CanonicalBatch:
        """Prepare (pairing, locating, floors) on the telling batch; when a subject raises on it, on the next
        one in telling order (the batch is recorded as raised when it is folded). The candidate's model and the
        state are put back as they were before each new try."""
        own, raised = self.candidate.model, self.state.raised
        order = telling_order(batches)
        for k, telling in enumerate(order):
            try:
                self.prepare(telling)
                return telling
            except SideFailure:
                if k == len(order) - 1:
                    raise
                self.candidate.model = own
                self._first_reference, self._call_orders, self._functions_recorded = None, None, False
                self.state = ComparisonState(variant=self.variant, reference_name=self.reference.info.name,
                                             candidate_name=self.candidate.info.name)
                self.state.raised = raised
        raise EngineError("no batches to compare")
