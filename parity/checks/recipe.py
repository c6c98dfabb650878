"""Recipe check: the original's effective training configuration against the replica's, key by key.

The original side comes from the checkout as text (`recipe_source`, `recipe_original`), or is the recorded
recipe without one; the replica side is a `Recipe`, an optimizer (+ scheduler) pair or a Lightning-style
`configure_optimizers()` (`recipe_candidate`). Keys the replica's objects cannot tell are reported as unknown,
not as findings.

"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult
from percepiano_parity.original_adapter.recipe import (
    KEYS,
    LONGEST_SEGMENT,
    REPLICA_UPDATE_ORDER,
    TRAIN,
    OriginalRecipe,
    original_recipe,
)
from percepiano_parity.subjects.recipe import (
    CandidateRecipe,
    read_candidate,
)

CHECK = "recipe"
KIND = "recipe.mismatch"

_SCHEDULER_KEYS = ("scheduler_step_size", "scheduler_gamma", "scheduler_interval")


# =========================================================================================================
# The original side
# =========================================================================================================


# =========================================================================================================
# The replica side
# =========================================================================================================


# =========================================================================================================
# The comparison
# =========================================================================================================

def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _severity(key: str, original: dict[str, Any], replica: dict[str, Any]) -> Severity:
    if key == "seed":
        return Severity.INFO
    if key in ("epochs", "validation", "early_stopping"):
        return Severity.WARNING
    if key in ("slice_length", "slices_regenerated_each_epoch"):
        lengths = [v for v in (original.get("slice_length"), replica.get("slice_length")) if isinstance(v, int)]
        return Severity.ERROR if lengths and min(lengths) <= LONGEST_SEGMENT else Severity.WARNING
    return Severity.ERROR


_NOTE = {
    "slices_regenerated_each_epoch": "no effect while every segment is shorter than slice_length (PercePiano "
                                     f"segments have at most {LONGEST_SEGMENT} notes)",
    "slice_length": f"PercePiano segments have at most {LONGEST_SEGMENT} notes",
    "label_file": "the two label files differ in 13 labels, 13 keys and 492 pianist indices",
}


def _label_files_equal(original: OriginalRecipe, replica_path: Any) -> bool | None:
    """With a checkout, whether both paths name files with identical content (None when unresolvable)."""
    if original.root is None or not isinstance(replica_path, str):
        return None
    from percepiano_parity.batches.real.labels import resolve_label_file, sha256_of

    mine = resolve_label_file(replica_path, [original.root])
    theirs = resolve_label_file(str(original.values.get("label_file")), [original.root])
    if mine is None or theirs is None:
        return None
    return sha256_of(mine) == sha256_of(theirs)


def compare(original: OriginalRecipe, candidate: CandidateRecipe) -> CheckResult:
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    orig, repl = original.values, candidate.values
    for key in KEYS:
        o, r = orig.get(key), repl.get(key)
        source = original.sources.get(key, "")
        if key not in candidate.known:
            status = "unknown"
        elif _not_applicable(key, orig, repl):
            status = "n/a"
        elif key == "label_file":
            same_file = _label_files_equal(original, r)
            status = "match" if (same_file if same_file is not None else _same_path(o, r)) else "mismatch"
        else:
            status = "match" if _same(o, r) else "mismatch"
        rows.append({"key": key, "original": _jsonable(o), "replica": _jsonable(r), "status": status,
                     "source": source, "replica_source": candidate.sources.get(key, "")})
        if status != "mismatch":
            continue
        severity = _severity(key, orig, repl)
        note = _NOTE.get(key, "")
        findings.append(Finding(
            CHECK, KIND, key, severity,
            f"recipe {key} differs: original {o!r}, replica {r!r}" + (f" ({note})" if note else ""),
            metrics={"original": _jsonable(o), "replica": _jsonable(r), **_key_metrics(key, candidate)},
            evidence={"original": _jsonable(o), "replica": _jsonable(r), "source": source,
                      "replica_source": candidate.sources.get(key) or candidate.description,
                      **_key_evidence(key, candidate)}))
    if "update_order" in original.extra:
        mine = REPLICA_UPDATE_ORDER if candidate.description == "replica Recipe" else None
        rows.append({"key": "update_order", "original": original.extra["update_order"], "replica": mine,
                     "status": "info" if mine is None else ("match" if mine == original.extra["update_order"]
                                                            else "differs"),
                     "source": f"{TRAIN} def train_step"})
    unknown = [r["key"] for r in rows if r["status"] == "unknown"]
    findings.append(Finding(
        CHECK, "recipe.reference", "original", Severity.INFO,
        ("original recipe read from the checkout" if original.mode == "checkout"
         else "no checkout: compared against the recorded recipe")
        + f"; replica side: {candidate.description}",
        metrics={"keys": len(KEYS), "mismatches": sum(1 for r in rows if r["status"] == "mismatch"),
                 "unknown": sum(1 for r in rows if r["status"] == "unknown")},
        evidence={"source": original.mode if original.mode == "recorded" else str(original.root),
                  "notes": original.notes, "replica": candidate.description, "replica_notes": candidate.notes,
                  "unknown": unknown, **({"unknown_hint": UNKNOWN_HINT} if unknown else {})}))
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    return CheckResult(CHECK, status, findings, tables={"recipe": rows})


UNKNOWN_HINT = ("keys the replica's objects cannot tell: give its adapter a `trainer` (a Lightning Trainer or "
               "its keyword arguments) for clipping, precision, accumulation, epochs and model selection, and a "
               "`recipe(model)` returning a replica.recipe.Recipe for the rest (docs/user_replica.md)")


def _not_applicable(key: str, orig: dict[str, Any], repl: dict[str, Any]) -> bool:
    """Keys that mean nothing on one side: scheduler settings without a scheduler, the clipping algorithm
    without clipping, the checkpoint mode without a monitored metric."""
    if key in _SCHEDULER_KEYS:
        return orig.get("scheduler") == "none" or repl.get("scheduler") == "none"
    if key == "grad_clip_algorithm":
        return orig.get("grad_clip") is None or repl.get("grad_clip") is None
    if key == "checkpoint_mode":
        return "none" in (orig.get(key), repl.get(key))
    return False


def _key_evidence(key: str, candidate: CandidateRecipe) -> dict[str, Any]:
    """What was measured behind a key: the loss relation that holds (or the closest), with its figures."""
    reading = candidate.loss_reading
    if key in ("loss", "loss_reduction") and reading is not None and reading.error is None:
        return {"loss_reading": reading.to_dict()}
    return {}


def _key_metrics(key: str, candidate: CandidateRecipe) -> dict[str, Any]:
    """Measured figures behind a key: the replica's loss over the original's on the same logits, the batch's
    element count (items x labels) and the residual of the relation."""
    reading = candidate.loss_reading
    if key in ("loss", "loss_reduction") and reading is not None and reading.error is None:
        return {"loss_ratio": reading.ratio, "loss_elements": reading.elements, "loss_items": reading.items,
                "loss_labels": reading.labels, "relation_residual": reading.residual}
    return {}


def _same_path(a: Any, b: Any) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return a == b
    norm = [str(Path(p.removeprefix("./"))) for p in (a, b)]
    return norm[0] == norm[1]


def run(reference_recipe_source: Any, candidate_recipe: Any, variant: str) -> CheckResult:
    """The recipe check: `reference_recipe_source` is an adapter Original, a checkout path or None
    (recorded recipe); `candidate_recipe` anything `read_candidate` takes."""
    return compare(original_recipe(reference_recipe_source, variant), read_candidate(candidate_recipe))


def rows_by_key(result: CheckResult) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in result.tables.get("recipe", [])}


def mismatched(result: CheckResult) -> set[str]:
    return {f.location for f in result.findings if f.kind == KIND}
