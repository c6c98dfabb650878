"""The replica equals the real original given the same weights: logits and every gradient, every variant.

Tolerance: float32 on CPU. The replica computes the same functions with different (vectorised) evaluation
orders, so results differ by float32 rounding: about 1e-7 relative per operation, growing through the LSTM
stacks to ~1e-6. Logits: 1e-5 of their largest magnitude. Gradients: some are tiny residues of large terms
that cancel (an attention projection's bias barely moves a softmax that is invariant to a shift), so a
fixed relative bound is meaningless for them; each gradient is judged against its measured float32 noise
floor (the same computation in float64 vs float32, see parity.noise) times 10, with fixed minimums of 1e-5 of
its own largest magnitude and 1e-7 of the largest gradient in the model (gradients below that are numerically
zero: the measure attention's bias gradient is ~1e-14). The measured figures are printed with -s.
"""

from __future__ import annotations

import pytest
import torch
from tiers import sweep

from percepiano_parity import replica
from percepiano_parity.batches.synthetic import generate_batches
from percepiano_parity.compare.noise import FloorMeter
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo

LOGIT_REL = 1e-5
GRAD_MIN_REL = 1e-5
GRAD_MIN_GLOBAL_REL = 1e-7
FLOOR_MULTIPLE = 10.0


def _rel(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    diff = float((a.double() - b.double()).abs().max())
    scale = float(a.double().abs().max())
    return diff, diff / scale if scale else diff


@pytest.mark.parametrize("variant", sweep(replica.VARIANTS, fast={"han-beat"}))
def test_logits_and_gradients_equal_the_original(original, variant: str) -> None:
    config = replica.DEFAULT_CONFIG
    reference = original.subject(variant, config, seed=7)
    model = replica.build(variant, config, seed=7)
    ref_state = reference.model.state_dict()
    # built in the original's order, the same seed gives bit-identical initial weights
    assert list(model.state_dict()) == list(ref_state)
    assert all(torch.equal(model.state_dict()[k], ref_state[k]) for k in ref_state)
    candidate = ReplicaSubject(model, SubjectInfo("replica", "bundled-replica", variant))
    # every variant on two realistic batches; the two the scripts train most also on every edge case
    edge = variant in ("han-total", "bilstm-note")
    batches = generate_batches(2, seed=11, batch_size=3, config=config, max_notes=40, include_edge_cases=edge)
    worst_logit = worst_grad = worst_floor_ratio = 0.0
    for batch in batches:
        meter = FloorMeter(variant, config, ref_state)
        meter.measure(batch)
        floors = meter.floors.grads
        a = reference.run(batch, grads=True)
        b = candidate.run(batch, grads=True)
        _, rel = _rel(a.levels["logits"], b.levels["logits"])
        assert rel <= LOGIT_REL, f"{variant} logits differ by {rel:.3g} relative on {batch.tags}"
        worst_logit = max(worst_logit, rel)
        assert set(a.grads) == set(b.grads)
        global_scale = max(float(g.abs().max()) for g in a.grads.values())
        for name, g in a.grads.items():
            diff, rel = _rel(g, b.grads[name])
            allowed = max(FLOOR_MULTIPLE * floors[name], GRAD_MIN_REL * float(g.abs().max()),
                          GRAD_MIN_GLOBAL_REL * global_scale)
            assert diff <= allowed, (f"{variant} grad {name} differs by {diff:.3g} ({rel:.3g} relative), "
                                     f"floor {floors[name]:.3g}, on {batch.tags}")
            worst_grad = max(worst_grad, rel)
            if floors[name] > 0:
                worst_floor_ratio = max(worst_floor_ratio, diff / floors[name])
        assert abs(a.loss - b.loss) <= 1e-6
    print(f"\n{variant}: worst logits rel {worst_logit:.2e}, worst grad rel {worst_grad:.2e}, "
          f"worst grad diff / floor {worst_floor_ratio:.2f} over {len(batches)} batches")
