"""How often real segments carry the note-location hazards the original's hierarchy is sensitive to.

Measured on the prepared cache, per note, per segment and per batch (the train split of performer4fold fold 0,
batched by 8 the way the loader does, seed 0):

* `beat_jump` / `measure_jump`: the number rises by more than 1 between consecutive notes (not a boundary for the
  original, which starts a node only where the number rises by exactly 1);
* `beat_drop` / `measure_drop`: the number falls;
* `negative`: a beat or measure number below 0;
* `voice_zero`: a note with voice 0 (the original's unaligned performance notes, data_for_training.py:107-117);
* `lone_first`: the first note is alone in its beat (the longest item of a batch then gets truncated spans).

`synthetic.py` reads the per-batch shares of the shipped `parity/data/real_hazards.json` (written from this) and
makes the default synthetic batches hit each hazard at least as often.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from percepiano_parity.batches.real import cache as cache_files

HAZARDS = ("beat_jump", "measure_jump", "beat_drop", "measure_drop", "negative", "voice_zero", "lone_first")
MEASURED_SPLIT = ("performer4fold", 0, "train")


def segment_hazards(beat: Sequence[int], measure: Sequence[int], voice: Sequence[int]) -> dict[str, int]:
    """Counts of each hazard in one segment (lone_first is 0 or 1)."""
    b, m, v = (np.asarray(x, dtype=np.int64) for x in (beat, measure, voice))
    db, dm = np.diff(b), np.diff(m)
    return {
        "beat_jump": int((db > 1).sum()), "measure_jump": int((dm > 1).sum()),
        "beat_drop": int((db < 0).sum()), "measure_drop": int((dm < 0).sum()),
        "negative": int(((b < 0) | (m < 0)).sum()), "voice_zero": int((v == 0).sum()),
        "lone_first": int(len(b) >= 2 and b[0] != b[1]),
    }


def _share(count: int, total: int) -> float:
    return round(count / total, 5) if total else 0.0


def summarise(per_segment: Mapping[str, Mapping[str, int]], lengths: Mapping[str, int],
              batches: Iterable[Sequence[str]]) -> dict[str, Any]:
    """Per-note/transition rates, per-segment shares and per-batch shares of every hazard."""
    keys = list(per_segment)
    notes = sum(lengths[k] for k in keys)
    transitions = sum(max(lengths[k] - 1, 0) for k in keys)
    out: dict[str, Any] = {"segments": len(keys), "notes": notes, "transitions": transitions}
    for hazard in HAZARDS:
        count = sum(per_segment[k][hazard] for k in keys)
        base = len(keys) if hazard == "lone_first" else (notes if hazard in ("negative", "voice_zero") else transitions)
        out[hazard] = {"count": count, "rate": _share(count, base),
                       "segment_share": _share(sum(1 for k in keys if per_segment[k][hazard]), len(keys))}
    batch_list = [list(b) for b in batches]
    out["batches"] = len(batch_list)
    for hazard in HAZARDS:
        if hazard == "lone_first":  # what matters is the longest item of the batch
            hit = sum(1 for b in batch_list if per_segment[max(b, key=lambda k: lengths[k])]["lone_first"])
            out[hazard]["batch_share_longest"] = _share(hit, len(batch_list))
        hit = sum(1 for b in batch_list if any(per_segment[k][hazard] for k in b))
        out[hazard]["batch_share"] = _share(hit, len(batch_list))
    return out


def measure_hazards(cache: Path, keys: Sequence[str], folds: Mapping[str, Mapping[str, Sequence[str | None]]],
                    seed: int = 0, batch_size: int = 8) -> dict[str, Any]:
    """The hazard statistics of a cache's prepared segments (see the module docstring)."""
    import torch

    per_segment: dict[str, dict[str, int]] = {}
    lengths: dict[str, int] = {}
    for key in keys:
        tensors, _ = cache_files.read_tensors(cache_files.segment_path(cache, key))
        per_segment[key] = segment_hazards(tensors["location/beat"], tensors["location/measure"],
                                           tensors["location/voice"])
        lengths[key] = int(tensors["location/beat"].shape[0])
    scheme, fold, part = MEASURED_SPLIT
    members = sorted(k for k in keys if (folds.get(scheme, {}).get(k) or [None] * 4)[fold] == part)
    generator = torch.Generator()
    generator.manual_seed(seed)
    order = torch.randperm(len(members), generator=generator).tolist()
    batches = [[members[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    result = summarise(per_segment, lengths, batches)
    result["batched_split"] = ":".join(map(str, MEASURED_SPLIT))
    result["batch_size"] = batch_size
    return result
