"""Where the candidate computes each of the original's levels, and how it is called: the forward check's
location and calling tables, for a user's model whose levels were found by value (compare.locate).

Findings: one information finding with the calling conventions (declared, detected, and the inversion of sigmoid
outputs when the model returns predictions). A level found nowhere is reported by the forward check itself: a
mismatch at that level measured on the nearest tensor, or a missing level (warning) when nothing fits.
"""

from __future__ import annotations

from typing import Any

from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.levels import level_order

CHECK = "forward"


def location_rows(state: ComparisonState) -> list[dict[str, Any]]:
    """One row per level or attention map: found (yes / nearest / no), operation, module, source line."""
    rows = []
    for name in sorted([*state.located, *state.not_located], key=level_order):
        site = state.located.get(name)
        if site is None:
            derived = name in state.derived
            rows.append({"level": name, "found": "no", "op": "adapter.run_level" if derived else "—",
                         "module": "—", "source": "—", "called_from": "—",
                         "layout": "no tensor of a fitting shape" + (
                             "; computed by the adapter's run_level from the replica's own inputs" if derived else ""),
                         "recorded_at": "—", "max_rel": None})
            continue
        rows.append({k: site.get(k) or "—" if k != "max_rel" else site.get(k)
                     for k in ("level", "found", "op", "module", "source", "called_from", "layout", "recorded_at",
                               "max_rel")})
    return rows


def calling_finding(state: ComparisonState) -> Finding | None:
    if not state.conventions:
        return None
    parts = [f"{row['convention']} {row['value']} ({row['how']})" for row in state.conventions
             if row["convention"] != "logits"]
    inverted = any(row["convention"] == "logits" for row in state.conventions)
    message = f"the {state.candidate_name} is called with " + ", ".join(parts)
    if inverted:
        message += "; it returns sigmoid outputs, inverted to logits in float64 for the comparison"
    return Finding(CHECK, "forward.calling_conventions", "calling", Severity.INFO, message,
                   evidence={"conventions": list(state.conventions)})


def located_on_finding(state: ComparisonState) -> Finding | None:
    """Which batch the levels were found on: the Located table's max_rel is that batch's, while the forward
    check's mismatches are over every batch (a level can agree there and differ on another)."""
    on = state.located_on
    if not on:
        return None
    lengths = on.get("lengths") or []
    return Finding(CHECK, "forward.located_on", "located", Severity.INFO,
                   f"levels were found by value on {on.get('items')} of the {on.get('of_items')} items of batch "
                   f"{on.get('batch', 0) + 1} of {on.get('batches', 1)} "
                   f"({', '.join(on.get('tags') or []) or 'generated'}; lengths {', '.join(map(str, lengths))}): "
                   "the Located table's max_rel is measured there; the forward check compares every batch",
                   evidence=dict(on))


def nearest_note(state: ComparisonState, level: str) -> str:
    """For a level that was not found by value: which tensor stands in for it, for the finding's message."""
    site = state.located.get(level)
    if site is None or site.get("found") != "nearest":
        return ""
    return (f"; not found by value in the {state.candidate_name}'s forward: nearest tensor {site['op']} in "
            f"{site['module']} at {site['source']}")


def location_tables(state: ComparisonState) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    if state.located or state.not_located:
        tables["located"] = location_rows(state)
    if state.conventions:
        tables["calling"] = [dict(row) for row in state.conventions]
    return tables
