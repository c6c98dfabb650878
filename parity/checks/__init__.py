"""The checks: each turns the folded comparison state into a CheckResult with findings.

Checks never print and never touch models. `run_model_checks` runs the ones that read a ComparisonState;
recipe, trajectory and data checks have their own inputs (see checks.training).
"""

from __future__ import annotations

from percepiano_parity.checks import attention, backward, forward, init, precision, structure
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.report import CheckResult


def run_model_checks(state: ComparisonState, tol: Tolerances) -> list[CheckResult]:
    return [
        structure.run(state),
        init.run(state, tol),
        forward.run(state),
        backward.run(state),
        attention.run(state, tol),
        precision.run(state),
    ]
