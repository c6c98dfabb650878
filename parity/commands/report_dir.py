"""The report folder, checked before the audit runs: a folder that cannot be written is refused in one line
(exit code 2) at the start, not found after minutes of work with the result lost.

Nothing is created: the check walks up to the nearest folder that exists, makes sure every missing part can
be created there, and writes (then removes) a probe file in it. Report files that exist but cannot be
replaced (a folder in the place of `report.md`) are refused too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from percepiano_parity.core.validation import InputError


def check_report_dir(path: str | os.PathLike[str], file_names: Iterable[str] = (), *, label: str = "--report-dir"
                     ) -> None:
    """Refuse (`InputError`) a report folder the report files `file_names` could not be written into."""
    target = Path(path).expanduser()
    existing = target
    while not existing.exists():
        if existing.is_symlink():
            raise InputError(f"{label} {target}: {existing} is a broken symbolic link")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{label} {target}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".parity-probe-", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"{label} {target}: cannot write in {existing}: {exc.strerror or exc}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    if existing == target:
        for name in file_names:
            if (target / name).is_dir():
                raise InputError(f"{label} {target}: {target / name} is a folder; a report file cannot replace it")


__all__ = ["check_report_dir"]
