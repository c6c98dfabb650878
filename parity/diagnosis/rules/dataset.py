"""Rules for the user's dataset and collate (`parity check --data CACHE --dataset SPEC`, findings of
parity.checks.dataset): what reaches the model from the user's data pipeline against the original's loader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import Rule, SourceRef, having

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]


def _kinds(*kinds: str) -> Matcher:
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        return [f for f in findings if f.kind in kinds] or None
    return match


def _metrics(claimed: Sequence[Finding]) -> dict[str, Any]:
    """The first claimed finding's metrics, plus the locations it names."""
    out: dict[str, Any] = {}
    for f in claimed:
        for k, v in f.metrics.items():
            out.setdefault(k, v)
    out["names"] = ", ".join(sorted({f.location for f in claimed}))
    offsets = sorted({o for f in having(claimed, "dataset.location_offset") for o in f.evidence.get("offsets", [])})
    if offsets:
        out["offsets"] = ", ".join(f"{o:+d}" for o in offsets)
    for f in having(claimed, "dataset.fold_membership"):
        out["extra_from"] = ", ".join(f"{n} from {s}" for s, n in sorted(f.evidence.get("extra_from", {}).items()))
        out["split"] = f.location
    located = having(claimed, "dataset.locations")
    if located:
        only = all(f.evidence.get("unaligned_only") for f in located)
        out["which_notes"] = "only the unaligned notes (voice 0)" if only else "aligned notes too"
        out["notes"] = sum(int(f.metrics.get("notes", 0)) for f in located)
    for f in having(claimed, "dataset.feature_columns"):
        out["column_names"] = ", ".join(f.evidence.get("names", [])) or "—"
    return out


DATASET = SourceRef("dataset.py", r"def data_to_formatted_tensor")
COLLATE = SourceRef("dataset.py", r"class FeatureCollate")

RULES: list[Rule] = [
    Rule(
        id="PP-DATA-FIXED-LENGTH", title="Segments padded or truncated to a fixed length ({segments_affected} of "
                                         "{segments} segments)",
        severity=Severity.ERROR,
        original_does="Feeds every segment whole (one slice: every PercePiano segment is far below len_slice "
                      "5000) and packs the batch (pack_sequence), so no model level sees a padding row and no "
                      "note is cut.",
        replica_does="Delivers {padded} segments padded with zero rows and {truncated} truncated (to {fixed_length} "
                     "rows): {padding_rows} padding rows reach the model and {notes_cut} notes are cut.",
        effect="Padding rows run through the LSTMs and the attention pooling as notes (and change the mean and the "
               "context attention); truncated segments lose their ending, and their labels describe notes the "
               "model never sees.",
        fix="Feed whole segments and pack them (or pass true lengths and mask every level) as FeatureCollate does.",
        match=_kinds("dataset.fixed_length", "dataset.lengths"), measure=_metrics, priority=27,
        refs=(DATASET, COLLATE)),
    Rule(
        id="PP-DATA-LOCATION-OFFSET", title="Note locations numbered with an offset ({offsets}) in {names}",
        severity=Severity.ERROR,
        original_does="Passes the note locations as the feature pipeline wrote them (torch.Tensor(...).type("
                      "torch.int32)); FeatureCollate pads them with 0, and the hierarchy reads beat and measure "
                      "numbers as they are.",
        replica_does="Shifts {names} by {offsets} in {segments_affected} of {segments} segments (e.g. numbering "
                     "from 1).",
        effect="Padding (0) and real positions are told apart otherwise, and spans computed from the numbers move: "
               "beat and measure boundaries and the voice of unaligned notes (0 in the original) change.",
        fix="Use the note locations unchanged, numbered as the original numbers them.",
        match=_kinds("dataset.location_offset"), measure=_metrics, priority=28, refs=(DATASET, COLLATE)),
    Rule(
        id="PP-DATA-FOLDS", title="Fold membership differs for {split}: {segments_affected} performances ({missing} "
                                  "missing, {extra} extra)",
        severity=Severity.ERROR,
        original_does="Uses the published split: performer4fold by performer id (test ids 1 and 2, fold f "
                      "validates on ids 2f+3 and 2f+4), composition4fold from its seeded draw; only labelled "
                      "performances.",
        replica_does="Splits its own way: {missing} of the original's {original} performances of {split} are "
                     "missing and it holds {extra} others ({extra_from}).",
        effect="Results are not comparable with the paper's folds; performances of the original's valid or test "
               "split in training leak into its evaluation.",
        fix="Use the published folds (parity data prepare writes them into the cache's manifest).",
        match=_kinds("dataset.fold_membership"), measure=_metrics, priority=29,
        refs=(SourceRef("pyScoreParser/m2pf_dataset_performerfold.py", r"def get_performer_fold_map"),)),
    Rule(
        id="PP-DATA-FEATURE-COLUMNS", title="Other feature columns reach the model ({segments_affected} segments)",
        severity=Severity.ERROR,
        original_does="Feeds the input matrix as the feature pipeline wrote it (torch.Tensor(data['input'])).",
        replica_does="Delivers other values in columns {column_names} (first column {first_column}, by up to "
                     "{max_abs:.4g}).",
        effect="The note embedder reads other inputs for these columns.",
        fix="Feed the cached input matrix unchanged (run `parity check-features` for the extraction itself).",
        match=_kinds("dataset.feature_columns"), measure=_metrics, priority=30, refs=(DATASET,)),
    Rule(
        id="PP-DATA-LOCATIONS", title="Note locations differ in {names}",
        severity=Severity.ERROR,
        original_does="Passes the note locations unchanged; unaligned notes carry their neighbour's beat and "
                      "measure and voice 0.",
        replica_does="Delivers other {names} numbers for {notes} notes of {segments_affected} of {segments} "
                     "segments: {which_notes}.",
        effect="Beat and measure spans and voice groups change for the affected notes (a -1 beat or measure "
               "starts a span of its own and breaks the original's boundary rule).",
        fix="Use the note locations unchanged: the original copies the neighbour's beat and measure into an "
            "unaligned note (data_for_training.py insert_value_to_list) and gives it voice 0.",
        match=_kinds("dataset.locations"), measure=_metrics, priority=31, refs=(DATASET,)),
    Rule(
        id="PP-DATA-LABELS", title="Labels differ in {segments_affected} of {segments} segments",
        severity=Severity.ERROR,
        original_does="Takes the first 19 values of the label file's entry for each performance.",
        replica_does="Delivers other labels (by up to {max_abs:.4g}).",
        effect="The model is trained and scored against other targets.",
        fix="Read labels[:19] of the intended label file.",
        match=_kinds("dataset.labels"), measure=_metrics, priority=32, refs=(DATASET,)),
]
