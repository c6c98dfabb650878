"""Structure check: module tree, parameter names/shapes/counts per level, module settings (deepdiff), and
what the weight mapping itself found.
"""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff

from percepiano_parity.compare.state import ComparisonState
from percepiano_parity.compare.structure import level_of
from percepiano_parity.compare.weight_mapping import renames
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult

# ----------------------------------------------------------------------------------------------------------
# What the weight mapping itself found: modules the replica shares where the original has two (tied), mapping
# entries that name nothing, pairings only values could settle or that stay ambiguous, and the renames (a module
# under another name or parent computing the same thing: packaging, not a deviation).
#
# Part of the structure check (checks.structure calls `mapping_findings` and `mapping_tables`).

CHECK = "structure"


def _tied(state: ComparisonState, tie: dict[str, Any]) -> Finding:
    refs, module = list(tie["reference"]), tie["candidate"]
    names = list(tie.get("candidate_names") or [module])
    params = [n for n in state.candidate_structure.get("params", {}) if n.rsplit(".", 1)[0] == module]
    return Finding(
        CHECK, "structure.tied_parameters", refs[-1], Severity.ERROR,
        f"the {state.candidate_name}'s {module} (also registered as {', '.join(n for n in names if n != module) or '—'}) "
        f"stands for both {' and '.join(refs)} of the {state.reference_name}: one set of weights where the "
        f"{state.reference_name} trains {len(refs)} independent ones; {refs[0]}'s weights were copied into it",
        metrics={"reference_modules": len(refs)},
        evidence={"reference_modules": refs, "candidate_module": module, "candidate_names": names,
                  "candidate_parameters": params, "weights_copied_from": refs[0]})


def mapping_findings(state: ComparisonState) -> list[Finding]:
    wm = state.weight_map
    findings = [_tied(state, tie) for tie in wm.tied]
    for entry in wm.bad_overrides:
        findings.append(Finding(
            CHECK, "structure.mapping_entry", entry["reference"], Severity.WARNING,
            f"mapping entry {entry['reference']} -> {entry['candidate']}: {entry['problem']}; the entry is ignored "
            "and the parameter is paired as if it were not there",
            evidence=dict(entry)))
    for group in wm.ambiguous:
        findings.append(Finding(
            CHECK, "structure.ambiguous_mapping", ", ".join(g for g in group if g != "<->"), Severity.WARNING,
            f"same-shaped modules could not be paired for certain ({' '.join(group)}): their call order and their "
            "names disagree and the outputs did not decide; the pairing by name was used; give a mapping if it "
            "is wrong", evidence={"group": group}))
    for settled in wm.resolved:
        how = "are interchangeable on this batch" if settled.get("equivalent") else "were paired by their outputs"
        findings.append(Finding(
            CHECK, "structure.paired_by_values", ", ".join(g for g in settled["group"] if g != "<->"),
            Severity.INFO,
            f"same-shaped modules whose call order and names disagree {how}: "
            + ", ".join(f"{r} -> {c}" for r, c in sorted(settled["chosen"].items())),
            metrics={f"logits_error_by_{k}": v for k, v in settled.get("logits_error", {}).items()},
            evidence=dict(settled)))
    return findings


def mapping_tables(state: ComparisonState) -> dict[str, list[dict[str, Any]]]:
    rows = renames(state.weight_map)
    return {"renames": rows} if rows else {}


# ----------------------------------------------------------------------------------------------------------
# Structure check: module tree, parameter names/shapes/counts per level, module settings (deepdiff).


def _owner(param: str) -> str:
    return param.rsplit(".", 1)[0] if "." in param else ""


def _leaf_sequence(desc: dict[str, Any], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Parameterless modules that change the computation (dropout, activations), in call order."""
    modules = desc.get("modules", {})
    return [dict(modules[n], at=n) for n in desc.get("call_order", []) if modules.get(n, {}).get("type") in kinds]


def input_columns(state: ComparisonState, candidate_param: str) -> dict[str, Any]:
    """For the input projection of a candidate built for another input width (compare.engine: the shared
    columns' weights were copied into it), which columns it takes, lacks and has in excess; {} otherwise."""
    info = state.input_columns
    return dict(info) if info and candidate_param in info.get("filled", ()) else {}


def columns_words(columns: dict[str, Any]) -> str:
    """"; an input projection for 78 columns: it lacks section_tempo (...)" for the shape finding."""
    if not columns:
        return ""
    parts = [f"it lacks {', '.join(columns['missing'])}" if columns.get("missing") else "",
             f"it has {', '.join(columns['extra'])} in excess" if columns.get("extra") else ""]
    said = "; ".join(p for p in parts if p)
    how = "matched by key name" if columns.get("by") == "names" else "matched by position"
    rest = ("the columns it lacks zeroed on both sides" if columns.get("zeroed") else
            "the columns it lacks still fed to the reference" if columns.get("missing") else
            "its extra columns filled with zeros")
    return (f"; an input projection for {columns['model_width']} input columns (the batch has "
            f"{columns['batch_width']})"
            + (f": {said}" if said else "") + f" (compared on the {columns['shared']} columns both have, {how}; "
            f"{rest})")


def run(state: ComparisonState) -> CheckResult:
    ref, cand, wm = state.reference_structure, state.candidate_structure, state.weight_map
    findings: list[Finding] = []
    table: list[dict[str, Any]] = []
    # 1. parameters with no partner
    for name in wm.unmatched_reference:
        unused = state.grads_available and name not in state.reference_with_grad
        sev = Severity.INFO if unused else Severity.ERROR
        why = "never used by the original's forward (no gradient)" if unused else "used by the original"
        findings.append(Finding(
            CHECK, "structure.missing_parameter", name, sev,
            f"{name} {tuple(ref['params'].get(name, []))} has no partner in the {state.candidate_name}; {why}",
            metrics={"numel": _numel(ref["params"].get(name, []))},
            evidence={"module": _owner(name), "module_settings": ref["modules"].get(_owner(name), {}),
                      "level": level_of(name), "used_by_original": not unused}))
    extra_by_module: dict[str, list[str]] = {}
    for name in wm.unmatched_candidate:
        extra_by_module.setdefault(_owner(name), []).append(name)
    for module, names in sorted(extra_by_module.items()):
        settings = cand["modules"].get(module, {})
        numel = sum(_numel(cand["params"][n]) for n in names)
        if module:
            where, what = module, f"{settings.get('type', 'a module')} '{module}'"
        else:  # parameters set on the model itself: named one by one (pairing goes module by module)
            where = ", ".join(names)
            what = (f"parameters set directly on the model ({where}), outside any submodule, that no parameter "
                    "of the original matches by shape and first use,")
        findings.append(Finding(
            CHECK, "structure.extra_module", where, Severity.ERROR,
            f"{state.candidate_name} has {what} with no partner in the {state.reference_name} ({numel} parameters)",
            metrics={"numel": numel},
            evidence={"module": where, "module_type": settings.get("type"), "module_settings": settings,
                      "params": {n: cand["params"][n] for n in names}, "on_model_root": not module}))
        table.append({"path": where, "original": "—", "replica": _short(settings)})
    for r, c, rs, cs in wm.shape_conflicts:
        columns = input_columns(state, c)
        findings.append(Finding(
            CHECK, "structure.shape", r, Severity.ERROR,
            (f"mapped pair {r} -> {c} has shapes {tuple(rs)} and {tuple(cs)}" if r in wm.override_pairs else
             f"{r}: shape {tuple(rs)} in the {state.reference_name}, {tuple(cs)} in the {state.candidate_name}")
            + columns_words(columns),
            evidence={"reference_shape": list(rs), "candidate_shape": list(cs), "candidate_name": c,
                      "module_settings_reference": ref["modules"].get(_owner(r), {}),
                      "module_settings_candidate": cand["modules"].get(_owner(c), {}), "level": level_of(r),
                      **({"input_columns": columns} if columns else {})}))
        table.append({"path": r, "original": str(tuple(rs)), "replica": str(tuple(cs))})
    # 2. settings of paired modules: what they compute, not what they are called (a class is not a deviation)
    # modules paired by their parameters, including those whose parameters conflict in shape (a resized
    # module's settings say how it was resized)
    pairs = sorted({(_owner(r), _owner(c)) for r, c in wm.pairs.items() if r not in wm.loose} |
                   {(_owner(r), _owner(c)) for r, c, _, _ in wm.shape_conflicts})
    for mr, mc in pairs:
        sr, sc = ref["modules"].get(mr, {}), cand["modules"].get(mc, {})
        common = sorted((set(sr) & set(sc)) - {"type", "mode"} - LAYOUT_SETTINGS)
        diff = DeepDiff({k: sr[k] for k in common}, {k: sc[k] for k in common}, ignore_order=True)
        changed = {k: [sr[k], sc[k]] for k in common
                   if any(path.startswith(f"root['{k}']") for path in diff.affected_paths)}
        if sr.get("type") != sc.get("type") and not _known(sc):
            findings.append(Finding(
                CHECK, "structure.implementation", mr, Severity.INFO,
                f"{mr} is implemented by {sc.get('type')} in the {state.candidate_name} ({sr.get('type')} in the "
                f"{state.reference_name}) with the same parameters; it is compared by what it computes",
                evidence={"reference_type": sr.get("type"), "candidate_type": sc.get("type"),
                          "candidate_module": mc, "level": level_of(mr + ".")}))
            if not changed:
                continue
        elif sr.get("type") != sc.get("type"):
            changed = {"type": [sr.get("type"), sc.get("type")], **changed}
        if changed:
            findings.append(Finding(
                CHECK, "structure.setting", mr, Severity.ERROR,
                f"{mr} ({sr.get('type')}) differs: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
                evidence={"reference": sr, "candidate": sc, "candidate_module": mc, "changed": changed,
                          "level": level_of(mr + ".")}))
            for k, (a, b) in changed.items():
                table.append({"path": f"{mr}.{k}", "original": repr(a), "replica": repr(b)})
    # 3. dropout rates and activations in call order: the function calls when both sides recorded them (a
    # functional dropout is a dropout), else the parameterless modules
    for kinds, label in ((("Dropout",), "dropout"), (("GELU", "ReLU", "Tanh", "SiLU", "ELU"), "activation")):
        seq_r, seq_c = _behaviour(ref, cand, kinds, label, wm)
        if seq_r != seq_c and (seq_r or seq_c):
            findings.append(Finding(
                CHECK, f"structure.{label}", label, Severity.ERROR,
                f"{label} in call order differs: {state.reference_name} {_seq(seq_r)}, "
                f"{state.candidate_name} {_seq(seq_c)}",
                evidence={"reference": seq_r, "candidate": seq_c}))
            table.append({"path": f"<{label} sequence>", "original": _seq(seq_r), "replica": _seq(seq_c)})
    # 4. counts
    total_r, total_c = ref.get("total_params", 0), cand.get("total_params", 0)
    if total_r != total_c:
        findings.append(Finding(
            CHECK, "structure.param_count", "total", Severity.INFO,
            f"{total_r:,} parameters in the {state.reference_name}, {total_c:,} in the {state.candidate_name}",
            metrics={"reference": total_r, "candidate": total_c},
            evidence={"reference_per_level": ref.get("params_per_level", {}),
                      "candidate_per_level": cand.get("params_per_level", {})}))
    findings += mapping_findings(state)  # tied modules, mapping entries naming nothing, ambiguous pairings
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    tables = {"diff": table,
              "counts": [{"level": lvl, "original": ref.get("params_per_level", {}).get(lvl, 0),
                          "replica": _mapped_count(state, lvl)} for lvl in sorted(ref.get("params_per_level", {}))],
              **mapping_tables(state)}
    return CheckResult(CHECK, status, findings, tables=tables)


# settings that choose a layout, not a computation: a time-first LSTM in a replica that keeps time first computes
# what the original's batch-first one does (its levels are found by value in either layout)
LAYOUT_SETTINGS = frozenset({"batch_first"})

KNOWN_TYPES = frozenset({"Linear", "LSTM", "GRU", "RNN_TANH", "RNN_RELU", "Dropout", "LayerNorm", "BatchNorm1d",
                         "BatchNorm2d", "GELU", "Embedding", "ContextAttention", "ReLU", "Tanh", "SiLU", "ELU",
                         "Sequential", "ModuleList", "ModuleDict", "Identity"})


def _known(settings: dict[str, Any]) -> bool:
    """Whether a module's settings come from a known type (torch's or the original's): then a type change is a
    change of computation; an unknown class is only judged by its behaviour."""
    return settings.get("type") in KNOWN_TYPES


def _behaviour(ref: dict[str, Any], cand: dict[str, Any], kinds: tuple[str, ...], label: str,
               wm: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The dropout rates (or activation kinds) each side applies, in call order."""
    if "functions" in cand:
        rnn_owners = {_owner(c) for r, c in wm.pairs.items() if "_ih_l" in r}

        def calls(desc: dict[str, Any], skip: set[str]) -> list[dict[str, Any]]:
            if "functions" not in desc:  # a recorded reference: its modules (the original has no functional ones)
                return [_normal(m) for m in _leaf_sequence(desc, kinds)]
            out = []
            for call in desc["functions"]:
                is_dropout = "dropout" in call["fn"]
                if is_dropout != (label == "dropout") or call.get("module") in skip:
                    continue  # an RNN's own inter-layer dropout is compared through its settings
                entry = {"type": "Dropout", "p": call["p"]} if is_dropout else {"type": call["fn"].upper()}
                if call.get("approximate") not in (None, "none"):
                    entry["approximate"] = call["approximate"]
                out.append(dict(entry, at=call.get("module", "")))
            return out
        seq_r, seq_c = calls(ref, set()), calls(cand, rnn_owners)
    else:
        seq_r, seq_c = _leaf_sequence(ref, kinds), _leaf_sequence(cand, kinds)
    strip = [[{k: v for k, v in m.items() if k != "at"} for m in s] for s in (seq_r, seq_c)]
    return (seq_r, seq_c) if strip[0] != strip[1] else (strip[0], strip[1])


def _normal(module: dict[str, Any]) -> dict[str, Any]:
    """A dropout or activation module's settings in the form a recorded function call has."""
    if module.get("type") == "Dropout":
        return {"type": "Dropout", "p": module.get("p"), "at": module.get("at", "")}
    out = {"type": str(module.get("type", "")).upper(), "at": module.get("at", "")}
    if module.get("approximate") not in (None, "none"):
        out["approximate"] = module["approximate"]
    return out


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _short(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _seq(seq: list[dict[str, Any]]) -> str:
    return "[" + ", ".join(m["type"] + (f"(p={m['p']})" if "p" in m else "") for m in seq) + "]"


def _mapped_count(state: ComparisonState, level: str) -> int:
    inv = state.weight_map.reverse()
    params = state.candidate_structure.get("params", {})
    return sum(_numel(shape) for name, shape in params.items() if level_of(inv.get(name, name)) == level)
