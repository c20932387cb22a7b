"""evaluate: baselines and verdicts on hand-made series, the lag-copy flag, a walk-forward backtest that
cannot see past each fold's start, the files written into the bundle, and the command line."""

from __future__ import annotations

import base64
import itertools
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from conftest import TICKER, TINY_OVERRIDES, build_prices, same_weights
from typer.testing import CliRunner

from lstm_forecast import backtest, evaluate, progress, scoring, train
from lstm_forecast.bundle import PRICES_FILE
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.prices import prices_to_csv
from lstm_forecast.windows import WindowSpec, build_dataset, compute_features

HORIZON = 3
# The tiny model, but HORIZON days ahead like the hand-made series (the report names days 1–3), and two
# backtest folds instead of four: fold 1 reuses the bundle, fold 2 retrains, which is all the tests need.
TINY = [*TINY_OVERRIDES, f"window.horizon={HORIZON}", "evaluate.folds=2"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRIC_KEYS = {"rmse", "mae", "mape", "mase", "directional_accuracy", "rmse_ratio"}


def hand_forecasts(prices: np.ndarray, model: np.ndarray | None = None, mu: float = 0.0) -> scoring.PeriodForecasts:
    """Windows anchored on every day of `prices` that has HORIZON days after it."""
    n = len(prices) - HORIZON
    anchors = prices[:n]
    actual = np.stack([prices[step : step + n] for step in range(1, HORIZON + 1)], axis=1)
    dates = np.datetime64("2024-01-01") + np.arange(len(prices))
    naive = np.repeat(anchors[:, None], HORIZON, axis=1)
    return scoring.PeriodForecasts(
        anchor_dates=dates[:n],
        target_dates=np.stack([dates[step : step + n] for step in range(1, HORIZON + 1)], axis=1),
        anchor_prices=anchors,
        actual=actual,
        model=naive.copy() if model is None else model,
        naive=naive,
        drift=anchors[:, None] * np.exp(mu * np.arange(1, HORIZON + 1)),
    )


# --- the report on hand-made series -----------------------------------------------------------


def test_baselines_on_a_steady_one_percent_climb():
    # Prices rise exactly 1% a day: the drift forecast (mu = log 1.01) is exact, naive misses by
    # anchor * (1.01^k - 1) at step k, and a model that forecasts the truth beats naive significantly.
    prices = 100.0 * 1.01 ** np.arange(60)
    forecasts = hand_forecasts(prices, mu=math.log(1.01))
    forecasts.model = forecasts.actual * 1.0
    report = scoring.score_forecasts(forecasts, "lstm")

    naive_errors = forecasts.anchor_prices[:, None] * (1.01 ** np.arange(1, HORIZON + 1) - 1)
    naive = report["metrics"]["naive"]["all"]
    assert naive["rmse"] == pytest.approx(np.sqrt(np.mean(naive_errors**2)))
    assert naive["mae"] == pytest.approx(np.mean(naive_errors))
    assert naive["mase"] == 1.0 and report["metrics"]["drift"]["all"]["mase"] == pytest.approx(0.0, abs=1e-9)
    assert naive["rmse_ratio"] == 1.0 and naive["directional_accuracy"] is None
    drift = report["metrics"]["drift"]["all"]
    assert drift["rmse"] == pytest.approx(0.0, abs=1e-9) and drift["directional_accuracy"] == 1.0
    assert report["metrics"]["model"]["all"]["rmse_ratio"] == pytest.approx(0.0, abs=1e-12)
    assert report["windows"] == 57 and report["first_anchor"] == "2024-01-01"
    assert report["verdict"].startswith("LSTM is better than the random walk")


def test_a_model_that_forecasts_no_change_is_the_random_walk():
    prices = 100.0 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, 80)))
    sections, _ = evaluate.assess(hand_forecasts(prices), "gru", [[0.01] * 30] * HORIZON, [80.0], 5.0)
    assert sections["test"]["verdict"].startswith("GRU is not distinguishable from the random walk")
    assert sections["test"]["vs_naive"]["dm_all"]["pvalue"] == 1.0
    assert sections["lag_copy"]["echoes_yesterday"] is True  # a flat forecast is the series shifted by a day
    assert sections["trading"]["strategy"]["days_in_market"] == 0  # never calls a rise: stays in cash


def test_lag_copy_flags_a_forecast_that_repeats_yesterdays_move():
    rng = np.random.default_rng(7)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, 300)))
    forecasts = hand_forecasts(prices[1:])
    yesterday = np.log(prices[1:-HORIZON] / prices[: -HORIZON - 1])  # the move that ended on each anchor
    forecasts.model = forecasts.anchor_prices[:, None] * np.exp(yesterday[:, None] * np.arange(1, HORIZON + 1))
    sections, _ = evaluate.assess(forecasts, "lstm", [[0.01] * 30] * HORIZON, [80.0], 5.0)
    assert sections["lag_copy"]["echoes_yesterday"] is True
    assert sections["lag_copy"]["best_lag"] == 1
    assert "echoes yesterday's move" in sections["lag_copy"]["verdict"]


def test_coverage_of_intervals_per_level():
    prices = 100.0 * 1.01 ** np.arange(40)
    forecasts = hand_forecasts(prices)
    # Residuals of 0.5% up to 5%: the 80% interval reaches 4.5%, so it covers steps 1-3 of a 1%-a-day climb
    # (naive misses by 1%, 2%, 3%); with 5 validation windows a 95% interval cannot be had.
    residuals = [list(np.linspace(0.005, 0.05, 10))] * HORIZON
    coverage = evaluate.interval_coverage(forecasts, residuals, [80.0, 95.0])
    assert coverage[0]["level"] == 80.0 and coverage[0]["all"] == 1.0 and coverage[0]["per_step"] == [1.0] * 3
    short = evaluate.interval_coverage(forecasts, [r[:5] for r in residuals], [95.0])[0]
    assert short["all"] is None and "validation windows" in short["note"]


# --- walk-forward folds -----------------------------------------------------------------------


def test_folds_cover_the_test_period_in_consecutive_blocks():
    folds = backtest.plan_folds(val_start=160, test_start=200, test_end=300, folds=3, horizon=HORIZON)
    assert [(fold.test_start, fold.test_end) for fold in folds] == [(200, 233), (233, 267), (267, 300)]
    assert folds[0].val_start == 160  # fold 0 is the run's own split
    # Every fold keeps the run's validation share (20% of the days before its test block).
    assert [fold.test_start - fold.val_start for fold in folds] == [40, 47, 53]
    with pytest.raises(UsageError, match="40 walk-forward folds: the test period has 100 trading days") as caught:
        backtest.plan_folds(160, 200, 300, folds=40, horizon=HORIZON)
    assert str(caught.value).endswith("use fewer, e.g. --folds 33")  # the most that fit: 33 blocks of 3+ days
    assert len(backtest.plan_folds(160, 200, 300, folds=33, horizon=HORIZON)) == 33
    with pytest.raises(UsageError, match=r"e\.g\. --folds 1$"):  # 5 days: two blocks of 2 and 3 days are too short
        backtest.plan_folds(160, 200, 205, folds=2, horizon=HORIZON)
    with pytest.raises(UsageError, match=r"e\.g\. --folds 33$"):  # refused before any array of a billion is built
        backtest.plan_folds(160, 200, 300, folds=10**9, horizon=HORIZON)
    with pytest.raises(UsageError, match=r"skip the backtest with --folds 0$"):
        backtest.plan_folds(160, 200, 202, folds=2, horizon=HORIZON)


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return build_prices(300, seed=3)


@pytest.fixture(scope="module")
def config():
    return load_config(None, TINY)


def test_no_fold_sees_data_after_its_start(prices, config):
    dataset = build_dataset(prices, config)
    days = pd.DatetimeIndex(prices.index[1:])
    plan = backtest.plan_folds(
        int(days.searchsorted(dataset.val_start)), int(days.searchsorted(dataset.test_start)), len(days), 3, HORIZON
    )
    for fold in plan:
        fold_data = backtest.fold_dataset(prices, config, fold)
        start = np.datetime64(days[fold.test_start])
        assert fold_data.train.target_dates.max() < start and fold_data.val.target_dates.max() < start
        assert fold_data.test.target_dates.min() >= start
        assert fold_data.test.target_dates.max() <= np.datetime64(days[fold.test_end - 1])

    # Jolt every return from fold 1's first test day on: folds 0 and 1 trained on earlier days only, so
    # their scalers and weights must not change, nor any of fold 0's results; fold 1's test block did change.
    perturbed = prices.copy()
    later = perturbed.index >= days[plan[1].test_start]
    jolt = np.exp(np.cumsum(np.random.default_rng(0).normal(0.0, 0.05, later.sum())))
    price_columns = ["Open", "High", "Low", "Close", "Adj Close"]
    perturbed.loc[later, price_columns] = perturbed.loc[later, price_columns].mul(jolt, axis=0)
    original, _ = backtest.run_backtest(prices, config, plan)
    changed, _ = backtest.run_backtest(perturbed, config, plan)

    for before, after in zip(original[:2], changed[:2], strict=True):
        assert before.scaler == after.scaler
        assert same_weights(before.model, after.model)
    assert original[0].summary == changed[0].summary
    np.testing.assert_array_equal(original[0].forecasts.model, changed[0].forecasts.model)
    assert original[1].summary["metrics"] != changed[1].summary["metrics"]
    # A scaler fitted on every day would have seen the jolt: the checks above can fail.
    spec = WindowSpec.from_config(config)
    assert not np.allclose(compute_features(prices, spec).std(), compute_features(perturbed, spec).std())
    # Anchors of consecutive folds never overlap.
    for earlier, later_fold in itertools.pairwise(original):
        assert earlier.forecasts.anchor_dates.max() < later_fold.forecasts.anchor_dates.min()


# --- a whole evaluation of a tiny trained bundle ----------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prices, config) -> Path:
    """A data dir holding SYN's cache and a runs dir with one tiny bundle trained on it."""
    root = tmp_path_factory.mktemp("trained")
    (root / "data").mkdir()
    (root / "data" / f"{TICKER}.csv").write_bytes(prices_to_csv(prices))
    train.train_run(config, TICKER, prices, root / "runs")
    return root


@pytest.fixture
def workdir(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the trained data and runs dirs, so each test may write into the bundle."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    for name in ("LSTM_FORECAST_DATA_DIR", "LSTM_FORECAST_RUNS_DIR", "LSTM_FORECAST_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run_dir_of(workdir: Path) -> Path:
    return next((workdir / "runs" / TICKER).iterdir())


def refuse_constants(name: str) -> None:
    raise AssertionError(f"{name} in JSON")


def test_evaluation_report_and_files(workdir):
    run_dir = run_dir_of(workdir)
    result = evaluate.evaluate(run_dir, workdir / "data")
    report = json.loads((run_dir / "evaluation.json").read_text(), parse_constant=refuse_constants)
    assert report == json.loads(json.dumps(result.report))
    assert {"run_dir", "run_id", "ticker", "model", "data", "scaler", "test", "lag_copy", "coverage", "trading",
            "backtest", "files"} <= report.keys()
    test = report["test"]
    for name in ("model", "naive", "drift"):
        for step in ("h1", "all"):
            assert set(test["metrics"][name][step]) == METRIC_KEYS
    assert isinstance(test["vs_naive"]["dm_all"]["pvalue"], float)
    assert isinstance(test["vs_naive"]["direction_h1"]["binomial_pvalue"], float)
    assert test["verdict"].startswith("LSTM is ")
    assert isinstance(report["lag_copy"]["echoes_yesterday"], bool) and report["lag_copy"]["verdict"]
    assert [row["level"] for row in report["coverage"]] == [80.0, 95.0]
    assert all(0 <= row["all"] <= 1 and len(row["per_step"]) == HORIZON for row in report["coverage"])
    assert "not investment advice" in report["trading"]["disclaimer"]
    assert report["data"]["cache"] == "matches" and report["data"]["source"] == "bundle"
    assert report["scaler"]["fit_on"] == "training days only"

    # The evaluation reproduces the training run's own test scores on the same windows.
    metrics_json = json.loads((run_dir / "metrics.json").read_text())
    assert test["metrics"]["model"] == metrics_json["test"]["metrics"]["model"]
    assert test["metrics"]["naive"] == metrics_json["test"]["metrics"]["naive"]

    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns) == [
        "anchor_date", "step", "target_date", "anchor_price", "actual", "model", "naive", "drift"
    ]
    assert len(predictions) == test["windows"] * HORIZON
    np.testing.assert_array_equal(predictions["naive"], predictions["anchor_price"])
    rmse = float(np.sqrt(np.mean((predictions["model"] - predictions["actual"]) ** 2)))
    assert rmse == pytest.approx(test["metrics"]["model"]["all"]["rmse"], rel=1e-12)

    for name in ("predictions.png", "equity.png"):
        path = run_dir / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        height, width = matplotlib.image.imread(path).shape[:2]
        assert width >= 800 and height >= 400


def test_backtest_folds_pool_and_reuse_the_bundle_for_fold_one(workdir):
    run_dir = run_dir_of(workdir)
    result = evaluate.evaluate(run_dir, workdir / "data", folds=2)
    backtest = result.report["backtest"]
    first, second = backtest["fold_results"]
    assert backtest["completed"] == 2 and backtest["interrupted"] is False
    assert first["model_source"] == "bundle" and second["model_source"] == "retrained"
    assert second["epochs_run"] == 2
    assert first["first_anchor"] == result.report["test"]["first_anchor"]
    assert first["last_anchor"] < second["first_anchor"]
    assert backtest["pooled"]["windows"] == first["windows"] + second["windows"]
    # Fold 1 reuses the run's model, so its forecasts are the run's own on the first block's anchors.
    predictions = pd.read_csv(run_dir / "predictions.csv")
    block = predictions[predictions["anchor_date"] <= first["last_anchor"]]
    model_rmse = float(np.sqrt(np.mean((block["model"] - block["actual"]) ** 2)))
    assert model_rmse == pytest.approx(first["metrics"]["model"]["all"]["rmse"], rel=1e-12)

    table = pd.read_csv(run_dir / "backtest.csv")
    assert table["fold"].tolist() == ["1", "2", "pooled"]
    assert table["windows"].tolist() == [first["windows"], second["windows"], backtest["pooled"]["windows"]]
    assert table.loc[2, "model_rmse"] == pytest.approx(backtest["pooled"]["metrics"]["model"]["all"]["rmse"])

    # --folds 0 skips the backtest and removes the now outdated backtest.csv.
    skipped = evaluate.evaluate(run_dir, workdir / "data", folds=0)
    assert skipped.report["backtest"] is None and not (run_dir / "backtest.csv").exists()


def test_an_interrupted_backtest_keeps_the_finished_folds(workdir, monkeypatch):
    def interrupted_training(dataset, config, on_epoch=None, stop=None):
        return None  # what train_as_run says when a stop ended the training

    monkeypatch.setattr(backtest, "train_as_run", interrupted_training)
    result = evaluate.evaluate(run_dir_of(workdir), workdir / "data", folds=3)
    assert result.interrupted is True
    assert result.report["backtest"]["completed"] == 1 and result.report["backtest"]["interrupted"] is True
    assert (run_dir_of(workdir) / "evaluation.json").is_file()


def test_the_backtest_counts_every_seed_member_it_will_train(prices, monkeypatch):
    monkeypatch.setattr(backtest, "train_as_run", lambda dataset, config, on_epoch=None, stop=None: None)
    config = load_config(None, [*TINY, "train.seeds=3"])
    dataset = build_dataset(prices, config)
    days = pd.DatetimeIndex(prices.index[1:])
    plan = backtest.plan_folds(int(days.searchsorted(dataset.val_start)), int(days.searchsorted(dataset.test_start)),
                               len(days), 3, HORIZON)
    events = []
    backtest.run_backtest(prices, config, plan, on_progress=events.append, seconds_per_training=2.0)
    assert (events[0].trainings, events[0].estimate_seconds) == (9, 18.0)  # 3 folds × 3 members, 2 s each


def test_backtest_refits_use_the_thread_count_the_run_trained_with(workdir, monkeypatch):
    run_dir = run_dir_of(workdir)
    config_file = run_dir / "config.yaml"
    config_file.write_text(config_file.read_text().replace("threads: 1", "threads: auto"))  # as trained by default
    document = json.loads((run_dir / "bundle.json").read_text())
    document["training"]["threads"] = 3
    (run_dir / "bundle.json").write_text(json.dumps(document))
    seen = []

    def recording_training(dataset, config, on_epoch=None, stop=None):
        seen.append(config.train.threads)

    monkeypatch.setattr(backtest, "train_as_run", recording_training)
    evaluate.evaluate(run_dir, workdir / "data", folds=3)
    assert seen == [3]  # pinned: `auto` would follow the machine's load, and the backtest would not repeat

    # A run whose `auto` threads changed as the load did: the refits replay its schedule step for step.
    document["training"]["thread_schedule"] = [[0, 3], [40, 1]]
    (run_dir / "bundle.json").write_text(json.dumps(document))
    evaluate.evaluate(run_dir, workdir / "data", folds=3)
    assert seen == [3, [[0, 3], [40, 1]]]
    document["training"]["thread_schedule"] = [[5, 3]]  # damaged: a schedule starts at step 0
    (run_dir / "bundle.json").write_text(json.dumps(document))
    with pytest.raises(ForecastError, match=r"a schedule starts at step 0.*the bundle is damaged"):
        evaluate.evaluate(run_dir, workdir / "data", folds=3)


def test_revised_or_missing_cache_still_evaluates_the_recorded_rows(workdir, prices):
    run_dir = run_dir_of(workdir)
    cache = workdir / "data" / f"{TICKER}.csv"
    revised = prices.copy()
    revised.iloc[50, revised.columns.get_loc("Adj Close")] *= 1.01
    cache.write_bytes(prices_to_csv(revised))
    report = evaluate.evaluate(run_dir, workdir / "data", folds=0).report
    assert report["data"]["cache"] == "revised" and "revised" in report["data"]["note"]
    assert report["data"]["source"] == "bundle"

    cache.unlink()
    report = evaluate.evaluate(run_dir, workdir / "data", folds=0).report
    assert report["data"]["cache"] == "missing"


def test_bundle_without_recorded_prices_falls_back_to_a_matching_cache_only(workdir, prices):
    run_dir = run_dir_of(workdir)
    (run_dir / PRICES_FILE).unlink()
    report = evaluate.evaluate(run_dir, workdir / "data", folds=0).report
    assert report["data"]["source"] == "cache"

    longer = pd.concat([prices, prices.iloc[-1:].set_axis([prices.index[-1] + pd.Timedelta(days=3)])])
    (workdir / "data" / f"{TICKER}.csv").write_bytes(prices_to_csv(longer))
    report = evaluate.evaluate(run_dir, workdir / "data", folds=0).report
    assert report["data"]["source"] == "cache" and "1 newer rows" in report["data"]["note"]

    (workdir / "data" / f"{TICKER}.csv").write_bytes(prices_to_csv(prices.iloc[:-1]))
    with pytest.raises(ForecastError, match="missing from the bundle, and the cached SYN prices no longer match"):
        evaluate.evaluate(run_dir, workdir / "data", folds=0)


def test_tampered_recorded_prices_are_refused(workdir, prices):
    run_dir = run_dir_of(workdir)
    (run_dir / PRICES_FILE).write_bytes(prices_to_csv(prices * 1.0001))
    with pytest.raises(ForecastError, match="do not match the run's data fingerprint"):
        evaluate.evaluate(run_dir, workdir / "data", folds=0)


# --- the command line -------------------------------------------------------------------------


def test_cli_evaluate_without_arguments_uses_the_newest_run(workdir, monkeypatch, prices, config):
    newer = train.train_run(config, TICKER, prices, workdir / "runs").run_dir
    monkeypatch.chdir(workdir)  # ./data and ./runs are the defaults
    result = CliRunner().invoke(app, ["evaluate", "--folds", "0", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=refuse_constants)  # exactly one JSON object
    assert report["run_id"] == newer.name
    assert set(report["test"]["metrics"]) == {"model", "naive", "drift"}
    assert (newer / "evaluation.json").is_file()


def test_cli_evaluate_prints_the_report(workdir):
    result = CliRunner().invoke(
        app, ["evaluate", "-t", "syn", "--folds", "0", "--runs-dir", str(workdir / "runs"),
              "--data-dir", str(workdir / "data")],
    )
    assert result.exit_code == 0, result.output
    for text in ("Verdict: LSTM is", "Lag copy:", "DM vs naive", "binomial p", "drift, days 1–3",
                 "Trading diagnostic, not advice", "80%", "skipped (--folds 0)"):
        assert text in result.stdout


def test_cli_evaluate_says_what_the_backtest_costs_and_logs_each_fold(workdir):
    result = CliRunner().invoke(
        app, ["evaluate", "-t", TICKER, "--folds", "2", "--runs-dir", str(workdir / "runs"),
              "--data-dir", str(workdir / "data"), "--json"],
    )
    assert result.exit_code == 0, result.output
    seconds = json.loads(result.stdout)["training"]["seconds"]
    lines = result.stderr.splitlines()  # not a terminal: plain lines, no bar
    assert lines[0].startswith("Walk-forward backtest: 2 folds, training 1 model, about ")
    assert f"about {progress.duration(seconds)} at this run's own training time" in lines[0]
    assert [line.split(",")[0] for line in lines[1:]] == ["walk-forward fold 1/2 done", "walk-forward fold 2/2 done"]


def test_cli_evaluate_with_no_runs_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--runs-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"Error: no trained runs in {tmp_path / 'none'}; train one with `lstm-forecast train -t TICKER`"
    ]


def test_cli_evaluate_refuses_both_run_and_ticker(workdir):
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir_of(workdir)), "-t", TICKER])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: give --run or --ticker, not both")


# --- the evaluation files as one set ------------------------------------------------------------


def bundle_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every file in the bundle (temp folders included, so a leftover shows) and its bytes."""
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*")) if path.is_file()}


def test_a_non_finite_figure_fails_before_anything_is_replaced(workdir, monkeypatch):
    run_dir = run_dir_of(workdir)
    evaluate.evaluate(run_dir, workdir / "data", folds=2)  # a complete earlier evaluation, backtest.csv included
    before = bundle_bytes(run_dir)
    # What evaluate.cost_bps=1e300 does to the strategy's returns.
    monkeypatch.setattr(evaluate.trading.TradingDiagnostic, "to_dict",
                        lambda self: {"strategy": {"cumulative_return": -math.inf}})
    with pytest.raises(ForecastError, match=r"trading\.strategy\.cumulative_return that is not a finite number"):
        evaluate.evaluate(run_dir, workdir / "data", folds=0)  # would also delete backtest.csv
    assert bundle_bytes(run_dir) == before


@pytest.mark.parametrize("broken", ["equity_plot", "predictions_plot"])
def test_a_failure_while_drawing_leaves_the_bundle_as_it_was(workdir, monkeypatch, broken):
    run_dir = run_dir_of(workdir)
    evaluate.evaluate(run_dir, workdir / "data", folds=0)
    before = bundle_bytes(run_dir)

    def no_space(*args, **kwargs):
        raise ForecastError("cannot write equity.png: no space left on device")

    monkeypatch.setattr(evaluate.plots, broken, no_space)
    with pytest.raises(ForecastError, match="no space left"):
        evaluate.evaluate(run_dir, workdir / "data", folds=2)
    assert bundle_bytes(run_dir) == before


def test_cli_evaluate_of_a_run_with_absurd_costs_is_one_error_line_and_changes_nothing(workdir):
    # evaluate.cost_bps=1e300 would make the strategy's returns non-finite; the bundle's config is validated
    # with the config's own bounds on load, so it is refused as damaged before anything is computed.
    run_dir = run_dir_of(workdir)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("cost_bps: 5.0", "cost_bps: 1.0e+300"))
    before = bundle_bytes(run_dir)
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--folds", "0",
                                      "--data-dir", str(workdir / "data")])
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "evaluate.cost_bps" in lines[0] and "damaged" in lines[0]
    assert bundle_bytes(run_dir) == before


# --- report.html --------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """The page's tables (caption, rows of cell texts), images and anything that could load a resource."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.loads: list[tuple[str, str]] = []
        self.meta: list[dict] = []
        self.cell: list[str] | None = None
        self.in_caption = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self.tables.append({"caption": "", "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "caption":
            self.in_caption = True
        elif tag == "img":
            self.images.append(attributes["src"])
        elif tag == "meta":
            self.meta.append(attributes)
        if tag in ("script", "link", "iframe", "object", "embed") or any(
            name in ("href", "src", "srcset") and tag != "img" for name in attributes
        ):
            self.loads.append((tag, str(attributes)))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "caption":
            self.in_caption = False

    def handle_data(self, text):
        if self.cell is not None:
            self.cell.append(text)
        elif self.in_caption:
            self.tables[-1]["caption"] += text


@pytest.fixture(scope="module")
def evaluated(trained: Path, tmp_path_factory) -> Path:
    """A copy of the trained bundle, evaluated with two folds (every section of the report)."""
    root = tmp_path_factory.mktemp("evaluated")
    shutil.copytree(trained, root, dirs_exist_ok=True)
    run_dir = next((root / "runs" / TICKER).iterdir())
    evaluate.evaluate(run_dir, root / "data", folds=2)
    return run_dir


def test_report_html_holds_the_figures_of_evaluation_json(evaluated):
    report = json.loads((evaluated / "evaluation.json").read_text())
    assert report["files"]["report"] == str(evaluated / "report.html")
    page = PageParser()
    page.feed((evaluated / "report.html").read_text(encoding="utf-8"))
    assert page.loads == []  # no script, stylesheet, font or link to load
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.meta

    tables = {table["caption"].split(":")[0]: table["rows"] for table in page.tables}
    test_rows = {row[0]: row for row in tables["Test period (never seen in training)"][1:]}
    model, naive = report["test"]["metrics"]["model"]["all"], report["test"]["metrics"]["naive"]["all"]
    assert test_rows[f"LSTM, days 1–{HORIZON}"][1:7] == [
        f"{model['rmse']:.3f}", f"{model['mae']:.3f}", f"{model['mape']:.2f}", f"{model['mase']:.3f}",
        f"{model['directional_accuracy']:.1%}", f"{model['rmse_ratio']:.3f}",
    ]
    assert test_rows[f"naive, days 1–{HORIZON}"][1] == f"{naive['rmse']:.3f}"
    folds = tables["Walk-forward backtest"]
    backtest = report["backtest"]
    assert [row[0] for row in folds[1:]] == ["1", "2", "pooled"]
    second = backtest["fold_results"][1]
    assert folds[2][1] == f"{second['first_anchor']} … {second['last_anchor']}"  # full ISO dates both ends
    assert folds[3][4] == f"{backtest['pooled']['metrics']['model']['all']['rmse']:.3f}"
    coverage = tables["Prediction intervals on the test period (calibrated on validation)"]
    assert coverage[1][:2] == ["80%", f"{report['coverage'][0]['all']:.1%}"]
    fingerprint = dict(row for row in tables[""] if len(row) == 2)  # the fingerprint table has no caption
    assert fingerprint["sha256"] == report["data"]["sha256"]

    # Every chart of the run is inline and decodes to the PNG in the bundle.
    assert len(page.images) == 3  # predictions, equity, loss curve (no predict was run)
    decoded = [base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True) for src in page.images]
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert decoded == [(evaluated / name).read_bytes() for name in ("predictions.png", "equity.png", "loss_curve.png")]


def test_report_html_escapes_every_value():
    from rich.table import Table

    from lstm_forecast import html_report

    table = Table(title="<b>title</b>")
    table.add_column("<th>")
    table.add_row("<script>alert(1)</script>")
    page = html_report.render('<img src="http://x">', [table, "a & b < c"], {"<cap>": b"\x89PNG"}, "k: <v>",
                              {"sha": "<x>"})
    parser = PageParser()
    parser.feed(page)
    assert parser.loads == [] and len(parser.images) == 1
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &amp; b &lt; c" in page


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_report_html_renders_in_a_headless_browser(evaluated, tmp_path):
    shot = tmp_path / "shot.png"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=420,2400", f"--screenshot={shot}",
               (evaluated / "report.html").as_uri()]
    subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    image = matplotlib.image.imread(shot)[..., :3]
    colours = np.unique((image.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 500  # text and charts, not a blank or single-colour page
    # The phone-wide window shows the charts scaled down, not cut off: some rows of pixels hold chart colours.
    blue = (np.abs(image - np.array([0.12, 0.47, 0.71])).sum(axis=-1) < 0.15).any(axis=1)
    assert blue.sum() > 50
