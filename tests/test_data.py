"""The price cache: tickers and paths, CSV import, updates from Yahoo, sidecars, legacy names and locks."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import threading
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_canonical, day, error_of

from lstm_forecast import data, files
from lstm_forecast.data import FetchSummary
from lstm_forecast.errors import UsageError
from lstm_forecast.prices import (
    COLUMNS,
    MAX_PRICE,
    MAX_VOLUME,
    MIN_PRICE,
    prices_sha256,
    prices_to_csv,
    read_prices_csv,
)

SHARED_TSLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "TSLA.csv"


def write_csv(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


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
    # The stored file, as written: random magnitudes are level breaks to the data-quality rules a run reads through.
    back, _ = read_prices_csv(data.cache_file(tmp_path / "cache", "X"))
    assert np.array_equal(back.to_numpy().view(np.int64), prices.to_numpy().view(np.int64))


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
    # Two rows over a cache of thirty: the 28 the file lacks would go, so only with --replace.
    with pytest.raises(UsageError, match=r"importing it would drop 28 of the 30 cached TSLA rows .* add --replace"):
        data.import_csv(csv, tmp_path, "TSLA")
    assert len(data.load_prices(tmp_path, "TSLA")) == 30
    summary = data.import_csv(csv, tmp_path, "TSLA", replace_rows=True)
    assert (summary.mode, summary.rows) == ("import", 2)
    assert summary.messages == [f"replaced the cached prices in {tmp_path / 'TSLA.csv'} (28 cached rows the file "
                                "lacks dropped, as --replace asked)"]
    meta = json.loads((tmp_path / "TSLA.meta.json").read_text())
    assert (meta["source"], meta["source_file"], meta["rows"]) == ("csv", str(csv.resolve()), 2)


def test_import_refuses_a_file_whose_ticker_column_names_another_ticker(tmp_path):
    rows = "2020-01-02,1,1,1,1,1,100,SPY\n2020-01-03,1,1,1,1,1,100,SPY\n"
    csv = write_csv(tmp_path, f"Date,Open,High,Low,Close,Adj Close,Volume,Name\n{rows}", "spy.csv")
    with pytest.raises(UsageError, match=r"its Name column names 'SPY', not AAPL"):
        data.import_csv(csv, tmp_path, "AAPL")
    assert not (tmp_path / "AAPL.csv").exists()
    assert data.import_csv(csv, tmp_path, "SPY").rows == 2


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


# ---------------------------------------------------------------------------------------------
# Nothing written that would fail its own validation (issue 10.1, 10.2)


def test_bounds_are_inclusive_and_round_trip(tmp_path, make_prices):
    prices = make_prices(4)
    prices.iloc[0, :5] = MIN_PRICE
    prices.iloc[1, :5] = MAX_PRICE
    prices.iloc[2, 5] = MAX_VOLUME
    csv = write_csv(tmp_path, prices_to_csv(prices).decode(), "in.csv")
    data.import_csv(csv, tmp_path / "cache", "X")
    stored, _ = read_prices_csv(data.cache_file(tmp_path / "cache", "X"))  # as written: the bounds are level breaks
    pd.testing.assert_frame_equal(stored, prices, check_exact=True, check_freq=False)


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
