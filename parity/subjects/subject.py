"""The interface every side of an audit implements.

A subject wraps one model (the original's, the bundled replica, a user's re-implementation) and knows how to
feed it a canonical batch and where its levels are. Checks never touch models directly: they receive
`Taps` from `Subject.run` and module/parameter descriptions from the other methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.subjects.taps import Taps


@dataclass(frozen=True)
class SubjectInfo:
    """What a report says about a subject: where it came from and what was done to make it run."""

    name: str  # "original" / "replica"
    kind: str  # "original-checkout", "bundled-replica", "user-replica", "reference-bundle"
    variant: str
    source: str = ""  # checkout path, module:factory, bundle path
    revision: str = ""  # git commit or content fingerprint
    shims: tuple[dict[str, str], ...] = field(default=())  # {"name":..., "reason":...}
    warnings: tuple[str, ...] = field(default=())
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Subject(Protocol):
    info: SubjectInfo
    model: nn.Module

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        """Forward (eval mode unless train=True), record levels and attention maps; when grads, compute the
        training loss (MSE of sigmoid(logits) against labels), backpropagate and record every gradient.
        The model's parameters and mode are left as they were (grads are cleared afterwards)."""
        ...


@runtime_checkable
class TeacherForcible(Protocol):
    """A subject that can compute one level from given inputs (for local-vs-inherited error)."""

    def level_inputs(self, level: str) -> tuple[str, ...]:
        """Names of the levels this level is computed from (empty: from the batch itself)."""
        ...

    def run_level(self, level: str, inputs: Mapping[str, Tensor], batch: CanonicalBatch) -> Tensor: ...
