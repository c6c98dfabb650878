"""The few stand-in modules the original needs to import in a modern environment.

A shim is offered only for a module whose real import fails here (if pretty_midi is installed, the real
one is used), only while the checkout is being imported, and only when the original actually asks for
it: `ShimFinder` sits first on `sys.meta_path` for the isolated import and serves just the failing
names, recording each one it serves. Afterwards the shims leave `sys.modules` and their parents'
attributes (see `isolation`). Every shim served becomes a {"name", "reason"} record in reports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy


@dataclass(frozen=True)
class Shim:
    name: str  # the module name the original imports
    why: str  # why the original imports it and why a stand-in is harmless
    make: Callable[[types.ModuleType], None]  # fills the empty module


def _arraysetops(module: types.ModuleType) -> None:
    module.isin = numpy.isin


def _empty(module: types.ModuleType) -> None:
    pass


def _tqdm(module: types.ModuleType) -> None:
    def tqdm(iterable=None, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - same call shape as tqdm
        return iterable

    module.tqdm = tqdm


def _tensorboard(module: types.ModuleType) -> None:
    class SummaryWriter:
        """Accepts every call and writes nothing."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None

    module.SummaryWriter = SummaryWriter


# Needed to import the model modules (model_m2pf and what it imports).
MODEL_SHIMS: tuple[Shim, ...] = (
    Shim("numpy.lib.arraysetops",
         "utils.py imports isin from it (and never uses it); provides isin = numpy.isin", _arraysetops),
    Shim("pretty_midi",
         "pyScoreParser (imported by model_m2pf) imports it at module level; the models never call it; "
         "empty module", _empty),
)

# Needed only to import the training code (train_m2pf -> logger).
TRAINING_SHIMS: tuple[Shim, ...] = (
    Shim("tqdm", "train_m2pf imports its progress bar; pass-through tqdm(iterable)", _tqdm),
    Shim("torch.utils.tensorboard",
         "logger.py subclasses SummaryWriter; a no-op SummaryWriter (stubbing the bare 'tensorboard' package "
         "is not enough: torch's own module then fails its version check)", _tensorboard),
    Shim("wandb", "logger.py imports it; only its image logging uses it; empty module", _empty),
)


# Needed to import the feature pipeline (pyScoreParser: data_class, data_for_training and what they import).
FEATURE_SHIMS: tuple[Shim, ...] = (
    Shim("tqdm", "pyScoreParser/data_class.py and data_for_training.py import its progress bar; pass-through "
         "tqdm(iterable)", _tqdm),
)


@dataclass(frozen=True)
class AttributeShim:
    """A name a module of a modern library no longer has, lent to it only while the original is imported."""

    module: str  # the library module, which imports fine
    name: str  # the attribute the original imports from it
    why: str
    value: Callable[[], object]


FEATURE_ATTRIBUTE_SHIMS: tuple[AttributeShim, ...] = (
    AttributeShim("numpy.lib.npyio", "save",
                  "pyScoreParser/data_for_training.py:6 imports save from it (numpy 2 removed it there; the module "
                  "never calls it); lends numpy.save while the original is imported", lambda: numpy.save),
)


@contextlib.contextmanager
def lend_attributes(shims: Iterable[AttributeShim]) -> Iterator[list[dict[str, str]]]:
    """Set each missing attribute for the duration of the block and take it back after; yields the
    {"name", "reason"} records of the ones lent (an attribute the library still has is left alone)."""
    lent: list[tuple[types.ModuleType, str]] = []
    served: list[dict[str, str]] = []
    try:
        for shim in shims:
            module = importlib.import_module(shim.module)
            if hasattr(module, shim.name):
                continue
            setattr(module, shim.name, shim.value())
            lent.append((module, shim.name))
            served.append({"name": f"{shim.module}.{shim.name}", "reason": shim.why})
        yield served
    finally:
        for module, name in reversed(lent):
            with contextlib.suppress(AttributeError):
                delattr(module, name)


def real_import_error(name: str) -> str | None:
    """Try the real import; None when it works, else the error (partial imports are removed again)."""
    if name in sys.modules:
        return None
    before = set(sys.modules)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(name)
    except ImportError as exc:
        for key in set(sys.modules) - before:
            if key == name or key.startswith(name + "."):
                del sys.modules[key]
        return f"{type(exc).__name__}: {exc}"
    return None


def failing(shims: Iterable[Shim]) -> list[tuple[Shim, str]]:
    """The shims whose real module cannot be imported here, each with the import error seen."""
    found = []
    for shim in shims:
        error = real_import_error(shim.name)
        if error is not None:
            found.append((shim, error))
    return found


class _ShimLoader(importlib.abc.Loader):
    def __init__(self, finder: ShimFinder, shim: Shim, error: str) -> None:
        self.finder, self.shim, self.error = finder, shim, error

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # default module creation

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = f"percepiano-parity shim: {self.shim.why}"
        self.shim.make(module)
        self.finder.served[self.shim.name] = {
            "name": self.shim.name, "reason": f"{self.shim.why} (real import failed: {self.error})"
        }


class ShimFinder(importlib.abc.MetaPathFinder):
    """Serves the given failing modules, and nothing else, while it is on sys.meta_path."""

    def __init__(self, shims: Sequence[tuple[Shim, str]]) -> None:
        self._by_name = {shim.name: (shim, error) for shim, error in shims}
        self.served: dict[str, dict[str, str]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        entry = self._by_name.get(fullname)
        if entry is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _ShimLoader(self, *entry))
