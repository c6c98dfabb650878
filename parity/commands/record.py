"""Recording what a run without the original reads: reference bundles, the shipped default bundles, and
the original's data-op outputs on the generated cases.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from percepiano_parity.batches import data_cases as gen
from percepiano_parity.batches.canonical import CanonicalBatch
from percepiano_parity.batches.real.labels import default_data_roots, label_file_fingerprints
from percepiano_parity.batches.synthetic import EDGE_TAGS, generate_batches
from percepiano_parity.compare.data_ops import (
    DEFAULT_COUNTS,
    PREFIX,
    inputs_digests,
    original_outputs,
)
from percepiano_parity.compare.noise import Tolerances
from percepiano_parity.compare.structure import describe, trace_calls
from percepiano_parity.compare.training import single_thread
from percepiano_parity.core.config import DEFAULT_CONFIG, SMALL_CONFIG, ModelConfig
from percepiano_parity.subjects.bundle import (
    BATCHES,
    DATA_OPS,
    DEFAULT_BUNDLES,
    DEFAULT_VARIANTS,
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
from percepiano_parity.subjects.subject import Subject, Taps

# ----------------------------------------------------------------------------------------------------------
# Record a reference bundle: run the original once, save everything a parity check reads.
#
#     original = original_adapter.load(path)
#     record_bundle(original, "han-total", SMALL_CONFIG, 7, "bundles/han-total")
#
# The original runs through its adapter subject, built with `seed` (so the saved weights are its initial
# weights), in eval mode, with gradients. What is saved is described in `subjects.bundle`. A `subject`
# can be given instead of an original (any object implementing `parity.subject.Subject`), which is how the
# tests record without the original.

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
    `original_adapter.recipe.original_recipe` (values, their sources in the checkout, notes)."""
    if original is None:
        return None, {"recorded": False, "reason": "recorded from a subject, not a checkout: no training code to read"}
    try:
        from percepiano_parity.checks.recipe import original_recipe
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
    (`commands.record.record`), when asked for (it takes a few seconds)."""
    if not wanted:
        return None, {"recorded": False, "reason": "not asked for (record_bundle(..., data_ops=True)); the package "
                                                   "ships parity/data/data_ops_reference.json"}
    if original is None:
        return None, {"recorded": False, "reason": "recorded from a subject, not a checkout"}
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


# ----------------------------------------------------------------------------------------------------------
# Record the original's data-op outputs on the generated cases, for data checks without a checkout.
#
#     python -m percepiano_parity.commands.record data-ops --original ../shared/percepiano-original \
#         --out parity/data/data_ops_reference.json
#
# Runs the original's `make_slicing_indexes_by_measure`, `FeatureCollate`, `get_batch_result` (both branches),
# `get_validation_loss` and its `r2_score` through `original_adapter` on the cases of `batches.data_cases`
# (fixed seed), and writes their outputs with the cases' input fingerprints and both label files'
# fingerprints. Only outputs are stored (slices, short digests, rounded floats), never the original's code.

COMMAND = ("python -m percepiano_parity.commands.record data-ops --original PATH "
           "--out parity/data/data_ops_reference.json")


def record(original_path: str | Path, counts: dict[str, int] | None = None, seed: int = gen.DEFAULT_SEED,
           data_roots: list[Path] | None = None) -> dict:
    from percepiano_parity import original_adapter

    counts = {**DEFAULT_COUNTS, **(counts or {})}
    original = original_adapter.load(original_path)
    with single_thread():
        outputs = original_outputs(original, counts, seed)
    roots = [original.root, *(data_roots or default_data_roots())]
    return {
        "format": 1,
        "generated_by": COMMAND,
        "original": {"revision": original.revision, "shims": [s["name"] for s in original.shims]},
        "seed": seed,
        "counts": counts,
        "inputs_digest": inputs_digests(counts, seed),
        "inputs_digest_prefix": {k: v for k, v in inputs_digests({k: min(n, PREFIX) for k, n in counts.items()},
                                                                 seed).items() if counts[k] >= PREFIX},
        "label_files": label_file_fingerprints(roots),
        **outputs,
    }


def main_data_ops(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="the PercePiano checkout to record from")
    parser.add_argument("--out", required=True, help="where to write the JSON")
    parser.add_argument("--seed", type=int, default=gen.DEFAULT_SEED)
    for key, value in DEFAULT_COUNTS.items():
        parser.add_argument(f"--{key}", type=int, default=value, help=f"number of {key} cases (default {value})")
    args = parser.parse_args(argv)
    counts = {k: getattr(args, k) for k in DEFAULT_COUNTS}
    started = time.perf_counter()
    data = record(args.original, counts, args.seed)
    text = json.dumps(data, separators=(",", ":"), sort_keys=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(out)
    print(f"wrote {out} ({len(text) / 1024:.0f} KiB, {sum(counts.values())} cases, "
          f"{time.perf_counter() - started:.1f} s)",
          file=sys.stderr)
    return 0




# ----------------------------------------------------------------------------------------------------------
# Rebuild the default bundles shipped in `parity/data/bundles/` from a checkout of the original.
#
#     python -m percepiano_parity.commands.record default-bundles --original ../shared/percepiano-original
#
# Records the HAN (`han-total`) and the Bi-LSTM baseline (`bilstm-note`) at `replica.SMALL_CONFIG`, seed 7 (the
# original's `th_seed`), on two generated batches (batch seed 7): one realistic batch of 4 segments of 24 notes,
# and the `edge:length-1` batch (24, 1 and 12 notes: padding, and the one-note item whose padding the original's
# span wraps to index -1). The bundles in place are replaced. Same checkout and library versions give the same
# bytes. Both bundles together stay under 2 MB.

SEED = 7
SETTINGS = {"n_batches": 1, "batch_size": 4, "max_notes": 24, "include_edge_cases": ("edge:length-1",)}


def main_default_bundles(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m percepiano_parity.commands.record default-bundles", description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="path of the PercePiano checkout to record")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write <variant>/ bundles into (default: the package's data/bundles)")
    args = parser.parse_args(argv)
    from percepiano_parity import original_adapter

    try:
        original = original_adapter.load(args.original)
    except original_adapter.OriginalLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = 0
    for variant in DEFAULT_VARIANTS:
        out = args.out / variant if args.out else DEFAULT_BUNDLES[variant]
        try:
            path = record_bundle(original, variant, SMALL_CONFIG, SEED, out, overwrite=True, **SETTINGS)
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        size = sum(f.stat().st_size for f in path.iterdir())
        total += size
        print(f"{variant}: {path} ({size / 1024:.0f} KiB)")
    print(f"total {total / 1024:.0f} KiB; original revision {original.revision}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m percepiano_parity.commands.record {default-bundles,data-ops} ...`"""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"default-bundles": main_default_bundles, "data-ops": main_data_ops}
    if not args or args[0] not in commands:
        print(f"usage: python -m percepiano_parity.commands.record {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
