"""Market covariates: other series and the calendar as inputs, aligned on the ticker's own sessions.

A context input is one feature of another cached ticker (the index's log return, a volatility index's log
level). The rules, so that no window ever reads the future:

* **Alignment.** The ticker's days are the sessions; for day t a context series contributes its last row dated
  on or before t (`same_day`), or strictly before t (`previous_session`). `auto` takes the previous session when
  the context's exchange closes later in the day (in UTC) than the ticker's (`data.calendar`): a London stock
  cannot know the S&P 500's close of the same date at its own close. A series traded around the clock or from
  an exchange we cannot tell (crypto `-USD`, currencies `=X`, futures `=F`) closes later than any exchange.
* **Gaps.** Features are computed on the context rows so aligned, so a day the context did not trade repeats
  its last row (a log return of zero: nothing new was known). A row may stand in for at most
  `data.context_max_gap` sessions; a day that needs an older one has no value, and every window reading it is
  dropped (`windows.build_dataset` counts them). Nothing is filled past a series' last row.
* **Range.** History before a context series starts, or after it ends, is cut (`common_range`): the ticker's
  rows are the ones every context series covers, and the summary says so.
* Calendar features describe the session a forecast is for, the exchange calendar's next session after each
  day: known in advance, so the anchor day's row describes the first target day.

Context columns are scaled with the ticker's own features, on training rows only (`windows.fit_scaler`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast import data
from lstm_forecast.config import ContextInput
from lstm_forecast.errors import ForecastError, StopRequest, UsageError, quote
from lstm_forecast.sessions import TradingCalendar, check_calendar, exchange_calendar, known_calendar

SAME_DAY, PREVIOUS_SESSION = 0, 1
# The columns each calendar feature adds: cyclical ones as sine and cosine, so Friday sits beside Monday.
CALENDAR_COLUMNS = {
    "day_of_week": ("day_of_week_sin", "day_of_week_cos"), "month_of_year": ("month_sin", "month_cos"),
    "month_end": ("month_end",), "session_gap": ("session_gap",),
}
# Yahoo's suffixes and non-US indices, to the exchange-calendars code of where they trade; anything else
# without a suffix (AAPL, SPY, ^GSPC, ^VIX) trades in New York.
SUFFIX_CALENDARS = {
    ".L": "XLON", ".DE": "XETR", ".F": "XFRA", ".PA": "XPAR", ".AS": "XAMS", ".BR": "XBRU", ".MI": "XMIL",
    ".MC": "XMAD", ".SW": "XSWX", ".ST": "XSTO", ".OL": "XOSL", ".CO": "XCSE", ".HE": "XHEL", ".LS": "XLIS",
    ".VI": "XWBO", ".IR": "XDUB", ".T": "XTKS", ".HK": "XHKG", ".SS": "XSHG", ".SZ": "XSHE", ".KS": "XKRX",
    ".TW": "XTAI", ".SI": "XSES", ".AX": "XASX", ".NZ": "XNZE", ".TO": "XTSE", ".V": "XTSE", ".SA": "BVMF",
    ".MX": "XMEX", ".JO": "XJSE", ".NS": "XBOM", ".BO": "XBOM",
}
INDEX_CALENDARS = {
    "^FTSE": "XLON", "^FTMC": "XLON", "^GDAXI": "XETR", "^STOXX50E": "XETR", "^FCHI": "XPAR", "^AEX": "XAMS",
    "^N225": "XTKS", "^HSI": "XHKG", "^AXJO": "XASX", "^GSPTSE": "XTSE", "^KS11": "XKRX", "^BSESN": "XBOM",
}
AROUND_THE_CLOCK = ("-USD", "-EUR", "-GBP", "-BTC", "-USDT", "=X", "=F")
DEFAULT_CALENDAR = "XNYS"
# Close times are compared over one ordinary year, the same every run, so `auto` resolves reproducibly.
REFERENCE_YEAR = 2019


@dataclass(frozen=True)
class ContextSeries:
    """A context input as a bundle records it: the alignment resolved to a lag of 0 or 1 sessions."""

    ticker: str
    feature: str
    lag: int  # SAME_DAY or PREVIOUS_SESSION

    @property
    def column(self) -> str:
        return f"{self.ticker}:{self.feature}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(entries: list[ContextInput], target_calendar: str) -> tuple[ContextSeries, ...]:
    """The configured context inputs with `align` resolved against the ticker's exchange."""
    return tuple(ContextSeries(entry.ticker, entry.feature, _lag(entry, target_calendar)) for entry in entries)


def _lag(entry: ContextInput, target_calendar: str) -> int:
    if entry.align != "auto":
        return SAME_DAY if entry.align == "same_day" else PREVIOUS_SESSION
    calendar = entry.calendar or exchange_of(entry.ticker)
    if calendar is None:
        return PREVIOUS_SESSION
    check_calendar(target_calendar)  # data.calendar's own error first
    if not known_calendar(calendar):
        raise UsageError(
            f"data.context: the calendar {quote(calendar)} of {entry.ticker} is not an exchange-calendars code; "
            "expected one such as XNYS (New York), XLON (London) or XHKG (Hong Kong)"
        )
    check_calendar(calendar, f"data.context: {entry.ticker}'s calendar")  # known, but can it answer?
    return PREVIOUS_SESSION if closes_later(calendar, target_calendar) else SAME_DAY


def exchange_of(ticker: str) -> str | None:
    """The exchange-calendars code a Yahoo symbol trades on; None for series traded around the clock."""
    if ticker.endswith(AROUND_THE_CLOCK):
        return None
    if ticker in INDEX_CALENDARS:
        return INDEX_CALENDARS[ticker]
    dot = ticker.rfind(".")
    return SUFFIX_CALENDARS.get(ticker[dot:], DEFAULT_CALENDAR) if dot > 0 else DEFAULT_CALENDAR


@functools.cache
def closes_later(context_calendar: str, target_calendar: str) -> bool:
    """Whether `context_calendar`'s sessions usually close later (UTC) than `target_calendar`'s same-date ones."""
    if context_calendar == target_calendar:
        return False
    closes = [_closes(name) for name in (context_calendar, target_calendar)]
    both = closes[0].index.intersection(closes[1].index)
    if len(both) == 0:
        return True  # no common session to compare: assume the worst
    later = (closes[0].loc[both] - closes[1].loc[both]) > pd.Timedelta(0)
    return bool(later.mean() > 0.5)


def _closes(name: str) -> pd.Series:
    return exchange_calendar(name, f"{REFERENCE_YEAR}-01-01", f"{REFERENCE_YEAR}-12-31").closes


def width(calendar_features: tuple[str, ...]) -> int:
    """How many input columns the calendar features add."""
    return len(calendar_names(calendar_features))


# --- alignment ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    """For each of the ticker's price rows, the context row it reads (-1: none) and whether it may."""

    source: np.ndarray  # int64 (rows,): a row of the context frame
    usable: np.ndarray  # bool (rows,): a source exists and is at most max_gap sessions old


def align(days: np.ndarray, context_days: np.ndarray, lag: int, max_gap: int) -> Alignment:
    """Align a context series (its dates, sorted) on the ticker's dates (sorted), as the module describes.

    A source row is `stale` by the number of the ticker's sessions it stands in for: those after its date and up
    to day t (same day), or before day t (previous session, where the row of t-1 itself is fresh)."""
    days = np.asarray(days, dtype="datetime64[D]")
    context_days = np.asarray(context_days, dtype="datetime64[D]")
    side = "right" if lag == SAME_DAY else "left"
    source = np.searchsorted(context_days, days, side=side) - 1
    has_source = source >= 0
    covered = np.searchsorted(days, context_days[np.maximum(source, 0)], side="right")  # ticker days <= source day
    position = np.arange(len(days))
    stale = position + (1 if lag == SAME_DAY else 0) - covered
    # Past the series' last row nothing is filled: it has ended (or its cache has), not missed a day.
    ended = (source == len(context_days) - 1) & (stale > 0)
    return Alignment(source=source, usable=has_source & (stale <= max_gap) & ~ended)


def context_columns(
    prices: pd.DataFrame, spec: Any, context: Mapping[str, pd.DataFrame] | None
) -> pd.DataFrame:
    """The context inputs on the ticker's days (every price row but the first), NaN where a day has no usable
    context value. `spec` is a `windows.WindowSpec`."""
    days = prices.index.to_numpy()
    columns = {}
    for series in spec.context:
        frame = _frame_of(series.ticker, context)
        alignment = align(days, frame.index.to_numpy(), series.lag, spec.context_max_gap)
        columns[series.column] = _feature(frame, series.feature, alignment, spec.price_column_name)
    return pd.DataFrame(columns, index=prices.index[1:])


def _frame_of(ticker: str, context: Mapping[str, pd.DataFrame] | None) -> pd.DataFrame:
    if context is None or ticker not in context:
        raise ForecastError(
            f"the context series {ticker} was not loaded; fetch it with `lstm-forecast fetch -t {ticker}`"
        )
    return context[ticker]


def _feature(frame: pd.DataFrame, feature: str, alignment: Alignment, price_column: str) -> np.ndarray:
    """One context feature on rows 1.. of the ticker's prices, from the aligned context rows."""
    rows = np.maximum(alignment.source, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if feature in ("log_return", "log_level"):
            level = np.log(frame[price_column].to_numpy(dtype=np.float64)[rows])
            values = np.diff(level) if feature == "log_return" else level[1:]
        elif feature == "volume_change":
            values = np.diff(np.log1p(frame["Volume"].to_numpy(dtype=np.float64)[rows]))
        else:  # range
            high, low = (frame[column].to_numpy(dtype=np.float64)[rows] for column in ("High", "Low"))
            values = np.log(high / low)[1:]
    usable = alignment.usable[1:]
    if feature in ("log_return", "volume_change"):  # a change needs the day before too
        usable = usable & alignment.usable[:-1]
    bad = usable & ~np.isfinite(values)
    if bad.any():
        day = pd.Timestamp(frame.index[rows[1:][bad][0]]).date()
        raise ForecastError(
            f"the context feature {feature} is not finite on {day}: prices, High/Low and Volume must be positive "
            "numbers; check or re-fetch the context prices"
        )
    return np.where(usable, values, np.nan)


def common_range(
    prices: pd.DataFrame, spec: Any, context: Mapping[str, pd.DataFrame] | None
) -> tuple[pd.DataFrame, list[str]]:
    """The ticker's rows from the first to the last on which every context series has a usable row, and a
    note when that cut anything (naming the series that start late or end early)."""
    if not spec.context:
        return prices, []
    days = prices.index.to_numpy()
    usable = np.ones(len(days), dtype=bool)
    late, early = [], []
    for ticker, lag in sorted({(series.ticker, series.lag) for series in spec.context}):
        frame = _frame_of(ticker, context)
        alignment = align(days, frame.index.to_numpy(), lag, spec.context_max_gap)
        if len(days) and not alignment.usable[0]:
            late.append(f"{ticker} starts {_first_day(frame)}")
        if len(days) and not alignment.usable[-1]:
            early.append(f"{ticker} ends {_last_day(frame)}")
        usable &= alignment.usable
    rows = np.flatnonzero(usable)
    if len(rows) == 0:
        names = ", ".join(sorted({series.ticker for series in spec.context}))
        raise ForecastError(
            f"the context series ({names}) share no day with the ticker's prices "
            f"({_first_day(prices)} to {_last_day(prices)}); fetch a history that overlaps"
        )
    cut = prices.iloc[rows[0] : rows[-1] + 1]
    if len(cut) == len(prices):
        return prices, []
    why = "; ".join(late + early)
    return cut, [
        f"history cut to {_first_day(cut)} … {_last_day(cut)}, the days every context series covers ({why})"
    ]


def rows_used(prices: pd.DataFrame, spec: Any, context: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each context series' rows that the ticker's rows read, first to last: what a bundle records so the
    inputs can be rebuilt exactly (aligning on these rows alone gives the same values)."""
    days = prices.index.to_numpy()
    used = {}
    for ticker in dict.fromkeys(series.ticker for series in spec.context):
        frame = _frame_of(ticker, context)
        sources = [align(days, frame.index.to_numpy(), series.lag, spec.context_max_gap).source
                   for series in spec.context if series.ticker == ticker]
        valid = np.concatenate(sources)
        valid = valid[valid >= 0]
        used[ticker] = frame.iloc[int(valid.min()) : int(valid.max()) + 1] if len(valid) else frame.iloc[:0]
    return used


def check_fresh(ticker: str, prices: pd.DataFrame, spec: Any, context: Mapping[str, pd.DataFrame]) -> None:
    """A forecast from the ticker's last day needs every context series on that day (its previous session, for
    a lagged one): otherwise a one-line error naming the stale series and how to refresh it."""
    last = prices.index[-1:].to_numpy()
    for name, lag in dict.fromkeys((series.ticker, series.lag) for series in spec.context):
        frame = _frame_of(name, context)
        if not align(prices.index.to_numpy()[-2:], frame.index.to_numpy(), lag, 0).usable[-1]:
            shown = _last_day(frame) if len(frame) else "nowhere"
            raise ForecastError(
                f"the context series {name} ends {shown}, before {ticker}'s last day "
                f"{pd.Timestamp(last[0]).date()}; refresh it with `lstm-forecast fetch -t {name}` "
                "or predict with --refresh"
            )


def _first_day(frame: pd.DataFrame) -> date:
    return pd.Timestamp(frame.index[0]).date()


def _last_day(frame: pd.DataFrame) -> date:
    return pd.Timestamp(frame.index[-1]).date()


# --- the calendar -------------------------------------------------------------------------------


def calendar_columns(days: pd.DatetimeIndex, spec: Any) -> pd.DataFrame:
    """The calendar features of the session after each day (the one a window anchored there forecasts first)."""
    if len(days) == 0:
        return pd.DataFrame({name: [] for name in calendar_names(spec.calendar_features)}, index=days)
    sessions = _sessions(spec.calendar, _day(days[0]), _day(days[-1]) + timedelta(days=45))
    day_values = np.asarray(days.to_numpy(), dtype="datetime64[D]")
    after = np.searchsorted(sessions, day_values, side="right")
    if after[-1] + 1 >= len(sessions):
        raise ForecastError(f"the {spec.calendar} calendar ends before the session after {day_values[-1]}")
    target = sessions[after]
    following = sessions[np.minimum(after + 1, len(sessions) - 1)]
    stamps = pd.DatetimeIndex(target)
    columns: dict[str, np.ndarray] = {}
    for name in spec.calendar_features:
        if name == "day_of_week":
            angle = 2 * np.pi * stamps.day_of_week.to_numpy() / 7
            columns |= {"day_of_week_sin": np.sin(angle), "day_of_week_cos": np.cos(angle)}
        elif name == "month_of_year":
            angle = 2 * np.pi * (stamps.month.to_numpy() - 1) / 12
            columns |= {"month_sin": np.sin(angle), "month_cos": np.cos(angle)}
        elif name == "month_end":  # the last session of its month: month-end flows and rebalancing
            months = (target.astype("datetime64[M]"), following.astype("datetime64[M]"))
            columns["month_end"] = (months[0] != months[1]).astype(np.float64)
        else:  # session_gap: calendar days from the anchor to the forecast day (3 over a weekend)
            columns["session_gap"] = (target - day_values).astype(np.float64)
    return pd.DataFrame(columns, index=days)


def calendar_names(calendar_features: tuple[str, ...]) -> list[str]:
    """The input columns of the calendar features, in order."""
    return [column for feature in calendar_features for column in CALENDAR_COLUMNS[feature]]


def _day(stamp: Any) -> date:
    return pd.Timestamp(stamp).date()


@functools.lru_cache(maxsize=16)
def _sessions(name: str, start: date, end: date) -> np.ndarray:
    """The sessions of `name` from `start` to `end`, as datetime64[D] (a universe asks for the same range often)."""
    return TradingCalendar(name, start - timedelta(days=7), end).sessions


# --- loading ------------------------------------------------------------------------------------


def load_context(
    data_dir: Path, tickers: list[str], on_fetch: Callable[[str], None] | None = None, stop: StopRequest | None = None,
) -> dict[str, pd.DataFrame]:
    """Each context ticker's whole cache (fetched first when there is none), read once per process: the jobs
    of a universe share the series, and the alignment reads only what each ticker's days need."""
    frames = {}
    for ticker in dict.fromkeys(tickers):
        if not data.has_cache(data_dir, ticker):
            if on_fetch is not None:
                on_fetch(f"No cached prices for the context series {ticker} in {data_dir}; downloading…")
            data.update_cache(data_dir, ticker, stop=stop)
        frames[ticker] = _read_once(data_dir, ticker, *_stamp(data.cache_file(data_dir, ticker)))
    return frames


def cached_context(
    data_dir: Path, tickers: list[str], refresh: bool = False, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None, refreshed: set[str] | None = None,
) -> dict[str, pd.DataFrame | None]:
    """Each context series' cache as it is now, for a forecast (None where nothing is cached), updated from Yahoo
    first with `refresh` unless `refreshed` holds it already (it is added: a screener's runs share series)."""
    frames: dict[str, pd.DataFrame | None] = {}
    for ticker in dict.fromkeys(tickers):
        if refresh and ticker not in (refreshed or ()):
            if on_fetch is not None:
                on_fetch(f"Updating the context series {ticker} in {data_dir} from Yahoo Finance…")
            data.update_cache(data_dir, ticker, stop=stop)
            if refreshed is not None:
                refreshed.add(ticker)
        frames[ticker] = data.read_cache(data_dir, ticker)
    return frames


def _stamp(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError:
        return 0, 0
    return status.st_mtime_ns, status.st_size


@functools.lru_cache(maxsize=64)
def _read_once(data_dir: Path, ticker: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """The cache as of (mtime, size): a refreshed cache is read again."""
    return data.load_prices(data_dir, ticker)
