"""Inputs computed outside the levels: when a level agrees on the original's own inputs (its teacher-forced error
is within tolerance) but differs in the free run, what it was given besides the levels must differ: the lengths,
masks, note locations a replica derives from the batch itself. Each of those is measured here against the
original's, and the one that differs is shown to be the cause by putting the original's value in its place.

How, from measurements only:

1. Every integer or boolean tensor of a batch's shape ((N,), (N, T), (T, N)) that the candidate's forward computes
   is recorded with the line of the candidate's code that computed it (the tool's own operations are not).
2. Each is compared on the real notes with the inputs the original has (`reference_inputs`: the lengths, the mask of
   real notes, the beat, measure, voice and section numbers as the tool passes them, and the zero-shifted beat and
   measure numbers the original's spans index with, model_utils.py:56); a tensor that relates to one of them without
   equalling it (a constant offset, an offset per item, an inversion, most values equal) is a suspect.
3. Suspects are tried in that order: the forward runs again with the suspect replaced by the original's value; the
   first suspect after which the level agrees (within its tolerance) is the answer, with the residual before and
   after. A suspect that changes nothing is a legitimate derived value (`lengths - 1` indexing the last note).

Add-only: nothing here changes a verdict; a failure is a note.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from percepiano_parity.batches.canonical import CanonicalBatch, ModelInput, collate
from percepiano_parity.compare.aggregate import real_mask
from percepiano_parity.compare.raises import TOOL_DIR
from percepiano_parity.subjects.recording import TORCH_DIR, op_name

MAX_TRIALS = 6  # suspects re-run at most (one forward each)
MOSTLY = 0.5  # share of equal values that makes a tensor a suspect without a simpler relation

# the words a finding uses for each input the original has
WORDS = {"lengths": "lengths", "mask": "the mask of real notes", "beat": "beat numbers", "measure": "measure numbers",
         "voice": "voice numbers", "section": "section numbers", "beat_shifted": "zero-shifted beat numbers",
         "measure_shifted": "zero-shifted measure numbers"}


def reference_inputs(model_input: ModelInput, values: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
    """The inputs the original has besides the levels, as the tool hands them to the candidate (`values`: the
    calling path's x / note_locations / mask / lengths, location base applied; default: the collate's)."""
    lengths = model_input.lengths.cpu().long()
    t = int(lengths.max())
    real = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    locations = dict((values or {}).get("note_locations") or model_input.note_locations)
    out: dict[str, Tensor] = {"lengths": lengths, "mask": real}
    for key in ("beat", "measure", "voice", "section"):
        if key in locations:
            out[key] = locations[key].cpu().long()
    for key in ("beat", "measure"):
        if key in out:
            out[f"{key}_shifted"] = torch.where(real, out[key] - out[key][:, :1], torch.zeros_like(out[key]))
    return out


def _caller(frame: Any) -> tuple[str, bool]:
    """("file:line", whether that is the tool's own code) of the code that called an operation: the first frame
    that is neither torch's nor a function mode's (the tool's level taps sit between the model and this mode)."""
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(TORCH_DIR) and code.co_name != "__torch_function__":
            return f"{code.co_filename}:{frame.f_lineno}", code.co_filename.startswith(TOOL_DIR)
        frame = frame.f_back
    return "", True


class _Integers(TorchFunctionMode):
    """Counts (and records, or replaces) the integer and boolean tensors of the batch's shapes that the
    candidate's own code computes, in the order it computes them."""

    def __init__(self, n: int, t: int, replace: Mapping[int, Tensor] | None = None) -> None:
        super().__init__()
        self.shapes = {(n,), (n, t), (t, n)}
        self.replace = dict(replace or {})
        self.records: list[dict[str, Any]] = []
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if type(out) is not Tensor or out.is_floating_point() or out.is_complex() or tuple(out.shape) not in self.shapes:
            return out
        where, ours = _caller(sys._getframe(1))
        if ours:
            return out
        k, self.count = self.count, self.count + 1
        if k in self.replace:
            value = self.replace[k]
            return value.to(device=out.device, dtype=out.dtype).reshape(out.shape).clone()
        if not self.replace:
            self.records.append({"index": k, "op": op_name(func), "where": where, "value": out.detach().cpu().clone()})
        return out


@dataclass
class Suspect:
    index: int
    input: str
    relation: str  # "offset", "item_offsets", "inverted", "partly"
    how: str
    op: str
    where: str
    rank: tuple[int, float]
    replacement: Tensor
    details: dict[str, Any]


def _number_words(k: int) -> str:
    return {1: "one", 2: "two", 3: "three"}.get(k, str(k))


def _describe(name: str, relation: str, details: Mapping[str, Any]) -> str:
    """The relation in words: "lengths are one short for every item", "the mask is inverted", "beat numbers +1"."""
    if relation == "inverted":
        return f"{WORDS[name]} is inverted (True where the original's is False)"
    if relation == "offset":
        c = int(details["offset"])
        if name == "lengths":
            return f"lengths are {_number_words(abs(c))} {'short' if c < 0 else 'long'} for every item"
        return f"{WORDS[name]} {c:+d} on every note"
    if relation == "item_offsets":
        items = details["items"]
        shown = ", ".join(f"item {i} {c:+d}" for i, c in list(items.items())[:4]) + (" ..." if len(items) > 4 else "")
        return f"{WORDS[name]} are offset per item ({shown}; the other items agree)"
    return f"{WORDS[name]} differ at {details['differ']} of {details['compared']} positions"


def _relation(name: str, ref: Tensor, got: Tensor, real: Tensor) -> tuple[str, tuple[int, float], dict[str, Any]] | None:
    """How a recorded tensor relates to one of the original's inputs on the real notes (None: equal, or unrelated);
    the rank orders suspects (simplest relation first, then the most values equal)."""
    if got.shape != ref.shape:
        if got.dim() == 2 and got.t().shape == ref.shape:
            got = got.t()
        else:
            return None
    on = real if ref.dim() == 2 else torch.ones_like(ref, dtype=torch.bool)
    a, b = ref[on].long(), got[on].long()
    if a.numel() == 0 or torch.equal(a, b):
        return None
    if ref.dtype == torch.bool or name == "mask":
        if set(b.unique().tolist()) <= {0, 1} and torch.equal(b, 1 - a):
            return "inverted", (0, 1.0), {}
        share = float((a == b).float().mean())
        return ("partly", (3, share), {"differ": int((a != b).sum()), "compared": a.numel()}) if share >= MOSTLY \
            else None
    diff = (b - a)
    if bool((diff == diff[0]).all()):
        return "offset", (0, 1.0), {"offset": int(diff[0])}
    per_item: dict[int, int] = {}
    full = (got.long() - ref.long())
    for i in range(ref.shape[0]):
        d = full[i][on[i]] if ref.dim() == 2 else full[i:i + 1]
        if d.numel() and bool((d == d[0]).all()) and int(d[0]) != 0:
            per_item[i] = int(d[0])
        elif d.numel() and not bool((d == d[0]).all()):
            per_item = {}
            break
    share = float((a == b).float().mean())
    if per_item:
        return "item_offsets", (1, share), {"items": per_item}
    if share >= MOSTLY:
        return "partly", (2, share), {"differ": int((a != b).sum()), "compared": a.numel()}
    return None


def suspects(records: list[dict[str, Any]], inputs: Mapping[str, Tensor], real: Tensor) -> list[Suspect]:
    """Recorded tensors that relate to an input of the original without equalling it, best first; each recorded
    tensor stands for at most one input (the one it relates to most simply)."""
    out: list[Suspect] = []
    for record in records:
        best: Suspect | None = None
        for name, ref in inputs.items():
            found = _relation(name, ref, record["value"], real)
            if found is None:
                continue
            relation, rank, details = found
            if best is None or rank < best.rank:
                best = Suspect(record["index"], name, relation, _describe(name, relation, details), record["op"],
                               record["where"], rank, ref, details)
        if best is not None:
            out.append(best)
    return sorted(out, key=lambda s: (s.rank[0], -s.rank[1], s.index))


Run = Callable[[], Any]


def _level_error(level: str, ref: Tensor, cand: Tensor | None, lengths: Tensor) -> float:
    """Largest |difference| of a level on its real positions (inf when it was not recorded or shapes differ)."""
    if cand is None or cand.shape != ref.shape:
        return float("inf")
    real, _ = real_mask(level, ref, cand, lengths)
    diff = (ref.double() - cand.double()).abs()
    if real is not None:
        while real.dim() < diff.dim():
            real = real.unsqueeze(-1)
        diff = torch.where(real, diff, torch.zeros_like(diff))
    return float(diff.max()) if diff.numel() else 0.0


def find(level: str, batch: CanonicalBatch, run_candidate: Callable[[], Any], reference: Mapping[str, Tensor],
         inputs: Mapping[str, Tensor], thresholds: Mapping[str, float]) -> dict[str, Any]:
    """The input computed outside the levels that makes `level` differ (see the module docstring).

    `run_candidate()` runs the candidate on `batch` (no gradients) and returns its taps; `reference` holds the
    original's values of `level` and of the logits there; `thresholds` their absolute tolerances. A suspect is the
    answer when, with the original's value in its place, the level agrees or the logits do (a level found by value
    on a batch where it already differed may stand on a nearby tensor; the logits are always the model's own).
    Returns {"level", "found" (the input, relation, words, the candidate's op and line, the errors before and
    after) or None, "tested"}."""
    model_input = collate(batch)
    lengths = model_input.lengths.cpu()
    n, t = len(lengths), int(lengths.max())
    real = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    names = [name for name in (level, "logits") if name in reference and name in thresholds]

    def errors(taps: Any) -> dict[str, float]:
        return {name: _level_error(name, reference[name], taps.levels.get(name), lengths) for name in names}

    recorder = _Integers(n, t)
    with recorder:
        before = errors(run_candidate())
    result: dict[str, Any] = {"level": level, "baseline": before.get(level), "logits_baseline": before.get("logits"),
                              "threshold": thresholds.get(level), "found": None, "tested": [],
                              "recorded": len(recorder.records)}
    for suspect in suspects(recorder.records, inputs, real)[:MAX_TRIALS]:
        note = ""
        try:
            with _Integers(n, t, replace={suspect.index: suspect.replacement}):
                after = errors(run_candidate())
        except Exception as exc:  # noqa: BLE001 - the original's value does not fit where the suspect is used
            after, note = {name: float("inf") for name in names}, f"{type(exc).__name__}: {str(exc)[:100]}"
        entry = {"input": suspect.input, "relation": suspect.relation, "how": suspect.how, "op": suspect.op,
                 "where": suspect.where, "residual": after.get(level), "logits_residual": after.get("logits"),
                 **({"note": note} if note else {}),
                 **{k: v for k, v in suspect.details.items() if k != "items"},
                 **({"items": {str(i): c for i, c in suspect.details["items"].items()}}
                    if "items" in suspect.details else {})}
        result["tested"].append(entry)
        agree = [name for name in names if after[name] <= thresholds[name]]
        if agree:
            result["found"] = {**entry, "words": WORDS[suspect.input], "baseline": before.get(level),
                               "logits_baseline": before.get("logits"), "agree": agree}
            break
    return result
