"""The relation search at one root-cause level: every relation test (randomness in eval first), and which
holds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.compare.first_op import Trace, first_divergent, match_trace, tracing
from percepiano_parity.compare.locate import relative_residual
from percepiano_parity.compare.relations import layout, operations, padding, softmax
from percepiano_parity.compare.relations.result import Relation
from percepiano_parity.compare.structure import level_of

# ----------------------------------------------------------------------------------------------------------
# Randomness in eval: two identical eval-mode forwards of the candidate that give different outputs.
#
# The operation that draws the randomness is the first whose output differs between the two traces (same
# position, same function); for a dropout its zeroed share estimates the rate (p = zeros / elements).


def random_in_eval(level: str, run: Callable[[], Any], logits_of: Callable[[Any], torch.Tensor],
                   model: torch.nn.Module | None = None, outputs: tuple[Any, Any] | None = None) -> Relation | None:
    """None when two eval forwards agree bit for bit; else where the randomness comes from. `outputs`: two
    forwards already made."""
    with torch.no_grad():
        first, second = (logits_of(o) for o in outputs) if outputs is not None else (logits_of(run()),
                                                                                     logits_of(run()))
    if torch.equal(first, second):
        return None
    baseline = relative_residual(first, second)
    with torch.no_grad(), tracing(model, max_bytes=1 << 28) as t1:
        run()
    with torch.no_grad(), tracing(model, max_bytes=1 << 28) as t2:
        run()
    rel = Relation("random_in_eval", level, True, 0.0, baseline)
    for a, b in zip(t1.ops, t2.ops, strict=False):
        if a.name != b.name or a.output is None or b.output is None or a.output.shape != b.output.shape:
            continue
        if a.output.is_floating_point() and not torch.equal(a.output, b.output):
            zeros = float((a.output == 0).double().mean())
            rate = f", zeroing {zeros:.0%} of its output" if "dropout" in a.name else ""
            training = a.constants.get("training")
            rel.op, rel.op_site = a.label(), a.site
            rel.summary = (f"two identical eval-mode calls give different outputs (logits differ by {baseline:.3g} "
                           f"relative): {a.qualname} draws random numbers in eval"
                           + (f" (training={training!r})" if training is not None else "") + rate)
            rel.details = {"function": a.qualname, "zeroed_share": zeros, "constants": dict(a.constants)}
            rel.fix = {"action": "eval_randomness_off", "site": a.site, "name": a.name, "module": a.module}
            return rel
    rel.summary = (f"two identical eval-mode calls give different outputs (logits differ by {baseline:.3g} "
                   "relative); the operation that draws the randomness could not be named")
    return rel


# ----------------------------------------------------------------------------------------------------------
# The relation search at one root-cause level: every relation test, and which holds.
#
# Order: randomness first (if two identical eval calls of the candidate disagree, no other measurement means
# anything); then, with the level computed from the original's own inputs, the layout relations (feature
# columns, batch items, time), the attention-map relations (normalisation axis, temperature), the relations at
# the first divergent operation (an operation's arguments, an operation missing, extra or replaced) and the
# LSTM gate order. The result is plain data: what was tested, each residual, the relations that hold.

ATTENTION_OF = {"beat_nodes": "attn.beat", "measure_nodes": "attn.measure", "pooled": "attn.final"}
MIN_TOL = 1e-5  # a relation holds when its residual is at most max(MIN_TOL, FLOOR_MULTIPLE x the level's floor)
FLOOR_MULTIPLE = 20
TRACE_BYTES = 1 << 30
DIAGNOSIS_ITEMS = 3


def _lengths(batch: CanonicalBatch) -> Tensor:
    return torch.tensor(batch.lengths)


def diagnosis_batch(batch: CanonicalBatch, items: int = DIAGNOSIS_ITEMS) -> CanonicalBatch:
    """At most `items` segments of the batch, the longest, the shortest and those between, in batch order: relation
    tests run many forwards and trace every operation, and a few items of unequal lengths show every layout."""
    if len(batch) <= items:
        return batch
    order = sorted(range(len(batch)), key=lambda i: batch.lengths[i])
    picks = {order[-1], order[0]}
    step = max(1, len(order) // items)
    for i in order[::step]:
        if len(picks) >= items:
            break
        picks.add(i)
    return CanonicalBatch(tuple(batch.segments[i] for i in sorted(picks)), batch.tags)


def _level_owner_modules(weight_map: Any, level: str) -> set[str]:
    """The candidate's modules holding the parameters the original's level owns."""
    out = set()
    for ref_name, cand_name in weight_map.pairs.items():
        if level_of(ref_name) == level:
            out.add(cand_name.rsplit(".", 1)[0] if "." in cand_name else "")
    return out


def search(level: str, reference: Any, candidate: Any, batch: CanonicalBatch, weight_map: Any,
           floor_rel: float, *, teacher_forced: bool) -> dict[str, Any]:
    """All relation tests at `level` on `batch` (see the module docstring); JSON-able."""
    tol = max(MIN_TOL, FLOOR_MULTIPLE * floor_rel)
    out: dict[str, Any] = {"level": level, "tolerance": tol, "tested": [], "holds": []}
    bundle = callable(getattr(reference, "structure", None))  # a recorded bundle replays its own batches only
    if not bundle:
        small = diagnosis_batch(batch)
        if small is not batch and _differs(level, reference, candidate, small, tol, teacher_forced):
            batch = small
    out["items"] = len(batch)
    model = getattr(candidate, "model", None)
    twice = (candidate.run(batch, grads=False), candidate.run(batch, grads=False))
    noise = random_in_eval(level, lambda: candidate.run(batch, grads=False),
                                      lambda taps: taps.levels["logits"], model, outputs=twice)
    if noise is not None:
        out["tested"].append(_row(noise))
        out["holds"].append(noise.to_dict())
        return out
    cand_taps = twice[1]
    ref_trace: Trace | None = None
    if bundle:
        ref_taps = reference.run(batch, grads=False)
    else:
        with torch.no_grad(), tracing(reference.model, max_bytes=TRACE_BYTES) as ref_trace:
            ref_taps = reference.run(batch, grads=False)
    ref_value = ref_taps.levels.get(level)
    if ref_value is None:
        out["note"] = f"the original does not record level {level}"
        return out
    deps = tuple(candidate.level_inputs(level)) if teacher_forced else ()
    inputs = {d: ref_taps.levels[d] for d in deps if d in ref_taps.levels}
    forced = teacher_forced and len(inputs) == len(deps)
    with torch.no_grad(), tracing(model, max_bytes=TRACE_BYTES) as cand_trace:
        cand_value = (candidate.run_level(level, inputs, batch).float() if forced
                      else candidate.run(batch, grads=False).levels.get(level))
    if cand_value is None:
        out["note"] = f"the replica's level {level} could not be computed"
        return out
    out["baseline"] = _num(relative_residual(ref_value, cand_value) if ref_value.shape == cand_value.shape
                           else math.inf)
    lengths = _lengths(batch)
    ref32 = ref_value.float()
    relations: list[Relation] = [layout.feature_permutation(level, ref32, cand_value, tol),
                                 layout.item_permutation(level, ref32, cand_value, tol, lengths),
                                 layout.time_reversal(level, ref32, cand_value, tol, lengths)]
    if not forced:  # computed from the replica's own inputs: a difference may enter through padding rows
        relations += _padding_relations(level, ref_taps, cand_taps, candidate, batch, lengths, tol)
    out["teacher_forced"] = forced
    amap = ATTENTION_OF.get(level)
    if amap and amap in ref_taps.attention and amap in cand_taps.attention:
        r, c = ref_taps.attention[amap], cand_taps.attention[amap]
        if r.shape != c.shape or relative_residual(r, c) > tol:  # a map that agrees explains nothing here
            relations += [softmax.normalisation_axis(level, r, c, tol), softmax.temperature(level, r, c, tol)]
    if ref_trace is None:
        out["op_note"] = "a recorded reference: the original's operations inside a level are not in the bundle"
    else:
        relations += _operation_relations(level, ref_trace, cand_trace, inputs, model, tol, out, cand_value,
                                          ref32)
    if forced:
        names = layout.lstm_like(model, _level_owner_modules(weight_map, level))
        if names:
            relations += _gate_relations(level, reference, candidate, batch, names, tol)
    where = _level_module(candidate, level)
    site = None if where else _level_site(candidate, level)
    for r in relations:
        if r.fix is not None and r.fix.get("action") in LEVEL_FIXES and where:
            r.fix["level_module"] = where
        elif r.fix is not None and r.fix.get("action") in LEVEL_FIXES and site:
            r.fix["level_site"] = site
    relations.sort(key=_rank)
    out["tested"] = [_row(r) for r in relations]
    out["holds"] = [r.to_dict() for r in relations if r.holds]
    closest = next((r for r in relations if math.isfinite(r.residual)), None)
    if closest is not None and not closest.holds:
        out["closest"] = closest.to_dict()
    return out


# Among relations that hold, the one that says most about the mistake comes first (a softmax over another axis
# is also "softmax called with another dim"; a temperature is also "an extra division"); the others stay as
# evidence. Relations that do not hold are ordered by their residual.
PREFERENCE = ("random_in_eval", "padding_rows", "lstm_gate_order", "normalisation_axis", "softmax_temperature", "feature_permutation",
              "item_permutation", "time_reversal", "missing_op", "extra_op", "different_op", "different_arguments")


def _rank(r: Relation) -> tuple[bool, float, float]:
    order = PREFERENCE.index(r.kind) if r.kind in PREFERENCE else len(PREFERENCE)
    return (not r.holds, order if r.holds else 0.0, r.residual)


LEVEL_FIXES = ("permute_level_output", "reorder_level_items", "reverse_level_time")


def _level_module(candidate: Any, level: str) -> str | None:
    """Where a user's adapter says the level is produced ("module.path" or "module.path:input"), if it says."""
    levels = getattr(getattr(candidate, "adapter", None), "levels", None) or {}
    where = levels.get(level) if hasattr(levels, "get") else None
    return str(where) if where else None


def _level_site(candidate: Any, level: str) -> dict[str, Any] | None:
    """Where the level was found by value in a user's forward (compare.locate): the operation and its call site,
    for a fix that undoes a layout change right there."""
    found = (getattr(candidate, "sites", None) or {}).get(level)
    if found is None or found.role != "output" or found.concat:
        return None
    layout = found.layout
    return {"op": found.site.op, "where": found.site.where, "layout": layout.kind,
            "whole": layout.width is None and not layout.offset and not layout.squeeze and not layout.transpose}


def _padding_relations(level: str, ref_taps: Any, cand_taps: Any, candidate: Any, batch: CanonicalBatch,
                       lengths: Tensor, tol: float) -> list[Relation]:
    def site_of(name: str) -> dict[str, Any] | None:
        found = (getattr(candidate, "sites", None) or {}).get(name)
        if found is None or found.role != "output" or found.concat or \
                found.layout.kind not in ("batch_first", "time_first") or found.layout.squeeze or found.layout.transpose:
            return None
        return {"op": found.site.op, "where": found.site.where, "layout": found.layout.kind,
                "offset": found.layout.offset, "width": found.layout.width}

    def rerun(targets: Any) -> tuple[Tensor | None, int]:
        own = candidate.model
        scratch = copy.deepcopy(own)
        mode = padding.install_zero_padding(scratch, targets, lengths)
        if mode is None:
            return None, 0
        candidate.model = scratch
        try:
            with torch.no_grad():
                return candidate.run(batch, grads=False).levels.get(level), mode.applied
        finally:
            candidate.model = own

    return padding.padding_relations(level, ref_taps.levels, cand_taps.levels, lengths, tol, site_of, rerun,
                                     ", ".join(batch.tags))


def _gate_relations(level: str, reference: Any, candidate: Any, batch: CanonicalBatch, names: list[str],
                    tol: float) -> list[Relation]:
    """The gate-order search on the two shortest items (24 runs of the level; the order does not depend on
    length, and a hand-written cell's cost does)."""
    short = batch
    if not callable(getattr(reference, "structure", None)):  # a recorded bundle replays its own batches only
        order = sorted(range(len(batch)), key=lambda i: batch.lengths[i])[:2]
        short = CanonicalBatch(tuple(batch.segments[i] for i in sorted(order)), batch.tags)
    ref_levels = reference.run(short, grads=False).levels
    deps = tuple(candidate.level_inputs(level))
    if level not in ref_levels or any(d not in ref_levels for d in deps):
        return []
    inputs = {d: ref_levels[d] for d in deps}

    def run() -> Tensor:
        return candidate.run_level(level, inputs, short).float()
    return [layout.gate_order(level, candidate.model, name, ref_levels[level].float(), run, tol) for name in names]


def _differs(level: str, reference: Any, candidate: Any, batch: CanonicalBatch, tol: float,
             teacher_forced: bool) -> bool:
    """Whether the level still differs on this (smaller) batch, so relations measured on it mean something."""
    try:
        ref_taps = reference.run(batch, grads=False)
        ref = ref_taps.levels.get(level)
        deps = tuple(candidate.level_inputs(level)) if teacher_forced else ()
        if teacher_forced and all(d in ref_taps.levels for d in deps):
            cand = candidate.run_level(level, {d: ref_taps.levels[d] for d in deps}, batch)
        else:
            cand = candidate.run(batch, grads=False).levels.get(level)
    except Exception:  # noqa: BLE001 - the full batch is used instead
        return False
    return ref is not None and cand is not None and (ref.shape != cand.shape or relative_residual(ref, cand) > tol)


def _operation_relations(level: str, ref_trace: Trace, cand_trace: Trace, inputs: dict[str, Tensor], model: Any,
                         tol: float, out: dict[str, Any], cand_value: Tensor, ref_value: Tensor) -> list[Relation]:
    known = list(inputs.values()) + ([p for p in model.parameters()] if model is not None else [])
    matched = match_trace(ref_trace, cand_trace, known)
    div = first_divergent(ref_trace, cand_trace, known, matched)
    if div is None:
        out["op_note"] = ("every operation of the level computes values the original also computes; the "
                          "difference is in how they are arranged")
        return []
    out["first_op"] = {"op": div.op.label(), "site": div.op.site, "module": div.op.module,
                       "counterparts": [q.label() for q in div.counterparts[:4]],
                       "nearest_residual": _num(div.nearest.residual) if div.nearest else None,
                       "compared": div.compared}
    return operations.operation_relations(level, div, ref_trace, cand_trace, matched[0], tol, cand_value, ref_value)


def _row(r: Relation) -> dict[str, Any]:
    return {"kind": r.kind, "holds": r.holds, "residual": _num(r.residual), "summary": r.summary}


def _num(x: float) -> float | str:
    return float(f"{x:.3g}") if math.isfinite(x) else str(x)
