"""`parity data prepare`: PercePiano's own segments through the original's own feature pipeline, into a
cache (stage 1: per performance; stage 2: normalisation and the segment files).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.alignment import (
    MATCHER,
    AlignmentError,
    CorrespError,
    align,
    read_corresp,
    write_corresp,
)
from percepiano_parity.batches.real.cache import FeatureEncodingError, decode_features, encode_features
from percepiano_parity.batches.real.hazards import measure_hazards
from percepiano_parity.batches.real.splits import (
    PerformanceName,
    PerformanceNameError,
    fold_tables,
    parse_performance,
)
from percepiano_parity.core.errors import UsageError

# ----------------------------------------------------------------------------------------------------------
# `parity data prepare`: PercePiano's own segments through the original's own feature pipeline, into a cache.
#
#     parity data prepare --original PATH --data DIR --out CACHE [--corresp DIR] [--score-midi render|published]
#
# Stage 1, per performance (skipped when its record in CACHE/raw says the same inputs and settings were done):
# find its score excerpt (`batches.real.splits`), have the original render the score MIDI from the MusicXML
# (`--score-midi render`, the default; see below), align the performance MIDI to that score MIDI with parangonar
# (`batches.real.alignment`) or take the user's `<performance>_infer_corresp.txt` from `--corresp`, write the
# correspondence in the format the original reads, and run the original's pipeline on it in a scratch folder
# (`original_adapter.features.extract`); the unnormalised pair features go to CACHE/raw/<key>.safetensors.
# A performance that cannot be named, aligned or extracted gets a failure record (stage and reason) instead.
#
# Stage 2 (`commands.data_prepare`): normalisation statistics over every prepared pair, the original's
# FeatureConverter for each of its key lists, labels, folds, hazards, and CACHE/manifest.json.
#
# Why the original renders the score MIDI: it pairs MusicXML notes with score-MIDI notes by onset in seconds
# (xml_midi_matching.py match_xml_to_midi, 0.1 s), timing the MusicXML by its own tempo marks; the published score
# MIDI files are rendered at other tempi (e.g. 116 instead of 100 quarter notes per minute), so most notes would
# stay unpaired. When the score MIDI is missing, the original writes its own (data_class.py ScoreData.
# _load_or_make_score_midi); we take that path. `--score-midi published` uses the published files instead.

Progress = Callable[[str, int, int], None]
SCORE_MIDI_MODES = ("render", "published")
LABEL_NAME = "label_2round_mean_reg_19_with0_rm_highstd0.json"
STD_NAME = "label_2round_std_reg_19_with0_rm_highstd0.json"


@dataclass
class PrepareOptions:
    original: str | None
    data: str
    out: str
    corresp: str | None = None  # folder of the user's <performance stem>_infer_corresp.txt files
    score_midi: str = "render"
    only: tuple[str, ...] = ()  # label keys (or file names) to prepare; empty: all
    force: bool = False


@dataclass
class DataLayout:
    """Where the inputs are, checked up front (one line for what is missing)."""

    root: Path
    performances: Path
    score_xml: Path
    score_midi: Path
    label_files: dict[str, Path] = field(default_factory=dict)
    std_files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def find(cls, data: str | Path) -> DataLayout:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise UsageError(f"--data {data}: no such folder")
        layout = cls(root, root / "performances", root / "scores" / "score_xml", root / "scores" / "score_midi")
        for folder in (layout.performances, layout.score_xml):
            if not folder.is_dir():
                raise UsageError(f"--data {data}: no {folder.relative_to(root)}/ folder (laid out like "
                                 "../shared/percepiano-data: performances/, scores/score_xml/, labels/)")
        for name, folder in (("labels", root / "labels"), ("repo-root", root / "labels" / "repo-root")):
            if (folder / LABEL_NAME).is_file():
                layout.label_files[name] = folder / LABEL_NAME
            if (folder / STD_NAME).is_file():
                layout.std_files[name] = folder / STD_NAME
        if "labels" not in layout.label_files:
            raise UsageError(f"--data {data}: no labels/{LABEL_NAME}")
        return layout


def _settings(options: PrepareOptions, pipeline: Any) -> dict[str, Any]:
    """What stage 1 depends on besides the input files: a change re-does the affected performances."""
    import parangonar
    import partitura

    return {"score_midi": options.score_midi, "matcher": MATCHER, "parangonar": parangonar.__version__,
            "partitura": getattr(partitura, "__version__", "?"), "original": pipeline.revision}


def _done(path: Path, inputs: dict[str, str], settings: dict[str, Any]) -> bool:
    meta = cache_files.read_metadata(path)
    if meta is None:
        return False
    record = meta.get("record", {})
    return record.get("inputs") == inputs and record.get("settings") == settings


def _failure(out: Path, name: PerformanceName | str, stage: str, reason: str, inputs: dict[str, str],
             settings: dict[str, Any]) -> dict[str, Any]:
    key = name.key if isinstance(name, PerformanceName) else name
    record = {"key": key, "file": name.file if isinstance(name, PerformanceName) else name, "status": "failed",
              "stage": stage, "reason": reason, "inputs": inputs, "settings": settings}
    path = _failed_path(out, key)
    if (cache_files.read_metadata(path) or {}).get("record") != record:  # a re-run leaves a known failure as it is
        cache_files.write_tensors(path, {}, {"record": record})
    return record


def _failed_path(out: Path, key: str) -> Path:
    return out / cache_files.RAW / f"{key}.failed.safetensors"


@dataclass
class _Score:
    stem: str
    xml: Path
    performances: list[PerformanceName]


def _prepare_score(pipeline: Any, layout: DataLayout, score: _Score, out: Path, options: PrepareOptions,
                   settings: dict[str, Any], step: Callable[[], None]) -> list[dict[str, Any]]:
    """Stage 1 for the performances of one score excerpt that are not done yet."""
    records: list[dict[str, Any]] = []
    todo: list[tuple[PerformanceName, dict[str, str]]] = []
    for name in score.performances:
        inputs = _inputs(layout, name, score, options)
        if not options.force and (_done(cache_files.raw_path(out, name.key), inputs, settings)
                                  or _done(_failed_path(out, name.key), inputs, settings)):
            step()
            continue
        todo.append((name, inputs))
    if not todo:
        return records
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        stage = Path(tmp)
        xml = stage / f"{score.stem}.musicxml"
        shutil.copyfile(score.xml, xml)
        score_midi = stage / f"{score.stem}.mid"
        score_info: dict[str, Any] = {"stem": score.stem}
        published = layout.score_midi / f"{score.stem}.mid"
        if published.is_file():  # only a diagnostic: how many notes the original pairs with the published file
            try:
                notes, paired = pipeline.score_midi_match(xml, published)
                score_info["published_score_midi_pairs"] = [paired, notes]
            except Exception as exc:  # noqa: BLE001 - recorded, never fatal
                score_info["published_score_midi_error"] = _reason(exc)
        try:
            if options.score_midi == "published":
                if not published.is_file():
                    raise _StageFailure("score", f"no published score MIDI {published.name}")
                shutil.copyfile(published, score_midi)
            else:
                pipeline.render_score_midi(xml, score_midi)
        except Exception as exc:  # noqa: BLE001 - recorded per performance below
            reason = _reason(exc)
            for name, inputs in todo:
                records.append(_failure(out, name, getattr(exc, "stage", "score"), reason, inputs, settings))
                step()
            return records
        for name, inputs in todo:
            records.append(_prepare_one(pipeline, layout, name, inputs, stage, xml, score_midi, score_info, out,
                                        options, settings))
            step()
    return records


class _StageFailure(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _reason(exc: BaseException) -> str:
    """One line: our own and the adapter's messages as they are, anything else with its type."""
    from percepiano_parity.original_adapter.features import ExtractionError

    text = " ".join(str(exc).split())
    if isinstance(exc, _StageFailure | AlignmentError | CorrespError | ExtractionError) and text:
        return text
    return f"{type(exc).__name__}: {text}"


def _inputs(layout: DataLayout, name: PerformanceName, score: _Score, options: PrepareOptions) -> dict[str, str]:
    inputs = {"performance": cache_files.sha256_file(layout.performances / name.file),
              "score_xml": cache_files.sha256_file(score.xml)}
    user = _user_corresp(options, name)
    if user is not None:
        inputs["corresp"] = cache_files.sha256_file(user)
    if options.score_midi == "published" and (layout.score_midi / f"{score.stem}.mid").is_file():
        inputs["score_midi"] = cache_files.sha256_file(layout.score_midi / f"{score.stem}.mid")
    return inputs


def _user_corresp(options: PrepareOptions, name: PerformanceName) -> Path | None:
    if not options.corresp:
        return None
    folder = Path(options.corresp).expanduser()
    for stem in (name.file[: -len(".mid")], name.key):
        candidate = folder / f"{stem}_infer_corresp.txt"
        if candidate.is_file():
            return candidate
    return None


def _prepare_one(pipeline: Any, layout: DataLayout, name: PerformanceName, inputs: dict[str, str], stage: Path,
                 xml: Path, score_midi: Path, score_info: dict[str, Any], out: Path, options: PrepareOptions,
                 settings: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    performance = stage / f"{name.key}.mid"
    shutil.copyfile(layout.performances / name.file, performance)
    corresp_file = stage / f"{name.key}_infer_corresp.txt"
    try:
        user = _user_corresp(options, name)
        if user is not None:
            text = user.read_text(errors="replace")
            rows = read_corresp(text, user.name)
            alignment = {"method": "user correspondence file", "file": str(user)}
        else:
            result = align(score_midi, performance)
            rows = result.rows
            text = write_corresp(rows)
            alignment = {"method": MATCHER, **result.counts}
        kinds = [r.kind for r in rows]
        alignment.update({k: kinds.count(k) for k in ("match", "deletion", "insertion")})
        corresp_file.write_text(text)
        cache_files.write_atomic(cache_files.corresp_path(out, name.key), text)
        aligned = time.perf_counter()
        extraction = pipeline.extract(xml, performance, score_midi)
        tensors, kinds_of = encode_features(extraction.features)
    except (AlignmentError, CorrespError) as exc:
        return _failure(out, name, "align", _reason(exc), inputs, settings)
    except FeatureEncodingError as exc:
        return _failure(out, name, "extract", f"unusable feature value: {exc}", inputs, settings)
    except Exception as exc:  # noqa: BLE001 - the original's failure on this performance (ExtractionError)
        return _failure(out, name, getattr(exc, "stage", "extract"), _reason(exc), inputs, settings)
    done = time.perf_counter()
    record = {
        "key": name.key, "file": name.file, "status": "ok", "score": score_info["stem"], "inputs": inputs,
        "settings": settings, "alignment": alignment, "notes": int(extraction.features["num_notes"]),
        "score_notes": extraction.score_notes, "matched": extraction.matched, "unmatched": extraction.unmatched,
        "inserted": extraction.inserted, "dropped_as_outliers": extraction.mismatched,
        "published_score_midi_pairs": score_info.get("published_score_midi_pairs"),
        "seconds": {"align": round(aligned - started, 4), "extract": round(done - aligned, 4)},
    }
    if name.name_note:
        record["name_note"] = name.name_note
    record["raw_sha256"] = cache_files.write_tensors(cache_files.raw_path(out, name.key), tensors,
                                                     {"kinds": kinds_of, "record": record})
    _failed_path(out, name.key).unlink(missing_ok=True)
    return record


def _scores(layout: DataLayout, options: PrepareOptions, out: Path, settings: dict[str, Any]
            ) -> tuple[list[_Score], list[dict[str, Any]], list[str], list[PerformanceName]]:
    files = sorted(p.name for p in layout.performances.iterdir() if p.suffix == ".mid" and p.is_file())
    wanted = set(options.only)
    failed: list[dict[str, Any]] = []
    groups: dict[str, _Score] = {}
    names: list[PerformanceName] = []
    for file in files:
        try:
            name = parse_performance(file)
        except PerformanceNameError as exc:
            if not wanted or file in wanted:
                failed.append(_failure(out, file.removesuffix(".mid").strip() or file, "name", str(exc), {},
                                       settings))
            continue
        names.append(name)
        if wanted and name.key not in wanted and name.file not in wanted:
            continue
        xml = layout.score_xml / f"{name.score_stem}.musicxml"
        if not xml.is_file():
            failed.append(_failure(out, name, "score", f"no score excerpt {xml.name} in {layout.score_xml}",
                                   {"performance": cache_files.sha256_file(layout.performances / file)}, settings))
            continue
        groups.setdefault(name.score_stem, _Score(name.score_stem, xml, [])).performances.append(name)
    unknown = sorted(wanted - {n.key for g in groups.values() for n in g.performances}
                     - {n.file for g in groups.values() for n in g.performances} - {f["key"] for f in failed}
                     - {f["file"] for f in failed})
    return list(groups.values()), failed, unknown, names


def prepare(options: PrepareOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run both stages and return the manifest (also written to OUT/manifest.json). UsageError (one line) for
    bad options, a missing checkout or an unreadable data folder; per-performance problems become failure
    records in the manifest."""
    from percepiano_parity.original_adapter.errors import OriginalLoadError
    from percepiano_parity.original_adapter.features import load_feature_pipeline

    if options.score_midi not in SCORE_MIDI_MODES:
        raise UsageError(f"--score-midi: expected one of {', '.join(SCORE_MIDI_MODES)}, got {options.score_midi!r}")
    layout = DataLayout.find(options.data)
    if options.corresp and not Path(options.corresp).expanduser().is_dir():
        raise UsageError(f"--corresp {options.corresp}: no such folder")
    out = Path(options.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {options.out}: exists and is not a folder")
    if out.resolve() == layout.root.resolve() or layout.root.resolve() in out.resolve().parents:
        raise UsageError(f"--out {options.out}: must not lie inside the data folder")
    try:
        pipeline = load_feature_pipeline(options.original)
    except OriginalLoadError as exc:
        raise UsageError(f"original: {exc}") from None
    try:
        import parangonar  # noqa: F401
        import partitura  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"aligning needs parangonar and partitura: pip install 'percepiano-parity[data]' "
                         f"({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = _settings(options, pipeline)
    scores, failed_early, unknown, all_names = _scores(layout, options, out, settings)
    if unknown:
        raise UsageError(f"--only: no performance named {', '.join(unknown[:3])}")
    total = sum(len(s.performances) for s in scores)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress("aligning and extracting", done[0], total)

    for score in scores:
        _prepare_score(pipeline, layout, score, out, options, settings, step)
    shutil.rmtree(out / ".work", ignore_errors=True)
    keys = [n.key for s in scores for n in s.performances] + [f["key"] for f in failed_early]
    return convert_all(pipeline, layout, out, keys, all_names, settings, time.perf_counter() - started, progress)


def summary_line(manifest: dict[str, Any], out: str) -> str:
    """One line for the console: coverage, failures, width, where the manifest is."""
    summary = manifest.get("summary", {})
    width = (manifest.get("key_lists", {}).get(cache_files.DEFAULT_KEY_LIST) or {}).get("width", "?")
    failed = manifest.get("failed", {})
    stages = sorted({str(r.get("stage")) for r in failed.values() if r})
    return (f"prepared {summary.get('prepared', 0)} of {summary.get('selected', 0)} performances "
            f"({100 * summary.get('coverage', 0):.1f}%), {len(failed)} failed"
            + (f" (stages: {', '.join(stages)})" if stages else "")
            + f"; input width {width} ({cache_files.DEFAULT_KEY_LIST}); manifest: {Path(out) / cache_files.MANIFEST}")


# ----------------------------------------------------------------------------------------------------------
# Stage 2 of `parity data prepare`: from the raw pair features of every prepared performance to the segment files
# and the manifest.
#
# * Normalisation statistics: the original's `PairDataset.update_mean_stds_of_entire_dataset` over every prepared
#   pair in the label domain (NORM_FEAT_KEYS; M2PFSet keeps only performances with a label in labels/, and the
#   dataset scripts call it on the whole PairDataset, whatever the split, so the statistics include the valid and
#   test splits of every fold).
# * Input matrices: the original's `FeatureConverter` (std_tempo=False, as the scripts call it) for each input key
#   list it holds (`FeaturePipeline.key_lists`); the converter's sample is the first prepared pair in key order
#   (the scripts use the dataset's first pair; widths do not depend on which).
# * Labels of both label files, the label standard deviations, the folds (`batches.real.splits`) and the hazard
#   statistics (`batches.real.hazards`).
# A segment file is rewritten only when what it is made of changed (its `stage2` fingerprint).


def _record(out: Path, key: str) -> dict[str, Any] | None:
    for path in (cache_files.raw_path(out, key), out / cache_files.RAW / f"{key}.failed.safetensors"):
        meta = cache_files.read_metadata(path)
        if meta is not None:
            return meta.get("record")
    return None


def _raw(out: Path, key: str, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    tensors, meta = cache_files.read_tensors(cache_files.raw_path(out, key))
    return decode_features(tensors, meta["kinds"], only)


def _labels(layout: Any) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]],
                                  dict[str, Any]]:
    labels, stds, described = {}, {}, {}
    for name, path in layout.label_files.items():
        labels[name] = json.loads(path.read_text())
        described[name] = {"path": str(path), "sha256": cache_files.sha256_file(path), "keys": len(labels[name])}
        std = layout.std_files.get(name)
        if std is not None:
            stds[name] = json.loads(std.read_text())
            described[name]["std_path"] = str(std)
    return labels, stds, described


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("percepiano-parity", "numpy", "parangonar", "partitura", "pretty_midi", "safetensors"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def convert_all(pipeline: Any, layout: Any, out: Path, keys: Sequence[str], all_names: Sequence[PerformanceName],
                settings: dict[str, Any], stage1_seconds: float, progress: Progress | None = None
                ) -> dict[str, Any]:
    """Write segments/<key>.safetensors for every prepared performance of the cache (this run's `keys` and every
    earlier one's) and the manifest; return the manifest."""
    started = time.perf_counter()
    present = {p.name.removesuffix(".safetensors").removesuffix(".failed") for p in (out / cache_files.RAW).glob(
        "*.safetensors")} if (out / cache_files.RAW).is_dir() else set()
    records = {key: _record(out, key) for key in sorted(set(keys) | present)}  # the whole cache, not one --only
    ok = [k for k, r in records.items() if r is not None and r.get("status") == "ok"]
    failed = {k: r for k, r in records.items() if r is None or r.get("status") != "ok"}
    norm_keys = pipeline.norm_keys
    labels, stds, label_info = _labels(layout)
    domain = [k for k in ok if k in labels["labels"]] or ok  # M2PFSet keeps only labelled performances
    stats = pipeline.normalisation_stats([_raw(out, k, norm_keys) for k in domain]) if ok else {}
    key_lists = pipeline.key_lists()
    folds = fold_tables(all_names, labels["labels"].keys())
    converters: dict[str, Any] = {}
    described_lists: dict[str, Any] = {}
    for name, key_list in key_lists.items():
        if not ok:
            break
        converter = pipeline.converter(stats, _raw(out, domain[0]), key_list.keys)
        converters[name] = converter
        described_lists[name] = {
            "source": key_list.source, "keys": list(key_list.keys), "input_keys": list(converter.keys["input"]),
            "key_to_dim": {k: list(v) for k, v in converter.key_to_dim_idx["input"].items()},
            "width": int(converter.dim["input"]),
        }
    output_dims = {kind: {k: list(v) for k, v in next(iter(converters.values())).key_to_dim_idx[kind].items()}
                   for kind in ("output", "beat", "meas")} if converters else {}
    segments: dict[str, Any] = {}
    for i, key in enumerate(ok):
        record = records[key] or {}
        fold_row = {scheme: table.get(key) for scheme, table in folds.items()}
        fingerprint = _fingerprint(record.get("raw_sha256"), stats, described_lists, fold_row,
                                   {n: (labels[n].get(key), stds.get(n, {}).get(key)) for n in labels})
        path = cache_files.segment_path(out, key)
        meta = cache_files.read_metadata(path)
        if meta is None or meta.get("stage2") != fingerprint:
            features = _raw(out, key)
            tensors: dict[str, np.ndarray] = {}
            for name, converter in converters.items():
                arrays = pipeline.convert(converter, features)
                tensors[f"input/{name}"] = arrays["input"]
                for kind in ("output", "beat", "meas"):
                    tensors.setdefault(kind, arrays[kind])
            for loc, values in features["note_location"].items():
                tensors[f"location/{loc}"] = np.asarray(values, dtype=np.int64)
            for n, table in labels.items():
                if key in table:
                    tensors[f"label/{n}"] = np.asarray(table[key], dtype=np.float64)
                if key in stds.get(n, {}):
                    tensors[f"label_std/{n}"] = np.asarray(stds[n][key], dtype=np.float64)
            cache_files.write_tensors(path, tensors, {"stage2": fingerprint, "folds": fold_row, "record": record})
        segments[key] = {**record, "folds": fold_row, "labels": sorted(n for n in labels if key in labels[n]),
                         "segment_sha256": cache_files.sha256_file(path)}
        if progress is not None:
            progress("normalising and converting", i + 1, len(ok))
    manifest = {
        "format": cache_files.FORMAT, "version": cache_files.VERSION,
        "created_by": _versions(),
        "original": {"root": str(pipeline.root), "revision": pipeline.revision, "shims": pipeline.shims,
                     "pipeline": "pyScoreParser: data_class.PieceData -> extract_perform_features(DEFAULT_PERFORM_"
                                 "FEATURES, DEFAULT_PURE_PERFORM_FEATURES) -> extract_score_features -> "
                                 "data_for_training.ScorePerformPairData -> FeatureConverter",
                     "composer": "Schubert (m2pf_dataset_*.py M2PFSet.load_data_list gives every piece it)"},
        "data": {"dir": str(layout.root), "performances": len(all_names), "label_files": label_info},
        "alignment": {"matcher": settings["matcher"], "score_midi": settings["score_midi"], "settings": settings},
        "key_lists": described_lists,
        "default_key_list": cache_files.DEFAULT_KEY_LIST,
        "output_key_to_dim": output_dims,
        "normalisation": {"keys": list(norm_keys), "segments": len(domain),
                          "over": f"the {len(domain)} prepared performances whose key is in labels/ (M2PFSet keeps "
                                  "only labelled performances; PairDataset.update_mean_stds_of_entire_dataset then "
                                  "uses every pair, whatever its split: train, valid and test alike)",
                          "stats": stats},
        "folds": {
            "performer4fold": {"exact": True, "domain": "labels", "source": "m2pf_dataset_performerfold.py"},
            "composition4fold": {"exact": False, "domain": "labels", "source": "m2pf_dataset_compositionfold.py",
                                 "note": "reconstructed from the sorted listing with random.Random(42); the "
                                         "original shuffled the unsorted os.listdir order"},
            "random8fold": {"available": False, "reason": "the script that made scripts/randomfold's data is "
                                                          "not published"},
        },
        "segments": segments,
        "failed": failed,
        "summary": {
            "selected": len(records), "prepared": len(ok), "failed": len(failed),
            "coverage": round(len(ok) / len(records), 4) if records else 0.0,
            "stage1_seconds_this_run": round(stage1_seconds, 1),
            "stage2_seconds": round(time.perf_counter() - started, 1),
            "stage1_seconds_recorded": round(sum(sum((segments[k].get("seconds") or {}).values()) for k in ok), 1),
        },
        "hazards": measure_hazards(out, ok, folds) if ok else {},
    }
    cache_files.write_atomic(out / cache_files.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
