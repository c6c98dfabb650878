"""`--batches 1` still runs the edge-case batches; the run says so before comparing, so "1/2" is no surprise."""

from __future__ import annotations

import pytest

from percepiano_parity.commands.check import run_check
from percepiano_parity.commands.options import resolve_options


@pytest.mark.slow
def test_the_realistic_and_edge_case_batches_are_counted_before_the_comparison(tmp_path):
    stages: list[str] = []
    options = resolve_options({"batches": 1, "training_checks": False, "report_dir": str(tmp_path)})
    run_check(options, progress=lambda stage, done, total: stages.append(stage))
    said = [s for s in stages if "edge-case batch" in s]
    assert said and said[0].startswith("1 realistic and ") and "--no-edge-cases" in said[0]
    assert stages.index(said[0]) < stages.index("batch")
