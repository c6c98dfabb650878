"""Randomness in eval: two identical eval-mode forwards of the candidate that give different outputs.

The operation that draws the randomness is the first whose output differs between the two traces (same
position, same function); for a dropout its zeroed share estimates the rate (p = zeros / elements).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from percepiano_parity.compare.op_trace import tracing
from percepiano_parity.compare.relations.result import Relation
from percepiano_parity.compare.value_match import relative_residual


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
