"""The data-quality rules (quality.py), the one reader that applies them (data.read_checked), what a run records of
them, and which tickers drive a set's verdict (sets.verdict_drivers)."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from conftest import TICKER, TINY_OVERRIDES, build_prices, day, error_of

from lstm_forecast import data, quality, report, sets, train
from lstm_forecast.bundle import load_bundle, load_run
from lstm_forecast.config import load_config
from lstm_forecast.evaluate import cache_state
from lstm_forecast.predict import latest_rows
from lstm_forecast.prices import PRICE_FIELDS, prices_to_csv
from lstm_forecast.sessions import TradingCalendar
from lstm_forecast.sets import scored_record, set_report

BEFORE, MISSING, AFTER = 300, 30, 300


def spliced(factor: float = 1000.0, after: int = AFTER) -> pd.DataFrame:
    """BHF's shape: a history, MISSING sessions of nothing, then prices `factor` times as high."""
    prices = build_prices(BEFORE + MISSING + after)
    prices.iloc[BEFORE + MISSING:, :5] *= factor
    return prices.drop(prices.index[BEFORE:BEFORE + MISSING])


def cached(tmp_path, prices: pd.DataFrame, ticker: str = TICKER):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / f"{ticker}.csv").write_bytes(prices_to_csv(prices))
    return folder


def test_a_long_gap_and_a_level_break_cut_the_history_to_the_segment_after_them():
    prices = spliced()
    checked = quality.check_prices(prices, TICKER)
    after = prices.index[BEFORE]
    assert checked.rows.index[0] == after and len(checked.rows) == AFTER
    pd.testing.assert_frame_equal(checked.rows, prices.iloc[BEFORE:])
    cuts = [(finding.kind, finding.first, finding.last) for finding in checked.findings if finding.action == "cut"]
    assert cuts == [(quality.GAP, day(prices.index[BEFORE - 1]), day(after)),
                    (quality.BREAK, day(prices.index[BEFORE - 1]), day(after))]
    (note,) = checked.notes
    assert "a level break" in note and "a move no market explains" in note
    assert note.endswith(f"the history was cut to the rows from {day(after)} on (the last of 2 gaps, breaks and "
                         "stale runs found)")
    gap = next(finding for finding in checked.findings if finding.kind == quality.GAP)
    assert gap.detail.startswith(f"a long gap: {MISSING} sessions missing between")


def test_short_gaps_and_ordinary_moves_are_left_alone():
    prices = build_prices(400)
    prices = prices.drop(prices.index[100:110])  # ten weekdays: GAP_SESSIONS, not more
    prices.iloc[200:, :5] *= 2.9  # a fall or rise short of BREAK_FACTOR
    checked = quality.check_prices(prices, TICKER)
    assert checked.rows is prices and checked.findings == [] and checked.notes == []


def test_the_exchange_calendar_decides_what_is_missing():
    """Across Christmas and New Year, XNYS has two holidays that weekdays would count as missing sessions."""
    days = np.array(["2020-12-18", "2021-01-08"], dtype="datetime64[D]")
    sessions = TradingCalendar("XNYS", date(2020, 1, 1), date(2021, 12, 31)).sessions
    assert quality.missing_sessions(days, None).tolist() == [14]
    assert quality.missing_sessions(days, sessions).tolist() == [12]  # Christmas Day and New Year's Day closed


def test_stale_runs_are_noted_and_a_long_one_is_a_gap():
    prices = build_prices(600)
    prices.iloc[100:106, prices.columns.get_loc("Close")] = 42.0  # 6 identical closes: a note
    checked = quality.check_prices(prices, TICKER)
    assert checked.rows is prices
    assert checked.notes == [f"a stale run: 6 identical closes (42) from {day(prices.index[100])} to "
                             f"{day(prices.index[105])}"]

    prices.iloc[300:315, prices.columns.get_loc("Close")] = 42.0  # 15: ten sessions filled with the last price
    checked = quality.check_prices(prices, TICKER)
    assert checked.rows.index[0] == prices.index[315] and len(checked.rows) == 285
    assert checked.notes[0].startswith("a stale run: 15 identical closes")
    assert len(checked.notes) == 1  # the short run lay in the part cut away


def test_too_little_left_after_a_cut_is_refused_with_the_reason():
    prices = spliced(after=100)
    message = str(error_of(quality.check_prices, prices, "BHF"))
    assert message.startswith("BHF: a level break: ")
    assert message.endswith(f"only 100 row(s) after it (at least {quality.MIN_ROWS_AFTER_CUT} are needed after a "
                            "cut): refused")
    prices = build_prices(300)
    prices.iloc[-20:, prices.columns.get_loc("Close")] = 7.0  # the series stopped updating
    assert "a stale run: 20 identical closes" in str(error_of(quality.check_prices, prices, TICKER))


def test_every_path_reads_the_same_cut_rows(tmp_path):
    """read_cache (predict, the context series), load_prices (train, evaluate out of universe) and read_checked
    are one reader: the same rows and the same findings, against the exchange's own sessions."""
    prices = spliced()
    folder = cached(tmp_path, prices)
    checked = data.read_checked(folder, TICKER)
    pd.testing.assert_frame_equal(checked.rows, prices.iloc[BEFORE:], check_freq=False)
    pd.testing.assert_frame_equal(data.read_cache(folder, TICKER), checked.rows)
    pd.testing.assert_frame_equal(data.load_prices(folder, TICKER), checked.rows)
    assert [finding.kind for finding in checked.findings] == [quality.GAP, quality.BREAK]
    # A range that ends before the break reads the history before it, uncut.
    early = data.read_checked(folder, TICKER, end=day(prices.index[BEFORE - 1]))
    assert len(early.rows) == BEFORE and early.findings == []


def test_empty_rows_are_counted(tmp_path):
    prices = build_prices(300)
    text = prices_to_csv(prices).decode().splitlines()
    blanks = [f"2021-03-0{number},,,,,," for number in (6, 7, 8)]  # a weekend and a Monday, no prices
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / f"{TICKER}.csv").write_text("\n".join([*text, *blanks]) + "\n")
    checked = data.read_checked(folder, TICKER)
    assert len(checked.rows) == 300
    assert checked.notes == ["3 empty row(s) without prices dropped (first 2021-03-06)"]


def test_fetch_from_csv_warns_of_what_the_rules_will_do(tmp_path):
    csv = tmp_path / "in.csv"
    csv.write_bytes(prices_to_csv(spliced()))
    summary = data.import_csv(csv, tmp_path / "data", TICKER)
    assert summary.rows == BEFORE + AFTER  # the cache keeps every row; the runs read the cut
    (warning,) = [text for text in summary.warnings if "level break" in text]
    assert warning.startswith(f"{TICKER}: a level break") and "the history was cut to the rows from" in warning


def test_training_and_forecasting_read_the_same_cut_history(tmp_path):
    prices = spliced()
    folder = cached(tmp_path, prices)
    result = train.train_ticker(load_config(None, TINY_OVERRIDES), TICKER, folder, tmp_path / "runs")
    assert "a level break" in result.notes[0]
    assert json.loads((result.run_dir / "metrics.json").read_text())["notes"][0] == result.notes[0]
    bundle = load_bundle(result.run_dir)
    assert bundle.fingerprint["first_date"] == day(prices.index[BEFORE]).isoformat()
    assert [finding["kind"] for finding in bundle.data_quality["findings"]] == [quality.GAP, quality.BREAK]
    assert bundle.data_quality["rules"]["gap_sessions"] == quality.GAP_SESSIONS
    recent, warning = latest_rows(bundle, TICKER, folder, refresh=False)
    assert warning is None
    pd.testing.assert_frame_equal(recent, bundle.prices()[TICKER], check_freq=False)  # what it trained on
    assert cache_state(folder, bundle)["cache"] == "matches"


def differential_records(bad: float | None, seed: int = 0) -> list[dict]:
    """Six tickers the model beats naive on day after day, and one (BAD) with a loss `bad` times as large."""
    rng = np.random.default_rng(seed)
    anchors = [day.date().isoformat() for day in pd.bdate_range("2021-01-04", periods=200)]
    spread = {f"T{number}": -0.001 + rng.normal(0, 0.0005, 200) for number in range(6)}
    if bad is not None:
        spread["BAD"] = bad + rng.normal(0, 0.005, 200)
    return [scored_record(ticker, "ok", 0.0, None, anchors=anchors, differential=values.tolist(), horizon=1)
            for ticker, values in spread.items()]


def test_a_verdict_decided_by_one_ticker_names_it():
    records = differential_records(bad=0.05)
    rows, summary = set_report(records, [record["row"]["ticker"] for record in records])
    assert "the model is worse than the random walk" in summary["verdict"]
    drivers = summary["drivers"]
    assert drivers["side"] == "worse" and drivers["flips"] == ["BAD"]
    assert drivers["drivers"][0]["ticker"] == "BAD" and drivers["drivers"][0]["share"] > 1
    assert drivers["drivers"][0]["without"]["side"] == "better"
    assert drivers["line"].startswith("Driven by: BAD (") and "without it: better, p < 0.001" in drivers["line"]
    printed = report.universe_report({**summary, "rows": rows, "folder": "runs/_universe/x"})
    assert any(isinstance(item, str) and "Driven by: BAD" in item for item in printed)


def test_a_verdict_no_single_ticker_decides_says_so(monkeypatch):
    records = differential_records(bad=None)
    _, summary = set_report(records, [record["row"]["ticker"] for record in records])
    drivers = summary["drivers"]
    assert drivers["side"] == "better" and drivers["flips"] == []
    assert len(drivers["drivers"]) == 3
    assert drivers["line"].startswith("No single ticker decides the verdict; the largest share is T")
    monkeypatch.setattr(sets, "SHOWN_DRIVERS", len(records))  # every ticker's entry: the shares sum to 1
    shares = [entry["share"] for entry in sets.verdict_drivers(records)["drivers"]]
    assert len(shares) == 6 and sum(shares) == pytest.approx(1)
    assert shares == sorted(shares, key=abs, reverse=True)


def test_the_break_rule_reads_both_price_columns():
    prices = build_prices(600)
    prices.iloc[300:, prices.columns.get_loc("Adj Close")] *= 10  # Close steady, Adj Close jumps
    checked = quality.check_prices(prices, TICKER)
    assert checked.rows.index[0] == prices.index[300] and "Adj Close" in checked.notes[0]
    assert set(quality.CHECKED_COLUMNS) <= set(PRICE_FIELDS)


def test_a_global_run_records_each_tickers_cut(tmp_path):
    folder = cached(tmp_path, spliced(), "CUT")
    cached(tmp_path, build_prices(BEFORE + AFTER, seed=3), "CLEAN")
    config = load_config(None, [*TINY_OVERRIDES, "model.scope=global"])
    result = train.train_global(config, ["CUT", "CLEAN"], folder, tmp_path / "runs")
    assert "a level break" in result.notes["CUT"][0] and "CLEAN" not in result.notes
    assert "a level break" in result.report["per_ticker"]["notes"]["CUT"][0]  # the per-ticker summary's notes
    document = json.loads((result.run_dir / "global.json").read_text())
    assert [finding["kind"] for finding in document["data_quality"]["CUT"]["findings"]] == [quality.GAP, quality.BREAK]
    assert document["data_quality"]["CLEAN"]["findings"] == []
    assert load_run(result.run_dir).data_quality == document["data_quality"]


def test_drivers_of_tickers_that_share_no_day():
    days = [stamp.date().isoformat() for stamp in pd.bdate_range("2021-01-04", periods=40)]
    records = [scored_record(name, "ok", 0.0, None, anchors=part, differential=[0.001] * 20, horizon=1)
               for name, part in (("A", days[:20]), ("B", days[20:]))]
    drivers = sets.verdict_drivers(records)
    assert [entry["ticker"] for entry in drivers["drivers"]] == ["A", "B"]
    assert all(entry["share"] == pytest.approx(0.5) for entry in drivers["drivers"])
    assert sets.verdict_drivers(records[:1])["line"] is None  # one ticker: nothing to weigh
