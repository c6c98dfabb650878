"""The folders are the stages of the data flow: imports only run downward, without circles, in small modules."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from import_graph import FOLDERS, ROOT, STAGES, cycles, graph, sources, stage_of, upward_imports

MAX_LINES = 800


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    return graph()


def test_every_module_belongs_to_a_stage():
    """Only the package's own __init__ and __main__ sit outside the stage folders."""
    unstaged = sorted(m for m in sources() if stage_of(m) is None)
    assert unstaged == ["percepiano_parity", "percepiano_parity.__main__"]


def test_imports_only_run_downward_through_the_stages(import_graph):
    bad = upward_imports(import_graph)
    assert bad == [], "a module imports a later stage:\n" + "\n".join(f"  {a} -> {b}" for a, b in bad)


def test_no_import_circle(import_graph):
    assert cycles(import_graph) == []


def test_no_module_over_800_lines():
    long = {name: n for name, path in sources().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_graph_sees_the_pipeline(import_graph):
    """A sanity check of the analysis itself: the check pipeline imports every stage below it."""
    deps = import_graph["percepiano_parity.commands.check"]
    stages = {stage_of(d) for d in deps}
    assert {stage_of("percepiano_parity.batches.plan"), stage_of("percepiano_parity.subjects.sides"),
            stage_of("percepiano_parity.compare.engine"), stage_of("percepiano_parity.checks.non_finite")} <= stages


def test_every_package_folder_is_installed():
    """pyproject lists the packages explicitly (the folders map under one name); none may be forgotten."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            folders.add(".".join([package, *rel.parts]))
    assert folders - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - folders == set()


def test_stage_folders_exist():
    for names in STAGES:
        for name in names:
            assert (ROOT / "parity" / name).is_dir() or (ROOT / name).is_dir(), name


def test_the_import_map_mirrors_the_installed_layout():
    """`.import-map/percepiano_parity/` is how an editor or a type checker finds the installed names in a checkout
    (pyproject's [tool.pyright] extraPaths, [tool.mypy] mypy_path): every module resolves through it to its source
    file, and it holds nothing else."""
    tree = ROOT / ".import-map"
    for name, path in sources().items():
        mapped = tree.joinpath(*name.split(".")).with_suffix(".py")
        if not mapped.exists():
            mapped = tree.joinpath(*name.split("."), "__init__.py")
        assert mapped.resolve() == path.resolve(), f"{name}: {mapped} does not lead to {path}"
    reached = {(Path(folder) / f).resolve() for folder, _, files in os.walk(tree, followlinks=True)
               for f in files if f.endswith(".py")}
    assert reached == {p.resolve() for p in sources().values()}
