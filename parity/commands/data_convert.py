"""Stage 2 of `parity data prepare`: from the raw pair features of every prepared performance to the segment files
and the manifest.

* Normalisation statistics: the original's `PairDataset.update_mean_stds_of_entire_dataset` over every prepared
  pair in the label domain (NORM_FEAT_KEYS; M2PFSet keeps only performances with a label in labels/, and the
  dataset scripts call it on the whole PairDataset, whatever the split, so the statistics include the valid and
  test splits of every fold).
* Input matrices: the original's `FeatureConverter` (std_tempo=False, as the scripts call it) for each input key
  list it holds (`FeaturePipeline.key_lists`); the converter's sample is the first prepared pair in key order
  (the scripts use the dataset's first pair; widths do not depend on which).
* Labels of both label files, the label standard deviations, the folds (`batches.real.folds`) and the hazard
  statistics (`batches.real.hazards`).
A segment file is rewritten only when what it is made of changed (its `stage2` fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from percepiano_parity.batches.real import cache as cache_files
from percepiano_parity.batches.real.folds import fold_tables
from percepiano_parity.batches.real.hazards import measure_hazards
from percepiano_parity.batches.real.names import PerformanceName
from percepiano_parity.batches.real.raw_features import decode_features

Progress = Callable[[str, int, int], None]


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
