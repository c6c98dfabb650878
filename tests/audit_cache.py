"""One audit per deviation per test session, shared by the tests that read it.

The self-test's matrix (tests/commands/test_selftest.py), the verified fixes (tests/diagnosis/test_fixes.py) and
any other test that needs a library deviation's audit read it from here: `deviation_audit(name)` is the
self-test's audit of that deviation, run at most once per session and kept under its `AuditKey` (deviation,
variant, reference, model config, seed, the batches' contents, fix verification, training checks; see
`commands.selftest.run_selftest`), and `selftest()` runs the whole self-test through the same cache. The shared
setting is the self-test's default: SMALL_CONFIG, seed 0, its default batches (the hazard batches and generated
ones), fixes verified. The golden reports are kept the same way, one `parity check` run per scenario
(`golden_run`).

What comes out is shared: a test must not change it (copy a report before changing it).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.batches.selftest import default_selftest_batches
from percepiano_parity.commands.selftest import AuditKey, AuditRun, SelftestResult, run_selftest
from percepiano_parity.core.config import SMALL_CONFIG

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import golden_reports  # noqa: E402

SEED = 0  # the self-test's default seed
AUDITS: dict[AuditKey, AuditRun] = {}


@functools.cache
def shared_batches() -> tuple[CanonicalBatch, ...]:
    """The self-test's default batches for SMALL_CONFIG and SEED, generated once."""
    return tuple(default_selftest_batches(SMALL_CONFIG, SEED))


def selftest(*, deviations: Sequence[str] | None = None, variants: Sequence[str] | None = None,
             **kwargs: Any) -> SelftestResult:
    """`run_selftest` in the shared setting through the session's cache (keyword arguments pass through)."""
    kwargs.setdefault("config", SMALL_CONFIG)
    kwargs.setdefault("seed", SEED)
    kwargs.setdefault("batches", shared_batches())
    return run_selftest(deviations=deviations, variants=variants, audits=AUDITS, **kwargs)


def deviation_audit(name: str) -> AuditRun:
    """The shared audit of one library deviation (its report, state, subjects and settings)."""
    return selftest(deviations=[name], variants=[]).audits[name]


@functools.cache
def golden_run(scenario: str) -> str:
    """report.json as `parity check` writes it for a golden scenario (tools/golden_reports.py), once a session."""
    return golden_reports.run_scenario(scenario)
