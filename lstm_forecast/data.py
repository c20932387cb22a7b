"""Daily prices: download from Yahoo Finance, validate, and keep a local CSV cache.

Everything downstream receives one canonical frame: a tz-naive `DatetimeIndex` named `Date`
(datetime64[ns], midnight, ascending, unique) and the float64 columns
`Open, High, Low, Close, Adj Close, Volume`.

The cache is `<data-dir>/<NAME>.csv` in Yahoo's own layout plus an optional `<NAME>.meta.json`
sidecar (source, fetch time, requested range, rows, sha256), so a folder of Yahoo CSVs is already
a cache. Floats are written in their shortest exact form and read back bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock
from filelock import Timeout as LockTimeout

from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.files import atomic_write_bytes, atomic_write_text

COLUMNS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
PRICE_COLUMNS = ["Open", "High", "Low", "Close", "Adj Close"]
YAHOO_LAYOUT = "Date," + ",".join(COLUMNS)

# Yahoo symbols: TSLA, ^GSPC, BRK-B, 0700.HK, EURUSD=X. The caret may only lead, and the rest must
# start with a letter or digit, so a name is never "." or ".." and never a hidden file.
TICKER_PATTERN = re.compile(r"\^?[A-Za-z0-9][A-Za-z0-9.=_-]*")
MAX_TICKER_LENGTH = 20

DATA_DIR_ENV = "LSTM_FORECAST_DATA_DIR"
DEFAULT_DATA_DIR = "data"

# An update re-downloads the last few cached days: if Yahoo now reports different prices for them,
# it has re-adjusted the history (split or dividend) and the whole range must be fetched again.
OVERLAP_ROWS = 5
OVERLAP_RTOL = 1e-6

# yfinance makes several requests per download (cookie, crumb, timezone, prices), its cookie
# requests with their own 30 s timeout; the deadline bounds the whole call on a black-holed network.
YAHOO_REQUEST_TIMEOUT_S = 10
YAHOO_DEADLINE_S = 30
LOCK_TIMEOUT_S = 120

# pandas 3 parses floats exactly and deprecates the option; pandas 2 needs to be asked.
_PANDAS_MAJOR = int(pd.__version__.split(".")[0])
_EXACT_FLOATS: dict[str, Any] = {} if _PANDAS_MAJOR >= 3 else {"float_precision": "round_trip"}

# Header spellings accepted on import, compared with case, spaces and punctuation removed.
_HEADER_ALIASES = {
    "date": "Date",
    "open": "Open",
    "high": "High",
    "low": "Low",
    "close": "Close",
    "adjclose": "Adj Close",
    "adjustedclose": "Adj Close",
    "adjusted": "Adj Close",
    "volume": "Volume",
}


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
    """The ticker made safe for a file name: `^GSPC` -> `GSPC`."""
    return validate_ticker(ticker).removeprefix("^")


def cache_path(data_dir: Path, ticker: str) -> Path:
    return Path(data_dir) / f"{cache_name(ticker)}.csv"


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
# Download


def fetch_prices(ticker: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """Daily prices from Yahoo Finance, `start` to `end` inclusive (None: all history / up to today)."""
    prices, _ = _download(validate_ticker(ticker), start, end)
    return prices


def _download(ticker: str, start: date | None, end: date | None) -> tuple[pd.DataFrame, list[str]]:
    """Download, normalise and validate; returns the canonical frame and validation warnings."""
    _check_range(start, end)
    import yfinance  # lazily: `predict` and `evaluate` never need it

    def history() -> pd.DataFrame:
        # Ticker.history rather than yf.download: download() swallows every error into an empty
        # frame, so a network failure would read as an unknown ticker. auto_adjust=False keeps
        # both Close and Adj Close; period="max" means "all history" when start is None.
        return yfinance.Ticker(ticker).history(
            period="max",
            start=start,
            end=end + timedelta(days=1) if end is not None else None,  # Yahoo's end is exclusive
            interval="1d",
            auto_adjust=False,
            actions=False,
            timeout=YAHOO_REQUEST_TIMEOUT_S,
        )

    try:
        with _quiet_yfinance(yfinance):
            raw = _call_with_deadline(history, YAHOO_DEADLINE_S)
    except Exception as exc:
        raise _explain_yahoo_failure(exc, ticker, start, end) from exc
    frame = _flatten_yahoo_frame(raw, ticker)
    if frame.dropna(how="all").empty:
        raise _no_prices_error(ticker, start, end, reason=None)
    return validate_prices(frame, f"Yahoo Finance prices for {ticker}")


def _check_range(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise UsageError(f"start {start} is after end {end}")


@contextlib.contextmanager
def _quiet_yfinance(yfinance: Any) -> Iterator[None]:
    """Make yfinance raise its errors instead of logging them, and keep its noise off the terminal."""
    logger = logging.getLogger("yfinance")
    level, hide_exceptions = logger.level, yfinance.config.debug.hide_exceptions
    logger.setLevel(logging.CRITICAL + 1)
    yfinance.config.debug.hide_exceptions = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation warnings and pandas' about its code
            yield
    finally:
        logger.setLevel(level)
        yfinance.config.debug.hide_exceptions = hide_exceptions


def _call_with_deadline(call: Callable[[], pd.DataFrame], seconds: float) -> pd.DataFrame:
    """Run `call` in a daemon thread and give up after `seconds` (TimeoutError).

    A daemon thread, not an executor: a request stuck on a dead network must not keep the
    process alive after the error has been reported.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="yahoo-download", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _explain_yahoo_failure(exc: Exception, ticker: str, start: date | None, end: date | None) -> ForecastError:
    """Turn yfinance's and curl_cffi's exceptions into one user-facing error with advice."""
    from yfinance.exceptions import YFException, YFRateLimitError, YFTickerMissingError

    # curl_cffi's HTTPError is an OSError too: look at the HTTP status before treating it as "offline".
    # (Its connection errors carry a response too, with status 0.)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    status = status if isinstance(status, int) and status >= 400 else None
    reason = _short_reason(exc)
    if isinstance(exc, YFRateLimitError) or status == 429:
        return ForecastError(
            f"Yahoo Finance is rate limiting requests from this computer (fetching {ticker}); "
            "wait a few minutes and try again, or import a CSV with --from-csv."
        )
    if isinstance(exc, YFTickerMissingError) or status == 404:
        return _no_prices_error(ticker, start, end, reason)
    if status is not None:
        return ForecastError(
            f"Yahoo Finance answered HTTP {status} for {ticker}; try again later, or import a CSV with --from-csv."
        )
    if isinstance(exc, OSError | YFException):
        return ForecastError(
            f"could not reach Yahoo Finance for {ticker} ({reason}). "
            f"Import a CSV with --from-csv or point {DATA_DIR_ENV} at cached prices."
        )
    return ForecastError(
        f"downloading {ticker} from Yahoo Finance failed unexpectedly ({type(exc).__name__}: {reason}); "
        "try again, or import a CSV with --from-csv."
    )


def _short_reason(exc: BaseException) -> str:
    """One short line: curl's own words without its boilerplate, yfinance's without the `$TICKER:`."""
    text = " ".join(str(getattr(exc, "rationale", None) or exc).split()) or type(exc).__name__
    curl = re.search(r"curl: \(\d+\) (.+?)\.?(?: See https?://.*)?$", text)
    if curl:
        text = curl.group(1)
    return text if len(text) <= 160 else text[:159] + "…"


def _no_prices_error(ticker: str, start: date | None, end: date | None, reason: str | None) -> ForecastError:
    span = f" from {start or 'the start'} to {end or 'today'}" if start or end else ""
    because = f" ({reason})" if reason else ""
    also = " and the date range" if span else ""
    return ForecastError(
        f"Yahoo Finance returned no prices for {ticker}{span}{because}; "
        f"check the symbol as Yahoo spells it (e.g. BRK-B, ^GSPC){also}."
    )


def _flatten_yahoo_frame(raw: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """Flat price columns from either yfinance shape.

    `yf.download` gives MultiIndex columns named ['Price', 'Ticker'] and a tz-naive index;
    `Ticker.history` gives flat columns (maybe Dividends, Stock Splits) and a tz-aware index,
    which `validate_prices` turns into the exchange's calendar days.
    """
    frame = raw
    if isinstance(frame.columns, pd.MultiIndex):
        if ticker in frame.columns.get_level_values("Ticker"):
            frame = frame.xs(ticker, axis=1, level="Ticker")
        else:
            frame = frame.droplevel("Ticker", axis=1)
    return frame[[column for column in COLUMNS if column in frame.columns]]


# ---------------------------------------------------------------------------------------------
# Validation


def validate_prices(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The canonical frame and a list of warnings; ForecastError (naming `source`) when unusable.

    `frame` holds dates in its index or in a `Date` column and at least a Close column.
    """
    warnings_: list[str] = []
    if "Date" in frame.columns:
        frame = frame.set_index("Date")
    if "Close" not in frame.columns:
        raise ForecastError(f"{source}: no Close column; expected the Yahoo layout {YAHOO_LAYOUT}")
    dates = _as_dates(frame.index, source)
    prices = pd.DataFrame(
        {column: _as_numbers(frame[column], column, dates, source) for column in COLUMNS if column in frame},
        index=dates,
    )

    # Missing columns: Adj Close falls back to Close, Open/High/Low too, Volume to 0.
    for column in COLUMNS:
        if column not in prices:
            prices[column] = 0.0 if column == "Volume" else prices["Close"].to_numpy()
            instead = "0" if column == "Volume" else "Close"
            warnings_.append(f"{source}: no {column} column; using {instead} instead")
    prices = prices[COLUMNS]

    # Sort (stable, so the file order decides among equal dates) and keep the last of duplicates,
    # which is the newest row in an appended file.
    prices = prices.iloc[np.argsort(prices.index.to_numpy(), kind="stable")]
    duplicated = prices.index.duplicated(keep="last")
    if duplicated.any():
        first = _day(prices.index[duplicated][0])
        warnings_.append(f"{source}: {duplicated.sum()} duplicate date(s) (first {first}); kept the last row of each")
        prices = prices[~duplicated]

    missing = prices[["Close", "Adj Close"]].isna().any(axis=1)
    if missing.any():
        first = _day(prices.index[missing][0])
        warnings_.append(f"{source}: dropped {missing.sum()} row(s) without Close/Adj Close (first {first})")
        prices = prices[~missing]
    open_high_low = prices[["Open", "High", "Low"]]
    gaps = open_high_low.isna().to_numpy()
    if gaps.any():
        warnings_.append(f"{source}: filled {gaps.sum()} missing Open/High/Low value(s) with Close")
        prices[["Open", "High", "Low"]] = open_high_low.where(~gaps, prices["Close"], axis=0)
    if prices["Volume"].isna().any():
        warnings_.append(f"{source}: {prices['Volume'].isna().sum()} missing Volume value(s) set to 0")
        prices["Volume"] = prices["Volume"].fillna(0.0)

    if prices.empty:
        raise ForecastError(f"{source}: no price rows; expected the Yahoo layout {YAHOO_LAYOUT}")
    _check_positive(prices, source)
    inverted = prices["High"] < prices["Low"]
    if inverted.any():
        first = _day(prices.index[inverted][0])
        warnings_.append(f"{source}: High is below Low on {inverted.sum()} day(s) (first {first})")
    # A calendar day that has begun somewhere on Earth (UTC+14) is not in the future for some exchange.
    latest_possible = (datetime.now(UTC) + timedelta(hours=14)).date()
    if _day(prices.index[-1]) > latest_possible:
        first = _day(prices.index[prices.index > pd.Timestamp(latest_possible)][0])
        raise ForecastError(f"{source}: date {first} is in the future; check the Date column")
    return prices, warnings_


def _as_dates(index: pd.Index, source: str) -> pd.DatetimeIndex:
    """Calendar days at midnight, tz-naive, datetime64[ns]; ISO text is accepted with any time part."""
    if isinstance(index, pd.DatetimeIndex):
        # A tz-aware index (Ticker.history) keeps the exchange's local day, not the UTC one.
        dates = index.tz_localize(None) if index.tz is not None else index
        if dates.isna().any():
            raise ForecastError(f"{source}: data row {int(np.argmax(dates.isna())) + 1} has no date")
    else:
        text = pd.Series(index.astype(str), dtype=str).str.strip()
        iso = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?")
        dates = pd.DatetimeIndex(pd.to_datetime(text.str.slice(0, 10).where(iso), format="%Y-%m-%d", errors="coerce"))
        if dates.isna().any():
            row = int(np.argmax(dates.isna()))
            raise ForecastError(
                f"{source}: cannot read the date {text.iloc[row]!r} (data row {row + 1}); expected YYYY-MM-DD"
            )
    return dates.normalize().as_unit("ns").rename("Date")


def _as_numbers(values: pd.Series, column: str, dates: pd.DatetimeIndex, source: str) -> np.ndarray:
    """The column as float64; ForecastError naming the first non-numeric or infinite cell's date."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(numbers)
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        blank = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        bad = (np.isnan(numbers) & ~blank) | np.isinf(numbers)
    if bad.any():
        row = int(np.argmax(bad))
        raise ForecastError(
            f"{source}: column {column} has a non-numeric value {values.iloc[row]!r} on {_day(dates[row])}"
        )
    return numbers


def _check_positive(prices: pd.DataFrame, source: str) -> None:
    """Prices must be > 0 (log returns need it); volumes >= 0."""
    bad_prices = (prices[PRICE_COLUMNS] <= 0).to_numpy()
    bad_volume = (prices["Volume"] < 0).to_numpy()
    if bad_prices.any():
        row, col = np.argwhere(bad_prices)[0]
        column, value = PRICE_COLUMNS[col], prices.iloc[row][PRICE_COLUMNS[col]]
        raise ForecastError(f"{source}: {column} is {value:g} on {_day(prices.index[row])}; prices must be positive")
    if bad_volume.any():
        row = int(np.argmax(bad_volume))
        raise ForecastError(f"{source}: Volume is negative on {_day(prices.index[row])}")


def _day(stamp: pd.Timestamp) -> date:
    return stamp.date()


# ---------------------------------------------------------------------------------------------
# CSV files


def prices_to_csv(prices: pd.DataFrame) -> bytes:
    """The canonical CSV bytes: Yahoo layout, ISO dates, shortest exact floats, integer volumes."""
    table = prices[COLUMNS]
    volume = table["Volume"].to_numpy()
    if np.array_equal(volume, np.floor(volume)):
        table = table.assign(Volume=volume.astype(np.int64))
    return table.to_csv(index_label="Date", date_format="%Y-%m-%d", lineterminator="\n").encode()


def prices_sha256(frame: pd.DataFrame) -> str:
    """Fingerprint of exactly these rows: sha256 of their canonical CSV bytes."""
    return hashlib.sha256(prices_to_csv(frame)).hexdigest()


def read_prices_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate a price CSV: Yahoo layout, loose header spellings, yfinance's 3-row header."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ForecastError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw[:8192]:
        raise ForecastError(f"{path}: binary file, not a CSV; expected the Yahoo layout {YAHOO_LAYOUT}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ForecastError(
            f"{path}: not UTF-8 text (byte {exc.start}); expected a CSV in the Yahoo layout {YAHOO_LAYOUT}"
        ) from None
    try:
        table = pd.read_csv(io.StringIO(_collapse_yfinance_header(text)), **_EXACT_FLOATS)
    except pd.errors.EmptyDataError:
        raise ForecastError(f"{path}: empty file; expected the Yahoo layout {YAHOO_LAYOUT}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForecastError(f"{path}: cannot parse as CSV ({first_line})") from None
    table, warnings_ = _rename_columns(table, path)
    prices, more = validate_prices(table, str(path))
    return prices, warnings_ + more


def _collapse_yfinance_header(text: str) -> str:
    """`yf.download(...).to_csv()` writes Price/Ticker/Date header rows; keep one `Date,...` row."""
    head = text.split("\n", 3)
    if (
        len(head) >= 3
        and head[0].split(",")[0].strip().lower() == "price"
        and head[1].lower().startswith("ticker,")
        and head[2].lower().startswith("date,")
    ):
        return "Date" + head[0][head[0].index(",") :] + "\n" + (head[3] if len(head) > 3 else "")
    return text


def _rename_columns(table: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Map header spellings (`adj_close`, `adjclose`, `Adj Close`...) to the canonical names."""
    renames: dict[str, str] = {}
    ignored: list[str] = []
    for name in table.columns:
        canonical = _HEADER_ALIASES.get(re.sub(r"[^a-z]", "", str(name).lower()))
        if canonical is None:
            ignored.append(str(name))
        elif canonical in renames.values():
            other = next(key for key, value in renames.items() if value == canonical)
            raise ForecastError(f"{path}: columns {other!r} and {name!r} both mean {canonical}; keep one")
        else:
            renames[name] = canonical
    for required in ("Date", "Close"):
        if required not in renames.values():
            found = ", ".join(str(name) for name in table.columns)
            raise ForecastError(
                f"{path}: no {required} column (found: {found}); expected the Yahoo layout {YAHOO_LAYOUT}"
            )
    warnings_ = [f"{path}: ignored column(s) {', '.join(ignored)}"] if ignored else []
    return table[list(renames)].rename(columns=renames), warnings_


# ---------------------------------------------------------------------------------------------
# The cache


def read_cache(data_dir: Path, ticker: str) -> pd.DataFrame | None:
    """The cached prices (validated), or None when there is no cache file for `ticker`."""
    path = cache_path(data_dir, ticker)
    if not path.is_file():
        return None
    try:
        prices, _ = read_prices_csv(path)
    except ForecastError as exc:
        raise ForecastError(
            f"{exc} (the cached prices; run `lstm-forecast fetch -t {validate_ticker(ticker)} --refresh` "
            "to download them again)"
        ) from None
    return prices


def load_prices(data_dir: Path, ticker: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """The cached prices from `start` to `end` inclusive; ForecastError when there are none."""
    ticker = validate_ticker(ticker)
    prices = read_cache(data_dir, ticker)
    if prices is None:
        raise ForecastError(
            f"no cached prices for {ticker} in {data_dir}; run `lstm-forecast fetch -t {ticker}` "
            f"(or `lstm-forecast fetch -t {ticker} --from-csv FILE`) first"
        )
    sliced = prices.loc[_stamp(start) : _stamp(end)]
    if sliced.empty:
        raise ForecastError(
            f"no cached prices for {ticker} from {start or 'the start'} to {end or 'the end'}; "
            f"the cache covers {_day(prices.index[0])} to {_day(prices.index[-1])}"
        )
    return sliced


def update_cache(
    data_dir: Path, ticker: str, start: date | None = None, end: date | None = None, refresh: bool = False
) -> FetchSummary:
    """Bring the cache up to date from Yahoo Finance.

    No cache (or `refresh`): download `start`..`end`. Otherwise download only from a few days before
    the last cached one, and download everything again when those overlapping days disagree (Yahoo
    re-adjusted the history) or when `start` asks for earlier history than the cache holds.
    """
    ticker = validate_ticker(ticker)
    _check_range(start, end)  # here too: a range the cache already covers would never reach a download
    path = cache_path(data_dir, ticker)
    _ensure_folder(Path(data_dir))
    with _cache_lock(path):
        cached = None if refresh else read_cache(data_dir, ticker)
        if cached is None:
            prices, warnings_ = _download(ticker, start, end)
            return _store(path, ticker, prices, warnings_, [], "full", len(prices), start, end)

        first_cached, last_cached = _day(cached.index[0]), _day(cached.index[-1])
        covered_from = _covered_from(path, cached)
        # No start on an existing cache means "bring it up to date", not "all history again".
        wanted_from = covered_from if start is None else _earliest(start, covered_from)
        through = None if end is None else max(end, last_cached)
        if wanted_from != covered_from:
            prices, warnings_ = _download(ticker, wanted_from, through)
            note = f"the cache started on {first_cached}; downloaded {ticker} again from {wanted_from}"
            new_rows = _count_new(prices, cached)
            return _store(path, ticker, prices, warnings_, [note], "full", new_rows, wanted_from, through)
        if end is not None and end <= last_cached:
            return _summary(path, ticker, cached, "unchanged", 0, [], [])

        overlap_from = _day(cached.index[-OVERLAP_ROWS:][0])
        fresh, warnings_ = _download(ticker, overlap_from, end)
        if _history_changed(cached, fresh):
            prices, warnings_ = _download(ticker, wanted_from, through)
            note = (
                f"Yahoo Finance has re-adjusted {ticker}'s past prices since they were cached "
                "(a split or dividend); downloaded the whole range again"
            )
            new_rows = _count_new(prices, cached)
            return _store(path, ticker, prices, warnings_, [note], "redownload", new_rows, wanted_from, through)

        # Fresh rows win on the overlap: the last cached day may have been an unfinished session.
        prices = pd.concat([cached[cached.index < fresh.index[0]], fresh])
        new_rows = _count_new(prices, cached)
        mode = "incremental" if new_rows or not prices.equals(cached) else "unchanged"
        return _store(path, ticker, prices, warnings_, [], mode, new_rows, wanted_from, end)


def import_csv(csv_path: Path, data_dir: Path, ticker: str) -> FetchSummary:
    """Validate a local CSV and make it `ticker`'s cache (replacing any cached prices)."""
    ticker = validate_ticker(ticker)
    csv_path = Path(csv_path)
    prices, warnings_ = read_prices_csv(csv_path)
    path = cache_path(data_dir, ticker)
    _ensure_folder(Path(data_dir))
    with _cache_lock(path):
        messages = [f"replaced the cached prices in {path}"] if path.is_file() else []
        first = _day(prices.index[0])
        source_file = str(csv_path.resolve())
        return _store(path, ticker, prices, warnings_, messages, "import", len(prices), first, None, "csv", source_file)


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
    payload = prices_to_csv(prices)
    if mode != "unchanged":
        atomic_write_bytes(path, payload)
    meta = {
        "ticker": ticker,
        "source": source,
        **({"source_file": source_file} if source_file else {}),
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requested": {"start": _iso(start), "end": _iso(end)},
        "first": _iso(_day(prices.index[0])),
        "last": _iso(_day(prices.index[-1])),
        "rows": len(prices),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    try:
        atomic_write_text(_meta_path(path), json.dumps(meta, indent=2) + "\n")
    except ForecastError as exc:
        if mode != "unchanged":  # the old sidecar describes the old prices: it must not stay beside the new
            with contextlib.suppress(OSError):
                _meta_path(path).unlink()
        warnings_ = [*warnings_, f"{exc}; the cache is usable without it"]
    return _summary(path, ticker, prices, mode, new_rows, warnings_, messages)


def _summary(
    path: Path, ticker: str, prices: pd.DataFrame, mode: str, new_rows: int, warnings_: list[str], messages: list[str]
) -> FetchSummary:
    return FetchSummary(
        ticker=ticker,
        path=path,
        rows=len(prices),
        first=_day(prices.index[0]),
        last=_day(prices.index[-1]),
        mode=mode,
        new_rows=new_rows,
        warnings=warnings_,
        messages=messages,
    )


def _history_changed(cached: pd.DataFrame, fresh: pd.DataFrame) -> bool:
    """Do the re-downloaded overlap days disagree with the cache beyond float rounding?"""
    common = cached.index.intersection(fresh.index)
    if common.empty:
        return True
    # The last cached day is left out: it may have been cached mid-session, before the close.
    settled = common[common < cached.index[-1]]
    then = cached.loc[settled, PRICE_COLUMNS].to_numpy()
    now = fresh.loc[settled, PRICE_COLUMNS].to_numpy()
    return not np.allclose(now, then, rtol=OVERLAP_RTOL, atol=0.0)


def _covered_from(path: Path, cached: pd.DataFrame) -> date | None:
    """The start the cache was built for: the sidecar's requested start (None: all of Yahoo's history),
    or the first cached day when no readable sidecar describes exactly the cached rows (a CSV replaced
    by hand, or a write cut short between the sidecar and the CSV)."""
    first_cached = _day(cached.index[0])
    try:
        meta = json.loads(_meta_path(path).read_text(encoding="utf-8"))
        if meta["sha256"] != prices_sha256(cached):
            return first_cached
        requested = meta["requested"]["start"]
        return None if requested is None else date.fromisoformat(requested)
    except (OSError, ValueError, KeyError, TypeError):
        return first_cached


def _earliest(first: date | None, second: date | None) -> date | None:
    """The earlier start, where None means "from the beginning"."""
    if first is None or second is None:
        return None
    return min(first, second)


def _count_new(prices: pd.DataFrame, cached: pd.DataFrame) -> int:
    return len(prices.index.difference(cached.index))


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of one cache file across processes (`<NAME>.csv.lock`)."""
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except LockTimeout:
        raise ForecastError(
            f"another lstm-forecast process has been updating {path} for {LOCK_TIMEOUT_S} s; try again later"
        ) from None
    except OSError as exc:
        raise ForecastError(
            f"cannot write in {path.parent}: {exc.strerror or exc}; choose a writable folder with --data-dir"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _ensure_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ForecastError(
            f"cannot create the data folder {folder}: {exc.strerror or exc}; choose another with --data-dir"
        ) from None


def _stamp(day: date | None) -> pd.Timestamp | None:
    return None if day is None else pd.Timestamp(day)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
