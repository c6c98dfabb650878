"""Shared fixtures: the real original (when PERCEPIANO_ORIGINAL points at a checkout) and small batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def original():
    """The user's checkout of the original, loaded through the adapter; skips with a reason without it."""
    path = os.environ.get("PERCEPIANO_ORIGINAL")
    if not path:
        pytest.skip("PERCEPIANO_ORIGINAL not set: tests against the real original PercePiano need a checkout "
                    "(git clone JonghoKimSNU/PercePiano, then PERCEPIANO_ORIGINAL=/path/to/it)")
    from percepiano_parity import original_adapter

    return original_adapter.load(path)
