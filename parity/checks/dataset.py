"""The dataset check of `parity check --data CACHE --dataset SPEC`: the user's dataset and collate against the
original's loader on one epoch of the audited split, per segment.

The original's side is the loader of batches.real.loader (train_m2pf.py:70-106 and dataset.py: whole segments,
batches of 8, RandomSampler order for train seeded with --seed, dataset order otherwise). The user's dataset is
asked for the same performances in the same batch composition; what its collate returns is read back per item
(subjects.user_data) and compared (compare.dataset). Finding kinds (check "dataset"):

===========================  ===============================================================================
dataset.fold_membership      (location = the split) performances of the original's split the user's dataset
                             lacks, and ones it has that the original puts elsewhere (with where)
dataset.fixed_length         (location "lengths") segments padded (zero rows) or truncated to another length
dataset.lengths              (location "lengths") other length differences (padding that is not zero)
dataset.location_offset      (location = beat/measure/voice/section) numbering shifted by a constant
dataset.locations            (location = the name) other location differences (flagged when only unaligned notes)
dataset.feature_columns      (location "features") another width, or columns with other values
dataset.labels               (location "labels") other label values
===========================  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from percepiano_parity.batches.real.loader import BATCH_SIZE, RealData
from percepiano_parity.batches.real.splits import parse_split
from percepiano_parity.compare.dataset import SegmentDelivery, compare_membership, compare_segment
from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.core.report import CheckResult
from percepiano_parity.subjects.user_data import DatasetRequest, load_dataset, run_batches

CHECK = "dataset"


def _f(kind: str, location: str, message: str, metrics: dict[str, Any], evidence: dict[str, Any]) -> Finding:
    return Finding(CHECK, f"dataset.{kind}", location, Severity.ERROR, message, metrics, evidence)


def dataset_check(data: RealData, split: str, spec: str, seed: int, *, num_label: int = 19,
                  original_collate: Callable[[list[Any]], Any] | None = None) -> CheckResult:
    """Compare one epoch of the split (UsageError, one line, for a dataset that fails or cannot be read)."""
    request = DatasetRequest(split=split, data=data, num_label=num_label, original_collate=original_collate)
    dataset, collate, keys = load_dataset(spec, request)
    original_keys = request.keys()
    scheme, fold, _ = parse_split(split)
    split_of = {k: ((r.get("folds") or {}).get(scheme) or [None] * 4)[fold]  # None: unlabelled, in no split
                for k, r in data.manifest["segments"].items()}
    membership = compare_membership(split, original_keys, keys, split_of)
    order = data.order(len(original_keys), seed, shuffle=split.endswith(":train"))
    groups = [[original_keys[i] for i in order[s:s + BATCH_SIZE]] for s in range(0, len(order), BATCH_SIZE)]
    delivered = run_batches(dataset, collate, keys, groups, spec)
    segments: list[SegmentDelivery] = []
    for batch in delivered:
        for i, key in enumerate(batch.keys):
            seg = data.segment(key, num_label=num_label)
            segments.append(compare_segment(
                key, seg.features, {n: seg.location(n) for n in ("beat", "measure", "voice", "section")}, seg.label,
                batch.features[i], {n: batch.locations[n][i] for n in batch.locations}, batch.labels[i]))
    findings = _membership(membership) + _lengths(segments) + _locations(segments) + \
        _features(segments, data) + _labels(segments)
    table = [{"segment": s.key, "original rows": s.original_rows, "replica rows": s.replica_rows,
              "offsets": ", ".join(f"{k} {v:+d}" for k, v in s.location_offset.items()) or "—",
              "columns differing": len(s.columns_differing), "label max abs": s.label_max_abs} for s in segments]
    result = CheckResult(CHECK, "failed" if findings else "passed", findings, tables={"segments": table})
    result.reason = (f"{len(segments)} segments of {split} compared ({len(groups)} batches of one epoch); "
                     f"{len(membership.missing)} missing from the replica's dataset")
    return result


def _membership(m: Any) -> list[Finding]:
    if not m.differs:
        return []
    where = ", ".join(f"{n} from the original's {s}" for s, n in sorted(m.extra_from.items()))
    return [_f("fold_membership", m.split,
               f"{len(m.missing)} of the original's {len(m.original)} performances of {m.split} are not in the "
               f"replica's dataset, and it holds {len(m.extra)} others ({where or 'none'})",
               {"segments_affected": len(m.missing) + len(m.extra), "missing": len(m.missing), "extra": len(m.extra),
                "original": len(m.original), "replica": len(m.replica)},
               {"missing": m.missing[:20], "extra": m.extra[:20], "extra_from": m.extra_from})]


def _lengths(segments: Sequence[SegmentDelivery]) -> list[Finding]:
    padded = [s for s in segments if s.padding_rows and s.padding_zero]
    truncated = [s for s in segments if s.truncated_rows]
    other = [s for s in segments if s.padding_rows and not s.padding_zero]
    out = []
    if padded or truncated:
        lengths = {s.replica_rows for s in [*padded, *truncated]}
        fixed = lengths.pop() if len(lengths) == 1 else None
        out.append(_f("fixed_length", "lengths",
                      f"{len(padded) + len(truncated)} of {len(segments)} segments reach the model with another "
                      f"length: {len(padded)} padded with zero rows, {len(truncated)} truncated"
                      + (f", all to {fixed} rows" if fixed else ""),
                      {"segments_affected": len(padded) + len(truncated), "segments": len(segments),
                       "padded": len(padded), "truncated": len(truncated), "fixed_length": fixed,
                       "padding_rows": sum(s.padding_rows for s in padded),
                       "notes_cut": sum(s.truncated_rows for s in truncated)},
                      {"padded": [s.key for s in padded][:20], "truncated": [s.key for s in truncated][:20],
                       "longest_original": max(s.original_rows for s in segments)}))
    if other:
        out.append(_f("lengths", "lengths", f"{len(other)} segments get extra rows that are not zero",
                      {"segments_affected": len(other)}, {"segments": [s.key for s in other][:20]}))
    return out


def _locations(segments: Sequence[SegmentDelivery]) -> list[Finding]:
    out = []
    for name in ("beat", "measure", "voice", "section"):
        shifted = [s for s in segments if name in s.location_offset]
        if shifted:
            offsets = sorted({s.location_offset[name] for s in shifted})
            out.append(_f("location_offset", name,
                          f"{name} numbers differ by {', '.join(f'{o:+d}' for o in offsets)} in {len(shifted)} of "
                          f"{len(segments)} segments",
                          {"segments_affected": len(shifted), "segments": len(segments), "offset": offsets[0]},
                          {"offsets": offsets, "examples": [s.key for s in shifted][:10]}))
        other = [s for s in segments if name in s.location_rows_differing]
        if other:
            unaligned = all(s.location_unaligned_only[name] for s in other)
            out.append(_f("locations", name,
                          f"{name} differs in {sum(s.location_rows_differing[name] for s in other)} notes of "
                          f"{len(other)} segments" + (" (only the unaligned notes)" if unaligned else ""),
                          {"segments_affected": len(other), "segments": len(segments),
                           "notes": sum(s.location_rows_differing[name] for s in other)},
                          {"unaligned_only": unaligned, "examples": [s.key for s in other][:10]}))
    return out


def _column_name(data: RealData, column: int) -> str:
    for key, (start, end) in data.key_list().get("key_to_dim", {}).items():
        if start <= column < end:
            return f"{key}[{column - start}]" if end - start > 1 else key
    return f"column {column}"


def _features(segments: Sequence[SegmentDelivery], data: RealData) -> list[Finding]:
    wide = [s for s in segments if s.feature_width[0] != s.feature_width[1]]
    cols = [s for s in segments if s.columns_differing]
    if not wide and not cols:
        return []
    columns = sorted({c for s in cols for c in s.columns_differing})
    first = columns[0] if columns else None
    names = [_column_name(data, c) for c in columns[:8]]
    message = (f"{len(wide)} segments reach the model with {wide[0].feature_width[1]} feature columns instead of "
               f"{wide[0].feature_width[0]}" if wide else
               f"{len(columns)} feature columns differ in {len(cols)} segments, first column {first} ({names[0]})")
    return [_f("feature_columns", "features", message,
               {"segments_affected": len(set(s.key for s in [*wide, *cols])), "segments": len(segments),
                "first_column": first, "max_abs": max((s.feature_max_abs for s in cols), default=None)},
               {"columns": columns[:40], "names": names,
                "widths": sorted({tuple(s.feature_width) for s in wide})})]


def _labels(segments: Sequence[SegmentDelivery]) -> list[Finding]:
    bad = [s for s in segments if s.label_max_abs > 1e-6]
    if not bad:
        return []
    return [_f("labels", "labels", f"labels differ in {len(bad)} of {len(segments)} segments",
               {"segments_affected": len(bad), "segments": len(segments),
                "max_abs": max(s.label_max_abs for s in bad)}, {"examples": [s.key for s in bad][:10]})]
