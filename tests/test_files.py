"""Bounded reads and atomic writes: special files are never read unbounded nor replaced, symlinks stay
links, and a message quotes only a short, plain rendering of a bad value."""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from lstm_forecast import files
from lstm_forecast.errors import ForecastError, UsageError, quote
from lstm_forecast.files import append_line, atomic_write_bytes, atomic_write_text, bounded_lines, read_bounded


def test_read_bounded_reads_a_regular_file_up_to_the_limit(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"a" * 10)
    assert read_bounded(path, 10, "a config file") == b"a" * 10
    with pytest.raises(UsageError, match=r"x.yaml: 10 bytes, more than a config file can be \(9 bytes at most\)"):
        read_bounded(path, 9, "a config file", UsageError)
    with pytest.raises(FileNotFoundError):  # each caller says what a missing file means
        read_bounded(tmp_path / "nope", 10, "a config file")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_read_bounded_refuses_what_is_not_a_regular_file(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)  # nobody writes to it: a plain open() would block forever
    elif special == "folder":
        path = tmp_path
    with pytest.raises(ForecastError, match="not a regular file; expected a config file"):
        read_bounded(path, 1 << 20, "a config file")


def test_writing_to_a_fifo_writes_into_it_and_keeps_it(tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    # The writer needs the reader to have opened the FIFO: retry the non-blocking open until it has.
    for _ in range(500):
        try:
            atomic_write_text(fifo, "forecast\n")
            break
        except ForecastError as exc:
            assert "nothing is reading from it" in str(exc)
            threading.Event().wait(0.01)
    reader.join(10)
    assert received == [b"forecast\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_fifo_without_a_reader_fails_at_once(tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    with pytest.raises(ForecastError, match="nothing is reading from it"):
        atomic_write_bytes(fifo, b"x")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and list(tmp_path.iterdir()) == [fifo]


def test_dev_null_stays_a_device(tmp_path):
    atomic_write_bytes(Path("/dev/null"), b"nothing to see")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_a_folder_is_never_replaced(tmp_path):
    folder = tmp_path / "out.json"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(ForecastError, match="not a regular file"):
        atomic_write_bytes(folder, b"x")
    assert (folder / "inside").is_dir()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x" * 1000, "'" + "x" * 37 + "…'"),
        (np.float64("inf"), "inf"),
        (np.int64(3), "3"),
        (1e308, "1e+308"),
        (10**5000, "an integer of about 5000 digits"),
        (None, "nothing"),
        ([[[[1]]]] * 1000, "[[[[...]]], [[[...]]], [[[...]]], [[[..…"),
    ],
    ids=["long-string", "numpy-inf", "numpy-int", "float", "5000-digits", "none", "nested-list"],
)
def test_quote_is_short_and_plain(value, shown):
    assert quote(value) == shown and len(quote(value)) <= 40


def test_shorten_never_passes_control_characters_to_the_terminal():
    from lstm_forecast.errors import shorten

    assert shorten("\x1b[31mVolume\x1b[0m") == "\\x1b[31mVolume\\x1b[0m"
    assert shorten("plain text") == "plain text" and shorten("x" * 50, 10) == "x" * 9 + "…"


def test_an_appended_line_is_written_whole_however_the_kernel_splits_the_write(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))  # 3 bytes a call
    append_line(path, '{"ticker": "AAA"}\n', ForecastError, "a results file")
    append_line(path, '{"ticker": "BBB"}\n', ForecastError, "a results file")
    assert path.read_text() == '{"ticker": "AAA"}\n{"ticker": "BBB"}\n'


def test_appending_to_a_full_disk_is_one_line_and_keeps_what_was_there(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_line(path, "first\n", ForecastError, "a results file")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", full)
    with pytest.raises(ForecastError, match=r"results.jsonl: cannot append to a results file: .*[Nn]o space"):
        append_line(path, "second\n", ForecastError, "a results file")
    assert path.read_text() == "first\n"


def test_a_skipped_long_line_counts_every_byte_against_the_total_limit():
    lines = list(bounded_lines(io.BytesIO(b"x" * 100 + b"\nshort\n"), total_limit=40, line_limit=10))
    assert lines == [None, None]  # the long line, then "the rest was not read": the limit held
