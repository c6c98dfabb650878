"""Real hazards in the default synthetic batches, at least as often as the real segments carry them.

The rates come from `parity/data/real_hazards.json` (`tools/real_hazards.py`, measured on every PercePiano
performance through the original's own pipeline, `batches.real.hazards`). Measured there: unaligned performance
notes get voice 0 (10% of notes, 77% of segments, every batch), and the longest item of 1% of batches starts with
a lone note; beat and measure numbers never jump, never fall and are never negative (the original's
`insert_value_to_list` copies the neighbour's location into an inserted note instead of writing -1, so the -1s
the facts sheet warns of do not occur in these files).

What each normal batch k gets, from its own random stream (the other draws of the batch stay as they were):

* voice 0 on a share of the notes of a share of the segments (the measured per-note rate and segment share),
  and in at least one segment of every batch whose quota says so (the measured batch share);
* the longest item's first note alone in its beat, in batch k when ceil((k+1)*q) > ceil(k*q) for the measured
  per-batch share q (so any first n batches hold at least n*q such batches; batch 0 always does for q > 0);
* one beat-number jump of 2 in every other batch (k even), beyond the measured rate of 0: the facts sheet's
  hazard 4.4, which other data and other pipelines do have, and the only input on which a replica that starts a
  beat at every change of number differs. It goes to an item with fewer beat nodes than the batch's largest, so
  the original's span index stays inside the batch's padded nodes (the original runs; it raises IndexError only
  when the item is alone or the largest).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from percepiano_parity.replica.batch import Segment

HAZARD_TAGS = ("hazard:voice-zero", "hazard:lone-first-longest", "hazard:beat-jump")
JUMP_EVERY = 2


@functools.cache
def real_hazards() -> dict[str, Any]:
    """The shipped measurement (`parity/data/real_hazards.json`)."""
    text = importlib.resources.files("percepiano_parity").joinpath("data/real_hazards.json").read_text("utf-8")
    return json.loads(text)["hazards"]


def quota(k: int, share: float) -> bool:
    """Whether batch k is one of the hazard's batches: the first n batches hold ceil(n * share) of them."""
    share = min(max(float(share), 0.0), 1.0)
    return math.ceil(round((k + 1) * share, 9)) > math.ceil(round(k * share, 9))


def original_beat_nodes(beat: Sequence[int]) -> int:
    """Beat nodes the original makes of one item: a boundary only where the number rises by exactly 1."""
    values = list(beat)
    return 1 + sum(1 for a, b in zip(values, values[1:], strict=False) if b - a == 1)


def _with(seg: Segment, **changes: torch.Tensor) -> Segment:
    fields = {f: getattr(seg, f) for f in ("name", "features", "beat", "measure", "voice", "section", "label")}
    return Segment(**{**fields, **changes})


def _voice_zero(seg: Segment, rng: np.random.Generator, share: float) -> Segment:
    n = seg.length
    chosen = rng.random(n) < share
    if not chosen.any():
        chosen[int(rng.integers(0, n))] = True
    if chosen.all() and n > 1:
        chosen[int(rng.integers(0, n))] = False
    voice = seg.voice.clone()
    voice[torch.from_numpy(chosen)] = 0
    return _with(seg, voice=voice)


def _lone_first(seg: Segment) -> Segment:
    if seg.length < 2 or int(seg.beat[1]) != int(seg.beat[0]):
        return seg
    beat = seg.beat.clone()
    beat[1:] += 1
    return _with(seg, beat=beat)


def _jump(segments: list[Segment]) -> int | None:
    """Index of the segment that took a beat jump (None when no item is safely smaller than the largest)."""
    nodes = [original_beat_nodes(s.beat.tolist()) for s in segments]
    largest = max(nodes)
    candidates = [i for i, n in enumerate(nodes) if 3 <= n < largest]
    if not candidates:
        return None
    i = min(candidates, key=lambda j: (nodes[j], j))
    beat = segments[i].beat.clone()
    rises = [p for p in range(1, len(beat)) if int(beat[p]) - int(beat[p - 1]) == 1]
    p = rises[len(rises) // 2]
    beat[p:] += 1
    segments[i] = _with(segments[i], beat=beat)
    return i


def apply_hazards(segments: Sequence[Segment], k: int, rng: np.random.Generator) -> tuple[tuple[Segment, ...],
                                                                                        tuple[str, ...]]:
    """Normal batch k with the hazards its quota gives it, and the batch's hazard tags."""
    hazards = real_hazards()
    out = list(segments)
    tags: list[str] = []
    voice = hazards["voice_zero"]
    if voice["rate"] > 0:
        per_segment = voice["segment_share"]
        share = min(voice["rate"] / per_segment, 1.0) if per_segment else 0.0
        hit = [i for i in range(len(out)) if rng.random() < per_segment]
        if not hit and quota(k, voice["batch_share"]):
            hit = [0]
        for i in hit:
            out[i] = _voice_zero(out[i], rng, share)
        if hit:
            tags.append(HAZARD_TAGS[0])
    if quota(k, hazards["lone_first"]["batch_share_longest"]):
        longest = max(range(len(out)), key=lambda i: (out[i].length, -i))
        out[longest] = _lone_first(out[longest])
        tags.append(HAZARD_TAGS[1])
    if k % JUMP_EVERY == 0 and len(out) > 1 and _jump(out) is not None:
        tags.append(HAZARD_TAGS[2])
    return tuple(out), tuple(tags)
