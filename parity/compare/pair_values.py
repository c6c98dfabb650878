"""Settling, by value, the module pairings that call order and names disagree on.

For each undecided group (compare.pairing) both assignments are tried: the reference's weights are copied into a
scratch copy of the candidate either way and the candidate runs on the first batch. The assignment under which
more of the reference's levels are found by value in the candidate's forward wins (a later deviation, such as a
wrong head, spoils the logits of both but not the levels before it); with as many levels found, the one whose
logits are clearly nearer the reference's (at most half the other's error). When neither wins, the group stays
ambiguous and the structure check says so as a warning; when both agree with the reference, the modules are
interchangeable here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from percepiano_parity.compare.mapping import WeightMap

CLEARLY = 0.5  # the winner's logits error is at most this fraction of the other assignment's
SAME_REL = 1e-5  # both within this of the logits' magnitude: the assignments are equivalent on this batch

Build = Callable[[Mapping[tuple[str, ...], str]], WeightMap]


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
