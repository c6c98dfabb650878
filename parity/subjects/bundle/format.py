"""The on-disk format of a reference bundle, shared by the recorder and the loader.

A bundle is a directory; nothing in it is pickled and loading it runs no code (JSON + safetensors only):

    manifest.json              what was recorded, from what, with which versions; sha256 of every other file
    structure.json             {"description": compare.structure.describe(model, call_order), "call_order": [...]}
    weights.safetensors        the original's initial state_dict (names exactly as the original's)
    batches.safetensors        the canonical batches: "b000.s000.features" ... (metadata: names and tags)
    taps_000.safetensors ...   per batch: "level.<name>", "attention.<name>", "grad.<parameter>"
                               (metadata: batch content hash, loss, dtypes)
    recipe.json                the original's effective training recipe, read from the checkout
                               (checks.training.recipe_original.original_recipe); absent when recorded from a subject
    data_ops.json              optional: the original's data-op outputs, in the format of
                               parity/data/data_ops_reference.json (percepiano_parity.commands.record_data_ops)

The metadata of a safetensors file is one key, "parity", holding a JSON object with sorted keys.
Tensors keep the dtype the subject recorded (float32 for the original; a bf16 tap stays bf16). Key names are
fixed by batch index, segment index and tap name, so the same recording always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors
import torch
from torch import Tensor

from percepiano_parity.replica.batch import CanonicalBatch

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
