"""Shared fixtures: the real original (when PERCEPIANO_ORIGINAL points at a checkout) and small batches; and
the check that every report.json a test writes validates against the shipped schema."""

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


# ------------------------------------------------------------------------------ every report.json validates

_VALIDATED: set[Path] = set()


@pytest.fixture(autouse=True)
def _reports_in_tmp_path_validate(request):
    """After each test that has a tmp_path: every report.json written under it validates against the schema."""
    from report_schema_check import describe, invalid_reports

    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None and request.node.get_closest_marker("handwritten_reports"):
        _VALIDATED.update(Path(folder).rglob("report.json"))  # broken on purpose: the input under test
    elif folder is not None:
        bad = invalid_reports(folder, _VALIDATED)
        if bad:
            pytest.fail(describe(bad), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _every_report_of_the_session_validates(tmp_path_factory):
    """At the end: every report.json under the session's temporary folders (module fixtures, pytester runs)."""
    from report_schema_check import describe, invalid_reports

    yield
    bad = invalid_reports(tmp_path_factory.getbasetemp(), _VALIDATED)
    if bad:
        pytest.fail(describe(bad), pytrace=False)
