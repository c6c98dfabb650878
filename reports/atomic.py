"""Atomic file writing: a report file is either the old one or the whole new one, never half of either.

Each file is written to a temporary name in its own directory (so `os.replace` is a rename on the same file
system), flushed and fsynced, then renamed over the target. `write_all_atomic` writes every temporary file
before it renames any, so a failure while writing leaves the previous set untouched and no temporary files
behind. The renames of one set run under an exclusive lock on the folder (flock on the folder itself, so no
lock file is left behind) and with SIGINT/SIGTERM held until they are done: two runs writing into the same
folder at once leave one complete set, and an interrupt leaves either the old set or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from percepiano_parity.core.interrupts import deferred_signals

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: renames stay atomic one by one, sets are not locked
    fcntl = None  # type: ignore[assignment]

_DEFAULT_MODE = 0o644


def _as_bytes(data: str | bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    raise TypeError(f"can only write str or bytes, not {type(data).__name__}")


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable where the platform allows opening a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, created: list[Path] | None = None) -> Path:
    """Write `data` to a new temporary file beside `path`; return its path. Nothing is left on failure.

    `created` gets the temporary path as soon as the file exists, so a caller interrupted right after this
    returns still knows what to remove."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    if created is not None:
        created.append(tmp)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            mode = path.stat().st_mode & 0o777 if path.exists() else _DEFAULT_MODE
            os.chmod(tmp, mode)
        except OSError:
            pass
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


@contextlib.contextmanager
def locked_folders(folders: Iterable[Path]) -> Iterator[None]:
    """Hold an exclusive lock on each folder (in a fixed order, so two writers cannot deadlock)."""
    handles: list[int] = []
    try:
        for folder in sorted({str(f) for f in folders}):
            if fcntl is None:
                break
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            handles.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits for the other writer; a Ctrl-C still ends the wait
        yield
    finally:
        for fd in handles:
            os.close(fd)  # closing releases the lock


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Replace `path` with `data` (str is written as UTF-8) atomically; return the path."""
    target = Path(path)
    tmp = _write_temp(target, _as_bytes(data))
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    return target


def write_all_atomic(files: Mapping[str | os.PathLike[str], str | bytes]) -> list[Path]:
    """Write a set of files: all temporaries first, then one rename each. Return the paths in order.

    Every value must already be rendered; if converting or writing any of them fails, no target is touched
    and every temporary file is removed, also when SIGINT/SIGTERM interrupts the writing. The renames run
    under the folders' lock with those signals held, so another writer or an interrupt never sees half a
    set. (A rename on one directory does not fail in practice.)
    """
    payload = [(Path(p), _as_bytes(data)) for p, data in files.items()]  # fails before anything is written
    created: list[Path] = []  # temporaries that exist and are not renamed yet
    try:
        temps = [(_write_temp(target, data, created), target) for target, data in payload]
        with locked_folders(target.parent for _, target in temps), deferred_signals():
            for tmp, target in temps:
                os.replace(tmp, target)
                created.remove(tmp)
    finally:
        for tmp in created:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for directory in dict.fromkeys(target.parent for target, _ in payload):
        _fsync_dir(directory)
    return [target for target, _ in payload]
