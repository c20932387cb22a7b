"""The Yahoo Finance adapter: the download, yfinance's frame shapes, and its failures in one line."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yfinance
from conftest import assert_canonical, day, error_of
from curl_cffi.requests import Session
from curl_cffi.requests.exceptions import DNSError, HTTPError
from curl_cffi.requests.exceptions import Timeout as CurlTimeout
from yfinance.exceptions import YFDataException, YFRateLimitError, YFTzMissingError

from lstm_forecast import data, yahoo
from lstm_forecast.errors import Interrupted, UsageError

REAL_HISTORY = yfinance.Ticker.history  # captured before the no-network fixture replaces it
CURL_DNS_MESSAGE = (
    "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com. "
    "See https://curl.se/libcurl/c/libcurl-errors.html first for more details."
)


# ---------------------------------------------------------------------------------------------
# Download and normalisation


def test_fetch_normalises_history_frame_value_by_value(fake_yahoo, make_prices):
    prices = make_prices(20)
    fake_yahoo.prices = prices
    fetched, _ = yahoo.download("TSLA")
    assert_canonical(fetched)
    pd.testing.assert_frame_equal(fetched, prices, check_exact=True, check_freq=False)
    call = fake_yahoo.calls[0]
    assert call["ticker"] == "TSLA" and call["period"] == "max" and call["start"] is None
    assert call["auto_adjust"] is False and call["interval"] == "1d"
    assert call["timeout"] == yahoo.REQUEST_TIMEOUT_S


def test_fetch_end_is_inclusive(fake_yahoo, make_prices):
    prices = make_prices(20)
    fake_yahoo.prices = prices
    start, end = day(prices.index[3]), day(prices.index[10])
    fetched, _ = yahoo.download("TSLA", start, end)
    assert fake_yahoo.calls[0]["end"] == end + timedelta(days=1)  # Yahoo's end is exclusive
    assert (day(fetched.index[0]), day(fetched.index[-1])) == (start, end)


def test_download_shape_is_normalised(fake_yahoo, make_prices, yahoo_download_frame):
    prices = make_prices(15)
    fake_yahoo.raw = yahoo_download_frame(prices, "TSLA")
    pd.testing.assert_frame_equal(yahoo.download("TSLA")[0], prices, check_exact=True, check_freq=False)


def test_download_shape_with_several_tickers_picks_the_right_one(fake_yahoo, make_prices, yahoo_download_frame):
    tsla, aapl = make_prices(10, seed=1), make_prices(10, seed=2)
    fake_yahoo.raw = pd.concat([yahoo_download_frame(aapl, "AAPL"), yahoo_download_frame(tsla, "TSLA")], axis=1)
    pd.testing.assert_frame_equal(yahoo.download("TSLA")[0], tsla, check_exact=True, check_freq=False)


def test_history_shape_keeps_the_exchange_calendar_day(fake_yahoo, make_prices, yahoo_history_frame):
    prices = make_prices(10)
    fake_yahoo.raw = yahoo_history_frame(prices, tz="Asia/Tokyo", actions=True)  # UTC would be a day earlier
    fetched, _ = yahoo.download("7203.T")
    assert fetched.index.equals(prices.index)


def test_auto_adjusted_history_without_adj_close_uses_close(fake_yahoo, make_prices, yahoo_history_frame):
    fake_yahoo.raw = yahoo_history_frame(make_prices(10), auto_adjust=True, actions=True)
    fetched, _ = yahoo.download("TSLA")
    assert_canonical(fetched)
    assert np.array_equal(fetched["Adj Close"].to_numpy(), fetched["Close"].to_numpy())


def test_empty_download_frame_means_no_prices(fake_yahoo, make_prices, yahoo_download_frame):
    fake_yahoo.raw = yahoo_download_frame(make_prices(5).iloc[:0], "ZZZZ")
    assert fake_yahoo.raw.shape == (0, 6)
    assert str(error_of(yahoo.download, "ZZZZ")).startswith("Yahoo Finance returned no prices for ZZZZ")


@pytest.mark.parametrize(
    "error",
    [YFTzMissingError("ZZZZ"), HTTPError("HTTP Error 404: Not Found", 0, SimpleNamespace(status_code=404))],
)
def test_unknown_ticker_says_no_prices(fake_yahoo, error):
    fake_yahoo.error = error
    failure = error_of(yahoo.download, "ZZZZ")
    assert failure.exit_code == 1
    assert str(failure).startswith("Yahoo Finance returned no prices for ZZZZ")
    assert "check the symbol" in str(failure)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            DNSError(CURL_DNS_MESSAGE, 6, SimpleNamespace(status_code=0)),
            "Could not resolve host: query2.finance.yahoo.com",
        ),
        (
            CurlTimeout("Failed to perform, curl: (28) Connection timed out after 10 s."),
            "Connection timed out after 10 s",
        ),
        (YFDataException("*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"), "*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"),
    ],
)
def test_network_failure_says_could_not_reach(fake_yahoo, error, reason):
    fake_yahoo.error = error
    failure = error_of(yahoo.download, "TSLA")
    assert failure.exit_code == 1
    assert str(failure).startswith(f"could not reach Yahoo Finance for TSLA ({reason}). ")
    assert str(failure).endswith("Import a CSV with --from-csv or point LSTM_FORECAST_DATA_DIR at cached prices.")


def test_dns_error_message_is_exactly_the_documented_one(fake_yahoo):
    fake_yahoo.error = DNSError(CURL_DNS_MESSAGE, 6, SimpleNamespace(status_code=0))
    assert str(error_of(yahoo.download, "TSLA")) == (
        "could not reach Yahoo Finance for TSLA (Could not resolve host: query2.finance.yahoo.com). "
        "Import a CSV with --from-csv or point LSTM_FORECAST_DATA_DIR at cached prices."
    )


@pytest.mark.parametrize(
    "error", [YFRateLimitError(), HTTPError("HTTP Error 429", 0, SimpleNamespace(status_code=429))]
)
def test_rate_limit_says_so(fake_yahoo, error):
    fake_yahoo.error = error
    assert "rate limiting" in str(error_of(yahoo.download, "TSLA"))


def test_other_failures_name_what_happened(fake_yahoo):
    fake_yahoo.error = HTTPError("HTTP Error 503", 0, SimpleNamespace(status_code=503))
    assert "answered HTTP 503 for TSLA" in str(error_of(yahoo.download, "TSLA"))
    fake_yahoo.error = KeyError("chart")
    assert "failed unexpectedly (KeyError" in str(error_of(yahoo.download, "TSLA"))


def test_a_download_that_never_answers_gives_up(monkeypatch, fake_yahoo):
    release = threading.Event()
    fake_yahoo.error = None
    monkeypatch.setattr(fake_yahoo, "history", lambda ticker, **kwargs: release.wait(5))
    monkeypatch.setattr(yahoo, "DEADLINE_S", 0.05)
    try:
        failure = error_of(yahoo.download, "TSLA")
    finally:
        release.set()
    assert str(failure).startswith("could not reach Yahoo Finance for TSLA (no answer within 0.05 s)")


def test_a_stop_request_ends_the_wait_for_yahoo_at_once(monkeypatch, fake_yahoo, tmp_path):
    release, stop = threading.Event(), threading.Event()
    fake_yahoo.error = None
    monkeypatch.setattr(fake_yahoo, "history", lambda ticker, **kwargs: release.wait(5))
    threading.Timer(0.2, stop.set).start()  # Ctrl-C while Yahoo is silent, long before the 30 s deadline
    try:
        with pytest.raises(Interrupted) as caught:  # not the deadline's "could not reach Yahoo Finance"
            data.update_cache(tmp_path / "data", "TSLA", stop=stop)
    finally:
        release.set()
    assert str(caught.value) == "interrupted"
    assert not (tmp_path / "data" / "TSLA.csv").exists()


def test_yfinance_is_made_to_raise_and_kept_quiet(monkeypatch, fake_yahoo, make_prices, yahoo_history_frame, caplog):
    seen = {}

    def noisy_history(ticker, **kwargs):
        seen["hide_exceptions"] = yfinance.config.debug.hide_exceptions
        logging.getLogger("yfinance").error("1 Failed download")
        warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
        return yahoo_history_frame(make_prices(5))

    monkeypatch.setattr(fake_yahoo, "history", noisy_history)
    caplog.set_level(logging.DEBUG, logger="yfinance")
    before = yfinance.config.debug.hide_exceptions
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(yahoo.download("TSLA")[0]) == 5
    assert seen["hide_exceptions"] is False  # so its errors arrive as exceptions, not log lines
    assert yfinance.config.debug.hide_exceptions == before
    assert logging.getLogger("yfinance").level == logging.DEBUG  # restored
    assert caught == [] and caplog.records == []


class WireResponse:
    """Just enough of a curl_cffi response for yfinance's request code."""

    def __init__(self, status: int, body: dict):
        self.status_code, self.reason = status, "Not Found"
        self.text = json.dumps(body)
        self.content = self.text.encode()
        self.url = "https://query2.finance.yahoo.com/"
        self.headers: dict[str, str] = {}

    def json(self) -> dict:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HTTPError(f"HTTP Error {self.status_code}: {self.reason}", 0, self)


@pytest.fixture
def yahoo_wire(monkeypatch):
    """The real yfinance code down to the HTTP session, which a test sets to fail or answer."""
    from yfinance import cache

    monkeypatch.setattr(yfinance.Ticker, "history", REAL_HISTORY)
    monkeypatch.setattr(cache, "get_tz_cache", cache._TzCacheDummy)  # no sqlite files in ~/.cache
    monkeypatch.setattr(cache, "get_cookie_cache", cache._CookieCacheDummy)
    wire = SimpleNamespace(answer=None, urls=[])

    def request(session, method, url, **kwargs):
        wire.urls.append(url)
        return wire.answer(url)

    monkeypatch.setattr(Session, "request", request)
    return wire


@pytest.mark.parametrize("info_lookups_done", [0, 2])
def test_real_yfinance_offline_is_could_not_reach_not_unknown_ticker(
    yahoo_wire, caplog, monkeypatch, info_lookups_done
):
    # yfinance looks a missing timezone up in `.info` only twice per process; after that, a failed
    # lookup reads "possibly delisted" unless its exceptions are switched on.
    monkeypatch.setattr("yfinance.base._tz_info_fetch_ctr", info_lookups_done)

    def offline(url):
        raise DNSError(CURL_DNS_MESSAGE.replace("query2.finance.yahoo.com", url.split("/")[2]), 6)

    yahoo_wire.answer = offline
    caplog.set_level(logging.DEBUG, logger="yfinance")
    failure = error_of(yahoo.download, "TSLA")
    assert str(failure).startswith("could not reach Yahoo Finance for TSLA (Could not resolve host:")
    assert any("/v8/finance/chart/TSLA" in url for url in yahoo_wire.urls)  # really went through yfinance
    assert caplog.records == []  # yfinance's own log lines stay off the terminal


def test_real_yfinance_unknown_ticker_is_no_prices(yahoo_wire):
    not_found = {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found"}}}
    yahoo_wire.answer = lambda url: WireResponse(404, not_found)
    failure = error_of(yahoo.download, "ZZZZ")
    assert str(failure).startswith("Yahoo Finance returned no prices for ZZZZ")
    assert not str(failure).startswith("could not reach")


def test_start_after_end_is_a_usage_error(fake_yahoo):
    with pytest.raises(UsageError, match="start 2024-02-01 is after end 2024-01-01"):
        yahoo.download("TSLA", date(2024, 2, 1), date(2024, 1, 1))
