"""Measure-aligned slicing of long performances into training samples.

Our implementation of the semantics of the original's `make_slicing_indexes_by_measure`
(`virtuoso/virtuoso/data_process.py:53`), which `ScorePerformDataset.update_slice_info` calls for every
performance at construction and again at the start of every training epoch (`train_m2pf.py:288`):

* fewer notes than the slice length: one slice covering everything, `(0, n)`;
* otherwise, with overlap (what the dataset uses):

  - the note at index `slice_length` fixes the first end measure `e`; unless `e` is at least two measures before
    the last one (then again one slice `(0, n)`), the first slice runs from 0 to the first note of measure
    `e + 1`, and the last slice from the first note of the measure holding note `n - slice_length` to the end;
  - with more than twice `slice_length` notes, middle slices follow: the first starts at the measure of a note
    drawn with `randrange(int(L / 2), int(L * 1.5))` (one draw from the *global* `random` module); each slice
    goes from the first note of its start measure to the **first note of the measure before** the measure that
    holds note `start + L` (so a slice ends where the measure before its end measure begins, as the original
    does), and the next one starts 2 measures (or 1, or 0) before that end measure, until the start reaches
    the last slice's measure or `start + L` runs past the end;

* without overlap: consecutive chunks cut after the measure that holds note `start + L`.

Behaviour kept on purpose, because the original has it:

* **n == slice_length raises IndexError** (the original reads `measure_numbers[slice_length]`, one past the
  end). We raise the same exception type, so a pipeline that would crash in the original crashes here too.
  (`n > slice_length` cannot give this error.) PercePiano segments (51-413 notes) never reach 5000.
* a measure number that a boundary lookup needs but that does not occur (a gap, or a -1 from an unaligned
  note) raises ValueError, as `list.index` does in the original.
* where the original would loop forever (a measure with `slice_length` notes or more, so the end measure
  equals the start measure), we raise `SlicingError` instead of hanging; this is the one intended difference.

`rng` defaults to the `random` module itself, which is what the original draws from, so seeding `random`
gives both implementations the same draw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol


class _RandRange(Protocol):
    def randrange(self, start: int, stop: int) -> int: ...


class SlicingError(RuntimeError):
    """The original would never return for this input (its middle-slice loop makes no progress)."""


def _first_note_of(measures: list[int], measure: int) -> int:
    return measures.index(measure)  # ValueError when the measure does not occur, as in the original


def make_slices_by_measure(num_notes: int, measure_numbers: Sequence[int], slice_length: int, *,
                           overlap: bool = True, rng: _RandRange | None = None) -> list[tuple[int, int]]:
    """(start, end) note ranges of the training samples cut from one performance."""
    draw = rng if rng is not None else random
    measures = [int(m) for m in measure_numbers]
    n, length = int(num_notes), int(slice_length)
    if n < length:
        return [(0, n)]
    if not overlap:
        return _consecutive(n, measures, length)
    first_end_measure = measures[length]  # IndexError when n == length, like the original
    last_measure = measures[-1]
    if not first_end_measure < last_measure - 1:
        return [(0, n)]
    slices = [(0, _first_note_of(measures, first_end_measure + 1))]
    last_start_measure = measures[n - length]
    slices.append((_first_note_of(measures, last_start_measure), n))
    if n > 2 * length:
        slices += _middle(n, measures, length, last_start_measure, draw)
    return slices


def _middle(n: int, measures: list[int], length: int, stop_measure: int, draw: _RandRange) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start_measure = measures[draw.randrange(int(length / 2), int(length * 1.5))]
    end_measure = start_measure
    while end_measure < stop_measure:
        start_note = _first_note_of(measures, start_measure)
        if start_note + length >= n:
            break
        end_measure = measures[start_note + length]
        out.append((start_note, _first_note_of(measures, end_measure - 1)))
        step_back = 2 if end_measure > start_measure + 2 else (1 if end_measure > start_measure + 1 else 0)
        if end_measure - step_back == start_measure and end_measure < stop_measure:
            raise SlicingError(
                f"measure {start_measure} (from note {start_note}) holds {length} notes or more: the original's "
                f"slicing loop would never end here")
        start_measure = end_measure - step_back
    return out


def _consecutive(n: int, measures: list[int], length: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = 0
    for _ in range(math.ceil(n / length)):
        if start + length >= n:
            out.append((start, n))
            break
        end_measure = measures[start + length]
        if end_measure >= measures[-1]:
            out.append((start, n))
            break
        after = _first_note_of(measures, end_measure + 1)
        out.append((start, after))
        start = after
    return out


def regenerate(num_notes: Sequence[int], measure_numbers: Sequence[Sequence[int]], slice_length: int, *,
               rng: _RandRange | None = None) -> list[tuple[int, tuple[int, int]]]:
    """One epoch's slice table, as `update_slice_info` builds it: (performance index, (start, end)) for every
    slice of every performance, performances in order."""
    table: list[tuple[int, tuple[int, int]]] = []
    for i, (n, measures) in enumerate(zip(num_notes, measure_numbers, strict=True)):
        table += [(i, sl) for sl in make_slices_by_measure(n, measures, slice_length, rng=rng)]
    return table
