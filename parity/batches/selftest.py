"""Hand-made batches for the self-test: the hazards that reveal each deviation, all runnable by the original.

Realistic generated batches (batches.synthetic) follow the original's conventions strictly, so a few
deviations stay invisible on them. Each batch here adds one hazard of the facts sheet (section 4) on purpose,
in a form the original runs without error:

* `selftest:beat-gap` - a beat number jumps by 2 inside the *shorter* item of a batch (facts 4.4). The original
  merges the two beats there (a boundary is a rise by exactly 1) and, batched with a longer item, runs
  silently. A replica that starts a beat at every change of number (PP-BOUNDARY-RULE) differs only here.
  The gap sits inside the item's last measure, so measure boundaries stay where they were.
* `selftest:lone-first-note` - the longest item of the batch starts with a note alone in its beat, so the
  original's span note count (argmin of the beat-number difference, + 1) comes out short and every later
  note of that item gets a zero beat span (facts 4.1). A replica that uses the true length
  (PP-SPAN-COUNT-QUIRK) differs at exactly those notes.
* `selftest:unequal` - three items of clearly different lengths and measure counts: padding reaches the
  LSTMs when sequences are not packed (PP-PADDED-LSTM), the final pooling of contractor heads attends to
  padded rows (PP-PADDING-MASK-QUIRK), and node-space pooling must mask empty measures (PP-ATTENTION-MASK).

Every item has at least two beats and two measures, beat and measure numbers start at 0 or above, voices are
1..3 and sections all 1. Batches are deterministic per seed.
"""

from __future__ import annotations

import torch

from percepiano_parity.batches.canonical import CanonicalBatch, Segment
from percepiano_parity.core.config import ModelConfig

SELFTEST_TAGS = ("selftest:beat-gap", "selftest:lone-first-note", "selftest:unequal")


def _segment(name: str, beats: list[int], measures: list[int], config: ModelConfig,
             gen: torch.Generator) -> Segment:
    n = len(beats)
    if len(measures) != n:
        raise ValueError(f"{name}: {n} beat numbers but {len(measures)} measure numbers")
    features = torch.randn(n, config.input_size, generator=gen)
    voice = torch.randint(1, 4, (n,), generator=gen)
    voice[0] = 1
    label = 0.143 + (0.976 - 0.143) * torch.rand(config.num_label, generator=gen)
    return Segment(name=name, features=features, beat=torch.tensor(beats, dtype=torch.int64),
                   measure=torch.tensor(measures, dtype=torch.int64), voice=voice,
                   section=torch.ones(n, dtype=torch.int64), label=label)


def _layout(notes_per_beat: list[int], beats_per_measure: list[int], first_beat: int = 0,
            first_measure: int = 0) -> tuple[list[int], list[int]]:
    """Beat and measure numbers, every beat and measure rising by exactly 1."""
    beats: list[int] = []
    measures: list[int] = []
    b, m = first_beat, first_measure
    k = 0
    for per_measure in beats_per_measure:
        for _ in range(per_measure):
            count = notes_per_beat[k % len(notes_per_beat)]
            beats += [b] * count
            measures += [m] * count
            b += 1
            k += 1
        m += 1
    return beats, measures


def _with_gap_in_last_measure(beats: list[int], measures: list[int]) -> list[int]:
    """Shift every beat from the second beat of the last measure on by +1: one jump of 2, no boundary move."""
    last = measures[-1]
    in_last = [i for i, m in enumerate(measures) if m == last]
    first_beat_of_last = beats[in_last[0]]
    start = next(i for i in in_last if beats[i] != first_beat_of_last)
    return [b + 1 if i >= start else b for i, b in enumerate(beats)]


def selftest_batches(config: ModelConfig, seed: int = 0) -> list[CanonicalBatch]:
    """The three hazard batches (see the module docstring), deterministic per seed."""
    gen = torch.Generator().manual_seed(10_000 + seed)

    # 1. a beat gap in the shorter item, next to a longer one
    long_b, long_m = _layout([2, 1, 3, 2], [4, 3, 4, 4, 3])
    short_b, short_m = _layout([2, 1, 2], [3, 4, 3])
    short_b = _with_gap_in_last_measure(short_b, short_m)
    gap = CanonicalBatch(
        segments=(_segment("selftest-gap-long", long_b, long_m, config, gen),
                  _segment("selftest-gap-short", short_b, short_m, config, gen)),
        tags=("selftest:beat-gap",))

    # 2. the longest item opens with a note alone in its beat (its spans get truncated by the original)
    lone_b, lone_m = _layout([1, 2, 2, 3, 1, 2], [3, 4, 4, 3, 4])
    other_b, other_m = _layout([2, 2, 1], [4, 3])
    lone = CanonicalBatch(
        segments=(_segment("selftest-lone-short", other_b, other_m, config, gen),
                  _segment("selftest-lone-long", lone_b, lone_m, config, gen)),
        tags=("selftest:lone-first-note",))

    # 3. three clearly unequal items (lengths and measure counts); first notes share a beat
    items = []
    for i, (per_beat, per_measure) in enumerate((([2, 3, 1], [4, 4, 3, 4, 4, 3]), ([2, 1], [3, 3]),
                                                 ([3, 2, 2], [4, 3, 4]))):
        b, m = _layout(per_beat, per_measure, first_beat=i, first_measure=i)
        items.append(_segment(f"selftest-unequal-{i}", b, m, config, gen))
    unequal = CanonicalBatch(segments=tuple(items), tags=("selftest:unequal",))
    return [gap, lone, unequal]


def default_selftest_batches(config: ModelConfig, seed: int = 0, *, generated: int = 1,
                             max_notes: int = 48) -> list[CanonicalBatch]:
    """The hazard batches plus, when batches.synthetic is available, `generated` realistic batches and its edge
    cases (small: `max_notes` notes at most, 4 items per batch)."""
    batches = selftest_batches(config, seed)
    try:
        from percepiano_parity.batches.synthetic import generate_batches
    except ImportError:
        return batches
    return generate_batches(generated, seed, batch_size=4, config=config, max_notes=max_notes,
                            include_edge_cases=True) + batches
