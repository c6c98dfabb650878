"""The GitHub Actions example (docs/parity-workflow.yml, shown in docs/ci.md) is a real, checked workflow: it
passes a workflow linter (check-jsonschema with its vendored github-workflows schema), its install line installs
what it says (pip resolves it to this project, offline), and its `parity check` line parses with our parser.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from percepiano_parity.commands.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "docs" / "parity-workflow.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _step(workflow: dict, name: str) -> dict:
    steps = workflow["jobs"]["parity"]["steps"]
    found = [s for s in steps if s.get("name") == name]
    assert len(found) == 1, f"no step {name!r} in {WORKFLOW.name}"
    return found[0]


def test_workflow_passes_the_linter():
    pytest.importorskip("check_jsonschema", reason="the workflow linter check-jsonschema is in the test extra")
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout


def test_the_linter_does_catch_a_broken_workflow(tmp_path):
    """The linter is not a rubber stamp: a step with `with` that is not a mapping is refused."""
    pytest.importorskip("check_jsonschema", reason="the workflow linter check-jsonschema is in the test extra")
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("        with:\n          python-version: \"3.11\"\n"
                                                   "          cache: pip\n", "        with: 3.11\n"))
    assert broken.read_text() != WORKFLOW.read_text()
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "not of type 'object'" in done.stdout


def test_workflow_does_what_docs_ci_says(workflow):
    text = WORKFLOW.read_text()
    assert text.strip() in (ROOT / "docs" / "ci.md").read_text()  # the page shows this very file
    uses = [s.get("uses", "") for s in workflow["jobs"]["parity"]["steps"]]
    assert any(u.startswith("actions/cache@") for u in uses)  # the original's checkout is cached
    uploaded = _step(workflow, "keep the HTML report and the JUnit results")["with"]["path"]
    assert "parity-report/report.html" in uploaded and "parity-report/junit.xml" in uploaded


def test_install_line_installs_this_project(workflow, tmp_path):
    """The install step, run by pip with PARITY_TOOL pointing at this checkout (dry run, offline, no deps):
    pip must resolve the requirement's name to this project and the user's package beside it."""
    line = _step(workflow, "install your replica and the tool")["run"]
    tool = workflow["env"]["PARITY_TOOL"]
    name, _, url = tool.partition(" @ ")
    assert name == "percepiano-parity" and url.startswith("git+https://")
    project = tmp_path / "user-project"
    (project / "mypkg").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "mypkg"
        version = "0.1"
        [tool.setuptools]
        packages = ["mypkg"]
    '''))
    copy = tmp_path / "tool"  # this checkout's files, as `git+...` would fetch them
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__",
                                                              ".pytest_cache", ".ruff_cache", "parity-report"))
    tool_here = f"{name} @ {copy.as_uri()}"
    args = shlex.split(line)
    assert args[:2] == ["pip", "install"] and "$PARITY_TOOL" in args
    args = [tool_here if a == "$PARITY_TOOL" else a for a in args]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--report", str(tmp_path / "pip.json"), *args[2:]]
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    installed = {item["metadata"]["name"] for item in json.loads((tmp_path / "pip.json").read_text())["install"]}
    assert installed == {"mypkg", "percepiano-parity"}


def test_parity_check_line_parses(workflow):
    line = _step(workflow, "parity check")["run"]
    args = shlex.split(line)
    assert args[:2] == ["parity", "check"]
    parsed = build_parser().parse_args(args[1:])
    assert parsed.original == "percepiano-original" and parsed.replica == "mypkg.model:build"
    assert parsed.fail_on == "warning" and parsed.report_dir == "parity-report"
