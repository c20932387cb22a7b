"""The Yahoo Finance adapter: download daily prices within a deadline, and explain a failure in one line."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pandas as pd

from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError
from lstm_forecast.prices import COLUMNS, validate_prices

# yfinance makes several requests per download (cookie, crumb, timezone, prices), its cookie
# requests with their own 30 s timeout; the deadline bounds the whole call on a black-holed network.
REQUEST_TIMEOUT_S = 10
DEADLINE_S = 30
STOP_POLL_S = 0.1  # how often a wait for Yahoo looks at the caller's stop request
# The price cache's folder from the environment (data.resolve_data_dir reads it): the way out this module's
# advice names when Yahoo cannot be reached.
DATA_DIR_ENV = "LSTM_FORECAST_DATA_DIR"


class RateLimited(ForecastError):
    """Yahoo Finance refused the download for too many requests: worth waiting out and trying again."""


def download(
    ticker: str, start: date | None = None, end: date | None = None, stop: StopRequest | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The daily prices of `ticker` (a validated symbol) from `start` to `end` inclusive (None: all history,
    up to today) as the canonical frame, and the warnings of their validation. Once `stop` is set, the wait
    for Yahoo's answer ends with `Interrupted` and nothing is returned."""
    check_range(start, end)
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
            timeout=REQUEST_TIMEOUT_S,
        )

    try:
        with _quiet_yfinance(yfinance):
            raw = _call_with_deadline(history, DEADLINE_S, stop)
    except Interrupted:
        raise
    except Exception as exc:
        raise _explain_failure(exc, ticker, start, end) from exc
    frame = _flatten(raw, ticker)
    if frame.dropna(how="all").empty:
        raise _no_prices_error(ticker, start, end, reason=None)
    return validate_prices(frame, f"Yahoo Finance prices for {ticker}")


def check_range(start: date | None, end: date | None) -> None:
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


def _call_with_deadline(call: Callable[[], pd.DataFrame], seconds: float, stop: StopRequest | None) -> pd.DataFrame:
    """Run `call` in a daemon thread and give up after `seconds` (TimeoutError), or once `stop` is set.

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
    deadline = time.monotonic() + seconds
    while worker.is_alive() and time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted")  # the download is abandoned: nothing was written
        worker.join(min(STOP_POLL_S, max(deadline - time.monotonic(), 0)))
    if worker.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _explain_failure(exc: Exception, ticker: str, start: date | None, end: date | None) -> ForecastError:
    """Turn yfinance's and curl_cffi's exceptions into one user-facing error with advice."""
    from yfinance.exceptions import YFException, YFRateLimitError, YFTickerMissingError

    # curl_cffi's HTTPError is an OSError too: look at the HTTP status before treating it as "offline".
    # (Its connection errors carry a response too, with status 0.)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    status = status if isinstance(status, int) and status >= 400 else None
    reason = _short_reason(exc)
    if isinstance(exc, YFRateLimitError) or status == 429:
        return RateLimited(
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


def _flatten(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """Flat price columns from either yfinance shape.

    `yf.download` gives MultiIndex columns named ['Price', 'Ticker'] and a tz-naive index;
    `Ticker.history` gives flat columns (maybe Dividends, Stock Splits) and a tz-aware index,
    which `validate_prices` turns into the exchange's calendar days.
    """
    if isinstance(frame.columns, pd.MultiIndex):
        if ticker in frame.columns.get_level_values("Ticker"):
            frame = frame.xs(ticker, axis=1, level="Ticker")
        else:
            frame = frame.droplevel("Ticker", axis=1)
    return frame[[column for column in COLUMNS if column in frame.columns]]
