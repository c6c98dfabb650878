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


REAL_DATA = SHARED / "percepiano-data"
# five short real performances (54-120 notes): two with inserted unaligned notes (3 and 1), one in the valid split
# of performer4fold fold 0 (_4_08), one Beethoven
SMALL_REAL_KEYS = ("Schubert_D960_mv3_8bars_0_08", "Schubert_D960_mv3_8bars_10_17", "Schubert_D960_mv3_8bars_4_08",
                   "Schubert_D935_no.3_4bars_6_9", "Beethoven_WoO80_thema_8bars_11_1")
LABEL_FILE = "label_2round_mean_reg_19_with0_rm_highstd0.json"


@pytest.fixture(scope="session")
def small_real_cache(original, tmp_path_factory) -> Path:
    """A cache of SMALL_REAL_KEYS prepared by `parity data prepare` with the real original (about 5 s); skips
    without the shared data."""
    if not (REAL_DATA / "performances").is_dir():
        pytest.skip(f"{REAL_DATA} not present: the real PercePiano data is needed")
    import shutil

    from percepiano_parity.commands.data_prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("small-data")
    for sub in ("performances", "scores/score_xml", "scores/score_midi", "labels/repo-root"):
        (root / sub).mkdir(parents=True)
    for key in SMALL_REAL_KEYS:
        os.symlink(REAL_DATA / "performances" / f"{key}.mid", root / "performances" / f"{key}.mid")
        parts = key.split("_")
        score = "_".join(parts[:-2]) + "_Score_" + parts[-1]
        for kind, ext in (("score_xml", "musicxml"), ("score_midi", "mid")):
            link = root / "scores" / kind / f"{score}.{ext}"
            if not link.exists():
                os.symlink(REAL_DATA / "scores" / kind / link.name, link)
    for rel in (f"labels/{LABEL_FILE}", f"labels/repo-root/{LABEL_FILE}"):
        shutil.copy(REAL_DATA / rel, root / rel)
    out = tmp_path_factory.mktemp("small-cache")
    prepare(PrepareOptions(original=str(original.root), data=str(root), out=str(out)))
    return out


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


# ------------------------------------------------------------------------------ the fast tier's budget

FAST_TIER_BUDGET_S = 300  # the README's test command on a 2-core machine (tests/tiers.py)
_STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session):
    import time

    session.config.stash[_STARTED] = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After the README's test command (-m "not slow"): its wall time against the fast tier's budget, and what
    to do when it is over."""
    import time

    if ((config.option.markexpr or "").replace(" ", "") != "notslow" or config.option.collectonly
            or _STARTED not in config.stash):
        return
    took = time.monotonic() - config.stash[_STARTED]
    over = took > FAST_TIER_BUDGET_S
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
    terminalreporter.write_line(f"fast tier: {took:.0f} s of wall time (budget {FAST_TIER_BUDGET_S} s{load})"
                                + ("; over it: mark the slowest tests slow (tests/tiers.py)" if over else ""),
                                yellow=over)
