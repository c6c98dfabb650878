"""Finding the original's levels in a candidate's forward by value: which recorded tensor equals a given
one, allowing another layout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

import torch
from torch import Tensor

from percepiano_parity.compare.structure import level_of
from percepiano_parity.compare.weight_mapping import WeightMap
from percepiano_parity.core.levels import ATTENTIONS, LEVEL_SPACE, LEVELS, Space, level_order
from percepiano_parity.subjects.level_sites import (
    KINDS,
    Counts,
    Layout,
    LevelSite,
    as_rows,
    concatenated,
    prepare,
    row_at,
    to_canonical,
)
from percepiano_parity.subjects.recording import Recorded

# ----------------------------------------------------------------------------------------------------------
# Finding a value in a trace: which recorded tensor equals a given one, allowing another layout.
#
# Two sides compute the same thing in different layouts (batch-first or not, heads split by `view` or by
# `split` + `stack`), so a value is looked up first element by element in the same shape, then as a multiset
# (the same numbers in any order). Relative tolerance: a single operation on identical inputs rounds to about
# 1e-7 of its scale in float32; `REL` leaves room for a few of them.

REL = 1e-5  # relative to the larger magnitude of the two tensors
MIN_SCALE = 1e-12


@dataclass(frozen=True)
class Match:
    key: int  # what the index was built with (e.g. an op index)
    layout: str  # "same" (element by element) or "multiset" (same values, another order)
    residual: float  # largest |difference| relative to the scale


def relative_residual(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max(|a|, |b|) over elements (same shape), 0 for two zero tensors."""
    a64, b64 = a.detach().double().flatten(), b.detach().double().flatten()
    scale = max(float(a64.abs().max()) if a64.numel() else 0.0, float(b64.abs().max()) if b64.numel() else 0.0)
    if scale < MIN_SCALE:
        return 0.0
    diff = (a64 - b64).abs()
    if torch.isnan(diff).any():
        return float("inf")
    return float(diff.max()) / scale


def sorted_values(t: Tensor) -> Tensor:
    return t.detach().float().flatten().sort().values


def _signature(t: Tensor) -> tuple[float, float, float]:
    """(sum, sum of |x|, max |x|) in float64: equal values (in any order) have close signatures."""
    x = t.detach().double()
    return float(x.sum()), float(x.abs().sum()), float(x.abs().max())


class ValueIndex:
    """Tensors (float, at least 2 elements) indexed by size and a value signature, for lookups by value.

    Two tensors within `rel` of each other (relative to the larger magnitude m) have sums and absolute sums
    within numel * rel * m, so only those candidates are compared element by element.
    """

    def __init__(self, items: Iterable[tuple[int, Tensor]]) -> None:
        self._by_numel: dict[int, list[tuple[int, Tensor, tuple[float, float, float]]]] = defaultdict(list)
        for key, t in items:
            if t is None or not t.is_floating_point() or t.numel() < 2:
                continue
            self._by_numel[t.numel()].append((key, t, _signature(t)))
        self._sorted: dict[int, Tensor] = {}

    def _sorted_of(self, key: int, t: Tensor) -> Tensor:
        if key not in self._sorted:
            self._sorted[key] = sorted_values(t)
        return self._sorted[key]

    def _candidates(self, t: Tensor, rel: float) -> list[tuple[int, Tensor]]:
        s, a, m = _signature(t)
        out = []
        for key, other, (so, ao, mo) in self._by_numel.get(t.numel(), ()):
            slack = t.numel() * rel * max(m, mo) + 1e-30
            if abs(s - so) <= slack and abs(a - ao) <= slack and abs(m - mo) <= rel * max(m, mo) + 1e-30:
                out.append((key, other))
        return out

    def find(self, t: Tensor, rel: float = REL, first: bool = True) -> list[Match]:
        """Keys of indexed tensors equal to `t` within `rel` (same-shape matches first)."""
        if t is None or not t.is_floating_point() or t.numel() < 2:
            return []
        found: list[Match] = []
        mine: Tensor | None = None
        for key, other in self._candidates(t, rel):
            if other.shape == t.shape:
                r = relative_residual(other, t)
                if r <= rel:
                    found.append(Match(key, "same", r))
                    if first:
                        return found
                    continue
            mine = sorted_values(t) if mine is None else mine
            r = relative_residual(self._sorted_of(key, other), mine)
            if r <= rel:
                found.append(Match(key, "multiset", r))
                if first and len(found) > 8:
                    break
        found.sort(key=lambda m: (m.layout != "same", m.residual))
        return found[:1] if first else found

    def nearest(self, t: Tensor) -> Match | None:
        """The indexed tensor of the same size closest to `t` as a multiset (for honest 'not found' reports)."""
        if t is None or not t.is_floating_point() or t.numel() < 2:
            return None
        mine = sorted_values(t)
        best: Match | None = None
        for key, other, _sig in self._by_numel.get(t.numel(), ())[:200]:
            r = relative_residual(self._sorted_of(key, other), mine)
            if best is None or r < best.residual:
                best = Match(key, "multiset", r)
        return best


# ----------------------------------------------------------------------------------------------------------
# Finding the original's levels in a candidate's forward by value.
#
# With the same weights and the same batch on both sides, each level the reference recorded (and each attention
# map) is looked for among every tensor the candidate computed (subjects.recording): in each layout a replica may
# keep it (subjects.level_sites: batch-first or time-first, padded to any count with any padding value, packed rows,
# items' rows one after another, a channel slice of a concatenation, attention weights as (N, heads, L)), and in
# the concatenation of every occurrence of one site (a loop over items or segments). A level is found where a
# tensor equals it on every real row within `MATCH_REL` of its magnitude; of those, the last one before anything
# computed from the level is recorded (its final form: an earlier tensor may equal it only by chance on one batch),
# a whole tensor before a slice of a later concatenation, a padded layout before rows whose count could fit by
# chance; the report names the first computing operation that produced it.
#
# A level found nowhere is itself evidence: the nearest tensor between the level's inputs and its consumers stands
# in for it (most real rows equal, then one computed by the module holding the level's weights, then one as long
# as the level, then the first), so the forward check measures how far the replica departs there. A level is left
# unrecorded (a warning: it cannot be compared) when nothing of a fitting shape stands for it, or when every level
# computed from it was found: then it is kept in a layout not known here, and it does not depart.

# A located tensor equals the level within 1e-4 of the level's largest magnitude on every real row: 100x the
# fixed minimum tolerance of the forward check (1e-6), so float32 reordering never hides a level, while any
# deviation the check reports as a mismatch at the 1e-4 level or above is not "found".
MATCH_REL = 1e-4
# operations that only move or re-lay values: where a level is recorded, not where it is computed
MOVES = frozenset({"_pack_padded_sequence", "_pad_packed_sequence", "index_select", "view", "reshape", "transpose",
                   "permute", "unsqueeze", "squeeze", "contiguous", "clone", "to", "__getitem__", "flatten",
                   "expand", "detach", "cpu", "float", "double", "narrow", "select", "stack", "pad_sequence",
                   "masked_select", "gather", "copy_", "__setitem__"})
# moves whose index is data (a batch sorted by length for packing): in the very module that computed a level
# (functional code), such a move is a consumer's, equal to the level only when the batch happens to be in order;
# a module holding the computing one may return through one (pad_packed_sequence restoring the batch order)
PADDED = ("batch_first", "time_first")
# what is computed from a level not found agrees with the original to float32 rounding (not merely within the
# locating tolerance): the level is then held in a layout not known here rather than computed differently
AGREES = 1e-5
REORDERS = frozenset({"index_select", "gather", "take", "take_along_dim"})
ATTENTION_INPUTS = {"attn.beat": ("note", "voice"), "attn.measure": ("beat",)}
ATTENTION_CONSUMER = {"attn.beat": "beat_nodes", "attn.measure": "measure_nodes", "attn.final": "pooled"}


@dataclass
class Candidate:
    """A tensor the candidate computed (or the concatenation of one site's occurrences)."""

    record: Recorded
    tensor: Tensor
    total: int
    concat: bool = False

    @property
    def index(self) -> int:
        return self.record.index


Groups = dict[tuple[int, ...], list[Candidate]]


def by_shape(pool: Sequence[Candidate]) -> Groups:
    """The pool grouped by tensor shape, each group in record order: a level's layouts depend on shapes only,
    so a search looks at the few shapes that fit rather than at every tensor."""
    out: Groups = {}
    for c in sorted(pool, key=lambda c: c.record.index):
        out.setdefault(tuple(c.tensor.shape), []).append(c)
    return out


def candidates(records: Sequence[Recorded], counts: Counts) -> list[Candidate]:
    """Every fresh recorded tensor, plus, per site that produced several, their concatenation when its rows
    add up to one of the batch's real row counts."""
    totals: dict[tuple, int] = {}
    groups: dict[tuple, list[Recorded]] = {}
    for r in records:
        key = (r.site, r.role)
        totals[key] = totals.get(key, 0) + 1
        groups.setdefault(key, []).append(r)
    out = [Candidate(r, r.tensor, totals[(r.site, r.role)]) for r in records if not r.stale]
    sizes = {counts.n} | {int(c.sum()) for c in counts.by_space.values()}
    for group in groups.values():
        if len(group) < 2 or any(r.stale for r in group):
            continue
        rows = sum(_rows(r.tensor) for r in group)
        if rows not in sizes:
            continue
        joined = concatenated([r.tensor for r in group])
        if joined is not None:
            out.append(Candidate(group[-1], joined, len(group), concat=True))
    return out


def _rows(t: Tensor) -> int:
    return int(as_rows(t).shape[0]) if t.dim() else 0


def space_of(name: str, variant_pool_input: str | None) -> str:
    if name == "attn.beat":
        return "note"
    if name == "attn.measure":
        return "beat"
    if name == "attn.final":
        return str(LEVEL_SPACE.get(variant_pool_input or "contracted", Space.NOTE))
    return str(LEVEL_SPACE.get(name, Space.POOLED))


def layouts_for(t: Tensor, ref: Tensor, space: str, counts: Counts, *, attention: bool) -> list[Layout]:
    """Layouts in which `t` could hold `ref` (shapes only; the channel offset is found by value later)."""
    out: list[Layout] = []
    n, channels = ref.shape[0], ref.shape[-1]
    squeeze = 0
    shape = list(t.shape)
    while len(shape) > 1 and shape[-1] == 1 and channels != 1:
        shape.pop()
        squeeze += 1
    transposes = (False, True) if attention and len(shape) >= 2 else (False,)
    for transpose in transposes:
        dims = shape[:-2] + [shape[-1], shape[-2]] if transpose else shape
        if dims[-1] < channels:
            continue
        if space == "pooled":
            if len(dims) == 2 and dims[0] == n:
                out.append(Layout("pooled", space, squeeze=squeeze, transpose=transpose))
            continue
        real = counts.get(space)
        if real is None:
            continue
        length, total = int(real.max()), int(real.sum())
        if len(dims) == 3:
            if dims[0] == n and dims[1] >= length:
                out.append(Layout("batch_first", space, squeeze=squeeze, transpose=transpose))
            if dims[1] == n and dims[0] >= length and (dims[0] != n or dims[1] != length):
                out.append(Layout("time_first", space, squeeze=squeeze, transpose=transpose))
        elif len(dims) == 2 and dims[0] == total:
            out.append(Layout("rows", space, squeeze=squeeze, transpose=transpose))
            if total != length or n > 1:
                out.append(Layout("packed", space, squeeze=squeeze, transpose=transpose))
    return out


def _real_rows(ref: Tensor, space: str, counts: Counts) -> Tensor | None:
    if ref.dim() < 3:
        return None
    real = counts.get(space)
    if real is None:
        return None
    return torch.arange(ref.shape[1]).unsqueeze(0) < real.unsqueeze(1)


@dataclass
class Score:
    error: float  # largest |difference| on real rows, relative to the level's largest magnitude
    matched_rows: float  # share of real rows within the matching tolerance

    @property
    def found(self) -> bool:
        return self.error <= MATCH_REL


def score(ref: Tensor, cand: Tensor, real: Tensor | None) -> Score | None:
    """How far `cand` is from the level on its real rows (in the level's own precision: the matching tolerance
    is 1e-4 relative, far above float32 rounding). Row maxima first, so nothing of the level's size is copied."""
    if cand.shape != ref.shape:
        return None
    a = ref.detach()
    row_error = (a - cand.detach().to(a.dtype)).abs_().amax(-1)
    row_size = a.abs().amax(-1)
    if real is not None:
        row_error, row_size = row_error[real], row_size[real]
    if row_error.numel() == 0:
        return None
    scale = float(row_size.max())
    worst = float(row_error.max())
    if worst != worst:  # NaN
        return Score(float("inf"), 0.0)
    tol = MATCH_REL * scale if scale > 0 else 1e-12
    return Score(worst / scale if scale > 0 else worst, float((row_error <= tol).float().mean()))


def probe_position(ref: Tensor, real: Tensor | None) -> tuple[int, int]:
    """(item, position) of a real row of the level with the largest magnitude (a row that identifies it)."""
    if real is None:
        return int(ref.abs().amax(-1).argmax()), 0
    magnitude = torch.where(real, ref.abs().amax(-1), ref.new_zeros(()))
    flat = int(magnitude.argmax())
    return flat // ref.shape[1], flat % ref.shape[1]


def offsets(row: Tensor, probe: Tensor, tol: float) -> list[int]:
    """Channel offsets at which `row` (a candidate's row, all channels) holds `probe` within `tol`: first the
    positions holding the probe's first value, then the whole window at those only."""
    channels = probe.shape[-1]
    if row.shape[-1] < channels:
        return []
    row, probe = row.detach(), probe.detach().to(row.dtype)
    starts = ((row[: row.shape[-1] - channels + 1] - probe[0]).abs() <= tol).nonzero().flatten()
    out = []
    for start in starts[:64].tolist():
        if float((row[start:start + channels] - probe).abs().max()) <= tol:
            out.append(int(start))
            if len(out) == 8:
                break
    return out


@dataclass
class Trial:
    candidate: Candidate
    layout: Layout
    score: Score
    exact_length: bool = True  # no cropping: the tensor is as long as the level (a padded layout only)

    def nearness(self, own: Set[str]) -> tuple:
        """How strongly a tensor that does not equal a level stands for it: it comes from the module holding the
        level's weights, some of its rows equal the level's, it needs no cropping, it comes first."""
        return (_within(self.candidate.record.site.module, own), self.score.matched_rows, self.exact_length,
                -self.candidate.record.index)


LayoutCache = dict[tuple, list[Layout]]


def trials(ref: Tensor, space: str, counts: Counts, pool: Sequence[Candidate] | Groups, *, attention: bool,
           exact: bool = True, cache: LayoutCache | None = None, after: int = -1, before: int | None = None
           ) -> list[Trial]:
    """Every (candidate, layout) in which the candidate can hold the level, scored, among the candidates recorded
    strictly between `after` and `before` (`pool`: a list, or its by_shape groups). With `exact`, only the ones
    whose row at the level's most telling position equals it (at any channel offset), the cheap test that keeps
    locating within a fraction of a forward; without, every fitting one at offset 0 (for the nearest)."""
    real = _real_rows(ref, space, counts)
    item, position = probe_position(ref, real)
    probe = ref[item, position] if ref.dim() == 3 else ref[item]
    tol = MATCH_REL * float(ref.abs().max()) if ref.numel() else 0.0
    out = []
    cache = {} if cache is None else cache
    groups = pool if isinstance(pool, dict) else by_shape(pool)
    ref_key = (tuple(ref.shape), space, attention)
    fitting_groups = []
    for shape, members in groups.items():
        key = (shape, *ref_key)
        fitting = cache.get(key)
        if fitting is None:  # loops give many tensors of few shapes: the shapes decide the layouts
            fitting = cache[key] = layouts_for(members[0].tensor, ref, space, counts, attention=attention)
        if fitting:
            fitting_groups.append((fitting, members))
    chosen = [(fitting, c) for fitting, members in fitting_groups for c in members
              if c.record.index > after and (before is None or c.record.index < before)]
    chosen.sort(key=lambda fc: fc[1].record.index)
    for fitting, cand in chosen:
        for layout in fitting:
            if exact:
                row = row_at(cand.tensor, layout, counts, item, position)
                starts = offsets(row, probe, max(tol, 1e-12)) if row is not None else []
            else:
                starts = [0] if prepare(cand.tensor, layout).shape[-1] == ref.shape[-1] else []
            for offset in starts:
                width = None if prepare(cand.tensor, layout).shape[-1] == ref.shape[-1] else ref.shape[-1]
                sliced = Layout(layout.kind, layout.space, offset, width, layout.squeeze, layout.transpose)
                whole = to_canonical(cand.tensor, sliced, counts)
                if whole is None or whole.shape != ref.shape:
                    continue
                got = score(ref, whole, real)
                if got is not None and (got.found or not exact):
                    out.append(Trial(cand, sliced, got, _uncropped(cand.tensor, layout, ref)))
    return out


def _uncropped(t: Tensor, layout: Layout, ref: Tensor) -> bool:
    if layout.kind not in ("batch_first", "time_first") or ref.dim() < 3:
        return True
    view = prepare(t, layout)
    return int(view.shape[1 if layout.kind == "batch_first" else 0]) == int(ref.shape[1])


def _site(name: str, trial: Trial, origin: Trial | None = None) -> LevelSite:
    c = trial.candidate
    computed = origin.candidate.record if origin is not None and origin is not trial else None
    return LevelSite(name, c.record.site, c.record.role, c.record.occurrence, c.total, c.concat, trial.layout,
                     trial.score.found, trial.score.error, trial.score.matched_rows,
                     computed.site if computed is not None else None,
                     computed.role if computed is not None else "")


def level_modules(weight_map: WeightMap) -> dict[str, set[str]]:
    """Level -> the candidate modules holding the weights of the reference modules that compute it."""
    out: dict[str, set[str]] = {}
    for r, c in weight_map.pairs.items():
        if r in weight_map.loose:  # a loose parameter's holder (the model's root) holds every level
            continue
        out.setdefault(level_of(r), set()).add(c.rsplit(".", 1)[0] if "." in c else "")
    return out


def _within(module: str, roots: Set[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _holds(outer: str, inner: str) -> bool:
    """Whether module `outer` is `inner` or holds it ('' is the model itself)."""
    return outer == "" or inner == outer or inner.startswith(outer + ".")


def _weights_like(t: Tensor) -> bool:
    """Whether a tensor could hold attention weights: every value in [0, 1] (a softmax over any axis)."""
    if not t.is_floating_point() or t.numel() == 0:
        return False
    return bool(float(t.min()) >= 0.0 and float(t.max()) <= 1.0 + 1e-6)


def _handed_on(best: Trial, origin: Trial, pool: Sequence[Candidate], before: int, ref: Tensor, space: str,
               counts: Counts, attention: bool, cache: LayoutCache) -> Trial:
    """A level found only as packed (time-major) rows is handed on padded: the last padded tensor the module computing it (or
    one holding it, not the model itself) produces afterwards is its final form, equal or not (packed rows keep
    their own order, so a padded result in another item order equals the level only as packed rows)."""
    module = origin.candidate.record.site.module
    after = best.candidate.record.index
    later = [c for c in pool if after < c.record.index < before and c.record.site.module
             and _holds(c.record.site.module, module)]
    padded = [t for t in trials(ref, space, counts, later, attention=attention, exact=False, cache=cache)
              if t.layout.kind in ("batch_first", "time_first")]
    return max(padded, key=lambda t: t.candidate.record.index) if padded else best


def _bound(trial: Trial) -> int:
    """The record index a level computed from this one must come after: this record's, or the one before it
    when the level is a channel slice of a concatenation (the concatenation may itself be the later level, e.g.
    the spanned beats inside `total_note_cat`)."""
    index = trial.candidate.record.index
    return index - 1 if trial.layout.width is not None else index


def _graph_inputs(name: str, graph: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    if name == "attn.final":  # the head's attention weights are computed from the pooling's input
        return tuple(graph.get("pooled", ()))
    return tuple(ATTENTION_INPUTS.get(name, graph.get(name, ())))


def locate(reference_levels: Mapping[str, Tensor], reference_attention: Mapping[str, Tensor],
           records: Sequence[Recorded], counts: Counts, graph: Mapping[str, Sequence[str]],
           skip: Set[str] = frozenset(), modules: Mapping[str, Set[str]] | None = None,
           exact_only: bool = False) -> dict[str, LevelSite]:
    """Each reference level (and attention map) -> where it is in the candidate's recording (see the module
    docstring); levels with no tensor of a fitting shape are left out. `graph` is level -> input levels;
    `modules` is level -> the candidate modules paired with the reference modules that compute it (where the
    nearest tensor of a level found nowhere is looked for first)."""
    pool = candidates(records, counts)
    pool.sort(key=lambda c: c.record.index)
    groups = by_shape(pool)
    names = [n for n in LEVELS if n in reference_levels and n != "logits" and n not in skip]
    names += [n for n in ATTENTIONS if n in reference_attention and n not in skip]
    names.sort(key=level_order)
    pool_input = next((d for d in graph.get("pooled", ()) if d in LEVELS), None)
    consumers = {n: [m for m in names if n in _graph_inputs(m, graph)] for n in names}
    for name in ATTENTIONS:
        if name in consumers and ATTENTION_CONSUMER[name] in names:
            consumers[name] = [ATTENTION_CONSUMER[name]]
    hits: dict[str, list[Trial]] = {}
    earliest: dict[str, int] = {}
    bound: dict[str, int] = {}  # a level computed from this one comes after this record index
    cache: LayoutCache = {}
    for name in names:
        ref = reference_levels.get(name, reference_attention.get(name))
        after = max((bound[d] for d in _graph_inputs(name, graph) if d in bound), default=-1)
        found_here = trials(ref, space_of(name, pool_input), counts, groups, attention=name in ATTENTIONS,
                            cache=cache, after=after)
        if found_here:
            hits[name] = found_here
            first = min(found_here, key=lambda t: (t.candidate.record.index, t.layout.width is None))
            earliest[name] = first.candidate.record.index
            bound[name] = _bound(first)
    found: dict[str, LevelSite] = {}
    position: dict[str, int] = {}
    settled: dict[str, int] = {}  # as `bound`, for the final forms
    for name in names:
        if name not in hits:
            continue
        # the level's final form: the last tensor equal to it before anything computed from it (an earlier one
        # may equal it only by chance on this batch, e.g. a gather before the mask that zeroes some rows),
        # a whole tensor rather than a slice of a later concatenation
        after = max((position[d] for d in _graph_inputs(name, graph) if d in position), default=-1)
        before = min((earliest[m] for m in consumers.get(name, []) if m in earliest), default=len(records) + 1)
        if name not in ATTENTIONS:  # an input that exists only as a slice of this level's concatenation
            after = max((settled[d] for d in _graph_inputs(name, graph) if d in settled), default=after)
        usable = [t for t in hits[name] if after < t.candidate.record.index < before]
        if not any(t.layout.kind in PADDED for t in usable):
            # a slice of the consumer's own concatenation, when the level has no padded form of its own before
            # it (the spanned levels inside total_note_cat)
            usable += [t for t in hits[name] if t.candidate.record.index == before and t.layout.width is not None]
        usable = usable or hits[name]
        computing = [t for t in usable if t.candidate.record.site.op not in MOVES] or usable
        origin = min(computing, key=lambda t: t.candidate.record.index)
        # a final form is one the computing module hands on: recorded in that module or one holding it, never
        # inside a consumer (packing sorts the batch by length, which equals the level only when the locating
        # batch happens to be in order)
        own = origin.candidate.record.site.module
        handed = [t for t in usable if _holds(t.candidate.record.site.module, own)
                  and not (t.candidate.record.site.op in REORDERS and t.candidate.record.site.module == own
                           and t is not origin)]
        # a padded form (even a slice of a concatenation) before rows gathered from a loop: a loop's rows are as
        # many as that loop wrote, which equals the level's real rows on this batch but not on every batch
        best = max(handed or usable, key=lambda t: (t.layout.kind in PADDED, t.layout.width is None,
                                                    -KINDS.index(t.layout.kind), t.candidate.record.index))
        if best.layout.kind == "packed" and name not in ATTENTIONS:
            best = _handed_on(best, origin, pool, before, reference_levels.get(name, reference_attention.get(name)),
                              space_of(name, pool_input), counts,
                              name in ATTENTIONS, cache)
        found[name] = _site(name, best, origin)
        position[name] = best.candidate.record.index
        settled[name] = _bound(best)
    exact = dict(position)
    for name in names:
        if name in found or exact_only:
            continue
        if consumers.get(name) and all(m in exact and found[m].error <= AGREES for m in consumers[name]):
            continue  # what is computed from it equals the reference: a layout not known here, not a departure
        ref = reference_levels.get(name, reference_attention.get(name))
        # after the latest level it is computed from, directly or through levels not found themselves
        after = max((settled[d] for d in _ancestors(name, graph) if d in settled), default=-1)
        before = min((exact[m] for m in consumers.get(name, []) if m in exact), default=len(records) + 1)
        paired = (modules or {}).get(name, set())
        near = trials(ref, space_of(name, pool_input), counts, groups, attention=name in ATTENTIONS, exact=False,
                      cache=cache, after=after, before=before)
        if near:
            if name in ATTENTIONS:  # an attention map stands for one where the weights are (values in [0, 1])
                best = max(near, key=lambda t: (_weights_like(t.candidate.tensor), *t.nearness(paired)))
            else:
                best = max(near, key=lambda t: t.nearness(paired))
            found[name] = _site(name, best)
            position[name] = best.candidate.record.index
            settled[name] = _bound(best)
    return found


def _ancestors(name: str, graph: Mapping[str, Sequence[str]]) -> set[str]:
    """Every level `name` is computed from, through the graph (its inputs, their inputs, ...)."""
    out: set[str] = set()
    todo = list(_graph_inputs(name, graph))
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo.extend(_graph_inputs(d, graph))
    return out
