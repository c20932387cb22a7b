"""`fetch` over several tickers: one at a time at a pace, Yahoo's rate limiting waited out and tried again, each
ticker's failure its own, Ctrl-C keeping every finished cache whole; one ticker prints exactly what it always did.

Yahoo is faked (conftest's `fake_yahoo`, with failures queued per ticker) and so is the clock the waits run on,
so a test never sleeps: the pace and the backoff are checked on the fake clock's times."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from curl_cffi.requests.exceptions import HTTPError
from typer.testing import CliRunner
from yfinance.exceptions import YFRateLimitError

from lstm_forecast import data, yahoo
from lstm_forecast.cli import app
from lstm_forecast.prices import prices_to_csv, read_prices_csv

ROWS = 300
FIRST, LAST = "2020-01-02", "2021-02-24"  # the fake's 300 business days
RATE_LIMIT_MESSAGE = ("Yahoo Finance is rate limiting requests from this computer (fetching BBB); wait a few "
                      "minutes and try again, or import a CSV with --from-csv.")


class FakeTime:
    """The clock and the sleep that data.py's waits use: time passes only when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Any = None  # called after each sleep, e.g. to set a stop request

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(data, "time", fake)
    return fake


@pytest.fixture
def yahoo_fake(fake_yahoo, make_prices, clock, monkeypatch):
    """`fake_yahoo` serving 300 rows for every ticker, but first raising `failures[TICKER]`'s errors one per call;
    `starts` records (ticker, fake time) for every download."""
    fake_yahoo.prices = make_prices(ROWS)
    fake_yahoo.failures = {}
    fake_yahoo.starts = []
    serve = fake_yahoo.history

    def history(ticker: Any, **kwargs: Any) -> Any:
        fake_yahoo.starts.append((ticker.ticker, clock.now))
        queued = fake_yahoo.failures.get(ticker.ticker)
        if queued:
            raise queued.pop(0)
        return serve(ticker, **kwargs)

    monkeypatch.setattr(fake_yahoo, "history", history)
    return fake_yahoo


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def cached_rows(folder: Path, ticker: str) -> int:
    prices, _ = read_prices_csv(folder / f"{ticker}.csv")
    return len(prices)


def started(fake: Any, ticker: str | None = None) -> list[float]:
    return [when for name, when in fake.starts if ticker in (None, name)]


def table(stdout: str) -> dict[str, list[str]]:
    """The printed table's cells by ticker (a cell wrapped over lines joined again)."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0]:
            rows[cells[0]] = cells[1:]
        else:  # the continuation of the row above
            last = rows[next(reversed(rows))]
            rows[next(reversed(rows))] = [" ".join(filter(None, pair)) for pair in zip(last, cells[1:], strict=True)]
    return rows


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


# --- several tickers --------------------------------------------------------------------------------------


def test_several_tickers_are_fetched_in_turn_into_one_table(runner, clean_workdir, yahoo_fake):
    result = runner.invoke(app, ["fetch", "-t", "AAA,bbb", "-t", "CCC", "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    assert [name for name, _ in yahoo_fake.starts] == ["AAA", "BBB", "CCC"]
    for ticker in ("AAA", "BBB", "CCC"):
        assert cached_rows(clean_workdir / "data", ticker) == ROWS
    row = [str(ROWS), f"{FIRST} … {LAST}", str(ROWS), "full"]
    assert table(result.stdout) == {"AAA": row, "BBB": row, "CCC": row}
    assert result.stdout.splitlines()[-1] == "Fetched 3 of 3 tickers into data: 900 new rows."
    assert "3/3" in result.stderr and "Error" not in result.stderr  # the bar over tickers, on stderr


def test_one_failing_ticker_never_stops_the_others(runner, clean_workdir, yahoo_fake):
    yahoo_fake.failures["BBB"] = [OSError("Network is unreachable")]
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB,CCC", "--data-dir", "data"])
    assert result.exit_code == 1
    assert cached_rows(clean_workdir / "data", "AAA") == cached_rows(clean_workdir / "data", "CCC") == ROWS
    assert not (clean_workdir / "data" / "BBB.csv").exists()
    assert table(result.stdout)["BBB"] == ["—", "—", "—", "failed: could not reach Yahoo Finance for BBB (Network "
                                           "is unreachable). Import a CSV with --from-csv or point "
                                           "LSTM_FORECAST_DATA_DIR at cached prices."]
    assert result.stdout.splitlines()[-1] == "Fetched 2 of 3 tickers into data: 600 new rows; 1 failed."
    assert result.stderr.splitlines()[-1] == "Error: 1 of 3 tickers could not be fetched: BBB"


def test_json_prints_one_object_with_every_ticker(runner, clean_workdir, yahoo_fake):
    yahoo_fake.failures["BBB"] = [OSError("Network is unreachable")]
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB", "--data-dir", "data", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # the whole of stdout
    assert (report["tickers"], report["fetched"], report["new_rows"], report["interrupted"]) == (2, 1, ROWS, False)
    assert report["failed"] == [{"ticker": "BBB", "error": "could not reach Yahoo Finance for BBB (Network is "
                                 "unreachable). Import a CSV with --from-csv or point LSTM_FORECAST_DATA_DIR at "
                                 "cached prices."}]
    first = report["rows"][0]
    assert (first["ticker"], first["status"], first["rows"], first["first"], first["last"], first["mode"]) == (
        "AAA", "ok", ROWS, FIRST, LAST, "full")
    assert first["path"] == str(Path("data") / "AAA.csv")
    assert report["rows"][1]["status"] == "failed" and report["not_fetched"] == []


def test_all_brings_every_cached_ticker_up_to_date(runner, clean_workdir, yahoo_fake, make_prices):
    folder = clean_workdir / "data"
    folder.mkdir()
    for ticker in ("AAA", "BBB"):
        (folder / f"{ticker}.csv").write_bytes(prices_to_csv(make_prices(ROWS).iloc[:250]))
    result = runner.invoke(app, ["fetch", "--all", "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    assert cached_rows(folder, "AAA") == cached_rows(folder, "BBB") == ROWS
    row = [str(ROWS), f"{FIRST} … {LAST}", "50", "incremental"]
    assert table(result.stdout) == {"AAA": row, "BBB": row}
    assert result.stdout.splitlines()[-1] == "Fetched 2 of 2 tickers into data: 100 new rows."


def test_a_bad_range_is_refused_once_before_any_download(runner, clean_workdir, yahoo_fake):
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB", "--start", "2021-01-01", "--end", "2020-01-01",
                                 "--data-dir", "data"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: start 2021-01-01 is after end 2020-01-01"]
    assert yahoo_fake.starts == [] and not (clean_workdir / "data").exists()


def test_from_csv_takes_one_ticker_only(runner, clean_workdir, yahoo_fake, make_prices):
    (clean_workdir / "p.csv").write_bytes(prices_to_csv(make_prices(ROWS)))
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB", "--from-csv", "p.csv", "--data-dir", "data"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: --from-csv imports one ticker's prices; give one ticker, not 2"]
    assert not (clean_workdir / "data").exists()


# --- politeness: the pace and Yahoo's rate limiting ----------------------------------------------------


def test_downloads_start_at_most_twice_a_second_by_default(runner, clean_workdir, yahoo_fake, clock):
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB,CCC,DDD", "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    times = started(yahoo_fake)
    assert gaps(times) == pytest.approx([0.5] * 3)
    assert max(clock.sleeps) <= yahoo.STOP_POLL_S  # waits look at the stop request while they last


def test_the_pace_is_the_configs_fetch_rate(runner, clean_workdir, yahoo_fake):
    (clean_workdir / "c.yaml").write_text(yaml.safe_dump({"data": {"fetch_rate": 0.25}}))
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB,CCC", "--data-dir", "data", "-c", "c.yaml"])
    assert result.exit_code == 0, result.output
    times = started(yahoo_fake)
    assert gaps(times) == pytest.approx([4.0, 4.0])


def test_a_fetch_rate_out_of_bounds_is_a_config_error(runner, clean_workdir, yahoo_fake):
    (clean_workdir / "c.yaml").write_text(yaml.safe_dump({"data": {"fetch_rate": 0}}))
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB", "--data-dir", "data", "-c", "c.yaml"])
    assert result.exit_code == 2
    assert "data.fetch_rate: expected a number >= 0.01" in result.stderr
    assert yahoo_fake.starts == []


TOO_MANY_REQUESTS = HTTPError("HTTP Error 429", 0, SimpleNamespace(status_code=429))


@pytest.mark.parametrize("error", [YFRateLimitError(), TOO_MANY_REQUESTS])
def test_rate_limiting_is_its_own_error_with_the_same_message(yahoo_fake, error):
    yahoo_fake.failures["BBB"] = [error]
    with pytest.raises(yahoo.RateLimited) as caught:
        yahoo.download("BBB")
    assert str(caught.value) == RATE_LIMIT_MESSAGE


def test_rate_limiting_is_waited_out_and_tried_again(runner, clean_workdir, yahoo_fake):
    yahoo_fake.failures["BBB"] = [YFRateLimitError(), YFRateLimitError()]
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB,CCC", "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    tries = started(yahoo_fake, "BBB")
    assert len(tries) == 3
    assert gaps(tries) == pytest.approx(list(data.RETRY_WAITS_S))
    assert cached_rows(clean_workdir / "data", "BBB") == ROWS
    assert "Yahoo Finance rate limited BBB; fetched at try 3" in result.stderr


def test_rate_limiting_that_does_not_end_fails_that_ticker_only(runner, clean_workdir, yahoo_fake):
    yahoo_fake.failures["BBB"] = [YFRateLimitError()] * 10
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB,CCC", "--data-dir", "data", "--json"])
    assert result.exit_code == 1
    assert len(started(yahoo_fake, "BBB")) == 1 + len(data.RETRY_WAITS_S)
    report = json.loads(result.stdout)
    assert report["failed"] == [{"ticker": "BBB", "error": RATE_LIMIT_MESSAGE}]
    assert report["fetched"] == 2 and (clean_workdir / "data" / "CCC.csv").exists()


# --- stopping ----------------------------------------------------------------------------------------------


def test_ctrl_c_between_tickers_keeps_the_finished_caches_and_exits_130(runner, clean_workdir, yahoo_fake,
                                                                       monkeypatch):
    real_update = data.update_cache

    def update_then_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        summary = real_update(*args, **kwargs)
        if summary.ticker == "BBB":
            os.kill(os.getpid(), signal.SIGINT)  # after BBB's cache is in place
        return summary

    monkeypatch.setattr(data, "update_cache", update_then_ctrl_c)
    result = runner.invoke(app, ["fetch", "-t", "AAA,BBB,CCC", "--data-dir", "data"])
    assert result.exit_code == 130
    assert cached_rows(clean_workdir / "data", "AAA") == cached_rows(clean_workdir / "data", "BBB") == ROWS
    assert not (clean_workdir / "data" / "CCC.csv").exists()
    assert result.stdout.splitlines()[-1] == "Fetched 2 of 3 tickers into data: 600 new rows; interrupted before 1."
    assert result.stderr.splitlines()[-1] == ("Error: fetch interrupted; 2 of 3 tickers fetched (their caches are "
                                              "whole), the rest left as they were")


def test_a_stop_during_a_download_leaves_that_cache_as_it_was(tmp_path, yahoo_fake, make_prices, monkeypatch):
    old = prices_to_csv(make_prices(ROWS).iloc[:250])
    (tmp_path / "BBB.csv").write_bytes(old)
    stop, released = threading.Event(), threading.Event()
    serve = yahoo_fake.history

    def answer_late(ticker: Any, **kwargs: Any) -> Any:
        if ticker.ticker == "BBB":
            stop.set()  # Ctrl-C while Yahoo has not answered yet
            released.wait(5)
        return serve(ticker, **kwargs)

    monkeypatch.setattr(yahoo_fake, "history", answer_late)
    try:
        report = data.fetch_many(tmp_path, ["AAA", "BBB", "CCC"], 2.0, stop=stop)
    finally:
        released.set()
    assert report["interrupted"] and [row["ticker"] for row in report["rows"]] == ["AAA"]
    assert report["not_fetched"] == ["BBB", "CCC"]
    assert (tmp_path / "BBB.csv").read_bytes() == old and not (tmp_path / "CCC.csv").exists()


def test_a_stop_ends_the_wait_after_rate_limiting(tmp_path, yahoo_fake, clock):
    yahoo_fake.failures["BBB"] = [YFRateLimitError()] * 10
    stop = threading.Event()
    clock.on_sleep = lambda fake: stop.set() if sum(fake.sleeps) >= 1 else None
    report = data.fetch_many(tmp_path, ["AAA", "BBB", "CCC"], 2.0, stop=stop)
    assert report["interrupted"] and report["not_fetched"] == ["BBB", "CCC"]
    assert sum(clock.sleeps) < data.RETRY_WAITS_S[0]  # the 10 s wait ended at the stop request
    assert len(started(yahoo_fake, "BBB")) == 1 and not (tmp_path / "CCC.csv").exists()


# --- one ticker: today's output --------------------------------------------------------------------------


@pytest.mark.parametrize("tickers", [["-t", "TSLA"], ["-t", "tsla"], ["--tickers-file", "one.txt"]])
def test_one_ticker_prints_what_it_always_did(runner, clean_workdir, yahoo_fake, tickers):
    (clean_workdir / "one.txt").write_text("# my watchlist\nTSLA\n")
    result = runner.invoke(app, ["fetch", *tickers, "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"TSLA: {ROWS} rows, {FIRST} … {LAST} ({ROWS} new, full) → data/TSLA.csv\n"
    assert "0/1" not in result.stderr and "1/1" not in result.stderr  # no bar over tickers


def test_one_failing_ticker_is_one_error_line_as_before(runner, clean_workdir, yahoo_fake):
    yahoo_fake.failures["TSLA"] = [YFRateLimitError()]
    result = runner.invoke(app, ["fetch", "-t", "TSLA", "--data-dir", "data"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"Error: {RATE_LIMIT_MESSAGE.replace('BBB', 'TSLA')}"]
    assert len(yahoo_fake.starts) == 1  # no retry: a single fetch is as it was


def test_one_ticker_with_json_prints_the_report_of_one(runner, clean_workdir, yahoo_fake):
    result = runner.invoke(app, ["fetch", "-t", "TSLA", "--data-dir", "data", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["tickers"], report["fetched"], report["new_rows"]) == (1, 1, ROWS)
    assert report["rows"][0]["mode"] == "full" and report["rows"][0]["path"] == str(Path("data") / "TSLA.csv")
