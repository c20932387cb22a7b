"""Daily prices: validation, and the CSV layout the cache and the bundles store them in.

Everything downstream receives one canonical frame: a tz-naive `DatetimeIndex` named `Date`
(datetime64[ns], midnight, ascending, unique) and the float64 columns
`Open, High, Low, Close, Adj Close, Volume`. Floats are written in their shortest exact form and
read back bit for bit.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.errors import ForecastError, quote, shorten
from lstm_forecast.files import read_bounded

COLUMNS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
PRICE_FIELDS = ["Open", "High", "Low", "Close", "Adj Close"]  # all but Volume: the prices, which must be positive
YAHOO_LAYOUT = "Date," + ",".join(COLUMNS)

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

# pandas 3 parses floats exactly and deprecates the option; pandas 2 needs to be asked.
_EXACT_FLOATS: dict[str, Any] = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}

# Header spellings accepted on import, compared with case, spaces and punctuation removed.
_HEADER_ALIASES = {
    "date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume",
    "adjclose": "Adj Close", "adjustedclose": "Adj Close", "adjusted": "Adj Close",
}


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
        first = prices.index[duplicated][0].date()
        warnings_.append(f"{source}: {duplicated.sum()} duplicate date(s) (first {first}); kept the last row of each")
        prices = prices[~duplicated]

    missing = prices[["Close", "Adj Close"]].isna().any(axis=1)
    if missing.any():
        first = prices.index[missing][0].date()
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
        first = prices.index[inverted][0].date()
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
        raise ForecastError(f"{source}: date {days[early][0].date()} is before {EARLIEST_DATE}; check the Date column")
    if late.any():
        raise ForecastError(f"{source}: date {days[late][0].date()} is in the future; check the Date column")
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
            f"{source}: column {column} has a non-numeric value {quote(values.iloc[row])} on {dates[row].date()}"
        )
    return numbers


def _check_bounds(prices: pd.DataFrame, source: str) -> None:
    """Prices within MIN_PRICE..MAX_PRICE (positive, so log returns exist), volumes within 0..MAX_VOLUME;
    ForecastError naming the first bad day (rows are sorted by then)."""
    price_values = prices[PRICE_FIELDS].to_numpy()
    bad_prices = ~((price_values >= MIN_PRICE) & (price_values <= MAX_PRICE))
    volume = prices["Volume"].to_numpy()
    bad_volume = ~((volume >= 0) & (volume <= MAX_VOLUME))
    price_row = int(np.argmax(bad_prices.any(axis=1))) if bad_prices.any() else len(prices)
    volume_row = int(np.argmax(bad_volume)) if bad_volume.any() else len(prices)
    if price_row == volume_row == len(prices):
        return
    if price_row <= volume_row:
        column = PRICE_FIELDS[int(np.argmax(bad_prices[price_row]))]
        value, day = price_values[price_row, PRICE_FIELDS.index(column)], prices.index[price_row].date()
        allowed = "be positive" if value <= 0 else f"lie between {MIN_PRICE:g} and {MAX_PRICE:g}"
        raise ForecastError(f"{source}: {column} is {value:g} on {day}; prices must {allowed}")
    value, day = volume[volume_row], prices.index[volume_row].date()
    if value < 0:
        raise ForecastError(f"{source}: Volume is negative on {day}")
    raise ForecastError(f"{source}: Volume is {value:g} on {day}; volumes must be at most {MAX_VOLUME:g}")


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
        raw = read_bounded(path, MAX_CSV_BYTES, "a daily price CSV")
    except FileNotFoundError:
        raise ForecastError(f"cannot read {path}: no such file") from None
    return parse_prices_csv(raw, str(path))


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
