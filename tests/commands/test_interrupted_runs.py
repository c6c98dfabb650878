"""Interrupting a run (SIGINT, SIGTERM) at any point leaves the previous reports intact and no partial files;
two runs writing into one report folder at once leave one complete set. Real processes and real signals.

Each run goes through a small driver around `cli.main` that announces on stderr when it reaches the moment
under test (and lingers there a little), so the signal lands exactly there: while torch is being imported,
during the audit, while the new report files are written, between their renames.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiers import sweep

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--batches", "1", "--max-notes", "16", "--no-edge-cases", "--no-training-checks"]
FILES = ["junit.xml", "report.html", "report.json", "report.md"]

DRIVER = textwrap.dedent('''
    import os, sys, time

    mode = os.environ["DRIVER_MODE"]

    def say(text):
        os.write(2, (text + "\\n").encode())

    if mode == "torch-import":  # linger inside the import machinery while torch is being imported
        class Slow:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    say("MARK importing torch")
                    time.sleep(30)
                return None

        sys.meta_path.insert(0, Slow())
    from percepiano_parity.commands.cli import main

    if mode == "audit":
        from percepiano_parity.compare import engine
        run = engine.Engine.run
        def audit(self, batches):
            say("MARK auditing")
            time.sleep(30)
            return run(self, batches)
        engine.Engine.run = audit
    if mode in ("temp-files", "renames", "together"):
        from percepiano_parity.reports import atomic
        write_temp, replace = atomic._write_temp, os.replace
        def slow_temp(path, data, *rest):
            out = write_temp(path, data, *rest)
            say("MARK writing")
            time.sleep(2 if mode == "temp-files" else 0)
            return out
        def slow_replace(src, dst):
            replace(src, dst)
            say("MARK renaming")
            time.sleep(1 if mode == "renames" else float(os.environ.get("DRIVER_PAUSE", "0")))
        atomic._write_temp, atomic.os.replace = slow_temp, slow_replace
    if mode == "together":  # both runs reach the writing step before either writes
        from percepiano_parity import reports
        write_reports = reports.write_reports
        def meet(*args, **kwargs):
            mine = os.environ["DRIVER_ME"]
            open(mine, "w").close()
            deadline = time.time() + 120
            while not all(os.path.exists(p) for p in os.environ["DRIVER_ALL"].split(",")) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(float(os.environ.get("DRIVER_DELAY", "0")))
            return write_reports(*args, **kwargs)
        reports.write_reports = meet
    sys.exit(main(sys.argv[1:]))
''')


def start(tmp_path: Path, mode: str, args: list[str], **env: str) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    environ = dict(os.environ, DRIVER_MODE=mode, PARITY_TEST_REFERENCE="replica", OMP_NUM_THREADS="1", **env)
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environ.pop("PERCEPIANO_ORIGINAL", None)
    return subprocess.Popen([sys.executable, str(driver), "check", *FAST, *args], cwd=tmp_path, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, mark: str, timeout: float = 240) -> list[str]:
    """stderr lines up to and including the first `MARK <mark>`."""
    lines: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"ended before {mark!r}: {''.join(lines)}")
        lines.append(line)
        if line.startswith(f"MARK {mark}"):
            return lines
    raise AssertionError(f"no {mark!r} within {timeout} s")


def previous_reports(folder: Path) -> dict[str, str]:
    folder.mkdir()
    old = {name: f"previous {name}\n" for name in FILES}
    for name, text in old.items():
        (folder / name).write_text(text)
    return old


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("MARK", "parity: note:"))]


@pytest.mark.handwritten_reports  # the previous reports are placeholders
@pytest.mark.parametrize("mode, mark, signum", sweep([
    ("torch-import", "importing torch", signal.SIGINT),
    ("audit", "auditing", signal.SIGTERM),
    ("temp-files", "writing", signal.SIGINT),
], fast={"audit"}, name=lambda case: "-".join(map(str, case))))
def test_an_interrupt_before_the_renames_leaves_the_previous_reports(mode, mark, signum, tmp_path):
    out = tmp_path / "reports"
    old = previous_reports(out)
    proc = start(tmp_path, mode, ["--report-dir", str(out), "--format", "md,json,html,junit"])
    wait_for(proc, mark)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert proc.returncode == 128 + signum, stderr
    assert error_lines(stderr) == [f"parity: error: {word}"], stderr  # one line, no traceback
    assert contents(out) == old  # the previous set, untouched, and no temporary file beside it


@pytest.mark.slow
def test_an_interrupt_between_the_renames_lets_the_new_set_finish(tmp_path):
    out = tmp_path / "reports"
    old = previous_reports(out)
    proc = start(tmp_path, "renames", ["--report-dir", str(out), "--format", "md,json,html,junit"])
    wait_for(proc, "renaming")  # one file of the new set is in place, three are not yet
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and error_lines(stderr) == ["parity: error: terminated"], stderr
    new = contents(out)
    assert sorted(new) == FILES  # no temporary file left
    assert all(new[name] != old[name] for name in FILES)  # the whole new set, not a mix


@pytest.mark.slow
def test_two_runs_into_one_folder_leave_one_complete_set(tmp_path):
    """Run 0 renames its first file, then dawdles; run 1 comes in meanwhile and renames fast. Without the
    folder lock the folder would end up with run 1's first file and run 0's others."""
    out = tmp_path / "shared-reports"
    marks = [str(tmp_path / f"ready-{i}") for i in range(2)]
    timing = [{"DRIVER_PAUSE": "1.0", "DRIVER_DELAY": "0"}, {"DRIVER_PAUSE": "0", "DRIVER_DELAY": "0.3"}]
    runs = [start(tmp_path, "together", ["--report-dir", str(out), "--format", "md,json,html,junit", *extra],
                  DRIVER_ME=marks[i], DRIVER_ALL=",".join(marks), **timing[i])
            for i, extra in enumerate([[], ["--deviation", "layernorm-han-output", "--variant", "han-total"]])]
    for proc in runs:
        _, stderr = proc.communicate(timeout=400)
        assert proc.returncode in (0, 1), stderr
    files = contents(out)
    assert sorted(files) == FILES
    from_deviated = {name: "PP-EXTRA-NORM" in text for name, text in files.items()}
    assert len(set(from_deviated.values())) == 1, from_deviated  # every file from the same run
