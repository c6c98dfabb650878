"""The figures and phrases the recipe rules' texts are filled with, read from the findings they claim.

Every placeholder a recipe rule uses is always filled here (a phrase says what was not measured instead of a
blank): the recipe change, the trajectory's first differing step or that the probe did not show the change,
and the per-key measurements (the loss ratio and element count, the clip values, the weight-decay ratio).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.findings import Finding
from percepiano_parity.diagnosis.match import recipe_measure
from percepiano_parity.diagnosis.rule import having

LABELS = 19  # the original's num_label
BATCH = 8  # the published scripts' --batch_size


def recipe_figures(claimed: Sequence[Finding]) -> dict[str, Any]:
    """recipe_measure's figures plus phrases every recipe rule may use (never left unfilled)."""
    out = recipe_measure(claimed)
    mismatches = having(claimed, "recipe.mismatch")
    by_key = {f.location: f for f in mismatches}
    if out.get("recipe_changes") is None:
        out["recipe_changes"] = "not read from the replica's objects; seen in the training trajectory"
    if not mismatches:
        out["replica_value"] = "a value the recipe check could not read"
    elif out.get("replica_value") is None:
        out["replica_value"] = "none"
    if not out.get("recipe_source"):
        out["recipe_source"] = "the original's recipe, see the recipe table"
    out["trajectory_phrase"] = _trajectory_phrase(claimed)
    for f in having(claimed, "trajectory.randomness"):
        out["randomness_max_rel"] = f.metrics.get("max_rel")
    if "r2_average" in by_key or any(f.kind.startswith("data.") for f in claimed):
        out["data_phrase"] = _data_phrase(claimed)
    # each group only for the keys it describes (the rules that use a phrase match only with those keys)
    for keys, phrases in ((("optimizer", "weight_decay_coupling", "weight_decay", "eps"), _optimizer_phrases),
                          (("grad_clip", "grad_clip_algorithm"), _clip_phrases), (("loss_reduction",), _loss_phrases),
                          (("checkpoint_criterion", "checkpoint_mode", "early_stopping"), _selection_phrases)):
        if any(k in by_key for k in keys):
            out.update(phrases(by_key))
    return out


def _trajectory_phrase(claimed: Sequence[Finding]) -> str:
    steps = [f for f in claimed if f.kind.startswith("trajectory.") and f.kind not in (
        "trajectory.summary", "trajectory.randomness") and f.metrics.get("first_differing_step") is not None]
    if not steps and not having(claimed, "trajectory.summary"):
        return "the training probe did not run, so its steps were not compared"
    if not steps:
        return ("the 5-step training probe shows no difference in loss, gradient norms, lr or parameters within "
                "its tolerances: too few steps for this setting to show")
    first = min(int(f.metrics["first_differing_step"]) for f in steps)
    named = {_SERIES.get(s) for f in steps for s in f.metrics.get("series") or ()} | {
        _SERIES.get(f.kind.removeprefix("trajectory.")) for f in steps}
    series = [n for n in ("the loss", "the gradient norms", "the learning rate", "the parameters") if n in named]
    if not series:
        return f"in the 5-step training probe the two sides part from step {first} on"
    listed = ", ".join(series[:-1]) + (" and " if len(series) > 1 else "") + series[-1]
    return f"in the 5-step training probe {listed} differ from step {first} on"


_SERIES = {"loss": "the loss", "grad_norm_before_clip": "the gradient norms", "grad_norm_after_clip": "the gradient norms",
           "grad_norm": "the gradient norms", "lr": "the learning rate", "drift": "the parameters"}


def _data_phrase(claimed: Sequence[Finding]) -> str:
    data = [f for f in claimed if f.kind.startswith("data.") and f.metrics.get("cases")]
    if not data:
        return "the data check compared no generated cases for it"
    differ = sum(int(f.metrics.get("differ") or 0) for f in data)
    cases = sum(int(f.metrics["cases"]) for f in data)
    return f"{differ} of {cases} generated cases differ"


def _value(f: Finding | None, side: str) -> Any:
    return None if f is None else f.evidence.get(side)


def _optimizer_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "optimizer" in by_key or "weight_decay_coupling" in by_key:
        out["optimizer_effect"] = _optimizer_effect(by_key)
    if "eps" in by_key:
        out["eps_phrase"] = _eps_phrase(by_key["eps"])
    if "weight_decay" in by_key:
        out["weight_decay_phrase"] = _decay_phrase(by_key["weight_decay"])
    return out


def _optimizer_effect(by_key: dict[str, Finding]) -> str:
    coupling = by_key.get("weight_decay_coupling")
    if coupling is not None and _value(coupling, "replica") == "decoupled":
        return ("weight decay is decoupled (as AdamW): the weights shrink by lr x weight_decay at every step apart "
                "from the adaptive step, where the original adds weight_decay x w to the gradient before Adam "
                "normalises it, so parameters with small gradients are decayed much harder there; the decay acts "
                "with another strength on every parameter from the first step")
    if coupling is not None:
        return ("weight decay is added to the gradient (L2, as torch.optim.Adam) where the original's optimizer "
                "decouples it, so the decay acts with another strength on every parameter from the first step")
    return (f"another update rule ({_value(by_key.get('optimizer'), 'replica')}) moves every parameter "
            "differently from the first step")


def _eps_phrase(eps: Finding) -> str:
    original, replica = _value(eps, "original"), _value(eps, "replica")
    if isinstance(original, (int, float)) and isinstance(replica, (int, float)):
        size = "smaller" if replica > original else "larger"
        return (f"with eps {replica:g} instead of {original:g}, parameters whose gradients are of the order of "
                f"{max(original, replica):g} or smaller take {size} steps than the original's")
    return f"with eps {replica!r} instead of {original!r} the steps of small-gradient parameters differ"


def _decay_phrase(decay: Finding) -> str:
    original, replica = _value(decay, "original"), _value(decay, "replica")
    if isinstance(original, (int, float)) and isinstance(replica, (int, float)) and original:
        return f"{replica:g} instead of {original:g} ({replica / original:.4g} x the original's pull towards zero)"
    if isinstance(replica, str):
        return f"{replica} instead of {original!r} on every parameter"
    return f"{replica!r} instead of {original!r}"


def _clip_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    clip = by_key.get("grad_clip")
    replica = _value(clip, "replica")
    original = _value(clip, "original")
    if clip is not None and replica is None:
        phrase = "no clipping at all (a Lightning Trainer clips only when gradient_clip_val is given)"
        effect = (f"Every step whose gradient norm exceeds {original} is rescaled to {original} in the original and "
                  "goes in unchanged in the replica: large gradients of early steps and rare batches move it further")
    elif clip is not None and original is None:
        phrase = f"clipping at a global norm of {replica} where the original does not clip"
        effect = f"Steps whose gradient norm exceeds {replica} are rescaled in the replica only"
    elif clip is not None:
        phrase = f"clipping at a global norm of {replica} instead of {original}"
        low, high = sorted((float(replica), float(original)))
        effect = (f"Steps whose gradient norm lies between {low:g} and {high:g} are rescaled on one side only, and "
                  f"steps above {high:g} are rescaled to another norm")
    else:
        phrase, effect = "the original's clip value", "Clipping acts as in the original"
    algorithm = by_key.get("grad_clip_algorithm")
    return {"clip_phrase": phrase, "clip_effect": effect, "clip_algorithm": _value(algorithm, "replica") or "value"}


def _loss_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    f = by_key.get("loss_reduction")
    reduction = _value(f, "replica")
    metrics = f.metrics if f is not None else {}
    ratio, items, labels = metrics.get("loss_ratio"), metrics.get("loss_items"), metrics.get("loss_labels")
    counted = {"sum": f"all items x labels ({BATCH} x {LABELS} = {BATCH * LABELS} at the published batch size)",
               "sum_over_labels": f"the {LABELS} labels of each item", "sum_over_items": "the items of a batch"}
    what = counted.get(str(reduction), f"a factor ({reduction})")
    if isinstance(ratio, (int, float)) and math.isfinite(ratio) and items and labels:
        measured = (f"measured on a probe batch of {items} items x {labels} labels = {items * labels} elements: "
                    f"the replica's loss is {ratio:.4g} x the original's on the same logits")
    else:
        measured = f"the replica's loss is the original's times the number of elements summed over ({what})"
    return {"reduction_phrase": f"sums over {what} instead of averaging; {measured}",
            "replica_reduction": str(reduction)}


def _selection_phrases(by_key: dict[str, Finding]) -> dict[str, Any]:
    parts = []
    criterion, mode, stopping = (by_key.get(k) for k in ("checkpoint_criterion", "checkpoint_mode", "early_stopping"))
    if criterion is not None:
        replica = _value(criterion, "replica")
        parts.append({"last_epoch": "keeps the last epoch's weights (a checkpoint without a monitored metric)",
                      "none": "keeps no checkpoint"}.get(str(replica), f"keeps the checkpoint with the best {replica}"))
    if mode is not None:
        parts.append(f"selects the {'highest' if _value(mode, 'replica') == 'max' else 'lowest'} monitored value")
    if stopping is not None:
        parts.append(f"stops early on {_value(stopping, 'replica')}")
    return {"selection_phrase": "; ".join(parts) or "selects its model differently"}
