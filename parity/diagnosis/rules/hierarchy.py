"""Rules for the hierarchy's forward semantics, with no structure change left: padded instead of packed LSTMs,
beat/measure boundaries, and spanning node outputs back to notes (the original's count quirk, an offset).
They are told apart by where the mismatches sit (the forward check's pattern evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from percepiano_parity.core.findings import Finding, Severity
from percepiano_parity.diagnosis.rule import (
    Rule,
    SourceRef,
    pattern_measure,
    semantic,
    waivable,
)


def _share(pattern: dict[str, Any], key: str) -> float | None:
    value = pattern.get(key)
    return float(value) if value is not None else None


def _padded_lstm_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    longest, shorter = _share(pattern, "longest_items_bad_share"), _share(pattern, "shorter_items_bad_share")
    return longest == 0.0 and bool(shorter)


def _boundary_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    with_gap = _share(pattern, "bad_batches_with_gap_share")
    return with_gap == 1.0 and pattern.get("batches_bad", 0) < pattern.get("batches", 0)


def _span_count_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    zero, after = _share(pattern, "ref_zero_share"), _share(pattern, "after_span_count_share")
    return zero is not None and after is not None and zero >= 0.999 and after >= 0.999


def _span_offset_test(findings: Sequence[Finding], pattern: dict[str, Any]) -> bool:
    first, zero = _share(pattern, "first_group_share"), _share(pattern, "ref_zero_share")
    return first == 0.0 and (zero or 0.0) < 0.999


RULES: list[Rule] = [
    # ---- forward semantics (no structure change) ---------------------------------------------------------------
    Rule(
        id="PP-PADDED-LSTM", title="Padded instead of packed sequences into the LSTMs",
        whole_model=("note", "voice", "beat", "measure"),
        severity=Severity.ERROR,
        original_does="Feeds the note LSTM a PackedSequence (pack_sequence in the collate; pack_padded_sequence "
                      "otherwise), the voice LSTM packed per-voice sequences, and the beat/measure LSTMs packed "
                      "nodes (run_hierarchy_lstm_with_pack), so padding never enters a recurrence.",
        replica_does="Runs an LSTM over zero-padded tensors: the longest item of each batch agrees "
                     "(longest items differing: {longest_items_bad_share:.0%}), shorter items differ "
                     "({shorter_items_bad_share:.0%}), because the backward direction starts in the padding.",
        effect="Every item shorter than the longest in its batch gets different LSTM states (up to "
               "{root_max_abs:.3g} at {root_level}); predictions depend on batch composition; logits move by up "
               "to {logits_max_abs:.3g}.",
        fix="Pack the sequences (pack_padded_sequence with the real lengths, enforce_sorted=False) before every "
            "LSTM and unpack after.",
        match=semantic(("note", "voice", "beat", "measure"), _padded_lstm_test), measure=pattern_measure,
        refs=(SourceRef("dataset.py", r"pack_sequence\("),
              SourceRef("encoder_score.py", r"pack_padded_sequence\(x, x\.shape\[1\]"),
              SourceRef("model_utils.py", r"def run_hierarchy_lstm_with_pack")),
        fix_action="restore_semantics", priority=30),
    Rule(
        id="PP-BOUNDARY-RULE", title="Beat/measure boundaries placed at every change of number",
        whole_model=("beat_nodes", "measure_nodes", "beat_spanned", "measure_spanned"),
        severity=Severity.ERROR,
        original_does="Starts a new beat (measure) only where the number rises by exactly 1 (find_boundaries_batch: "
                      "diff == 1); a jump of 2 is not a boundary, so the two beats merge into one node.",
        replica_does="Starts a node at every change of number: the nodes differ exactly in the batches whose "
                     "beat or measure numbers jump ({batches_bad} of {batches} batches differ, all of them with "
                     "a jump).",
        effect="On data with gaps in beat/measure numbers the beat nodes, their LSTM and the spanned vectors "
               "differ (up to {root_max_abs:.3g} at {root_level}; logits by up to {logits_max_abs:.3g}); on gap-"
               "free data nothing changes.",
        fix="Place a boundary only where the number rises by exactly 1, as the original does.",
        match=semantic(("beat_nodes", "measure_nodes"), _boundary_test), measure=pattern_measure,
        refs=(SourceRef("utils.py", r"beat_numbers\[:,1:\] - beat_numbers\[:,:-1\] == 1"),
              SourceRef("utils.py", r"def find_boundaries\("),),
        fix_action="restore_semantics", priority=31),
    Rule(
        id="PP-SPAN-COUNT-QUIRK", title="Spanning beats back to notes uses the true note count (the original "
                                        "truncates)",
        severity=Severity.WARNING, quirk=True,
        original_does="span_beat_to_note_num takes the note count from cal_length_from_padded_beat_numbers = "
                      "argmin(diff(beat numbers)) + 1, and 1 means the whole row. In the longest item of a batch, "
                      "whose first note is alone in its beat, the argmin lands on the first chord, so every later "
                      "note gets an all-zero beat (or measure) vector. This is the original's quirk.",
        replica_does="Spans every real note: {rows_bad} notes in {items_bad} items that the original leaves at "
                     "zero get their beat vector here (all differing notes are zero in the original and lie past "
                     "its span count).",
        effect="Changes the spanned vectors of those notes by up to {root_max_abs:.3g} and the logits by up to "
               "{logits_max_abs:.3g} (loss by {loss_max_abs:.2g}); it hits the longest item of every batch whose "
               "first note is alone in its beat, and every item at batch size 1 (the eval scripts). " + waivable("PP-SPAN-COUNT-QUIRK"),
        fix="To reproduce the paper, use the original's count (argmin of the beat-number difference + 1, with 1 "
            "meaning the whole row); to keep the correction, waive PP-SPAN-COUNT-QUIRK with a reason.",
        match=semantic(("beat_spanned", "measure_spanned"), _span_count_test), measure=pattern_measure,
        refs=(SourceRef("utils.py", r"def cal_length_from_padded_beat_numbers"),
              SourceRef("utils.py", r"torch\.min\(torch\.diff\(beat_numbers"),
              SourceRef("model_utils.py", r"len_note = cal_length_from_padded_beat_numbers")),
        fix_action="restore_semantics", priority=32),
    Rule(
        id="PP-SPAN-OFFSET", title="Beat/measure vectors spanned back to the wrong notes (index offset)",
        severity=Severity.ERROR,
        original_does="Note n receives node (beat[n] - beat[0]) of its item: zero-shifted beat (measure) numbers "
                      "index the LSTM outputs directly.",
        replica_does="Indexes the nodes with an offset: the notes of each item's first beat agree, later notes get "
                     "a neighbouring node ({rows_bad} notes in {items_bad} items differ).",
        effect="Every note after the first beat carries the wrong beat context (up to {root_max_abs:.3g} at "
               "{root_level}); logits move by up to {logits_max_abs:.3g}.",
        fix="Index with the zero-shifted number itself: node = beat[n] - beat[0], no offset and no clamping.",
        match=semantic(("beat_spanned", "measure_spanned"), _span_offset_test), measure=pattern_measure,
        refs=(SourceRef("model_utils.py", r"zero_shifted_beat_number = beat_number - beat_number\[:,0:1\]"),
              SourceRef("model_utils.py", r"def span_beat_to_note_num")),
        fix_action="restore_semantics", priority=33),
]
