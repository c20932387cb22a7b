"""Bad input through the real CLI: GUIDE.md's promise, one table row per case.

Every row runs a command with Typer's CliRunner in an empty folder and checks the exit code, the one
`Error: ...` line on stderr (a meaningful fragment of it), that there is no traceback, and that every
file that was there before (caches, bundles, the input CSV, the config) has the same bytes afterwards,
with no new file and no `.tmp-*` leftover. Some "bad" inputs are accepted by design (NaN rows dropped,
duplicate dates keep the last row, unsorted dates sorted, constant prices): those rows expect exit 0, a
warning on stderr where there is one, and a `check` on what was written.

The tests run as root, where chmod cannot make a folder read-only; "not writable" is simulated by making
the creation of temp files fail with EACCES, which is where every write of the package starts.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
import yaml
from conftest import (
    TICKER,
    TINY_CONFIG,
    FakeYahoo,
    build_prices,
    build_yahoo_history_frame,
    error_line,
    file_digests,
    run_cli_limited,
    temp_leftovers,
)
from typer.testing import CliRunner
from yfinance.exceptions import YFRateLimitError

from lstm_forecast.bundle import load_bundle
from lstm_forecast.cli import app
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.prices import YAHOO_LAYOUT, prices_to_csv, read_prices_csv

RUN_ID = "20240102-030405-006"
RUN = f"runs/{TICKER}/{RUN_ID}"
CSV = "in.csv"
FETCH_CSV = ["fetch", "-t", TICKER, "--from-csv", CSV, "--data-dir", "data"]
TRAIN = ["train", "-t", TICKER, "--config", "tiny.yaml", "--data-dir", "data", "--runs-dir", "runs"]
TRAIN_WITH_CONFIG = ["train", "-t", TICKER, "-c", "c.yaml"]  # config errors stop it before any data is read


@dataclass
class Scene:
    """What a row's setup may use: the empty working folder, fake Yahoo, monkeypatch, a trained bundle."""

    root: Path
    yahoo: FakeYahoo
    monkeypatch: pytest.MonkeyPatch
    tiny_run: Path


Setup = Callable[[Scene], None]


@dataclass(frozen=True)
class Case:
    id: str
    setup: tuple[Setup, ...]
    argv: list[str]
    exit_code: int
    fragment: str | None  # in the Error line, or (exit 0) in the warnings on stderr; None: no warning
    changes: tuple[str, ...] = ()  # glob patterns of files the command may create or change
    check: Callable[[Scene, Any], None] | None = None


# --- setups ---------------------------------------------------------------------------------------


def write(relative: str, content: str | bytes) -> Setup:
    def setup(scene: Scene) -> None:
        path = scene.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def yahoo_csv(*rows: tuple[str, str]) -> str:
    """A Yahoo-layout CSV of (date, close) rows; Open/High/Low/Adj Close repeat the close text."""
    lines = [f"{day},{close},{close},{close},{close},{close},1000" for day, close in rows]
    return "\n".join([YAHOO_LAYOUT, *lines]) + "\n"


def prices_csv(rows: int, **changes: float) -> bytes:
    """Canonical CSV bytes of `rows` synthetic days, with whole price columns set to constants."""
    prices = build_prices(rows)
    for column, value in changes.items():
        prices[column.replace("_", " ")] = value
    return prices_to_csv(prices)


def prices_csv_with(day: str, column: str, value: float) -> bytes:
    """Canonical CSV bytes of 260 synthetic days with one cell changed (the writer does not validate)."""
    prices = build_prices(260)
    prices.loc[day, column] = value
    return prices_to_csv(prices)


CACHE = write(f"data/{TICKER}.csv", prices_csv(260))
TINY = write("tiny.yaml", yaml.safe_dump(TINY_CONFIG))


def yahoo_fails(error: BaseException) -> Setup:
    def setup(scene: Scene) -> None:
        scene.yahoo.error = error

    return setup


def yahoo_knows_nothing(scene: Scene) -> None:
    """Ticker.history's answer for a symbol Yahoo does not know: a frame without rows."""
    scene.yahoo.raw = build_yahoo_history_frame(build_prices(1).iloc[:0])


def refuse_temp_files(name: str) -> Setup:
    """Make `tempfile.<name>` fail as in a folder the user may not write to (see the module docstring)."""

    def setup(scene: Scene) -> None:
        def refused(*args: Any, dir: Any = None, **kwargs: Any) -> Any:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))

        scene.monkeypatch.setattr(tempfile, name, refused)

    return setup


def bundle(damage: Callable[[Path], None] | None = None) -> Setup:
    """A copy of the tiny trained bundle at RUN, then damaged."""

    def setup(scene: Scene) -> None:
        run_dir = scene.root / RUN
        shutil.copytree(scene.tiny_run, run_dir)
        if damage is not None:
            damage(run_dir)

    return setup


def truncate_weights(run_dir: Path) -> None:
    weights = (run_dir / "model.safetensors").read_bytes()
    (run_dir / "model.safetensors").write_bytes(weights[: len(weights) // 2])


def weights_of_another_shape(run_dir: Path) -> None:
    shape = ModelShape(kind="lstm", n_features=1, hidden_size=6, num_layers=1, dropout=0.0, horizon=2)
    (run_dir / "model.safetensors").write_bytes(safetensors.torch.save(Forecaster(shape).state_dict()))


def edit_bundle_json(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        document = json.loads((run_dir / "bundle.json").read_text())
        change(document)
        (run_dir / "bundle.json").write_text(json.dumps(document))

    return damage


def bundle_format(version: int) -> Callable[[Path], None]:
    return edit_bundle_json(lambda document: document.update(format_version=version))


def edit_scaler(**values: Any) -> Callable[[Path], None]:
    return edit_bundle_json(lambda document: document["scaler"].update(values))


def set_residual(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda document: document["calibration"]["residuals"][0].__setitem__(0, value)


def replace_in(name: str, old: str, new: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        text = (run_dir / name).read_text()
        assert old in text
        (run_dir / name).write_text(text.replace(old, new, 1))

    return damage


def recast_weights(dtype: torch.dtype) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        weights = safetensors.torch.load((run_dir / "model.safetensors").read_bytes())
        (run_dir / "model.safetensors").write_bytes(
            safetensors.torch.save({name: tensor.to(dtype) for name, tensor in weights.items()}))

    return damage


def link_to_dev_zero(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        (run_dir / name).unlink()
        (run_dir / name).symlink_to("/dev/zero")

    return damage


def make_fifo(relative: str) -> Setup:
    return lambda scene: os.mkfifo(scene.root / relative)


class Unpickled:
    """Unpickling this creates the file `pwned` in the current folder: proof that something was unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, ("pwned", "w"))


def plant_pickle(run_dir: Path) -> None:
    (run_dir / "model.pt").write_bytes(pickle.dumps(Unpickled()))


def never_unpickle(scene: Scene) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may ever be unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        scene.monkeypatch.setattr(module, name, refuse)


# --- checks on accepted input ---------------------------------------------------------------------


def cached_closes(scene: Scene) -> dict[str, float]:
    prices, _ = read_prices_csv(scene.root / "data" / f"{TICKER}.csv")
    return {stamp.date().isoformat(): close for stamp, close in prices["Close"].items()}


def expect_closes(expected: dict[str, float]) -> Callable[[Scene, Any], None]:
    def check(scene: Scene, result: Any) -> None:
        assert cached_closes(scene) == expected  # dict order too: ascending dates

    return check


def expect_volumes(expected: list[float]) -> Callable[[Scene, Any], None]:
    def check(scene: Scene, result: Any) -> None:
        prices, _ = read_prices_csv(scene.root / "data" / f"{TICKER}.csv")
        assert prices["Volume"].tolist() == expected

    return check


def cached_sidecar(scene: Scene) -> dict[str, Any]:
    return json.loads((scene.root / "data" / f"{TICKER}.meta.json").read_text())


def imported_from_start(scene: Scene, result: Any) -> None:
    """--start on an import: only the rows from that day, and the sidecar records that range."""
    assert cached_closes(scene) == {"2020-01-03": 11.0, "2020-01-06": 12.0}
    meta = cached_sidecar(scene)
    assert (meta["requested"]["start"], meta["first"], meta["rows"]) == ("2020-01-03", "2020-01-03", 2)


def sidecar_replaced(scene: Scene, result: Any) -> None:
    """A damaged sidecar counted as absent: the fetch succeeded and wrote a good one."""
    assert cached_sidecar(scene)["rows"] == 260


def created_no_folder(scene: Scene, result: Any) -> None:
    assert not (scene.root / "new").exists()


def refuse_nan(name: str) -> None:
    raise AssertionError(f"{name} in JSON output")


def trained_on_constant_prices(scene: Scene, result: Any) -> None:
    """Zero variance: the scaler keeps std 1 instead of dividing by zero, every number is finite or null,
    and ratios over the naive forecast's zero error are null, not inf."""
    document = json.loads(result.stdout, parse_constant=refuse_nan)
    run = load_bundle(scene.root / document["run_dir"])
    assert run.scaler.feature_std == (1.0,) and run.scaler.target_std == 1.0
    assert document["test"]["metrics"]["naive"]["all"]["rmse"] == 0.0
    assert document["test"]["metrics"]["model"]["all"]["rmse_ratio"] is None
    assert math.isfinite(document["test"]["metrics"]["model"]["all"]["rmse"])
    residuals = [value for step in run.calibration["residuals"] for value in step]
    assert residuals and all(math.isfinite(value) for value in residuals)


def created_runs_dir(scene: Scene, result: Any) -> None:
    (run_dir,) = (scene.root / "new" / "runs" / TICKER).iterdir()
    assert load_bundle(run_dir).ticker == TICKER


def failed_before_training(scene: Scene, result: Any) -> None:
    # No epoch finished (the bar appears with the first): the error came before training, not after it.
    assert "/2 " not in result.stderr and len(result.stderr.splitlines()) == 1  # no epoch counter, one line
    assert not (scene.root / "runs").exists()  # and the writability probe left nothing behind


def nothing_unpickled(scene: Scene, result: Any) -> None:
    assert not (scene.root / "pwned").exists()
    assert "Fan chart:" in result.stdout


# --- the table ------------------------------------------------------------------------------------

FUTURE = date.today() + timedelta(days=30)
LONG_TICKER = "A" * 200
WIDE_HEADER = "Date,Close," + ",".join(f"c{number}" for number in range(300_000)) + "\n2020-01-02,10\n"
LONG_CELL = "x" * 300  # five of them (yahoo_csv repeats it) stay under the line-length cap


def volume_csv(volume: str) -> str:
    return yahoo_csv(("2020-01-02", "10")) + f"2020-01-03,11,11,11,11,11,{volume}\n"


def serve_prices(scene: Scene) -> None:
    scene.yahoo.prices = build_prices(260)

CASES = [
    # Data from Yahoo.
    Case("unknown-ticker", (yahoo_knows_nothing,), ["fetch", "-t", "ZZZZ", "--data-dir", "data"], 1,
         "Yahoo Finance returned no prices for ZZZZ; check the symbol"),
    Case("network-unreachable", (CACHE, yahoo_fails(OSError("Network is unreachable"))),
         ["fetch", "-t", TICKER, "--data-dir", "data"], 1,
         f"could not reach Yahoo Finance for {TICKER} (Network is unreachable). Import a CSV with --from-csv"),
    Case("start-after-end", (CACHE,), ["fetch", "-t", TICKER, "--start", "2021-01-01", "--end", "2020-06-01",
                                       "--data-dir", "data"], 2, "start 2021-01-01 is after end 2020-06-01"),
    Case("not-a-date", (), ["fetch", "-t", TICKER, "--start", "2020-13-01"], 2,
         "Invalid value for '--start': Value error, '2020-13-01' does not match the formats '%Y-%m-%d'"),
    Case("rate-limited", (CACHE, yahoo_fails(YFRateLimitError())), ["fetch", "-t", TICKER, "--data-dir", "data"], 1,
         "Yahoo Finance is rate limiting requests"),
    # CSV files given to `fetch --from-csv`.
    Case("empty-csv", (write(CSV, ""),), FETCH_CSV, 1, f"{CSV}: empty file; expected the Yahoo layout"),
    Case("header-only", (write(CSV, YAHOO_LAYOUT + "\n"),), FETCH_CSV, 1, f"{CSV}: no price rows"),
    Case("no-date-column", (write(CSV, "Day,Close\n2020-01-02,10\n"),), FETCH_CSV, 1,
         f"{CSV}: no Date column (found: Day, Close)"),
    Case("no-close-column", (write(CSV, "Date,Open\n2020-01-02,10\n"),), FETCH_CSV, 1,
         f"{CSV}: no Close column (found: Date, Open)"),
    Case("non-numeric-price", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "n/a?"))),), FETCH_CSV, 1,
         "column Open has a non-numeric value 'n/a?' on 2020-01-03"),
    Case("non-positive-price", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "0"))),), FETCH_CSV, 1,
         "Open is 0 on 2020-01-03; prices must be positive"),
    Case("dates-in-the-future", (write(CSV, yahoo_csv(("2020-01-02", "10"), (FUTURE.isoformat(), "11"))),),
         FETCH_CSV, 1, f"date {FUTURE} is in the future"),
    Case("binary-file", (write(CSV, bytes(range(256)) * 4),), FETCH_CSV, 1, f"{CSV}: binary file, not a CSV"),
    Case("not-utf8", (write(CSV, b"Date,Close\n2020-01-02,10\xff\n"),), FETCH_CSV, 1, f"{CSV}: not UTF-8 text"),
    Case("csv-missing", (), FETCH_CSV, 2, f"Invalid value for '--from-csv': file '{CSV}' does not exist"),
    Case("csv-is-a-folder", (write(f"{CSV}/x", "x"),), FETCH_CSV, 2,
         f"Invalid value for '--from-csv': file '{CSV}' is a directory"),
    Case("nan-rows-dropped", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", ""),
                                                   ("2020-01-06", "NaN"), ("2020-01-07", "12"))),),
         FETCH_CSV, 0, "dropped 2 row(s) without Close/Adj Close (first 2020-01-03)", ("data/*",),
         expect_closes({"2020-01-02": 10.0, "2020-01-07": 12.0})),
    Case("duplicate-dates-keep-last", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "11"),
                                                            ("2020-01-03", "11.5"))),),
         FETCH_CSV, 0, "1 duplicate date(s) (first 2020-01-03); kept the last row of each", ("data/*",),
         expect_closes({"2020-01-02": 10.0, "2020-01-03": 11.5})),
    Case("unsorted-dates-sorted", (write(CSV, yahoo_csv(("2020-01-06", "12"), ("2020-01-02", "10"),
                                                        ("2020-01-03", "11"))),),
         FETCH_CSV, 0, None, ("data/*",),
         expect_closes({"2020-01-02": 10.0, "2020-01-03": 11.0, "2020-01-06": 12.0})),
    # Values the cache could not hold (10.1): refused before the good cache is touched.
    Case("volume-beyond-int64", (CACHE, write(CSV, volume_csv("1e19"))), FETCH_CSV, 1,
         "Volume is 1e+19 on 2020-01-03; volumes must be at most 1e+18"),
    Case("volume-beyond-the-cap", (CACHE, write(CSV, volume_csv("2000000000000000000"))), FETCH_CSV, 1,
         "Volume is 2e+18 on 2020-01-03"),
    Case("volume-negative", (CACHE, write(CSV, volume_csv("-5"))), FETCH_CSV, 1, "Volume is negative on 2020-01-03"),
    Case("volume-fractional-kept", (write(CSV, volume_csv("12.5")),), FETCH_CSV, 0, None, ("data/*",),
         expect_volumes([1000.0, 12.5])),
    Case("price-overflows-log-space", (CACHE, write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "1e308")))),
         FETCH_CSV, 1, "Open is 1e+308 on 2020-01-03; prices must lie between 1e-12 and 1e+12"),
    Case("price-subnormal", (CACHE, write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "5e-324")))),
         FETCH_CSV, 1, "on 2020-01-03; prices must lie between 1e-12 and 1e+12"),
    # A cache whose prices jump to 1e308 (10.2): refused when read, before any window is built.
    Case("cache-price-1e308", (TINY, write(f"data/{TICKER}.csv", prices_csv_with("2020-03-02", "Close", 1e308))),
         TRAIN, 1, "Close is 1e+308 on 2020-03-02; prices must lie between 1e-12 and 1e+12 (the cached prices"),
    # Dates pandas cannot hold (10.4) and the import range (9.3).
    Case("date-1600", (write(CSV, yahoo_csv(("1600-01-03", "10"), ("2020-01-03", "11"))),), FETCH_CSV, 1,
         "date 1600-01-03 is before 1800-01-01; check the Date column"),
    Case("date-9999", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("9999-12-31", "11"))),), FETCH_CSV, 1,
         "date 9999-12-31 is in the future"),
    Case("import-from-start", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "11"),
                                                    ("2020-01-06", "12"))),),
         [*FETCH_CSV, "--start", "2020-01-03"], 0, None, ("data/*",), imported_from_start),
    Case("import-range-without-rows", (CACHE, write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "11")))),
         [*FETCH_CSV, "--start", "2021-01-01"], 1,
         f"{CSV}: no rows from 2021-01-01 to the end; the file covers 2020-01-02 to 2020-01-03"),
    Case("import-start-after-end", (CACHE, write(CSV, yahoo_csv(("2020-01-02", "10")))),
         [*FETCH_CSV, "--start", "2021-01-01", "--end", "2020-01-01"], 2, "start 2021-01-01 is after end 2020-01-01"),
    # Huge values quoted in messages, odd encodings (10.7), shapes no price CSV has (10.3).
    Case("ten-mb-single-line", (write(CSV, "Date," + "9" * 10 * 1024**2),), FETCH_CSV, 1,
         f"{CSV}: line 1 has 10,485,765 characters (at most 2,000)"),
    Case("long-cell-quoted-short", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", LONG_CELL))),),
         FETCH_CSV, 1, f"column Open has a non-numeric value '{'x' * 37}…' on 2020-01-03"),
    Case("long-date-quoted-short", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2" + "0" * 1_000, "11"))),),
         FETCH_CSV, 1, f"cannot read the date '2{'0' * 36}…' (data row 2)"),
    Case("header-300000-columns", (write(CSV, WIDE_HEADER),), FETCH_CSV, 1, "300,002 columns in the header"),
    Case("too-many-lines", (write(CSV, YAHOO_LAYOUT + "\n" * 300_000),), FETCH_CSV, 1,
         "300,001 lines; a daily price CSV has at most 200,000"),
    Case("utf16-read", (write(CSV, yahoo_csv(("2020-01-02", "10"), ("2020-01-03", "11")).encode("utf-16")),),
         FETCH_CSV, 0, None, ("data/*",), expect_closes({"2020-01-02": 10.0, "2020-01-03": 11.0})),
    Case("utf32-read", (write(CSV, yahoo_csv(("2020-01-02", "10")).encode("utf-32")),),
         FETCH_CSV, 0, None, ("data/*",), expect_closes({"2020-01-02": 10.0})),
    Case("utf16-damaged", (write(CSV, yahoo_csv(("2020-01-02", "10")).encode("utf-16") + b"\x00\xd8"),),
         FETCH_CSV, 1, f"{CSV}: not UTF-16 text"),
    # Sidecars are optional metadata (10.4): a damaged one counts as absent and is rewritten.
    Case("sidecar-nested-deep", (CACHE, serve_prices, write(f"data/{TICKER}.meta.json", "[" * 60_000)),
         ["fetch", "-t", TICKER, "--data-dir", "data"], 0, None, (f"data/{TICKER}.meta.json",), sidecar_replaced),
    Case("sidecar-5000-digit-int", (CACHE, serve_prices,
                                    write(f"data/{TICKER}.meta.json", '{"rows": ' + "9" * 5000 + "}")),
         ["fetch", "-t", TICKER, "--data-dir", "data"], 0, None, (f"data/{TICKER}.meta.json",), sidecar_replaced),
    Case("sidecar-huge", (CACHE, serve_prices, write(f"data/{TICKER}.meta.json", " " * 10**6 + "{}")),
         ["fetch", "-t", TICKER, "--data-dir", "data"], 0, None, (f"data/{TICKER}.meta.json",), sidecar_replaced),
    Case("sidecar-names-another-ticker", (CACHE, write(f"data/{TICKER}.meta.json", '{"ticker": "^SYN"}')),
         ["fetch", "-t", TICKER, "--data-dir", "data"], 1, f"data/{TICKER}.csv holds the prices of '^SYN'"),
    # A failed first fetch into a data dir that does not exist leaves no folder and no lock (9.4).
    Case("failed-fetch-creates-nothing", (yahoo_fails(OSError("Network is unreachable")),),
         ["fetch", "-t", TICKER, "--data-dir", "new/data"], 1, "could not reach Yahoo Finance",
         check=created_no_folder),
    # Too little or degenerate data for training.
    Case("one-row", (TINY, write(f"data/{TICKER}.csv", prices_csv(1))), TRAIN, 1,
         "1 price row: too few for window.lookback 8, window.horizon 2"),
    Case("fewer-rows-than-windows-need", (TINY, write(f"data/{TICKER}.csv", prices_csv(15))), TRAIN, 1,
         "15 price rows: too few for window.lookback 8, window.horizon 2 and a 0.1/0.2 validation/test split: "
         "need at least 16"),
    Case("corrupt-cache", (TINY, write(f"data/{TICKER}.csv", "Date,Close\n2020-01-02,abc\n")), TRAIN, 1,
         f"run `lstm-forecast fetch -t {TICKER} --refresh` to download them again"),
    # The price column read (Adj Close) constant; Close moving, or the data-quality rules refuse the stale series.
    Case("constant-prices", (TINY, write(f"data/{TICKER}.csv", prices_csv(260, Open=50.0, High=50.0, Low=50.0,
                                                                        Adj_Close=50.0))),
         [*TRAIN, "--json"], 0, None, ("runs/*",), trained_on_constant_prices),
    Case("stale-prices", (TINY, write(f"data/{TICKER}.csv", prices_csv(260, Open=50.0, High=50.0, Low=50.0,
                                                                     Close=50.0, Adj_Close=50.0))),
         TRAIN, 1, f"{TICKER}: a stale run: 260 identical closes (50) from 2020-01-02 to 2020-12-30; only 0 row(s)"),
    # Names and paths.
    Case("ticker-with-slash", (), ["fetch", "-t", "A/B", "--data-dir", "data"], 2, "invalid ticker 'A/B'"),
    Case("ticker-dot-dot", (), ["fetch", "-t", "..", "--data-dir", "data"], 2, "invalid ticker '..'"),
    Case("ticker-with-space", (), ["train", "-t", "BRK B"], 2, "invalid ticker 'BRK B'"),
    Case("ticker-200-chars", (), ["fetch", "-t", LONG_TICKER, "--data-dir", "data"], 2,
         f"invalid ticker '{'A' * 30}…': expected a Yahoo Finance symbol of at most 20"),
    Case("data-dir-is-a-file", (write("data", "not a folder"), write(CSV, yahoo_csv(("2020-01-02", "10")))),
         FETCH_CSV, 2, "--data-dir data is a file, not a folder"),
    Case("data-dir-not-writable", (CACHE, write(CSV, yahoo_csv(("2020-01-02", "10"))), refuse_temp_files("mkstemp")),
         [*FETCH_CSV, "--replace"], 1, f"cannot write data/{TICKER}.csv: permission denied"),
    Case("runs-dir-created", (TINY, CACHE), [*TRAIN[:-1], "new/runs"], 0, None, ("new/runs/*",), created_runs_dir),
    Case("runs-dir-not-writable", (TINY, CACHE, refuse_temp_files("mkdtemp")), TRAIN, 1,
         f"cannot create a run bundle in runs/{TICKER}: permission denied", check=failed_before_training),
    Case("runs-dir-is-a-file", (TINY, CACHE, write("runs", "")), TRAIN, 2, "runs dir runs is a file, not a folder"),
    # Configuration.
    Case("malformed-yaml", (write("c.yaml", "train: [epochs: 3\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: invalid YAML at line"),
    Case("python-tag", (write("c.yaml", "train: !!python/object/apply:os.system ['touch pwned']\n"),),
         TRAIN_WITH_CONFIG, 2, "c.yaml: refused YAML tag"),
    Case("not-a-mapping", (write("c.yaml", "- train\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: expected a mapping of sections"),
    Case("config-missing", (), TRAIN_WITH_CONFIG, 2, "c.yaml: config file not found"),
    Case("unknown-section", (write("c.yaml", "trian: {epochs: 3}\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: trian: unknown key (expected one of data, split"),
    Case("wrong-type", (write("c.yaml", "train: {lr: fast}\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: train.lr: expected a number > 0 and <= 10, got 'fast'"),
    Case("lookback-zero", (write("c.yaml", "window: {lookback: 0}\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: window.lookback: expected an integer >= 1 and <= 2000, got 0"),
    Case("dropout-1.5", (write("c.yaml", "model: {dropout: 1.5}\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: model.dropout: expected a number >= 0 and < 1, got 1.5"),
    Case("yes-is-not-a-count", (), ["train", "-t", TICKER, "--set", "window.lookback=yes"], 2,
         "--set: window.lookback: expected an integer >= 1 and <= 2000, got True"),
    Case("infinite-cost", (write("c.yaml", "evaluate: {cost_bps: .inf}\n"),), TRAIN_WITH_CONFIG,
         2, "c.yaml: evaluate.cost_bps: expected a number >= 0 and <= 10000, got inf"),
    Case("negative-lr", (), ["train", "-t", TICKER, "--set", "train.lr=-0.1"], 2,
         "--set: train.lr: expected a number > 0 and <= 10, got -0.1"),
    Case("set-without-equals", (), ["train", "-t", TICKER, "--set", "train.lr"], 2,
         "--set 'train.lr': expected section.key=value"),
    Case("bad-config-for-fetch", (write("c.yaml", "data: {dir: [1, 2]}\n"),),
         ["fetch", "-t", TICKER, "-c", "c.yaml"], 2, "c.yaml: data.dir: expected a string"),
    Case("duplicate-section", (write("c.yaml", "model: {type: gru}\nmodel: {hidden_size: 8}\n"),),
         TRAIN_WITH_CONFIG, 2, "c.yaml: line 2: duplicate key 'model'"),
    Case("duplicate-key", (write("c.yaml", "train:\n  epochs: 3\n  epochs: 4\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: line 3: duplicate key 'epochs'"),
    Case("yaml-alias", (write("c.yaml", "train: {lr: &a 0.1, weight_decay: *a}\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: line 1: YAML aliases (*a) are not allowed in a config"),
    Case("yaml-nested-100000", (write("c.yaml", "train: {lr: " + "[" * 100_000 + "]" * 100_000 + "}\n"),),
         TRAIN_WITH_CONFIG, 2, "c.yaml: line 1: nested more than 32 levels deep"),
    Case("yaml-5000-digits", (write("c.yaml", "train: {epochs: " + "1" * 5000 + "}\n"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: line 1: a number of 5,000 characters"),
    Case("set-5000-digits", (), ["train", "-t", TICKER, "--set", "train.seed=" + "7" * 5000], 2,
         "--set 'train.seed': a number of 5,000 characters"),
    Case("set-alias", (), ["train", "-t", TICKER, "--set", "train.lr=[&a [1], *a]"], 2,
         "--set 'train.lr': YAML aliases (*a) are not allowed"),
    Case("set-lr-1e308", (), ["train", "-t", TICKER, "--set", "train.lr=1.0e+308"], 2,
         "--set: train.lr: expected a number > 0 and <= 10, got 1e+308"),
    Case("set-start-1600", (), ["train", "-t", TICKER, "--set", "data.start=1600-01-01"], 2,
         "--set: data.start: expected a date YYYY-MM-DD >= 1900-01-01 and <= 2200-12-31 (or null), got 1600-01-01"),
    Case("model-option-named", (), ["train", "-t", TICKER, "--model", "transformer"], 2,
         "--model (model.type): expected one of lstm, gru, rnn, got 'transformer'"),
    Case("epochs-option-named", (), ["train", "-t", TICKER, "--epochs", "0"], 2,
         "--epochs (train.epochs): expected an integer >= 1"),
    Case("compare-epochs-option-named", (), ["compare", "-t", TICKER, "--epochs", "0"], 2,
         "--epochs (train.epochs): expected an integer >= 1"),
    Case("seed-past-32-bits", (), ["train", "-t", TICKER, "--seed", "4294967296"], 2,
         "--seed (train.seed): expected an integer >= 0 and <= 4294967295, got 4294967296"),
    Case("megabyte-value-quoted-short", (), ["train", "-t", TICKER, "--set", "model.type=" + "x" * 1_000_000], 2,
         "--set: model.type: expected one of lstm, gru, rnn, got 'xxxx"),
    Case("config-is-dev-zero", (), ["train", "-t", TICKER, "-c", "/dev/zero"], 2,
         "/dev/zero: not a regular file; expected a config file"),
    Case("config-is-a-fifo", (make_fifo("c.yaml"),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: not a regular file; expected a config file"),
    Case("csv-is-a-fifo", (make_fifo(CSV),), FETCH_CSV, 1, f"{CSV}: not a regular file; expected a daily price CSV"),
    Case("config-over-a-megabyte", (write("c.yaml", "# padding\n" * 120_000),), TRAIN_WITH_CONFIG, 2,
         "c.yaml: 1,200,000 bytes, more than a config file can be"),
    Case("model-too-large-to-train", (), ["train", "-t", TICKER, "--set", "model.hidden_size=4096",
                                          "--set", "model.num_layers=16"], 2,
         "lower model.hidden_size or model.num_layers"),
    Case("compare-checks-every-model", (),
         ["compare", "-t", TICKER, "--models", "rnn,lstm", "--set", "model.hidden_size=4096",
          "--set", "model.num_layers=16"], 2, "model.type rnn with model.hidden_size 4096"),
    # Run bundles.
    Case("run-points-at-nothing", (), ["evaluate", "--run", RUN], 2, f"{RUN}: no such run directory"),
    Case("run-without-bundle-json", (write(f"{RUN}/model.safetensors", b"x"),), ["predict", "--run", RUN], 1,
         f"{RUN}/bundle.json: missing; not a run bundle"),
    Case("bundle-json-not-json", (bundle(lambda run_dir: (run_dir / "bundle.json").write_text("{")),),
         ["predict", "--run", RUN], 1, "bundle.json: not valid JSON"),
    Case("truncated-weights", (bundle(truncate_weights),), ["evaluate", "--run", RUN], 1,
         f"{RUN}/model.safetensors: corrupt weights file"),
    Case("weights-of-another-shape", (bundle(weights_of_another_shape),), ["predict", "--run", RUN], 1,
         "the weights do not fit the model described in bundle.json"),
    Case("bundle-scale-of-zero", (bundle(edit_scaler(feature_std=[0.0])),), ["predict", "--run", RUN], 1,
         "bundle.json: missing or invalid field scaler: expected finite means and positive standard deviations"),
    Case("bundle-config-with-python-tag",
         (bundle(lambda run_dir: (run_dir / "config.yaml").write_text("x: !!python/object/apply:os.getcwd []\n")),),
         ["predict", "--run", RUN], 1, "config.yaml: unreadable (ConstructorError); the bundle is damaged"),
    Case("future-bundle-format", (bundle(bundle_format(99)),), ["predict", "--run", RUN], 1,
         "bundle format 99 is not supported (this lstm-forecast reads format 1); upgrade lstm-forecast"),
    Case("planted-pickle-never-loaded", (bundle(plant_pickle), never_unpickle), ["predict", "--run", RUN], 0,
         "forecasting from the last day of the training data", (f"{RUN}/forecast.png",), nothing_unpickled),
    Case("days-beyond-horizon", (bundle(),), ["predict", "--run", RUN, "--days", "3"], 2,
         "--days 3: the run was trained to forecast 2 days at once"),
    Case("run-and-ticker-both", (bundle(),), ["evaluate", "--run", RUN, "-t", TICKER], 2,
         "give --run or --ticker, not both"),
    Case("evaluate-without-runs", (CACHE,), ["evaluate"], 1,
         "no trained runs in runs; train one with `lstm-forecast train -t TICKER`"),
    Case("predict-without-runs", (CACHE,), ["predict", "-t", TICKER], 1, f"no trained runs for {TICKER} in runs"),
    Case("predict-without-runs-names-the-ticker", (CACHE,), ["predict", "-t", "NVDA"], 1,
         "no trained runs for NVDA in runs; train one with `lstm-forecast train -t NVDA`"),
    Case("bundle-ticker-traversal", (bundle(edit_bundle_json(lambda d: d.update(ticker="../../../etc/passwd"))),),
         ["predict", "--run", RUN], 1, "invalid ticker '../../../etc/passwd'"),
    Case("bundle-nan-residuals", (bundle(edit_bundle_json(set_residual(math.nan))),), ["predict", "--run", RUN], 1,
         "calibration.residuals.0.0: input should be a finite number"),
    Case("bundle-string-residuals", (bundle(edit_bundle_json(set_residual("0.1"))),), ["predict", "--run", RUN], 1,
         "calibration.residuals.0.0: input should be a valid number"),
    Case("bundle-calibration-list", (bundle(edit_bundle_json(lambda d: d.update(calibration=[]))),),
         ["evaluate", "--run", RUN], 1, "missing or invalid field calibration:"),
    Case("bundle-lookback-1e400", (bundle(replace_in("bundle.json", '"lookback": 8', '"lookback": 1e400')),),
         ["predict", "--run", RUN], 1, "window.lookback: input should be a valid integer"),
    Case("bundle-5000-digits", (bundle(replace_in("bundle.json", '"lookback": 8', '"lookback": 1' + "0" * 5000)),),
         ["predict", "--run", RUN], 1, "bundle.json: not valid JSON (ValueError); the bundle is damaged"),
    Case("bundle-nested-deep",
         (bundle(lambda run_dir: (run_dir / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)),),
         ["predict", "--run", RUN], 1, "bundle.json: not valid JSON (RecursionError)"),
    Case("bundle-hidden-30000", (bundle(edit_bundle_json(lambda d: d["model"].update(hidden_size=30000))),),
         ["predict", "--run", RUN], 1, "model.hidden_size: input should be less than or equal to 4096"),
    Case("bundle-int8-weights", (bundle(recast_weights(torch.int8)),), ["predict", "--run", RUN], 1,
         "is torch.int8, expected float32; the bundle is damaged"),
    Case("bundle-bool-weights", (bundle(recast_weights(torch.bool)),), ["predict", "--run", RUN], 1,
         "is torch.bool, expected float32; the bundle is damaged"),
    Case("bundle-config-duplicate-key",
         (bundle(lambda run_dir: (run_dir / "config.yaml").write_text("train: {}\ntrain: {}\n")),),
         ["predict", "--run", RUN], 1,
         "config.yaml: unreadable (line 2: duplicate key 'train'); the bundle is damaged"),
    Case("bundle-config-invalid-value",
         (bundle(lambda run_dir: (run_dir / "config.yaml").write_text("train: {epochs: 0}\n")),),
         ["predict", "--run", RUN], 1, "train.epochs: expected an integer >= 1"),
    Case("bundle-json-is-dev-zero", (bundle(link_to_dev_zero("bundle.json")),), ["predict", "--run", RUN], 1,
         "bundle.json: not a regular file; expected a bundle description; the bundle is damaged"),
    Case("weights-are-dev-zero", (bundle(link_to_dev_zero("model.safetensors")),), ["predict", "--run", RUN], 1,
         "model.safetensors: not a regular file"),
]


@pytest.fixture
def scene(clean_workdir: Path, fake_yahoo: FakeYahoo, monkeypatch: pytest.MonkeyPatch, tiny_run: Path) -> Scene:
    return Scene(clean_workdir, fake_yahoo, monkeypatch, tiny_run)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, scene: Scene) -> None:
    for setup in case.setup:
        setup(scene)
    before = file_digests(scene.root)

    result = CliRunner().invoke(app, case.argv)

    assert result.exit_code == case.exit_code, result.output
    if case.exit_code == 0:
        assert "Error:" not in result.stderr and "Traceback" not in result.output, result.output
        warnings = " ".join(result.stderr.split())  # rich wraps long warnings at 80 columns
        if case.fragment is None:
            assert "Warning:" not in warnings
        else:
            assert case.fragment in warnings
    else:
        line = error_line(result)
        assert case.fragment in line
        assert len(line) < 400, "one readable line, not a dump"
    after = file_digests(scene.root)
    untouched = {path for path in before.keys() | after.keys()
                 if not any(fnmatch.fnmatch(path, pattern) for pattern in case.changes)}
    assert {path: after.get(path) for path in untouched} == {path: before.get(path) for path in untouched}
    assert temp_leftovers(scene.root) == []
    assert list(scene.root.rglob("*.lock")) == []  # file_digests skips lock files: none may stay behind
    if case.check is not None:
        case.check(scene, result)


# --- blow-ups: under an address-space limit, so a regression fails the test instead of the machine ----------

LAUGHS = "\n".join(
    [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
    + [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 9)]
) + "\n"
LAUGHS_FLOW = "[&a [1, 1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(
    f"&{name} [{', '.join([f'*{previous}'] * 9)}]" for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
) + "]"


def huge_model_bundle(run_dir: Path) -> None:
    document = json.loads((run_dir / "bundle.json").read_text())
    document["model"].update(hidden_size=4096, num_layers=16)
    (run_dir / "bundle.json").write_text(json.dumps(document))


BLOW_UPS = [
    ("billion-laughs-config", lambda root: (root / "c.yaml").write_text(LAUGHS),
     ["train", "-t", TICKER, "-c", "c.yaml"], 2, "c.yaml: line 2: YAML aliases (*a0) are not allowed in a config"),
    ("billion-laughs-set", None, ["train", "-t", TICKER, "--set", f"train.lr={LAUGHS_FLOW}"], 2,
     "--set 'train.lr': YAML aliases (*a) are not allowed"),
    ("billion-laughs-bundle-config", lambda root: (root / RUN / "config.yaml").write_text(LAUGHS),
     ["predict", "--run", RUN], 1, "config.yaml: unreadable (line 2: YAML aliases (*a0)"),
    ("huge-model-train", None, ["train", "-t", TICKER, "--set", "model.hidden_size=4096", "--set",
                                "model.num_layers=16"], 2, "lower model.hidden_size or model.num_layers"),
    ("huge-model-bundle", lambda root: huge_model_bundle(root / RUN), ["predict", "--run", RUN], 1,
     "the bundle is damaged"),
    ("bundle-json-dev-zero", lambda root: link_to_dev_zero("bundle.json")(root / RUN), ["predict", "--run", RUN], 1,
     "not a regular file"),
    ("weights-dev-zero", lambda root: link_to_dev_zero("model.safetensors")(root / RUN), ["predict", "--run", RUN], 1,
     "not a regular file"),
]


@pytest.mark.parametrize(("setup", "argv", "exit_code", "fragment"), [case[1:] for case in BLOW_UPS],
                         ids=[case[0] for case in BLOW_UPS])
def test_tiny_hostile_input_fails_fast_and_small(tmp_path, tiny_run, setup, argv, exit_code, fragment):
    shutil.copytree(tiny_run, tmp_path / RUN)
    if setup is not None:
        setup(tmp_path)
    result = run_cli_limited(argv, tmp_path)
    *_, last = result.stderr.splitlines() or [""]
    assert result.returncode == exit_code, result.stderr[-2000:]
    assert last.startswith("Error: ") and fragment in last and len(last) < 400, last
    assert "Traceback" not in result.stderr and "unexpected" not in last
