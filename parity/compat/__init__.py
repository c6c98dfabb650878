"""Old import names keep working: `parity.user_subject.Adapter`, `replica.build`, `parity.pytest_plugin`, ...

The installed packages live under one name that cannot clash with a user's own code, `percepiano_parity`
(`percepiano_parity.replica`, `percepiano_parity.reports`, `percepiano_parity.original_adapter`, and the
pipeline's stage folders). The tool itself imports only those names, so a project with its own `replica/` or
`reports/` folder, or a user package named `replica` audited by module name, never meets ours.

For code written against the earlier layout, `AliasFinder` (on `sys.meta_path` once `percepiano_parity` is
imported) serves the old names as the *same* module objects:

* a submodule `parity.x.y` / `replica.x` / `reports.x` / `original_adapter.x` is served only while the parent
  `parity` / `replica` / ... in `sys.modules` is ours, so a user's own `replica` package keeps its submodules;
* a top-level `replica` (`reports`, `original_adapter`) is served only when nothing on `sys.path` provides
  one: a user's own package of that name always wins;
* `parity` itself is a tiny installed package (`legacy_parity`) that becomes `percepiano_parity`; in a
  source checkout, the top-level folders do the same when imported by their folder names (`adopt`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

ROOT = "percepiano_parity"
# old top-level name -> new package
BASES: dict[str, str] = {
    "parity": ROOT,
    "replica": f"{ROOT}.replica",
    "reports": f"{ROOT}.reports",
    "original_adapter": f"{ROOT}.original_adapter",
}
# old module -> new module, where the module moved (the longest matching prefix wins)
RENAMED: dict[str, str] = {
    "parity.aggregate": "percepiano_parity.compare.aggregate",
    "parity.audit": "percepiano_parity.commands.audit",
    "parity.batches": "percepiano_parity.batches.synthetic",
    "parity.bundle": "percepiano_parity.compat.bundle",
    "parity.bundle.format": "percepiano_parity.subjects.bundle.format",
    "parity.bundle.make_default": "percepiano_parity.commands.make_default",
    "parity.bundle.record": "percepiano_parity.commands.record_bundle",
    "parity.bundle.replay": "percepiano_parity.subjects.bundle.replay",
    "parity.cli": "percepiano_parity.commands.cli",
    "parity.config": "percepiano_parity.commands.options",
    "parity.doctor": "percepiano_parity.commands.doctor",
    "parity.drift": "percepiano_parity.commands.drift",
    "parity.engine": "percepiano_parity.compare.engine",
    "parity.explain": "percepiano_parity.diagnosis.explain",
    "parity.findings": "percepiano_parity.core.findings",
    "parity.fixes": "percepiano_parity.diagnosis.fixes",
    "parity.levels": "percepiano_parity.core.levels",
    "parity.mapping": "percepiano_parity.compare.mapping",
    "parity.metrics": "percepiano_parity.compare.metrics",
    "parity.noise": "percepiano_parity.compare.noise",
    "parity.ops": "percepiano_parity.compare.first_op",
    "parity.pytest_plugin": "percepiano_parity.commands.pytest_plugin",
    "parity.replica_subject": "percepiano_parity.subjects.replica_subject",
    "parity.report": "percepiano_parity.core.report",
    "parity.run_check": "percepiano_parity.commands.check",
    "parity.score_structure": "percepiano_parity.batches.score_structure",
    "parity.selftest": "percepiano_parity.commands.selftest",
    "parity.selftest_batches": "percepiano_parity.batches.selftest",
    "parity.state": "percepiano_parity.compare.state",
    "parity.structure": "percepiano_parity.compare.structure",
    "parity.subject": "percepiano_parity.subjects.subject",
    "parity.taps": "percepiano_parity.subjects.taps",
    "parity.tolerance": "percepiano_parity.compare.tolerance",
    "parity.training": "percepiano_parity.compat.training",
    "parity.training.cases": "percepiano_parity.checks.training.cases",
    "parity.training.data_check": "percepiano_parity.checks.training.data",
    "parity.training.recipe_check": "percepiano_parity.checks.training.recipe",
    "parity.training.record_data_ops": "percepiano_parity.commands.record_data_ops",
    "parity.training.trajectory": "percepiano_parity.checks.training.trajectory",
    "parity.user_subject": "percepiano_parity.subjects.user_subject",
    "parity.waivers": "percepiano_parity.commands.waivers",
    "replica.deviations": "percepiano_parity.subjects.deviations",
}


def canonical_name(name: str) -> str | None:
    """The module an old import name stands for, e.g. parity.user_subject -> percepiano_parity.subjects.user_subject."""
    parts = name.split(".")
    if parts[0] not in BASES:
        return None
    for i in range(len(parts), 1, -1):
        head = ".".join(parts[:i])
        if head in RENAMED:
            return ".".join([RENAMED[head], *parts[i:]])
    return ".".join([BASES[parts[0]], *parts[1:]])


class _AliasLoader(importlib.abc.Loader):
    """Hands out the canonical module object itself, leaving its own spec in place."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias spec; the module keeps its own


class AliasFinder(importlib.abc.MetaPathFinder):
    """Serves old import names (see the module docstring) as the canonical modules."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        top = name.partition(".")[0]
        if top not in BASES or name == ROOT or name.startswith(ROOT + "."):
            return None
        if "." in name:
            if sys.modules.get(top) is not sys.modules.get(BASES[top]) or sys.modules.get(top) is None:
                return None  # the user's own package of that name (or not imported as ours)
        elif importlib.machinery.PathFinder.find_spec(name) is not None:
            return None  # a package of that name on sys.path: the user's own, or our source folder (adopt)
        target_name = canonical_name(name)
        if target_name is None:
            return None
        if name.endswith(".__main__"):  # `python -m parity`: run the canonical file under the old name
            found = importlib.util.find_spec(target_name)
            if found is None or found.origin is None:
                return None
            return importlib.util.spec_from_file_location(name, found.origin)
        try:
            found = importlib.util.find_spec(target_name)
        except (ImportError, ValueError):
            return None
        if found is None:
            return None
        return importlib.machinery.ModuleSpec(name, _AliasLoader(target_name),
                                              is_package=found.submodule_search_locations is not None)


def install() -> None:
    """Put the alias finder first on sys.meta_path (once)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())


def adopt(name: str, canonical: str) -> None:
    """Called by a package's __init__: imported under an old name (from a source checkout, where the folders
    `parity/`, `replica/`, ... sit on sys.path), it becomes the canonical module instead of a second copy."""
    install()
    if name != canonical:
        sys.modules[name] = importlib.import_module(canonical)
