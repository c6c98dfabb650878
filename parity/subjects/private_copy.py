"""The tool's private copy of a user's model: its own parameters and buffers (the reference's weights go into
the copy, never into the user's object), while the hooks and taps the user registered keep recording where the
user reads them.

A plain `copy.deepcopy` copies a hook that is a bound method together with its object, so a LightningModule that
saves activations through `self._save` would fill the copy's dictionary and the user's stays empty. Here every
registered hook callable, and every plain container a module holds (dict, list, set of anything but modules),
is shared with the original instead of copied.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def _holds_modules(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, nn.Module) for v in items)


def private_copy(model: M) -> M:
    """A deep copy of `model` that shares the user's hooks and plain containers (see the module docstring)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for name, value in vars(module).items():
            if name.endswith("_hooks") and isinstance(value, dict):
                for hook in value.values():
                    if callable(hook):
                        memo[id(hook)] = hook
            elif not name.startswith("_") and isinstance(value, dict | list | set) and not _holds_modules(value):
                memo[id(value)] = value
    return copy.deepcopy(model, memo)
