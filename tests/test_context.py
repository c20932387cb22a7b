"""Context inputs: other series and the calendar, aligned on the ticker's sessions without reading the future."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lstm_forecast import context, data, predict
from lstm_forecast.bundle import CONTEXT_DIR, load_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.evaluate import evaluate
from lstm_forecast.prices import COLUMNS, prices_to_csv
from lstm_forecast.train import train_run
from lstm_forecast.windows import WindowSpec, build_dataset, compute_features

TINY = ["window.lookback=5", "window.horizon=1", "model.hidden_size=8", "model.num_layers=1", "model.dropout=0",
        "train.epochs=2", "train.batch_size=32", "train.device=cpu", "train.threads=1"]
WITH_CTX = "data.context=[{ticker: CTX, feature: log_return}]"


def frame_of(returns: np.ndarray, dates: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    """A canonical price frame whose Adj Close has exactly these daily log returns (row 0 at 100)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(returns))
    high = close * np.exp(np.abs(rng.normal(0, 0.005, len(close))))
    low = close * np.exp(-np.abs(rng.normal(0, 0.005, len(close))))
    volume = rng.integers(1_000_000, 2_000_000, len(close)).astype(np.float64)
    columns = [close, high, low, close, close, volume]
    return pd.DataFrame(dict(zip(COLUMNS, columns, strict=True)), index=dates.rename("Date"))


def days(n: int, start: str = "2015-01-02") -> pd.DatetimeIndex:
    return pd.bdate_range(start, periods=n).as_unit("ns")


def driven_pair(n: int = 600, phi: float = 0.6, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A target whose return is phi times the context's return of the previous day, plus a little noise."""
    rng = np.random.default_rng(seed)
    dates = days(n)
    driver = rng.normal(0, 0.01, n)
    returns = np.concatenate([[0.0], phi * driver[:-1] + rng.normal(0, 0.004, n - 1)])
    return frame_of(returns, dates, seed), frame_of(driver, dates, seed + 1)


def config(*overrides: str):
    return load_config(None, [*TINY, *overrides])


# --- alignment ----------------------------------------------------------------------------------


def test_align_reads_the_same_day_or_the_session_before():
    target = np.array(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"], dtype="datetime64[D]")
    same = context.align(target, target, context.SAME_DAY, 3)
    previous = context.align(target, target, context.PREVIOUS_SESSION, 3)
    assert same.source.tolist() == [0, 1, 2, 3] and same.usable.all()
    assert previous.source.tolist() == [-1, 0, 1, 2]
    assert previous.usable.tolist() == [False, True, True, True]


def test_a_missing_context_day_is_filled_for_at_most_max_gap_sessions():
    target = np.array([f"2024-01-{d:02d}" for d in range(1, 11)], dtype="datetime64[D]")
    context_days = target[[0, 1, 5, 6, 7, 8, 9]]  # days 3, 4 and 5 missing: three sessions
    filled = context.align(target, context_days, context.SAME_DAY, 3)
    assert filled.source.tolist() == [0, 1, 1, 1, 1, 2, 3, 4, 5, 6] and filled.usable.all()
    strict = context.align(target, context_days, context.SAME_DAY, 2)
    assert strict.usable.tolist() == [True, True, True, True, False, True, True, True, True, True]


def test_no_window_reads_a_context_value_dated_after_its_anchor():
    # The context's log level is its row number, so a window's context column says exactly which day it read.
    n = 120
    dates = days(n)
    target = frame_of(np.random.default_rng(0).normal(0, 0.01, n), dates)
    ordinal = frame_of(np.concatenate([[0.0], np.ones(n - 1)]), dates)  # log(price / 100) = row number
    ordinal = ordinal.assign(**{"Adj Close": np.exp(np.arange(n, dtype=float))})
    for align, lag in (("same_day", 0), ("previous_session", 1)):
        settings = config(f"data.context=[{{ticker: CTX, feature: log_level, align: {align}}}]")
        dataset = build_dataset(target, settings, context_prices={"CTX": ordinal})
        scaler = dataset.scaler
        for windows in (dataset.train, dataset.val, dataset.test):
            read = windows.inputs[:, :, 1] * scaler.feature_std[1] + scaler.feature_mean[1]
            anchor_rows = dates.get_indexer(pd.DatetimeIndex(windows.anchor_dates))
            np.testing.assert_allclose(read[:, -1], anchor_rows - lag, atol=1e-3)  # float32 inputs
            assert (read.max(axis=1) < anchor_rows - lag + 0.5).all()


def test_a_series_closing_later_than_the_ticker_is_read_on_the_previous_session():
    assert context.exchange_of("^FTSE") == "XLON" and context.exchange_of("VOD.L") == "XLON"
    assert context.exchange_of("^GSPC") == "XNYS" and context.exchange_of("BTC-USD") is None
    lags = {
        (ticker, calendar): series.lag
        for ticker, calendar in (("^GSPC", "XLON"), ("^FTSE", "XNYS"), ("SPY", "XNYS"), ("BTC-USD", "XNYS"))
        for series in WindowSpec.from_config(
            load_config(None, [f"data.calendar={calendar}", f"data.context=[{{ticker: '{ticker}'}}]"])).context
    }
    assert lags == {("^GSPC", "XLON"): 1, ("^FTSE", "XNYS"): 0, ("SPY", "XNYS"): 0, ("BTC-USD", "XNYS"): 1}
    forced = load_config(None, ["data.calendar=XLON", "data.context=[{ticker: ^GSPC, align: same_day}]"])
    assert WindowSpec.from_config(forced).context[0].lag == 0


# --- gaps, late starts, the scaler ---------------------------------------------------------------


def test_gaps_up_to_max_gap_are_filled_and_longer_ones_drop_the_windows_that_read_them():
    target, driver = driven_pair(300)
    short_gap = driver.drop(driver.index[[100, 101, 102]])
    dataset = build_dataset(target, config(WITH_CTX), context_prices={"CTX": short_gap})
    assert sum(dataset.dropped.values()) == 0 and dataset.notes == {}
    features = compute_features(target, dataset.spec, {"CTX": short_gap})
    # Filled days repeat the last row: no return; the day after carries the four days' move.
    assert (features["CTX:log_return"].iloc[99:102] == 0).all()

    long_gap = driver.drop(driver.index[100:105])  # five sessions: two days beyond the three filled
    dataset = build_dataset(target, config(WITH_CTX), context_prices={"CTX": long_gap})
    # Rows 103 and 104 have no value, nor 105 (its return spans the gap): the windows of lookback 5 reading any of
    # them are those anchored on rows 103 … 109.
    assert dataset.dropped == {"training": 7, "validation": 0, "test": 0}
    assert "7 windows dropped (7 training)" in dataset.notes[""][0]
    anchors = pd.DatetimeIndex(dataset.train.anchor_dates)
    assert not anchors.isin(target.index[103:110]).any() and target.index[[102, 110]].isin(anchors).all()
    # The scaler is fitted on the training days that have every input.
    values = compute_features(target, dataset.spec, {"CTX": long_gap}).to_numpy()
    val_start = int(pd.DatetimeIndex(target.index[1:]).searchsorted(dataset.val_start))
    train = values[:val_start]
    complete = train[np.isfinite(train).all(axis=1)]
    np.testing.assert_allclose(dataset.scaler.feature_mean, complete.mean(axis=0))


def test_a_context_that_starts_later_cuts_the_history_and_says_so(tmp_path):
    target, driver = driven_pair(400)
    late = driver.iloc[50:]
    outcome = train_run(config(WITH_CTX), "SYN", target, tmp_path, context_prices={"CTX": late})
    fingerprint = outcome.bundle.fingerprint
    assert fingerprint["first_date"] == late.index[0].date().isoformat() and fingerprint["rows"] == 350
    assert any("history cut to" in note and "CTX starts" in note for note in outcome.notes)
    recorded = outcome.bundle.context_fingerprints
    assert [item["ticker"] for item in recorded] == ["CTX"] and recorded[0]["rows"] == 350


def test_context_and_calendar_columns_are_model_inputs(tmp_path):
    target, driver = driven_pair(300)
    settings = config(WITH_CTX, "data.calendar_features=[day_of_week, month_end, session_gap]")
    outcome = train_run(settings, "SYN", target, tmp_path, context_prices={"CTX": driver})
    assert outcome.bundle.shape.n_features == 1 + 1 + 4
    assert len(outcome.bundle.scaler.feature_mean) == 6
    loaded = load_bundle(outcome.run_dir)
    assert loaded.spec == outcome.bundle.spec and loaded.context_fingerprints == outcome.bundle.context_fingerprints


def test_calendar_features_describe_the_session_a_window_forecasts():
    spec = WindowSpec.from_config(load_config(None, ["data.calendar_features=[day_of_week, month_end, session_gap]"]))
    anchors = pd.DatetimeIndex(["2024-05-31", "2024-06-27", "2024-07-03"])  # Fri; Thu; the day before the 4th
    columns = context.calendar_columns(anchors, spec)
    # Next sessions: Monday 06-03; Friday 06-28, the last session of June; Friday 07-05 (the 4th is a holiday).
    np.testing.assert_allclose(columns["day_of_week_sin"], np.sin(2 * np.pi * np.array([0, 4, 4]) / 7))
    assert columns["month_end"].tolist() == [0.0, 1.0, 0.0]
    assert columns["session_gap"].tolist() == [3.0, 1.0, 2.0]


# --- skill: what the context buys --------------------------------------------------------------


def test_a_target_driven_by_the_context_is_forecast_with_it_and_not_without(tmp_path):
    target, driver = driven_pair(600)
    epochs = ["train.epochs=30", "train.lr=0.01", "train.patience=30"]
    with_context = train_run(config(WITH_CTX, *epochs), "SYN", target, tmp_path, context_prices={"CTX": driver})
    without = train_run(config(*epochs), "SYN", target, tmp_path)
    scores, plain = with_context.metrics["test"], without.metrics["test"]
    assert scores["vs_naive"]["dm_all"]["pvalue"] < 0.01 and scores["metrics"]["model"]["all"]["rmse_ratio"] < 0.8
    assert "better than the random walk" in scores["verdict"]
    assert "better" not in plain["verdict"] and plain["metrics"]["model"]["all"]["rmse_ratio"] > 0.95


# --- bundles, evaluate, predict -------------------------------------------------------------------


@pytest.fixture(scope="module")
def context_run(tmp_path_factory) -> dict[str, Path]:
    """A trained SYN run with a CTX context, and a data dir caching both up to the run's last day."""
    root = tmp_path_factory.mktemp("context-run")
    target, driver = driven_pair(300)
    data_dir = root / "data"
    data_dir.mkdir()
    (data_dir / "SYN.csv").write_bytes(prices_to_csv(target))
    (data_dir / "CTX.csv").write_bytes(prices_to_csv(driver))
    run_dir = train_run(config(WITH_CTX), "SYN", target, root / "runs", context_prices={"CTX": driver}).run_dir
    return {"root": root, "data_dir": data_dir, "runs_dir": root / "runs", "run_dir": run_dir}


def copy_run(context_run: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "SYN" / context_run["run_dir"].name
    shutil.copytree(context_run["run_dir"], copy)
    return copy


def test_evaluate_rebuilds_the_inputs_from_the_recorded_context(context_run, tmp_path):
    run_dir = copy_run(context_run, tmp_path)
    report = evaluate(run_dir, context_run["data_dir"], folds=0).report
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    rmse = report["test"]["metrics"]["model"]["all"]["rmse"]
    assert rmse == pytest.approx(trained["metrics"]["model"]["all"]["rmse"], rel=1e-9)
    assert report["inputs"]["context"] == [
        {"ticker": "CTX", "feature": "log_return", "lag": 0, "align": "same_day"}]
    assert report["inputs"]["context_data"][0]["ticker"] == "CTX"


def test_an_edited_recorded_context_is_refused(context_run, tmp_path):
    run_dir = copy_run(context_run, tmp_path)
    path = run_dir / CONTEXT_DIR / "CTX.csv"
    lines = path.read_text().splitlines()
    fields = lines[50].split(",")
    fields[5] = str(float(fields[5]) * 1.01)  # one Adj Close, one per cent higher
    path.write_text("\n".join([*lines[:50], ",".join(fields), *lines[51:]]) + "\n")
    with pytest.raises(ForecastError, match="CTX context prices do not match the run's fingerprint"):
        evaluate(run_dir, context_run["data_dir"], folds=0)
    path.unlink()
    with pytest.raises(ForecastError, match="missing from the bundle"):
        evaluate(run_dir, context_run["data_dir"], folds=0)


def test_a_bundle_whose_context_record_disagrees_with_its_window_is_damaged(context_run, tmp_path):
    run_dir = copy_run(context_run, tmp_path)
    document = json.loads((run_dir / "bundle.json").read_text())
    document["context_fingerprints"] = None
    (run_dir / "bundle.json").write_text(json.dumps(document))
    with pytest.raises(ForecastError, match="context_fingerprints do not name the window's context series"):
        load_bundle(run_dir)


def test_predict_reads_the_context_cache_and_refuses_a_stale_one(context_run, tmp_path):
    runs_dir, data_dir = context_run["runs_dir"], tmp_path / "data"
    shutil.copytree(context_run["data_dir"], data_dir)
    forecast = predict.run_predict(runs_dir=runs_dir, data_dir=data_dir, today=date(2016, 3, 1)).forecast
    assert len(forecast.prices) == 1 and np.isfinite(forecast.prices).all()

    driver = data.read_cache(data_dir, "CTX")
    (data_dir / "CTX.csv").write_bytes(prices_to_csv(driver.iloc[:-1]))
    last = data.read_cache(data_dir, "SYN").index[-1].date()
    with pytest.raises(ForecastError) as caught:
        predict.run_predict(runs_dir=runs_dir, data_dir=data_dir, today=date(2016, 3, 1))
    message = str(caught.value)
    assert f"context series CTX ends {driver.index[-2].date()}, before SYN's last day {last}" in message
    assert "lstm-forecast fetch -t CTX" in message and "--refresh" in message

    (data_dir / "CTX.csv").unlink()
    with pytest.raises(ForecastError, match="no cached prices for the context series CTX"):
        predict.run_predict(runs_dir=runs_dir, data_dir=data_dir, today=date(2016, 3, 1))


def test_predict_refresh_updates_the_context_caches_too(context_run, tmp_path, monkeypatch):
    runs_dir, data_dir = context_run["runs_dir"], tmp_path / "data"
    shutil.copytree(context_run["data_dir"], data_dir)
    updated = []
    monkeypatch.setattr(data, "update_cache", lambda folder, ticker, **kwargs: updated.append(ticker))
    predict.run_predict(runs_dir=runs_dir, data_dir=data_dir, refresh=True, today=date(2016, 3, 1))
    assert updated == ["SYN", "CTX"]


def test_the_context_is_read_once_per_process(tmp_path, monkeypatch):
    _, driver = driven_pair(100)
    (tmp_path / "CTX.csv").write_bytes(prices_to_csv(driver))
    reads = []
    real = data.load_prices
    monkeypatch.setattr(data, "load_prices", lambda *args, **kwargs: reads.append(args[1]) or real(*args, **kwargs))
    first = context.load_context(tmp_path, ["CTX"])
    second = context.load_context(tmp_path, ["CTX", "CTX"])
    assert reads == ["CTX"] and first["CTX"] is second["CTX"]


def test_the_cli_trains_with_a_context_set_on_the_command_line(tmp_path):
    target, driver = driven_pair(300)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "SYN.csv").write_bytes(prices_to_csv(target.iloc[40:]))
    (data_dir / "CTX.csv").write_bytes(prices_to_csv(driver))
    settings = [part for item in [*TINY, WITH_CTX] for part in ("--set", item)]
    result = CliRunner().invoke(app, ["train", "-t", "SYN", "--data-dir", str(data_dir), "--runs-dir",
                                      str(tmp_path / "runs"), "--json", *settings])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["notes"] == []
    bad = CliRunner().invoke(app, ["train", "-t", "SYN", "--data-dir", str(data_dir), "--set",
                                   "data.context=[{ticker: 'not a ticker'}]"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("Error: --set: data.context.0.ticker: expected a Yahoo Finance symbol")


def test_tune_searches_with_the_context_and_its_best_run_records_it(tmp_path):
    from lstm_forecast import tune

    target, driver = driven_pair(400)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "SYN.csv").write_bytes(prices_to_csv(target))
    (data_dir / "CTX.csv").write_bytes(prices_to_csv(driver.iloc[20:]))  # starts late: the history is cut
    (tmp_path / "space.yaml").write_text("model.hidden_size: {int: [4, 8]}\n")
    setup = tune.plan_tune(config(WITH_CTX, "train.epochs=5"), ["SYN"], data_dir, tmp_path / "runs",
                           tmp_path / "space.yaml", "ctx")
    outcome = tune.tune(setup, tmp_path / "runs", trials=2)
    run = load_bundle(Path(outcome.report["test"]["runs"][0]["run_dir"]))
    assert [item["ticker"] for item in run.context_fingerprints] == ["CTX"]
    assert run.fingerprint["first_date"] == driver.index[20].date().isoformat()
    assert all(row["state"] == "complete" for row in outcome.report["trial_rows"])


def test_nothing_is_filled_past_the_end_of_a_context_series():
    target = np.array([f"2024-01-{d:02d}" for d in range(1, 8)], dtype="datetime64[D]")
    ended = context.align(target, target[:5], context.SAME_DAY, 3)
    assert ended.usable.tolist() == [True] * 5 + [False, False]
    lagged = context.align(target, target[:5], context.PREVIOUS_SESSION, 3)
    assert lagged.usable.tolist() == [False] + [True] * 5 + [False]


def test_evaluate_without_context_retrains_on_the_same_rows_and_writes_no_bundle(context_run, tmp_path):
    run_dir = copy_run(context_run, tmp_path)
    first = evaluate(run_dir, context_run["data_dir"], folds=0, without_context=True).report["with_vs_without"]
    assert first["windows"] == json.loads((run_dir / "metrics.json").read_text())["test"]["windows"]
    assert set(first) >= {"rmse_ratio_all", "rmse_ratio_h1", "dm_all", "dm_h1", "verdict", "without"}
    assert first["verdict"].startswith("the context ")
    assert sorted(path.name for path in (tmp_path / "SYN").iterdir()) == [run_dir.name]  # no run written
    again = evaluate(run_dir, context_run["data_dir"], folds=0, without_context=True).report["with_vs_without"]
    assert again == first  # same rows, split and seed: the same model again
    saved = json.loads((run_dir / "evaluation.json").read_text())["with_vs_without"]
    assert saved["rmse_ratio_all"] == first["rmse_ratio_all"]


def test_evaluate_without_context_needs_a_run_with_context(tmp_path):
    target, _ = driven_pair(300)
    run_dir = train_run(config(), "SYN", target, tmp_path).run_dir
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--folds", "0", "--without-context"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --without-context: run {run_dir.name} has no context inputs to leave")


def test_the_screener_refreshes_a_shared_context_series_once(tmp_path, monkeypatch):
    target, driver = driven_pair(300)
    data_dir, runs_dir = tmp_path / "data", tmp_path / "runs"
    frames = {"AAA": target, "BBB": target.assign(**{"Adj Close": target["Adj Close"] * 2}), "CTX": driver}
    data_dir.mkdir()
    for name, frame in frames.items():
        (data_dir / f"{name}.csv").write_bytes(prices_to_csv(frame))
    for name in ("AAA", "BBB"):
        train_run(config(WITH_CTX), name, frames[name], runs_dir, context_prices={"CTX": driver})
    updated = []
    monkeypatch.setattr(data, "update_cache", lambda folder, ticker, **kwargs: updated.append(ticker))
    monkeypatch.setattr(predict, "REFRESH_PACE_S", 0)
    screener = predict.run_screener(["AAA", "BBB"], refresh=True, data_dir=data_dir, runs_dir=runs_dir,
                                    today=date(2016, 3, 1))
    assert [row["status"] for row in screener.rows] == ["ok", "ok"]
    assert updated == ["AAA", "CTX", "BBB"]


def test_broken_context_input_is_one_clear_error():
    target, driver = driven_pair(200)
    zero = driver.assign(**{"Adj Close": driver["Adj Close"].where(driver.index != driver.index[50], 0.0)})
    with pytest.raises(ForecastError, match=f"feature log_return is not finite on {driver.index[50].date()}"):
        build_dataset(target, config(WITH_CTX), context_prices={"CTX": zero})
    elsewhere = frame_of(np.zeros(50), days(50, "2030-01-01"))
    with pytest.raises(ForecastError, match=r"the context series \(CTX\) share no day with the ticker's prices"):
        context.common_range(target, WindowSpec.from_config(config(WITH_CTX)), {"CTX": elsewhere})
    with pytest.raises(ForecastError, match="the context series CTX was not loaded"):
        build_dataset(target, config(WITH_CTX))
    unknown = load_config(None, ["data.context=[{ticker: CTX, calendar: NOPE}]"])
    with pytest.raises(ForecastError, match=r"data\.context: the calendar 'NOPE' of CTX is not an exchange"):
        WindowSpec.from_config(unknown)


def test_several_with_vs_without_tests_are_judged_as_a_set():
    from lstm_forecast.compare import Comparison, context_set

    rng = np.random.default_rng(0)
    anchors = [day.date().isoformat() for day in days(300)]

    def comparison(ticker: str, pvalue: float, ratio: float, shift: float) -> Comparison:
        report = {"ticker": ticker, "with_vs_without": {"rmse_ratio_all": ratio, "dm_all": {"pvalue": pvalue}}}
        loss = (rng.normal(shift, 1e-4, len(anchors))).tolist()
        return Comparison(Path("."), report, False, {"anchors": anchors, "differential": loss, "horizon": 1})

    helped = context_set([comparison("A", 0.001, 0.9, -1e-4), comparison("B", 0.04, 0.95, -1e-4)])
    assert [row["qvalue"] for row in helped["tickers"]] == pytest.approx([0.002, 0.04])
    assert helped["helped"] == 2 and helped["pooled_dm"]["pvalue"] < 0.01
    assert helped["verdict"].startswith("the context helped 2 and hurt 0 of 2 tickers")
    assert "pooled over the tickers it helped" in helped["verdict"]
    # One p-value of 0.04 among nine nulls is no discovery once corrected for the ten tests.
    mixed = context_set([comparison("A", 0.04, 0.95, 0.0)] + [comparison(f"N{i}", 0.9, 1.0, 0.0) for i in range(9)])
    assert mixed["helped"] == 0 and "made no distinguishable difference" in mixed["verdict"]


@pytest.mark.parametrize("value", ["'a: b'", "'" + "A" * 5000 + "'"])
def test_a_bad_context_ticker_is_named_once_and_quoted_short(value):
    from lstm_forecast.errors import UsageError

    with pytest.raises(UsageError) as caught:
        load_config(None, [f"data.context=[{{ticker: {value}}}]"])
    message = str(caught.value)
    assert message.startswith("--set: data.context.0.ticker: expected a Yahoo Finance symbol") and len(message) < 300


def test_a_context_calendar_that_cannot_compute_its_sessions_is_a_usage_error_naming_it():
    config = load_config(None, ["data.context=[{ticker: CTX, calendar: ASEX}]"])
    with pytest.raises(UsageError, match=r"data\.context: CTX's calendar 'ASEX': exchange-calendars lists this"):
        WindowSpec.from_config(config)
