"""The price data layer: Yahoo download and its failures, validation, CSV import, and the cache."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import threading
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yfinance
from curl_cffi.requests import Session
from curl_cffi.requests.exceptions import DNSError, HTTPError
from curl_cffi.requests.exceptions import Timeout as CurlTimeout
from yfinance.exceptions import YFDataException, YFRateLimitError, YFTzMissingError

from lstm_forecast import data, files, yahoo
from lstm_forecast.data import FetchSummary
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.prices import (
    COLUMNS,
    MAX_PRICE,
    MAX_VOLUME,
    MIN_PRICE,
    prices_sha256,
    prices_to_csv,
    read_prices_csv,
    validate_prices,
)

REAL_HISTORY = yfinance.Ticker.history  # captured before the no-network fixture replaces it
SHARED_TSLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "TSLA.csv"
CURL_DNS_MESSAGE = (
    "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com. "
    "See https://curl.se/libcurl/c/libcurl-errors.html first for more details."
)


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == COLUMNS
    assert frame.index.name == "Date"
    assert frame.index.dtype == np.dtype("datetime64[ns]")
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (frame.index == frame.index.normalize()).all()
    assert (frame.dtypes == np.float64).all()


def error_of(call, *args, **kwargs) -> ForecastError:
    with pytest.raises(ForecastError) as caught:
        call(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return caught.value


def write_csv(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def day(stamp: pd.Timestamp) -> date:
    return stamp.date()


# ---------------------------------------------------------------------------------------------
# Tickers and the data dir


@pytest.mark.parametrize(
    ("given", "expected"),
    [("tsla", "TSLA"), ("^gspc", "^GSPC"), ("BRK-B", "BRK-B"), ("0700.hk", "0700.HK"), ("EURUSD=X", "EURUSD=X")],
)
def test_validate_ticker_upper_cases_yahoo_symbols(given, expected):
    assert data.validate_ticker(given) == expected


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "a/b", "a\\b", "A" * 200, "A" * 21, "TS LA", " TSLA", "", ".", "..", "^", ".A", "$X"]
)
def test_validate_ticker_rejects_unsafe_names_as_usage_errors(bad):
    with pytest.raises(UsageError) as caught:
        data.validate_ticker(bad)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith("invalid ticker")
    assert len(str(caught.value)) < 250 and "\n" not in str(caught.value)


def test_cache_paths_keep_the_caret_and_stay_in_the_data_dir(tmp_path):
    # One file per Yahoo symbol: ^GSPC (the index) and GSPC (another symbol) never share a cache.
    assert data.cache_name("^gspc") == "^GSPC"
    assert data.cache_path(tmp_path, "^GSPC") == tmp_path / "^GSPC.csv"
    assert data.cache_path(tmp_path, "GSPC") == tmp_path / "GSPC.csv"
    assert data.cache_path(tmp_path, "brk.b") == tmp_path / "BRK.B.csv"
    with pytest.raises(UsageError):
        data.cache_path(tmp_path, "../../etc/passwd")


def test_data_dir_precedence_cli_env_config_default(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "cli", "from-config") == tmp_path / "cli"
    assert data.resolve_data_dir(None, "from-config") == tmp_path / "env"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.resolve_data_dir(None, "from-config") == Path("from-config")
    assert data.resolve_data_dir(None, None) == Path("data")
    assert not (tmp_path / "cli").exists()  # resolving never creates it


def test_data_dir_that_is_a_file_is_a_usage_error(tmp_path):
    file = write_csv(tmp_path, "x", "not-a-dir")
    with pytest.raises(UsageError, match="is a file"):
        data.resolve_data_dir(file, None)


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


# ---------------------------------------------------------------------------------------------
# Validation


def frame_of(rows: list[tuple], columns: list[str] = COLUMNS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["Date", *columns])


def test_validation_sorts_and_keeps_the_last_duplicate():
    frame = frame_of(
        [
            ("2020-01-03", 2, 2, 2, 2, 2, 20),
            ("2020-01-02", 1, 1, 1, 1, 1, 10),
            ("2020-01-03", 3, 3, 3, 3, 3, 30),
            ("2020-01-02", 4, 4, 4, 4, 4, 40),
        ]
    )
    prices, warned = validate_prices(frame, "x.csv")
    assert_canonical(prices)
    assert [day(d).isoformat() for d in prices.index] == ["2020-01-02", "2020-01-03"]
    assert prices["Close"].tolist() == [4.0, 3.0]
    assert any("2 duplicate date(s)" in text for text in warned)


def test_validation_drops_rows_without_close_or_adj_close():
    frame = frame_of(
        [
            ("2020-01-02", 1, 1, 1, 1, 1, 10),
            ("2020-01-03", 1, 1, 1, np.nan, 1, 10),
            ("2020-01-06", 1, 1, 1, 1, np.nan, 10),
            ("2020-01-07", np.nan, 2, 1, 1.5, 1.5, np.nan),
        ]
    )
    prices, warned = validate_prices(frame, "x.csv")
    assert len(prices) == 2
    assert any("dropped 2 row(s) without Close/Adj Close (first 2020-01-03)" in text for text in warned)
    assert prices.loc["2020-01-07", "Open"] == 1.5 and prices.loc["2020-01-07", "Volume"] == 0.0
    assert any("Open/High/Low" in text for text in warned) and any("Volume" in text for text in warned)


def test_non_numeric_price_names_column_and_date():
    frame = frame_of([("2020-01-02", 1, 1, 1, "1.5", 1, 10), ("2020-01-03", 1, 1, 1, "abc", 1, 10)])
    message = str(error_of(validate_prices, frame, "x.csv"))
    assert message == "x.csv: column Close has a non-numeric value 'abc' on 2020-01-03"


@pytest.mark.parametrize(("column", "value"), [("Close", 0.0), ("Low", -1.0), ("Adj Close", -0.5)])
def test_non_positive_price_names_the_first_bad_date(column, value):
    frame = frame_of([("2020-01-02", 1.0, 1.0, 1.0, 1.0, 1.0, 10), ("2020-01-03", 1.0, 1.0, 1.0, 1.0, 1.0, 10)])
    frame.loc[1, column] = value
    message = str(error_of(validate_prices, frame, "x.csv"))
    assert message.startswith(f"x.csv: {column} is {value:g} on 2020-01-03")


def test_infinite_price_is_an_error():
    frame = frame_of([("2020-01-02", 1, 1, 1, np.inf, 1, 10)])
    assert "column Close" in str(error_of(validate_prices, frame, "x.csv"))


def test_high_below_low_is_a_warning():
    frame = frame_of([("2020-01-02", 1, 1, 2, 1.5, 1.5, 10), ("2020-01-03", 1, 2, 1, 1.5, 1.5, 10)])
    prices, warned = validate_prices(frame, "x.csv")
    assert len(prices) == 2
    assert warned == ["x.csv: High is below Low on 1 day(s) (first 2020-01-02)"]


def test_future_dates_are_an_error():
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    frame = frame_of([("2020-01-02", 1, 1, 1, 1, 1, 10), (future, 1, 1, 1, 1, 1, 10)])
    assert str(error_of(validate_prices, frame, "x.csv")) == (
        f"x.csv: date {future} is in the future; check the Date column"
    )


@pytest.mark.parametrize("bad", ["2020-13-01", "01/02/2020", "yesterday", ""])
def test_unreadable_date_is_an_error(bad):
    frame = frame_of([("2020-01-02", 1, 1, 1, 1, 1, 10), (bad, 1, 1, 1, 1, 1, 10)])
    message = str(error_of(validate_prices, frame, "x.csv"))
    assert "cannot read the date" in message and "(data row 2); expected YYYY-MM-DD" in message


def test_no_rows_is_an_error():
    frame = frame_of([("2020-01-02", 1, 1, 1, np.nan, np.nan, 10)])
    assert "x.csv: no price rows" in str(error_of(validate_prices, frame, "x.csv"))


# ---------------------------------------------------------------------------------------------
# CSV import


YAHOO_ROWS = "2020-01-02,1.5,2,1,1.25,1.2,100\n2020-01-03,1.75,2.5,1.5,2,1.9,200\n"


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "date,open,high,low,close,adj_close,volume",
        "DATE,OPEN,HIGH,LOW,CLOSE,ADJCLOSE,VOLUME",
        "Date,Open,High,Low,Close,Adjusted,Volume",
        "date,open,high,low,close,adj close,volume",
    ],
)
def test_import_accepts_header_spellings(tmp_path, header):
    csv = write_csv(tmp_path, f"{header}\n{YAHOO_ROWS}")
    summary = data.import_csv(csv, tmp_path / "cache", "tsla")
    assert (summary.mode, summary.rows, summary.warnings) == ("import", 2, [])
    prices = data.read_cache(tmp_path / "cache", "TSLA")
    assert prices["Adj Close"].tolist() == [1.2, 1.9] and prices["Volume"].tolist() == [100.0, 200.0]


def test_import_reads_any_number_format_exactly(tmp_path):
    csv = write_csv(
        tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,56,1e2,5.6E+1,1.2666670083999634,0.5,7\n"
    )
    data.import_csv(csv, tmp_path, "X")
    row = data.read_cache(tmp_path, "X").iloc[0]
    assert row.tolist() == [56.0, 100.0, 56.0, 1.2666670083999634, 0.5, 7.0]


def test_import_without_adj_close_or_volume_warns(tmp_path):
    csv = write_csv(tmp_path, "Date,Open,High,Low,Close\n2020-01-02,1,2,1,1.5\n")
    summary = data.import_csv(csv, tmp_path, "X")
    prices = data.read_cache(tmp_path, "X")
    assert prices["Adj Close"].tolist() == [1.5] and prices["Volume"].tolist() == [0.0]
    assert any("no Adj Close column; using Close" in text for text in summary.warnings)
    assert any("no Volume column" in text for text in summary.warnings)


def test_import_yfinance_multi_row_header_csv(tmp_path, make_prices, yahoo_download_frame):
    prices = make_prices(10)
    csv = tmp_path / "gspc.csv"
    yahoo_download_frame(prices, "^GSPC").to_csv(csv)
    assert csv.read_text().splitlines()[1].startswith("Ticker,^GSPC")
    data.import_csv(csv, tmp_path, "^GSPC")
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "^GSPC"), prices, check_exact=True, check_freq=False)


def test_import_ticker_history_csv_with_time_zones(tmp_path, make_prices, yahoo_history_frame):
    prices = make_prices(10)
    csv = tmp_path / "history.csv"
    yahoo_history_frame(prices, actions=True).to_csv(csv)
    summary = data.import_csv(csv, tmp_path, "TSLA")
    assert summary.warnings == [f"{csv}: ignored column(s) Dividends, Stock Splits"]
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "TSLA"), prices, check_exact=True, check_freq=False)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file, not a CSV"),
        ("Date,Close\n2020-01-02,1\nCaf\xe9,2\n".encode("latin-1"), "not UTF-8 text"),
        (b"", "empty file"),
        (b"Open,High,Low,Close\n1,2,1,1.5\n", "no Date column (found: Open, High, Low, Close)"),
        (b"Date,Open,High,Low\n2020-01-02,1,2,1\n", "no Close column"),
        (b"Date,Close,close\n2020-01-02,1,2\n", "columns 'Close' and 'close' both mean Close"),
    ],
)
def test_import_rejects_unusable_files_in_one_line(tmp_path, content, expected):
    csv = tmp_path / "bad.csv"
    csv.write_bytes(content)
    message = str(error_of(data.import_csv, csv, tmp_path / "cache", "X"))
    assert message.startswith(f"{csv}: ") and expected in message
    assert not (tmp_path / "cache" / "X.csv").exists()


def test_import_of_a_missing_file(tmp_path):
    assert "cannot read" in str(error_of(data.import_csv, tmp_path / "nope.csv", tmp_path, "X"))


@pytest.mark.skipif(not SHARED_TSLA.is_file(), reason="shared/data/TSLA.csv is not beside the repository")
def test_import_real_tsla_history_bit_for_bit(tmp_path):
    summary = data.import_csv(SHARED_TSLA, tmp_path, "TSLA")
    assert (summary.rows, summary.first, summary.last) == (3951, date(2010, 6, 29), date(2026, 3, 13))
    assert summary.warnings == []
    source = pd.read_csv(SHARED_TSLA, index_col="Date")
    cached = data.read_cache(tmp_path, "TSLA")
    assert_canonical(cached)
    assert [d.isoformat() for d in cached.index.date] == source.index.tolist()
    assert np.array_equal(cached.to_numpy(), source[COLUMNS].to_numpy(dtype=np.float64))
    assert cached.loc["2010-06-29", "Open"] == 1.2666670083999634


# ---------------------------------------------------------------------------------------------
# The cache


def test_full_download_writes_yahoo_csv_and_sidecar(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(30)
    fake_yahoo.prices = prices
    summary = data.update_cache(tmp_path / "new", "tsla")
    path = tmp_path / "new" / "TSLA.csv"
    assert summary == FetchSummary("TSLA", path, 30, day(prices.index[0]), day(prices.index[-1]), "full", 30, [], [])
    lines = path.read_text().splitlines()
    assert lines[0] == "Date,Open,High,Low,Close,Adj Close,Volume"
    assert lines[1].startswith("2020-01-02,") and lines[1].endswith(f",{int(prices['Volume'].iloc[0])}")
    meta = json.loads((tmp_path / "new" / "TSLA.meta.json").read_text())
    assert meta["ticker"] == "TSLA" and meta["source"] == "yahoo"
    assert meta["requested"] == {"start": None, "end": None}
    assert (meta["rows"], meta["first"], meta["last"]) == (30, "2020-01-02", day(prices.index[-1]).isoformat())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == prices_sha256(prices)
    assert datetime.fromisoformat(meta["fetched_at"]).tzinfo is not None
    pd.testing.assert_frame_equal(data.read_cache(tmp_path / "new", "TSLA"), prices, check_exact=True, check_freq=False)


def test_cache_round_trip_is_bit_exact(tmp_path, make_prices):
    rng = np.random.default_rng(7)
    prices = make_prices(500)
    for column in ["Open", "High", "Low", "Close", "Adj Close"]:
        # All the magnitudes the cache accepts, and all mantissas.
        prices[column] = np.exp(rng.uniform(np.log(MIN_PRICE), np.log(MAX_PRICE), len(prices)))
    prices["Volume"] = rng.uniform(0, 1e9, len(prices))  # fractional volumes are kept too
    csv = write_csv(tmp_path, prices_to_csv(prices).decode(), "in.csv")
    data.import_csv(csv, tmp_path / "cache", "X")
    back = data.read_cache(tmp_path / "cache", "X")
    assert np.array_equal(back.to_numpy().view(np.int64), prices.to_numpy().view(np.int64))


def test_prices_sha256_changes_with_one_ulp(make_prices):
    prices = make_prices(20)
    nudged = prices.copy()
    nudged.iloc[5, 3] = np.nextafter(nudged.iloc[5, 3], np.inf)
    assert prices_sha256(prices) == prices_sha256(prices.copy())
    assert prices_sha256(prices) != prices_sha256(nudged)


def test_failed_write_leaves_the_old_cache_and_no_temp_file(tmp_path, fake_yahoo, make_prices, monkeypatch):
    prices = make_prices(40)
    fake_yahoo.prices = prices.iloc[:30]
    data.update_cache(tmp_path, "TSLA")
    before = (tmp_path / "TSLA.csv").read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    fake_yahoo.prices = prices
    monkeypatch.setattr(files.os, "fsync", disk_full)  # after the data went into the temp file
    message = str(error_of(data.update_cache, tmp_path, "TSLA"))
    assert message == f"cannot write {tmp_path / 'TSLA.csv'}: no space left on device"
    assert (tmp_path / "TSLA.csv").read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(files.TEMP_PREFIX)]


def test_update_fetches_only_from_the_last_cached_days(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(60)
    fake_yahoo.prices = prices.iloc[:50]
    data.update_cache(tmp_path, "TSLA")
    fake_yahoo.prices = prices
    summary = data.update_cache(tmp_path, "TSLA")
    assert (summary.mode, summary.rows, summary.new_rows, summary.messages) == ("incremental", 60, 10, [])
    assert fake_yahoo.calls[-1]["start"] == day(prices.index[50 - data.OVERLAP_ROWS])
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "TSLA"), prices, check_exact=True, check_freq=False)


def test_update_replaces_an_unfinished_last_day(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(30)
    live = prices.iloc[:20].copy()
    live.iloc[-1, 3] *= 1.01  # cached mid-session: the close moved on
    fake_yahoo.prices = live
    data.update_cache(tmp_path, "TSLA")
    fake_yahoo.prices = prices
    summary = data.update_cache(tmp_path, "TSLA")
    assert (summary.mode, summary.new_rows) == ("incremental", 10)
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "TSLA"), prices, check_exact=True, check_freq=False)


def test_readjusted_history_is_downloaded_again(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(60)
    fake_yahoo.prices = prices.iloc[:50]
    data.update_cache(tmp_path, "TSLA")
    readjusted = prices.assign(**{"Adj Close": prices["Adj Close"] * 0.98})  # a new dividend
    fake_yahoo.prices = readjusted
    summary = data.update_cache(tmp_path, "TSLA")
    assert (summary.mode, summary.rows, summary.new_rows) == ("redownload", 60, 10)
    assert "re-adjusted" in summary.messages[0]
    assert [call["start"] for call in fake_yahoo.calls] == [None, day(prices.index[45]), None]
    cached = data.read_cache(tmp_path, "TSLA")
    pd.testing.assert_frame_equal(cached, readjusted, check_exact=True, check_freq=False)


def test_tiny_rounding_differences_are_not_a_readjustment(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(30)
    fake_yahoo.prices = prices.iloc[:20]
    data.update_cache(tmp_path, "TSLA")
    fake_yahoo.prices = prices.assign(Close=prices["Close"] * (1 + 1e-9))
    assert data.update_cache(tmp_path, "TSLA").mode == "incremental"


def test_update_with_nothing_new_is_unchanged(tmp_path, fake_yahoo, make_prices):
    fake_yahoo.prices = make_prices(30)
    data.update_cache(tmp_path, "TSLA")
    before = (tmp_path / "TSLA.csv").stat().st_mtime_ns
    summary = data.update_cache(tmp_path, "TSLA")
    assert (summary.mode, summary.new_rows, summary.rows) == ("unchanged", 0, 30)
    assert (tmp_path / "TSLA.csv").stat().st_mtime_ns == before


def test_end_inside_the_cache_downloads_nothing(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(30)
    fake_yahoo.prices = prices
    data.update_cache(tmp_path, "TSLA")
    summary = data.update_cache(tmp_path, "TSLA", end=day(prices.index[10]))
    assert summary.mode == "unchanged" and len(fake_yahoo.calls) == 1


def test_refresh_downloads_the_whole_range(tmp_path, fake_yahoo, make_prices):
    fake_yahoo.prices = make_prices(30)
    data.update_cache(tmp_path, "TSLA")
    summary = data.update_cache(tmp_path, "TSLA", refresh=True)
    assert summary.mode == "full" and fake_yahoo.calls[-1]["start"] is None


def test_sidecar_less_cache_is_read_and_updated_incrementally(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(40)
    # Another writer's formatting (17 significant digits, e.g. 0.10000000000000001) and no sidecar.
    prices.iloc[:30].to_csv(tmp_path / "TSLA.csv", float_format="%.17g", date_format="%Y-%m-%d")
    assert not (tmp_path / "TSLA.meta.json").exists()
    cached = data.read_cache(tmp_path, "TSLA")
    pd.testing.assert_frame_equal(cached, prices.iloc[:30], check_exact=True, check_freq=False)
    fake_yahoo.prices = prices
    summary = data.update_cache(tmp_path, "TSLA")
    assert (summary.mode, summary.new_rows) == ("incremental", 10)
    assert fake_yahoo.calls[0]["start"] == day(prices.index[25])


def test_earlier_start_than_the_cache_downloads_again(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(40)
    csv = write_csv(tmp_path, prices_to_csv(prices.iloc[20:]).decode(), "in.csv")
    data.import_csv(csv, tmp_path / "cache", "TSLA")
    fake_yahoo.prices = prices
    summary = data.update_cache(tmp_path / "cache", "TSLA", start=day(prices.index[0]))
    assert (summary.mode, summary.rows, summary.new_rows) == ("full", 40, 20)
    assert "downloaded TSLA again from" in summary.messages[0]
    # The sidecar now records the earlier start: the same request again is only an update.
    assert data.update_cache(tmp_path / "cache", "TSLA", start=day(prices.index[0])).mode == "unchanged"


def test_concurrent_updates_of_one_ticker_both_finish(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(50)
    fake_yahoo.prices = prices
    results: list[FetchSummary | BaseException] = []

    def update():
        try:
            results.append(data.update_cache(tmp_path, "TSLA"))
        except BaseException as exc:
            results.append(exc)

    workers = [threading.Thread(target=update) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)
    assert sorted(result.mode for result in results) == ["full", "unchanged"]
    assert list(tmp_path.glob("*.lock")) == []  # the lock serialised them and was removed after
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "TSLA"), prices, check_exact=True, check_freq=False)


def test_import_replaces_the_cache_and_records_the_source(tmp_path, fake_yahoo, make_prices):
    fake_yahoo.prices = make_prices(30)
    data.update_cache(tmp_path, "TSLA")
    csv = write_csv(tmp_path, f"Date,Open,High,Low,Close,Adj Close,Volume\n{YAHOO_ROWS}", "mine.csv")
    summary = data.import_csv(csv, tmp_path, "TSLA")
    assert (summary.mode, summary.rows) == ("import", 2)
    assert summary.messages == [f"replaced the cached prices in {tmp_path / 'TSLA.csv'}"]
    meta = json.loads((tmp_path / "TSLA.meta.json").read_text())
    assert (meta["source"], meta["source_file"], meta["rows"]) == ("csv", str(csv.resolve()), 2)


def test_load_prices_slices_inclusively(tmp_path, fake_yahoo, make_prices):
    prices = make_prices(30)
    fake_yahoo.prices = prices
    data.update_cache(tmp_path, "TSLA")
    start, end = day(prices.index[5]), day(prices.index[9])
    sliced = data.load_prices(tmp_path, "tsla", start, end)
    assert len(sliced) == 5 and (day(sliced.index[0]), day(sliced.index[-1])) == (start, end)
    assert len(data.load_prices(tmp_path, "TSLA")) == 30
    message = str(error_of(data.load_prices, tmp_path, "TSLA", date(2030, 1, 1)))
    assert "no cached prices for TSLA from 2030-01-01" in message


def test_load_prices_without_cache_says_how_to_fetch(tmp_path):
    assert data.read_cache(tmp_path, "TSLA") is None
    message = str(error_of(data.load_prices, tmp_path, "TSLA"))
    assert message.startswith(f"no cached prices for TSLA in {tmp_path}; run `lstm-forecast fetch -t TSLA`")


def test_corrupt_cache_says_to_refresh(tmp_path):
    write_csv(tmp_path, "Date,Close\n2020-01-02,abc\n", "TSLA.csv")
    message = str(error_of(data.read_cache, tmp_path, "TSLA"))
    assert "column Close has a non-numeric value 'abc' on 2020-01-02" in message
    assert "lstm-forecast fetch -t TSLA --refresh" in message


def test_data_folder_that_cannot_be_created(tmp_path, fake_yahoo):
    blocker = write_csv(tmp_path, "x", "file")
    message = str(error_of(data.update_cache, blocker / "sub", "TSLA"))
    assert message.startswith(f"cannot create the data folder {blocker / 'sub'}")
    assert fake_yahoo.calls == []


def test_unwritable_data_folder_is_a_clear_error(tmp_path, fake_yahoo, monkeypatch):
    real_open = data.os.open

    def read_only_folder(path, flags, *args):  # tests run as root, where chmod cannot forbid writing
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(data.os, "open", read_only_folder)
    message = str(error_of(data.update_cache, tmp_path, "TSLA"))
    assert message == f"cannot write in {tmp_path}: Permission denied; choose a writable folder with --data-dir"
    assert fake_yahoo.calls == []


def test_start_after_end_is_a_usage_error(fake_yahoo):
    with pytest.raises(UsageError, match="start 2024-02-01 is after end 2024-01-01"):
        yahoo.download("TSLA", date(2024, 2, 1), date(2024, 1, 1))


# ---------------------------------------------------------------------------------------------
# Nothing written that would fail its own validation (issue 10.1, 10.2)


def test_bounds_are_inclusive_and_round_trip(tmp_path, make_prices):
    prices = make_prices(4)
    prices.iloc[0, :5] = MIN_PRICE
    prices.iloc[1, :5] = MAX_PRICE
    prices.iloc[2, 5] = MAX_VOLUME
    csv = write_csv(tmp_path, prices_to_csv(prices).decode(), "in.csv")
    data.import_csv(csv, tmp_path / "cache", "X")
    pd.testing.assert_frame_equal(data.read_cache(tmp_path / "cache", "X"), prices, check_exact=True, check_freq=False)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Close", 1e308, "Close is 1e+308 on 2020-01-03; prices must lie between 1e-12 and 1e+12"),
        ("Low", 1e-300, "Low is 1e-300 on 2020-01-03; prices must lie between"),
        ("Volume", 1e19, "Volume is 1e+19 on 2020-01-03; volumes must be at most 1e+18"),
        ("Volume", -1.0, "Volume is negative on 2020-01-03"),
    ],
)
def test_values_the_pipeline_cannot_use_name_the_first_bad_date(make_prices, column, value, expected):
    prices = make_prices(5)
    prices.loc["2020-01-06", column] = value  # a later bad day: the message names the first
    prices.loc["2020-01-03", column] = value
    assert expected in str(error_of(validate_prices, prices, "src"))


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_a_cache_that_would_not_read_back_is_never_written(tmp_path, make_prices, monkeypatch):
    """The last line of defence: with the volume bound lifted, 1e19 passes validation but the int64 writer
    would wrap it; the bytes are re-read before they replace anything, and refused."""
    good = write_csv(tmp_path, prices_to_csv(make_prices(5)).decode(), "good.csv")
    data.import_csv(good, tmp_path / "cache", "X")
    before = {path.name: path.read_bytes() for path in (tmp_path / "cache").iterdir()}
    bad = make_prices(5)
    bad.iloc[2, 5] = 1e19
    monkeypatch.setattr("lstm_forecast.prices.MAX_VOLUME", float("inf"))
    message = str(error_of(data._store, tmp_path / "cache" / "X.csv", "X", bad, [], [],
                           "import", 5, None, None))
    assert message.startswith(f"refused to write {tmp_path / 'cache' / 'X.csv'}, which would not read back")
    assert "Volume is negative on 2020-01-06" in message
    assert {path.name: path.read_bytes() for path in (tmp_path / "cache").iterdir()} == before


# ---------------------------------------------------------------------------------------------
# Importing: the range asked for, and nothing rewritten when nothing changed (issue 9.3)


def test_import_keeps_only_the_requested_range_and_records_it(tmp_path, make_prices):
    prices = make_prices(30)
    csv = write_csv(tmp_path, prices_to_csv(prices).decode(), "in.csv")
    start, end = date(2020, 1, 10), day(prices.index[20])
    summary = data.import_csv(csv, tmp_path, "X", start=start, end=end)
    expected = prices.loc[pd.Timestamp(start) : pd.Timestamp(end)]
    assert (summary.rows, summary.first, summary.last) == (len(expected), day(expected.index[0]), end)
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "X"), expected, check_freq=False)
    meta = json.loads((tmp_path / "X.meta.json").read_text())
    assert meta["requested"] == {"start": "2020-01-10", "end": end.isoformat()}
    assert (meta["first"], meta["rows"]) == (day(expected.index[0]).isoformat(), len(expected))


def test_reimporting_the_same_csv_changes_nothing(tmp_path, make_prices):
    csv = write_csv(tmp_path, prices_to_csv(make_prices(30)).decode(), "in.csv")
    data.import_csv(csv, tmp_path / "cache", "X")
    files_before = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (tmp_path / "cache").iterdir()}
    summary = data.import_csv(csv, tmp_path / "cache", "X")
    assert (summary.mode, summary.new_rows, summary.messages) == ("unchanged", 0, [])
    # Neither the CSV nor its sidecar was written again.
    assert {path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in (tmp_path / "cache").iterdir()} == files_before


def test_reimporting_more_rows_counts_only_the_new_ones(tmp_path, make_prices):
    prices = make_prices(30)
    data.import_csv(write_csv(tmp_path, prices_to_csv(prices.iloc[:25]).decode(), "a.csv"), tmp_path, "X")
    summary = data.import_csv(write_csv(tmp_path, prices_to_csv(prices).decode(), "b.csv"), tmp_path, "X")
    assert (summary.mode, summary.new_rows) == ("import", 5)
    assert summary.messages == [f"replaced the cached prices in {tmp_path / 'X.csv'}"]


# ---------------------------------------------------------------------------------------------
# One file per symbol, and the legacy caret-less names (issue 9.3)


def write_sidecar(folder: Path, name: str, ticker: str) -> None:
    (folder / f"{name}.meta.json").write_text(json.dumps({"ticker": ticker}))


def test_caret_symbol_reads_a_legacy_file_without_sidecar_with_a_note(tmp_path, make_prices, caplog):
    prices = make_prices(20)
    write_csv(tmp_path, prices_to_csv(prices).decode(), "GSPC.csv")  # a folder of Yahoo downloads
    with caplog.at_level(logging.WARNING, logger="lstm_forecast.data"):
        pd.testing.assert_frame_equal(data.read_cache(tmp_path, "^GSPC"), prices, check_freq=False)
    assert caplog.messages == [
        f"Note: reading ^GSPC from {tmp_path / 'GSPC.csv'} (the name without the caret); "
        f"the next fetch writes {tmp_path / '^GSPC.csv'}"
    ]
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "GSPC"), prices, check_freq=False)  # its own name too


def test_the_shared_yahoo_folder_serves_the_index(tmp_path):
    shared = SHARED_TSLA.parent
    if not (shared / "GSPC.csv").is_file():
        pytest.skip("no shared Yahoo folder here")
    prices = data.read_cache(shared, "^GSPC")
    assert prices is not None and day(prices.index[0]) <= date(1990, 1, 2)


def test_own_file_wins_over_the_legacy_one(tmp_path, make_prices):
    write_csv(tmp_path, prices_to_csv(make_prices(20, seed=1)).decode(), "GSPC.csv")
    write_csv(tmp_path, prices_to_csv(make_prices(30, seed=2)).decode(), "^GSPC.csv")
    assert len(data.read_cache(tmp_path, "^GSPC")) == 30
    assert len(data.read_cache(tmp_path, "GSPC")) == 20


def test_a_legacy_file_of_the_plain_symbol_is_not_the_index(tmp_path, make_prices):
    write_csv(tmp_path, prices_to_csv(make_prices(20)).decode(), "GSPC.csv")
    write_sidecar(tmp_path, "GSPC", "GSPC")
    assert data.read_cache(tmp_path, "^GSPC") is None


def test_the_plain_symbol_never_reads_or_replaces_the_index(tmp_path, make_prices, fake_yahoo):
    write_csv(tmp_path, prices_to_csv(make_prices(20)).decode(), "GSPC.csv")
    write_sidecar(tmp_path, "GSPC", "^GSPC")  # written by an older version for ^GSPC
    assert len(data.read_cache(tmp_path, "^GSPC")) == 20
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    other = write_csv(tmp_path / "..", prices_to_csv(make_prices(5)).decode(), "other.csv")
    for attempt in (lambda: data.read_cache(tmp_path, "GSPC"), lambda: data.update_cache(tmp_path, "GSPC"),
                    lambda: data.import_csv(other, tmp_path, "GSPC")):
        message = str(error_of(attempt))
        assert message.startswith(f"{tmp_path / 'GSPC.csv'} holds the prices of '^GSPC' (its sidecar GSPC.meta.json")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert fake_yahoo.calls == []


def test_fetching_the_index_moves_it_to_its_own_file(tmp_path, make_prices, fake_yahoo):
    prices = make_prices(30)
    legacy = write_csv(tmp_path, prices_to_csv(prices.iloc[:25]).decode(), "GSPC.csv")
    legacy_bytes = legacy.read_bytes()
    fake_yahoo.prices = prices
    summary = data.update_cache(tmp_path, "^GSPC")
    assert (summary.path, summary.mode, summary.new_rows) == (tmp_path / "^GSPC.csv", "incremental", 5)
    assert fake_yahoo.calls[0]["ticker"] == "^GSPC"
    assert legacy.read_bytes() == legacy_bytes  # the user's file is left alone
    assert json.loads((tmp_path / "^GSPC.meta.json").read_text())["ticker"] == "^GSPC"
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "^GSPC"), prices, check_freq=False)


# ---------------------------------------------------------------------------------------------
# Lock files and folders left behind (issue 9.4)


def test_a_failed_first_fetch_creates_no_folder(tmp_path, fake_yahoo):
    fake_yahoo.error = OSError("Network is unreachable")
    error_of(data.update_cache, tmp_path / "new" / "data", "TSLA")
    assert list(tmp_path.iterdir()) == []


def test_no_lock_file_remains_after_success_or_failure(tmp_path, fake_yahoo, make_prices):
    fake_yahoo.prices = make_prices(30)
    data.update_cache(tmp_path, "TSLA")
    fake_yahoo.prices = None
    fake_yahoo.error = OSError("Network is unreachable")
    error_of(data.update_cache, tmp_path, "TSLA")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["TSLA.csv", "TSLA.meta.json"]


def test_without_flock_the_portable_lock_still_excludes_other_writers(tmp_path, fake_yahoo, make_prices,
                                                                       monkeypatch):
    monkeypatch.setattr(data, "fcntl", None)  # as on Windows
    monkeypatch.setattr(data, "LOCK_TIMEOUT_S", 0.3)
    fake_yahoo.prices = make_prices(30)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another writer, in another thread (filelock's lock is re-entrant within one)
        with data._cache_lock(tmp_path / "TSLA.csv"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        assert "another lstm-forecast process has been updating" in str(error_of(data.update_cache, tmp_path, "TSLA"))
    finally:
        release.set()
        holder.join()
    data.update_cache(tmp_path, "TSLA")
    assert data.read_cache(tmp_path, "TSLA") is not None and (tmp_path / "TSLA.csv.lock").exists()


def test_a_held_lock_makes_a_writer_wait_then_give_up(tmp_path, fake_yahoo, monkeypatch):
    monkeypatch.setattr(data, "LOCK_TIMEOUT_S", 0.3)
    with data._cache_lock(tmp_path / "TSLA.csv"):
        message = str(error_of(data.update_cache, tmp_path, "TSLA"))
    assert message.startswith(f"another lstm-forecast process has been updating {tmp_path / 'TSLA.csv'}")
    assert fake_yahoo.calls == [] and list(tmp_path.iterdir()) == []


def test_a_lock_file_left_by_a_killed_writer_is_taken_and_removed(tmp_path, fake_yahoo, make_prices):
    (tmp_path / "TSLA.csv.lock").touch()  # nobody holds it: the kernel released the dead writer's flock
    fake_yahoo.prices = make_prices(30)
    assert data.update_cache(tmp_path, "TSLA").mode == "full"
    assert not (tmp_path / "TSLA.csv.lock").exists()


# ---------------------------------------------------------------------------------------------
# Bounded reads, shapes, encodings and damaged sidecars (issues 10.3, 10.4, 10.7)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"Date,Close\n2020-01-02,10\n" + b"\x00" * 10, "binary file, not a CSV"),
        ("\ufeffDate,Close\n2020-01-02,10\n".encode("utf-16-be")[:-1], "not UTF-16 text"),
        (b"Date,Close\n2020-01-02,10\n" * 150_000, "300,001 lines; a daily price CSV has at most 200,000"),
        (b"Date,Close," + b",".join(b"c%d" % n for n in range(60)) + b"\n", "62 columns in the header"),
        (b"Date,Close\n2020-01-02," + b"1" * 5_000 + b"\n", "line 2 has 5,011 characters (at most 2,000)"),
    ],
)
def test_csvs_no_price_file_looks_like_are_refused_before_parsing(tmp_path, content, expected):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    message = str(error_of(read_prices_csv, path))
    assert expected in message and len(message) < 400


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_unicode_csvs_with_a_byte_order_mark_are_read(tmp_path, encoding):
    text = "Date,Close\n2020-01-02,10\n2020-01-03,11\n"
    bom = {"utf-16-le": "\ufeff", "utf-16-be": "\ufeff", "utf-32-be": "\ufeff"}.get(encoding, "")
    path = tmp_path / "in.csv"
    path.write_bytes((bom + text).encode(encoding))
    prices, _ = read_prices_csv(path)
    assert prices["Close"].tolist() == [10.0, 11.0]


def test_special_files_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    assert str(error_of(read_prices_csv, fifo)) == f"{fifo}: not a regular file; expected a daily price CSV"
    assert "not a regular file" in str(error_of(read_prices_csv, Path("/dev/zero")))


@pytest.mark.parametrize(
    "sidecar",
    ["[" * 60_000, '{"ticker": 1' + "0" * 5_000 + "}", " " * 100_000 + "{}", "[1, 2]", '{"ticker": ["^X"]}',
     '{"sha256": {"a": 1}, "requested": 5}'],
)
def test_a_damaged_sidecar_counts_as_absent(tmp_path, make_prices, fake_yahoo, sidecar):
    prices = make_prices(30)
    write_csv(tmp_path, prices_to_csv(prices).decode(), "TSLA.csv")
    (tmp_path / "TSLA.meta.json").write_text(sidecar)
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "TSLA"), prices, check_freq=False)
    fake_yahoo.prices = prices
    assert data.update_cache(tmp_path, "TSLA").mode == "unchanged"
    assert json.loads((tmp_path / "TSLA.meta.json").read_text())["rows"] == 30  # rewritten whole


def test_a_sidecar_that_is_a_device_counts_as_absent(tmp_path, make_prices):
    prices = make_prices(10)
    write_csv(tmp_path, prices_to_csv(prices).decode(), "GSPC.csv")
    (tmp_path / "GSPC.meta.json").symlink_to("/dev/zero")
    pd.testing.assert_frame_equal(data.read_cache(tmp_path, "^GSPC"), prices, check_freq=False)


# Through the real CLI under an address-space limit: an unbounded read or parse fails the test, not the machine.
FETCH_LIMITED = ["fetch", "-t", "SYN", "--data-dir", "data", "--from-csv"]


def write_wide_header(folder: Path) -> str:
    (folder / "wide.csv").write_text("Date,Close," + ",".join(f"c{n}" for n in range(300_000)) + "\n2020-01-02,10\n")
    return "wide.csv"


def write_sparse_70_mib(folder: Path) -> str:
    with (folder / "big.csv").open("wb") as handle:
        handle.write(b"Date,Close\n")
        handle.truncate(70 * 1024**2)
    return "big.csv"


def write_ten_mb_line(folder: Path) -> str:
    (folder / "line.csv").write_bytes(b"Date," + b"9" * 10 * 1024**2)
    return "line.csv"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda folder: "/dev/zero", "/dev/zero: not a regular file; expected a daily price CSV"),
        (write_sparse_70_mib, "big.csv: 73,400,320 bytes, more than a daily price CSV can be (67,108,864 bytes"),
        (write_wide_header, "wide.csv: 300,002 columns in the header"),
        (write_ten_mb_line, "line.csv: line 1 has 10,485,765 characters"),
    ],
    ids=["dev-zero", "70-MiB", "300000-columns", "10-MB-line"],
)
def test_huge_inputs_fail_fast_and_small(tmp_path, make, expected):
    from conftest import run_cli_limited

    result = run_cli_limited([*FETCH_LIMITED, make(tmp_path)], tmp_path, timeout=30)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and expected in line and len(line) < 400
    assert not (tmp_path / "data").exists()
