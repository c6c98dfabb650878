"""Forward check: per level, identical weights and batches, eval mode; where the candidate computes each
level; and the findings of the relation tests at each independent root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from percepiano_parity.compare.aggregate import DiffAgg, LevelAgg
from percepiano_parity.compare.state import ComparisonState, first_divergent, root_level
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.levels import LEVEL_SPACE, level_order
from percepiano_parity.core.report import CheckResult

# ----------------------------------------------------------------------------------------------------------
# Where the candidate computes each of the original's levels, and how it is called: the forward check's
# location and calling tables, for a user's model whose levels were found by value (compare.locate).
#
# Findings: one information finding with the calling conventions (declared, detected, and the inversion of sigmoid
# outputs when the model returns predictions). A level found nowhere is reported by the forward check itself: a
# mismatch at that level measured on the nearest tensor, or a missing level (warning) when nothing fits.

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


# ----------------------------------------------------------------------------------------------------------
# Findings from the relation tests at each independent root level (compare.relations.search).
#
# For every root: a `forward.relation` finding per relation that holds (the measured residual, the operation,
# the original's source line and the fix spec ride along as evidence), or one `forward.relations_tested` finding
# saying what was tested and how close the nearest came. A root after the first is also named by a
# `forward.root` finding: a second, independent mistake, with its own explanation.


def short_site(site: str | None) -> str | None:
    """'/long/path/to/file.py:12' -> 'file.py:12'."""
    if not site or ":" not in site:
        return site
    path, _, line = site.rpartition(":")
    return f"{Path(path).name}:{line}"


def relation_findings(state: ComparisonState) -> list[Finding]:
    out: list[Finding] = []
    for order, result in enumerate(state.relations):
        level = result.get("level", "")
        common: dict[str, Any] = {"root_level": level, "root_index": order, "batch": result.get("batch"),
                                  "tolerance": result.get("tolerance"), "tested": result.get("tested", []),
                                  "level_baseline": result.get("baseline"),
                                  "teacher_forced": result.get("teacher_forced")}
        if result.get("first_op"):
            common["first_op"] = result["first_op"]
        if order:
            out.append(Finding(CHECK, "forward.root", level, Severity.INFO,
                               f"level {level} also differs on its own inputs: a second, independent root",
                               evidence={"root_level": level, "root_index": order}))
        holds = result.get("holds", [])
        for rank, rel in enumerate(holds):
            out.append(Finding(
                CHECK, "forward.relation", f"{level}:{rel['kind']}", Severity.INFO,
                f"at {level}: {rel['summary']} (residual {rel['residual']})",
                metrics={"residual": rel["residual"], "baseline": rel.get("baseline")},
                evidence={**common, **rel, "rank": rank, "op_short": short_site(rel.get("op_site")),
                          "original_short": short_site(rel.get("original_site"))}))
        if not holds:
            closest = result.get("closest") or {}
            note = result.get("note") or result.get("op_note") or ""
            tested = ", ".join(sorted({t["kind"] for t in result.get("tested", [])})) or "none could run"
            text = (f"at {level}: no tested relation holds (tested: {tested})"
                    + (f"; closest: {closest['kind']}, residual {closest['residual']}" if closest else "")
                    + (f"; {note}" if note else ""))
            out.append(Finding(CHECK, "forward.relations_tested", level, Severity.INFO, text,
                               metrics={"closest_residual": closest.get("residual")},
                               evidence={**common, "closest": closest, "note": note}))
    return out


# ----------------------------------------------------------------------------------------------------------
# Batches one side raised on (compare.raises): a crash is a deviation. The replica raising where the original runs
# is an error (a training run would stop where the original's goes on); the original raising where the replica
# returns values is a warning (the replica computes something the original never did, on inputs the original
# cannot take); both raising is agreement, said in an information finding with both exceptions.


def _batch_words(entry: dict[str, Any]) -> str:
    lengths = entry.get("lengths") or []
    shown = ", ".join(map(str, lengths[:6])) + (", ..." if len(lengths) > 6 else "")
    items = entry.get("items", len(lengths))
    return (f"batch {entry['batch'] + 1} ({', '.join(entry.get('tags') or []) or 'generated'}; {items} "
            f"item{'s' if items != 1 else ''}, length{'s' if items != 1 else ''} {shown})")


def _raised_words(failure: dict[str, Any]) -> str:
    text = f"{failure['type']}: {failure['message']}" if failure.get("message") else str(failure["type"])
    stands_for = failure.get("stands_for")
    if stands_for and stands_for != failure["type"] and f"raises {stands_for}" not in text:
        text += f" (where the original raises {stands_for})"
    return text + (f" (at {short_site(failure['where'].split(', in ')[0])})" if failure.get("where") else "")


def _clamp_words(entry: dict[str, Any]) -> str:
    clamps = [c for c in entry.get("candidate_clamps") or [] if c.get("integer")]
    if not clamps:
        return ""
    first = clamps[0]
    where = short_site(first["where"].split(", in ")[0]) if first.get("where") else "its forward"
    return f" (it clamps: {first['op']} at {where} changed {first['changed']} index values)"


def raise_findings(state: ComparisonState) -> list[Finding]:
    """One finding per batch a side raised on (see above), with the batch, both sides' exceptions and, for a
    replica that returned values, the clamps that changed values, as evidence."""
    out: list[Finding] = []
    ref, cand = state.reference_name, state.candidate_name
    for entry in state.raised:
        where = f"{(entry.get('tags') or ['batch'])[0]}#{entry['batch']}"
        batch = _batch_words(entry)
        r, c, result = entry.get("reference"), entry.get("candidate"), entry.get("outcome")
        evidence = dict(entry)
        if result == "replica_raises" and c is not None:
            out.append(Finding(CHECK, "forward.replica_raises", where, Severity.ERROR,
                               f"the {cand} raises on {batch}, which the {ref} runs: {_raised_words(c)}",
                               metrics={"items": entry.get("items")}, evidence=evidence))
        elif result == "original_raises" and r is not None:
            out.append(Finding(CHECK, "forward.original_raises", where, Severity.WARNING,
                               f"the {ref} raises {r['kind']} on {batch}: {_raised_words(r)}; the {cand} returns "
                               f"values{_clamp_words(entry)}", metrics={"items": entry.get("items")},
                               evidence=evidence))
        elif r is not None and c is not None:
            alike = "alike" if result == "both_raise_alike" else f"with another kind of error ({c['kind']})"
            out.append(Finding(CHECK, "forward.raises_alike", where, Severity.INFO,
                               f"both raise on {batch}, {alike}: the {ref} {_raised_words(r)}; the {cand} "
                               f"{_raised_words(c)}", evidence=evidence))
    return out


def raised_rows(state: ComparisonState) -> list[dict[str, Any]]:
    """The forward check's `raised_batches` table: one row per batch a side raised on (batch number from 1, its
    tags and lengths, what each side did, the outcome)."""
    def side(failure: dict[str, Any] | None) -> str:
        return "returns values" if failure is None else f"{failure['type']}: {failure.get('message') or ''}"[:120]

    return [{"batch": entry["batch"] + 1, "tags": ", ".join(entry.get("tags") or []) or "generated",
             "lengths": ", ".join(map(str, entry.get("lengths") or [])), "original": side(entry.get("reference")),
             "replica": side(entry.get("candidate")), "outcome": str(entry.get("outcome", "")).replace("_", " ")}
            for entry in state.raised]


# ----------------------------------------------------------------------------------------------------------
# Inputs computed outside the levels (compare.derived_inputs): the first divergent level agrees on the original's
# inputs but not in the free run. One information finding: the input the candidate computes differently, how, the
# line, and the level's error before and after the original's value was put in its place (or what was tested).


def derived_input_findings(state: ComparisonState) -> list[Finding]:
    result = state.derived_input
    if not result:
        return []
    level, found = result.get("level", ""), result.get("found")
    common = {"root_level": level, "batch": result.get("batch"), "tested": result.get("tested", []),
              "threshold": result.get("threshold")}
    if found:
        where = short_site(found.get("where"))
        agree = [f"{'the logits' if name == 'logits' else name} agree{'s' if name != 'logits' else ''} (largest "
                 f"difference {found[key]:.3g}, from {found[base]:.3g})"
                 for name, key, base in ((level, "residual", "baseline"), ("logits", "logits_residual",
                                                                           "logits_baseline"))
                 if name in found.get("agree", ()) and found.get(key) is not None and found.get(base) is not None]
        return [Finding(
            CHECK, "forward.derived_input", f"{level}:{found['input']}", Severity.INFO,
            f"at {level} (its own error is within tolerance on the {state.reference_name}'s inputs): {found['how']}, "
            f"as the {state.candidate_name} computes them ({found['op']} at {where}); with the "
            f"{state.reference_name}'s values there, {' and '.join(agree)}",
            metrics={"residual": found["residual"], "baseline": found["baseline"],
                     "logits_residual": found.get("logits_residual"), "logits_baseline": found.get("logits_baseline")},
            evidence={**common, **found, "where_short": where, "agree_words": " and ".join(agree)})]
    tested = ", ".join(sorted({f"{t['input']} ({t['relation']})" for t in result.get("tested", [])})) or "none"
    note = result.get("note", "")
    return [Finding(CHECK, "forward.derived_inputs_tested", level, Severity.INFO,
                    f"at {level} (its own error is within tolerance on the {state.reference_name}'s inputs): no input "
                    f"computed outside the levels explains the difference (suspects tried: {tested})"
                    + (f"; {note}" if note else ""), evidence={**common, "note": note})]


# ----------------------------------------------------------------------------------------------------------
# Forward check: per level, identical weights and batches, eval mode; real and padded positions apart.
#
# Each level is judged on its cumulative (free-running) error and, where the candidate can be teacher-forced,
# on its local error (the level computed from the reference's own inputs). The first divergent level is the
# first with cumulative error beyond tolerance; the root-cause level is the first with local error beyond it.


def _fmt(agg: DiffAgg) -> str:
    if agg.shape_mismatch:
        return f"shape {tuple(agg.shape_mismatch[0])} vs {tuple(agg.shape_mismatch[1])}"
    return (f"Mismatched elements: {agg.beyond} / {agg.numel} ({100 * agg.share_beyond:.1f}%); greatest absolute "
            f"difference {agg.max_abs:.3g} ({agg.max_rel:.3g} relative) up to {agg.threshold:.3g} allowed")


def run(state: ComparisonState) -> CheckResult:
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    first = first_divergent(state)
    root = root_level(state)
    earlier_exceeded = False
    for name in sorted(state.levels, key=level_order):
        agg: LevelAgg = state.levels[name]
        real, local = agg.real, agg.local
        # an error is inherited only from an earlier level that differs; with none, it is the level's own (a
        # level the tool laid out wrongly must not pass as a consequence of nothing)
        inherited = local is not None and not local.exceeded and real.exceeded and earlier_exceeded
        earlier_exceeded = earlier_exceeded or real.exceeded
        row = {
            "level": name, "space": str(LEVEL_SPACE.get(name, "")),
            "max_abs": real.max_abs, "max_rel": real.max_rel, "cosine": real.cosine,
            "beyond_tol": real.share_beyond, "pad_max_abs": agg.padded.max_abs if agg.padded.numel else None,
            "local_max_rel": local.max_rel if local is not None else None,
            "cumulative_max_rel": real.max_rel,
            "floor": agg.floor_abs, "floor_rel": agg.floor_rel, "tolerance": real.threshold,
            "tolerance_rel": real.threshold_rel or None,
            "status": "mismatch" if real.exceeded and not inherited else ("inherited" if inherited else "ok"),
        }
        if real.shape_mismatch:
            row["shape"] = f"{tuple(real.shape_mismatch[0])} vs {tuple(real.shape_mismatch[1])}"
        rows.append(row)
        metrics = {"max_abs": real.max_abs, "max_rel": real.max_rel, "cosine": real.cosine,
                   "share_beyond": real.share_beyond, "floor_abs": agg.floor_abs, "floor_rel": agg.floor_rel,
                   "tolerance_abs": real.threshold, "cumulative_max_rel": real.max_rel,
                   "local_max_rel": local.max_rel if local is not None else None,
                   "local_max_abs": local.max_abs if local is not None else None}
        evidence = {"first_bad_batch": real.first_bad_batch, "inherited": inherited,
                    "local_exceeded": bool(local is not None and local.exceeded),
                    "local_available": local is not None}
        if real.shape_mismatch:
            evidence["shapes"] = {"reference": real.shape_mismatch[0], "candidate": real.shape_mismatch[1]}
        if name in state.located:
            evidence["located"] = dict(state.located[name])
        if local is not None and local.shape_mismatch:
            evidence["local_shapes"] = {"reference": local.shape_mismatch[0], "candidate": local.shape_mismatch[1]}
        if agg.pattern.batches:
            # where the mismatches sit (items, rows, batches): lets diagnosis tell look-alike deviations apart
            evidence["pattern"] = agg.pattern.summary()
            evidence["padded_differs"] = bool(agg.padded.numel and agg.padded.exceeded)
        if real.exceeded:
            sev = Severity.INFO if inherited else Severity.ERROR
            kind = "forward.shape_mismatch" if real.shape_mismatch else "forward.mismatch"
            what = "inherits its error from an earlier level" if inherited else "differs"
            findings.append(Finding(
                CHECK, kind, name, sev,
                f"level {name} {what}: {_fmt(real)}; noise floor {agg.floor_abs:.2g}{nearest_note(state, name)}",
                metrics=metrics, evidence=evidence))
        elif local is not None and local.exceeded:
            findings.append(Finding(
                CHECK, "forward.local_mismatch", name, Severity.WARNING,
                f"level {name} alone (teacher-forced) differs: {_fmt(local)}", metrics=metrics, evidence=evidence))
        if agg.padded.numel and agg.padded.exceeded:
            findings.append(Finding(
                CHECK, "forward.padding_mismatch", name, Severity.WARNING,
                f"padded positions of {name} differ: max |diff| {agg.padded.max_abs:.3g} "
                f"(the {state.reference_name}'s padding reaches later levels only through unmasked pooling)",
                metrics={"pad_max_abs": agg.padded.max_abs, "share_beyond": agg.padded.share_beyond},
                evidence={"first_bad_batch": agg.padded.first_bad_batch}))
    for name in sorted(state.levels_only_reference, key=level_order):
        why = (": no tensor of its forward fits this level's shape in any known layout, so it cannot be compared"
               if name in state.not_located else "")
        findings.append(Finding(CHECK, "forward.missing_level", name, Severity.WARNING,
                                f"the {state.candidate_name} does not expose level {name}{why}"))
    for name in sorted(state.levels_only_candidate, key=level_order):
        findings.append(Finding(CHECK, "forward.extra_level", name, Severity.INFO,
                                f"the {state.candidate_name} exposes level {name}, the {state.reference_name} does not"))
    if first is not None:
        findings.append(Finding(
            CHECK, "forward.first_divergent", first, Severity.INFO,
            f"first divergent level: {first}; root-cause level (local error): {root}",
            metrics={}, evidence={"first_divergent_level": first, "root_level": root,
                                  "local_available": state.local_available, "local_note": state.local_note}))
    ops = state.ops
    if ops.get("op"):
        findings.append(Finding(
            CHECK, "forward.first_divergent_op", ops["op"], Severity.INFO,
            f"first divergent operation inside {ops['level']}: {ops['op']} ({ops.get('type')}): {ops['reason']}",
            metrics=dict(ops.get("metrics", {})),
            evidence={k: v for k, v in ops.items() if k not in ("metrics",)}))
    if not ops.get("op"):
        op = next((r.get("first_op") for r in state.relations[:1] if r.get("first_op")), None)
        if op:
            name = op["op"].split(" at ")[0]
            findings.append(Finding(
                CHECK, "forward.first_divergent_op", f"{name} at {short_site(op['site'])}", Severity.INFO,
                f"first divergent operation inside {state.relations[0]['level']}: {op['op']}",
                evidence={**op, "level": state.relations[0]["level"]}))
    findings += relation_findings(state)
    findings += raise_findings(state)
    findings += derived_input_findings(state)
    findings += [f for f in (calling_finding(state), located_on_finding(state)) if f is not None]
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    tables = {"levels": rows, **location_tables(state)}
    if state.raised:
        tables["raised_batches"] = raised_rows(state)
    if ops.get("compared"):
        tables["ops"] = [dict(level=ops["level"], **row) for row in ops["compared"]]
    return CheckResult(CHECK, status, findings, tables=tables)
