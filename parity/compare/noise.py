"""Measured noise floors (the faithful computation in float64 against itself in float32) and the tolerance
policy that judges differences against them, with a stated fixed minimum.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.compare.aggregate import real_mask
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo, Taps

# ----------------------------------------------------------------------------------------------------------
# Tolerance policy: differences are judged against measured float32 noise, with a stated fixed minimum.
#
# The noise floor of a level (or gradient) is the largest difference between the faithful computation in
# float64 and in float32 on the batches in use (see compare.noise). A difference is a mismatch when it exceeds
# `floor_multiple` times the floor and also the fixed minimum `min_rel` times the level's magnitude.


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


# ----------------------------------------------------------------------------------------------------------
# Measured noise floors: the faithful computation in float64 against itself in float32.
#
# The original cannot run in float64 (it creates float32 buffers internally), so the floor is measured on the
# bundled faithful replica loaded with the reference's weights: it performs the same operations (the parity
# check itself establishes that), and float64 serves as the exact result. The floor of a level is the largest
# float32 error of that level on the batches measured; gradients and attention maps get floors the same way.
#
# Level, attention and loss floors need only the forward pass (cheap). Gradient floors need a float64 backward,
# about a quarter of a two-batch check on the CPU (PyTorch's float64 LSTM backward is an unfused per-step
# graph), so `measure(batch, grads=False)` leaves them out and the engine asks for them only when a
# gradient difference exceeds the fixed minimum: a floor can only raise a threshold, so below the minimum the
# verdict is the same with or without it.


@dataclass
class NoiseFloors:
    levels: dict[str, float] = field(default_factory=dict)  # level -> max |f32 - f64| (real positions)
    level_scale: dict[str, float] = field(default_factory=dict)
    grads: dict[str, float] = field(default_factory=dict)  # reference param name -> max |f32 - f64|
    attention: dict[str, float] = field(default_factory=dict)
    loss: float = 0.0
    method: str = ""
    batches: int = 0
    grads_measured: bool = False  # gradient floors are measured only when a gradient needs them

    def grad(self, name: str) -> float | None:
        """The gradient floor of a reference parameter, None where gradient floors were not measured."""
        return self.grads.get(name, 0.0) if self.grads_measured else None

    def level_rel(self, level: str) -> float:
        scale = self.level_scale.get(level, 0.0)
        return self.levels.get(level, 0.0) / scale if scale else 0.0

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "batches": self.batches,
            "levels": {k: {"abs": v, "rel": self.level_rel(k)} for k, v in self.levels.items()},
            # empty when not measured: every gradient difference stayed under the fixed minimum, which a floor
            # can only raise (--thorough measures them anyway)
            "grads_measured": self.grads_measured,
            "grads": dict(sorted(self.grads.items())),
            "attention": self.attention,
            "loss": self.loss,
        }


FLOOR_ITEMS = 3  # items of a batch used to measure the floor


class FloorMeter:
    """Runs a float32 and a float64 copy of the faithful replica and folds their differences."""

    def __init__(self, variant: str, config: ModelConfig, reference_state: Mapping[str, Tensor]) -> None:
        model = build(variant, config)
        model.load_state_dict(dict(reference_state), strict=True)
        info = SubjectInfo(name="floor", kind="bundled-replica", variant=variant)
        self.f32 = ReplicaSubject(model, info)
        self.f64 = ReplicaSubject(copy.deepcopy(model).double(), info)
        self.floors = NoiseFloors(method="faithful replica, float64 vs float32, reference weights, on the "
                                         f"{FLOOR_ITEMS} longest items of the first batch")
        self._seen: list[CanonicalBatch] = []

    def measure(self, batch: CanonicalBatch, *, grads: bool = True, forward: bool = True) -> None:
        """Fold the floors of one batch: level, attention and loss floors (`forward`) and gradient floors
        (`grads`, which costs a float64 backward)."""
        # the longest items carry the most rounding (LSTM recurrences); measuring on them keeps the float64
        # run cheap while the floor still reflects the lengths in use
        original = batch
        if len(batch) > FLOOR_ITEMS:
            longest = sorted(batch.segments, key=lambda s: -s.length)[:FLOOR_ITEMS]
            batch = CanonicalBatch(tuple(longest), batch.tags)
        a = self.f64.run(batch, grads=grads)
        b = self.f32.run(batch, grads=grads)
        fl = self.floors
        if forward:
            self._fold_forward(a, b, torch.tensor(batch.lengths))
        if grads:
            for name, g in a.grads.items():
                if name in b.grads:
                    fl.grads[name] = max(fl.grads.get(name, 0.0),
                                         float((g - b.grads[name].double()).abs().max()))
            fl.grads_measured = True
        if not any(seen is original for seen in self._seen):  # a batch measured twice (forward, then with
            self._seen.append(original)                       # gradients) counts once
            fl.batches += 1

    def _fold_forward(self, a: Taps, b: Taps, lengths: Tensor) -> None:
        fl = self.floors
        for level, ref in a.levels.items():
            cand = b.levels.get(level)
            if cand is None or cand.shape != ref.shape:
                continue
            mask, _ = real_mask(level, ref, cand, lengths)
            diff = (ref - cand.double()).abs()
            if mask is not None:
                m = mask
                while m.dim() < diff.dim():
                    m = m.unsqueeze(-1)
                diff = diff * m
                scale = float((ref.abs() * m).max())
            else:
                scale = float(ref.abs().max())
            fl.levels[level] = max(fl.levels.get(level, 0.0), float(diff.max()))
            fl.level_scale[level] = max(fl.level_scale.get(level, 0.0), scale)
        for name, w in a.attention.items():
            if name in b.attention and b.attention[name].shape == w.shape:
                fl.attention[name] = max(fl.attention.get(name, 0.0), float((w - b.attention[name]).abs().max()))
        if a.loss is not None and b.loss is not None:
            fl.loss = max(fl.loss, abs(a.loss - b.loss))

    @property
    def grads_measured(self) -> bool:
        return self.floors.grads_measured

    def ensure_grads(self) -> None:
        """Gradient floors on the batches measured so far (once; see the module docstring)."""
        if not self.grads_measured:
            for batch in list(self._seen):
                self.measure(batch, grads=True, forward=False)  # level floors stay as the checks used them


def reference_state_for_floors(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
