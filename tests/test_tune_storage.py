"""tune's study storage against hostile files and a second process: each damaged, special or foreign study file is
one `Error:` line naming it, read within a bound and left exactly as it was; a study refused for another objective
is left byte-identical; a database in memory is a usage error; and a second `tune` on a study another process is
searching is refused with one line while the first goes on and keeps every trial. Real files, real CLI children
under a memory limit (conftest.run_cli_limited)."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import error_line, run_cli_limited
from test_tune import run_cli, trial_states, tune_args
from test_tune import workdir as workdir  # the AR series, the tiny space and config

from lstm_forecast import tune

STUDY = "s"
JOURNAL_LINE = b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n'


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry of `folder` but the lock: a regular file by its bytes' hash, a link by its target, anything
    else by its kind. Never opens a special file."""
    entries = {}
    for path in sorted(folder.iterdir()):
        mode = os.lstat(path).st_mode
        if path.name == tune.LOCK_FILE:
            continue
        if stat.S_ISLNK(mode):
            entries[path.name] = f"link to {os.readlink(path)}"
        elif stat.S_ISREG(mode):
            entries[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[path.name] = f"mode {stat.S_IFMT(mode):o}"
    return entries


def one_error(child: subprocess.CompletedProcess) -> str:
    """A failed child printed one `Error:` line and nothing else (no traceback, nothing on stdout)."""
    assert child.stdout == "", child.stdout
    lines = child.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), child.stderr
    return lines[0]


def garbage(folder: Path) -> None:
    (folder / tune.SQLITE_FILE).write_bytes(bytes(range(256)) * 40)


def sqlite_header_then_garbage(folder: Path) -> None:
    (folder / tune.SQLITE_FILE).write_bytes(tune.SQLITE_HEADER + b"\xff" * 8000)


def foreign_sqlite(folder: Path) -> None:
    import sqlite3

    with sqlite3.connect(folder / tune.SQLITE_FILE) as db:
        db.execute("CREATE TABLE prices (day TEXT, close REAL)")
    db.close()


def empty_database(folder: Path) -> None:
    (folder / tune.SQLITE_FILE).write_bytes(b"")


def directory(folder: Path) -> None:
    (folder / tune.SQLITE_FILE).mkdir()


def fifo_journal(folder: Path) -> None:
    os.mkfifo(folder / tune.JOURNAL_FILE)


def dev_zero_journal(folder: Path) -> None:
    (folder / tune.JOURNAL_FILE).symlink_to("/dev/zero")


def dev_zero_database(folder: Path) -> None:
    (folder / tune.SQLITE_FILE).symlink_to("/dev/zero")


def dangling_journal(folder: Path) -> None:
    (folder / tune.JOURNAL_FILE).symlink_to(folder / "nowhere.log")


def journal_bad_line(folder: Path) -> None:
    (folder / tune.JOURNAL_FILE).write_bytes(JOURNAL_LINE + b"not json at all\n")


def journal_cut_off(folder: Path) -> None:
    (folder / tune.JOURNAL_FILE).write_bytes(JOURNAL_LINE + b'{"op_code":4,"work')


def journal_unknown_operation(folder: Path) -> None:
    (folder / tune.JOURNAL_FILE).write_bytes(b'{"op_code":99,"worker_id":"w"}\n')


def journal_with_a_huge_trial(folder: Path) -> None:
    """More operations on one trial than a study writes: Optuna's replay of them grows with their square."""
    step = '{"op_code":7,"worker_id":"w","trial_id":0,"step":%d,"intermediate_value":0.5}\n'
    lines = [step % i for i in range(tune.MAX_TRIAL_OPERATIONS + 1)]
    (folder / tune.JOURNAL_FILE).write_bytes(JOURNAL_LINE + b'{"op_code":4,"worker_id":"w","study_id":0}\n'
                                             + "".join(lines).encode())


def empty_journal(folder: Path) -> None:
    (folder / tune.JOURNAL_FILE).write_bytes(b"")


def journal_lock_directory(folder: Path) -> None:
    """Optuna's append lock as a directory: Optuna would wait for it forever."""
    (folder / tune.JOURNAL_FILE).write_bytes(JOURNAL_LINE)
    (folder / f"{tune.JOURNAL_FILE}{tune.JOURNAL_LOCK_SUFFIX}").mkdir()


def lock_linked_to_the_study(folder: Path) -> None:
    (folder / tune.SQLITE_FILE).write_bytes(b"the study, which a lock that truncates must not reach")
    (folder / tune.LOCK_FILE).symlink_to(tune.SQLITE_FILE)


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {  # how to make it, what the error names
    "garbage bytes": (garbage, "not a SQLite database"),
    "a SQLite header then garbage": (sqlite_header_then_garbage, tune.SQLITE_FILE),
    "a SQLite database of something else": (foreign_sqlite, "without Optuna's tables"),
    "an empty database": (empty_database, "empty"),
    "a directory": (directory, "not a regular file"),
    "a FIFO journal": (fifo_journal, "not a regular file"),
    "a journal linked to /dev/zero": (dev_zero_journal, "not a regular file"),
    "a database linked to /dev/zero": (dev_zero_database, "not a regular file"),
    "a journal linked to nothing": (dangling_journal, "does not exist"),
    "a journal with a bad line": (journal_bad_line, "line 2 is not an Optuna journal operation"),
    "a journal cut off mid-line": (journal_cut_off, "last line is cut off"),
    "a journal Optuna cannot replay": (journal_unknown_operation, "Optuna cannot read it"),
    "an empty journal": (empty_journal, "empty"),
    "a journal with a trial of too many operations": (journal_with_a_huge_trial, "more than a study of ours writes"),
    "a lock linked to the study": (lock_linked_to_the_study, "is not a regular file"),
    "a directory as the journal's append lock": (journal_lock_directory, "is not Optuna's journal lock"),
}


# The files that, read carelessly, would block (a FIFO) or fill memory (/dev/zero, a journal Optuna replays in
# quadratic time): each in a real CLI child under a memory and time limit.
IN_A_CHILD = {"a FIFO journal", "a journal linked to /dev/zero", "a database linked to /dev/zero",
              "a journal with a trial of too many operations"}


# --jobs 2 also takes the road that moves a SQLite study into a journal: the file is checked before it is read.
CASES = [(kind, "1") for kind in HOSTILE] + [(kind, "2") for kind in ("garbage bytes", "a directory",
                                                                     "a SQLite database of something else")]


@pytest.mark.parametrize(("kind", "jobs"), CASES)
def test_a_hostile_study_file_is_one_error_line_and_left_as_it_was(workdir, kind, jobs):
    make, named = HOSTILE[kind]
    folder = workdir / "runs" / "tune" / STUDY
    folder.mkdir(parents=True)
    make(folder)
    before = snapshot(folder)
    lock_target = (folder / tune.LOCK_FILE).resolve() if (folder / tune.LOCK_FILE).is_symlink() else None
    target_bytes = lock_target.read_bytes() if lock_target else None
    arguments = tune_args("--trials", "2", "--study", STUDY, "--jobs", jobs)
    if kind in IN_A_CHILD:  # what could hang or fill memory if it were read: a real child under the limits
        child = run_cli_limited(arguments, workdir)
        code, line = child.returncode, one_error(child)
    else:  # in this process, as the CLI runs: seconds saved per case, the same one line checked
        result = run_cli(*arguments)
        assert result.stdout == "", result.stdout
        code, line = result.exit_code, error_line(result)
    assert code == 1 and named in line and str(Path("runs", "tune", STUDY)) in line, line
    assert snapshot(folder) == before
    if lock_target is not None:
        assert lock_target.read_bytes() == target_bytes


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///file:x?mode=memory&uri=true"])
def test_a_study_in_memory_is_a_usage_error(workdir, url):
    result = run_cli(*tune_args("--trials", "1", "--storage", url))
    assert result.exit_code == 2 and "in memory" in error_line(result)


def make_study(workdir: Path, journal: bool) -> Path:
    """A real study of two trials in the study folder, as SQLite or moved into a journal (as --jobs 2 does)."""
    made = run_cli(*tune_args("--trials", "2", "--study", STUDY))
    assert made.exit_code == 0, made.output
    folder = workdir / "runs" / "tune" / STUDY
    if journal:
        tune.move_to_journal(folder)
        assert not (folder / tune.SQLITE_FILE).exists()
    return folder


# A SQLite study searched alone, and a journal with workers: the two storages and the two roads to them.
@pytest.mark.parametrize(("journal", "jobs"), [(False, "1"), (True, "2")])
def test_a_study_refused_for_another_objective_is_left_byte_identical(workdir, journal, jobs):
    folder = make_study(workdir, journal)
    before = snapshot(folder)
    child = run_cli_limited(tune_args("--trials", "4", "--study", STUDY, "--objective", "all", "--jobs", jobs),
                            workdir)
    assert child.returncode == 2 and "different --objective" in one_error(child)
    assert snapshot(folder) == before
    # The same study under its own objective still resumes, its two trials kept.
    resumed = run_cli(*tune_args("--trials", "3", "--study", STUDY, "--json"))
    assert resumed.exit_code == 0, resumed.output
    assert '"counted": 3' in resumed.stdout and '"this_run": 1' in resumed.stdout


def test_a_journal_append_lock_left_by_a_killed_process_is_cleared(workdir):
    """A process killed while appending left Optuna's lock link behind: under the study's lock it is stale, so the
    next tune removes it rather than waiting for Optuna's 30 s grace period, and resumes the study."""
    folder = make_study(workdir, journal=True)
    stale = folder / f"{tune.JOURNAL_FILE}{tune.JOURNAL_LOCK_SUFFIX}"
    stale.symlink_to(folder / tune.JOURNAL_FILE)
    resumed = run_cli(*tune_args("--trials", "3", "--study", STUDY, "--jobs", "2", "--json"))
    assert resumed.exit_code == 0, resumed.output
    assert '"counted": 3' in resumed.stdout and not os.path.lexists(stale)


@pytest.mark.slow
def test_a_second_tune_on_a_study_being_searched_is_refused_and_the_first_keeps_every_trial(workdir):
    """The second process (--jobs 2, which would move the SQLite study into a journal) is refused having opened
    nothing; the first goes on searching, then stops at Ctrl-C with every finished trial in its study."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    slow = ["--set", "train.epochs=15", "--set", "train.patience=15"]
    first = subprocess.Popen([sys.executable, "-m", "lstm_forecast", *tune_args("--trials", "500", "--study", STUDY),
                              *slow], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    database = workdir / "runs" / "tune" / STUDY / tune.SQLITE_FILE

    def finished() -> int:
        return sum(state in ("COMPLETE", "PRUNED") for state in trial_states(database))

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while first.poll() is None and time.monotonic() < deadline and finished() < count:
            time.sleep(0.05)
        assert first.poll() is None and finished() >= count, "the first tune did not get on with its trials"

    try:
        wait_for(1)
        second = run_cli_limited(tune_args("--trials", "30", "--study", STUDY, "--jobs", "2"), workdir)
        assert second.returncode == 1 and "being searched by another tune process" in one_error(second)
        seen = finished()
        wait_for(seen + 1)  # the first goes on, its study where it was
        first.send_signal(signal.SIGINT)
        _, errors = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    assert first.returncode != 0 and "tune interrupted" in errors and "unexpected" not in errors, errors
    trials = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{database}").get_trials()
    done = [trial for trial in trials if trial.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) >= seen + 1 and [trial.number for trial in trials] == list(range(len(trials)))
    assert not (database.parent / tune.JOURNAL_FILE).exists()
