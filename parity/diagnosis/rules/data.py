"""Rules for the data side: the user's feature extraction, dataset and collate, and outcome parity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import Rule, SourceRef, having

# ----------------------------------------------------------------------------------------------------------
# Rules for the user's feature extraction (`parity check-features`, findings of parity.checks.features).
#
# The layout finding (where the columns part) goes with the first rule that explains why they part: a missing key,
# an extra key, a key in another order, a key of another width. Normalisation, unaligned notes and other value
# errors are explained per family, each once for all its keys.

Matcher = Callable[[Sequence[Finding]], list[Finding] | None]
CONVERTER = "pyScoreParser/data_for_training.py"


def _with_layout(kind: str) -> Matcher:
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        hits = having(findings, kind)
        return hits + having(findings, "features.layout") if hits else None
    return match


def _kind(kind: str) -> Matcher:
    def match(findings: Sequence[Finding]) -> list[Finding] | None:
        return having(findings, kind) or None
    return match


def _layout_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in having(claimed, "features.layout"):
        out.update(first_column=f.metrics.get("first_column"), original_at=f.evidence.get("original_at"),
                   replica_at=f.evidence.get("replica_at"), keys_shifted=f.metrics.get("keys_shifted"),
                   shift=f.evidence.get("shift"), original_width=f.metrics.get("original_width"),
                   replica_width=f.metrics.get("replica_width"))
    keys = sorted({f.location for f in claimed if f.kind != "features.layout"})
    out["keys"] = ", ".join(keys)
    return out


def _normalisation_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    parts = []
    for f in sorted(claimed, key=lambda f: f.evidence.get("original_columns", [0])[0]):
        how = {"not-zscored": "not z-scored", "other-stats": "other mean/std",
               "zscored-only-by-candidate": "z-scored only by the replica"}.get(f.evidence.get("how"), "?")
        parts.append(f"{f.location} (column {f.evidence.get('original_columns', ['?'])[0]}: {how})")
    first = min((f.evidence.get("original_columns", [0])[0] for f in claimed), default=None)
    return {"keys": "; ".join(parts), "first_column": first, "count": len(claimed)}


def _unaligned_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in claimed:
        keys = f.evidence.get("keys") or []
        return {"how": f.evidence.get("how"), "segments_affected": f.metrics.get("segments_affected"),
                "segments": f.metrics.get("segments"), "notes_affected": f.metrics.get("notes_affected"),
                "keys": ", ".join(keys) if keys else "every key (rows missing)",
                "first_column": f.evidence.get("first_column")}
    return {}


def _values_measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    values = having(claimed, "features.values")
    rows = having(claimed, "features.rows")
    worst = max(values, key=lambda f: f.metrics.get("max_abs", 0.0), default=None)
    first = min((f.evidence.get("original_columns", [0])[0] for f in values), default=None)
    return {"keys": ", ".join(f.location for f in values) or "—", "first_column": first,
            "max_abs": worst.metrics.get("max_abs") if worst else None, "performances_rows": len(rows)}


REF_KEYS = SourceRef(CONVERTER, r"def _cal_dimension")
REF_CONVERTER = SourceRef(CONVERTER, r"def _check_if_global_and_normalize")

FEATURE_RULES: list[Rule] = [
    Rule(
        id="PP-FEAT-MISSING-KEY", title="Feature key {keys} missing: the layouts part at column {first_column}",
        severity=Severity.ERROR,
        original_does="Writes one block per key of its input key list, in list order (FeatureConverter."
                      "_cal_dimension), then the five unnormalised copies (midi_pitch_unnorm and the like): {original_width} columns.",
        replica_does="Leaves out {keys}: column {first_column} holds {replica_at} instead of {original_at}, and "
                     "{keys_shifted} later keys move by {shift:+} columns ({replica_width} columns in all).",
        effect="Every column after the missing key means something else to the note embedder: weights trained on "
               "one layout are meaningless on the other, and the missing feature is lost to the model.",
        fix="Add {keys} at its place in the original's key list (the published splits list it in "
            "m2pf_dataset_performerfold.py VNET_INPUT_KEYS).",
        match=_with_layout("features.missing_key"), measure=_layout_measure, priority=20,
        refs=(REF_KEYS, SourceRef("pyScoreParser/m2pf_dataset_performerfold.py", r"VNET_INPUT_KEYS\s*="))),
    Rule(
        id="PP-FEAT-EXTRA-KEY", title="Extra feature key {keys}: the layouts part at column {first_column}",
        severity=Severity.ERROR,
        original_does="Writes exactly the blocks of its input key list plus the five unnormalised copies (midi_pitch_unnorm and the like) "
                      "({original_width} columns).",
        replica_does="Adds {keys}: column {first_column} holds {replica_at} instead of {original_at} "
                     "({replica_width} columns in all).",
        effect="Later columns shift and the input width changes: the note embedder's weights do not carry over.",
        fix="Drop {keys}, or audit against the key list that has it.",
        match=_with_layout("features.extra_key"), measure=_layout_measure, priority=21, refs=(REF_KEYS,)),
    Rule(
        id="PP-FEAT-KEY-ORDER", title="Feature keys in another order ({keys}): the layouts part at column "
                                      "{first_column}",
        severity=Severity.ERROR,
        original_does="Lays the keys out in the order of its key list.",
        replica_does="Puts {keys} elsewhere: column {first_column} holds {replica_at} instead of {original_at}.",
        effect="Same features, other columns: a model or checkpoint of one order reads the wrong feature in "
               "the other.",
        fix="Lay the keys out in the original's key-list order.",
        match=_with_layout("features.key_order"), measure=_layout_measure, priority=22, refs=(REF_KEYS,)),
    Rule(
        id="PP-FEAT-KEY-WIDTH", title="Feature key {keys} has another width: the layouts part at column "
                                      "{first_column}",
        severity=Severity.ERROR,
        original_does="Gives each key the length of its per-note value (e.g. pitch 13: octave + 12-class one-hot).",
        replica_does="Writes {keys} with another number of columns; column {first_column} holds {replica_at} "
                     "instead of {original_at}.",
        effect="Every later column shifts, and the key itself is encoded otherwise.",
        fix="Encode {keys} as the original does (batches.features.WIDTHS lists each width and its source).",
        match=_with_layout("features.key_width"), measure=_layout_measure, priority=23, refs=(REF_KEYS,)),
    Rule(
        id="PP-FEAT-NORMALISATION", title="Normalisation differs for {count} key(s), first at column {first_column}",
        severity=Severity.ERROR,
        original_does="Z-scores exactly the keys of NORM_FEAT_KEYS with one mean and (population) std per key "
                      "over every labelled performance, train, valid and test alike (update_mean_stds_of_entire_"
                      "dataset, cal_mean_stds); every other key is written raw.",
        replica_does="{keys}.",
        effect="The affected columns are on another scale: the embedding of every note changes, and a "
               "checkpoint trained on one scale gives other outputs on the other.",
        fix="Z-score the keys of NORM_FEAT_KEYS (and only those) with statistics over the whole labelled "
            "dataset, std without Bessel's correction (std 0 -> 1).",
        match=_kind("features.normalisation"), measure=_normalisation_measure, priority=24,
        refs=(SourceRef(CONVERTER, r"^NORM_FEAT_KEYS"), SourceRef(CONVERTER, r"def cal_mean_stds\("), REF_CONVERTER)),
    Rule(
        id="PP-FEAT-UNALIGNED-NOTES", title="Unaligned performance notes handled otherwise ({how}) in "
                                            "{segments_affected} of {segments} performances",
        severity=Severity.ERROR,
        original_does="Inserts every performance note the alignment left unpaired as a row of its own (score "
                      "features 0, beat_position, xml_position and measure_length copied from the neighbour, "
                      "voice 0, the neighbour's beat and measure).",
        replica_does="Unaligned notes {how}: {notes_affected} notes of {segments_affected} performances; keys "
                     "affected: {keys} (first column {first_column}).",
        effect="The model sees other notes (or other values for them) and other sequence lengths; in PercePiano "
               "10% of all notes are unaligned, in 76% of the performances.",
        fix="Insert the unaligned notes as ScorePerformPairData.insert_unaligned_midi_features does.",
        match=_kind("features.unaligned_notes"), measure=_unaligned_measure, priority=25,
        refs=(SourceRef(CONVERTER, r"def insert_unaligned_midi_features"),
              SourceRef(CONVERTER, r"def align_different_length"))),
    Rule(
        id="PP-FEAT-VALUES", title="Feature values differ in {keys}",
        severity=Severity.ERROR,
        original_does="Computes each key with pyScoreParser's extractors (feature_extraction.py) and "
                      "FeatureConverter.",
        replica_does="Writes other values for {keys} (first at column {first_column}, by up to {max_abs:.4g}); "
                     "{performances_rows} performances with a row count that fits no rule.",
        effect="The model reads other inputs for these keys.",
        fix="Compare the key's extraction with the original's (parity check-features lists each key's error).",
        match=lambda fs: having(fs, "features.values") + having(fs, "features.rows") or None,
        measure=_values_measure, priority=26, refs=(REF_CONVERTER,)),
]


# ----------------------------------------------------------------------------------------------------------
# Rules for the user's dataset and collate (`parity check --data CACHE --dataset SPEC`, findings of
# parity.checks.dataset): what reaches the model from the user's data pipeline against the original's loader.


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

DATASET_RULES: list[Rule] = [
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


# ----------------------------------------------------------------------------------------------------------
# Rules for outcome parity (`parity train-compare`, findings of parity.checks.training.outcome).


def _measure(claimed: Sequence[Finding]) -> dict[str, Any]:
    for f in having(claimed, "outcome.parted"):
        metrics = f.evidence.get("metrics", {})
        first = f.metrics.get("first_epoch")
        parts = [f"{m} {v['original']:.6g} vs {v['replica']:.6g}" for m, v in metrics.items() if v["epoch"] == first]
        return {"first_epoch": first, "epochs": f.metrics.get("epochs"), "what": "; ".join(parts),
                "deviation": f.evidence.get("deviation") or "none"}
    return {}


OUTCOME_RULES: list[Rule] = [
    Rule(
        id="PP-OUTCOME-PARTED", title="The learning curves part at epoch {first_epoch}",
        severity=Severity.ERROR,
        original_does="Trains with train_m2pf.train_step and the published recipe (Adam 2.5e-5, weight decay "
                      "1e-5, StepLR 3000/0.98 per iteration, clip 2.0), validated each epoch by "
                      "get_validation_loss.",
        replica_does="From the same initial weights on the same batches in the same order, its curves leave the "
                     "original's beyond the measured float32 noise at epoch {first_epoch}: {what} (deviation "
                     "applied: {deviation}).",
        effect="The replica does not reproduce the original's training outcome; the recipe or data checks of "
               "`parity check` name the step that differs.",
        fix="Run `parity check` with its recipe and trajectory checks on this replica: the first differing step "
            "and its explanation point at the cause.",
        match=lambda fs: having(fs, "outcome.parted") or None, measure=_measure, priority=33,
        refs=(SourceRef("train_m2pf.py", r"def train_step"), SourceRef("train_m2pf.py", r"def get_validation_loss"))),
]
