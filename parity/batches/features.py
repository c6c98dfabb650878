"""The note-feature layouts of the original's input matrices: 101 columns measured on the published splits, 79 for
the synthetic default.

How the original builds the `input` matrix
------------------------------------------
`pyScoreParser/data_for_training.py`, class `FeatureConverter`, lays out one block per key of an *input key
list*, in list order. A key's width is the length of its per-note value when that value is a list, else 1
(`_cal_dimension`). Values that are not per-note lists (`qpm_primo`, `composer_vec`, `tempo_primo`) are
repeated for every note. Keys with statistics are z-normalised; the layout does not change.

Widths of the vector-valued keys, read from the extraction code (`pyScoreParser/`):

=================  =====  ===================================================================================
key                width  where the width comes from
=================  =====  ===================================================================================
pitch                 13  `feature_utils.pitch_into_vector`: normalised octave + 12-class one-hot
tempo                  5  `feature_extraction.ScoreExtractor.get_tempo`: `dynamic_embedding(..., len_vec=5)`
dynamic                4  `feature_extraction.ScoreExtractor.get_dynamic`: `dynamic_embedding(..., len_vec=4)`
time_sig_vec           9  `feature_utils.time_signature_to_vector`: 5 numerator + 4 denominator slots
slur_beam_vec          6  `feature_extraction.ScoreExtractor.get_slur_beam_vec`: slur start/continue/stop,
                          beam start/continue/stop
composer_vec          17  `feature_utils.composer_name_to_vec`: 16 composers + "other" (a global value)
notation               9  `feature_utils.note_notation_to_vector`: 9 notation keywords
tempo_primo            2  `feature_extraction.ScoreExtractor.get_tempo_primo`: first 2 of the 5 tempo slots
=================  =====  ===================================================================================

Every other key used anywhere below is one number per note.

Which key list, which width: measured
--------------------------------------
`parity data prepare` ran the original's own pipeline on all 1,202 PercePiano performances (README, "Real
data"); the widths below are what its FeatureConverter wrote (`key_to_dim['input']`, checked against this table
by tests/commands/test_real_data.py):

* `FeatureConverter._preserve_feature_before_normalization` appends `<key>_unnorm` for each of
  `PRESERVE_FEAT_KEYS` (midi_pitch, duration, beat_importance, measure_length, following_rest) present in the
  pair features, which all five always are (`dataset.py:64` reads `midi_pitch_unnorm`). So **no key list of
  the original yields 79**:
* the published split scripts (`m2pf_dataset_performerfold.py:157`, the same list in
  `m2pf_dataset_compositionfold.py`; 39 keys: the score keys without midi_pitch, 15 performance features, 4
  `mmidi_*`) write **101 columns** (96 + 5 `_unnorm`): the input of every published composition- and
  performer-fold model (`utils.handle_args` takes input_size from these pickles). This is `MEASURED_LAYOUT`,
  `LAYOUTS["split-scripts-101"]`, and the width `parity check --data` uses;
* their *perffeatonly* lists write 9 (4 + 5); the module default `data_for_training.VNET_INPUT_KEYS` writes 84.
* 79 (the facts sheet, the yml's `input_size: 78 # 79? added`) is the module default list without the
  `_unnorm` columns, which the converter never writes alone. It stays the width of the synthetic default
  batches (`FEATURE_LAYOUT`): input width changes only `note_embedder.fc`, so every parity verdict carries over,
  and the shipped bundles and the facts sheet's parameter counts keep it. The script that made `random8fold`
  is not published, so its width is unknown (84 if it used the module default).

Normalisation (measured the same way): the keys of `data_for_training.NORM_FEAT_KEYS` are z-normalised with one
mean and standard deviation per key over the whole PairDataset, `update_mean_stds_of_entire_dataset`: every
labelled performance, whatever its split (train, valid and test of every fold alike, one set of statistics for
all folds). Everything else (pitch vectors, one-hots, beat and xml positions, grace order, `mmidi_*`, the
`_unnorm` copies) is written raw. `LAYOUTS` holds every candidate with its width; `layout_for_width` finds one by
width; `key_lists_from_checkout` re-reads the key lists from a checkout at run time.

Source note: the training data's `section_tempo` and `qpm_primo` are the *performance* values: the pair
features are `{**score_features, **perform_features}` and both keys are also performance features.

"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

Layout = tuple[tuple[str, int], ...]

# Width of every key that appears in one of the original's input key lists (see the table above).
WIDTHS: dict[str, int] = {
    "pitch": 13, "tempo": 5, "dynamic": 4, "time_sig_vec": 9, "slur_beam_vec": 6, "composer_vec": 17,
    "notation": 9, "tempo_primo": 2,
}
WIDTH_SOURCES: dict[str, str] = {
    "pitch": "pyScoreParser/feature_utils.py pitch_into_vector: [octave] + 12-class one-hot",
    "tempo": "pyScoreParser/feature_extraction.py ScoreExtractor.get_tempo: dynamic_embedding(len_vec=5)",
    "dynamic": "pyScoreParser/feature_extraction.py ScoreExtractor.get_dynamic: dynamic_embedding(len_vec=4)",
    "time_sig_vec": "pyScoreParser/feature_utils.py time_signature_to_vector: 5 numerator + 4 denominator",
    "slur_beam_vec": "pyScoreParser/feature_extraction.py ScoreExtractor.get_slur_beam_vec: 6 flags",
    "composer_vec": "pyScoreParser/feature_utils.py composer_name_to_vec: 16 names + 1 'other'",
    "notation": "pyScoreParser/feature_utils.py note_notation_to_vector: 9 keywords",
    "tempo_primo": "pyScoreParser/feature_extraction.py ScoreExtractor.get_tempo_primo: first 2 tempo slots",
}

# data_for_training.py VNET_INPUT_KEYS (the module default): the 79-column list.
DEFAULT_INPUT_KEYS: tuple[str, ...] = (
    "midi_pitch", "duration", "beat_importance", "measure_length", "qpm_primo", "section_tempo",
    "following_rest", "distance_from_abs_dynamic", "distance_from_recent_tempo", "beat_position", "xml_position",
    "grace_order", "preceded_by_grace_note", "followed_by_fermata_rest", "pitch", "tempo", "dynamic",
    "time_sig_vec", "slur_beam_vec", "composer_vec", "notation", "tempo_primo",
)
# data_for_training.py PRESERVE_FEAT_KEYS: each gets an un-normalised copy appended as `<key>_unnorm`.
PRESERVE_KEYS: tuple[str, ...] = ("midi_pitch", "duration", "beat_importance", "measure_length", "following_rest")
# m2pf_dataset_compositionfold.py / m2pf_dataset_performerfold.py: the full list of the published splits.
SPLIT_INPUT_KEYS: tuple[str, ...] = (
    "duration", "beat_importance", "measure_length", "qpm_primo", "following_rest", "distance_from_abs_dynamic",
    "distance_from_recent_tempo", "beat_position", "xml_position", "grace_order", "preceded_by_grace_note",
    "followed_by_fermata_rest", "pitch", "tempo", "dynamic", "time_sig_vec", "slur_beam_vec", "composer_vec",
    "notation", "tempo_primo", "beat_tempo", "measure_tempo", "section_tempo", "velocity", "onset_deviation",
    "beat_dynamics", "measure_dynamics", "articulation", "pedal_refresh_time", "pedal_cut_time", "pedal_at_start",
    "pedal_at_end", "soft_pedal", "pedal_refresh", "pedal_cut", "mmidi_pitch", "mmidi_velocity",
    "mmidi_start_time", "mmidi_end_time",
)
PERFORMANCE_ONLY_KEYS: tuple[str, ...] = ("mmidi_pitch", "mmidi_velocity", "mmidi_start_time", "mmidi_end_time")


def width_of(key: str) -> int:
    """Columns one key takes: its vector length, 1 for scalars (and for every `_unnorm` copy)."""
    return WIDTHS.get(key, 1)


def layout_for(keys: tuple[str, ...] | list[str], *, with_unnorm: bool = False,
               preserve_keys: tuple[str, ...] = PRESERVE_KEYS) -> Layout:
    """The (name, width) blocks FeatureConverter would write for an input key list. With `with_unnorm`, the
    `<key>_unnorm` copies it appends are added at the end (the pair features always hold all five keys)."""
    blocks = [(k, width_of(k)) for k in keys]
    if with_unnorm:
        blocks += [(f"{k}_unnorm", 1) for k in preserve_keys if f"{k}_unnorm" not in keys]
    return tuple(blocks)


FEATURE_LAYOUT: Layout = layout_for(DEFAULT_INPUT_KEYS)  # 79: the synthetic default (see the docstring)
MEASURED_LAYOUT: Layout = layout_for(SPLIT_INPUT_KEYS, with_unnorm=True)  # 101: what the published splits hold

LAYOUTS: dict[str, Layout] = {
    "published-79": FEATURE_LAYOUT,
    "default-keys-with-unnorm-84": layout_for(DEFAULT_INPUT_KEYS, with_unnorm=True),
    "split-scripts-101": MEASURED_LAYOUT,
    "split-scripts-perffeatonly-9": layout_for(PERFORMANCE_ONLY_KEYS, with_unnorm=True),
}


def layout_for_width(width: int) -> Layout:
    """The known layout of that many columns (79 synthetic default, 101 the published splits' measured one, 84,
    9); ValueError when none has it."""
    for layout in LAYOUTS.values():
        if total_width(layout) == width:
            return layout
    known = ", ".join(f"{name} ({total_width(layout)})" for name, layout in LAYOUTS.items())
    raise ValueError(f"no known feature layout has {width} columns; known: {known}")


def total_width(layout: Layout = FEATURE_LAYOUT) -> int:
    return sum(w for _, w in layout)


def layout_offsets(layout: Layout = FEATURE_LAYOUT) -> dict[str, tuple[int, int]]:
    """name -> (start, end) column range, end exclusive (the original's `key_to_dim['input']`)."""
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for name, width in layout:
        offsets[name] = (start, start + width)
        start += width
    return offsets


def feature_columns(name: str, layout: Layout = FEATURE_LAYOUT) -> list[int]:
    """The input columns of one feature key."""
    offsets = layout_offsets(layout)
    if name not in offsets:
        raise KeyError(f"unknown feature {name!r}; the layout has: {', '.join(offsets)}")
    start, end = offsets[name]
    return list(range(start, end))


# -- reading the key lists of a checkout (run time, text only) ---------------------------------------------

def key_lists_from_checkout(root: str | Path) -> dict[str, dict[str, object]]:
    """Every literal `VNET_INPUT_KEYS = (...)` / `PRESERVE_FEAT_KEYS = (...)` assignment in the checkout's
    pyScoreParser, parsed with `ast` (nothing is imported or run): "file:line" -> {"name", "keys", "width",
    "width_with_unnorm"}. Widths use `WIDTHS`; a key unknown to the table counts as 1 and is listed."""
    base = Path(root)
    folder = next((p for p in (base / "virtuoso" / "virtuoso" / "pyScoreParser", base / "pyScoreParser")
                   if p.is_dir()), None)
    found: dict[str, dict[str, object]] = {}
    if folder is None:
        return found
    for path in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            target = node.targets[0]
            if not isinstance(target, ast.Name) or target.id not in ("VNET_INPUT_KEYS", "PRESERVE_FEAT_KEYS"):
                continue
            try:
                keys = tuple(ast.literal_eval(node.value))
            except (ValueError, TypeError, SyntaxError):
                continue
            layout = layout_for(keys)
            found[f"{path.relative_to(base)}:{node.lineno}"] = {
                "name": target.id,
                "keys": list(keys),
                "width": total_width(layout),
                "width_with_unnorm": total_width(layout_for(keys, with_unnorm=True)),
                "unknown_widths": [k for k in keys if k not in WIDTHS and not _known_scalar(k)],
            }
    return found


_SCALARS = frozenset(k for k in (*DEFAULT_INPUT_KEYS, *SPLIT_INPUT_KEYS) if k not in WIDTHS)


def _known_scalar(key: str) -> bool:
    return key in _SCALARS or key.endswith("_unnorm")


# -- which batch columns a model built for another width takes ---------------------------------------------
#
# A replica built for another input width (78: the yml's `input_size: 78 # 79? added`, VirtuosoNet's list without
# section_tempo; 84 and 101: the key lists the original's converter writes) cannot take the batch's columns as they
# are. `column_plan` says which batch column each of its input columns takes: by key name when a layout of the
# model's width is known (the batch's keys it lacks and the keys it has in excess are named), else by position (the
# first columns shared; the rest named by the batch's layout, or by number).

# the layouts a model may be built for: the original's key lists, and the yml's 78 (no key list writes it)
MODEL_LAYOUTS: dict[str, Layout] = {
    **LAYOUTS, "yml-78-without-section-tempo": tuple(b for b in FEATURE_LAYOUT if b[0] != "section_tempo")}


@dataclass(frozen=True)
class ColumnPlan:
    """For each of a model's input columns, the batch column it takes (None: a column the batch lacks, filled with
    zeros); `by` is "names" or "position"; `missing` / `extra` name the batch's columns the model lacks and the
    model's columns the batch lacks (key names, or "columns a-b" by position)."""

    batch_width: int
    model_width: int
    columns: tuple[int | None, ...]
    by: str
    batch_layout: str | None
    model_layout: str | None
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    @property
    def shared(self) -> int:
        return sum(1 for c in self.columns if c is not None)

    @property
    def unused_batch_columns(self) -> tuple[int, ...]:
        taken = {c for c in self.columns if c is not None}
        return tuple(c for c in range(self.batch_width) if c not in taken)

    def to_dict(self) -> dict[str, object]:
        return {"batch_width": self.batch_width, "model_width": self.model_width, "by": self.by,
                "batch_layout": self.batch_layout, "model_layout": self.model_layout, "shared": self.shared,
                "missing": list(self.missing), "extra": list(self.extra),
                "unused_batch_columns": list(self.unused_batch_columns)}


def _known(width: int, layouts: dict[str, Layout]) -> tuple[str, Layout] | None:
    return next(((name, lay) for name, lay in layouts.items() if total_width(lay) == width), None)


def _span(start: int, end: int) -> str:
    return f"column {start}" if end - start == 1 else f"columns {start}-{end - 1}"


def _named_range(start: int, end: int, layout: Layout | None) -> str:
    """Columns [start, end) of a layout, by the keys they hold."""
    if layout is None:
        return _span(start, end)
    keys = [k for k, (a, b) in layout_offsets(layout).items() if a < end and b > start]
    return f"{_span(start, end)} ({', '.join(keys)})" if keys else _span(start, end)


def column_plan(batch_width: int, model_width: int) -> ColumnPlan:
    """Which batch column each of a `model_width`-column model's inputs takes (see above)."""
    batch = _known(batch_width, LAYOUTS)
    model = _known(model_width, MODEL_LAYOUTS) if batch is not None else None
    if batch is not None and model is not None:
        at_batch = layout_offsets(batch[1])
        columns: list[int | None] = []
        for key, width in model[1]:
            start = at_batch[key][0] if key in at_batch and at_batch[key][1] - at_batch[key][0] == width else None
            columns += [start + k if start is not None else None for k in range(width)]
        model_keys = dict(model[1])
        missing = tuple(k for k, w in batch[1] if model_keys.get(k) != w)
        extra = tuple(k for k, w in model[1] if dict(batch[1]).get(k) != w)
        return ColumnPlan(batch_width, model_width, tuple(columns), "names", batch[0], model[0], missing, extra)
    shared = min(batch_width, model_width)
    columns = [k if k < shared else None for k in range(model_width)]
    missing = (_named_range(shared, batch_width, batch[1] if batch else None),) if batch_width > shared else ()
    extra = (_span(shared, model_width),) if model_width > shared else ()
    return ColumnPlan(batch_width, model_width, tuple(columns), "position", batch[0] if batch else None, None,
                      missing, extra)
