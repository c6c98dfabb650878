"""Reference bundles: record the original once, check a replica anywhere without it. The on-disk format
(shared by the recorder and the loader) and the replay of a bundle as the audit's reference subject.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch
from safetensors.torch import load as load_tensors
from torch import Tensor, nn

from percepiano_parity.batches.canonical import CanonicalBatch, Segment
from percepiano_parity.core.config import ModelConfig
from percepiano_parity.replica.variants import UnknownVariantError, build
from percepiano_parity.subjects.subject import SubjectInfo, Taps

# ----------------------------------------------------------------------------------------------------------
# The on-disk format of a reference bundle, shared by the recorder and the loader.
#
# A bundle is a directory; nothing in it is pickled and loading it runs no code (JSON + safetensors only):
#
#     manifest.json              what was recorded, from what, with which versions; sha256 of every other file
#     structure.json             {"description": compare.structure.describe(model, call_order), "call_order": [...]}
#     weights.safetensors        the original's initial state_dict (names exactly as the original's)
#     batches.safetensors        the canonical batches: "b000.s000.features" ... (metadata: names and tags)
#     taps_000.safetensors ...   per batch: "level.<name>", "attention.<name>", "grad.<parameter>"
#                                (metadata: batch content hash, loss, dtypes)
#     recipe.json                the original's effective training recipe, read from the checkout
#                                (original_adapter.recipe.original_recipe); absent when recorded from a subject
#     data_ops.json              optional: the original's data-op outputs, in the format of
#                                parity/data/data_ops_reference.json (percepiano_parity.commands.record)
#
# The metadata of a safetensors file is one key, "parity", holding a JSON object with sorted keys.
# Tensors keep the dtype the subject recorded (float32 for the original; a bf16 tap stays bf16). Key names are
# fixed by batch index, segment index and tap name, so the same recording always gives the same bytes.

KIND = "percepiano-parity-bundle"
SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
STRUCTURE = "structure.json"
WEIGHTS = "weights.safetensors"
BATCHES = "batches.safetensors"
RECIPE = "recipe.json"
DATA_OPS = "data_ops.json"

SEGMENT_FIELDS = ("features", "beat", "measure", "voice", "section", "label")
TAP_PREFIXES = {"level": "levels", "attention": "attention", "grad": "grads"}  # key prefix -> Taps attribute
MODEL_CHECKS = ("structure", "init", "forward", "backward", "attention", "precision")
VERSIONED = ("python", "torch", "numpy", "safetensors")
METADATA_KEY = "parity"  # a safetensors file's metadata: {"parity": "<sorted JSON object>"}


class BundleError(ValueError):
    """A bundle that cannot be used: missing, corrupt, foreign, another schema, variant or config.
    Its message is one line (the CLI prints it and exits with code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def taps_file(index: int) -> str:
    return f"taps_{index:03d}.safetensors"


def segment_key(batch: int, segment: int, field: str) -> str:
    return f"b{batch:03d}.s{segment:03d}.{field}"


def versions() -> dict[str, str]:
    return {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor_bytes(t: Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def batch_hash(batch: CanonicalBatch) -> str:
    """Content hash of a batch's tensors (dtype, shape and bytes of every field of every segment, in order).
    Names and tags are not part of it: two batches with the same numbers are the same input."""
    h = hashlib.sha256()
    h.update(f"segments={len(batch.segments)};".encode())
    for seg in batch.segments:
        for name in SEGMENT_FIELDS:
            t = getattr(seg, name)
            h.update(f"{name}:{str(t.dtype).removeprefix('torch.')}:{tuple(t.shape)};".encode())
            h.update(_tensor_bytes(t))
    return h.hexdigest()


def dump_json(data: Any) -> bytes:
    """Deterministic JSON (sorted keys, fixed separators, trailing newline)."""
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode("utf-8")


def safetensors_metadata(data: bytes) -> dict[str, Any]:
    """The parity metadata of a safetensors file given as bytes (its header's `__metadata__["parity"]`,
    a JSON object); {} when there is none. Raises ValueError on a malformed header."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("safetensors header runs past the end of the file")
    header = json.loads(data[8:8 + n])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    if not isinstance(meta, Mapping) or METADATA_KEY not in meta:
        return {}
    value = json.loads(meta[METADATA_KEY])
    if not isinstance(value, dict):
        raise ValueError("parity metadata is not a JSON object")
    return value


# ----------------------------------------------------------------------------------------------------------
# Load a reference bundle and replay it as the audit's reference subject.
#
#     bundle = load_bundle(path, expect_variant="han-total", expect_config=SMALL_CONFIG)
#     report, state = audit(bundle.reference_subject(), candidate, bundle.batches, settings)
#
# Loading reads JSON and safetensors only (no pickle, no code from the bundle) and checks every file against
# the manifest's sha256 before using it. Anything that makes the bundle unusable raises `BundleError` with one
# line; differing library versions only add warnings.
#
# The replayed subject's `model` is the faithful replica skeleton of the variant holding the recorded initial
# weights: its parameter names are the original's, so weight mapping, the init check and the noise floors work
# as with the live original. The skeleton is never run: `run` returns the recorded taps, and `structure`
# returns the recorded description and call order (the engine uses it instead of tracing the model).

_REQUIRED_KEYS = ("variant", "config", "seed", "n_batches", "batches", "files", "supported_checks")


@dataclass
class Bundle:
    """A loaded, verified bundle. `taps[k]` is what the original recorded on `batches[k]`."""

    path: Path
    manifest: dict[str, Any]
    variant: str
    config: ModelConfig
    seed: int
    batches: list[CanonicalBatch]
    taps: list[Taps]
    weights: dict[str, Tensor]
    structure: dict[str, Any]  # {"description": describe(...), "call_order": [...]}
    warnings: list[str] = field(default_factory=list)
    supported_checks: tuple[str, ...] = ()
    recipe: dict[str, Any] | None = None  # recipe.json: values, sources, mode, notes, extra
    data_ops: dict[str, Any] | None = None  # data_ops.json: the format of parity/data/data_ops_reference.json
    _skeleton: nn.Module | None = field(default=None, repr=False)

    @property
    def data_ops_path(self) -> Path | None:
        """The recorded data-op outputs as a file (for `checks.data_ops.run(reference_path=...)`)."""
        return self.path / DATA_OPS if self.data_ops is not None else None

    def reference_subject(self) -> ReplaySubject:
        """The recorded original as an audit subject (a fresh skeleton model each call)."""
        assert self._skeleton is not None
        return ReplaySubject(self, copy.deepcopy(self._skeleton))


class ReplaySubject:
    """Implements `parity.subject.Subject` from a bundle: recorded taps, recorded structure, initial weights."""

    def __init__(self, bundle: Bundle, model: nn.Module) -> None:
        self.bundle = bundle
        self.model = model
        m = bundle.manifest
        original = m.get("original", {}) if isinstance(m.get("original"), dict) else {}
        self.info = SubjectInfo(
            name="original",
            kind="reference-bundle",
            variant=bundle.variant,
            source=str(bundle.path),
            revision=str(original.get("revision", "")),
            shims=tuple(dict(s) for s in m.get("shims", []) if isinstance(s, dict)),
            warnings=tuple(str(w) for w in original.get("warnings", [])) + tuple(bundle.warnings),
            extra={"seed": bundle.seed, "config": bundle.config.to_dict(), "fingerprint": original.get("fingerprint", ""),
                   "class": original.get("class", ""), "recorded_with": dict(m.get("recorded_with", {})),
                   "schema_version": m.get("schema_version")},
        )
        self._by_hash = {batch_hash(b): t for b, t in zip(bundle.batches, bundle.taps, strict=True)}

    def structure(self) -> dict[str, Any]:
        """The original's recorded structure: {"description": ..., "call_order": [...]}."""
        return copy.deepcopy(self.bundle.structure)

    def run(self, batch: CanonicalBatch, *, grads: bool = True, train: bool = False) -> Taps:
        if train:
            raise BundleError("a reference bundle holds eval-mode recordings only; it cannot run in train mode")
        recorded = self._by_hash.get(batch_hash(batch))
        if recorded is None:
            raise BundleError(f"batch not in bundle {self.bundle.path}: a bundle replays only the batches it "
                              f"recorded (use bundle.batches, {len(self.bundle.batches)} of them)")
        return Taps(
            subject=self.info.name,
            levels={k: v.clone() for k, v in recorded.levels.items()},
            attention={k: v.clone() for k, v in recorded.attention.items()},
            grads={k: v.clone() for k, v in recorded.grads.items()} if grads else {},
            loss=recorded.loss,
            dtypes=dict(recorded.dtypes),
        )


# -- loading ------------------------------------------------------------------------------------------------

def _read_manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    if path.is_file():
        if path.name != MANIFEST:
            raise BundleError(f"{path} is a file; a bundle is a directory holding {MANIFEST}")
        path = path.parent
    if not path.exists():
        raise BundleError(f"no bundle at {path}: it does not exist")
    if not path.is_dir():
        raise BundleError(f"{path} is not a directory; a bundle is a directory holding {MANIFEST}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{path} is not a parity bundle: it has no {MANIFEST}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath} is corrupt: {type(exc).__name__}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        kind = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{path} is not a percepiano-parity bundle (manifest kind {kind!r}, expected {KIND!r})")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{path} has bundle schema version {version!r}; this parity reads version "
                          f"{SCHEMA_VERSION} (re-record the bundle with `parity record`)")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{mpath} is corrupt: it lacks {', '.join(missing)}")
    return path, manifest


def _config_of(manifest: dict[str, Any], mpath: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(dict(manifest["config"]))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{mpath} is corrupt: invalid config ({exc})") from None


def _check_expectations(path: Path, manifest: dict[str, Any], config: ModelConfig, expect_variant: str | None,
                        expect_config: ModelConfig | Mapping[str, Any] | None) -> None:
    if expect_variant is not None and manifest["variant"] != expect_variant:
        raise BundleError(f"bundle {path} was recorded for variant {manifest['variant']!r}, not {expect_variant!r}")
    if expect_config is None:
        return
    want = expect_config.to_dict() if isinstance(expect_config, ModelConfig) else dict(expect_config)
    have = config.to_dict()
    diff = [k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    if diff:
        raise BundleError(f"bundle {path} was recorded with another model config: "
                          + ", ".join(f"{k} {have.get(k)!r} (asked {want.get(k)!r})" for k in diff))


def _read_files(path: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    listed = manifest["files"]
    if not isinstance(listed, dict):
        raise BundleError(f"{path / MANIFEST} is corrupt: 'files' is not a mapping")
    needed = [STRUCTURE, WEIGHTS, BATCHES] + [taps_file(k) for k in range(int(manifest["n_batches"]))]
    unlisted = [n for n in needed if n not in listed]
    if unlisted:
        raise BundleError(f"{path / MANIFEST} is corrupt: it lists no checksum for {', '.join(unlisted)}")
    out: dict[str, bytes] = {}
    for name, entry in sorted(listed.items()):
        if "/" in name or "\\" in name or name.startswith(".") or not isinstance(entry, dict):
            raise BundleError(f"{path / MANIFEST} is corrupt: bad file entry {name!r}")
        fpath = path / name
        try:
            data = fpath.read_bytes()
        except FileNotFoundError:
            raise BundleError(f"bundle {path} is incomplete: {name} is missing") from None
        except OSError as exc:
            raise BundleError(f"bundle {path}: cannot read {name}: {exc.strerror}") from None
        size = entry.get("bytes")
        if isinstance(size, int) and len(data) != size:
            what = "truncated" if len(data) < size else "longer than recorded"
            raise BundleError(f"bundle {path}: {name} is {what} ({len(data)} of {size} bytes); re-record the bundle")
        if sha256(data) != entry.get("sha256"):
            raise BundleError(f"bundle {path}: {name} does not match its recorded sha256 (changed or corrupt); "
                              "re-record the bundle")
        out[name] = data
    return out


def _tensors(path: Path, name: str, data: bytes) -> tuple[dict[str, Tensor], dict[str, Any]]:
    try:
        return load_tensors(data), safetensors_metadata(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure of a checksummed file is corruption
        raise BundleError(f"bundle {path}: {name} is not a readable safetensors file ({exc})") from None


def _batches(path: Path, data: bytes, n: int) -> list[CanonicalBatch]:
    tensors, meta = _tensors(path, BATCHES, data)
    try:
        listing = meta["batches"]
        batches = []
        for k in range(n):
            names, tags = listing[k]["names"], listing[k]["tags"]
            segs = tuple(Segment(str(name), **{f: tensors[segment_key(k, i, f)] for f in SEGMENT_FIELDS})
                         for i, name in enumerate(names))
            batches.append(CanonicalBatch(segments=segs, tags=tuple(str(t) for t in tags)))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise BundleError(f"bundle {path}: {BATCHES} does not hold {n} batches ({type(exc).__name__}: {exc})") \
            from None
    return batches


def _taps(path: Path, name: str, data: bytes) -> tuple[Taps, str]:
    tensors, meta = _tensors(path, name, data)
    try:
        taps = Taps(subject=str(meta.get("subject", "original")), dtypes=dict(meta.get("dtypes", {})),
                    loss=float(meta["loss"]) if meta.get("loss") is not None else None)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle {path}: {name} has unreadable metadata ({exc})") from None
    for key, value in tensors.items():
        prefix, _, tap = key.partition(".")
        if prefix not in TAP_PREFIXES or not tap:
            raise BundleError(f"bundle {path}: {name} holds an unknown tap {key!r}")
        getattr(taps, TAP_PREFIXES[prefix])[tap] = value
    return taps, meta.get("batch_hash", "")


def _drift(recorded: Any) -> list[str]:
    if not isinstance(recorded, dict):
        return ["the bundle does not say which library versions recorded it"]
    now = versions()
    return [f"recorded with {lib} {recorded.get(lib)}, running {lib} {now[lib]}: the original's taps are replayed "
            f"as recorded, while the candidate and the noise floors run on {lib} {now[lib]}"
            for lib in VERSIONED if recorded.get(lib) != now[lib]]


def load_bundle(path: str | Path, *, expect_variant: str | None = None,
                expect_config: ModelConfig | Mapping[str, Any] | None = None) -> Bundle:
    """Read and verify a bundle directory (or its manifest.json). Raises BundleError (one line)."""
    path, manifest = _read_manifest(Path(path))
    config = _config_of(manifest, path / MANIFEST)
    _check_expectations(path, manifest, config, expect_variant, expect_config)
    try:
        n = int(manifest["n_batches"])
        seed = int(manifest["seed"])
    except (TypeError, ValueError):
        raise BundleError(f"{path / MANIFEST} is corrupt: n_batches and seed must be integers") from None
    files = _read_files(path, manifest)
    try:
        structure = json.loads(files[STRUCTURE])
        if not isinstance(structure, dict) or not {"description", "call_order"} <= set(structure):
            raise ValueError("expected description and call_order")
    except ValueError as exc:
        raise BundleError(f"bundle {path}: {STRUCTURE} is corrupt ({exc})") from None
    weights, _ = _tensors(path, WEIGHTS, files[WEIGHTS])
    batches = _batches(path, files[BATCHES], n)
    entries = manifest["batches"] if isinstance(manifest["batches"], list) else []
    taps = []
    for k, batch in enumerate(batches):
        recorded, digest = _taps(path, taps_file(k), files[taps_file(k)])
        actual = batch_hash(batch)
        listed = entries[k].get("hash") if k < len(entries) and isinstance(entries[k], dict) else None
        if digest != actual or listed != actual:
            raise BundleError(f"bundle {path}: {taps_file(k)} was recorded on another batch than batch {k} of "
                              f"{BATCHES}")
        taps.append(recorded)
    try:
        recipe = json.loads(files[RECIPE]) if RECIPE in files else None
        data_ops = json.loads(files[DATA_OPS]) if DATA_OPS in files else None
    except ValueError as exc:
        raise BundleError(f"bundle {path}: {RECIPE} or {DATA_OPS} is not valid JSON ({exc})") from None
    skeleton = _skeleton(path, manifest["variant"], config, weights)
    return Bundle(
        path=path, manifest=manifest, variant=manifest["variant"], config=config, seed=seed, batches=batches,
        taps=taps, weights=weights, structure=structure, warnings=_drift(manifest.get("recorded_with")),
        supported_checks=tuple(str(c) for c in manifest["supported_checks"]), recipe=recipe, data_ops=data_ops,
        _skeleton=skeleton,
    )


def _skeleton(path: Path, variant: str, config: ModelConfig, weights: dict[str, Tensor]) -> nn.Module:
    """The faithful replica of `variant` holding the recorded weights (global RNG left untouched)."""
    try:
        with torch.random.fork_rng(devices=[]):
            model = build(variant, config)
    except UnknownVariantError:
        raise BundleError(f"bundle {path} was recorded for variant {variant!r}, which this parity does not know") \
            from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise BundleError(f"bundle {path}: the recorded weights do not fit the {variant} replica skeleton ({first})") \
            from None
    model.eval()
    return model


# ----------------------------------------------------------------------------------------------------------
# Reference bundles: record the original once, check a replica anywhere without it.
#
#     record_bundle(original_adapter.load(path), "han-total", SMALL_CONFIG, 7, "my-bundle")   # needs the original
#     bundle = load_bundle("my-bundle", expect_variant="han-total")                           # needs nothing
#     audit(bundle.reference_subject(), candidate, bundle.batches, settings)
#
# `DEFAULT_BUNDLES` maps a variant id to the bundle shipped inside the package (`parity/data/bundles/<variant>`,
# SMALL_CONFIG, seed 7); rebuild them with `python -m percepiano_parity.commands.record default-bundles --original PATH`.

DEFAULT_VARIANTS: tuple[str, ...] = ("han-total", "bilstm-note")


def _default_bundles() -> dict[str, Path]:
    # resolve each bundle through importlib.resources, as a real path
    files = importlib.resources.files("percepiano_parity")
    return {variant: Path(str(files.joinpath(f"data/bundles/{variant}"))) for variant in DEFAULT_VARIANTS}


DEFAULT_BUNDLES: dict[str, Path] = _default_bundles()
