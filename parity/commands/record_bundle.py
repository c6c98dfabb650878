"""Record a reference bundle: run the original once, save everything a parity check reads.

    original = original_adapter.load(path)
    record_bundle(original, "han-total", SMALL_CONFIG, 7, "bundles/han-total")

The original runs through its adapter subject, built with `seed` (so the saved weights are its initial
weights), in eval mode, with gradients. What is saved is described in `subjects.bundle.format`. A `subject`
can be given instead of an original (any object implementing `parity.subject.Subject`), which is how the
tests record without the original.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from percepiano_parity.batches.synthetic import EDGE_TAGS, generate_batches
from percepiano_parity.compare.structure import describe, trace_calls
from percepiano_parity.compare.tolerance import Tolerances
from percepiano_parity.replica.batch import CanonicalBatch
from percepiano_parity.replica.config import DEFAULT_CONFIG, ModelConfig
from percepiano_parity.subjects.bundle.format import (
    BATCHES,
    DATA_OPS,
    KIND,
    MANIFEST,
    METADATA_KEY,
    MODEL_CHECKS,
    RECIPE,
    SCHEMA_VERSION,
    STRUCTURE,
    WEIGHTS,
    BundleError,
    batch_hash,
    dump_json,
    segment_key,
    sha256,
    taps_file,
    versions,
)
from percepiano_parity.subjects.subject import Subject
from percepiano_parity.subjects.taps import Taps

FORMAT_NOTE = ("directory bundle: manifest.json, structure.json, weights.safetensors, batches.safetensors, "
               "taps_NNN.safetensors (one per batch), optional recipe.json / data_ops.json; JSON and "
               "safetensors only, no pickle")


def _save_tensors(tensors: Mapping[str, Tensor], metadata: Mapping[str, Any] | None = None) -> bytes:
    """safetensors bytes; metadata goes in as one sorted JSON string (safetensors does not keep the order of
    several metadata keys, and the same recording must give the same bytes)."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(tensors.items())}
    meta = {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True)} if metadata else None
    return save(clean, metadata=meta)


def _taps_bytes(taps: Taps, digest: str) -> bytes:
    tensors: dict[str, Tensor] = {}
    for prefix, attr in (("level", "levels"), ("attention", "attention"), ("grad", "grads")):
        for name, value in getattr(taps, attr).items():
            tensors[f"{prefix}.{name}"] = value
    meta = {
        "batch_hash": digest,
        "subject": taps.subject,
        "loss": None if taps.loss is None else float(taps.loss),
        "dtypes": dict(taps.dtypes),
    }
    return _save_tensors(tensors, meta)


def _batches_bytes(batches: Sequence[CanonicalBatch]) -> bytes:
    tensors = {segment_key(k, i, f): getattr(seg, f)
               for k, batch in enumerate(batches) for i, seg in enumerate(batch.segments)
               for f in ("features", "beat", "measure", "voice", "section", "label")}
    listing = [{"names": [s.name for s in b.segments], "tags": list(b.tags)} for b in batches]
    return _save_tensors(tensors, {"batches": listing})


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _recipe(original: Any, variant: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The original's effective training recipe for `variant`, read from the checkout by
    `checks.training.recipe_original.original_recipe` (values, their sources in the checkout, notes)."""
    if original is None:
        return None, {"recorded": False, "reason": "recorded from a subject, not a checkout: no training code to read"}
    try:
        from percepiano_parity.checks.training.recipe import original_recipe
    except ImportError as exc:
        return None, {"recorded": False, "reason": f"parity.training.recipe_check is not available ({exc})"}
    try:
        rec = original_recipe(original, variant)
    except Exception as exc:  # noqa: BLE001 - optional content: the model checks do not depend on it
        return None, {"recorded": False, "reason": f"recipe extraction failed: {type(exc).__name__}: {exc}"}
    data = {"values": _jsonable(rec.values), "sources": _jsonable(rec.sources), "mode": rec.mode,
            "notes": [str(n) for n in rec.notes], "extra": _jsonable(rec.extra)}
    json.dumps(data)  # plain data only
    return data, {"recorded": True, "file": RECIPE, "source": "parity.training.recipe_check.original_recipe",
                  "mode": rec.mode}


def _data_ops(original: Any, wanted: bool) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The original's data-op outputs in the format of `parity/data/data_ops_reference.json`
    (`commands.record_data_ops.record`), when asked for (it takes a few seconds)."""
    if not wanted:
        return None, {"recorded": False, "reason": "not asked for (record_bundle(..., data_ops=True)); the package "
                                                   "ships parity/data/data_ops_reference.json"}
    if original is None:
        return None, {"recorded": False, "reason": "recorded from a subject, not a checkout"}
    try:
        from percepiano_parity.commands.record_data_ops import record
    except ImportError as exc:
        return None, {"recorded": False, "reason": f"parity.training.record_data_ops is not available ({exc})"}
    return _jsonable(record(original.root)), {"recorded": True, "file": DATA_OPS,
                                               "source": "parity.training.record_data_ops.record"}


def _edge_tags(include: bool | Sequence[str]) -> tuple[str, ...]:
    if isinstance(include, bool):
        return EDGE_TAGS if include else ()
    tags = tuple(include)
    unknown = [t for t in tags if t not in EDGE_TAGS]
    if unknown:
        raise ValueError(f"unknown edge-case tags {', '.join(unknown)}; choose from {', '.join(EDGE_TAGS)}")
    return tags


def _is_bundle_dir(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def _write_atomically(out_dir: Path, files: Mapping[str, bytes], overwrite: bool) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BundleError(f"cannot write a bundle to {out_dir}: it exists and is not a directory")
        empty = not any(out_dir.iterdir())
        if not empty and not (overwrite and _is_bundle_dir(out_dir)):
            raise BundleError(f"{out_dir} already exists and is not empty" + (
                "" if not overwrite else " and is not a bundle (refusing to replace it)") +
                ("; pass overwrite=True to replace an existing bundle" if not overwrite else ""))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def record_bundle(
    original: Any,
    variant: str,
    config: ModelConfig | None,
    seed: int,
    out_dir: str | Path,
    *,
    n_batches: int = 2,
    batch_size: int = 4,
    max_notes: int | None = 40,
    include_edge_cases: bool | Sequence[str] = ("edge:length-1",),
    batch_seed: int | None = None,
    batches: Sequence[CanonicalBatch] | None = None,
    subject: Subject | None = None,
    data_ops: bool = False,
    overwrite: bool = False,
) -> Path:
    """Record `variant` of the original (built with `seed`, eval mode, grads) into the bundle `out_dir`.

    original: an `original_adapter.Original` (loaded checkout); may be None when `subject` is given.
    include_edge_cases: True for all of `parity.batches.EDGE_TAGS`, False for none, or the tags to keep. The
        default keeps `edge:length-1` because it is the one batch with padding: `max_notes` caps every generated
        segment to the same length (real segments have 51-413 notes), and without padding a bundle cannot
        show padding-dependent differences (packed vs padded LSTMs, attention masking, the padding leak).
    batches: the canonical batches to record; default `generate_batches(n_batches, batch_seed or seed,
        batch_size=..., config=..., max_notes=..., include_edge_cases=...)` (filtered to the edge tags asked).
    subject: record this Subject instead of `original.subject(variant, config, seed)` (tests, other sources).
    data_ops: also record the original's data-op outputs (slicing, collate, loss, R2; a few seconds).
    overwrite: replace an existing bundle at `out_dir` (never anything that is not a bundle).
    Returns the bundle directory. Errors of the original on a batch propagate unchanged.
    """
    config = config or DEFAULT_CONFIG
    out_dir = Path(out_dir)
    if subject is None:
        if original is None:
            raise ValueError("record_bundle needs an original checkout or a subject")
        subject = original.subject(variant, config, seed)
    if subject.info.variant and subject.info.variant != variant:
        raise ValueError(f"the subject is variant {subject.info.variant!r}, asked to record {variant!r}")
    batch_seed = seed if batch_seed is None else batch_seed
    generation: dict[str, Any]
    if batches is None:
        edges = _edge_tags(include_edge_cases)
        batches = [b for b in generate_batches(n_batches, batch_seed, batch_size=batch_size, config=config,
                                               max_notes=max_notes, include_edge_cases=bool(edges))
                   if "normal" in b.tags or set(b.tags) & set(edges)]
        generation = {"generator": "parity.batches.generate_batches", "seed": batch_seed, "n_batches": n_batches,
                      "batch_size": batch_size, "max_notes": max_notes, "edge_cases": list(edges)}
    else:
        batches = list(batches)
        generation = {"generator": "given by the caller"}
    if not batches:
        raise ValueError("no batches to record")

    model = subject.model
    weights = {k: v for k, v in model.state_dict().items()}  # before any run: the initial weights
    call_order = trace_calls(model, lambda: subject.run(batches[0], grads=False))
    structure = {"description": describe(model, call_order), "call_order": call_order}

    files: dict[str, bytes] = {
        STRUCTURE: dump_json(structure),
        WEIGHTS: _save_tensors(weights, {"variant": variant, "seed": seed}),
        BATCHES: _batches_bytes(batches),
    }
    batch_entries = []
    for k, batch in enumerate(batches):
        taps = subject.run(batch, grads=True, train=False)
        digest = batch_hash(batch)
        files[taps_file(k)] = _taps_bytes(taps, digest)
        batch_entries.append({"index": k, "taps": taps_file(k), "hash": digest, "tags": list(batch.tags),
                              "lengths": batch.lengths})

    recipe, recipe_note = _recipe(original, variant)
    if recipe is not None:
        files[RECIPE] = dump_json(recipe)
    data, data_note = _data_ops(original, data_ops)
    if data is not None:
        files[DATA_OPS] = dump_json(data)

    info = subject.info
    extra = dict(info.extra)
    checks = list(MODEL_CHECKS) + (["recipe"] if recipe is not None else []) + (["data"] if data is not None else [])
    manifest = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT_NOTE,
        "variant": variant,
        "config": config.to_dict(),
        "seed": seed,
        "n_batches": len(batches),
        "batch_generation": generation,
        "batches": batch_entries,
        "mode": {"train": False, "grads": True, "loss": "MSE(sigmoid(logits), labels), mean"},
        "original": {
            "name": info.name,
            "kind": info.kind,
            "revision": info.revision,
            "fingerprint": extra.get("fingerprint", ""),
            "class": extra.get("class", type(model).__name__),
            "multi_level": extra.get("multi_level"),
            "warnings": list(info.warnings),
        },
        "shims": [dict(s) for s in info.shims],
        "recorded_with": versions(),
        "tolerances": Tolerances().to_dict(),
        "supported_checks": checks,
        "recipe": recipe_note,
        "data_ops": data_note,
        "files": {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in sorted(files.items())},
    }
    files[MANIFEST] = dump_json(manifest)
    _write_atomically(out_dir, files, overwrite)
    return out_dir
