"""Price validation and the CSV format: canonical frames, bounds, bit-exact bytes, files refused before parsing."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_canonical, day, error_of

from lstm_forecast.prices import COLUMNS, prices_sha256, read_prices_csv, validate_prices

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


# ---------------------------------------------------------------------------------------------
# Canonical bytes, bounded reads, shapes and encodings (issues 10.3, 10.4, 10.7)


def test_prices_sha256_changes_with_one_ulp(make_prices):
    prices = make_prices(20)
    nudged = prices.copy()
    nudged.iloc[5, 3] = np.nextafter(nudged.iloc[5, 3], np.inf)
    assert prices_sha256(prices) == prices_sha256(prices.copy())
    assert prices_sha256(prices) != prices_sha256(nudged)


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
