"""The first divergent operation and the relation at it, on two tiny models that differ in one operation."""

from __future__ import annotations

import torch
from torch import nn

from percepiano_parity.compare.first_op import first_divergent, match_trace, tracing
from percepiano_parity.compare.relations.operations import operation_relations


class Scores(nn.Module):
    def __init__(self, variant: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(6, 6)
        self.context = nn.Parameter(torch.randn(6))
        self.variant = variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        if self.variant != "no_tanh":
            h = torch.tanh(h)
        s = h @ self.context
        if self.variant == "scaled":
            s = s / 2.0
        return torch.softmax(s, dim=0 if self.variant == "dim0" else 1)


def _relations(variant: str):
    x = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(1))
    ref, cand = Scores("faithful"), Scores(variant)
    with torch.no_grad(), tracing(ref) as rt:
        ref_value = ref(x)
    with torch.no_grad(), tracing(cand) as ct:
        cand_value = cand(x)
    known = [x, *cand.parameters()]
    matched = match_trace(rt, ct, known)
    div = first_divergent(rt, ct, known, matched)
    if div is None:
        return None, []
    # the relation holds when, replayed to the end, the candidate's output is the original's
    return div, operation_relations("pooled", div, rt, ct, matched[0], 1e-5, cand_value, ref_value)


def test_missing_tanh_found_at_the_matmul_that_consumes_the_projection():
    div, relations = _relations("no_tanh")
    assert div is not None and div.op.name == "matmul"
    best = relations[0]
    assert best.kind == "missing_op" and best.holds and "torch.tanh" in best.summary
    assert best.fix["action"] == "patch_op_input" and best.fix["apply"] == "tanh"


def test_softmax_over_another_dim_is_a_different_argument():
    div, relations = _relations("dim0")
    assert div is not None and div.op.name == "softmax"
    best = relations[0]
    assert best.kind == "different_arguments" and best.holds
    assert best.details["original"] == {"dim": 1}


def test_an_extra_scaling_is_named():
    div, relations = _relations("scaled")
    assert div is not None and div.op.name in ("div", "__truediv__", "true_divide")
    assert any(r.kind == "extra_op" and r.holds for r in relations)


def test_identical_models_have_no_divergent_operation():
    div, _ = _relations("faithful")
    assert div is None
