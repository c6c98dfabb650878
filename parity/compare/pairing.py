"""Pairing the modules that names alone leave unpaired, by what they compute: their parameter shapes (not their
class: a hand-written LSTM or a Linear under another parent is the same computation), whether and in which
order they are called, and their names as a last resort.

Parameters set on a container (the model's root, or a module that also holds submodules: a loose
`nn.Parameter` such as an attention query) are paired one by one the same way, by shape and the order of
their first use in the forward (compare.structure.trace_calls records it), once the modules are paired.

Within a group of same-shaped modules, called modules pair with called ones in call order and never-called ones
(the original's unused performance encoder) with never-called ones. When call order and name similarity
disagree, the group is "undecided": both assignments are kept for compare.pair_values to settle by value (the
reference's weights copied either way, the logits compared).
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

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
