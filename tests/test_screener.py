"""predict over many tickers: one table ranked by the forecast move, each row beside its run's own skill."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import build_prices, error_line
from test_predict import LAST_DAY, NEW_RUN, save_run  # small untrained bundles, made in milliseconds
from typer.testing import CliRunner

from lstm_forecast import predict
from lstm_forecast.cli import app
from lstm_forecast.predict import run_predict, run_screener
from lstm_forecast.prices import prices_to_csv

TODAY = date(2025, 4, 18)  # the day after LAST_DAY: every cache ending on LAST_DAY is fresh
# ticker -> (test RMSE ratio to naive, DM p-value); EEE's metrics.json has the layout before the scores block.
SCORES = {"AAA": (0.90, 0.01), "BBB": (0.95, 0.04), "CCC": (0.97, 0.03), "DDD": (1.05, 0.5), "EEE": (1.20, 0.001)}
# Benjamini–Hochberg by hand: p sorted 0.001, 0.01, 0.03, 0.04, 0.5 (ranks 1..5, n = 5) -> p * 5 / rank =
# 0.005, 0.025, 0.05, 0.05, 0.5, then the running minimum from the largest p down changes none of them.
QVALUES = {"EEE": 0.005, "AAA": 0.025, "CCC": 0.05, "BBB": 0.05, "DDD": 0.5}
VERDICTS = {"AAA": "beats naive (q<0.05)", "BBB": "no skill shown", "CCC": "no skill shown",
            "DDD": "no skill shown", "EEE": "worse than naive (q<0.05)"}


def prices_until(last_day: date, seed: int, rows: int = 60) -> pd.DataFrame:
    dates = pd.bdate_range(end=last_day, periods=rows, name="Date").as_unit("ns")
    return build_prices(rows, seed=seed).set_axis(dates, axis=0)


def metrics_document(ratio: float, pvalue: float, old_layout: bool = False) -> dict:
    model = {"model": {"all": {"rmse_ratio": ratio}}}
    return {"test": {**(model if old_layout else {"metrics": model}), "vs_naive": {"dm_all": {"pvalue": pvalue}}}}


def add_ticker(folders: dict[str, Path], ticker: str, seed: int, last_day: date = LAST_DAY,
               scores: tuple[float, float] = (1.0, 0.5)) -> Path:
    prices = prices_until(last_day, seed)
    run_dir = save_run(folders["runs_dir"], ticker, NEW_RUN, prices.iloc[:-5])
    (run_dir / "metrics.json").write_text(json.dumps(metrics_document(*scores, old_layout=ticker == "EEE")))
    (folders["data_dir"] / f"{ticker}.csv").write_bytes(prices_to_csv(prices))
    return run_dir


@pytest.fixture
def universe(tmp_path: Path, clean_workdir: Path) -> dict[str, Path]:
    """Five tickers, each with one run and a cache ending on LAST_DAY, scored as SCORES says."""
    folders = {"runs_dir": tmp_path / "runs", "data_dir": tmp_path / "data"}
    folders["data_dir"].mkdir()
    for seed, (ticker, scores) in enumerate(SCORES.items()):
        add_ticker(folders, ticker, seed, scores=scores)
    return folders


def screen(universe: dict[str, Path], tickers=tuple(SCORES), **options) -> predict.Screener:
    options.setdefault("today", TODAY)
    return run_screener(list(tickers), runs_dir=universe["runs_dir"], data_dir=universe["data_dir"], **options)


def cli(universe: dict[str, Path], *arguments: str):
    folders = ["--runs-dir", str(universe["runs_dir"]), "--data-dir", str(universe["data_dir"])]
    return CliRunner().invoke(app, ["predict", *arguments, *folders])


def by_ticker(rows: list[dict]) -> dict[str, dict]:
    return {row["ticker"]: row for row in rows}


def test_rows_are_ranked_by_the_next_session_move_and_match_each_single_forecast(universe):
    rows = screen(universe).rows
    moves = [row["change_pct"] for row in rows]
    assert moves == sorted(moves, reverse=True) and len(set(moves)) == len(moves)
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        single = run_predict(ticker=row["ticker"], days=1, output_format="json", runs_dir=universe["runs_dir"],
                             data_dir=universe["data_dir"], today=TODAY)
        step = json.loads(single.text)["forecasts"][0]
        assert (row["session"], row["forecast"], row["change_pct"]) == (step["date"], step["price"], step["change_pct"])
        assert (row["lower"], row["upper"], row["level"]) == (step["intervals"]["80"]["lower"],
                                                              step["intervals"]["80"]["upper"], 80)
        assert row["last_date"] == LAST_DAY.isoformat() and row["status"] == "ok" and row["note"] is None


def test_q_values_are_benjamini_hochberg_across_the_tickers_and_set_the_verdict(universe):
    rows = by_ticker(screen(universe).rows)
    for ticker, (ratio, pvalue) in SCORES.items():
        assert rows[ticker]["rmse_ratio"] == ratio and rows[ticker]["dm_pvalue"] == pvalue  # EEE: the old layout
        assert rows[ticker]["bh_qvalue"] == pytest.approx(QVALUES[ticker], abs=1e-12)
        assert rows[ticker]["verdict"] == VERDICTS[ticker]
    assert predict.screener_counts(list(rows.values()))["beat_naive"] == 1  # BBB's p = 0.04 alone is not enough


def test_a_ticker_without_a_run_or_with_a_damaged_one_is_listed_with_its_reason_and_exits_1(universe):
    (universe["data_dir"] / "NORUN.csv").write_bytes(prices_to_csv(prices_until(LAST_DAY, seed=9)))
    damaged = add_ticker(universe, "BROKE", seed=8, scores=(0.5, 0.0001))
    (damaged / "bundle.json").write_bytes(b"\x00\xff garbage")
    result = cli(universe, "-t", "AAA,NORUN", "-t", "BBB,CCC,DDD,EEE,BROKE")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: 2 of 7 tickers could not be forecast; the table gives each reason"
    lines = result.stdout.splitlines()
    assert any(line.startswith("NORUN (failed): no trained runs for NORUN in ") for line in lines)
    assert any(line.startswith("BROKE (failed): ") and "bundle.json: not valid JSON" in line for line in lines)
    rows = by_ticker(screen(universe, ["AAA", "NORUN", "BBB", "CCC", "DDD", "EEE", "BROKE"]).rows)
    assert rows["NORUN"]["status"] == rows["BROKE"]["status"] == "failed"
    assert rows["NORUN"]["bh_qvalue"] is rows["BROKE"]["bh_qvalue"] is None  # not in the family: q as before
    assert {ticker: rows[ticker]["bh_qvalue"] for ticker in SCORES} == pytest.approx(QVALUES, abs=1e-12)
    assert list(rows)[-2:] == ["NORUN", "BROKE"]  # after the forecasts, in the order given


def test_the_table_says_the_ranking_is_not_advice_and_how_many_rows_show_skill(universe):
    watchlist = write_tickers(universe, "# watchlist\nAAA\nBBB\n\nCCC\nDDD  # a comment\nEEE\n")
    result = cli(universe, "--tickers-file", str(watchlist))
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "ticker" in line)
    for column in ("last price", "forecast", "change %", "80% interval", "RMSE/naive", "DM p", "BH q", "verdict"):
        assert column in header
    advice = result.stdout.splitlines()[-1]
    assert advice.startswith("A ranking of forecast moves, not of skill, and not investment advice: 1 of 5 ")
    assert "at q < 0.05 (Benjamini–Hochberg over the 5 tested), 1 did worse" in advice


def write_tickers(universe: dict[str, Path], text: str) -> Path:
    path = universe["data_dir"].parent / "tickers.txt"
    path.write_text(text)
    return path


def test_a_stale_cache_is_forecast_and_flagged(universe):
    add_ticker(universe, "OLD", seed=7, last_day=date(2025, 4, 7))  # 8 sessions before TODAY
    (universe["data_dir"] / "CCC.csv").unlink()  # forecast from the run's own rows, which end earlier
    rows = by_ticker(screen(universe, [*SCORES, "OLD"]).rows)
    assert rows["OLD"]["status"] == "stale" and rows["OLD"]["rank"] is not None
    assert "end on 2025-04-07, 8 trading sessions before today" in rows["OLD"]["note"]
    assert rows["OLD"]["session"] == "2025-04-08"
    assert rows["CCC"]["status"] == "stale" and rows["CCC"]["note"].startswith("no cached prices for CCC")
    assert all(rows[ticker]["status"] == "ok" for ticker in SCORES if ticker != "CCC")
    table = predict.render_screener(list(rows.values()), "table")
    assert "Stale (prices more than 5 sessions old, or none cached): CCC, OLD; run with --refresh" in table


def test_csv_and_json_hold_the_ranked_rows_on_stdout_or_in_a_file(universe, tmp_path):
    as_csv = list(csv.DictReader(io.StringIO(cli(universe, "-t", "AAA,BBB,CCC,DDD,EEE", "--format", "csv").stdout)))
    document = json.loads(cli(universe, "--all", "--format", "json").stdout)
    assert tuple(as_csv[0]) == predict.SCREENER_COLUMNS
    assert document["tickers"] == 5 and document["beat_naive"] == 1 and document["failed"] == 0
    assert "not investment advice" in document["advice"]
    assert [row["ticker"] for row in as_csv] == [row["ticker"] for row in document["rows"]]
    assert [float(row["change_pct"]) for row in as_csv] == [row["change_pct"] for row in document["rows"]]
    result = cli(universe, "--all", "--output", str(tmp_path / "screen.json"))
    assert result.exit_code == 0 and result.stdout == f"Screener: {tmp_path / 'screen.json'}\n"
    assert json.loads((tmp_path / "screen.json").read_text())["rows"] == document["rows"]
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".tmp-*"))  # no fan charts over many


def test_one_ticker_keeps_the_single_forecast_output(universe):
    single = cli(universe, "-t", "AAA")
    assert single.exit_code == 0, single.output
    assert "AAA · LSTM · last close" in single.stdout and "Run " + NEW_RUN in single.stdout
    assert "ranking" not in single.stdout and single.stdout.count("\n") < 12
    for same in (["-t", "aaa"], ["--tickers-file", str(write_tickers(universe, "AAA\n"))]):
        assert cli(universe, *same).stdout == single.stdout
    as_json = cli(universe, "-t", "AAA", "--format", "json").stdout
    expected = run_predict(ticker="AAA", output_format="json", runs_dir=universe["runs_dir"],
                           data_dir=universe["data_dir"], today=TODAY).text
    assert as_json == expected


@pytest.mark.parametrize(("arguments", "message"), [
    (["--run", "x", "-t", "AAA,BBB"], "Error: give --run or --ticker, not both"),
    (["--run", "x", "--all"], "Error: give --run or --tickers-file/--all, not both"),
    (["-t", "AAA,BBB", "--days", "2"], "Error: --days: over two or more tickers predict shows the next session only"),
])
def test_run_or_days_with_several_tickers_is_a_usage_error(universe, arguments, message):
    result = cli(universe, *arguments)
    assert result.exit_code == 2
    assert error_line(result).startswith(message)


def test_without_80_among_the_levels_the_first_level_is_shown_and_said(universe):
    rows = screen(universe, levels=[95, 90]).rows
    assert {row["level"] for row in rows} == {95}
    report = predict.render_screener(rows, "table")
    assert "95% interval" in report and "the first level configured is shown" in report


def test_refresh_updates_each_cache_one_at_a_time_and_skips_a_ticker_without_a_run(universe, fake_yahoo,
                                                                                   monkeypatch):
    monkeypatch.setattr(predict, "REFRESH_PACE_S", 0.0)
    fake_yahoo.prices = prices_until(date(2025, 4, 24), seed=3, rows=70)
    rows = by_ticker(screen(universe, ["AAA", "NORUN", "BBB"], refresh=True, today=date(2025, 4, 25)).rows)
    assert list(dict.fromkeys(call["ticker"] for call in fake_yahoo.calls)) == ["AAA", "BBB"]  # AAA's done first
    assert rows["AAA"]["last_date"] == rows["BBB"]["last_date"] == "2025-04-24"
    assert rows["NORUN"]["status"] == "failed"


def test_a_stop_request_lists_the_tickers_not_reached(universe):
    stop = threading.Event()
    screener = screen(universe, on_row=lambda row: stop.set(), stop=stop)
    assert screener.interrupted
    assert [row["status"] for row in screener.rows] == ["ok", "not run", "not run", "not run", "not run"]


def test_an_output_over_a_price_cache_is_refused_before_any_work(universe):
    cache = universe["data_dir"] / "NORUN.csv"  # no ticker named has a run, so no run's check would catch it
    cache.write_bytes(b"theirs")
    result = cli(universe, "-t", "NORUN,NOPE", "--output", str(cache))
    assert result.exit_code == 2
    assert "that is in the price cache this tool keeps" in error_line(result)
    assert cache.read_bytes() == b"theirs"
