"""Measured noise floors: the faithful computation in float64 against itself in float32.

The original cannot run in float64 (it creates float32 buffers internally), so the floor is measured on the
bundled faithful replica loaded with the reference's weights: it performs the same operations (the parity
check itself establishes that), and float64 serves as the exact result. The floor of a level is the largest
float32 error of that level on the batches measured; gradients and attention maps get floors the same way.

Level, attention and loss floors need only the forward pass (cheap). Gradient floors need a float64 backward,
about a quarter of a two-batch check on the CPU (PyTorch's float64 LSTM backward is an unfused per-step
graph), so `measure(batch, grads=False)` leaves them out and the engine asks for them only when a
gradient difference exceeds the fixed minimum: a floor can only raise a threshold, so below the minimum the
verdict is the same with or without it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from percepiano_parity.compare.aggregate import real_mask
from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects.replica_subject import ReplicaSubject
from percepiano_parity.subjects.subject import SubjectInfo
from percepiano_parity.subjects.taps import Taps


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
