"""The prepared real-data cache: its layout, its files and how they are written (atomically) and read.

    CACHE/manifest.json                    what was made, from what, how; every segment and every failure
    CACHE/corresp/<key>_infer_corresp.txt  the correspondence the original read (ours or the user's)
    CACHE/raw/<key>.safetensors            stage 1: the original's unnormalised pair features of one performance
    CACHE/segments/<key>.safetensors       stage 2: what a loader needs: input matrices, locations, labels, folds

`raw/` holds `ScorePerformPairData.features` as the original left them: `raw/<feature>` per feature (per-note
scalars (T,), per-note vectors (T, w), global values () or (w,), int64 or float64 as the Python values were),
`location/<beat|measure|voice|section>` int64 (T,), and the kind of every feature in the metadata so the exact
Python structure can be rebuilt for the original's FeatureConverter (`features.decode_features`).
`segments/` holds `input/<key list>` float64 (T, W) as FeatureConverter wrote it, `output`, `beat`, `meas`
(the performance targets), `location/*`, `label/<label set>` (19 float64) and `label_std`; its metadata
carries the fold membership and the segment record. Keys are the label keys (file names without `.mid`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "percepiano-parity-real-cache"
VERSION = 1
MANIFEST = "manifest.json"
RAW = "raw"
SEGMENTS = "segments"
CORRESP = "corresp"
DEFAULT_KEY_LIST = "published-splits"
DEFAULT_LABEL_SET = "labels"
LOCATION_KEYS = ("beat", "measure", "voice", "section")


class CacheError(ValueError):
    """A cache folder that cannot be read (missing, another format, a damaged file); one line."""


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so that it is either absent/old or complete: temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_tensors(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> str:
    """Save tensors with JSON metadata (each value JSON-encoded under its key) atomically; returns the sha256."""
    from safetensors.numpy import save

    data = save({k: v if v.flags.c_contiguous else v.copy() for k, v in tensors.items()},  # keeps 0-d arrays
                metadata={k: json.dumps(v, sort_keys=True) for k, v in metadata.items()})
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(tensors, metadata) of a file written by `write_tensors`; CacheError when it is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:
            metadata = {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except FileNotFoundError:
        raise CacheError(f"{path}: missing") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise CacheError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return tensors, metadata


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of a tensors file, or None when it is missing or damaged (for the skip-what-is-done test)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:
            return {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
    except Exception:  # noqa: BLE001 - anything unreadable counts as not done
        return None


def read_manifest(cache: str | Path) -> dict[str, Any]:
    """The manifest of a prepared cache; CacheError with one line when the folder is not one."""
    folder = Path(cache).expanduser()
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CacheError(f"{folder}: no such folder")
    if not path.is_file():
        hint = " (it looks like the raw data: run `parity data prepare` on it first)" \
            if (folder / "performances").is_dir() else ""
        raise CacheError(f"{folder} is not a prepared cache: no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise CacheError(f"{path}: cache version {manifest.get('version')}, this tool reads {VERSION} (prepare "
                         "it again)")
    return manifest


def segment_path(cache: Path, key: str) -> Path:
    return cache / SEGMENTS / f"{key}.safetensors"


def raw_path(cache: Path, key: str) -> Path:
    return cache / RAW / f"{key}.safetensors"


def corresp_path(cache: Path, key: str) -> Path:
    return cache / CORRESP / f"{key}_infer_corresp.txt"
