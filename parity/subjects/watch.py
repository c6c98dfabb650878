"""Watching a subject for non-finite values: where its recordings first hold NaN or infinite values, and a failure
of the model on a batch as one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.guard import describe, is_code_failure, location
from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.subjects.subject import Subject, SubjectInfo


class FiniteWatch:
    """Wraps a subject and remembers where its recordings first hold NaN or infinite values.

    A NaN makes every later comparison NaN; the watch names the level where it starts, so the report can say
    so in one finding instead of leaving the reader to infer it from dozens of "differs: nan" lines.
    Everything else (teacher forcing, recorded structure, ...) is passed through to the wrapped subject.
    """

    def __init__(self, inner: Subject, batches: Sequence[CanonicalBatch]) -> None:
        self._inner = inner
        self._index = {id(b): i for i, b in enumerate(batches)}
        self.first: dict[str, Any] | None = None

    @property
    def info(self) -> SubjectInfo:
        return self._inner.info

    @property
    def model(self) -> Any:
        return self._inner.model

    @model.setter
    def model(self, value: Any) -> None:
        self._inner.model = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy/pickle protocol lookups, and _inner itself before it is set
            raise AttributeError(name)
        return getattr(self._inner, name)

    def run(self, batch: CanonicalBatch, **kwargs: Any) -> Any:
        try:
            taps = self._inner.run(batch, **kwargs)
        except UsageError:
            raise
        except BaseException as exc:  # a model failing on a batch cannot be compared: same code wherever it happens
            if not is_code_failure(exc):
                raise
            index = self._index.get(id(batch))
            where = location(exc)
            raise UsageError(f"the {self.info.name} ({self.info.source or self.info.kind}) failed on batch {index} "
                             f"({', '.join(batch.tags) or 'generated'}): {describe(exc)}"
                             + (f" (at {where})" if where else "")) from exc
        if self.first is None:
            self._scan(batch, taps)
        return taps

    def _scan(self, batch: CanonicalBatch, taps: Any) -> None:
        import math

        import torch

        from percepiano_parity.core.levels import LEVELS

        for level in [name for name in LEVELS if name in taps.levels]:
            value = taps.levels[level]
            bad = int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
            if bad:
                self.first = {"level": level, "bad": bad, "numel": int(value.numel()),
                              "nan": bool(torch.isnan(value).any()), "batch": self._index.get(id(batch)),
                              "tags": list(batch.tags), **self._origin(batch)}
                return
        if taps.loss is not None and not math.isfinite(taps.loss):
            self.first = {"level": "loss", "bad": 1, "numel": 1, "nan": math.isnan(taps.loss),
                          "batch": self._index.get(id(batch)), "tags": list(batch.tags)}


    def _origin(self, batch: CanonicalBatch) -> dict[str, Any]:
        """The module and operation that first produced the non-finite values (one more forward of this
        batch, see subjects.non_finite_origin); {} when they cannot be told."""
        from percepiano_parity.subjects.non_finite_origin import locate_non_finite

        model = getattr(self._inner, "model", None)
        if model is None:
            return {}
        try:
            return locate_non_finite(model, lambda: self._inner.run(batch, grads=False))
        except BaseException as exc:  # the second forward is only a refinement of what is already known
            if not is_code_failure(exc):
                raise
            return {}


class TeacherForcedWatch(FiniteWatch):
    """A FiniteWatch over a teacher-forcible subject: the methods exist on the class itself, so protocol checks
    that look attributes up statically (typing.runtime_checkable on Python 3.12+) still see them."""

    def level_inputs(self, level: str) -> tuple[str, ...]:
        return self._inner.level_inputs(level)  # type: ignore[attr-defined]

    def run_level(self, level: str, inputs: Any, batch: CanonicalBatch) -> Any:
        return self._inner.run_level(level, inputs, batch)  # type: ignore[attr-defined]


def watch(subject: Subject, batches: Sequence[CanonicalBatch]) -> FiniteWatch:
    forcible = callable(getattr(subject, "run_level", None)) and callable(getattr(subject, "level_inputs", None))
    return (TeacherForcedWatch if forcible else FiniteWatch)(subject, batches)
