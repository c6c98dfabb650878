"""Weight mapping between two differently named models.

Pairs are found in three passes: (1) identical names with identical shapes; (2) for the rest, modules are
grouped by signature (type and parameter shapes) and paired in the order of their first call during a
traced forward, with name similarity breaking ties between same-signature modules; (3) an override file
(TOML, `[map] "reference.name" = "candidate.name"`) fixes whatever stays ambiguous. Parameters without a
partner are reported, never silently dropped. Weights are copied into the candidate, never shared.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass
class WeightMap:
    pairs: dict[str, str] = field(default_factory=dict)  # reference param name -> candidate param name
    how: dict[str, str] = field(default_factory=dict)  # reference name -> "name" | "order" | "override"
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_candidate: list[str] = field(default_factory=list)
    shape_conflicts: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ambiguous: list[list[str]] = field(default_factory=list)  # groups resolved by order/similarity

    def reverse(self) -> dict[str, str]:
        return {c: r for r, c in self.pairs.items()}

    @property
    def identity(self) -> bool:
        return all(r == c for r, c in self.pairs.items())


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"[._]", name.lower()) if t and not t.isdigit()}


def _similarity(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 0.0


def _signature(module: nn.Module) -> tuple:
    return (type(module).__name__, tuple((n, tuple(p.shape)) for n, p in module.named_parameters(recurse=False)))


def load_overrides(path: str | Path | None) -> dict[str, str]:
    """The `[map]` table of an override file ({} for None); see compare.mapping_file (InputError when bad)."""
    from percepiano_parity.compare.mapping_file import read_mapping_file

    return read_mapping_file(path)


def map_weights(reference: nn.Module, candidate: nn.Module, *, reference_order: list[str] | None = None,
                candidate_order: list[str] | None = None, overrides: Mapping[str, str] | None = None) -> WeightMap:
    ref_params = dict(reference.named_parameters())
    cand_params = dict(candidate.named_parameters())
    result = WeightMap()
    overrides = dict(overrides or {})
    for r, c in overrides.items():
        if r not in ref_params or c not in cand_params:
            missing = r if r not in ref_params else c
            raise ValueError(f"mapping override names a parameter that does not exist: {missing}")
        result.pairs[r] = c
        result.how[r] = "override"
    taken = set(result.pairs.values())
    for name, p in ref_params.items():
        if name in result.pairs:
            continue
        q = cand_params.get(name)
        if q is not None and name not in taken:
            if q.shape == p.shape:
                result.pairs[name] = name
                result.how[name] = "name"
                taken.add(name)
            else:
                result.shape_conflicts.append((name, name, tuple(p.shape), tuple(q.shape)))
    # pass 2: remaining modules by signature and call order
    ref_left = {n for n in ref_params if n not in result.pairs}
    cand_left = {n for n in cand_params if n not in taken}
    conflicted = {r for r, _, _, _ in result.shape_conflicts}
    if ref_left - conflicted and cand_left:
        _map_by_order(reference, candidate, ref_left - conflicted, cand_left, result, reference_order,
                      candidate_order)
    taken = set(result.pairs.values())
    result.unmatched_reference = sorted(n for n in ref_params if n not in result.pairs)
    result.unmatched_candidate = sorted(n for n in cand_params if n not in taken)
    return result


def _map_by_order(reference: nn.Module, candidate: nn.Module, ref_left: set[str], cand_left: set[str],
                  result: WeightMap, reference_order: list[str] | None, candidate_order: list[str] | None) -> None:
    def modules_with(model: nn.Module, left: set[str], order: list[str] | None) -> list[tuple[str, nn.Module]]:
        owners = {n.rsplit(".", 1)[0] if "." in n else "" for n in left}
        mods = [(n, m) for n, m in model.named_modules() if n in owners]
        rank = {n: i for i, n in enumerate(order or [])}
        return sorted(mods, key=lambda nm: rank.get(nm[0], len(rank) + [n for n, _ in mods].index(nm[0])))

    groups_r: dict[tuple, list[str]] = defaultdict(list)
    groups_c: dict[tuple, list[str]] = defaultdict(list)
    mods_r = dict(modules_with(reference, ref_left, reference_order))
    mods_c = dict(modules_with(candidate, cand_left, candidate_order))
    for n, m in mods_r.items():
        groups_r[_signature(m)].append(n)
    for n, m in mods_c.items():
        groups_c[_signature(m)].append(n)
    for sig, names_r in groups_r.items():
        names_c = list(groups_c.get(sig, []))
        if not names_c:
            continue
        if len(names_r) > 1 or len(names_c) > 1:
            result.ambiguous.append(sorted(names_r) + ["<->"] + sorted(names_c))
        for nr in names_r:
            if not names_c:
                break
            # most similar name first; ties keep call order
            best = max(names_c, key=lambda nc: (_similarity(nr, nc), -names_c.index(nc)))
            names_c.remove(best)
            for pname, _ in mods_r[nr].named_parameters(recurse=False):
                full_r = f"{nr}.{pname}" if nr else pname
                full_c = f"{best}.{pname}" if best else pname
                if full_r in ref_left and full_c in cand_left:
                    result.pairs[full_r] = full_c
                    result.how[full_r] = "order"


def copy_weights(reference: nn.Module, candidate: nn.Module, weight_map: WeightMap) -> None:
    """Copy mapped reference weights into `candidate` (data copied, never shared)."""
    ref = dict(reference.named_parameters())
    cand = dict(candidate.named_parameters())
    with torch.no_grad():
        for r, c in weight_map.pairs.items():
            cand[c].copy_(ref[r].detach().to(cand[c].dtype))


def copy_state(tensors: Mapping[str, torch.Tensor], candidate: nn.Module, weight_map: WeightMap) -> None:
    """Copy reference weights given as a name -> tensor mapping (a recorded bundle) into `candidate`."""
    cand = dict(candidate.named_parameters())
    with torch.no_grad():
        for r, c in weight_map.pairs.items():
            cand[c].copy_(tensors[r].to(cand[c].dtype))
