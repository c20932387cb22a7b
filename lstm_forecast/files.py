"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Every cache file, bundle file and `--output` goes through here: write to a temp file in the
same directory (so the rename cannot cross file systems), fsync it, then `os.replace`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from lstm_forecast.errors import ForecastError

TEMP_PREFIX = ".tmp-"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private files (0600/0700); finished files get the usual permissions.
FILE_MODE = 0o666 & ~_current_umask()
DIR_MODE = 0o777 & ~_current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; on any failure the old file is left as it was."""
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise ForecastError(f"cannot write {path}: {_reason(exc)}") from exc
    try:
        os.chmod(tmp_name, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise ForecastError(f"cannot write {path}: {_reason(exc)}") from exc
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (LF line endings as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def make_temp_dir(parent: Path, what: str) -> Path:
    """A fresh hidden temp directory in `parent` (created if needed), to be published whole later."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent))
    except OSError as exc:
        raise ForecastError(f"cannot create {what} in {parent}: {_reason(exc)}") from None


def free_name(parent: Path, name: str) -> str:
    """`name`, or `name-2`, `name-3`... when taken: two runs finishing in the same millisecond must not
    overwrite each other, and the suffix keeps time-stamped names sorting by time."""
    candidate, number = name, 1
    while (parent / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Make a finished temp directory durable and rename it into place: readers see all of it or none."""
    for path in tmp_dir.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    tmp_dir.chmod(DIR_MODE)
    tmp_dir.rename(final_dir)
    fsync_dir(final_dir.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (best effort: not every OS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return exc.strerror or str(exc)
