"""The pytest plugin: a project calls `parity_check` in its own tests and asserts with `assert_parity`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
FAST = "batches=1, max_notes=16, edge_cases=False, training_checks=False, threads=1"


def _shipped_bundle() -> bool:
    try:
        from percepiano_parity.subjects.bundle import DEFAULT_BUNDLES
    except ImportError:
        return False
    path = DEFAULT_BUNDLES.get("han-total")
    return path is not None and (Path(path) / "manifest.json").is_file()


def _plugin_args() -> list[str]:
    """`-p parity.pytest_plugin` unless the installed package already registers it (pytest11 entry point)."""
    from importlib.metadata import entry_points

    installed = any(ep.value == "percepiano_parity.commands.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "percepiano_parity.commands.pytest_plugin"]


@pytest.fixture
def project(pytester, monkeypatch):
    import torch

    threads = torch.get_num_threads()  # the inner runs ask for 1 thread (threads=1); restored afterwards
    monkeypatch.delenv("PERCEPIANO_ORIGINAL", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if not _shipped_bundle():
        monkeypatch.setenv("PARITY_TEST_REFERENCE", "replica")
    yield pytester
    torch.set_num_threads(threads)


def test_fixture_and_assert_parity_in_a_users_test_suite(project):
    project.makepyfile(test_mine=f'''
        from percepiano_parity.core.findings import Severity
        from percepiano_parity.commands.pytest_plugin import assert_parity

        def test_faithful(parity_check, tmp_path):
            report = parity_check({FAST}, report_dir=tmp_path / "reports")
            assert report.verdict(Severity.WARNING) == "equivalent"
            assert_parity(report)
            assert (tmp_path / "reports" / "report.json").is_file()

        def test_deviation(parity_check):
            report = parity_check(deviation="layernorm-han-output", {FAST})
            assert_parity(report)

        def test_deviation_accepted_at_a_higher_threshold(parity_check):
            report = parity_check(deviation="custom-head-init", {FAST})
            assert_parity(report, fail_on="error")

        def test_bad_option(parity_check):
            parity_check(variant="han-everything")
    ''')
    result = project.runpytest_inprocess(*_plugin_args(), "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    text = result.stdout.str()
    assert "PercePiano parity: han-total: mismatch at or above warning" in text
    assert "PP-EXTRA-NORM [error]" in text and "fix: Remove the normalisation module." in text
    assert "parity_check: --variant: unknown variant 'han-everything'" in text
    assert "Traceback" not in text.split("test_bad_option")[-1]


def test_failure_message_lists_unexplained_findings_and_waivers():
    from percepiano_parity.commands.pytest_plugin import assert_parity, failure_message
    from percepiano_parity.core.findings import Finding, Severity
    from percepiano_parity.core.report import CheckResult, Explanation, Report

    loose = Finding("forward", "forward.mismatch", "beat", Severity.ERROR, "level beat differs: a lot")
    norm = Finding("structure", "structure.extra_module", "ln", Severity.ERROR, "extra LayerNorm")
    waived = Explanation("PP-EXTRA-NORM", "A normalisation layer", Severity.ERROR, "", "", "", "Remove it.",
                         evidence=[norm.key], waived=True, waiver_reason="on purpose")
    report = Report("han-total", [], [CheckResult("forward", "failed", [loose]),
                                      CheckResult("structure", "waived", [norm])], explanations=[waived],
                    unexplained=[loose.key], settings={"fail_on": "warning"})
    message = failure_message(report)
    assert "1 blocking finding)" in message
    assert "forward:forward.mismatch:beat: level beat differs: a lot" in message
    assert "waived: PP-EXTRA-NORM" in message
    with pytest.raises(AssertionError, match="findings no rule explains"):
        assert_parity(report)
    assert_parity(Report("han-total", [], [CheckResult("structure", "waived", [norm])], explanations=[waived]))
