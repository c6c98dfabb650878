"""The original's own feature pipeline (`pyScoreParser`), run unmodified and in isolation.

    pipeline = load_feature_pipeline("/path/to/PercePiano")
    pipeline.render_score_midi(xml, stage / "score.mid")        # the original writes its score MIDI
    pair = pipeline.extract(xml, performance_midi, stage / "score.mid")   # needs <perf>_infer_corresp.txt
    stats = pipeline.normalisation_stats([pair.features, ...])
    arrays, key_to_dim = pipeline.convert(features, stats, sample, input_keys)

What runs is the original's code path of its dataset scripts (`pyScoreParser/m2pf_dataset_performerfold.py`
and `m2pf_dataset_compositionfold.py`, `__main__`): one `data_class.PieceData(xml, [performance], score_midi,
composer, save=...)` per performance (`M2PFSet.load_data_list` hands every performance its own piece), then
`extract_perform_features(DEFAULT_PERFORM_FEATURES)`, `extract_perform_features(DEFAULT_PURE_PERFORM_FEATURES)`,
`extract_score_features(DEFAULT_SCORE_FEATURES)`, then `data_for_training.ScorePerformPairData(piece, perform)`
(which inserts the unaligned performance notes with voice 0 and location -1, data_for_training.py:107-117).
Normalisation statistics come from `PairDataset.update_mean_stds_of_entire_dataset` (every pair of the dataset,
whatever its split) and the matrices from `FeatureConverter` (which appends the five `<key>_unnorm` columns).

The modules are imported through `isolation` from `virtuoso/virtuoso/pyScoreParser` (whose `utils` is not the
model's `utils`); what they need in this environment is lent as shims and reported (`shims`): a pass-through
tqdm when tqdm is missing, and `numpy.lib.npyio.save` (gone in numpy 2). The real pretty_midi is required: the
pipeline reads every MIDI file with it. The original prints a lot; that is captured, never shown.
"""

from __future__ import annotations

import ast
import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from percepiano_parity.original_adapter.errors import OriginalLoadError, describe_exception, one_line
from percepiano_parity.original_adapter.isolation import Isolated, import_isolated
from percepiano_parity.original_adapter.locate import CODE_DIR, describe, resolve_root
from percepiano_parity.original_adapter.shims import FEATURE_ATTRIBUTE_SHIMS, FEATURE_SHIMS, lend_attributes

PIPELINE_DIR = CODE_DIR / "pyScoreParser"
FEATURE_MODULES: tuple[str, ...] = ("data_class", "data_for_training", "xml_midi_matching")
# The dataset scripts whose literal `VNET_INPUT_KEYS = (...)` lists made the published folds; the first literal
# of each is the full list, the second the *perffeatonly* one.
SPLIT_SCRIPTS: tuple[str, ...] = ("m2pf_dataset_performerfold.py", "m2pf_dataset_compositionfold.py")
SCRIPT_COMPOSER = "Schubert"  # M2PFSet.load_data_list: composers = ["Schubert"] * len(score_midis)


class ExtractionError(Exception):
    """The original's pipeline failed on one performance; the message (one line) says where and why."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(one_line(message))
        self.stage = stage


@dataclass
class Extraction:
    """What the original's pipeline made of one performance."""

    features: dict[str, Any]  # ScorePerformPairData.features: per-note lists, global values, note_location
    score_notes: int  # notes of the MusicXML (piece.num_notes)
    matched: int  # score notes paired with a performance note (PerformData.num_matched_notes)
    unmatched: int
    inserted: int  # unaligned performance notes inserted with location -1 (num_notes - score_notes)
    mismatched: int  # pairs the original dropped as onset outliers (make_available_xml_midi_positions)
    log_tail: str = ""  # the last lines the original printed


@dataclass
class KeyList:
    """One input key list of the original, with where it was read."""

    name: str
    keys: tuple[str, ...]
    source: str  # "file:line"


@dataclass
class FeaturePipeline:
    """The original's pyScoreParser modules, captured once, with the shims they needed."""

    root: Path
    revision: str
    isolated: Isolated
    shims: list[dict[str, str]] = field(default_factory=list)

    def _module(self, name: str) -> Any:
        return self.isolated[name]

    @contextlib.contextmanager
    def _calling(self, stage: str, what: str) -> Any:
        printed = io.StringIO()
        try:
            with self.isolated.activated(), contextlib.redirect_stdout(printed), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield printed
        except ExtractionError:
            raise
        except Exception as exc:  # the original's own failure on this input
            tail = " | ".join(printed.getvalue().strip().splitlines()[-2:])
            raise ExtractionError(stage, f"the original's {what} failed: {describe_exception(exc)}"
                                  + (f" (it printed: {tail})" if tail else "")) from exc

    # -- per score and per performance -----------------------------------------------------------------
    def render_score_midi(self, xml: Path, out: Path, composer: str = SCRIPT_COMPOSER) -> int:
        """Let the original write the score MIDI of a MusicXML excerpt (data_class.py ScoreData.
        _load_or_make_score_midi -> make_score_midi, used when the score MIDI does not exist); returns the
        number of score notes. `out` must not exist yet."""
        if out.exists():
            raise ExtractionError("score", f"{out} exists; the original only renders a missing score MIDI")
        with self._calling("score", "ScoreData (MusicXML reading, score MIDI rendering)"):
            score = self._module("data_class").ScoreData(str(xml), str(out), composer=composer)
        return int(score.num_notes)

    def score_midi_match(self, xml: Path, score_midi: Path) -> tuple[int, int]:
        """(score notes, those the original pairs with a note of `score_midi`): its xml-to-MIDI matching
        (xml_midi_matching.py match_xml_to_midi: same pitch, onset within 0.1 s of the MusicXML time)."""
        with self._calling("score", "ScoreData with a given score MIDI"):
            score = self._module("data_class").ScoreData(str(xml), str(score_midi), composer=SCRIPT_COMPOSER)
        return int(score.num_notes), sum(1 for pair in score.score_pairs if pair != [])

    def extract(self, xml: Path, performance: Path, score_midi: Path, composer: str = SCRIPT_COMPOSER,
                save: bool = True) -> Extraction:
        """The features of one performance, as the dataset scripts compute them. The correspondence file
        `<performance stem>_infer_corresp.txt` must lie beside `performance` (data_class.py PerformData); with
        `save` the original writes its `.dat` pickles beside the score and the performance (a scratch folder).
        Raises ExtractionError(stage "extract") with the original's own error."""
        corresp = performance.with_name(performance.stem + "_infer_corresp.txt")
        if not corresp.is_file():
            raise ExtractionError("extract", f"no correspondence file {corresp.name} beside {performance}")
        data_class = self._module("data_class")
        with self._calling("extract", "feature extraction") as printed:
            piece = data_class.PieceData(str(xml), [str(performance)], str(score_midi), composer, save=save)
            if not piece.performances or piece.performances[0] is None:
                raise ExtractionError("extract", "the original could not pair the performance with the score "
                                      "(data_class.py PieceData printed 'Cannot align')")
            piece.extract_perform_features(data_class.DEFAULT_PERFORM_FEATURES)
            piece.extract_perform_features(data_class.DEFAULT_PURE_PERFORM_FEATURES)
            piece.extract_score_features(data_class.DEFAULT_SCORE_FEATURES)
            perform = piece.performances[0]
            if "align_matched" not in perform.perform_features:  # PairDataset.__init__ skips these
                raise ExtractionError("extract", "no align_matched feature: the original's PairDataset skips it")
            score_notes = int(piece.num_notes)
            pair = self._module("data_for_training").ScorePerformPairData(piece, perform)
        features = pair.features
        return Extraction(
            features=features, score_notes=score_notes, matched=int(perform.num_matched_notes),
            unmatched=int(perform.num_unmatched_notes), inserted=int(features["num_notes"]) - score_notes,
            mismatched=len(perform.mismatched_indices),
            log_tail=" | ".join(printed.getvalue().strip().splitlines()[-3:]))

    # -- over the whole dataset ---------------------------------------------------------------------------
    @property
    def norm_keys(self) -> tuple[str, ...]:
        """data_for_training.NORM_FEAT_KEYS: the keys that get z-normalised (beat_tempo is listed twice)."""
        return tuple(self._module("data_for_training").NORM_FEAT_KEYS)

    @property
    def output_keys(self) -> tuple[str, ...]:
        return tuple(self._module("data_for_training").VNET_OUTPUT_KEYS)

    def normalisation_stats(self, features: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
        """{key: {"mean", "stds"}} by the original's PairDataset.update_mean_stds_of_entire_dataset over the
        given pairs' features (it needs only the NORM_FEAT_KEYS entries of each)."""
        dft = self._module("data_for_training")
        with self._calling("normalise", "normalisation statistics"):
            dataset = dft.PairDataset.__new__(dft.PairDataset)
            dataset.data_pairs = [SimpleNamespace(features=dict(f)) for f in features]
            dataset.update_mean_stds_of_entire_dataset()
        return {k: {"mean": float(v["mean"]), "stds": float(v["stds"])} for k, v in dataset.feature_stats.items()}

    def converter(self, stats: Mapping[str, Any], sample: dict[str, Any], input_keys: Sequence[str]) -> Any:
        """The original's FeatureConverter as save_features_for_virtuosoNet builds it (std_tempo=False; the
        sample, the dataset's first pair, fixes the widths). It appends the `<key>_unnorm` keys itself."""
        dft = self._module("data_for_training")
        with self._calling("convert", "FeatureConverter"):
            return dft.FeatureConverter(dict(stats), sample, tuple(input_keys), dft.VNET_OUTPUT_KEYS,
                                        std_tempo=False)

    def convert(self, converter: Any, features: dict[str, Any]) -> dict[str, np.ndarray]:
        """{"input", "output", "beat", "meas"} float64 matrices of one pair (FeatureConverter.__call__)."""
        with self._calling("convert", "FeatureConverter"):
            out = converter(features, std_tempo=False)
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    # -- key lists ------------------------------------------------------------------------------------------
    def key_lists(self) -> dict[str, KeyList]:
        """The input key lists the original's code holds: the module default of data_for_training and the two
        literal lists of each dataset script that made the published folds (read with ast; scripts not run)."""
        dft = self._module("data_for_training")
        lists = {"module-default": KeyList("module-default", tuple(dft.VNET_INPUT_KEYS),
                                           f"{PIPELINE_DIR.name}/data_for_training.py VNET_INPUT_KEYS")}
        for script in SPLIT_SCRIPTS:
            found = literal_key_lists(self.root / PIPELINE_DIR / script)
            for (line, keys), name in zip(found, ("published-splits", "published-splits-perffeatonly"), strict=False):
                entry = KeyList(name, keys, f"{PIPELINE_DIR.name}/{script}:{line}")
                if name not in lists:
                    lists[name] = entry
                elif lists[name].keys != keys:
                    raise OriginalLoadError(f"{entry.source} and {lists[name].source} disagree on the {name} "
                                            "key list")
        return lists


def literal_key_lists(path: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(line, keys) of every literal `VNET_INPUT_KEYS = (...)` in a file, in file order."""
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (OSError, SyntaxError) as exc:
        raise OriginalLoadError(f"cannot read the original's {path}: {exc}") from exc
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == "VNET_INPUT_KEYS":
            with contextlib.suppress(ValueError, TypeError, SyntaxError):
                found.append((node.lineno, tuple(ast.literal_eval(node.value))))
    return sorted(found)


def load_feature_pipeline(path: str | Path | None = None) -> FeaturePipeline:
    """Locate a checkout (as `original_adapter.load` does) and import its feature pipeline in isolation.
    Raises OriginalLoadError (one line) when the checkout or a package it needs is missing."""
    root = resolve_root(path)
    checkout = describe(root)
    code_dir = root / PIPELINE_DIR
    if not code_dir.is_dir():
        raise OriginalLoadError(f"{root} has no {PIPELINE_DIR} (the original's feature pipeline)")
    with lend_attributes(FEATURE_ATTRIBUTE_SHIMS) as lent:
        isolated = import_isolated(code_dir, FEATURE_MODULES, FEATURE_SHIMS)
    return FeaturePipeline(root=root, revision=checkout.revision, isolated=isolated, shims=[*isolated.shims, *lent])
