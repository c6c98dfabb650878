"""Loading a user's replica factory (`module:function` or `path/to/file.py:function`) and calling it seeded, with
the keyword arguments it accepts; every failure is one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from percepiano_parity.core.errors import UsageError
from percepiano_parity.core.guard import call_user, user_code
from percepiano_parity.replica.config import ModelConfig
from percepiano_parity.subjects.adapter import (
    DEFAULT_ADAPTER,
    validate_adapter,
)


def _import_target(target: str, option: str = "--replica") -> Any:
    """A module from a dotted name or a .py file path."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"{option}: {path} does not exist")
        path = path.resolve()
        name = "parity_user_replica_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"{option}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # the file may import its neighbours
        sys.modules[name] = module
        try:
            with user_code("replica module"):
                spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `parity` as a console script does not put the cwd on sys.path
    with user_code("replica module", context=target):  # finding it imports its parent packages
        found = _find_module(target)
    if found is None:
        raise UsageError(f"{option}: no module named {target!r} (on sys.path or in the working folder)")
    with user_code("replica module", context=target):
        return importlib.import_module(target)


def _find_module(target: str) -> Any:
    """The import spec of a dotted module name, None when it or a parent package does not exist."""
    try:
        return importlib.util.find_spec(target)
    except ModuleNotFoundError as exc:
        parts = target.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            return None
        raise
    except ValueError:  # a relative or empty name
        return None


def load_factory(spec: str, option: str = "--replica") -> Callable[..., Any]:
    """The callable named by `module:attr` or `path.py:attr`; UsageError (one line, naming `option`) when it
    cannot be found."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        noun = "factory" if option == "--replica" else "function"
        raise UsageError(f"{option} {spec!r}: expected module:{noun} or path.py:{noun}")
    module = _import_target(target, option)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{option} {spec}: {target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{option} {spec}: {attr} is not callable")
    return obj


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def call_factory(factory: Callable[..., Any], spec: str, *, variant: str, config: ModelConfig,
                 seed: int) -> tuple[nn.Module, Any]:
    """Seed, call the factory with the keyword arguments it accepts, validate what it returned."""
    offered = {"variant": variant, "config": config, "seed": seed}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = offered
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    torch.manual_seed(seed)
    made = call_user("factory", factory, context=spec, **kwargs)
    if isinstance(made, tuple) and len(made) == 2:
        model, adapter = made
    else:
        model, adapter = made, None
    if not isinstance(model, nn.Module):
        raise UsageError(f"the replica factory {spec} returned {type(made).__name__}; expected an nn.Module or "
                         "a (model, adapter) pair")
    if not any(True for _ in model.parameters()):
        raise UsageError(f"the replica factory {spec} returned a model without parameters")
    adapter = adapter if adapter is not None else DEFAULT_ADAPTER
    validate_adapter(model, adapter, spec)
    return model, adapter
