"""Trajectory check: K optimizer steps on each side from the same weights on the same batches.

What each side runs
-------------------
* reference: the original model built through `original_adapter`, stepped by the original's own
  `train_m2pf.train_step` (forward + loss in `get_batch_result`, zero_grad, backward, `clip_grad_norm_`,
  `optimizer.step()`, `scheduler.step()`), with the optimizer and scheduler its `train()` builds, configured
  from the original's effective recipe. Without the original: the faithful replica with `ORIGINAL_RECIPE`.
* candidate: a private copy of the candidate model stepped by `replica.recipe.train_step` with its own recipe
  (its optimizer and scheduler, rebuilt from its configure_optimizers or objects; its clip value and
  algorithm, accumulation, interval) and its own loss (its `training_step` or its adapter's `loss`, when the
  recipe check read one; else the recipe's), called only through `calling` (the adapter's forward).

Both sides start from the reference's weights (copied through the weight map, with the audit's overrides) and
get the same batches (`batches.plan`: items of pairwise different lengths, so length-dependent mistakes show),
reference in the original's FeatureCollate, candidate in `batches.canonical.collate`. Measurements are taken the
same way on both sides, by observation: the loss, the gradient norm before clipping (post-accumulate-grad
hooks, i.e. right after backward), the gradient norm after clipping and the learning rate (an optimizer step
pre-hook), and the parameter drift ||theta_t - theta_0|| after each step; at the end the greatest |difference|
between mapped parameters. Before training, both sides' eval-mode sigmoid outputs on the first batch are
compared: every finding carries `forward_differs` / `forward_max_abs`, so a trajectory difference that follows
from a forward difference can be told from one the recipe causes.

Randomness: switched off on both sides, in train mode on private copies (not eval(): the training code path
stays the one that runs): every Dropout's p and every RNN's inter-layer dropout set to 0, and dropout in any
other form (`nn.functional.dropout` inside a hand-written cell, `torch.dropout`) made the identity while a
side runs (`calling.no_randomness`). Dropout has to go because the replica's voice LSTM runs all voices in one
batched call (replica/voices.py) while the original loops over voices and feeds dummy rows, so the two consume
the dropout RNG differently and their masks could never match, even from the same seed. Randomness left after
that (two training-mode calls with different seeds differ) is reported as `trajectory.randomness`.

The probe (explicit and applied identically to both sides; recorded in every finding's evidence)
-------------------------------------------------------------------------------------------------------
K=5 steps cannot reach the original's StepLR step of 3000 iterations, and at lr 2.5e-5 with weight decay
1e-5 Adam and AdamW differ by far less than float32 noise; with SMALL_CONFIG the gradient norm (~0.01) never
reaches a clip of 2. So both sides run with:

* StepLR step_size = 2 (keeping each side's gamma), and an "epoch" of 2 iterations for per-epoch stepping:
  per-iteration stepping decays the lr at step 2, per-epoch stepping at step 4, none never;
* weight decay x 1000 on both sides (1e-5 -> 1e-2): L2-in-Adam then moves every weight visibly towards zero
  while AdamW's decoupled decay stays tiny, and a different weight-decay value keeps its ratio;
* clip values x s on both sides, s chosen so the reference clips to half its step-0 gradient norm (s =
  g0 / (2 * reference clip)); a different clip value keeps its ratio and shows in the after-clip norm.

Tolerances: float32, relative 1e-5 on loss, gradient norms, lr and drift norms (absolute 1e-12 for zeros);
final per-parameter difference up to 1e-3 x the first lr (the faithful replica against the original on the
unequal-length probe: 4.7e-10, about 2e-5 x lr); eval-mode sigmoid outputs before training differ when above
FORWARD_TOLERANCE (the faithful replica against the original: 6e-8).

"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.batches.plan import unequal_length_batches
from percepiano_parity.compare.training import (
    SERIES,
    OptimSpec,
    OriginalSide,
    Probe,
    ReplicaSide,
    Trajectory,
    single_thread,
    spec_of,
)
from percepiano_parity.compare.weight_mapping import copy_weights, map_weights
from percepiano_parity.core.config import SMALL_CONFIG, ModelConfig
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult
from percepiano_parity.replica.recipe import (
    ORIGINAL_RECIPE,
    Recipe,
)
from percepiano_parity.replica.variants import build
from percepiano_parity.subjects.calling import model_input, residual_randomness
from percepiano_parity.subjects.recipe import CandidateRecipe

CHECK = "trajectory"
# final per-parameter difference allowed between the sides, as a fraction of the reference's first-step lr
# (Adam moves every weight by about lr per step; float32 noise between the original and a faithful replica
# stays around 1e-5 of that)
PARAM_TOLERANCE = 1e-3
# eval-mode sigmoid outputs at step 0 with identical weights: the forward differs above this (the faithful
# replica and the original agree to ~1e-7; float32 LSTM stacks differ by ~1e-6 relative between equivalent
# evaluation orders)
FORWARD_TOLERANCE = 1e-5
KIND_OF = {"loss": "trajectory.loss", "grad_norm_before_clip": "trajectory.grad_norm",
           "grad_norm_after_clip": "trajectory.grad_norm", "lr": "trajectory.lr", "drift": "trajectory.drift"}


# =========================================================================================================
# Shared machinery
# =========================================================================================================


# =========================================================================================================
# Optimizer specs
# =========================================================================================================


# =========================================================================================================
# The two kinds of side
# =========================================================================================================


# =========================================================================================================
# Running and comparing
# =========================================================================================================

@dataclass
class ReferenceRun:
    """The reference side's trajectory with what the candidate must share: batches, probe, clip scale, the
    start weights."""

    trajectory: Trajectory
    probe: Probe
    clip_scale: float
    batches: list[CanonicalBatch]
    start_model: nn.Module
    variant: str
    config: ModelConfig


def probe_batches(probe: Probe, config: ModelConfig) -> list[CanonicalBatch]:
    """One batch per step, its items of pairwise different lengths (batches.plan)."""
    return unequal_length_batches(probe.steps, probe.batch_seed, batch_size=probe.batch_size, config=config,
                                  max_notes=probe.max_notes)


def reference_run(variant: str, config: ModelConfig | None = None, seed: int = 7, *, original: Any = None,
                  recipe: Recipe | None = None, probe: Probe | None = None) -> ReferenceRun:
    """Run the reference side once (reusable for many candidates)."""
    with single_thread():
        return _reference_run(variant, config, seed, original, recipe, probe)


def _reference_run(variant: str, config: ModelConfig | None, seed: int, original: Any, recipe: Recipe | None,
                   probe: Probe | None) -> ReferenceRun:
    config = config or SMALL_CONFIG
    probe = probe or Probe()
    recipe = recipe or ORIGINAL_RECIPE
    batches = probe_batches(probe, config)
    if original is not None:
        model = original.build(variant, config, seed)
        side: OriginalSide | ReplicaSide = OriginalSide(original, variant, model, recipe)
    else:
        model = build(variant, config, seed=seed)
        side = ReplicaSide("reference", model, OptimSpec(recipe), f"faithful replica {variant} with ORIGINAL_RECIPE")
    clip_scale = 1.0
    if recipe.grad_clip:
        g0 = side.initial_grad_norm(batches[0])
        clip_scale = probe.clip_target * g0 / recipe.grad_clip if g0 > 0 else 1.0
    start = copy.deepcopy(model)
    traj = side.run(batches, probe, clip_scale)
    return ReferenceRun(traj, probe, clip_scale, batches, start, variant, config)


def candidate_run(ref: ReferenceRun, candidate: Any = None, candidate_model: nn.Module | None = None,
                  seed: int = 7, *, adapter: Any = None, overrides: dict[str, str] | None = None
                  ) -> tuple[Trajectory, dict[str, Any]]:
    """Run the candidate side from the reference's start weights on the reference's batches: called through
    `adapter`'s forward, with its own loss when the recipe check read one (CandidateRecipe.loss); weights
    paired by `compare.weight_mapping.map_weights` with the audit's `overrides`."""
    model = copy.deepcopy(candidate_model) if candidate_model is not None else build(ref.variant, ref.config, seed=seed)
    wm = map_weights(ref.start_model, model, overrides=overrides)
    copy_weights(ref.start_model, model, wm)
    spec: OptimSpec = spec_of(candidate if candidate is not None else ORIGINAL_RECIPE)
    if candidate_model is not None:
        spec.param_names = {id(p): n for n, p in candidate_model.named_parameters()}
    loss = candidate.loss if isinstance(candidate, CandidateRecipe) else None
    description = f"candidate {type(model).__name__} via replica.recipe.train_step" + (
        f" with its own loss ({loss.source})" if loss is not None else "")
    side = ReplicaSide("candidate", model, spec, description, adapter=adapter, loss=loss)
    try:
        randomness = residual_randomness(model, adapter, model_input(model, ref.batches[0]), loss)
    except Exception:  # noqa: BLE001 - a candidate that cannot run shows in its trajectory's error
        randomness = 0.0
    traj = side.run(ref.batches, ref.probe, ref.clip_scale)
    mapping = {"mapped": len(wm.pairs), "unmatched_reference": wm.unmatched_reference[:10],
               "unmatched_candidate": wm.unmatched_candidate[:10], "pairs": wm.pairs,
               "residual_randomness": randomness}
    return traj, mapping


def _rel(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def compare(ref: ReferenceRun, cand: Trajectory, mapping: dict[str, Any] | None = None) -> CheckResult:
    probe, rt = ref.probe, ref.trajectory
    findings: list[Finding] = []
    rows = []
    steps = max(len(rt.series["loss"]), len(cand.series["loss"]))
    for i in range(steps):
        row: dict[str, Any] = {"step": i}
        for key in SERIES:
            a = rt.series[key][i] if i < len(rt.series[key]) else None
            b = cand.series[key][i] if i < len(cand.series[key]) else None
            row[f"{key}_reference"], row[f"{key}_candidate"] = a, b
        rows.append(row)
    forward_flags = _forward_flags(rt, cand)
    randomness = float((mapping or {}).get("residual_randomness") or 0.0)
    evidence_common = {"probe": probe.to_dict(), "clip_scale": ref.clip_scale,
                       "probe_lengths": [[len(s.beat) for s in b.segments] for b in ref.batches],
                       "reference": {"description": rt.description, "settings": rt.settings},
                       "candidate": {"description": cand.description, "settings": cand.settings},
                       **forward_flags, "candidate_random": randomness > 0}
    if randomness > 0:
        findings.append(Finding(
            CHECK, "trajectory.randomness", "candidate", Severity.WARNING,
            f"the candidate's training-mode output still changes between two calls with different seeds (by up "
            f"to {randomness:.3g} of its magnitude) after every dropout was switched off (nn.Dropout, RNN "
            "dropout, functional dropout): randomness the tool cannot switch off is active, and its trajectory "
            "differences may come from it",
            metrics={"max_rel": randomness, **forward_flags}, evidence=evidence_common))
    for side in (rt, cand):
        if side.error:
            findings.append(Finding(CHECK, "trajectory.error", side.name, Severity.ERROR,
                                    f"the {side.name} side failed after {len(side.series['loss'])} steps: {side.error}",
                                    evidence=evidence_common))
    grouped: dict[str, list[tuple[str, int, float]]] = {}
    for key in SERIES:
        a_series, b_series = rt.series[key], cand.series[key]
        n = min(len(a_series), len(b_series))
        rels = [_rel(a_series[i], b_series[i]) for i in range(n)]
        bad = [i for i in range(n) if rels[i] > probe.rtol and abs(a_series[i] - b_series[i]) > probe.atol]
        if bad:
            grouped.setdefault(KIND_OF[key], []).append((key, bad[0], max(rels)))
    for kind, items in grouped.items():
        first = min(step for _, step, _ in items)
        worst = max(r for _, _, r in items)
        names = [k for k, _, _ in items]
        series = {k: {"reference": rt.series[k], "candidate": cand.series[k]} for k in names}
        findings.append(Finding(
            CHECK, kind, "steps", Severity.ERROR,
            f"{' and '.join(names)} differ from step {first} on: greatest relative difference {worst:.3g} "
            f"(up to {probe.rtol:g} allowed) over {probe.steps} steps",
            metrics={"first_differing_step": first, "max_rel_diff": worst, "series": names, **forward_flags},
            evidence={**evidence_common, "series": series}))
    max_abs, where = _final_difference(rt.final_state, cand.final_state, (mapping or {}).get("pairs"))
    lr0 = rt.series["lr"][0] if rt.series["lr"] else 0.0
    if "trajectory.drift" not in grouped and lr0 and max_abs > PARAM_TOLERANCE * lr0:
        findings.append(Finding(
            CHECK, "trajectory.drift", "steps", Severity.ERROR,
            f"final parameters differ by up to {max_abs:.3g} at {where} although the drift norms agree "
            f"(up to {PARAM_TOLERANCE:g} x lr = {PARAM_TOLERANCE * lr0:.3g} allowed)",
            metrics={"first_differing_step": _first_drift_step(rt, cand, probe), "max_rel_diff": max_abs / lr0,
                     "final_max_abs_param_diff": max_abs, **forward_flags},
            evidence={**evidence_common, "series": {"drift": {"reference": rt.series["drift"],
                                                              "candidate": cand.series["drift"]}}}))
    summary = {"final_max_abs_param_diff": max_abs, "at": where, "steps": probe.steps, **forward_flags}
    if mapping:
        summary.update({k: v for k, v in mapping.items() if k != "pairs"})
    findings.append(Finding(
        CHECK, "trajectory.summary", "steps", Severity.INFO,
        f"{probe.steps} steps compared; final max |param difference| {max_abs:.3g}"
        + (f" at {where}" if where else ""), metrics=summary, evidence=evidence_common))
    status = "failed" if any(f.severity >= Severity.WARNING for f in findings) else "passed"
    return CheckResult(CHECK, status, findings, tables={"steps": rows})


def _forward_flags(rt: Trajectory, cand: Trajectory) -> dict[str, Any]:
    """Whether the forward already differed before training: eval-mode sigmoid outputs on the first probe
    batch with identical weights (`forward_max_abs`, and `forward_differs` above FORWARD_TOLERANCE). A
    trajectory difference with `forward_differs` follows from a forward difference, not from the recipe."""
    a, b = rt.predictions, cand.predictions
    if a is None or b is None or a.shape != b.shape:
        return {"forward_differs": None, "forward_max_abs": None}
    diff = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    differs = not math.isfinite(diff) or diff > FORWARD_TOLERANCE
    return {"forward_differs": differs, "forward_max_abs": diff if math.isfinite(diff) else str(diff)}


def _first_drift_step(rt: Trajectory, cand: Trajectory, probe: Probe) -> int:
    """The first step whose drift norms differ at all (the drift finding without a series difference is
    about the final parameters; its effect starts where the drifts first part)."""
    a, b = rt.series["drift"], cand.series["drift"]
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return probe.steps - 1


def _final_difference(ref: dict[str, torch.Tensor], cand: dict[str, torch.Tensor],
                      pairs: dict[str, str] | None) -> tuple[float, str | None]:
    pairs = pairs or {n: n for n in ref if n in cand}
    worst, where = 0.0, None
    for r, c in pairs.items():
        if r in ref and c in cand and ref[r].shape == cand[c].shape:
            d = float((ref[r].double() - cand[c].double()).abs().max()) if ref[r].numel() else 0.0
            if d > worst:
                worst, where = d, r
    return worst, where


def run(candidate_recipe: Any, variant: str, config: ModelConfig | None = None, seed: int = 7, *,
        original: Any = None, reference_recipe: Recipe | None = None, candidate_model: nn.Module | None = None,
        probe: Probe | None = None, reference: ReferenceRun | None = None, adapter: Any = None,
        overrides: dict[str, str] | None = None) -> CheckResult:
    """The trajectory check (pass `reference` to reuse a reference run across candidates); `adapter` is the
    candidate's (its forward is how the candidate is called), `overrides` the audit's weight-map overrides."""
    with single_thread():
        ref = reference or reference_run(variant, config, seed, original=original, recipe=reference_recipe,
                                         probe=probe)
        cand, mapping = candidate_run(ref, candidate_recipe, candidate_model, seed, adapter=adapter,
                                      overrides=overrides)
    return compare(ref, cand, mapping)


def series_of(result: CheckResult, key: str) -> tuple[list[float], list[float]]:
    """(reference, candidate) values of one series from a result's "steps" table."""
    rows = result.tables.get("steps", [])
    return [r[f"{key}_reference"] for r in rows], [r[f"{key}_candidate"] for r in rows]
