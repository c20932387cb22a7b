"""The local price cache: one CSV per ticker, read validated and replaced atomically under a lock.

The cache is `<data-dir>/<TICKER>.csv` in Yahoo's own layout plus an optional `<TICKER>.meta.json`
sidecar (source, fetch time, requested range, rows, sha256), so a folder of Yahoo CSVs is already
a cache. Nothing is written that would not pass `prices`' validation when read back.

`fetch_many` brings many caches up to date politely: one ticker at a time, at a pace, waiting out Yahoo's
rate limiting, each ticker's failure its own.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast import quality, yahoo
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError, quote
from lstm_forecast.files import (
    FILE_MODE,
    atomic_write_bytes,
    atomic_write_text,
    json_text,
    open_regular,
    read_bounded,
)
from lstm_forecast.prices import COLUMNS, PRICE_FIELDS, parse_prices_csv, prices_sha256, prices_to_csv, read_prices_csv
from lstm_forecast.sessions import TradingCalendar
from lstm_forecast.yahoo import DATA_DIR_ENV

try:
    import fcntl
except ImportError:  # Windows: filelock's lock instead, whose lock file stays behind
    fcntl = None

log = logging.getLogger(__name__)

# Yahoo symbols: TSLA, ^GSPC, BRK-B, 0700.HK, EURUSD=X. The caret may only lead, and the rest must
# start with a letter or digit, so a name is never "." or ".." and never a hidden file.
TICKER_PATTERN = re.compile(r"\^?[A-Za-z0-9][A-Za-z0-9.=_-]*")
MAX_TICKER_LENGTH = 20

DEFAULT_DATA_DIR = "data"
DEFAULT_CALENDAR = "XNYS"  # config.DataConfig.calendar's default: the sessions a history is checked against

# prices.validate_prices' words for the rows it dropped without prices: how many, and the first one's date.
EMPTY_ROWS_WARNING = re.compile(r"dropped (\d+) row\(s\) without Close/Adj Close \(first (\d{4}-\d{2}-\d{2})\)")

# An update re-downloads the last few cached days: if Yahoo now reports different prices for them,
# it has re-adjusted the history (split or dividend) and the whole range must be fetched again.
OVERLAP_ROWS = 5
OVERLAP_RTOL = 1e-6

LOCK_TIMEOUT_S = 120
LOCK_POLL_S = 0.05
MAX_SIDECAR_BYTES = 64 * 1024

# Yahoo's "too many requests" lasts a while: a ticker refused gets two more tries, after these waits.
RETRY_WAITS_S = (10.0, 30.0)


@dataclass(frozen=True)
class FetchSummary:
    """What `fetch` did to one ticker's cache."""

    ticker: str
    path: Path
    rows: int
    first: date
    last: date
    mode: str  # "full", "incremental", "redownload", "import" or "unchanged"
    new_rows: int
    warnings: list[str]
    messages: list[str]


# ---------------------------------------------------------------------------------------------
# Tickers and paths


def validate_ticker(ticker: str) -> str:
    """The upper-cased ticker, or UsageError when it is not a plausible Yahoo symbol."""
    if len(ticker) > MAX_TICKER_LENGTH or not TICKER_PATTERN.fullmatch(ticker):
        shown = ticker if len(ticker) <= 30 else ticker[:30] + "…"
        raise UsageError(
            f"invalid ticker {shown!r}: expected a Yahoo Finance symbol of at most {MAX_TICKER_LENGTH} "
            "letters, digits and . - = _ (optionally after ^), e.g. TSLA, ^GSPC, BRK-B"
        )
    return ticker.upper()


def cache_name(ticker: str) -> str:
    """The ticker's file and folder name: the validated symbol itself, caret included, so that `^GSPC` and
    `GSPC` (two Yahoo symbols) never share a cache or a runs folder. TICKER_PATTERN keeps it a safe name."""
    return validate_ticker(ticker)


def cache_path(data_dir: Path, ticker: str) -> Path:
    return Path(data_dir) / f"{cache_name(ticker)}.csv"


def _legacy_path(data_dir: Path, ticker: str) -> Path | None:
    """`GSPC.csv` for `^GSPC`: the name older versions and plain Yahoo downloads use (None without a caret)."""
    return Path(data_dir) / f"{ticker[1:]}.csv" if ticker.startswith("^") else None


def _cache_file(data_dir: Path, ticker: str) -> Path:
    """The file holding `ticker`'s cached prices, which may not exist.

    `^GSPC` reads `^GSPC.csv`; without one, a legacy `GSPC.csv` whose sidecar names ^GSPC or that has no
    sidecar (a folder of Yahoo downloads), with a note. A file whose sidecar names another ticker is never
    read as this one's: `GSPC` refuses a `GSPC.csv` that holds ^GSPC.
    """
    path = cache_path(data_dir, ticker)
    legacy = _legacy_path(data_dir, ticker)
    if not path.is_file() and legacy is not None and legacy.is_file() and _sidecar_ticker(legacy) in (None, ticker):
        _note_legacy_file(ticker, legacy, path)
        return legacy
    _check_owner(path, ticker)
    return path


@functools.cache
def _note_legacy_file(ticker: str, legacy: Path, path: Path) -> None:
    """Say once per process (a command reads a cache more than once) which legacy file stands in."""
    log.warning(f"Note: reading {ticker} from {legacy} (the name without the caret); the next fetch writes {path}")


def _check_owner(path: Path, ticker: str) -> None:
    """ForecastError when `path` exists and its sidecar says it holds another ticker's prices."""
    owner = _sidecar_ticker(path) if path.is_file() else None
    if owner not in (None, ticker):
        raise ForecastError(
            f"{path} holds the prices of {quote(owner)} (its sidecar {_meta_path(path).name} says so), not of "
            f"{ticker}; move both files aside (for {quote(owner)}, rename them to its own name) and try again"
        )


def _meta_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".meta.json")


def resolve_data_dir(cli_dir: str | Path | None, config_dir: str | None) -> Path:
    """`--data-dir` > $LSTM_FORECAST_DATA_DIR > config `data.dir` > ./data (created on first write)."""
    env_dir = os.environ.get(DATA_DIR_ENV)
    if cli_dir:
        origin, chosen = "--data-dir", str(cli_dir)
    elif env_dir:
        origin, chosen = DATA_DIR_ENV, env_dir
    elif config_dir:
        origin, chosen = "data.dir", config_dir
    else:
        origin, chosen = "default data dir", DEFAULT_DATA_DIR
    path = Path(chosen).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{origin} {path} is a file, not a folder; give a folder for the price cache")
    return path


# ---------------------------------------------------------------------------------------------
# The cache


def cache_file(data_dir: Path, ticker: str) -> Path:
    """The file `read_cache` reads for `ticker` (a legacy name included, see `_cache_file`); it may not exist."""
    return _cache_file(data_dir, validate_ticker(ticker))


def has_cache(data_dir: Path, ticker: str) -> bool:
    """Whether `ticker` has a cache file (read_cache would not return None), without reading it."""
    return cache_file(data_dir, ticker).exists()


def read_cache(data_dir: Path, ticker: str, calendar: str = DEFAULT_CALENDAR) -> pd.DataFrame | None:
    """The cached prices (validated, then cut by the data-quality rules, see `read_checked`), or None when there
    is no cache file for `ticker`."""
    checked = read_checked(data_dir, ticker, calendar=calendar)
    return None if checked is None else checked.rows


def read_checked(
    data_dir: Path, ticker: str, start: date | None = None, end: date | None = None, calendar: str = DEFAULT_CALENDAR
) -> quality.Checked | None:
    """The one reader of cached prices for a run: the rows from `start` to `end` after the data-quality rules
    (quality.check_prices against `calendar`'s sessions), with what the rules found; None when there is no
    cache file. ForecastError when the rows are unreadable, none are in the range or the rules refuse them.

    Train, evaluate, predict and the context series all read here, so all use the same rows: a history cut
    after a level break is cut alike for the run and for every forecast from it."""
    ticker = validate_ticker(ticker)
    path = _cache_file(data_dir, ticker)
    if not path.exists():
        return None
    prices, warnings_ = _read_cached_csv(path, ticker)
    sliced = _in_range(prices, start, end)
    if sliced.empty:
        raise ForecastError(
            f"no cached prices for {ticker} from {start or 'the start'} to {end or 'the end'}; "
            f"the cache covers {prices.index[0].date()} to {prices.index[-1].date()}"
        )
    return check_quality(sliced, ticker, calendar, warnings_)


def check_quality(
    prices: pd.DataFrame, ticker: str, calendar: str = DEFAULT_CALENDAR, read_warnings: Sequence[str] = ()
) -> quality.Checked:
    """quality.check_prices on validated rows, against `calendar`'s sessions, counting the empty rows the
    reader's `read_warnings` say it dropped."""
    empty = next((match for text in read_warnings if (match := EMPTY_ROWS_WARNING.search(text))), None)
    first, last = prices.index[0].date(), prices.index[-1].date()
    return quality.check_prices(
        prices, ticker, _session_days(calendar, first.year, last.year),
        empty_rows=int(empty.group(1)) if empty else 0,
        first_empty=date.fromisoformat(empty.group(2)) if empty else None,
    )


@functools.lru_cache(maxsize=16)
def _session_days(calendar: str, first_year: int, last_year: int) -> np.ndarray | None:
    """The exchange's sessions over whole years (a universe's tickers share their years: built once), or None
    where the calendar does not reach (then weekdays are counted instead)."""
    try:
        return TradingCalendar(calendar, date(first_year, 1, 1), date(last_year, 12, 31)).sessions
    except (ForecastError, UsageError):
        return None


def _read_cache_file(data_dir: Path, ticker: str) -> tuple[pd.DataFrame | None, Path]:
    """The cached prices as stored, before the data-quality rules (None: no cache), and the file they were read
    from (see `_cache_file`): what an update compares and rewrites."""
    path = _cache_file(data_dir, ticker)
    if not path.exists():
        return None, path
    return _read_cached_csv(path, ticker)[0], path


def _read_cached_csv(path: Path, ticker: str) -> tuple[pd.DataFrame, list[str]]:
    """A cache file's validated rows and the reader's warnings; unreadable is an error saying how to mend it."""
    try:
        return read_prices_csv(path)
    except ForecastError as exc:
        raise ForecastError(
            f"{exc} (the cached prices; run `lstm-forecast fetch -t {ticker} --refresh` to download them again)"
        ) from None


def load_prices(
    data_dir: Path, ticker: str, start: date | None = None, end: date | None = None, calendar: str = DEFAULT_CALENDAR
) -> pd.DataFrame:
    """The cached prices from `start` to `end` inclusive after the data-quality rules (`read_checked`);
    ForecastError when there are none."""
    return load_checked(data_dir, ticker, start, end, calendar).rows


def load_checked(
    data_dir: Path, ticker: str, start: date | None = None, end: date | None = None, calendar: str = DEFAULT_CALENDAR
) -> quality.Checked:
    """`read_checked`, with ForecastError when there is no cache."""
    ticker = validate_ticker(ticker)
    checked = read_checked(data_dir, ticker, start, end, calendar)
    if checked is None:
        raise ForecastError(
            f"no cached prices for {ticker} in {data_dir}; run `lstm-forecast fetch -t {ticker}` "
            f"(or `lstm-forecast fetch -t {ticker} --from-csv FILE`) first"
        )
    return checked


def update_cache(
    data_dir: Path, ticker: str, start: date | None = None, end: date | None = None, refresh: bool = False,
    stop: StopRequest | None = None,
) -> FetchSummary:
    """Bring the cache up to date from Yahoo Finance.

    No cache (or `refresh`): download `start`..`end`. Otherwise download only from a few days before
    the last cached one, and download everything again when those overlapping days disagree (Yahoo
    re-adjusted the history) or when `start` asks for earlier history than the cache holds. Once `stop`
    is set, a download in progress is abandoned (`Interrupted`) and the cache stays as it was.
    """
    ticker = validate_ticker(ticker)
    download = functools.partial(yahoo.download, stop=stop)
    yahoo.check_range(start, end)  # here too: a range the cache already covers would never reach a download
    path = cache_path(data_dir, ticker)
    _check_owner(path, ticker)
    with _writing(path, stop):
        cached, read_from = (None, path) if refresh else _read_cache_file(data_dir, ticker)
        if cached is None:
            prices, warnings_ = download(ticker, start, end)
            return _store(path, ticker, prices, warnings_, [], "full", len(prices), start, end)

        first_cached, last_cached = cached.index[0].date(), cached.index[-1].date()
        covered_from = _covered_from(read_from, cached)
        # No start on an existing cache means "bring it up to date", not "all history again".
        wanted_from = covered_from if start is None else _earliest(start, covered_from)
        through = None if end is None else max(end, last_cached)
        if wanted_from != covered_from:
            prices, warnings_ = download(ticker, wanted_from, through)
            note = f"the cache started on {first_cached}; downloaded {ticker} again from {wanted_from}"
            new_rows = _count_new(prices, cached)
            return _store(path, ticker, prices, warnings_, [note], "full", new_rows, wanted_from, through)
        if end is not None and end <= last_cached:
            return _summary(read_from, ticker, cached, "unchanged", 0, [], [])

        overlap_from = cached.index[-OVERLAP_ROWS:][0].date()
        fresh, warnings_ = download(ticker, overlap_from, end)
        if _history_changed(cached, fresh):
            prices, warnings_ = download(ticker, wanted_from, through)
            note = (
                f"Yahoo Finance has re-adjusted {ticker}'s past prices since they were cached "
                "(a split or dividend); downloaded the whole range again"
            )
            new_rows = _count_new(prices, cached)
            return _store(path, ticker, prices, warnings_, [note], "redownload", new_rows, wanted_from, through)

        # Fresh rows win on the overlap: the last cached day may have been an unfinished session.
        prices = pd.concat([cached[cached.index < fresh.index[0]], fresh])
        new_rows = _count_new(prices, cached)
        # A legacy cache (GSPC.csv for ^GSPC) is carried over into the ticker's own file even when unchanged.
        mode = "incremental" if new_rows or not prices.equals(cached) or read_from != path else "unchanged"
        return _store(path, ticker, prices, warnings_, [], mode, new_rows, wanted_from, end)


def fetch_many(
    data_dir: Path, tickers: list[str], rate: float, start: date | None = None, end: date | None = None,
    refresh: bool = False, stop: StopRequest | None = None, on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """`update_cache` for each ticker in turn, at most `rate` tickers started a second: the report of `fetch`
    over several tickers, with one row per ticker fetched, in the order given (its cache, or why it failed).

    Yahoo's rate limiting is waited out and the ticker tried again (RETRY_WAITS_S); a ticker that still fails
    is reported and the next one fetched. Once `stop` is set, waits and downloads end and the tickers left are
    not fetched: each cache written so far was written whole (atomically), the one being fetched is unchanged.
    `on_row` hears each row as its ticker finishes."""
    yahoo.check_range(start, end)  # once, not as every ticker's failure
    pace = Pace(rate, stop or threading.Event())
    rows: list[dict[str, Any]] = []
    for ticker in tickers:
        try:
            row = fetch_row(ticker, _update_politely(data_dir, ticker, start, end, refresh, pace))
        except Interrupted:
            break
        except ForecastError as exc:
            row = fetch_row(ticker, error=" ".join(str(exc).split()))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return fetch_report(data_dir, tickers, rows, interrupted=pace.stop.is_set())


def fetch_row(ticker: str, summary: FetchSummary | None = None, error: str | None = None) -> dict[str, Any]:
    """One ticker's row in `fetch`'s report: its cache after the fetch, or (no summary) the reason it failed."""
    row: dict[str, Any] = {"ticker": ticker, "status": "failed" if summary is None else "ok", "path": None,
                           "rows": None, "first": None, "last": None, "new_rows": None, "mode": None,
                           "warnings": [], "messages": [], "error": error}
    if summary is not None:
        row.update(path=str(summary.path), rows=summary.rows, first=summary.first.isoformat(),
                   last=summary.last.isoformat(), new_rows=summary.new_rows, mode=summary.mode,
                   warnings=summary.warnings, messages=summary.messages)
    return row


def fetch_report(
    data_dir: Path, tickers: list[str], rows: list[dict[str, Any]], interrupted: bool = False
) -> dict[str, Any]:
    """What `fetch --json` prints: the totals, the failures and every ticker's row."""
    fetched = [row for row in rows if row["status"] == "ok"]
    return {
        "data_dir": str(data_dir),
        "tickers": len(tickers),
        "fetched": len(fetched),
        "new_rows": sum(row["new_rows"] for row in fetched),
        "failed": [{"ticker": row["ticker"], "error": row["error"]} for row in rows if row["status"] == "failed"],
        "not_fetched": tickers[len(rows):],
        "interrupted": interrupted,
        "rows": rows,
    }


class Pace:
    """At most `rate` downloads started a second; every wait ends, with `Interrupted`, once `stop` is set."""

    def __init__(self, rate: float, stop: StopRequest) -> None:
        self.interval, self.stop, self.last_start = 1 / rate, stop, -math.inf

    def turn(self) -> None:
        """Wait until the next download may start."""
        self.wait(self.last_start + self.interval - time.monotonic())
        self.last_start = time.monotonic()

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, yahoo.STOP_POLL_S))
        raise Interrupted("interrupted")


def _update_politely(
    data_dir: Path, ticker: str, start: date | None, end: date | None, refresh: bool, pace: Pace
) -> FetchSummary:
    """`update_cache` in its turn, tried again after each wait of RETRY_WAITS_S while Yahoo rate limits."""
    waits = iter(RETRY_WAITS_S)
    tries = 1
    while True:
        pace.turn()
        try:
            summary = update_cache(data_dir, ticker, start, end, refresh, pace.stop)
            break
        except yahoo.RateLimited:
            wait = next(waits, None)
            if wait is None:
                raise
            pace.wait(wait)
            tries += 1
    if tries == 1:
        return summary
    note = f"Yahoo Finance rate limited {ticker}; fetched at try {tries}"
    return replace(summary, messages=[*summary.messages, note])


def import_csv(
    csv_path: Path, data_dir: Path, ticker: str, start: date | None = None, end: date | None = None,
    replace_rows: bool = False,
) -> FetchSummary:
    """Validate a local CSV and make its rows from `start` to `end` (inclusive) `ticker`'s cache, replacing
    any cached prices; importing the prices already cached changes nothing. A file whose ticker column (Name,
    Ticker or Symbol) names another ticker is refused, and so is an import that would drop cached rows (days the
    file lacks) unless `replace_rows` says to (`--replace`)."""
    ticker = validate_ticker(ticker)
    yahoo.check_range(start, end)
    csv_path = Path(csv_path)
    prices, warnings_ = read_prices_csv(csv_path)  # a regular file of bounded size, or one error line
    check_named_ticker(csv_path, ticker)
    sliced = _in_range(prices, start, end)
    if sliced.empty:
        raise ForecastError(
            f"{csv_path}: no rows from {start or 'the start'} to {end or 'the end'}; "
            f"the file covers {prices.index[0].date()} to {prices.index[-1].date()}"
        )
    path = cache_path(data_dir, ticker)
    _check_owner(path, ticker)
    with _writing(path):
        try:
            cached, read_from = _read_cache_file(data_dir, ticker)
        except ForecastError:  # a damaged cache is what an import is for
            cached, read_from = None, path
        requested_start = start or sliced.index[0].date()  # the range this cache now covers, not the file's
        source_file = str(csv_path.resolve())
        if cached is None:
            return _store(path, ticker, sliced, warnings_, [], "import", len(sliced), requested_start, end,
                          "csv", source_file)
        new_rows = _count_new(sliced, cached)
        dropped = cached.index.difference(sliced.index) if read_from == path else cached.index[:0]
        if len(dropped) and not replace_rows:
            raise UsageError(
                f"--from-csv {quote(str(csv_path), 60)}: importing it would drop {len(dropped):,} of the "
                f"{len(cached):,} cached {ticker} rows ({dropped[0].date()} … {dropped[-1].date()} are not in the "
                "file); add --replace to make the file's rows the cache"
            )
        if read_from == path and sliced.equals(cached):
            if (_read_sidecar(path) or {}).get("sha256") == prices_sha256(cached):
                return _summary(path, ticker, cached, "unchanged", 0, warnings_, [])
            return _store(path, ticker, sliced, warnings_, [], "unchanged", 0, requested_start, end, "csv", source_file)
        messages = [f"replaced the cached prices in {path}"
                    + (f" ({len(dropped):,} cached rows the file lacks dropped, as --replace asked)" if len(dropped)
                       else "")] if read_from == path else []
        return _store(path, ticker, sliced, warnings_, messages, "import", new_rows, requested_start, end,
                      "csv", source_file)


TICKER_COLUMNS = ("name", "ticker", "symbol")  # how a CSV with one ticker's rows names that ticker
TICKER_SNIFF_BYTES = 1 << 16  # the header and the first rows say whose prices a file holds


def check_named_ticker(csv_path: Path, ticker: str) -> None:
    """UsageError when the CSV has a ticker column (Name, Ticker or Symbol, any case) naming another ticker in its
    first rows: importing SPY's rows as AAPL's would fool every later command."""
    try:
        with open_regular(csv_path, ForecastError, "a daily price CSV") as handle:  # never blocks on a FIFO
            head = handle.read(TICKER_SNIFF_BYTES).decode("utf-8-sig", "replace")
    except OSError:
        return  # read_prices_csv read it a moment ago: a file gone since is its writer's business
    try:
        header, *rows = list(csv.reader(io.StringIO(head)))[:-1] or [[]]  # the last row may be cut short
    except csv.Error:
        return  # not a CSV: read_prices_csv says so
    names = [name.strip().lower() for name in header]
    column = next((names.index(name) for name in TICKER_COLUMNS if name in names), None)
    if column is None:
        return
    named = {row[column].strip().upper() for row in rows if len(row) > column and row[column].strip()}
    others = sorted(named - {ticker.upper(), ticker.upper().lstrip("^")})
    if others:
        raise UsageError(f"--from-csv {quote(str(csv_path), 60)}: its {header[column].strip()} column names "
                         f"{', '.join(quote(name, 20) for name in others[:3])}, not {ticker}; import it as that "
                         "ticker")


def _store(
    path: Path,
    ticker: str,
    prices: pd.DataFrame,
    warnings_: list[str],
    messages: list[str],
    mode: str,
    new_rows: int,
    start: date | None,
    end: date | None,
    source: str = "yahoo",
    source_file: str | None = None,
) -> FetchSummary:
    """Write the CSV and its sidecar (each atomically) and summarise.

    A cache is valid without its sidecar, so failing to write the sidecar (disk full) is a warning, not an
    error after the prices were replaced; a process killed between the two writes leaves a stale sidecar,
    which `_covered_from` ignores.
    """
    payload = _checked_csv(prices, path)
    if mode != "unchanged":
        atomic_write_bytes(path, payload)
    meta = {
        "ticker": ticker,
        "source": source,
        **({"source_file": source_file} if source_file else {}),
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requested": {"start": _iso(start), "end": _iso(end)},
        "first": _iso(prices.index[0].date()),
        "last": _iso(prices.index[-1].date()),
        "rows": len(prices),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    try:
        atomic_write_text(_meta_path(path), json_text(meta))
    except ForecastError as exc:
        if mode != "unchanged":  # the old sidecar describes the old prices: it must not stay beside the new
            with contextlib.suppress(OSError):
                _meta_path(path).unlink()
        warnings_ = [*warnings_, f"{exc}; the cache is usable without it"]
    return _summary(path, ticker, prices, mode, new_rows, warnings_, messages)


def _checked_csv(prices: pd.DataFrame, path: Path) -> bytes:
    """The canonical CSV bytes of `prices`, read back through the cache's own reader first: the last line of
    defence against writing a cache that every later command would refuse."""
    payload = prices_to_csv(prices)
    try:
        reread, _ = parse_prices_csv(payload, str(path))
        same = reread.index.equals(prices.index) and np.array_equal(reread.to_numpy(), prices[COLUMNS].to_numpy())
        problem = None if same else "they read back different"
    except ForecastError as exc:
        problem = str(exc)
    if problem is not None:
        raise ForecastError(f"refused to write {path}, which would not read back as written ({problem}); "
                            "the cache was left as it was")
    return payload


def _summary(
    path: Path, ticker: str, prices: pd.DataFrame, mode: str, new_rows: int, warnings_: list[str], messages: list[str]
) -> FetchSummary:
    """What a fetch did, its warnings ending with what the data-quality rules will do to the cached rows (the
    reader's own warnings, an empty-row count among them, are in `warnings_` already)."""
    return FetchSummary(
        ticker=ticker,
        path=path,
        rows=len(prices),
        first=prices.index[0].date(),
        last=prices.index[-1].date(),
        mode=mode,
        new_rows=new_rows,
        warnings=[*warnings_, *_quality_warnings(prices, ticker)],
        messages=messages,
    )


def _quality_warnings(prices: pd.DataFrame, ticker: str) -> list[str]:
    """The data-quality rules' findings on freshly cached rows, in words (a refusal too: fetch keeps the rows,
    and says that no run will use them)."""
    try:
        checked = check_quality(prices, ticker)
    except ForecastError as exc:
        return [f"{exc} by every run that reads them (the cache keeps them as fetched)"]
    return [f"{ticker}: {note}" for note in checked.notes]


def _history_changed(cached: pd.DataFrame, fresh: pd.DataFrame) -> bool:
    """Do the re-downloaded overlap days disagree with the cache beyond float rounding?"""
    common = cached.index.intersection(fresh.index)
    if common.empty:
        return True
    # The last cached day is left out: it may have been cached mid-session, before the close.
    settled = common[common < cached.index[-1]]
    then = cached.loc[settled, PRICE_FIELDS].to_numpy()
    now = fresh.loc[settled, PRICE_FIELDS].to_numpy()
    return not np.allclose(now, then, rtol=OVERLAP_RTOL, atol=0.0)


def _covered_from(path: Path, cached: pd.DataFrame) -> date | None:
    """The start the cache was built for: the sidecar's requested start (None: all of Yahoo's history),
    or the first cached day when no readable sidecar describes exactly the cached rows (a CSV replaced
    by hand, or a write cut short between the sidecar and the CSV)."""
    first_cached = cached.index[0].date()
    meta = _read_sidecar(path) or {}
    try:
        if meta.get("sha256") != prices_sha256(cached):
            return first_cached
        requested = meta["requested"]["start"]
        return None if requested is None else date.fromisoformat(requested)
    except (ValueError, KeyError, TypeError):
        return first_cached


def _read_sidecar(csv_path: Path) -> dict[str, Any] | None:
    """The sidecar's fields, or None when there is none or it is damaged (too large, not JSON, nested too
    deep, a 5000-digit number...): it is optional metadata, so a bad one counts as absent, never as an error,
    and the next fetch replaces it."""
    try:
        meta = json.loads(read_bounded(_meta_path(csv_path), MAX_SIDECAR_BYTES, "a small JSON sidecar"))
    except (FileNotFoundError, ForecastError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _sidecar_ticker(csv_path: Path) -> str | None:
    """The ticker a readable sidecar says the CSV holds (None: no sidecar, or no ticker in it)."""
    ticker = (_read_sidecar(csv_path) or {}).get("ticker")
    return ticker if isinstance(ticker, str) else None


def _earliest(first: date | None, second: date | None) -> date | None:
    """The earlier start, where None means "from the beginning"."""
    return None if first is None or second is None else min(first, second)


def _count_new(prices: pd.DataFrame, cached: pd.DataFrame) -> int:
    return len(prices.index.difference(cached.index))


@contextlib.contextmanager
def _writing(path: Path, stop: StopRequest | None = None) -> Iterator[None]:
    """Create the cache's folder and hold its lock (waiting for it until `stop` is set); when the update fails,
    remove the folders this created (while still empty), so a failed first fetch into a new data dir leaves
    nothing behind."""
    folder = path.parent
    created = [each for each in (folder, *folder.parents) if not each.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ForecastError(
            f"cannot create the data folder {folder}: {exc.strerror or exc}; choose another with --data-dir"
        ) from None
    try:
        with _cache_lock(path, stop):
            yield
    except BaseException:
        for each in created:
            with contextlib.suppress(OSError):  # not empty: another process has written there meanwhile
                each.rmdir()
        raise


@contextlib.contextmanager
def _cache_lock(path: Path, stop: StopRequest | None = None) -> Iterator[None]:
    """Serialise read-modify-write of one cache file across processes: an flock on `<TICKER>.csv.lock`,
    which is removed on release.

    One lock file per ticker, not one for the folder, so that fetches of different tickers run in parallel.
    Removing it is safe because a waiter that wins the lock on a file no longer linked at that path (its
    holder removed it on release) lets go and tries again. The kernel drops a killed holder's lock, so the
    file a kill leaves behind never blocks anyone; the next writer removes it.
    """
    lock_path = Path(f"{path}.lock")
    if fcntl is None:
        yield from _portable_lock(lock_path, path)
        return
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise ForecastError(
                f"cannot write in {path.parent}: {exc.strerror or exc}; choose a writable folder with --data-dir"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _names(lock_path, fd):
                break
        except BlockingIOError:
            pass  # held by another writer
        except OSError as exc:  # a file system without locks
            os.close(fd)
            raise ForecastError(f"cannot lock {lock_path}: {exc.strerror or exc}; choose another --data-dir") from None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted")  # while another process held the lock: nothing was written
        if time.monotonic() > deadline:
            raise ForecastError(
                f"another lstm-forecast process has been updating {path} for {LOCK_TIMEOUT_S} s; try again later"
            )
        time.sleep(LOCK_POLL_S)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()  # while still holding the lock: see above
        os.close(fd)


def _portable_lock(lock_path: Path, path: Path) -> Iterator[None]:
    """Where there is no flock (Windows): filelock's lock on the same file, left in place on release."""
    import filelock

    try:
        with filelock.FileLock(lock_path, timeout=LOCK_TIMEOUT_S):
            yield
    except filelock.Timeout:
        raise ForecastError(
            f"another lstm-forecast process has been updating {path} for {LOCK_TIMEOUT_S} s; try again later"
        ) from None


def _names(path: Path, fd: int) -> bool:
    """Is the open file `fd` still the one linked at `path`?"""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _in_range(prices: pd.DataFrame, start: date | None, end: date | None) -> pd.DataFrame:
    """The rows from `start` to `end`, inclusive. A mask, not a label slice: a bound far outside the rows
    (1600-01-01, 9999-12-31) selects by date instead of raising."""
    keep = np.ones(len(prices), dtype=bool)
    if start is not None:
        keep &= prices.index >= pd.Timestamp(start)
    if end is not None:
        keep &= prices.index <= pd.Timestamp(end)
    return prices[keep]


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
