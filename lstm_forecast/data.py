"""Daily prices: download from Yahoo Finance, validate, and keep a local CSV cache.

Everything downstream receives one canonical frame: a tz-naive `DatetimeIndex` named `Date`
(datetime64[ns], midnight, ascending, unique) and the float64 columns
`Open, High, Low, Close, Adj Close, Volume`.

The cache is `<data-dir>/<TICKER>.csv` in Yahoo's own layout plus an optional `<TICKER>.meta.json`
sidecar (source, fetch time, requested range, rows, sha256), so a folder of Yahoo CSVs is already
a cache. Floats are written in their shortest exact form and read back bit for bit, and nothing is
written that would not pass this module's own validation when read back.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.errors import ForecastError, UsageError, quote, shorten
from lstm_forecast.files import FILE_MODE, atomic_write_bytes, atomic_write_text, read_bounded

try:
    import fcntl
except ImportError:  # Windows: filelock's lock instead, whose lock file stays behind
    fcntl = None

log = logging.getLogger(__name__)

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
LOCK_POLL_S = 0.05

# What the pipeline can compute with. Log returns need positive prices; within these bounds every price
# ratio (at most 1e24) and every square stays far from float64 overflow, and a volume fits the int64 the
# cache writes it as. Real quotes lie well inside (a Berkshire A share is ~1e6, a meme coin ~1e-8).
MIN_PRICE, MAX_PRICE = 1e-12, 1e12
MAX_VOLUME = 1e18
EARLIEST_DATE = date(1800, 1, 1)  # daily series go back to the 1790s at most; pandas' ns dates to 1677

# A daily CSV is kilobytes to a few MB (a century is ~25,000 rows of ~80 characters): refuse anything far
# larger before pandas parses it, since parsing costs memory in proportion to lines x columns.
MAX_CSV_BYTES = 64 * 1024**2
MAX_CSV_LINES = 200_000
MAX_LINE_CHARS = 2_000
MAX_CSV_COLUMNS = 50
MAX_SIDECAR_BYTES = 64 * 1024

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
    _check_bounds(prices, source)
    inverted = prices["High"] < prices["Low"]
    if inverted.any():
        first = _day(prices.index[inverted][0])
        warnings_.append(f"{source}: High is below Low on {inverted.sum()} day(s) (first {first})")
    return prices, warnings_


def _as_dates(index: pd.Index, source: str) -> pd.DatetimeIndex:
    """Calendar days at midnight, tz-naive, datetime64[ns], from EARLIEST_DATE to today; ISO text is
    accepted with any time part."""
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
                f"{source}: cannot read the date {quote(text.iloc[row])} (data row {row + 1}); expected YYYY-MM-DD"
            )
    # Bounded before converting to nanoseconds, which cannot hold years before 1677 or after 2262.
    # A calendar day that has begun somewhere on Earth (UTC+14) is not in the future for some exchange.
    latest_possible = (datetime.now(UTC) + timedelta(hours=14)).date()
    days = dates.normalize()
    early, late = days < pd.Timestamp(EARLIEST_DATE), days > pd.Timestamp(latest_possible)
    if early.any():
        raise ForecastError(f"{source}: date {_day(days[early][0])} is before {EARLIEST_DATE}; check the Date column")
    if late.any():
        raise ForecastError(f"{source}: date {_day(days[late][0])} is in the future; check the Date column")
    return days.as_unit("ns").rename("Date")


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
            f"{source}: column {column} has a non-numeric value {quote(values.iloc[row])} on {_day(dates[row])}"
        )
    return numbers


def _check_bounds(prices: pd.DataFrame, source: str) -> None:
    """Prices within MIN_PRICE..MAX_PRICE (positive, so log returns exist), volumes within 0..MAX_VOLUME;
    ForecastError naming the first bad day (rows are sorted by then)."""
    price_values = prices[PRICE_COLUMNS].to_numpy()
    bad_prices = ~((price_values >= MIN_PRICE) & (price_values <= MAX_PRICE))
    volume = prices["Volume"].to_numpy()
    bad_volume = ~((volume >= 0) & (volume <= MAX_VOLUME))
    price_row = int(np.argmax(bad_prices.any(axis=1))) if bad_prices.any() else len(prices)
    volume_row = int(np.argmax(bad_volume)) if bad_volume.any() else len(prices)
    if price_row == volume_row == len(prices):
        return
    if price_row <= volume_row:
        column = PRICE_COLUMNS[int(np.argmax(bad_prices[price_row]))]
        value, day = price_values[price_row, PRICE_COLUMNS.index(column)], _day(prices.index[price_row])
        allowed = "be positive" if value <= 0 else f"lie between {MIN_PRICE:g} and {MAX_PRICE:g}"
        raise ForecastError(f"{source}: {column} is {value:g} on {day}; prices must {allowed}")
    value, day = volume[volume_row], _day(prices.index[volume_row])
    if value < 0:
        raise ForecastError(f"{source}: Volume is negative on {day}")
    raise ForecastError(f"{source}: Volume is {value:g} on {day}; volumes must be at most {MAX_VOLUME:g}")


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
    return parse_prices_csv(_read_limited(path, MAX_CSV_BYTES, "a daily price CSV"), str(path))


def parse_prices_csv(raw: bytes, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Validate the bytes of a price CSV (`source` names them in messages); see `read_prices_csv`."""
    text = _decode(raw, source)
    _check_shape(text, source)
    try:
        table = pd.read_csv(io.StringIO(_collapse_yfinance_header(text)), **_EXACT_FLOATS)
    except pd.errors.EmptyDataError:
        raise ForecastError(f"{source}: empty file; expected the Yahoo layout {YAHOO_LAYOUT}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForecastError(f"{source}: cannot parse as CSV ({shorten(first_line, 160)})") from None
    table, warnings_ = _rename_columns(table, source)
    prices, more = validate_prices(table, source)
    return prices, warnings_ + more


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file `path`, refused before reading more than `limit` bytes of it."""
    try:
        return read_bounded(path, limit, what)
    except FileNotFoundError:
        raise ForecastError(f"cannot read {path}: no such file") from None


# Byte-order marks of the encodings a spreadsheet may save "Unicode text" in; UTF-32's come first, as
# UTF-32-LE's begins with UTF-16-LE's. Python's utf-16/utf-32 codecs read the mark and drop it.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


def _decode(raw: bytes, source: str) -> str:
    """The text of a CSV in UTF-8 (with or without a BOM), or in UTF-16/32 announced by a BOM."""
    encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), None)
    if encoding is None and b"\x00" in raw[:8192]:
        raise ForecastError(f"{source}: binary file, not a CSV; expected the Yahoo layout {YAHOO_LAYOUT}")
    encoding = encoding or "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise ForecastError(
            f"{source}: not {name} text (byte {exc.start}); expected a CSV in the Yahoo layout {YAHOO_LAYOUT}"
        ) from None
    if "\x00" in text:
        raise ForecastError(f"{source}: binary file, not a CSV; expected the Yahoo layout {YAHOO_LAYOUT}")
    return text


def _check_shape(text: str, source: str) -> None:
    """Refuse text no daily price CSV looks like (too many lines, columns or characters in a line) before
    pandas parses it: parsing 300,000 header columns takes minutes and gigabytes."""
    lines = max(text.count("\n"), text.count("\r")) + 1
    if lines > MAX_CSV_LINES:
        raise ForecastError(f"{source}: {lines:,} lines; a daily price CSV has at most {MAX_CSV_LINES:,}")
    header = re.split(r"[\r\n]", text, maxsplit=1)[0]
    columns = header.count(",") + 1
    if columns > MAX_CSV_COLUMNS:
        raise ForecastError(
            f"{source}: {columns:,} columns in the header; expected the Yahoo layout {YAHOO_LAYOUT} "
            f"(at most {MAX_CSV_COLUMNS} columns)"
        )
    for number, line in enumerate(re.split(r"\r\n?|\n", text), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ForecastError(
                f"{source}: line {number} has {len(line):,} characters (at most {MAX_LINE_CHARS:,}); "
                f"expected the Yahoo layout {YAHOO_LAYOUT}"
            )


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


def _rename_columns(table: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Map header spellings (`adj_close`, `adjclose`, `Adj Close`...) to the canonical names."""
    renames: dict[str, str] = {}
    ignored: list[str] = []
    for name in table.columns:
        canonical = _HEADER_ALIASES.get(re.sub(r"[^a-z]", "", str(name).lower()))
        if canonical is None:
            ignored.append(str(name))
        elif canonical in renames.values():
            other = next(key for key, value in renames.items() if value == canonical)
            raise ForecastError(f"{source}: columns {quote(other)} and {quote(name)} both mean {canonical}; keep one")
        else:
            renames[name] = canonical
    for required in ("Date", "Close"):
        if required not in renames.values():
            found = shorten(", ".join(str(name) for name in table.columns), 120)
            raise ForecastError(
                f"{source}: no {required} column (found: {found}); expected the Yahoo layout {YAHOO_LAYOUT}"
            )
    warnings_ = [f"{source}: ignored column(s) {shorten(', '.join(ignored), 120)}"] if ignored else []
    return table[list(renames)].rename(columns=renames), warnings_


# ---------------------------------------------------------------------------------------------
# The cache


def read_cache(data_dir: Path, ticker: str) -> pd.DataFrame | None:
    """The cached prices (validated), or None when there is no cache file for `ticker`."""
    return _read_cache_file(data_dir, validate_ticker(ticker))[0]


def _read_cache_file(data_dir: Path, ticker: str) -> tuple[pd.DataFrame | None, Path]:
    """The cached prices (None: no cache) and the file they were read from (see `_cache_file`)."""
    path = _cache_file(data_dir, ticker)
    if not path.exists():
        return None, path
    try:
        prices, _ = read_prices_csv(path)
    except ForecastError as exc:
        raise ForecastError(
            f"{exc} (the cached prices; run `lstm-forecast fetch -t {ticker} --refresh` to download them again)"
        ) from None
    return prices, path


def load_prices(data_dir: Path, ticker: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """The cached prices from `start` to `end` inclusive; ForecastError when there are none."""
    ticker = validate_ticker(ticker)
    prices = read_cache(data_dir, ticker)
    if prices is None:
        raise ForecastError(
            f"no cached prices for {ticker} in {data_dir}; run `lstm-forecast fetch -t {ticker}` "
            f"(or `lstm-forecast fetch -t {ticker} --from-csv FILE`) first"
        )
    sliced = _in_range(prices, start, end)
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
    _check_owner(path, ticker)
    with _writing(path):
        cached, read_from = (None, path) if refresh else _read_cache_file(data_dir, ticker)
        if cached is None:
            prices, warnings_ = _download(ticker, start, end)
            return _store(path, ticker, prices, warnings_, [], "full", len(prices), start, end)

        first_cached, last_cached = _day(cached.index[0]), _day(cached.index[-1])
        covered_from = _covered_from(read_from, cached)
        # No start on an existing cache means "bring it up to date", not "all history again".
        wanted_from = covered_from if start is None else _earliest(start, covered_from)
        through = None if end is None else max(end, last_cached)
        if wanted_from != covered_from:
            prices, warnings_ = _download(ticker, wanted_from, through)
            note = f"the cache started on {first_cached}; downloaded {ticker} again from {wanted_from}"
            new_rows = _count_new(prices, cached)
            return _store(path, ticker, prices, warnings_, [note], "full", new_rows, wanted_from, through)
        if end is not None and end <= last_cached:
            return _summary(read_from, ticker, cached, "unchanged", 0, [], [])

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
        # A legacy cache (GSPC.csv for ^GSPC) is carried over into the ticker's own file even when unchanged.
        mode = "incremental" if new_rows or not prices.equals(cached) or read_from != path else "unchanged"
        return _store(path, ticker, prices, warnings_, [], mode, new_rows, wanted_from, end)


def import_csv(
    csv_path: Path, data_dir: Path, ticker: str, start: date | None = None, end: date | None = None
) -> FetchSummary:
    """Validate a local CSV and make its rows from `start` to `end` (inclusive) `ticker`'s cache, replacing
    any cached prices; importing the prices already cached changes nothing."""
    ticker = validate_ticker(ticker)
    _check_range(start, end)
    csv_path = Path(csv_path)
    prices, warnings_ = read_prices_csv(csv_path)
    sliced = _in_range(prices, start, end)
    if sliced.empty:
        raise ForecastError(
            f"{csv_path}: no rows from {start or 'the start'} to {end or 'the end'}; "
            f"the file covers {_day(prices.index[0])} to {_day(prices.index[-1])}"
        )
    path = cache_path(data_dir, ticker)
    _check_owner(path, ticker)
    with _writing(path):
        try:
            cached, read_from = _read_cache_file(data_dir, ticker)
        except ForecastError:  # a damaged cache is what an import is for
            cached, read_from = None, path
        requested_start = start or _day(sliced.index[0])  # the range this cache now covers, not the file's
        source_file = str(csv_path.resolve())
        if cached is None:
            return _store(path, ticker, sliced, warnings_, [], "import", len(sliced), requested_start, end,
                          "csv", source_file)
        new_rows = _count_new(sliced, cached)
        if read_from == path and sliced.equals(cached):
            if (_read_sidecar(path) or {}).get("sha256") == prices_sha256(cached):
                return _summary(path, ticker, cached, "unchanged", 0, warnings_, [])
            return _store(path, ticker, sliced, warnings_, [], "unchanged", 0, requested_start, end, "csv", source_file)
        messages = [f"replaced the cached prices in {path}"] if read_from == path else []
        return _store(path, ticker, sliced, warnings_, messages, "import", new_rows, requested_start, end,
                      "csv", source_file)


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
    path = _meta_path(csv_path)
    if not path.exists():
        return None
    try:
        meta = json.loads(_read_limited(path, MAX_SIDECAR_BYTES, "a small JSON sidecar"))
    except (ForecastError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _sidecar_ticker(csv_path: Path) -> str | None:
    """The ticker a readable sidecar says the CSV holds (None: no sidecar, or no ticker in it)."""
    ticker = (_read_sidecar(csv_path) or {}).get("ticker")
    return ticker if isinstance(ticker, str) else None


def _earliest(first: date | None, second: date | None) -> date | None:
    """The earlier start, where None means "from the beginning"."""
    if first is None or second is None:
        return None
    return min(first, second)


def _count_new(prices: pd.DataFrame, cached: pd.DataFrame) -> int:
    return len(prices.index.difference(cached.index))


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Create the cache's folder and hold its lock; when the update fails, remove the folders this created
    (while still empty), so a failed first fetch into a new data dir leaves nothing behind."""
    folder = path.parent
    created = [each for each in (folder, *folder.parents) if not each.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ForecastError(
            f"cannot create the data folder {folder}: {exc.strerror or exc}; choose another with --data-dir"
        ) from None
    try:
        with _cache_lock(path):
            yield
    except BaseException:
        for each in created:
            with contextlib.suppress(OSError):  # not empty: another process has written there meanwhile
                each.rmdir()
        raise


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
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
