"""Parameters set on a container (a loose attention query on the model's root) are paired one by one with the
original's, by shape and the order of their first use; a never-read one pairs with the original's never-used
one; the pairs are renames, not a missing plus an extra parameter."""

from __future__ import annotations

import copy

import torch
from torch import nn

from percepiano_parity.compare.structure import trace_calls
from percepiano_parity.compare.weight_mapping import (
    WeightMap,
    copy_weights,
    map_weights,
    renames,
    settle_by_values,
)


class Attention(nn.Module):
    """Like the original's: a projection submodule and a context vector held beside it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.attention_net = nn.Linear(size, size)
        self.context_vector = nn.Parameter(torch.randn(2, size // 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.attention_net(x)).view(*x.shape[:-1], 2, -1)
        w = torch.softmax((h * self.context_vector.squeeze(-1)).sum(-1), dim=1)
        return (x.view(*x.shape[:-1], 2, -1) * w.unsqueeze(-1)).sum(1).flatten(1)


class Original(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = Attention(8)
        self.unused = Attention(8)  # built, never called (the original's performance encoder)
        self.second = Attention(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x).unsqueeze(1).expand(-1, 3, -1))


class Flat(nn.Module):
    """Loose queries on the root, registered in another order than they are used."""

    def __init__(self) -> None:
        super().__init__()
        self.proj_a = nn.Linear(8, 8)
        self.proj_b = nn.Linear(8, 8)
        self.spare = nn.Linear(8, 8)
        self.q_late = nn.Parameter(torch.randn(2, 4, 1))
        self.q_never = nn.Parameter(torch.randn(2, 4, 1))
        self.q_early = nn.Parameter(torch.randn(2, 4, 1))

    def pool(self, x: torch.Tensor, proj: nn.Linear, q: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(proj(x)).view(*x.shape[:-1], 2, -1)
        w = torch.softmax((h * q[..., 0]).sum(-1), dim=1)
        return (x.view(*x.shape[:-1], 2, -1) * w.unsqueeze(-1)).sum(1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.pool(x, self.proj_a, self.q_early)
        return self.pool(first.unsqueeze(1).expand(-1, 3, -1), self.proj_b, self.q_late)


def pairing(original: nn.Module, flat: nn.Module, x: torch.Tensor) -> WeightMap:
    """As the engine pairs: names, shapes and first use, then values where first use and names disagree."""
    orders = (trace_calls(original, lambda: original(x), parameters=True),
              trace_calls(flat, lambda: flat(x), parameters=True))

    def build(choices):
        return map_weights(original, flat, reference_order=orders[0], candidate_order=orders[1], choices=choices)

    def trial(weights: WeightMap) -> tuple[int, float, float]:
        scratch = copy.deepcopy(flat)
        copy_weights(original, scratch, weights)
        with torch.no_grad():
            return 0, float((scratch(x) - original(x)).abs().max()), float(original(x).abs().max())

    return settle_by_values(build({}), build, trial)


def test_loose_queries_pair_by_first_use_and_the_unused_one_with_the_unused_one():
    torch.manual_seed(0)
    original, flat = Original(), Flat()
    x = torch.randn(2, 5, 8)
    weights = pairing(original, flat, x)
    by_order = next(g for g in weights.undecided if "first.context_vector" in g.reference).by_order
    assert by_order == {"first.context_vector": "q_early", "second.context_vector": "q_late",
                        "unused.context_vector": "q_never"}
    assert weights.pairs["first.context_vector"] == "q_early"
    assert weights.pairs["second.context_vector"] == "q_late"
    assert weights.pairs["unused.context_vector"] == "q_never"
    assert not weights.unmatched_reference and not weights.unmatched_candidate
    listed = {(r["original"], r["replica"]) for r in renames(weights)}
    assert ("first.context_vector", "q_early") in listed
    assert ("first", "(model)") not in listed  # a loose pair is a parameter rename, not a module one


def test_with_copied_weights_the_flat_model_computes_the_original():
    torch.manual_seed(1)
    original, flat = Original(), Flat()
    x = torch.randn(2, 5, 8)
    copy_weights(original, flat, pairing(original, flat, x))
    with torch.no_grad():
        assert torch.allclose(original(x), flat(x), atol=1e-6)


class FlatSqueezed(Flat):
    """The same queries kept as (heads, d), without the original's trailing 1."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("q_late", "q_never", "q_early"):
            setattr(self, name, nn.Parameter(getattr(self, name).detach()[..., 0].clone()))

    def pool(self, x: torch.Tensor, proj: nn.Linear, q: torch.Tensor) -> torch.Tensor:
        return super().pool(x, proj, q.unsqueeze(-1))


def test_a_query_without_the_trailing_1_pairs_and_takes_the_original_values():
    torch.manual_seed(2)
    original, flat = Original(), FlatSqueezed()
    x = torch.randn(2, 5, 8)
    weights = pairing(original, flat, x)
    assert weights.pairs["first.context_vector"] == "q_early" and not weights.shape_conflicts
    copy_weights(original, flat, weights)
    with torch.no_grad():
        assert torch.allclose(original(x), flat(x), atol=1e-6)
