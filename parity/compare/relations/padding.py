"""Differences that enter through padding rows.

A level compared on its real rows can agree with the original's while its padding rows (positions past an
item's length in a padded (N, T, C) tensor) hold other values. That matters only where a later computation
reads padding: PercePiano's head pools `total_note_cat` after a Linear with bias, so its padding rows are not
all zero and its row-sum mask (module.py:376) lets them into the attention (ORIGINAL_FACTS §3). A replica that
writes something else into those rows then differs in `pooled` on the items concerned, with every level before
agreeing on the real rows.

The test: for each note-space level before the root whose real rows agree and whose padding rows differ, the
candidate runs again with that level's padding rows set to the original's convention (zeros), right at the
operation where the level was found by value (or at the module an adapter names). The relation holds when the
root level then equals the original's within the tolerance; the residual is measured, not assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from percepiano_parity.compare.first_op import call_site
from percepiano_parity.compare.locate import relative_residual
from percepiano_parity.compare.relations.result import Relation
from percepiano_parity.core.levels import LEVEL_SPACE, Space, level_order


def zero_padding(value: Tensor, lengths: Tensor, channels: Sequence[int] | None = None,
                 time_first: bool = False) -> Tensor:
    """`value` (N, T, C) (or (T, N, C) with `time_first`) with the rows past each item's length set to zero,
    in channels [start, end) only when given. A new tensor; gradients flow through the rows kept."""
    v = value.transpose(0, 1) if time_first else value
    if v.dim() != 3 or v.shape[0] != lengths.numel():
        return value
    keep = torch.arange(v.shape[1], device=v.device).unsqueeze(0) < lengths.to(v.device).unsqueeze(1)
    mask = keep.unsqueeze(-1).expand_as(v).clone()
    if channels is not None:
        start, end = int(channels[0]), int(channels[1])
        mask[..., :start] = True
        mask[..., end:] = True
    out = v * mask.to(v.dtype)
    return out.transpose(0, 1) if time_first else out


class ZeroPaddingAt(TorchFunctionMode):
    """While active, the result of each target's `op` called at its `where` (file:line) has its padding rows
    zeroed (in the target's `channels` only, when given)."""

    def __init__(self, targets: Sequence[Mapping[str, Any]], lengths: Tensor) -> None:
        super().__init__()
        self.targets, self.lengths = list(targets), lengths
        self.applied = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if not isinstance(out, Tensor) or out.dim() != 3 or not any(t["op"] == name for t in self.targets):
            return out
        where = call_site()
        for t in self.targets:
            if t["op"] == name and t["where"] == where:
                self.applied += 1
                out = zero_padding(out, self.lengths, t.get("channels"), t.get("layout") == "time_first")
        return out


def model_lengths(args: tuple, kwargs: dict) -> Tensor | None:
    """The batch's item lengths from a model's forward arguments: a PackedSequence, a 1-D integer tensor, a
    boolean (N, T) mask, or the non-zero rows of a padded (N, T, F) input."""
    values = [*args, *kwargs.values()]
    for a in values:
        if isinstance(a, torch.nn.utils.rnn.PackedSequence):
            sizes = a.batch_sizes
            lengths = (sizes.unsqueeze(0) > torch.arange(int(sizes[0])).unsqueeze(1)).sum(1)
            return lengths[a.unsorted_indices.cpu()] if a.unsorted_indices is not None else lengths
    for a in values:
        if isinstance(a, Tensor) and a.dim() == 2 and a.dtype == torch.bool:
            return a.sum(1).cpu()
    for a in values:
        if isinstance(a, Tensor) and a.dim() == 1 and not a.is_floating_point() and a.dtype != torch.bool:
            return a.cpu()
    first = next((a for a in values if isinstance(a, Tensor) and a.dim() == 3 and a.is_floating_point()), None)
    return (first.detach().abs().sum(-1) > 0).sum(1).cpu() if first is not None else None


def install_zero_padding(model: torch.nn.Module, targets: Sequence[Mapping[str, Any]],
                         lengths: Tensor | None = None) -> ZeroPaddingAt | None:
    """Zero padding rows at `targets` in every later forward of `model` (hooks on the model itself, around any
    hooks already there, so the zeroing acts on the operation's own result, as it was recorded when located). The lengths are the
    given ones or read from each forward's arguments (model_lengths). The mode (its `applied` count), or None
    when no target can apply."""
    usable = [dict(t) for t in targets if t.get("op") and t.get("where")
              and t.get("layout", "batch_first") in ("batch_first", "time_first")]
    if not usable:
        return None
    mode = ZeroPaddingAt(usable, lengths if lengths is not None else torch.zeros(0, dtype=torch.long))
    entered: list[bool] = []

    def enter(_m: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if lengths is None:
            found = model_lengths(args, kwargs)
            mode.lengths = found if found is not None else mode.lengths
        mode.__enter__()
        entered.append(True)

    def leave(_m: torch.nn.Module, _a: Any, _o: Any) -> None:
        if entered:
            entered.pop()
            mode.__exit__(None, None, None)

    # entered before the hooks already there and left after them: beneath a fix's operation patch, the zeroing
    # sees the operation's own result, in the layout the level was located in
    model.register_forward_pre_hook(enter, with_kwargs=True, prepend=True)
    model.register_forward_hook(leave, always_call=True)
    return mode


def target_of(site: Mapping[str, Any]) -> dict[str, Any]:
    """A fix target from where a level was found: the operation, its line, its layout and channel range."""
    channels = [site["offset"], site["offset"] + site["width"]] if site.get("width") is not None else None
    return {"op": site["op"], "where": site["where"], "layout": site.get("layout", "batch_first"),
            "channels": channels}


def _rows(items: Sequence[int], lengths: Tensor, total: int) -> str:
    parts = [f"item {i}, rows {int(lengths[i])}-{total - 1}" if int(lengths[i]) < total - 1 else
             f"item {i}, row {total - 1}" for i in items[:4]]
    return "; ".join(parts) + (" ..." if len(items) > 4 else "")


def _what_fills(cand: Tensor, item: int, length: int) -> str:
    """How the candidate fills one item's padding rows: zeros, copies of one of its real rows, or other values."""
    rows = cand[item, length:]
    if rows.numel() == 0:
        return ""
    if bool((rows == 0).all()):
        return "zeros"
    for j in range(length):
        if bool(torch.equal(rows, cand[item, j].expand_as(rows))):
            return f"copies of the item's row {j}"
    return "other values"


def _differing(ref_levels: Mapping[str, Tensor], cand_levels: Mapping[str, Tensor], level: str, lengths: Tensor,
               tol: float) -> list[dict[str, Any]]:
    """Note-space levels before `level` whose real rows agree and whose padding rows differ, in level order."""
    out = []
    for name in sorted(ref_levels, key=level_order):
        if level_order(name) >= level_order(level) or LEVEL_SPACE.get(name) != Space.NOTE:
            continue
        ref, cand = ref_levels[name], cand_levels.get(name)
        if cand is None or ref.shape != cand.shape or ref.dim() != 3 or ref.shape[0] != lengths.numel():
            continue
        padded = torch.arange(ref.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
        scale = tol * (float(ref.abs().max()) or 1.0)
        diff = (ref.float() - cand.float()).abs().amax(-1)
        if not bool(padded.any()) or float(diff[~padded].max()) > scale or float(diff[padded].max()) <= scale:
            continue
        items = sorted({int(i) for i in (padded & (diff > scale)).nonzero()[:, 0].tolist()})
        out.append({"level": name, "items": items, "pad_max_abs": float(f"{float(diff[padded].max()):.3g}"),
                    "replica_fills": _what_fills(cand, items[0], int(lengths[items[0]])),
                    "original_zero": bool((ref[padded] == 0).all()), "rows": _rows(items, lengths, ref.shape[1])})
    return out


def padding_relations(level: str, ref_levels: Mapping[str, Tensor], cand_levels: Mapping[str, Tensor],
                      lengths: Tensor, tol: float, site_of: Callable[[str], dict[str, Any] | None],
                      rerun: Callable[[Sequence[Mapping[str, Any]]], tuple[Tensor | None, int]],
                      batch_label: str = "") -> list[Relation]:
    """The padding relation at `level`: the earliest levels whose padding rows (alone) differ, zeroed together
    one more at a time until `level` agrees (see the module docstring). `site_of(level)` gives where the
    candidate computes a level ({"op", "where", "layout", "offset", "width"}) or None; `rerun(targets)` the
    candidate's value at `level` with those targets' padding rows zeroed, and how often that applied. [] when no
    such level exists."""
    ref_root = ref_levels.get(level)
    found = _differing(ref_levels, cand_levels, level, lengths, tol) if ref_root is not None else []
    if not found:
        return []
    baseline = relative_residual(ref_root, cand_levels[level]) if level in cand_levels and \
        cand_levels[level].shape == ref_root.shape else math.nan
    chosen: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    residual = math.inf
    for entry in found:
        site = site_of(entry["level"])
        if site is None or not entry["original_zero"]:
            continue
        chosen.append(entry)
        targets.append(target_of(site))
        value, applied = rerun(targets)
        if value is None or not applied or value.shape != ref_root.shape:
            continue
        residual = relative_residual(ref_root, value)
        if residual <= tol:
            break
    holds = residual <= tol
    shown = chosen if holds else found[:1]
    names = " and ".join(e["level"] for e in shown)
    kinds = {e["replica_fills"] for e in shown}
    fills = kinds.pop() if len(kinds) == 1 else "; ".join(f"{e['level']}: {e['replica_fills']}" for e in shown)
    where = f"{shown[0]['rows']}{' of the ' + batch_label + ' batch' if batch_label else ''}"
    summary = (f"the padding rows of {names} ({where}) hold {fills} in the replica where the "
               f"original's hold {'zeros' if all(e['original_zero'] for e in shown) else 'other values'}, while "
               "their real rows agree")
    summary += (f"; with those rows zeroed, {level} equals the original's" if holds else
                "; zeroing them where the replica computes them did not make it agree" if math.isfinite(residual)
                else "; they could not be zeroed where the replica computes them")
    details = {"padding_level": names, "items": shown[0]["items"], "pad_max_abs": max(e["pad_max_abs"] for e in shown),
               "replica_fills": fills, "original_fills": "zeros" if all(e["original_zero"] for e in shown)
               else "other values", "sites": [t["where"] for t in targets] if holds else []}
    fix = {"action": "zero_padding_rows", "targets": targets} if holds else None
    first = targets[0] if holds and targets else None
    return [Relation("padding_rows", level, holds, residual, baseline, summary, details,
                     op=f"{first['op']} at {first['where']}" if first else None,
                     op_site=first["where"] if first else None, fix=fix)]
