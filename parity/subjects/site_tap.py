"""Levels located by value (compare.locate), recorded on every later batch at the sites where they were found.

A `LevelSite` says where one level of the original lives in the user's model: the site (operation, module,
source line), which occurrence of it (or all of them concatenated), and the layout to bring it back to the
tool's. `SiteTap` records just those tensors during a forward (a TorchFunctionMode that looks at an operation's
call site only when its name is one of the wanted operations, plus forward hooks for module outputs) and
returns them in the tool's layout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from percepiano_parity.subjects.capture import (
    ModuleStack,
    Site,
    SiteFinder,
    WriteTracker,
    _floating,
    module_outputs,
    op_name,
    user_frame,
)
from percepiano_parity.subjects.layouts import Counts, Layout, to_canonical


@dataclass(frozen=True)
class LevelSite:
    """Where one of the original's levels (or attention maps) was found in the candidate's forward.

    found: equal to the reference within the locating tolerance on the first batch; otherwise this is the
    nearest candidate tensor (`error` is its largest error relative to the level's magnitude)."""

    name: str
    site: Site
    role: str
    occurrence: int
    total: int  # occurrences of (site, role) in the locating forward
    concat: bool  # every occurrence, concatenated (a loop over items or segments)
    layout: Layout
    found: bool
    error: float
    matched_rows: float = 1.0  # share of the level's real rows equal to the reference's
    computed_at: Site | None = None  # where it is first computed, when that is not where it is recorded
    computed_role: str = ""

    @property
    def key(self) -> tuple[Site, str]:
        return self.site, self.role

    def describe(self) -> dict[str, Any]:
        origin, role = (self.computed_at, self.computed_role) if self.computed_at else (self.site, self.role)
        op = origin.op if role == "output" else f"{origin.op} ({role})"
        recorded = "" if self.computed_at is None else \
            f"{self.site.op} at {_short(self.site.where)}" + ("" if self.role == "output" else f" ({self.role})")
        return {"level": self.name, "found": "yes" if self.found else "nearest", "op": op,
                "module": origin.module or "(model)", "source": _short(origin.where),
                "function": origin.function,
                "called_from": _short(origin.callers[0]) if origin.callers else "",
                "recorded_at": recorded,
                "occurrence": "all (concatenated)" if self.concat else
                f"{self.occurrence + 1} of {self.total}", "layout": self.layout.describe(),
                "max_rel": self.error}


def _short(where: str) -> str:
    parts = where.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else where


def as_rows(t: Tensor) -> Tensor:
    """One occurrence as rows: (C,) is one row, (1, L, C) one item's L rows, (R, C) R rows."""
    if t.dim() == 1:
        return t.unsqueeze(0)
    if t.dim() >= 3 and t.shape[0] == 1:
        return t[0]
    return t


def concatenated(values: list[Tensor]) -> Tensor | None:
    """Every occurrence's rows, one after another (None when their trailing shapes differ)."""
    rows = [as_rows(v) for v in values]
    if len({r.shape[1:] for r in rows}) != 1:
        return None
    return torch.cat(rows)


def select(values: list[Tensor], site: LevelSite) -> Tensor | None:
    """The tensor a site's occurrences give on one batch (its concatenation, the same occurrence, or the last
    when the site was last in the locating forward)."""
    if not values:
        return None
    if site.concat:
        return concatenated(values)
    if len(values) == site.total or site.occurrence < site.total - 1:
        return values[site.occurrence] if site.occurrence < len(values) else None
    return values[-1]


class _SiteMode(TorchFunctionMode):
    def __init__(self, tap: SiteTap) -> None:
        super().__init__()
        self.tap = tap
        self.names: dict[Any, str | None] = {}  # operation -> its name when it is one of the wanted ones

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        tap = self.tap
        changed = tap.writes.read(func, args)
        if func in self.names:
            name = self.names[func]
        else:
            name = self.names[func] = op_name(func) if op_name(func) in tap.ops else None
        site = None
        if name is not None:
            site = tap.finder.at(name, tap.modules.current, sys._getframe(1))
            for i, value in changed:
                tap.keep(site, f"input {i}", value)
        out = func(*args, **(kwargs or {}))
        tap.writes.wrote(func, args)
        if site is None:
            return out
        outputs = [(f"output {k}" if k else "output", v) for k, v in enumerate(out)] \
            if isinstance(out, tuple | list) else [("output", out)]
        for role, value in outputs:
            if _floating(value):
                tap.keep(site, role, value)
        return out


class SiteTap:
    """Records the tensors at the given sites during one forward; `levels(counts)` gives them in the tool's
    layout (a level whose tensor does not fit its layout on this batch is left out)."""

    def __init__(self, sites: Sequence[LevelSite]) -> None:
        self.sites = list(sites)
        self.wanted = {s.key for s in self.sites}
        self.ops = {s.site.op for s in self.sites if not s.site.op.startswith("module ")}
        self.module_sites = {s.site.module for s in self.sites if s.site.op.startswith("module ")}
        self.values: dict[tuple[Site, str], list[Tensor]] = {}
        self.writes = WriteTracker()
        self.finder = SiteFinder()
        self.modules: ModuleStack

    def keep(self, site: Site, role: str, value: Tensor) -> None:
        if (site, role) in self.wanted:
            self.values.setdefault((site, role), []).append(value.detach().clone())

    @contextmanager
    def recording(self, model: nn.Module) -> Iterator[SiteTap]:
        self.modules = ModuleStack(model)
        self.values.clear()
        self.writes = WriteTracker()
        named = dict(model.named_modules())

        def module_hook(name: str) -> Any:
            def hook(module: nn.Module, _args: Any, output: Any) -> None:
                file, line, function, callers = user_frame(sys._getframe(1))
                site = Site(f"module {type(module).__name__}", name, file, line, function, callers)
                with torch._C.DisableTorchFunction():
                    for role, value in module_outputs(output):
                        if _floating(value):
                            self.keep(site, role, value)
            return hook

        try:
            for name in self.module_sites:
                if name in named:
                    self.modules.add_hook(named[name].register_forward_hook(module_hook(name)))
            with _SiteMode(self):
                yield self
        finally:
            self.modules.remove()
            self.writes = WriteTracker()
            self.finder = SiteFinder()

    def levels(self, counts: Counts) -> dict[str, Tensor]:
        out = {}
        for site in self.sites:
            value = select(self.values.get(site.key, []), site)
            if value is not None:
                canonical = to_canonical(value, site.layout, counts)
                if canonical is not None:
                    out[site.name] = canonical
        return out
