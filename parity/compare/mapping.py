"""Weight mapping between two differently named models.

Pairs are found in passes: (1) overrides (the adapter's mapping, then a TOML `[map] "reference.name" =
"candidate.name"` file); (2) identical names with identical shapes; (3) for the rest, modules grouped by what they
compute (parameter shapes, not class: compare.pairing) and paired by call order, with name similarity as the
other opinion (groups where the two disagree are settled by value in compare.pair_values); (4) a module shared
under two names in the candidate where the original has two modules is recorded as tied; (5) what is left is
paired by call order among modules of the same kind with other shapes (a resized Linear is a shape conflict, not
a missing and an extra module); (6) parameters held directly by a container (a loose `nn.Parameter` on the
model's root, or the original's context vector inside its attention module) are paired one by one, by shape and
the order of their first use, with name similarity as the other opinion (settled by value like the modules).

Nothing here raises on a bad mapping: an override naming a parameter that does not exist, or pairing two
shapes, is recorded and reported as a structure finding; parameters without a partner are reported, never
silently dropped. Weights are copied into the candidate, never shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from percepiano_parity.compare.pairing import (
    Group,
    container_parameters,
    group_modules,
    group_parameters,
    signature,
    similarity,
)

Shape = tuple[int, ...]


@dataclass
class WeightMap:
    pairs: dict[str, str] = field(default_factory=dict)  # reference param name -> candidate param name
    # reference name -> "name" (identical names) | "override" | "order" (shapes and call order) | "similarity"
    # (shapes and name similarity) | "values" (shapes, settled by comparing outputs)
    how: dict[str, str] = field(default_factory=dict)
    unmatched_reference: list[str] = field(default_factory=list)
    unmatched_candidate: list[str] = field(default_factory=list)
    shape_conflicts: list[tuple[str, str, Shape, Shape]] = field(default_factory=list)
    ambiguous: list[list[str]] = field(default_factory=list)  # groups neither call order nor values could settle
    undecided: list[Group] = field(default_factory=list)  # call order and names disagree (settled by values)
    resolved: list[dict[str, Any]] = field(default_factory=list)  # groups settled by value, with the evidence
    tied: list[dict[str, Any]] = field(default_factory=list)  # one candidate module standing for two of the original
    bad_overrides: list[dict[str, str]] = field(default_factory=list)  # override entries that name nothing
    override_pairs: set[str] = field(default_factory=set)  # reference names paired (or conflicted) by an override
    loose: set[str] = field(default_factory=set)  # reference names paired parameter by parameter (not by module)

    def reverse(self) -> dict[str, str]:
        return {c: r for r, c in self.pairs.items()}

    @property
    def identity(self) -> bool:
        return all(r == c for r, c in self.pairs.items())

    @property
    def by_structure(self) -> bool:
        """Whether names alone left parameters to pair by shapes (so call order should decide)."""
        return bool(self.unmatched_reference and self.unmatched_candidate) or any(
            h in ("order", "similarity") for h in self.how.values())

    def module_pairs(self) -> dict[str, tuple[str, str]]:
        """Reference module -> (candidate module, how), for the modules whose parameters were paired."""
        out: dict[str, tuple[str, str]] = {}
        for r, c in self.pairs.items():
            if r in self.loose:
                continue
            out.setdefault(_owner(r), (_owner(c), self.how.get(r, "")))
        return out


def same_values_shape(a: Shape, b: Shape) -> bool:
    """Equal shapes, or equal once size-1 dimensions are dropped (a query stored as (heads, d) where the original
    keeps (heads, d, 1)): the same values, copied with a reshape."""
    return tuple(a) == tuple(b) or [d for d in a if d != 1] == [d for d in b if d != 1]


def _owner(param: str) -> str:
    return param.rsplit(".", 1)[0] if "." in param else ""


def _join(module: str, name: str) -> str:
    return f"{module}.{name}" if module else name


def load_overrides(path: str | Path | None) -> dict[str, str]:
    """The `[map]` table of an override file ({} for None); see compare.mapping_file (InputError when bad)."""
    from percepiano_parity.compare.mapping_file import read_mapping_file

    return read_mapping_file(path)


def candidate_aliases(candidate: nn.Module) -> dict[str, str]:
    """Every name a candidate parameter goes by -> the name named_parameters() gives it (shared ones once)."""
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in candidate.named_parameters(remove_duplicate=False):
        out[name] = first.setdefault(id(p), name)
    return out


def module_aliases(candidate: nn.Module) -> dict[str, list[str]]:
    """Candidate module (its first name) -> every name it is registered under, for modules registered twice."""
    names: dict[int, list[str]] = {}
    for name, m in candidate.named_modules(remove_duplicate=False):
        if name and any(True for _ in m.parameters(recurse=False)):
            names.setdefault(id(m), []).append(name)
    return {v[0]: v for v in names.values() if len(v) > 1}


def _apply_overrides(result: WeightMap, overrides: Mapping[str, str], ref_params: dict[str, nn.Parameter],
                     cand_params: dict[str, nn.Parameter], aliases: dict[str, str]) -> None:
    owner_of: dict[str, str] = {}
    for r, c in overrides.items():
        problem = "" if r in ref_params else "not a parameter of the original"
        if not problem and c not in aliases:
            problem = "not a parameter of the replica"
        if problem:
            result.bad_overrides.append({"reference": r, "candidate": c, "problem": problem})
            continue
        canonical = aliases[c]
        rs, cs = tuple(ref_params[r].shape), tuple(cand_params[canonical].shape)
        result.override_pairs.add(r)
        if not same_values_shape(rs, cs):
            result.shape_conflicts.append((r, canonical, rs, cs))
            continue
        if canonical in owner_of:  # two of the original's parameters, one of the replica's
            first = owner_of[canonical]
            _record_tie(result, [_owner(first), _owner(r)], _owner(canonical),
                        sorted({_owner(n) for n, k in aliases.items() if k == canonical}))
            continue
        owner_of[canonical] = r
        result.pairs[r] = canonical
        result.how[r] = "override"


def _record_tie(result: WeightMap, reference: list[str], candidate: str, names: list[str]) -> None:
    for tie in result.tied:
        if tie["candidate"] == candidate:
            for ref in reference:
                if ref not in tie["reference"]:
                    tie["reference"].append(ref)
            return
    result.tied.append({"reference": reference, "candidate": candidate, "candidate_names": names})


def _pair_modules(result: WeightMap, reference: nn.Module, candidate: nn.Module, pairs: Mapping[str, str],
                  ref_left: set[str], cand_left: set[str], how: str) -> None:
    mods_r, mods_c = dict(reference.named_modules()), dict(candidate.named_modules())
    for mr, mc in pairs.items():
        own_r = [n for n, _ in mods_r[mr].named_parameters(recurse=False)]
        own_c = [n for n, _ in mods_c[mc].named_parameters(recurse=False)]
        for pr, pc in zip(own_r, own_c, strict=False):
            full_r, full_c = _join(mr, pr), _join(mc, pc)
            if full_r not in ref_left or full_c not in cand_left:
                continue
            p_r, p_c = mods_r[mr].get_parameter(pr), mods_c[mc].get_parameter(pc)
            if p_r.shape == p_c.shape:
                result.pairs[full_r] = full_c
                result.how[full_r] = how
            else:
                result.shape_conflicts.append((full_r, full_c, tuple(p_r.shape), tuple(p_c.shape)))
            ref_left.discard(full_r)
            cand_left.discard(full_c)


def _owners(names: set[str]) -> set[str]:
    return {_owner(n) for n in names}


def map_weights(reference: nn.Module, candidate: nn.Module, *, reference_order: list[str] | None = None,
                candidate_order: list[str] | None = None, overrides: Mapping[str, str] | None = None,
                choices: Mapping[tuple[str, ...], str] | None = None) -> WeightMap:
    """Pair the reference's parameters with the candidate's (see the module docstring). `choices` settles
    undecided groups (key: the group's sorted reference modules; value "order" or "name"; default "name")."""
    ref_params = dict(reference.named_parameters())
    cand_params = dict(candidate.named_parameters())
    aliases = candidate_aliases(candidate)
    result = WeightMap()
    _apply_overrides(result, dict(overrides or {}), ref_params, cand_params, aliases)
    taken = set(result.pairs.values()) | {c for _, c, _, _ in result.shape_conflicts}
    for name, p in ref_params.items():
        if name in result.pairs or name in result.override_pairs:
            continue
        q = cand_params.get(name)
        if q is not None and name not in taken:
            if q.shape == p.shape:
                result.pairs[name] = name
                result.how[name] = "name"
                taken.add(name)
            else:
                result.shape_conflicts.append((name, name, tuple(p.shape), tuple(q.shape)))
                taken.add(name)
    tied_refs = {r for tie in result.tied for r in tie["reference"]}
    conflicted = {r for r, _, _, _ in result.shape_conflicts}
    ref_left = {n for n in ref_params if n not in result.pairs and n not in conflicted
                and n not in result.override_pairs and _owner(n) not in tied_refs}
    cand_left = {n for n in cand_params if n not in taken}
    if ref_left and cand_left:
        groups = group_modules(reference, candidate, _owners(ref_left), _owners(cand_left), reference_order,
                               candidate_order)
        for group in groups:
            choice = "order" if group.decided else (choices or {}).get(tuple(group.reference), "name")
            if not group.decided:
                result.undecided.append(group)
            chosen = group.by_order if choice == "order" else group.by_name
            how = "order" if group.decided else ("values" if choices and tuple(group.reference) in choices
                                                 else "similarity")
            _pair_modules(result, reference, candidate, chosen, ref_left, cand_left, how)
    _find_ties(result, reference, candidate, ref_left)
    if ref_left and cand_left:
        groups = group_modules(reference, candidate, _owners(ref_left), _owners(cand_left), reference_order,
                               candidate_order, key="structure")
        for group in groups:
            _pair_modules(result, reference, candidate, group.by_order, ref_left, cand_left, "order")
    if ref_left and cand_left:
        _pair_loose(result, reference, candidate, ref_left, cand_left, reference_order, candidate_order, choices)
    taken = set(result.pairs.values()) | {c for _, c, _, _ in result.shape_conflicts}
    tied_refs = {r for tie in result.tied for r in tie["reference"]}
    result.unmatched_reference = sorted(n for n in ref_left if _owner(n) not in tied_refs)
    result.unmatched_candidate = sorted(n for n in cand_params if n not in taken)
    return result


def _pair_loose(result: WeightMap, reference: nn.Module, candidate: nn.Module, ref_left: set[str],
                cand_left: set[str], reference_order: Sequence[str] | None, candidate_order: Sequence[str] | None,
                choices: Mapping[tuple[str, ...], str] | None) -> None:
    """Pass (6): the parameters left, where one side holds them on a container, paired one by one."""
    loose_r, loose_c = container_parameters(reference), container_parameters(candidate)
    if not (ref_left & loose_r or cand_left & loose_c):
        return
    for group in group_parameters(reference, candidate, ref_left, cand_left, reference_order, candidate_order):
        if not (set(group.reference) & loose_r or set(group.candidate) & loose_c):
            continue  # two whole modules' parameters: pass (5) judges those
        choice = "order" if group.decided else (choices or {}).get(tuple(group.reference), "name")
        if not group.decided:
            result.undecided.append(group)
        how = "order" if group.decided else ("values" if choices and tuple(group.reference) in choices
                                             else "similarity")
        for r, c in (group.by_order if choice == "order" else group.by_name).items():
            if r in ref_left and c in cand_left:
                result.pairs[r] = c
                result.how[r] = how
                result.loose.add(r)
                ref_left.discard(r)
                cand_left.discard(c)


def _find_ties(result: WeightMap, reference: nn.Module, candidate: nn.Module, ref_left: set[str]) -> None:
    """A candidate module registered under two names, paired with one original module, while another original
    module of the same shapes found no partner: the replica shares one module where the original has two."""
    shared = module_aliases(candidate)
    if not shared:
        return
    paired = {mc: mr for mr, (mc, _) in result.module_pairs().items()}
    mods_r, mods_c = dict(reference.named_modules()), dict(candidate.named_modules())
    for module, names in shared.items():
        partner = paired.get(module)
        if partner is None:
            continue
        lonely = [m for m in sorted(_owners(ref_left)) if signature(mods_r[m]) == signature(mods_c[module])]
        if not lonely:
            continue
        other = max(lonely, key=lambda m: max(similarity(m, n) for n in names[1:]))
        _record_tie(result, [partner, other], module, names)
        for n in [n for n in ref_left if _owner(n) == other]:
            ref_left.discard(n)


def copy_weights(reference: nn.Module, candidate: nn.Module, weight_map: WeightMap) -> None:
    """Copy mapped reference weights into `candidate` (data copied, never shared)."""
    ref = dict(reference.named_parameters())
    cand = dict(candidate.named_parameters())
    with torch.no_grad():
        for r, c in weight_map.pairs.items():
            cand[c].copy_(ref[r].detach().to(cand[c].dtype).reshape(cand[c].shape))


def copy_state(tensors: Mapping[str, torch.Tensor], candidate: nn.Module, weight_map: WeightMap) -> None:
    """Copy reference weights given as a name -> tensor mapping (a recorded bundle) into `candidate`."""
    cand = dict(candidate.named_parameters())
    with torch.no_grad():
        for r, c in weight_map.pairs.items():
            cand[c].copy_(tensors[r].to(cand[c].dtype).reshape(cand[c].shape))


def renames(weight_map: WeightMap) -> list[dict[str, str]]:
    """Module pairs whose names differ: a replica's packaging (another parent, another name), not a deviation."""
    modules = [{"original": r or "(model)", "replica": c or "(model)", "paired by": how}
               for r, (c, how) in sorted(weight_map.module_pairs().items()) if r != c]
    loose = [{"original": r, "replica": weight_map.pairs[r], "paired by": weight_map.how.get(r, "")}
             for r in sorted(weight_map.loose) if weight_map.pairs.get(r, r) != r]
    return modules + loose


def undecided_keys(weight_map: WeightMap) -> Sequence[tuple[str, ...]]:
    return [tuple(g.reference) for g in weight_map.undecided]
