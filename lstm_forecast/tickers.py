"""Which tickers a command works on: `-t` (repeatable, comma lists), `--tickers-file` and `--all`.

`-t` is repeatable and takes comma lists, `--tickers-file` one ticker per line (or a CSV with a `ticker` or
`symbol` column), `--all` every ticker cached in the data dir; duplicates are dropped with a warning, the order
kept, and every invalid name is reported in one error before anything runs. `plan_training` and
`plan_evaluation` add the folders a command over tickers works in, checked before any work starts.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lstm_forecast import data
from lstm_forecast.bundle import list_runs, resolve_runs_dir
from lstm_forecast.config import Config
from lstm_forecast.errors import UsageError, quote, shorten
from lstm_forecast.files import read_bounded
from lstm_forecast.model import check_trainable
from lstm_forecast.runs import global_runs_by_ticker
from lstm_forecast.yahoo import DATA_DIR_ENV

TICKERS_FILE_LIMIT = 1 << 20  # a list of a few thousand symbols is kilobytes
SHOWN_OFFENDERS = 5  # invalid names quoted in the one error line; the rest are counted
# Tickers one command takes: a universe trains a model each, and every US-listed stock is about 6,000 (a 1 MB
# tickers file could name some 150,000).
MAX_SELECTED = 10_000


@dataclass(frozen=True)
class Selection:
    tickers: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class Plan:
    """What a command over tickers will work on, all checked before any work starts."""

    tickers: list[str]
    warnings: list[str]
    data_dir: Path | None  # None: each run's own (evaluate resolves it against the run's config)
    runs_dir: Path


def plan_training(
    config: Config, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    runs_dir: Path | None,
) -> Plan:
    """The config's model checked against this machine's memory, then every ticker, then the folders, in the
    order a single `train` checks them (`--all` needs the data dir to list its tickers)."""
    check_trainable(config)
    selection, folder = select_in_data_dir(config, given, tickers_file, all_cached, data_dir)
    # A folder named (--data-dir, $LSTM_FORECAST_DATA_DIR, data.dir) that is not there is a typo far more often
    # than a wish to download every ticker into a new folder: said, not acted on. ./data is made on first fetch,
    # and `fetch` makes the folder it is given.
    if (data_dir is not None or os.environ.get(DATA_DIR_ENV) or config.data.dir) and not folder.is_dir():
        shown = shorten(str(folder), 100)
        raise UsageError(f"data dir {shown}: no such folder; correct the path, or fetch into it first "
                         f"(lstm-forecast fetch -t TICKER --data-dir {shown})")
    return Plan(selection.tickers, selection.warnings, folder, resolve_runs_dir(runs_dir, config.runs.dir))


def select_in_data_dir(
    config: Config, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None
) -> tuple[Selection, Path]:
    """The tickers and the data dir they are cached in (resolved first only for --all, which lists it: a bad
    ticker is reported before a bad data dir, as a single command always did)."""
    selection = select_tickers(given, tickers_file, all_cached, data_dir, config.data.dir)
    return selection, data.resolve_data_dir(data_dir, config.data.dir)


def plan_evaluation(
    run: Path | None, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    runs_dir: Path | None,
) -> Plan:
    """The tickers whose newest runs `evaluate` judges (a given --run names one run: never with tickers)."""
    selection = select_tickers(given, tickers_file, all_cached, data_dir)
    if run is not None:
        raise UsageError("give --run or --ticker, not both (--run names one ticker's run already)")
    # The data dir stays as given: each run resolves it against its own config, as a single evaluate does.
    return Plan(selection.tickers, selection.warnings, data_dir, resolve_runs_dir(runs_dir, None))


def select_tickers(
    given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None = None,
    config_dir: str | None = None,
) -> Selection:
    """The tickers named by `-t` (comma lists allowed), `--tickers-file` and `--all` (the tickers cached in the
    data dir: `data_dir`, else the environment's, `config_dir` or ./data), in that order, each once."""
    names = [name.strip() for value in given for name in value.split(",") if name.strip()]
    if tickers_file is not None:
        names += read_tickers_file(tickers_file)
    if all_cached:
        folder = data.resolve_data_dir(data_dir, config_dir)
        cached = cached_tickers(folder)
        if not cached:
            raise UsageError(f"--all: no cached prices in {folder}; fetch some first (lstm-forecast fetch -t …)")
        names += cached
    if not names:
        raise UsageError("no tickers: give -t TICKER (repeatable, or a comma list), --tickers-file FILE or --all")
    valid, invalid, errors = [], [], []
    for name in names:
        try:
            valid.append(data.validate_ticker(name))
        except UsageError as exc:
            invalid.append(name)
            errors.append(exc)
    if len(invalid) == 1:
        raise errors[0]  # one bad name: the message a single ticker gets, which says what a symbol looks like
    if invalid:
        shown = ", ".join(quote(name) for name in invalid[:SHOWN_OFFENDERS])
        more = f" and {len(invalid) - SHOWN_OFFENDERS} more" if len(invalid) > SHOWN_OFFENDERS else ""
        raise UsageError(
            f"{len(invalid)} invalid ticker{'s' * (len(invalid) != 1)}: {shown}{more}; expected Yahoo Finance "
            "symbols such as TSLA, ^GSPC, BRK-B"
        )
    unique = list(dict.fromkeys(valid))
    if len(unique) > MAX_SELECTED:
        raise UsageError(f"{len(unique):,} tickers: at most {MAX_SELECTED:,} in one command (every US-listed stock "
                         "is about 6,000); split the list")
    repeated = sorted(name for name, count in Counter(valid).items() if count > 1)
    warnings = [f"dropped repeated tickers: {', '.join(repeated)}"] if repeated else []
    return Selection(unique, warnings)


def select_forecast_tickers(
    given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None, runs_dir: Path | None,
    run: Path | None,
) -> Selection:
    """`predict`'s tickers: as `select_tickers`, except that `--all` without `--run` means every ticker with a
    trained run in the runs dir (its own or a global run's), not every cached one: a cached ticker nobody trained
    has nothing to forecast with. With `--run`, `--all` is every cached ticker, which a global run may forecast
    unseen."""
    if not all_cached or run is not None:
        return select_tickers(given, tickers_file, all_cached, data_dir)
    folder = resolve_runs_dir(runs_dir, None)
    trained = tickers_with_runs(folder)
    if not trained:
        raise UsageError(f"--all: no trained runs in {folder}; train some first (lstm-forecast train -t …)")
    return select_tickers([*given, ",".join(trained)], tickers_file, False, data_dir)


def tickers_with_runs(runs_dir: Path) -> list[str]:
    """Every ticker with a run of its own or in a global run in `runs_dir`, sorted."""
    own = {run.parent.name for run in list_runs(runs_dir)}
    names = set()
    for name in own | set(global_runs_by_ticker(runs_dir)):
        try:
            names.add(data.validate_ticker(name))
        except UsageError:
            continue  # a folder that is not a ticker's
    return sorted(names)


def read_tickers_file(path: Path) -> list[str]:
    """One ticker per line (blank lines and # comments ignored), or a CSV with a `ticker` or `symbol` column."""
    try:
        text = read_bounded(path, TICKERS_FILE_LIMIT, "a tickers file", UsageError).decode("utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"--tickers-file {path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--tickers-file {path}: not UTF-8 text") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if lines and "," in lines[0]:
        # Plain rows, not DictReader: a row wider or narrower than the header is read by position all the same.
        header, *rows = csv.reader(io.StringIO("\n".join(lines)))
        names = [name.strip().lower() for name in header]
        column = next((names.index(key) for key in ("ticker", "symbol") if key in names), None)
        if column is None:
            raise UsageError(f"--tickers-file {path}: a CSV needs a `ticker` or `symbol` column")
        return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    return lines


def cached_tickers(data_dir: Path) -> list[str]:
    """Every ticker with a price cache in `data_dir`, sorted (a folder of Yahoo CSVs counts)."""
    if not data_dir.is_dir():
        return []
    names = []
    for path in sorted(data_dir.glob("*.csv")):
        try:
            names.append(data.validate_ticker(path.stem))
        except UsageError:
            continue  # not a cache file of ours (README.csv, notes.csv)
    return names


