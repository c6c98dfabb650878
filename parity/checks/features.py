"""Findings of `parity check-features`: a user's feature extraction against the original's, per key and column.

Finding kinds (check "features"; the location is the key unless said otherwise):

=============================  ===========================================================================
features.layout                (location "layout") the first column where the layouts part, both sides' names
                               there, the keys that start at another column and by how much
features.missing_key           an original key the candidate does not write (its columns in the original)
features.extra_key             a candidate key the original does not write
features.key_order             a shared key in another order among the shared keys
features.key_width             a shared key with another number of columns
features.normalisation         a key z-scored on one side only, or with another mean and std
features.unaligned_notes       (location "unaligned notes") the inserted unaligned notes handled otherwise:
                               dropped, or other values in some keys while every aligned row agrees
features.values                a key whose aligned rows differ for another reason (largest error, rows)
features.rows                  (location = performance) a row count that fits no matching rule
=============================  ===========================================================================
"""

from __future__ import annotations

from typing import Any

from percepiano_parity.compare.features import DROPPED_UNALIGNED, FeatureComparison, KeyValues
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult

CHECK = "features"


def _f(kind: str, location: str, message: str, metrics: dict[str, Any] | None = None,
       evidence: dict[str, Any] | None = None, severity: Severity = Severity.ERROR) -> Finding:
    return Finding(CHECK, f"features.{kind}", location, severity, message, metrics or {}, evidence or {})


def layout_findings(c: FeatureComparison, original_layout: dict[str, tuple[int, int]],
                    candidate_layout: dict[str, tuple[int, int]]) -> list[Finding]:
    d = c.layout
    if not d.differs:
        return []
    out = [_f("layout", "layout",
              f"layouts part at column {d.first_column}: original {d.original_at}, replica {d.candidate_at}; "
              f"{len(d.shifted)} shared keys start at another column; width {d.original_width} vs "
              f"{d.candidate_width}",
              {"first_column": d.first_column, "keys_shifted": len(d.shifted), "original_width": d.original_width,
               "replica_width": d.candidate_width},
              {"original_at": d.original_at, "replica_at": d.candidate_at, "shifted": d.shifted, "shift": d.shift,
               "missing": d.missing, "extra": d.extra, "reordered": d.reordered})]
    for key in d.missing:
        span = original_layout[key]
        out.append(_f("missing_key", key, f"{key} (original columns {span[0]}-{span[1] - 1}) is not in the "
                      "replica's layout", {"original_start": span[0], "width": span[1] - span[0]},
                      {"original_columns": list(span), "first_column": d.first_column}))
    for key in d.extra:
        span = candidate_layout[key]
        out.append(_f("extra_key", key, f"{key} (replica columns {span[0]}-{span[1] - 1}) is not in the "
                      "original's layout", {"replica_start": span[0], "width": span[1] - span[0]},
                      {"replica_columns": list(span), "first_column": d.first_column}))
    for key in d.reordered:
        out.append(_f("key_order", key, f"{key} sits at replica columns {candidate_layout[key][0]}- instead of "
                      f"original columns {original_layout[key][0]}-, out of the original's key order",
                      evidence={"original_columns": list(original_layout[key]),
                                "replica_columns": list(candidate_layout[key]), "first_column": d.first_column}))
    for key, (wo, wc) in d.width_changed.items():
        out.append(_f("key_width", key, f"{key} has {wc} columns in the replica, {wo} in the original",
                      {"original_width": wo, "replica_width": wc},
                      {"original_columns": list(original_layout[key]), "replica_columns": list(candidate_layout[key]),
                       "first_column": d.first_column}))
    return out


def _stats_text(stats: dict[str, float] | None) -> str:
    return f"mean {stats['mean']:.6g}, std {stats['stds']:.6g}" if stats else "not z-scored"


def value_findings(c: FeatureComparison) -> list[Finding]:
    out: list[Finding] = []
    unaligned_keys: list[KeyValues] = []
    for kv in c.keys:
        cols = {"original_columns": list(kv.original_columns), "replica_columns": list(kv.candidate_columns)}
        if kv.normalisation is not None:
            original = c.original_stats.get(kv.key)
            replica = None if kv.normalisation == "not-zscored" else kv.candidate_stats
            out.append(_f("normalisation", kv.key,
                          f"{kv.key} (column {kv.original_columns[0]}): original {_stats_text(original)}, replica "
                          f"{_stats_text(replica)}; {kv.rows_differing} of {kv.rows} rows differ, by up to "
                          f"{kv.max_abs:.4g}",
                          {"max_abs": kv.max_abs, "rows_differing": kv.rows_differing, "rows": kv.rows},
                          {**cols, "how": kv.normalisation, "original": original, "replica": replica,
                           "segments": kv.segments_differing}))
        elif kv.rows_differing:
            out.append(_f("values", kv.key, f"{kv.key} (columns {kv.original_columns[0]}-{kv.original_columns[1] - 1}"
                          f"): {kv.rows_differing} of {kv.rows} aligned rows differ, by up to {kv.max_abs:.4g}",
                          {"max_abs": kv.max_abs, "rows_differing": kv.rows_differing, "rows": kv.rows,
                           "segments_differing": len(kv.segments_differing)},
                          {**cols, "segments": kv.segments_differing[:20]}))
        elif kv.unaligned_rows_differing:
            unaligned_keys.append(kv)
    out += _unaligned(c, unaligned_keys)
    for seg, (rows_o, rows_c) in sorted(c.row_mismatch.items()):
        out.append(_f("rows", seg, f"{seg}: {rows_c} rows in the replica, {rows_o} in the original "
                      f"({c.unaligned_notes.get(seg, 0)} of them inserted unaligned notes); not compared",
                      {"original_rows": rows_o, "replica_rows": rows_c},
                      {"unaligned_notes": c.unaligned_notes.get(seg, 0)}))
    return out


def _unaligned(c: FeatureComparison, keys: list[KeyValues]) -> list[Finding]:
    dropped = sorted(s for s, how in c.row_matching.items() if how == DROPPED_UNALIGNED)
    if not dropped and not keys:
        return []
    with_unaligned = sorted(s for s, n in c.unaligned_notes.items() if n)
    keys = sorted(keys, key=lambda k: k.original_columns[0])
    affected = sorted(set(dropped) | {s for k in keys for s in k.segments_differing})
    notes = sum(c.unaligned_notes[s] for s in affected)
    if dropped:
        how = "dropped"
        message = (f"the replica drops the {sum(c.unaligned_notes[s] for s in dropped)} unaligned performance notes "
                   f"the original inserts, in {len(dropped)} of {len(c.unaligned_notes)} performances")
    else:
        how = "given other values"
        message = (f"the unaligned notes get other values in {', '.join(k.key for k in keys[:6])} (first at column "
                   f"{keys[0].original_columns[0]}); every aligned row agrees")
    return [_f("unaligned_notes", "unaligned notes", message,
               {"segments_affected": len(affected), "notes_affected": notes, "segments": len(c.unaligned_notes),
                "segments_with_unaligned": len(with_unaligned)},
               {"how": how, "segments": affected, "keys": [k.key for k in keys],
                "first_column": keys[0].original_columns[0] if keys else None,
                "columns": {k.key: list(k.original_columns) for k in keys},
                "max_abs": max((k.max_abs_unaligned for k in keys), default=None)})]


def key_table(c: FeatureComparison, original_layout: dict[str, tuple[int, int]],
              candidate_layout: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """One row per key of either layout, in the original's column order, then the replica's extra keys."""
    by_key = {kv.key: kv for kv in c.keys}
    rows = []
    for key in [*original_layout, *[k for k in candidate_layout if k not in original_layout]]:
        o, r = original_layout.get(key), candidate_layout.get(key)
        kv = by_key.get(key)
        status = "missing" if r is None else "extra" if o is None else "ok"
        if kv is not None and kv.differs:
            status = kv.normalisation or ("differs" if kv.rows_differing else "unaligned rows differ")
        elif o is not None and r is not None and kv is None:
            status = "width differs"
        rows.append({"key": key, "original": f"{o[0]}-{o[1] - 1}" if o else "—",
                     "replica": f"{r[0]}-{r[1] - 1}" if r else "—",
                     "z-scored": "yes" if key in c.original_stats else "no",
                     "max abs": kv.max_abs if kv else None, "status": status})
    return rows


def features_check(c: FeatureComparison, original_layout: dict[str, tuple[int, int]],
                   candidate_layout: dict[str, tuple[int, int]], fail_on: Severity) -> CheckResult:
    findings = layout_findings(c, original_layout, candidate_layout) + value_findings(c)
    failed = any(f.severity >= fail_on for f in findings)
    return CheckResult(CHECK, "failed" if failed else "passed", findings,
                       tables={"keys": key_table(c, original_layout, candidate_layout)})
