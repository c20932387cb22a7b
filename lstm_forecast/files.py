"""Files in and out: bounded reads of what we are given, atomic writes of what we produce.

Reads: every input (a config, a bundle's JSON, YAML and weights) goes through `read_bounded`, which
refuses what is not a regular file (/dev/zero, a FIFO) and reads at most a limit, so a hostile or
mistaken path fails fast instead of filling memory.

Writes: every cache file, bundle file and `--output` goes through `atomic_write_bytes`: write to a
temp file in the same directory (so the rename cannot cross file systems), fsync it, then `os.replace`.
A special file given as the target (a FIFO, /dev/null, a terminal) is written in place instead: renaming
over it would replace the device node with a regular file. A symlink is followed: the file it points to
is replaced atomically and the link stays a link (as `cp` and shell redirection treat one).

Temp names carry this tool's own prefix, and temp directories a marker file, so that cleaning up
after a killed process never touches another program's files.

Every JSON document we write (bundle.json, metrics.json, evaluation.json, compare.json, `--json` output,
a forecast) is `json_text`: indented, one trailing newline, and never NaN or Infinity, which JSON lacks.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from lstm_forecast.errors import ForecastError

TEMP_PREFIX = ".tmp-lstm-forecast-"
# Inside every temp directory we create: proof that the directory is ours to remove.
TEMP_MARKER = ".lstm-forecast-temp"
READ_CHUNK = 1 << 20
CREATE_ATTEMPTS = 10


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private files (0600/0700); finished files get the usual permissions.
FILE_MODE = 0o666 & ~_current_umask()
DIR_MODE = 0o777 & ~_current_umask()


def json_text(document: object) -> str:
    """The text of a JSON file of ours (see the top); ValueError for a value that is not a finite number."""
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def read_bounded(path: Path, limit: int, what: str, error: type[ForecastError] = ForecastError) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; `error` names `what` otherwise.

    FileNotFoundError passes through, so each caller can say what a missing file means to it.
    """
    path = Path(path)
    with open_regular(path, error, what) as handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise error(f"{path}: {size:,} bytes, more than {what} can be ({limit:,} bytes at most)")
            raw = handle.read(limit + 1)  # the file may grow after fstat: stop one byte past the limit
        except OSError as exc:
            raise error(f"{path}: cannot read {what}: {_reason(exc)}") from None
    if len(raw) > limit:
        raise error(f"{path}: more than {what} can be ({limit:,} bytes at most)")
    return raw


@contextlib.contextmanager
def open_regular(path: Path, error: type[ForecastError], what: str) -> Iterator[BinaryIO]:
    """`path` open for reading, refused (`error`, naming `what`) unless it is a regular file: a FIFO never blocks
    the open (O_NONBLOCK) and a device is never read. FileNotFoundError passes through, as in `read_bounded`."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {_reason(exc)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{path}: not a regular file; expected {what}")
    with os.fdopen(fd, "rb") as handle:
        yield handle


def bounded_lines(handle: BinaryIO, total_limit: int, line_limit: int) -> Iterator[bytes | None]:
    """The lines of `handle`, each at most `line_limit` bytes (a longer one is None, and is skipped without ever
    being held whole), until `total_limit` bytes were read (the rest, if any, is one None)."""
    read = 0
    while read < total_limit:
        line = handle.readline(line_limit + 1)
        if not line:
            return
        read += len(line)
        if len(line) <= line_limit or line.endswith(b"\n"):
            yield line
            continue
        while read < total_limit and (rest := handle.readline(READ_CHUNK)):
            read += len(rest)  # counted before the test: the limit bounds every byte read, this chunk's too
            if rest.endswith(b"\n"):
                break
        yield None
    if handle.read(1):
        yield None


def append_line(path: Path, text: str, error: type[ForecastError], what: str) -> None:
    """Append `text` (one line) to the regular file `path`, creating it, and fsync it: never through a link or
    into a device, so a planted symlink cannot make us write into a file we did not create."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError as exc:
        reason = "a symbolic link" if exc.errno == errno.ELOOP else _reason(exc)
        raise error(f"{path}: cannot append to {what}: {reason}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: not a regular file; expected {what}")
        view = memoryview(text.encode("utf-8"))
        while view:  # a write may take part of the line (a disk filling up): the rest follows, or fails below
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:  # a full disk, an I/O error: one line, what was appended before is kept
        raise error(f"{path}: cannot append to {what}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def writes_in_place(path: Path) -> bool:
    """Is `path` written into rather than replaced: a FIFO, a character device (/dev/null, a terminal), or
    the very file this process's stdout or stderr goes to (`-o /dev/stdout` under `>> log`)?"""
    try:
        info = os.stat(path)  # through any links: /dev/stdout -> /proc/self/fd/1 -> the file or pipe
    except OSError:
        return False
    if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
        return True
    return any(_is_open_as(info, fd) for fd in (1, 2))


def _is_open_as(info: os.stat_result, fd: int) -> bool:
    try:
        return os.path.samestat(info, os.fstat(fd))
    except OSError:
        return False


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; on any failure the old file is left as it was.

    What `writes_in_place` names is written into, never renamed over; a symlink to a regular file has
    its target replaced and stays a link."""
    path = Path(path)
    if writes_in_place(path):
        _write_in_place(path, data)
        return
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # replace the link's target, keep the link
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ForecastError(f"cannot write {path}: not a regular file (a folder, socket or block device)")
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


def _write_in_place(path: Path, data: bytes) -> None:
    """A FIFO, a character device or our own stdout/stderr file is written to, never replaced."""
    try:
        # O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of hanging; then block for the writes.
        # O_APPEND: reopening the file stdout goes to must add to it, never overwrite what is there.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND)
    except OSError as exc:
        reason = "nothing is reading from it" if exc.errno == errno.ENXIO else _reason(exc)
        raise ForecastError(f"cannot write {path}: {reason}") from exc
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise ForecastError(f"cannot write {path}: {_reason(exc)}") from exc
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (LF line endings as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def make_temp_dir(parent: Path, what: str) -> Path:
    """A fresh hidden temp directory in `parent` (created if needed), marked as ours, to be published whole later."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=parent))
            (tmp_dir / TEMP_MARKER).touch()
            return tmp_dir
        except FileNotFoundError:
            # Another process removed the empty parent it had created (its writability check) between our
            # mkdir and mkdtemp: create it again. Once our temp dir is inside, nobody can remove it.
            if attempt == CREATE_ATTEMPTS - 1:
                raise ForecastError(f"cannot create {what} in {parent}: it keeps disappearing") from None
        except OSError as exc:
            raise ForecastError(f"cannot create {what} in {parent}: {_reason(exc)}") from None
    raise AssertionError("unreachable")


def is_our_temp_dir(path: Path) -> bool:
    """A temp directory this tool created: its own prefix and the marker inside."""
    return path.name.startswith(TEMP_PREFIX) and path.is_dir() and (path / TEMP_MARKER).is_file()


def free_name(parent: Path, name: str) -> str:
    """`name`, or `name-2`, `name-3`... when taken: two runs finishing in the same millisecond must not
    overwrite each other, and the suffix keeps time-stamped names sorting by time. Another process may
    take the name before we rename into it: see `publish_as_free_name`."""
    candidate, number = name, 1
    while (parent / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


class NameTaken(Exception):
    """Another process published a directory under the name we were about to use."""


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Make a finished temp directory durable and rename it into place: readers see all of it or none.

    The rename is the reservation: it fails when `final_dir` is already a directory with files in it
    (another process's bundle), which raises `NameTaken` and leaves `tmp_dir` as it was.
    """
    for path in tmp_dir.rglob("*"):  # a bundle's context/ folder holds files too
        if path.is_dir():
            fsync_dir(path)
            continue
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    tmp_dir.chmod(DIR_MODE)
    try:
        tmp_dir.rename(final_dir)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or (final_dir.exists() and not final_dir.is_dir()):
            raise NameTaken(str(final_dir)) from None
        raise
    # Only now: a process killed before the rename leaves a temp dir that is recognisably ours.
    (final_dir / TEMP_MARKER).unlink(missing_ok=True)
    fsync_dir(final_dir.parent)


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Put a finished temp directory in place of `final_dir`, whole: the old one is renamed aside first (marked as
    ours before the rename, so a process killed at any point leaves it to the usual clean-up of stale temp dirs:
    the marker alone does nothing to a folder without the temp prefix), and removed once the new one is in.
    Readers see the old set or the new one, never a mix of both (for an instant between the renames, neither)."""
    aside = None
    if final_dir.exists():
        aside = final_dir.parent / f"{TEMP_PREFIX}old-{final_dir.name}-{os.getpid()}-{time.monotonic_ns()}"
        (final_dir / TEMP_MARKER).touch()
        final_dir.rename(aside)
    try:
        publish_dir(tmp_dir, final_dir)
    except BaseException:
        if aside is not None and not final_dir.exists():  # the new set never got in: the old one goes back
            aside.rename(final_dir)
            (final_dir / TEMP_MARKER).unlink(missing_ok=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def publish_as_free_name(tmp_dir: Path, parent: Path, name: str, fill: Callable[[Path], None]) -> Path:
    """Publish `tmp_dir` under the first free name (`free_name`) in `parent`; returns the directory it became.

    `fill(final_dir)` writes the files, which may name their directory: when another process publishes under
    that name between our choosing and renaming (same ticker, same millisecond), the next name is chosen and
    `fill` writes them again."""
    while True:
        final_dir = parent / free_name(parent, name)
        fill(final_dir)
        with contextlib.suppress(NameTaken):
            publish_dir(tmp_dir, final_dir)
            return final_dir


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
