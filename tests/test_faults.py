"""Faults from outside: Ctrl-C, SIGTERM or SIGHUP in the middle of training, scoring, saving, a backtest or a
comparison, a kill in the middle of a write, two fetches of
one ticker at once, a full disk. Whatever happens, a cache or bundle is the old one, a whole new one, or
none; never a partial one.

Ctrl-C, kills and concurrent fetches need real processes (marked slow: a child spends about two seconds
importing its libraries); the rest run in-process. A child that must stop at a precise point (in the
middle of writing a file) imports the package, blocks that one step, and is killed from here.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import (
    TICKER,
    TINY_CONFIG,
    TINY_OVERRIDES,
    build_prices,
    error_line,
    file_digests,
    temp_leftovers,
)
from typer.testing import CliRunner

from lstm_forecast import bundle, data, files, train
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.prices import prices_sha256, prices_to_csv

TESTS_DIR = Path(__file__).resolve().parent
CHILD_TIMEOUT_S = 90


def child_env() -> dict[str, str]:
    """The environment of a child process: conftest importable, no settings inherited from the caller."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LSTM_FORECAST_")}
    return env | {"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])}


@pytest.fixture
def spawn(tmp_path: Path):
    """Start `python ARGS...` in tmp_path, stderr to a file; whatever is still running at the end is killed."""
    children: list[subprocess.Popen] = []

    def start(*args: str, stderr: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        with (tmp_path / stderr).open("wb") as stream:
            child = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env or child_env(),
                                     stdout=subprocess.PIPE, stderr=stream)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


def wait_for(condition: Callable[[], bool], child: subprocess.Popen, what: str) -> None:
    """Poll until `condition()` holds; fail (killing the child) if the child exits or takes too long first."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not condition():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child never reached {what} (exit code {child.wait()})")
        time.sleep(0.05)


def tiny_config_training(epochs: int) -> dict[str, Any]:
    """TINY_CONFIG training for `epochs` epochs, with no early stop before them."""
    return TINY_CONFIG | {"train": TINY_CONFIG["train"] | {"epochs": epochs, "patience": epochs}}


def write_cache(folder: Path, prices: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TICKER}.csv"
    path.write_bytes(prices_to_csv(prices))
    return path


# --- Ctrl-C in the middle of `train` --------------------------------------------------------------

# Rich draws the progress bar live only on a terminal; these make it draw into the stderr file too, so
# the test can see epochs finish without reaching into the process.
LIVE_PROGRESS = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200"}
MANY_EPOCHS = 100_000


@pytest.mark.slow
def test_ctrl_c_in_the_middle_of_training_saves_the_best_epoch_and_exits_130(tmp_path, spawn):
    write_cache(tmp_path / "data", build_prices(260))
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(tiny_config_training(MANY_EPOCHS)))
    stderr = tmp_path / "stderr.txt"
    argv = ["train", "-t", TICKER, "-c", "long.yaml", "--data-dir", "data", "--runs-dir", "runs", "--json"]
    child = spawn("-m", "lstm_forecast", *argv, stderr=stderr.name, env=child_env() | LIVE_PROGRESS)

    def epochs_done() -> int:
        done = re.findall(rf"(\d+)/{MANY_EPOCHS}", stderr.read_text(errors="replace"))
        return max((int(count) for count in done), default=0)

    wait_for(lambda: epochs_done() >= 2, child, "its second epoch")
    child.send_signal(signal.SIGINT)
    stdout, _ = child.communicate(timeout=CHILD_TIMEOUT_S)

    assert child.returncode == 130
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr.read_text())  # the terminal codes of the live bar
    assert text.splitlines()[-1].startswith("Error: training interrupted; the best epoch so far was saved to runs/SYN/")
    assert "Traceback" not in text
    document = json.loads(stdout)
    run_dir = tmp_path / document["run_dir"]
    loaded = bundle.load_bundle(run_dir)
    history = pd.read_csv(run_dir / "history.csv")
    assert document["interrupted"] and loaded.training["interrupted"]
    assert 2 <= document["epochs_run"] == len(history) < MANY_EPOCHS
    assert loaded.training["best_epoch"] == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert (run_dir / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert bundle.list_runs(tmp_path / "runs") == [run_dir]
    assert temp_leftovers(tmp_path) == []


# --- SIGKILL in the middle of a write -------------------------------------------------------------

BLOCKED_BUNDLE_WRITE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from conftest import TICKER, TINY_OVERRIDES, build_prices
    from lstm_forecast import plots, train
    from lstm_forecast.config import load_config

    runs_dir, ready = Path(sys.argv[1]), Path(sys.argv[2])

    def half_written_loss_curve(*args, **kwargs):  # the last file written into the temp bundle
        Path(args[-1]).write_bytes(b"half a PNG")
        ready.touch()
        time.sleep(600)

    plots.loss_curve = half_written_loss_curve
    train.train_run(load_config(None, TINY_OVERRIDES), TICKER, build_prices(260), runs_dir)
""")


@pytest.mark.slow
def test_a_kill_while_saving_a_bundle_leaves_no_run_and_the_next_save_cleans_up(tmp_path, spawn):
    runs_dir, ready = tmp_path / "runs", tmp_path / "ready"
    child = spawn("-c", BLOCKED_BUNDLE_WRITE, str(runs_dir), str(ready), stderr="err")
    wait_for(ready.exists, child, "the loss-curve write")
    child.kill()
    child.wait(CHILD_TIMEOUT_S)

    (leftover,) = (runs_dir / TICKER).iterdir()
    assert leftover.name.startswith(files.TEMP_PREFIX) and (leftover / "model.safetensors").is_file()
    assert bundle.list_runs(runs_dir) == []
    with pytest.raises(ForecastError, match="no trained runs in"):
        bundle.find_run(runs_dir)

    # The next save removes the dead process's temp dir once it is stale (a young one may be another
    # process still writing), and writes a whole bundle.
    an_hour_ago = time.time() - bundle.STALE_TEMP_AGE_S - 1
    os.utime(leftover, (an_hour_ago, an_hour_ago))
    outcome = train.train_run(load_config(None, TINY_OVERRIDES), TICKER, build_prices(260), runs_dir)
    assert list((runs_dir / TICKER).iterdir()) == [outcome.run_dir]
    assert bundle.load_bundle(outcome.run_dir).ticker == TICKER


BLOCKED_CACHE_WRITE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from lstm_forecast import data

    source, data_dir, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    def blocked_fsync(fd):  # the new prices are in the temp file, not yet renamed over the cache
        ready.touch()
        time.sleep(600)

    os.fsync = blocked_fsync
    data.import_csv(source, data_dir, "SYN")
""")


@pytest.mark.slow
def test_a_kill_while_writing_the_cache_leaves_the_old_one_and_the_lock_free(tmp_path, spawn, monkeypatch):
    old, new = build_prices(50, seed=1), build_prices(80, seed=2)
    data.import_csv(write_cache(tmp_path / "old", old), tmp_path / "data", TICKER)
    before = file_digests(tmp_path / "data")
    source = write_cache(tmp_path / "new", new)
    ready = tmp_path / "ready"
    child = spawn("-c", BLOCKED_CACHE_WRITE, str(source), "data", str(ready), stderr="err")
    wait_for(ready.exists, child, "the cache write")
    child.kill()  # while it holds the cache's lock, with a temp file half written
    child.wait(CHILD_TIMEOUT_S)

    after = file_digests(tmp_path / "data")
    (temp_file,) = temp_leftovers(tmp_path / "data")
    del after[temp_file]
    assert after == before
    pd.testing.assert_frame_equal(data.read_cache(tmp_path / "data", TICKER), old, check_freq=False)
    # The kernel released the dead process's lock: the next import does not wait for it, and the stale
    # temp file is never mistaken for the cache.
    monkeypatch.setattr(data, "LOCK_TIMEOUT_S", 5)
    data.import_csv(source, tmp_path / "data", TICKER)
    pd.testing.assert_frame_equal(data.read_cache(tmp_path / "data", TICKER), new, check_freq=False)
    assert list((tmp_path / "data").glob("*.lock")) == []  # the lock file the kill left was taken and removed


def test_a_sidecar_left_stale_by_a_kill_is_ignored(tmp_path, fake_yahoo):
    """Killed between writing the CSV and its sidecar (or a CSV replaced by hand): the sidecar no longer
    describes the cached rows, and must not decide what the next fetch downloads."""
    prices = build_prices(60)
    fake_yahoo.prices = prices
    data.update_cache(tmp_path, TICKER, start=prices.index[20].date())  # sidecar: requested from day 20
    write_cache(tmp_path, prices)  # the new CSV (from day 0) got in, its sidecar did not
    summary = data.update_cache(tmp_path, TICKER, start=prices.index[10].date())
    # The cache already starts before day 10: an update, not a download of days 10.. over days 0..9.
    assert (summary.mode, summary.rows, summary.first) == ("unchanged", 60, prices.index[0].date())
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, TICKER), prices, check_freq=False)


# --- two fetches of one ticker at once ------------------------------------------------------------

SLOW_YAHOO_FETCH = textwrap.dedent("""
    import sys, time
    import yfinance
    from conftest import FakeYahoo, build_prices
    from lstm_forecast.cli import main

    fake = FakeYahoo()
    fake.prices = build_prices(300)

    def slow_history(self, *args, **kwargs):  # slow enough for the other process to arrive meanwhile
        time.sleep(0.5)
        return fake.history(self, **kwargs)

    yfinance.Ticker.history = slow_history
    main()
""")


@pytest.mark.slow
def test_two_fetches_of_one_ticker_at_once_both_finish_with_a_valid_cache(tmp_path, spawn):
    argv = ["fetch", "-t", TICKER, "--data-dir", "data"]
    children = [spawn("-c", SLOW_YAHOO_FETCH, *argv, stderr=f"err{number}") for number in (1, 2)]
    outputs = [child.communicate(timeout=CHILD_TIMEOUT_S)[0].decode() for child in children]

    assert [child.returncode for child in children] == [0, 0], outputs
    # The lock serialises them: one downloads everything, the other finds it all there.
    modes = sorted(re.search(r"\(\d+ new, (\w+)\)", output).group(1) for output in outputs)
    assert modes == ["full", "unchanged"]
    cached = data.read_cache(tmp_path / "data", TICKER)
    pd.testing.assert_frame_equal(cached, build_prices(300), check_freq=False)
    meta = json.loads((tmp_path / "data" / f"{TICKER}.meta.json").read_text())
    assert meta["sha256"] == prices_sha256(cached) and meta["rows"] == 300
    assert temp_leftovers(tmp_path) == []
    assert list((tmp_path / "data").glob("*.lock")) == []


# --- a full disk ----------------------------------------------------------------------------------


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def cache_and_new_csv(clean_workdir: Path) -> Path:
    """A cache of SYN in ./data (with its sidecar) and a different CSV, new.csv, to import over it."""
    data.import_csv(write_cache(clean_workdir / "old", build_prices(50, seed=1)), clean_workdir / "data", TICKER)
    write_cache(clean_workdir / "new", build_prices(80, seed=2)).rename(clean_workdir / "new.csv")
    return clean_workdir


def test_disk_full_while_writing_the_cache_leaves_it_intact(cache_and_new_csv, monkeypatch):
    before = file_digests(cache_and_new_csv)
    monkeypatch.setattr(files.os, "fsync", no_space)  # the data is in the temp file, not yet renamed
    result = CliRunner().invoke(app, ["fetch", "-t", TICKER, "--from-csv", "new.csv", "--data-dir", "data"])
    assert result.exit_code == 1
    assert error_line(result) == f"Error: cannot write data/{TICKER}.csv: no space left on device"
    assert file_digests(cache_and_new_csv) == before
    assert temp_leftovers(cache_and_new_csv) == []


def test_disk_full_at_the_sidecar_keeps_the_new_prices_without_a_stale_sidecar(cache_and_new_csv, monkeypatch):
    real_mkstemp = tempfile.mkstemp

    def no_space_for_json(*args: Any, suffix: str = "", **kwargs: Any) -> Any:
        if suffix == ".json":
            no_space()
        return real_mkstemp(*args, suffix=suffix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", no_space_for_json)
    result = CliRunner().invoke(app, ["fetch", "-t", TICKER, "--from-csv", "new.csv", "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert f"cannot write data/{TICKER}.meta.json: no space left on device; the cache is usable without it" in warning
    pd.testing.assert_frame_equal(data.read_cache(Path("data"), TICKER), build_prices(80, seed=2), check_freq=False)
    assert not (cache_and_new_csv / "data" / f"{TICKER}.meta.json").exists()
    assert temp_leftovers(cache_and_new_csv) == []


def test_disk_full_while_saving_a_bundle_leaves_no_run(clean_workdir, tiny_config, monkeypatch):
    write_cache(clean_workdir / "data", build_prices(260))
    monkeypatch.setattr(bundle.os, "fsync", no_space)
    result = CliRunner().invoke(app, ["train", "-t", TICKER, "-c", "tiny.yaml", "--data-dir", "data"])
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(f"Error: cannot write the run bundle runs/{TICKER}/") and "No space left" in line
    assert list((clean_workdir / "runs" / TICKER).iterdir()) == []


# --- Ctrl-C, SIGTERM and SIGHUP at every phase of `train`, `evaluate` and `compare` ------------------

# The real CLI in a child process that sends itself real signals at a chosen point: after an epoch (an
# EpochBars or FoldBar update), while the test period is scored, or while the bundle is being saved
# (the loss curve is its last file). A point in the code, not a moment in time, so nothing here is timed.
SIGNALS_AT_A_PHASE = textwrap.dedent("""
    import os, signal, sys
    from lstm_forecast import plots, progress, train
    from lstm_forecast.cli import main

    phase, names, argv = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
    sent = []

    def send():
        if not sent:  # once, however often the phase's function is called
            sent.append(True)
            for name in names:
                os.kill(os.getpid(), getattr(signal, name))

    def before(real):
        def call(*args, **kwargs):
            send()
            return real(*args, **kwargs)
        return call

    def after_an_epoch(real, epoch):
        def update(self, *args, **kwargs):
            real(self, *args, **kwargs)
            record = args[0].record if phase == "backtest" else args[0]  # a FoldProgress event
            if record is not None and record.epoch == epoch:
                send()
        return update

    if phase == "training":
        progress.EpochBars.update = after_an_epoch(progress.EpochBars.update, 2)
    elif phase == "comparing":
        progress.EpochBars.update = after_an_epoch(progress.EpochBars.update, 1)
    elif phase == "backtest":
        progress.FoldBar.update = after_an_epoch(progress.FoldBar.update, 1)
    elif phase == "scoring":
        train.period_forecasts = before(train.period_forecasts)
    elif phase == "saving":
        plots.loss_curve = before(plots.loss_curve)
    sys.argv = ["lstm-forecast", *argv]
    main()
""")
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}


def train_with_signals(tmp_path: Path, spawn, phase: str, signals: str, epochs: int) -> subprocess.Popen:
    write_cache(tmp_path / "data", build_prices(260))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config_training(epochs)))
    argv = ["train", "-t", TICKER, "-c", "config.yaml", "--data-dir", "data", "--runs-dir", "runs", "--json"]
    child = spawn("-c", SIGNALS_AT_A_PHASE, phase, signals, *argv, stderr="stderr.txt")
    child.communicate(timeout=CHILD_TIMEOUT_S)
    return child


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "name"), [
    ("training", "SIGTERM"), ("training", "SIGHUP"),
    ("scoring", "SIGINT"), ("scoring", "SIGTERM"),
    ("saving", "SIGINT"), ("saving", "SIGHUP"),
])
def test_a_stop_signal_from_the_first_epoch_to_the_saved_bundle_keeps_the_run(tmp_path, spawn, phase, name):
    epochs = MANY_EPOCHS if phase == "training" else 2
    child = train_with_signals(tmp_path, spawn, phase, name, epochs)

    assert child.returncode == EXIT_CODES[name]
    lines = (tmp_path / "stderr.txt").read_text().splitlines()
    assert lines[-1].startswith("Error: training interrupted; the best epoch so far was saved to runs/SYN/")
    assert "Traceback" not in "\n".join(lines)
    (run_dir,) = bundle.list_runs(tmp_path / "runs")
    loaded = bundle.load_bundle(run_dir)
    assert loaded.training["epochs_run"] == 2 == len(pd.read_csv(run_dir / "history.csv"))
    # Stopped during training, the run says so; stopped after it, the run was complete and says that.
    assert loaded.training["interrupted"] is (phase == "training")
    assert (run_dir / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert temp_leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, spawn):
    child = train_with_signals(tmp_path, spawn, "scoring", "SIGINT,SIGINT", 2)
    assert child.returncode == 130
    assert (tmp_path / "stderr.txt").read_text().splitlines()[-1] == "Error: interrupted"
    assert bundle.list_runs(tmp_path / "runs") == []
    assert temp_leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_second_sigterm_ends_the_process_at_once(tmp_path, spawn):
    child = train_with_signals(tmp_path, spawn, "scoring", "SIGTERM,SIGTERM", 2)
    assert child.returncode == -signal.SIGTERM  # ended by the signal itself, as without a handler
    assert bundle.list_runs(tmp_path / "runs") == []


@pytest.mark.slow
def test_sigterm_in_the_backtest_saves_the_finished_folds(tmp_path, spawn, tiny_run):
    run_dir = tmp_path / "runs" / TICKER / tiny_run.name
    shutil.copytree(tiny_run, run_dir)
    write_cache(tmp_path / "data", build_prices(260))
    argv = ["evaluate", "--run", str(run_dir), "--folds", "3", "--data-dir", "data", "--json"]
    child = spawn("-c", SIGNALS_AT_A_PHASE, "backtest", "SIGTERM", *argv, stderr="stderr.txt")
    stdout, _ = child.communicate(timeout=CHILD_TIMEOUT_S)

    assert child.returncode == 143
    last = (tmp_path / "stderr.txt").read_text().splitlines()[-1]
    assert last == f"Error: backtest interrupted; the evaluation of the finished folds was saved to {run_dir}"
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation == json.loads(stdout)
    assert evaluation["backtest"]["interrupted"] and evaluation["backtest"]["completed"] == 1


@pytest.mark.slow
def test_sighup_in_a_comparison_saves_the_model_in_training(tmp_path, spawn):
    write_cache(tmp_path / "data", build_prices(260))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config_training(MANY_EPOCHS)))
    argv = ["compare", "-t", TICKER, "--models", "gru,lstm", "-c", "config.yaml", "--data-dir", "data",
            "--runs-dir", "runs", "--json"]
    child = spawn("-c", SIGNALS_AT_A_PHASE, "comparing", "SIGHUP", *argv, stderr="stderr.txt")
    stdout, _ = child.communicate(timeout=CHILD_TIMEOUT_S)

    assert child.returncode == 129
    report = json.loads(stdout)
    assert report["completed"] == ["gru"] and report["interrupted"]
    (run_dir,) = bundle.list_runs(tmp_path / "runs")
    assert bundle.load_bundle(run_dir).training["epochs_run"] == 1
