"""Shared fixtures: no network in any test, synthetic prices, and yfinance 1.7.0's real frame shapes.

- `no_network` (autouse): any socket, curl or yfinance call a test did not fake fails at once.
- `progress_lines_off_the_clock` (autouse): no progress line that depends on the machine's speed.
- `make_prices(n, start, seed)`: a canonical price frame (business days, geometric random walk).
- `yahoo_download_frame(prices, ticker)`: what `yf.download(..., auto_adjust=False)` returns.
- `yahoo_history_frame(prices)`: what `yf.Ticker(t).history(..., auto_adjust=False, actions=False)` returns.
- `assert_canonical(frame)`, `error_of(call, *args)` (the one-line ForecastError it raises), `day(stamp)`: what
  the tests of prices, the Yahoo adapter and the cache share.
- `fake_yahoo`: a stand-in for Yahoo behind `yfinance.Ticker.history` that serves `fake_yahoo.prices`
  (sliced like Yahoo does) or raises `fake_yahoo.error`, recording each call.
- `TICKER`, `TINY_CONFIG` and `TINY_OVERRIDES` (the same tiny model as a config document and as `--set`
  items), `tiny_config` (it as ./tiny.yaml), `tiny_run` (a module-scoped tiny trained bundle): what the tests
  that train share; a test that needs other values adds its few changes to `TINY_OVERRIDES`.
- `clean_workdir`, `file_digests`, `temp_leftovers`, `error_line`: what the reliability tests share to run the
  CLI and check it left no trace.
- `weights_of(run_dir | model | tensors)`, `same_weights(first, second)`: bit-for-bit weight comparisons.
- `signal_self(signum)`, `handling(signum, handler)`: a signal sent to this process, as Ctrl-C or a closing
  terminal sends it, and a handler installed for one block.
- `name_taken_once`: another process publishes under the name a bundle or comparison is about to take.
- `run_cli_limited(args, cwd)`, `run_limited(argv, cwd)`: the real CLI (or any command) in a child process
  under an address-space and a time limit, so a memory blow-up fails the test instead of taking the machine.
- `pytest_configure`: one torch thread for the whole run.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
import yaml
import yfinance
from yfinance.exceptions import YFPricesMissingError

from lstm_forecast import progress
from lstm_forecast.errors import ForecastError
from lstm_forecast.files import TEMP_PREFIX
from lstm_forecast.prices import COLUMNS

if TYPE_CHECKING:
    import torch

EXCHANGE_TZ = "America/New_York"
LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread for the whole run, set before any test module is imported: a bit-for-bit repeat
    needs the same thread count each time, and the machines that run the suite share two cores.

    torch is imported here, not at the top: child processes import this module for its helpers and
    would pay seconds of import for nothing.
    """
    import torch

    torch.set_num_threads(1)


class UnmockedNetworkCall(BaseException):
    """A BaseException, so no `except Exception` in the code under test can swallow it."""


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise UnmockedNetworkCall("unmocked network call in a test: fake Yahoo with the fake_yahoo fixture")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family != socket.AF_UNIX:  # local IPC (multiprocessing) stays allowed
            _refuse()
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family != socket.AF_UNIX:
            _refuse()
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOCAL_HOSTS:
            _refuse()
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    # yfinance talks through curl_cffi (libcurl), which never touches Python's sockets.
    monkeypatch.setattr("curl_cffi.curl.Curl.perform", _refuse)
    monkeypatch.setattr(yfinance, "download", _refuse)
    monkeypatch.setattr(yfinance.Ticker, "history", _refuse)


@pytest.fixture(autouse=True)
def progress_lines_off_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal a phase gets its line once it has lasted progress.PHASE_LINE_AFTER_S, and a long epoch one
    per BATCH_LINE_EVERY_S: lines that come or not with the machine's load. Tests see none (a test of them turns
    them on), so what a test finds on stderr is the same on an idle machine and a busy one."""
    monkeypatch.setattr(progress, "PHASE_LINE_AFTER_S", 86_400.0)
    monkeypatch.setattr(progress, "BATCH_LINE_EVERY_S", 86_400.0)


def build_prices(n: int = 300, start: str = "2020-01-02", seed: int = 0) -> pd.DataFrame:
    """A canonical price frame: business days, geometric random walk, consistent OHLC, and an
    Adj Close below Close in the past (as after dividends) so the two columns differ."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n, name="Date").as_unit("ns")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, n)))
    adj_close = close * np.linspace(0.9, 1.0, n)
    volume = rng.integers(1_000_000, 5_000_000, n).astype(np.float64)
    columns = [open_, high, low, close, adj_close, volume]
    return pd.DataFrame(dict(zip(COLUMNS, columns, strict=True)), index=dates)


def write_caches(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """Each frame as `<folder>/<TICKER>.csv`, a price cache (the folder is made when missing)."""
    from lstm_forecast.prices import prices_to_csv

    folder.mkdir(parents=True, exist_ok=True)
    for ticker, frame in frames.items():
        (folder / f"{ticker}.csv").write_bytes(prices_to_csv(frame))
    return folder


def build_yahoo_download_frame(prices: pd.DataFrame, ticker: str = "TSLA") -> pd.DataFrame:
    """yf.download's shape: (Price, Ticker) columns sorted by name, datetime64[s] tz-naive index named
    Date (unnamed when empty, as in its (0, 6) failure frame), int64 Volume."""
    index = pd.DatetimeIndex(prices.index).as_unit("s").rename("Date" if len(prices) else None)
    flat = prices.assign(Volume=prices["Volume"].astype(np.int64)).set_axis(index, axis=0)
    flat = flat[sorted(COLUMNS)]
    flat.columns = pd.MultiIndex.from_product([sorted(COLUMNS), [ticker]], names=["Price", "Ticker"])
    return flat


def build_yahoo_history_frame(
    prices: pd.DataFrame, auto_adjust: bool = False, actions: bool = False, tz: str = EXCHANGE_TZ
) -> pd.DataFrame:
    """Ticker.history's shape: flat columns, datetime64[s, exchange tz] index named Date, int64 Volume.

    With auto_adjust, Open/High/Low/Close are scaled to Adj Close and there is no Adj Close column;
    with actions, Dividends and Stock Splits follow.
    """
    index = pd.DatetimeIndex(prices.index).as_unit("s").tz_localize(tz).rename("Date")
    frame = prices.set_axis(index, axis=0).assign(Volume=prices["Volume"].to_numpy().astype(np.int64))
    if auto_adjust:
        ratio = frame["Adj Close"] / frame["Close"]
        frame = frame[["Open", "High", "Low", "Close", "Volume"]].assign(
            **{column: frame[column] * ratio for column in ["Open", "High", "Low", "Close"]}
        )
    if actions:
        frame = frame.assign(Dividends=0.0, **{"Stock Splits": 0.0})
    return frame


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == COLUMNS
    assert frame.index.name == "Date"
    assert frame.index.dtype == np.dtype("datetime64[ns]")
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (frame.index == frame.index.normalize()).all()
    assert (frame.dtypes == np.float64).all()


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ForecastError:
    with pytest.raises(ForecastError) as caught:
        call(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return caught.value


def day(stamp: pd.Timestamp) -> date:
    return stamp.date()


@pytest.fixture
def make_prices() -> Callable[..., pd.DataFrame]:
    return build_prices


@pytest.fixture
def yahoo_download_frame() -> Callable[..., pd.DataFrame]:
    return build_yahoo_download_frame


@pytest.fixture
def yahoo_history_frame() -> Callable[..., pd.DataFrame]:
    return build_yahoo_history_frame


class FakeYahoo:
    """Yahoo behind `yfinance.Ticker.history`: serves `prices` for the requested range like the real
    one (start inclusive, end exclusive, YFPricesMissingError when empty) or raises `error`."""

    def __init__(self) -> None:
        self.prices: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self.raw: pd.DataFrame | None = None  # when set, returned as is
        self.calls: list[dict[str, Any]] = []

    def history(self, ticker: yfinance.Ticker, **kwargs: Any) -> pd.DataFrame:
        self.calls.append({"ticker": ticker.ticker, **kwargs})
        if self.error is not None:
            raise self.error
        if self.raw is not None:
            return self.raw
        assert self.prices is not None, "set fake_yahoo.prices, .raw or .error first"
        rows = self.prices
        if kwargs.get("start") is not None:
            rows = rows[rows.index >= pd.Timestamp(kwargs["start"])]
        if kwargs.get("end") is not None:
            rows = rows[rows.index < pd.Timestamp(kwargs["end"])]
        if rows.empty:
            raise YFPricesMissingError(ticker.ticker, "")
        return build_yahoo_history_frame(rows)


@pytest.fixture
def fake_yahoo(monkeypatch: pytest.MonkeyPatch) -> FakeYahoo:
    fake = FakeYahoo()
    monkeypatch.setattr(yfinance.Ticker, "history", lambda self, *args, **kwargs: fake.history(self, **kwargs))
    return fake


# --- shared by the tests that train -------------------------------------------------------------

TICKER = "SYN"
# A model that trains in well under a second: for tests that need a real bundle, not a good one. One fixed
# thread: `auto` follows the machine's load, and runs are compared bit for bit.
TINY_CONFIG = {
    "window": {"lookback": 8, "horizon": 2},
    "model": {"hidden_size": 4, "num_layers": 1, "dropout": 0.0},
    "train": {"epochs": 2, "batch_size": 32, "device": "cpu", "threads": 1},
}
TINY_OVERRIDES = [f"{section}.{key}={value}" for section, keys in TINY_CONFIG.items() for key, value in keys.items()]


@pytest.fixture
def tiny_config(clean_workdir: Path) -> Path:
    """TINY_CONFIG as ./tiny.yaml in the clean working folder."""
    path = clean_workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained SYN bundle per test module (260 rows, lookback 8, horizon 2): copy it before damaging it."""
    from lstm_forecast.config import load_config
    from lstm_forecast.train import train_run

    runs_dir = tmp_path_factory.mktemp("tiny-runs")
    return train_run(load_config(None, TINY_OVERRIDES), TICKER, build_prices(260), runs_dir).run_dir


def weights_of(source: Path | torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors by name: a run dir's model.safetensors, a model's state, or such a dict as it is."""
    if isinstance(source, Path):
        import safetensors.torch  # here: a child process importing this module needs no torch

        return safetensors.torch.load_file(source / "model.safetensors")
    return source if isinstance(source, dict) else source.state_dict()


def same_weights(first: Any, second: Any) -> bool:
    """The same tensor names, each equal bit for bit; either side is anything `weights_of` takes."""
    first, second = weights_of(first), weights_of(second)
    return first.keys() == second.keys() and all(first[name].equal(second[name]) for name in first)


def signal_self(signum: int = signal.SIGINT) -> None:
    """Send `signum` to this process, as Ctrl-C (SIGINT) or a closing terminal (SIGHUP) does; its handler
    runs before this returns."""
    os.kill(os.getpid(), signum)


@contextmanager
def handling(signum: int, handler: Any) -> Iterator[None]:
    """`handler` receives `signum` inside the block; the previous handler is back after it, whatever happens."""
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


# --- shared by the reliability suite (test_bad_inputs, test_faults) ------------------------------

LOCK_SUFFIX = ".lock"


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` by relative path; lock files (empty; Windows leaves them) are skipped."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith(LOCK_SUFFIX)
    }


def temp_leftovers(root: Path) -> list[str]:
    """Half-written files or bundles (`.tmp-*`) anywhere under `root`."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob(f"{TEMP_PREFIX}*"))


def error_line(result: Any) -> str:
    """A failed CliRunner result printed one `Error: ...` line, the last on stderr, nothing on stdout and no
    traceback; returns that line. Only progress bars (with their `done/total` count) may come before it:
    no blank line, no warning from a library."""
    *before, last = result.stderr.splitlines() or [""]
    assert last.startswith("Error: "), result.stderr
    assert all(re.search(r"\d+/\d+", line) for line in before), result.stderr
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.output
    return last


@pytest.fixture
def clean_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder, with no data dir, runs dir or debug flag coming from the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("LSTM_FORECAST_DATA_DIR", "LSTM_FORECAST_RUNS_DIR", "LSTM_FORECAST_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def name_taken_once(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Another process publishes a folder under the first name `files.free_name` chooses, between our choosing
    it and renaming into it (same ticker, same millisecond); the list holds that folder once it exists."""
    from lstm_forecast import files

    real_free_name, taken = files.free_name, []

    def free_name(parent: Path, name: str) -> str:
        chosen = real_free_name(parent, name)
        if not taken:
            taken.append(parent / chosen)
            taken[0].mkdir()
            (taken[0] / "theirs.json").write_text("{}")
        return chosen

    monkeypatch.setattr(files, "free_name", free_name)
    return taken


# --- resource limits: hostile input must fail fast and small ---------------------------------------

# Enough for torch, pandas and matplotlib plus a tiny model (about 1 GiB of address space is mapped
# just by importing them); far below what an unbounded read or a runaway allocation reaches.
CHILD_MEMORY_LIMIT = 2 * 1024**3
CHILD_TIME_LIMIT_S = 60


def run_cli_limited(
    args: list[str], cwd: Path, memory: int = CHILD_MEMORY_LIMIT, timeout: float = CHILD_TIME_LIMIT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`python -m lstm_forecast ARGS` in `cwd` under the limits of `run_limited`."""
    return run_limited([sys.executable, "-m", "lstm_forecast", *args], cwd, memory, timeout, env)


def run_limited(
    argv: list[str], cwd: Path, memory: int = CHILD_MEMORY_LIMIT, timeout: float = CHILD_TIME_LIMIT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `argv` in `cwd` under RLIMIT_AS = `memory` bytes; a time-out fails the test.

    The child gets no LSTM_FORECAST_* settings from the caller and one torch thread (two tests may run at once).
    """
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    child_env = {key: value for key, value in os.environ.items() if not key.startswith("LSTM_FORECAST_")}
    child_env |= {"OMP_NUM_THREADS": "1", **(env or {})}
    try:
        return subprocess.run(argv, cwd=cwd, env=child_env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=limit_memory, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(argv)[:200]} ran past {timeout} s")
