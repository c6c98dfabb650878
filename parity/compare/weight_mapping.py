"""Weight mapping between two differently named models: names first, then what modules compute (shapes,
call order, values), loose parameters one by one, and the user's override file.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from percepiano_parity.core.validation import Schema, read_toml, validated

# ----------------------------------------------------------------------------------------------------------
# The weight-map override file (`--mapping`, TOML), read and checked at the boundary.
#
#     [map]
#     "reference.parameter.name" = "candidate.parameter.name"
#
# Only a `[map]` table of names to names; anything else is refused in one line naming the file and the key
# (`core.validation`). Whether the names exist in the two models is checked once both are built
# (`subjects.sides.mapping_overrides`).


class MappingFile(Schema):
    """reference parameter name -> candidate parameter name, under `[map]`."""

    map: dict[str, str] = {}


def read_mapping_file(path: str | Path | None) -> dict[str, str]:
    """The overrides of a mapping file ({} for None); `InputError` (exit code 2) when the file is bad."""
    if path is None:
        return {}
    source = f"mapping overrides file {Path(path)}"
    return dict(validated(MappingFile, read_toml(path, what="mapping overrides file"), source=source).map)


# ----------------------------------------------------------------------------------------------------------
# Settling, by value, the module pairings that call order and names disagree on.
#
# For each undecided group (compare.weight_mapping) both assignments are tried: the reference's weights are copied into a
# scratch copy of the candidate either way and the candidate runs on the first batch. The assignment under which
# more of the reference's levels are found by value in the candidate's forward wins (a later deviation, such as a
# wrong head, spoils the logits of both but not the levels before it); with as many levels found, the one whose
# logits are clearly nearer the reference's (at most half the other's error). When neither wins, the group stays
# ambiguous and the structure check says so as a warning; when both agree with the reference, the modules are
# interchangeable here.

CLEARLY = 0.5  # the winner's logits error is at most this fraction of the other assignment's
SAME_REL = 1e-5  # both within this of the logits' magnitude: the assignments are equivalent on this batch

Build = Callable[[Mapping[tuple[str, ...], str]], "WeightMap"]


Trial = tuple[int, float, float]  # (levels found by value, largest |logits difference|, largest |reference logit|)


def settle_by_values(weight_map: WeightMap, build: Build, trial: Callable[[WeightMap], Trial]) -> WeightMap:
    """The weight map with every undecided group settled (see the module docstring).

    `build(choices)` maps again with the given choices; `trial(map)` measures a candidate holding the reference's
    weights as `map` pairs them."""
    if not weight_map.undecided:
        return weight_map
    choices: dict[tuple[str, ...], str] = {}
    resolved: list[dict[str, Any]] = []
    ambiguous: list[list[str]] = []
    cache: dict[frozenset, Trial] = {}

    def measured(wm: WeightMap) -> Trial:
        key = frozenset(wm.pairs.items())
        if key not in cache:
            cache[key] = trial(wm)
        return cache[key]

    for group in weight_map.undecided:
        key = tuple(group.reference)
        got = {option: measured(build({**choices, key: option})) for option in ("order", "name")}
        best = max(got, key=lambda o: (got[o][0], -got[o][1]))
        other = "name" if best == "order" else "order"
        scale = max(got[best][2], got[other][2], 1e-12)
        chosen = {"order": group.by_order, "name": group.by_name}[best]
        evidence = {"group": group.to_list(), "chosen": chosen,
                    "logits_error": {o: got[o][1] for o in got}, "levels_found": {o: got[o][0] for o in got}}
        if got[other][1] <= SAME_REL * scale and got[other][0] == got[best][0]:
            choices[key] = "name"
            resolved.append({**evidence, "chosen": group.by_name, "equivalent": True})
        elif got[best][0] > got[other][0] or got[best][1] <= CLEARLY * got[other][1]:
            choices[key] = best
            resolved.append(evidence)
        else:
            choices[key] = "name"
            ambiguous.append(group.to_list())
    final = build(choices)
    final.resolved = resolved
    final.ambiguous = ambiguous
    return final


# ----------------------------------------------------------------------------------------------------------
# Pairing the modules that names alone leave unpaired, by what they compute: their parameter shapes (not their
# class: a hand-written LSTM or a Linear under another parent is the same computation), whether and in which
# order they are called, and their names as a last resort.
#
# Parameters set on a container (the model's root, or a module that also holds submodules: a loose
# `nn.Parameter` such as an attention query) are paired one by one the same way, by shape and the order of
# their first use in the forward (compare.structure.trace_calls records it), once the modules are paired.
#
# Within a group of same-shaped modules, called modules pair with called ones in call order and never-called ones
# (the original's unused performance encoder) with never-called ones. When call order and name similarity
# disagree, the group is "undecided": both assignments are kept for compare.weight_mapping to settle by value (the
# reference's weights copied either way, the logits compared).

MAX_EXHAUSTIVE = 6  # groups up to this size try every assignment by name (720 at most)


@dataclass
class Group:
    """Same-signature modules of both sides, with the assignment each rule gives (reference -> candidate)."""

    reference: list[str]
    candidate: list[str]
    by_order: dict[str, str]
    by_name: dict[str, str]

    @property
    def decided(self) -> bool:
        return self.by_order == self.by_name

    def to_list(self) -> list[str]:
        return sorted(self.reference) + ["<->"] + sorted(self.candidate)


def tokens(name: str) -> set[str]:
    """Words of a dotted name, plural 's' dropped ("voices" and "voice" are one word)."""
    words = (t for t in re.split(r"[._]", name.lower()) if t and not t.isdigit())
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words}


def similarity(a: str, b: str) -> float:
    ta, tb = tokens(a), tokens(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 0.0


def kind(module: nn.Module) -> str:
    """What kind of computation a module's own parameters take part in: the RNN mode for any recurrent module
    (nn.LSTM or a subclass, or a hand-written cell with nn.LSTM's parameter names: its recurrent weight has 4
    gate blocks of the hidden size for an LSTM, 3 for a GRU), otherwise nothing beyond the shapes."""
    if isinstance(module, nn.RNNBase):
        return module.mode
    recurrent = module._parameters.get("weight_hh_l0")
    if recurrent is not None and recurrent.dim() == 2 and recurrent.shape[1] > 0:
        gates = recurrent.shape[0] // recurrent.shape[1]
        if recurrent.shape[0] % recurrent.shape[1] == 0 and gates in (1, 3, 4):
            return {4: "LSTM", 3: "GRU", 1: "RNN_TANH"}[gates]
    return ""


def signature(module: nn.Module) -> tuple:
    """Kind and own parameter shapes in registration order (names and class do not count)."""
    return kind(module), tuple(tuple(p.shape) for p in module.parameters(recurse=False))


def structure_key(module: nn.Module) -> tuple:
    """Kind and the ranks of the own parameters: a Linear of any width has the key of every other Linear."""
    return kind(module), tuple(p.dim() for p in module.parameters(recurse=False))


def ranks(model: nn.Module, order: Sequence[str] | None) -> dict[str, int]:
    """Module -> position of its first call (a module never called itself takes its first-called descendant's)."""
    rank = {name: i for i, name in enumerate(order or [])}
    out: dict[str, int] = {}
    for name, _ in model.named_modules():
        own = rank.get(name)
        below = [r for n, r in rank.items() if name == "" or n.startswith(name + ".")]
        best = min([r for r in [own, *below] if r is not None], default=None)
        if best is not None:
            out[name] = best
    return out


def _assign_by_order(refs: list[str], cands: list[str], rank_r: dict[str, int], rank_c: dict[str, int]) -> dict:
    out: dict[str, str] = {}
    called_r = sorted((n for n in refs if n in rank_r), key=rank_r.__getitem__)
    called_c = sorted((n for n in cands if n in rank_c), key=rank_c.__getitem__)
    out.update(zip(called_r, called_c, strict=False))
    idle_r = [n for n in refs if n not in rank_r]
    idle_c = [n for n in cands if n not in rank_c]
    out.update(_assign_by_name(idle_r, idle_c))
    return out


def _assign_by_name(refs: Iterable[str], cands: list[str]) -> dict[str, str]:
    """The assignment with the most total name similarity (every assignment tried for groups of up to 6; ties
    keep the registration order), greedy beyond that."""
    refs = list(refs)
    if 0 < len(refs) <= MAX_EXHAUSTIVE and 0 < len(cands) <= MAX_EXHAUSTIVE:
        if len(refs) <= len(cands):
            options = [dict(zip(refs, perm, strict=False)) for perm in itertools.permutations(cands, len(refs))]
        else:
            options = [dict(zip(perm, cands, strict=False)) for perm in itertools.permutations(refs, len(cands))]
        return max(options, key=lambda o: sum(similarity(r, c) for r, c in o.items()))
    out: dict[str, str] = {}
    left = list(cands)
    for r in refs:
        if not left:
            break
        best = max(left, key=lambda c: (similarity(r, c), -left.index(c)))
        left.remove(best)
        out[r] = best
    return out


def _buckets(names: Iterable[str], wanted: Iterable[str], key_of) -> dict[tuple, list[str]]:  # noqa: ANN001
    """The wanted names grouped by `key_of(name)`, in the given (registration) order: deterministic, and the
    order ties keep."""
    keep = set(wanted)
    out: dict[tuple, list[str]] = defaultdict(list)
    for n in names:
        if n in keep:
            out[key_of(n)].append(n)
    return out


def _group(names_r: list[str], names_c: list[str], rank_r: dict[str, int], rank_c: dict[str, int],
           by_names: bool) -> Group:
    """One group's assignments: a single pair is decided; otherwise by call order (first use), and by name
    similarity as the other opinion when `by_names`."""
    if len(names_r) == 1 and len(names_c) == 1:
        pair = {names_r[0]: names_c[0]}
        return Group(names_r, names_c, pair, pair)
    by_order = _assign_by_order(names_r, names_c, rank_r, rank_c)
    by_name = _assign_by_name(names_r, names_c) if by_names else by_order
    return Group(sorted(names_r), sorted(names_c), by_order, by_name)


def group_modules(reference: nn.Module, candidate: nn.Module, ref_modules: Iterable[str], cand_modules: Iterable[str],
                  ref_order: Sequence[str] | None, cand_order: Sequence[str] | None,
                  key: str = "signature") -> list[Group]:
    """Groups of same-signature (or, with key="structure", same-structure) modules and their assignments."""
    of = signature if key == "signature" else structure_key
    mods_r = dict(reference.named_modules())
    mods_c = dict(candidate.named_modules())
    rank_r, rank_c = ranks(reference, ref_order), ranks(candidate, cand_order)
    groups_r = _buckets(mods_r, ref_modules, lambda n: of(mods_r[n]))
    groups_c = _buckets(mods_c, cand_modules, lambda n: of(mods_c[n]))
    out = []
    for sig, names_r in groups_r.items():
        names_c = groups_c.get(sig, [])
        if not names_c or (key != "signature" and len(names_r) != len(names_c)):
            continue
        out.append(_group(names_r, names_c, rank_r, rank_c, by_names=key == "signature"))
    return out


def container_parameters(model: nn.Module) -> set[str]:
    """Parameters held directly by a module that also has submodules (the model's root included): loose
    parameters, used in a forward rather than by a module of their own."""
    out: set[str] = set()
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            out.update(f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False))
    return out


def parameter_ranks(model: nn.Module, order: Sequence[str] | None) -> dict[str, int]:
    """Parameter -> position of its first use: its own entry in `order` (a loose parameter's use recorded by
    trace_calls) or else its module's own first call (not a descendant's: a parameter on the model's root that
    the forward never reads has no rank)."""
    rank = {name: i for i, name in enumerate(order or [])}
    out: dict[str, int] = {}
    for name, _ in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        r = rank.get(name, rank.get(owner) if owner else None)
        if r is not None:
            out[name] = r
    return out


def group_parameters(reference: nn.Module, candidate: nn.Module, ref_names: Iterable[str],
                     cand_names: Iterable[str], ref_order: Sequence[str] | None,
                     cand_order: Sequence[str] | None) -> list[Group]:
    """Groups of same-shaped single parameters (size-1 dimensions aside) and their assignments (by first use;
    by name similarity)."""
    # shapes without size-1 dimensions: a query kept as (heads, d) is the original's (heads, d, 1)
    shapes_r = {n: tuple(d for d in p.shape if d != 1) for n, p in reference.named_parameters()}
    shapes_c = {n: tuple(d for d in p.shape if d != 1) for n, p in candidate.named_parameters()}
    rank_r, rank_c = parameter_ranks(reference, ref_order), parameter_ranks(candidate, cand_order)
    groups_r = _buckets(shapes_r, ref_names, shapes_r.__getitem__)
    groups_c = _buckets(shapes_c, cand_names, shapes_c.__getitem__)
    out = []
    for shape, names_r in groups_r.items():
        names_c = groups_c.get(shape, [])
        if names_c:
            out.append(_group(names_r, names_c, rank_r, rank_c, by_names=True))
    return out


# ----------------------------------------------------------------------------------------------------------
# Weight mapping between two differently named models.
#
# Pairs are found in passes: (1) overrides (the adapter's mapping, then a TOML `[map] "reference.name" =
# "candidate.name"` file); (2) identical names with identical shapes; (3) for the rest, modules grouped by what they
# compute (parameter shapes, not class: compare.weight_mapping) and paired by call order, with name similarity as the
# other opinion (groups where the two disagree are settled by value in compare.weight_mapping); (4) a module shared
# under two names in the candidate where the original has two modules is recorded as tied; (5) what is left is
# paired by call order among modules of the same kind with other shapes (a resized Linear is a shape conflict, not
# a missing and an extra module); (6) parameters held directly by a container (a loose `nn.Parameter` on the
# model's root, or the original's context vector inside its attention module) are paired one by one, by shape and
# the order of their first use, with name similarity as the other opinion (settled by value like the modules).
#
# Nothing here raises on a bad mapping: an override naming a parameter that does not exist, or pairing two
# shapes, is recorded and reported as a structure finding; parameters without a partner are reported, never
# silently dropped. Weights are copied into the candidate, never shared.

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
    """The `[map]` table of an override file ({} for None); see compare.weight_mapping (InputError when bad)."""

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


def copy_shared_columns(reference: nn.Module, candidate: nn.Module, weight_map: WeightMap,
                        columns: Sequence[int | None], reference_width: int) -> list[str]:
    """For a candidate built for another input width (`columns[j]`: the reference's input column its column j
    takes, None for one the reference lacks): copy the reference's weights of the shared columns into every input
    projection whose shape conflicts only there ((out, reference_width) against (out, len(columns)): a Linear's
    weight, an LSTM's weight_ih), zeros in the others, so the comparison goes on on the columns both have.
    Returns the candidate parameters filled so."""
    ref = dict(reference.named_parameters())
    cand = dict(candidate.named_parameters())
    taken = [j for j, c in enumerate(columns) if c is not None]
    filled = []
    with torch.no_grad():
        for r, c, rs, cs in weight_map.shape_conflicts:
            if len(rs) != 2 or len(cs) != 2 or rs[0] != cs[0] or rs[1] != reference_width or cs[1] != len(columns):
                continue
            weight = torch.zeros_like(cand[c])
            weight[:, taken] = ref[r].detach().to(weight.dtype)[:, [columns[j] for j in taken]]
            cand[c].copy_(weight)
            filled.append(c)
    return filled


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
