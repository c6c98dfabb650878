"""Tolerance policy: differences are judged against measured float32 noise, with a stated fixed minimum.

The noise floor of a level (or gradient) is the largest difference between the faithful computation in
float64 and in float32 on the batches in use (see compare.noise). A difference is a mismatch when it exceeds
`floor_multiple` times the floor and also the fixed minimum `min_rel` times the level's magnitude.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Tolerances:
    # 5x: two float32 runs each within ~1 floor of the exact result differ by up to ~2 floors; 5 leaves
    # margin for batches that were not used to measure the floor, while 10x the floor is still flagged.
    floor_multiple: float = 5.0
    # Fixed minimum, relative to the level's largest magnitude: float32 LSTM stacks on CPU differ by ~1e-6
    # relative between mathematically equal evaluation orders.
    min_rel: float = 1e-6
    # Gradients go through the backward of every later level; rounding accumulates further.
    grad_min_rel: float = 1e-5
    # ... and of the largest gradient in the model: below that a gradient is numerically zero (the measure
    # attention's bias gradient is ~1e-14 while others are ~1e-2) and its relative error is meaningless.
    grad_min_global_rel: float = 1e-7
    # The training loss is a mean of squares of sigmoid outputs in [0, 1]: absolute tolerance.
    loss_abs: float = 1e-6
    # Attention entropy in nats: a shift above this between the two sides is reported.
    entropy_abs: float = 1e-3
    # Entropy below this (nats) means a collapsed attention; within this of log(n) means uniform.
    collapse_nats: float = 0.05
    uniform_margin: float = 0.01
    # Initialisation: ratio bounds for std and max |w| between the two sides (same seed, same init scheme
    # gives 1.0; kaiming vs xavier(gain 2) differ by ~3x).
    init_ratio: float = 1.3

    REASONS = {
        "floor_multiple": "a mismatch must exceed 5x the measured float32 noise floor of its level",
        "min_rel": "fixed minimum 1e-6 relative: float32 LSTM stacks on CPU differ by ~1e-6 relative",
        "grad_min_rel": "fixed minimum 1e-5 relative for gradients (rounding accumulates through backward)",
        "grad_min_global_rel": "gradients below 1e-7 of the model's largest gradient are numerically zero",
        "loss_abs": "loss is a mean over sigmoid outputs; 1e-6 absolute",
        "entropy_abs": "entropy shifts below 1e-3 nats are float noise",
        "init_ratio": "same init scheme gives ratio 1; a custom init moves std or range by >30%",
    }

    def threshold(self, floor_abs: float, scale: float, *, grad: bool = False, global_scale: float = 0.0) -> float:
        minimum = (self.grad_min_rel if grad else self.min_rel) * scale
        if grad:
            minimum = max(minimum, self.grad_min_global_rel * global_scale)
        return max(self.floor_multiple * floor_abs, minimum)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = dict(self.REASONS)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tolerances:
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed - {"reasons"})
        if unknown:
            raise ValueError(f"unknown tolerance keys: {', '.join(unknown)}")
        return cls(**{k: float(v) for k, v in data.items() if k in allowed})
