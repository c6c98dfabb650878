"""Two feature extractions of the same performances, compared per named key and column (plain data, no verdicts).

Layouts are compared by name: each side's `key_to_dim` ({key: [start, end)}, FeatureConverter's
`key_to_dim_idx['input']`, pyScoreParser/data_for_training.py:399-410) expands to one name per column, `key[i]`;
the first column whose names differ is where the layouts part. Values are compared per key by name, so a shifted
key is still compared with itself. Rows are matched per performance: the same number of rows, or the original's
rows without its inserted unaligned notes (voice 0; data_for_training.py:107-128) when the candidate has exactly
that many fewer. Where a scalar key differs, an affine fit against the original's unnormalised values tells a
normalisation difference (not z-scored, or other mean and std) from other value errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Span = tuple[int, int]
ATOL = 1e-5  # float64 matrices; a float32 extractor rounds z-scores of up to ~10 to ~1e-6
RTOL = 1e-5
SAME_ROWS, DROPPED_UNALIGNED = "same", "dropped-unaligned"


def column_names(key_to_dim: Mapping[str, Span]) -> list[str]:
    """'key[i]' for every column, in column order (gaps as '?')."""
    width = max(end for _, end in key_to_dim.values())
    names = ["?"] * width
    for key, (start, end) in key_to_dim.items():
        for i in range(start, end):
            names[i] = f"{key}[{i - start}]"
    return names


@dataclass
class LayoutDiff:
    """How two layouts differ; `first_column` is None when they are identical."""

    missing: list[str] = field(default_factory=list)  # original keys the candidate lacks, original order
    extra: list[str] = field(default_factory=list)  # candidate keys the original lacks, candidate order
    reordered: list[str] = field(default_factory=list)  # shared keys in another order among the shared keys
    width_changed: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (original, candidate) width
    first_column: int | None = None
    original_at: str | None = None  # 'key[i]' at first_column on each side ('(none)' past a side's width)
    candidate_at: str | None = None
    shifted: list[str] = field(default_factory=list)  # shared keys that start at another column
    shift: int | None = None  # the common offset of the shifted keys, when they all moved by the same amount
    original_width: int = 0
    candidate_width: int = 0

    @property
    def differs(self) -> bool:
        return self.first_column is not None


def compare_layouts(original: Mapping[str, Span], candidate: Mapping[str, Span]) -> LayoutDiff:
    """Missing, extra, reordered and resized keys and the first column where the layouts part."""
    names_o, names_c = column_names(original), column_names(candidate)
    diff = LayoutDiff(original_width=len(names_o), candidate_width=len(names_c))
    diff.missing = [k for k in original if k not in candidate]
    diff.extra = [k for k in candidate if k not in original]
    shared_o = [k for k in original if k in candidate]
    shared_c = [k for k in candidate if k in original]
    diff.reordered = _out_of_order(shared_o, shared_c)
    for key in shared_o:
        wo = original[key][1] - original[key][0]
        wc = candidate[key][1] - candidate[key][0]
        if wo != wc:
            diff.width_changed[key] = (wo, wc)
    diff.shifted = [k for k in shared_o if original[k][0] != candidate[k][0]]
    offsets = {candidate[k][0] - original[k][0] for k in diff.shifted}
    diff.shift = offsets.pop() if len(offsets) == 1 else None
    for i in range(max(len(names_o), len(names_c))):
        a = names_o[i] if i < len(names_o) else "(none)"
        b = names_c[i] if i < len(names_c) else "(none)"
        if a != b:
            diff.first_column, diff.original_at, diff.candidate_at = i, a, b
            break
    return diff


def _out_of_order(a: list[str], b: list[str]) -> list[str]:
    """Keys of `a` outside a longest common subsequence of the two orders (the keys that moved)."""
    if a == b:
        return []
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    keep, i, j = set(), 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            keep.add(a[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return [k for k in a if k not in keep]


def match_rows(original_rows: int, unaligned: np.ndarray, candidate_rows: int) -> tuple[np.ndarray, str] | None:
    """Indices of the original's rows the candidate's rows stand for, and how they were matched; None when the
    counts fit neither rule."""
    if candidate_rows == original_rows:
        return np.arange(original_rows), SAME_ROWS
    kept = np.flatnonzero(~unaligned)
    if unaligned.any() and candidate_rows == len(kept):
        return kept, DROPPED_UNALIGNED
    return None


@dataclass
class KeyValues:
    """One shared key of equal width, compared over every matched row of every performance."""

    key: str
    original_columns: Span
    candidate_columns: Span
    original_zscored: bool
    max_abs: float = 0.0  # over aligned rows
    max_abs_unaligned: float = 0.0  # over the original's inserted unaligned rows both sides have
    rows: int = 0
    rows_differing: int = 0
    unaligned_rows: int = 0
    unaligned_rows_differing: int = 0
    segments_differing: list[str] = field(default_factory=list)
    normalisation: str | None = None  # "not-zscored" | "other-stats" | "zscored-only-by-candidate"
    candidate_stats: dict[str, float] | None = None  # declared or fitted {"mean", "stds"}

    @property
    def differs(self) -> bool:
        return self.rows_differing > 0 or self.unaligned_rows_differing > 0


@dataclass
class FeatureComparison:
    layout: LayoutDiff
    keys: list[KeyValues]
    row_matching: dict[str, str]  # segment -> SAME_ROWS | DROPPED_UNALIGNED
    row_mismatch: dict[str, tuple[int, int]]  # segment -> (original rows, candidate rows) that fit no rule
    unaligned_notes: dict[str, int]  # segment -> inserted unaligned notes in the original
    declared_stats: dict[str, dict[str, float]] | None
    original_stats: dict[str, dict[str, float]]


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(rows,) True where every column of a row is close."""
    if a.size == 0:
        return np.ones(a.shape[0], dtype=bool)
    return np.all(np.abs(a - b) <= ATOL + RTOL * np.abs(b), axis=1)


def compare_features(original: Any, candidate: Any) -> FeatureComparison:
    """`original`: batches.real.loader.OriginalFeatures; `candidate`: subjects.user_data.
    ExtractedFeatures over the same segments."""
    layout = compare_layouts(original.key_to_dim, candidate.key_to_dim)
    comparison = FeatureComparison(layout, [], {}, {}, {}, candidate.stats, dict(original.stats))
    matched: dict[str, np.ndarray] = {}
    for seg in original.segments:
        unaligned = original.unaligned[seg]
        comparison.unaligned_notes[seg] = int(unaligned.sum())
        rows = match_rows(len(unaligned), unaligned, candidate.inputs[seg].shape[0])
        if rows is None:
            comparison.row_mismatch[seg] = (len(unaligned), candidate.inputs[seg].shape[0])
        else:
            matched[seg], comparison.row_matching[seg] = rows
    for key, span_o in original.key_to_dim.items():
        span_c = candidate.key_to_dim.get(key)
        if span_c is None or span_c[1] - span_c[0] != span_o[1] - span_o[0]:
            continue
        comparison.keys.append(_compare_key(key, span_o, span_c, original, candidate, matched))
    return comparison


def _compare_key(key: str, span_o: Span, span_c: Span, original: Any, candidate: Any,
                 matched: Mapping[str, np.ndarray]) -> KeyValues:
    kv = KeyValues(key, span_o, span_c, key in original.stats)
    fit_raw, fit_cand = [], []
    for seg, rows in matched.items():
        o = original.inputs[seg][rows, span_o[0]:span_o[1]]
        c = candidate.inputs[seg][:, span_c[0]:span_c[1]]
        unaligned = original.unaligned[seg][rows]
        ok = _close(c, o)
        err = np.abs(c - o).max(axis=1) if o.size else np.zeros(len(rows))
        aligned = ~unaligned
        kv.rows += int(aligned.sum())
        kv.rows_differing += int((~ok & aligned).sum())
        kv.unaligned_rows += int(unaligned.sum())
        kv.unaligned_rows_differing += int((~ok & unaligned).sum())
        if aligned.any():
            kv.max_abs = max(kv.max_abs, float(err[aligned].max()))
        if unaligned.any():
            kv.max_abs_unaligned = max(kv.max_abs_unaligned, float(err[unaligned].max()))
        if (~ok).any():
            kv.segments_differing.append(seg)
        fit_raw.append(original.raw[seg][rows, span_o[0]:span_o[1]][aligned])
        fit_cand.append(c[aligned])
    declared = (candidate.stats or {}).get(key) if candidate.stats is not None else None
    if kv.rows_differing and span_o[1] - span_o[0] == 1 and fit_raw:
        _explain_normalisation(kv, np.concatenate(fit_raw)[:, 0], np.concatenate(fit_cand)[:, 0],
                               original.stats.get(key), declared)
    elif declared is not None and kv.original_zscored:
        ref = original.stats[key]
        if not np.isclose(declared["mean"], ref["mean"], rtol=RTOL, atol=ATOL) or \
                not np.isclose(declared["stds"], ref["stds"], rtol=RTOL, atol=ATOL):
            kv.normalisation, kv.candidate_stats = "other-stats", declared
    elif declared is not None and not kv.original_zscored:
        kv.normalisation, kv.candidate_stats = "zscored-only-by-candidate", declared
    return kv


def _explain_normalisation(kv: KeyValues, raw: np.ndarray, cand: np.ndarray, stats: dict[str, float] | None,
                           declared: dict[str, float] | None) -> None:
    """Set kv.normalisation when the candidate's column is an affine map of the original's raw values."""
    if raw.size < 2:
        return
    if stats is not None and bool(np.all(np.abs(cand - raw) <= ATOL + RTOL * np.abs(raw))):
        kv.normalisation = "not-zscored"
        return
    spread = float(raw.std())
    if spread == 0.0:
        return
    slope, intercept = np.polyfit(raw, cand, 1)
    if slope == 0 or not np.all(np.abs(slope * raw + intercept - cand) <= 1e3 * ATOL + 1e-4 * np.abs(cand)):
        return
    fitted = {"mean": float(-intercept / slope), "stds": float(1.0 / slope)}
    kv.candidate_stats = declared or fitted
    kv.normalisation = "other-stats" if stats is not None else "zscored-only-by-candidate"
