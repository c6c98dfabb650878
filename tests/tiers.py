"""The two test tiers. The fast one is the README's test command (`python -m pytest -q -m "not slow"`: unit tests
and one audit per kind of check, about 200 s on a 2-core machine); the slow one (`-m slow`) holds the audits
of every deviation, the fuzzing and the sweeps against the live original. `.ci/run` runs both.

A parametrized sweep keeps a named few of its cases in the fast tier: `sweep(cases, fast=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

import pytest


def sweep(cases: Iterable[Any], *, fast: Collection[str], name: Callable[[Any], str] | None = None) -> list[Any]:
    """`cases` for `pytest.mark.parametrize`, each marked slow unless it is named in `fast` (by its id or, for a
    tuple case, its first item). A tuple case is spread over the parameters; its id is `name(case)` (default: the
    case, or a tuple's first item); a name in `fast` that matches no case is an error."""
    def first(case: Any) -> str:
        return str(case[0] if isinstance(case, tuple) else case)

    name = name or first
    out, seen = [], set()
    for case in cases:
        label = name(case)
        seen |= {label, first(case)}
        values = case if isinstance(case, tuple) else (case,)
        marks = () if {label, first(case)} & set(fast) else (pytest.mark.slow,)
        out.append(pytest.param(*values, id=label, marks=marks))
    unknown = set(fast) - seen
    if unknown:
        raise ValueError(f"fast cases that are not in the sweep: {sorted(unknown)}")
    return out
