"""Finding a value in a trace: which recorded tensor equals a given one, allowing another layout.

Two sides compute the same thing in different layouts (batch-first or not, heads split by `view` or by
`split` + `stack`), so a value is looked up first element by element in the same shape, then as a multiset
(the same numbers in any order). Relative tolerance: a single operation on identical inputs rounds to about
1e-7 of its scale in float32; `REL` leaves room for a few of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

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
