"""Where a replica keeps each level: the layouts it may use and how to bring each back to the tool's, and
the sites where levels were found by value, recorded on every later batch.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.overrides import TorchFunctionMode

from percepiano_parity.batches.canonical import ModelInput
from percepiano_parity.replica.hierarchy import HierarchyError, measure_segments_in_beat_space, note_segments
from percepiano_parity.subjects.recording import (
    ModuleStack,
    Site,
    SiteFinder,
    WriteTracker,
    _floating,
    module_outputs,
    op_name,
    user_frame,
)

# ----------------------------------------------------------------------------------------------------------
# Layouts a replica may keep a level in, and how to bring each back to the tool's: (N, L, C) batch-first with
# zeros past each item's own count, or (N, C) for pooled levels.
#
# A layout is plain data (`Layout`), found once by value (compare.locate) and applied to every batch:
#
#     batch_first  (N, L', D): padded to any count L' >= the real one, with any padding value
#     time_first   (L', N, D)
#     packed       (S, D): the rows of a PackedSequence (time-major, items sorted by length as
#                  pack_padded_sequence sorts them), S = the sum of the counts
#     rows         (S, D): the items' rows one after another (a loop over items, concatenated)
#     pooled       (N, D): one row per item
#
# and, on top of any of them: a channel slice [offset, offset + width) (a level inside a concatenation), trailing
# singleton dimensions dropped, the last two dimensions swapped (attention weights kept as (N, heads, L)).
#
# Counts come from the batch by the original's own rules (`Counts.of`): notes per item; beat nodes per item
# (boundaries where the beat number rises by exactly 1, original utils.py:234 find_boundaries_batch); measure nodes
# per item (measure boundaries in beat-node space, empty segments included, original model_utils.py:17-28
# make_higher_node), so a replica's own padding never decides what is compared. Packed rows are ordered as
# pack_padded_sequence(enforce_sorted=False) orders them, the packing the original's collate uses (dataset.py:223).

KINDS = ("batch_first", "time_first", "packed", "rows", "pooled")


@dataclass(frozen=True)
class Layout:
    kind: str  # one of KINDS
    space: str  # "note", "beat", "measure" (whose counts unpack it) or "pooled"
    offset: int = 0  # first channel of the level
    width: int | None = None  # channels of the level (None: all)
    squeeze: int = 0  # trailing singleton dimensions dropped first
    transpose: bool = False  # last two dimensions swapped

    def describe(self) -> str:
        parts = [self.kind.replace("_", "-")]
        if self.kind in ("batch_first", "time_first", "packed", "rows"):
            parts.append(f"{self.space} space")
        if self.width is not None:
            parts.append(f"channels {self.offset}:{self.offset + self.width}")
        if self.transpose:
            parts.append("(..., heads, L)")
        if self.squeeze:
            parts.append(f"{self.squeeze} trailing 1-dim dropped")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Counts:
    """Real rows per item in each space, (N,) int64 on the CPU (a space is absent when the batch's locations
    cannot be split the original's way)."""

    n: int
    by_space: dict[str, Tensor]

    @classmethod
    def of(cls, model_input: ModelInput) -> Counts:
        lengths = model_input.lengths.cpu().long()
        loc = {k: v.cpu() for k, v in model_input.note_locations.items()}
        out = {"note": lengths}
        try:
            beats = note_segments(loc["beat"]).num_nodes
            out["beat"] = beats
            out["measure"] = measure_segments_in_beat_space(loc["beat"], loc["measure"], beats).num_nodes
        except (HierarchyError, RuntimeError, IndexError, KeyError):
            pass
        return cls(len(lengths), out)

    def get(self, space: str) -> Tensor | None:
        return self.by_space.get(space)


def packed_order(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(item, position) of each row of a PackedSequence packed from these counts, in packed order."""
    return _packed_order(tuple(int(c) for c in counts))


@functools.lru_cache(maxsize=64)
def _packed_order(counts_tuple: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    counts = torch.tensor(counts_tuple, dtype=torch.long)
    n, length = counts.numel(), int(counts.max())
    ids = torch.arange(n * length, dtype=torch.float64).view(n, length, 1)
    rows = pack_padded_sequence(ids, counts.cpu(), batch_first=True, enforce_sorted=False).data.view(-1).long()
    return rows // length, rows % length


def item_order(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(item, position) of each row when the items' rows follow one another."""
    return _item_order(tuple(int(c) for c in counts))


@functools.lru_cache(maxsize=64)
def _item_order(counts_tuple: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    counts = torch.tensor(counts_tuple, dtype=torch.long)
    item = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    start = torch.cumsum(counts, 0) - counts
    return item, torch.arange(int(counts.sum())) - start[item]


def prepare(t: Tensor, layout: Layout) -> Tensor:
    """The squeeze and transpose steps of a layout."""
    for _ in range(layout.squeeze):
        t = t.squeeze(-1)
    return t.transpose(-1, -2) if layout.transpose else t


def row_at(t: Tensor, layout: Layout, counts: Counts, item: int, position: int) -> Tensor | None:
    """The row the layout puts at (item, position) of the level, all channels (before the channel slice), without
    laying out the whole tensor; None when `t` does not fit the layout."""
    t = prepare(t.detach(), layout)
    if layout.kind == "pooled":
        return t[item] if t.dim() == 2 and t.shape[0] == counts.n else None
    real = counts.get(layout.space)
    if real is None or position >= int(real[item]):
        return None
    if layout.kind in ("batch_first", "time_first"):
        if t.dim() != 3:
            return None
        return t[item, position] if layout.kind == "batch_first" else t[position, item]
    if t.dim() != 2 or t.shape[0] != int(real.sum()):
        return None
    if layout.kind == "rows":
        return t[int(real[:item].sum()) + position]
    items, positions = packed_order(real)
    return t[int(((items == item) & (positions == position)).nonzero()[0])]


def to_canonical(t: Tensor, layout: Layout, counts: Counts) -> Tensor | None:
    """The level in the tool's layout, or None when `t` does not fit the layout on this batch."""
    t = prepare(t.detach(), layout)
    if t.dim() == 0:
        return None
    end = t.shape[-1] if layout.width is None else layout.offset + layout.width
    if end > t.shape[-1]:
        return None
    t = t[..., layout.offset:end]
    n = counts.n
    if layout.kind == "pooled":
        return t if t.dim() == 2 and t.shape[0] == n else None
    real = counts.get(layout.space)
    if real is None:
        return None
    length, channels = int(real.max()), t.shape[-1]
    out = t.new_zeros(n, length, channels)
    if layout.kind in ("batch_first", "time_first"):
        if t.dim() != 3:
            return None
        if layout.kind == "time_first":
            t = t.transpose(0, 1)
        if t.shape[0] != n or t.shape[1] < length:
            return None
        if layout.space == "note":  # the replica's own padding values stay (they may reach an unmasked pooling)
            return t[:, :length]
        keep = (torch.arange(length).unsqueeze(0) < real.unsqueeze(1)).to(t.device)
        return torch.where(keep.unsqueeze(-1), t[:, :length], out)
    if t.dim() != 2 or t.shape[0] != int(real.sum()):
        return None
    item, pos = packed_order(real) if layout.kind == "packed" else item_order(real)
    out[item.to(t.device), pos.to(t.device)] = t
    return out


# ----------------------------------------------------------------------------------------------------------
# Levels located by value (compare.locate), recorded on every later batch at the sites where they were found.
#
# A `LevelSite` says where one level of the original lives in the user's model: the site (operation, module,
# source line), which occurrence of it (or all of them concatenated), and the layout to bring it back to the
# tool's. `SiteTap` records just those tensors during a forward (a TorchFunctionMode that looks at an operation's
# call site only when its name is one of the wanted operations, plus forward hooks for module outputs) and
# returns them in the tool's layout.


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
