"""A global run's walk-forward (`evaluate --run G --folds K`): its test period in K blocks, the model (every seed
member) refit before each block with the scalers refit too, and the per-ticker scores and the cross-section pooled
over every fold's days."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_OVERRIDES, error_line, write_caches
from rich.console import Console
from typer.testing import CliRunner

from lstm_forecast import backtest, linear
from lstm_forecast.backtest import fold_dataset, plan_folds, pooled_scores, run_global_backtest
from lstm_forecast.bundle import load_global_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.crosssection import ic_summary, rank_ic
from lstm_forecast.evaluate import FOLDS_IN_UNIVERSE, evaluate, rebuild_dataset, with_recorded_threads
from lstm_forecast.model import ensemble_of
from lstm_forecast.report import global_report
from lstm_forecast.train import train_global

TICKERS = [f"T{number}" for number in range(6)]
# A test period of 40 % of 300 days: three blocks of 40 days, each with enough days for a daily rank IC.
WALK = [*TINY_OVERRIDES, "model.scope=global", "train.seeds=2", "split.test_fraction=0.4"]


def universe(days: int = 300, seed: int = 5) -> dict[str, pd.DataFrame]:
    """Tickers whose returns share a reversal, r_t = -0.3 r_(t-1) + noise: something a pooled model can rank."""
    rng = np.random.default_rng(seed)
    frames = {}
    for number, ticker in enumerate(TICKERS):
        noise = rng.normal(0, 0.01, days)
        returns = np.zeros(days)
        for t in range(1, days):
            returns[t] = -0.3 * returns[t - 1] + noise[t]
        price = (10 + 5 * number) * np.exp(np.cumsum(returns))
        dates = pd.bdate_range("2019-01-02", periods=days, name="Date").as_unit("ns")
        frames[ticker] = pd.DataFrame({"Open": price, "High": price * 1.01, "Low": price * 0.99, "Close": price,
                                       "Adj Close": price, "Volume": 1e6}, index=dates)
    return frames


@pytest.fixture(scope="module")
def walk_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A global run of two seed members over six synthetic tickers, and its data dir."""
    root = tmp_path_factory.mktemp("walk")
    data_dir = write_caches(root / "data", universe())
    result = train_global(load_config(None, WALK), TICKERS, data_dir, root / "runs")
    return result.run_dir, data_dir


@pytest.fixture(scope="module")
def walked(walk_run: tuple[Path, Path]) -> dict:
    """The run's three folds, run once through the backtest's own functions."""
    bundle = load_global_bundle(walk_run[0])
    prices, context_prices = bundle.recorded()
    dataset = rebuild_dataset(bundle, prices, context_prices)
    calendar = pd.DatetimeIndex(np.unique(np.concatenate([days.dates for days in dataset.tickers])))
    first_test = int(calendar.searchsorted(dataset.test_start))
    plan = plan_folds(int(calendar.searchsorted(dataset.val_start)), first_test, len(calendar), 3, 2)
    config = with_recorded_threads(bundle)
    results, interrupted = run_global_backtest(prices, config, plan, calendar, ensemble_of(bundle.members),
                                               [record.scaler for record in bundle.tickers])
    return {"bundle": bundle, "prices": prices, "calendar": calendar, "plan": plan, "config": config,
            "results": results, "interrupted": interrupted, "first_test": first_test}


def test_folds_cover_the_test_period_and_each_trains_and_scales_on_earlier_days_only(walked):
    calendar, plan, prices = walked["calendar"], walked["plan"], walked["prices"]
    assert not walked["interrupted"] and len(walked["results"]) == 3
    # Consecutive blocks from the run's first test day to the last day: no gap, no overlap.
    assert plan[0].test_start == walked["first_test"] and plan[-1].test_end == len(calendar)
    assert all(one.test_end == two.test_start for one, two in itertools.pairwise(plan))
    for fold in plan:
        dataset = fold_dataset(prices, walked["config"], fold, calendar=calendar)
        block = calendar[fold.test_start], calendar[fold.test_end - 1]
        assert dataset.train.target_dates.max() < dataset.val_start <= dataset.val.target_dates.min()
        assert dataset.val.target_dates.max() < dataset.test_start == block[0]
        assert dataset.test.target_dates.min() >= block[0] and dataset.test.target_dates.max() <= block[1]
        assert max(frame.index.max() for frame in dataset.prices.values()) <= block[1]  # no later row exists
        for days in dataset.tickers:  # each scaler: the ticker's training days of this fold, and no later one
            returns = np.diff(np.log(prices[days.ticker]["Adj Close"].to_numpy()))
            assert days.scaler.target_mean == pytest.approx(returns[:days.val_start].mean(), rel=1e-12)
            assert days.scaler.target_mean != pytest.approx(returns[:days.val_start + 1].mean(), rel=1e-12)
    sources = [result.summary["model_source"] for result in walked["results"]]
    assert sources == ["bundle", "retrained", "retrained"]  # fold 1 has the run's own training days


def test_the_pooled_cross_section_is_the_one_over_every_folds_days(walked):
    results = walked["results"]
    pooled = pooled_scores(results, walked["config"], "lstm")
    daily = pd.concat([result.scores.section.daily_ic for result in results])
    pd.testing.assert_series_equal(pooled.section.daily_ic, daily)
    assert pooled.section.ic["model"] == ic_summary(daily)  # HAC t over all the days, not a mean of the folds'
    partial = pd.concat([result.scores.section.daily_partial_ic for result in results])
    pd.testing.assert_series_equal(pooled.section.daily_partial_ic, partial)  # each fold's own train means
    assert pooled.section.k == 3  # the book is sized on the six tickers, not on tickers × folds
    assert [member["label"] for member in pooled.section.members] == ["seed 0", "seed 1"]
    rows = pooled.report["per_ticker"]["rows"]
    windows = {ticker: sum(len(result.scores.forecasts[ticker]) for result in results) for ticker in TICKERS}
    assert {row["ticker"]: row["test_windows"] for row in rows} == windows
    assert pooled.report["test"]["windows"] == sum(windows.values())



def test_the_pooled_cross_section_has_each_folds_own_linear_baseline(walked):
    results = walked["results"]
    pooled = pooled_scores(results, walked["config"], "lstm")
    ridges = [linear.fit_ridge(result.dataset) for result in results]  # each on its fold's training windows
    about = pooled.report["linear_baseline"]
    assert about["penalties"] == [ridge.penalty for ridge in ridges]
    assert [(fold["fold"], fold["training_windows"]) for fold in about["folds"]] == [
        (number, ridge.windows) for number, ridge in enumerate(ridges, start=1)]
    assert len({ridge.windows for ridge in ridges}) == 3  # refit on more days each fold, never the run's one ridge
    # Each fold's ridge ranks its own block's days; the pooled IC stands on the days of every fold.
    daily = []
    for result, ridge in zip(results, ridges, strict=True):
        dataset, test = result.dataset, result.dataset.test
        forecast = linear.day_one_returns(dataset, test, ridge.predict(test.inputs))
        realised = np.log(test.actual_prices[:, 0] / test.anchor_prices)
        daily.append(rank_ic(linear.panel(dataset, test, forecast), linear.panel(dataset, test, realised)))
    section = pooled.report["cross_section"]
    assert section["ic"]["linear"] == ic_summary(pd.concat(daily))
    assert section["ic"]["beyond_linear"]["days"] > 0  # the IC beyond it: each fold's ridge as the control
    assert "linear" in section["long_short"]["strategies"]
    console = Console(record=True, width=200)
    for item in global_report({**pooled.report, "scope": "walk-forward", "model": {"kind": "lstm"}}):
        console.print(item)
    penalties = ", ".join(f"{ridge.penalty:g}" for ridge in ridges)
    assert f"refit per fold, on the fold's training windows; penalties {penalties} (folds 1–3)" in console.export_text()


def test_evaluating_twice_gives_the_same_numbers_and_says_the_cost_first(walk_run):
    run_dir, _ = walk_run
    runs = [CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--folds", "2", "--json"]) for _ in range(2)]
    assert [result.exit_code for result in runs] == [0, 0], runs[0].output
    first, second = (json.loads(result.stdout) for result in runs)
    for key in ("per_ticker", "cross_section", "pooled_ratio", "walk_forward", "test"):
        first[key].pop("files", None), second[key].pop("files", None)
        assert first[key] == second[key]
    walk = first["walk_forward"]
    assert (walk["folds"], walk["completed"], walk["interrupted"]) == (2, 2, False)
    assert [fold["model_source"] for fold in walk["fold_results"]] == ["bundle", "retrained"]
    # One fold refit, two seed members: two models, said before any of them trains.
    assert "Walk-forward backtest: 2 folds, training 2 models, about" in runs[0].stderr
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["cross_section"] == first["cross_section"] and saved["walk_forward"] == walk


def test_a_stop_keeps_the_finished_folds(walk_run):
    run_dir, _ = walk_run
    stop = threading.Event()
    stop.set()  # Ctrl-C at once: fold 1 is the run's own model and costs no training, fold 2 never trains
    phases = []
    result = evaluate(run_dir, folds=3, stop=stop, on_phase=phases.append)
    walk = result.report["walk_forward"]
    assert result.interrupted and (walk["completed"], walk["interrupted"]) == (1, True)
    assert phases[1:] == ["fold 1/3: rebuilding the windows", "fold 1/3: scoring the test block",
                          "fold 2/3: rebuilding the windows", "fold 2/3: training 2 models on 6 tickers",
                          "writing the report and charts"]
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["walk_forward"]["completed"] == 1 and saved["cross_section"] == result.report["cross_section"]


def test_folds_with_tickers_out_of_universe_are_a_usage_error(walk_run, tmp_path):
    run_dir, data_dir = walk_run
    write_caches(data_dir, {"NEW": universe(seed=9)["T0"]})
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "-t", "NEW", "--folds", "2",
                                      "--data-dir", str(data_dir)])
    assert result.exit_code == 2 and error_line(result) == f"Error: {FOLDS_IN_UNIVERSE}"


def test_refits_use_the_seeds_and_threads_the_run_trained_with(walk_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(walk_run[0], run_dir)
    config_file = run_dir / "config.yaml"
    config_file.write_text(config_file.read_text().replace("threads: 1", "threads: auto"))  # as trained by default
    document = json.loads((run_dir / "global.json").read_text())
    for member in document["training"]:
        member["threads"] = 3
    (run_dir / "global.json").write_text(json.dumps(document))
    seen = []

    def recording_training(dataset, config, on_epoch=None, stop=None):
        seen.append((config.train.threads, config.train.seed, config.train.seeds))  # then stopped, as by Ctrl-C

    monkeypatch.setattr(backtest, "train_as_run", recording_training)
    assert evaluate(run_dir, folds=2).interrupted
    assert seen == [(3, 0, 2)]  # pinned: `auto` would follow the machine's load, and the refit would not repeat
