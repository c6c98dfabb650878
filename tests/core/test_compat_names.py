"""One import name that cannot clash, and the old names still working.

The tool imports only `percepiano_parity.*`, so a project with its own `replica/` or `reports/` folder, or a
user package named `replica`, never meets ours; code written against the earlier layout (`parity.user_subject`,
`replica.build`, `parity.pytest_plugin`, ...) gets the same objects through the old names. Each case runs in a
fresh interpreter outside the source checkout, as an installed user sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from percepiano_parity.compat import RENAMED, canonical_name


def _python(code: str, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PERCEPIANO_ORIGINAL")}
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_old_module_name_maps_to_an_existing_module():
    import importlib

    for old in RENAMED:
        new = canonical_name(old)
        assert new is not None and importlib.util.find_spec(new) is not None, (old, new)


def test_old_names_give_the_same_objects_outside_the_checkout(tmp_path):
    code = textwrap.dedent('''
        import importlib
        pairs = [
            ("parity.user_subject", "Adapter", "percepiano_parity.subjects.user_subject"),
            ("parity.pytest_plugin", "assert_parity", "percepiano_parity.commands.pytest_plugin"),
            ("parity.run_check", "run_check", "percepiano_parity.commands.check"),
            ("parity.findings", "Severity", "percepiano_parity.core.findings"),
            ("parity.config", "UsageError", "percepiano_parity.core.errors"),
            ("parity.bundle", "record_bundle", "percepiano_parity.commands.record_bundle"),
            ("parity.training", "checks_for", "percepiano_parity.checks.training.suite"),
            ("replica", "build", "percepiano_parity.replica.variants"),
            ("replica.config", "DEFAULT_CONFIG", "percepiano_parity.replica.config"),
            ("replica.deviations", "DEVIATIONS", "percepiano_parity.subjects.deviations"),
            ("reports", "write_reports", "percepiano_parity.reports"),
            ("original_adapter", "load", "percepiano_parity.original_adapter"),
        ]
        for old, attr, new in pairs:
            a = getattr(importlib.import_module(old), attr)
            b = getattr(importlib.import_module(new), attr)
            assert a is b, (old, attr)
        import parity, percepiano_parity
        assert parity is percepiano_parity
        import percepiano_parity.subjects.user_subject as m
        assert m.__spec__.name == "percepiano_parity.subjects.user_subject"
        print("ok")
    ''')
    done = _python("import parity\n" + code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_project_with_its_own_replica_and_reports_folders(tmp_path):
    """`python -m parity check` in a project whose own `replica` package is the replica under audit, by module
    name, with a `reports` package that must never be imported."""
    (tmp_path / "replica").mkdir()
    (tmp_path / "replica" / "__init__.py").write_text("")
    (tmp_path / "replica" / "model.py").write_text(textwrap.dedent('''
        from percepiano_parity.replica import build as _build

        def build(variant="han-total", config=None, seed=0):
            return _build(variant, config, seed=seed)
    '''))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "__init__.py").write_text("raise RuntimeError('the user\\'s own reports package')\n")
    done = _python("", tmp_path, "-m", "parity", "check", "--replica", "replica.model:build", "--batches", "1",
                   "--no-training-checks", "--no-edge-cases", "--format", "json", "--report-dir", "out")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "report.json").is_file()


def test_a_users_replica_package_keeps_its_submodules(tmp_path):
    (tmp_path / "replica").mkdir()
    (tmp_path / "replica" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "replica" / "config.py").write_text("VALUE = 'theirs'\n")
    done = _python("import percepiano_parity, replica, replica.config; print(replica.MINE, replica.config.VALUE)",
                   tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "theirs"]


@pytest.mark.parametrize("module", ["parity", "percepiano_parity"])
def test_python_dash_m_runs_the_command(tmp_path, module):
    done = _python("", tmp_path, "-m", module, "deviations")
    assert done.returncode == 0, done.stderr
    assert "layernorm-han-output" in done.stdout
