"""The first operation of the candidate whose value the original never produces, and its counterpart there.

Given the original's trace (its forward on a diagnosis batch) and the candidate's trace (the root level run on
the original's own inputs, or its forward), every candidate operation is looked up by value in the original's
trace (`value_match`). The first divergent operation is the first one that computes new values (not a layout
or selection operation), is found nowhere in the original's trace, and none of whose descendants is found
either (so a different but equivalent order of computation is not a divergence). Its counterpart is the
original's operation that consumes the same values: what the original does at that point instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import Tensor

from percepiano_parity.compare.op_trace import Op, Trace
from percepiano_parity.compare.value_match import Match, ValueIndex


@dataclass
class Divergence:
    op: Op  # the candidate's first divergent operation
    input_matches: dict[int, tuple[int, Match]] = field(default_factory=dict)  # input position -> (ref op, match)
    counterparts: list[Op] = field(default_factory=list)  # the original's ops consuming the same values
    compared: int = 0  # candidate operations looked up before it
    nearest: Match | None = None  # the original's value closest to its output


@dataclass
class TraceMatch:
    """Which candidate operations were found in the original's trace."""

    matched: dict[int, Match] = field(default_factory=dict)  # candidate op index -> match in the original
    known_ids: set[int] = field(default_factory=set)  # ids of candidate tensors with known values


def _consumers(trace: Trace) -> dict[int, list[Op]]:
    """Output id of an op -> later ops that take it as an input."""
    by_input: dict[int, list[Op]] = defaultdict(list)
    for op in trace.ops:
        for tid in op.input_ids:
            if tid is not None:
                by_input[tid].append(op)
    return by_input


# operations that read only their input's shape, dtype or device: no value flows through them
SHAPE_ONLY = frozenset({"new_zeros", "new_ones", "new_empty", "new_full", "zeros_like", "ones_like", "empty_like",
                        "full_like", "new_tensor"})


def _descendants(trace: Trace, start: Op) -> set[int]:
    consumers = _consumers(trace)
    seen: set[int] = set()
    frontier = [start]
    while frontier:
        op = frontier.pop()
        for nxt in consumers.get(op.output_id, ()) if op.output_id is not None else ():
            if nxt.index not in seen and nxt.index > op.index and nxt.name not in SHAPE_ONLY:
                seen.add(nxt.index)
                frontier.append(nxt)
    return seen


def _computing_consumers(op: Op, consumers: dict[int, list[Op]], depth: int = 6) -> list[Op]:
    """The first computing operations that take `op`'s value, looking through layout operations (a `view`
    before a softmax), nearest first."""
    out: list[Op] = []
    frontier, seen = [op], {op.index}
    for _ in range(depth):
        nxt: list[Op] = []
        for o in frontier:
            for c in consumers.get(o.output_id, ()) if o.output_id is not None else ():
                if c.index in seen:
                    continue
                seen.add(c.index)
                if c.computes:
                    out.append(c)
                else:
                    nxt.append(c)
        if not nxt:
            break
        frontier = nxt
    return sorted(out, key=lambda c: c.index)


def match_trace(reference: Trace, candidate: Trace, known: Iterable[Tensor]) -> tuple[ValueIndex, TraceMatch]:
    """Look every candidate output up in the original's trace; `known` are tensors whose values are given (the
    level's inputs, the parameters)."""
    index = ValueIndex((op.index, op.output) for op in reference.ops if op.output is not None)
    result = TraceMatch(known_ids={id(t) for t in known})
    for op in candidate.ops:
        out = op.output
        if out is None:
            continue
        if not out.is_floating_point():
            result.known_ids.add(op.output_id)
            continue
        found = index.find(out)
        if found and op.name not in SHAPE_ONLY and bool((out != out.flatten()[0]).any()):
            result.matched[op.index] = found[0]  # a constant (all zeros, say) matches anything: not evidence
            result.known_ids.add(op.output_id)
        elif found:
            result.known_ids.add(op.output_id)
        elif not op.computes and all(i is None or i in result.known_ids for i in op.input_ids):
            result.known_ids.add(op.output_id)  # a rearrangement or selection of known values
    return index, result


def first_divergent(reference: Trace, candidate: Trace, known: Iterable[Tensor],
                    matched: tuple[ValueIndex, TraceMatch] | None = None) -> Divergence | None:
    """The candidate's first divergent operation (see the module docstring), or None when every computing
    operation's value is found in the original's trace. `matched`: match_trace's result, when already made."""
    index, tm = matched if matched is not None else match_trace(reference, candidate, known)
    ref_by_index = {op.index: op for op in reference.ops}
    ref_consumers = _consumers(reference)
    for op in candidate.ops:
        if op.output is None or not op.output.is_floating_point() or op.index in tm.matched or not op.computes:
            continue
        if op.output.numel() < 2:
            continue
        if any(i is not None and i not in tm.known_ids for i in op.input_ids):
            continue  # downstream of something already unknown: not the first
        if _descendants(candidate, op) & set(tm.matched):
            continue  # an intermediate the original never materialises, but the result agrees
        div = Divergence(op, compared=op.index, nearest=index.nearest(op.output))
        for pos, t in enumerate(op.inputs):
            if t is None or not t.is_floating_point():
                continue
            found = index.find(t)
            if found:
                div.input_matches[pos] = (found[0].key, found[0])
                for consumer in _computing_consumers(ref_by_index[found[0].key], ref_consumers):
                    if consumer not in div.counterparts:
                        div.counterparts.append(consumer)
        return div
    return None
