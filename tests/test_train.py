"""A whole training run: the bundle's files, honest metrics beside the naive forecast, reproducibility,
no use of the test period before the final scoring, the loss-curve PNG, and Ctrl-C."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TICKER, TINY_OVERRIDES, build_prices, error_line, same_weights, weights_of, write_caches
from scipy.signal import lfilter
from typer.testing import CliRunner

from lstm_forecast import train
from lstm_forecast.bundle import load_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import Config, load_config
from lstm_forecast.errors import Interrupted
from lstm_forecast.prices import COLUMNS, prices_sha256, prices_to_csv, read_prices_csv
from lstm_forecast.scoring import period_forecasts
from lstm_forecast.trainer import EpochRecord, predict
from lstm_forecast.windows import build_dataset

HORIZON = 3
# The tiny model made able to learn AR(1) returns (test_model_beats_the_naive_forecast_on_predictable_returns):
# wider, a longer look back, eight epochs at a higher learning rate and no early stop; HORIZON days ahead.
QUICK = [
    *TINY_OVERRIDES,
    "window.lookback=10",
    f"window.horizon={HORIZON}",
    "model.hidden_size=8",
    "train.epochs=8",
    "train.lr=0.01",
    "train.patience=100",
]
BUNDLE_FILES = {
    "config.yaml", "model.safetensors", "bundle.json", "history.csv", "metrics.json", "loss_curve.png",
    "prices.csv",
}


def ar1_prices(n: int = 500, phi: float = 0.7, sigma: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """A canonical price frame whose daily log returns follow AR(1): r_t = phi * r_{t-1} + noise.

    Tomorrow's return is predictable from today's, so a model can beat "no change"; the random walk cannot.
    """
    rng = np.random.default_rng(seed)
    returns = lfilter([1.0], [1.0, -phi], rng.normal(0.0, sigma, n))
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    high, low = np.maximum(open_, close) * 1.004, np.minimum(open_, close) * 0.996
    volume = rng.integers(1_000_000, 5_000_000, n).astype(np.float64)
    dates = pd.bdate_range("2018-01-02", periods=n, name="Date").as_unit("ns")
    columns = [open_, high, low, close, close * 0.98, volume]
    return pd.DataFrame(dict(zip(COLUMNS, columns, strict=True)), index=dates)


def quick_config(*changes: str) -> Config:
    return load_config(None, [*QUICK, *changes])


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if key != "seconds"}


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return ar1_prices()


@pytest.fixture(scope="module")
def trained(prices: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> train.TrainOutcome:
    """One quick LSTM run shared by the tests that only read its bundle."""
    return train.train_run(quick_config(), TICKER, prices, tmp_path_factory.mktemp("runs"))


def test_bundle_holds_every_file_of_the_guide(trained, prices):
    run_dir = trained.run_dir
    assert run_dir.parent.name == TICKER and run_dir.name == trained.bundle.run_id
    assert {path.name for path in run_dir.iterdir()} == BUNDLE_FILES

    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == quick_config().to_plain()
    recorded, _ = read_prices_csv(run_dir / "prices.csv")
    pd.testing.assert_frame_equal(recorded, prices)
    document = json.loads((run_dir / "bundle.json").read_text())
    assert document["fingerprint"] == {
        "ticker": TICKER,
        "first_date": "2018-01-02",
        "last_date": prices.index[-1].date().isoformat(),
        "rows": len(prices),
        "sha256": prices_sha256(prices),
    }
    assert document["window"]["horizon"] == document["model"]["horizon"] == HORIZON
    assert json.loads((run_dir / "metrics.json").read_text()) == trained.metrics


def test_history_records_every_epoch_and_the_best_one(trained):
    history = pd.read_csv(trained.run_dir / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    assert history["epoch"].tolist() == list(range(1, 9))
    assert trained.metrics["epochs_run"] == 8 and not trained.metrics["interrupted"]
    best = int(history["val_loss"].idxmin())
    assert trained.metrics["best_epoch"] == history["epoch"][best]
    assert trained.metrics["best_val_loss"] == pytest.approx(history["val_loss"][best])
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_metrics_score_model_and_naive_on_validation_and_test(trained, prices):
    dataset = build_dataset(prices, quick_config())
    for split, windows in (("val", dataset.val), ("test", dataset.test)):
        scores = trained.metrics[split]
        assert scores["windows"] == len(windows) > 0
        assert scores["first_anchor"] == str(windows.anchor_dates[0])[:10]
        for who in ("model", "naive"):
            for step in ("h1", "all"):
                assert scores["metrics"][who][step]["rmse"] > 0
        assert scores["metrics"]["naive"]["all"]["rmse_ratio"] == pytest.approx(1.0)
        ratio = scores["metrics"]["model"]["all"]["rmse"] / scores["metrics"]["naive"]["all"]["rmse"]
        assert scores["metrics"]["model"]["all"]["rmse_ratio"] == pytest.approx(ratio)
        assert scores["vs_naive"]["windows"] == len(windows)
        assert scores["verdict"]
    # The validation period ends before the test period starts.
    assert trained.metrics["val"]["last_anchor"] < trained.metrics["test"]["first_anchor"]


def test_model_beats_the_naive_forecast_on_predictable_returns(trained):
    test_scores = trained.metrics["test"]["metrics"]["model"]
    # With phi = 0.7 the best one-day forecast cuts the naive RMSE to sqrt(1 - 0.49) ~ 0.71.
    assert test_scores["h1"]["rmse_ratio"] < 0.85
    assert test_scores["all"]["rmse_ratio"] < 0.92
    assert test_scores["all"]["directional_accuracy"] > 0.55


def test_calibration_residuals_are_the_validation_ones(trained, prices):
    dataset = build_dataset(prices, quick_config())
    calibration = trained.bundle.calibration
    assert calibration["source"] == "validation"
    residuals = np.array(calibration["residuals"])
    assert residuals.shape == (HORIZON, len(dataset.val))

    bundle = load_bundle(trained.run_dir)
    forecast = period_forecasts(bundle.model, dataset.val, dataset).model
    expected = np.log(dataset.val.actual_prices / forecast).T
    np.testing.assert_allclose(residuals, expected, rtol=1e-12, atol=1e-12)


def rmse_on_test(outcome: train.TrainOutcome) -> float:
    return outcome.metrics["test"]["metrics"]["model"]["all"]["rmse"]


def test_same_seed_repeats_and_another_seed_differs(trained, prices, tmp_path):
    again = train.train_run(quick_config(), TICKER, prices, tmp_path)
    other = train.train_run(quick_config("train.seed=1"), TICKER, prices, tmp_path)

    assert again.run_dir != trained.run_dir
    assert same_weights(weights_of(again.run_dir), weights_of(trained.run_dir))
    assert without_timings(again.metrics) == without_timings(trained.metrics)
    assert again.bundle.calibration == trained.bundle.calibration
    assert not same_weights(weights_of(other.run_dir), weights_of(trained.run_dir))
    assert rmse_on_test(other) != rmse_on_test(trained)


def test_test_period_never_reaches_training(trained, prices, tmp_path):
    """Change every price in the test period: weights, history, scaler and calibration stay the same."""
    test_start = build_dataset(prices, quick_config()).test_start
    in_test = prices.index >= test_start
    shock = np.exp(np.random.default_rng(7).normal(0.0, 0.05, in_test.sum()))
    changed = prices.copy()
    changed.loc[in_test, ["Open", "High", "Low", "Close", "Adj Close"]] *= shock[:, None]
    changed.loc[in_test, "Volume"] *= 3.0

    outcome = train.train_run(quick_config(), TICKER, changed, tmp_path)

    assert same_weights(weights_of(outcome.run_dir), weights_of(trained.run_dir))
    history, reference = (
        pd.read_csv(run.run_dir / "history.csv").drop(columns="seconds") for run in (outcome, trained)
    )
    pd.testing.assert_frame_equal(history, reference)
    assert outcome.bundle.scaler == trained.bundle.scaler
    assert outcome.bundle.split == trained.bundle.split
    assert outcome.bundle.baselines == trained.bundle.baselines
    assert outcome.bundle.calibration == trained.bundle.calibration
    assert outcome.metrics["val"] == trained.metrics["val"]
    # The change is real: the test scores and the data fingerprint see it.
    assert rmse_on_test(outcome) != rmse_on_test(trained)
    assert outcome.bundle.fingerprint["sha256"] != trained.bundle.fingerprint["sha256"]


@pytest.mark.parametrize(("kind", "core"), [("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)])
def test_gru_and_rnn_variants_train(kind, core, prices, tmp_path):
    outcome = train.train_run(quick_config(f"model.type={kind}", "train.epochs=2"), TICKER, prices, tmp_path)
    bundle = load_bundle(outcome.run_dir)
    assert outcome.metrics["model"] == kind and bundle.shape.kind == kind
    assert isinstance(bundle.model.core, core)
    assert yaml.safe_load((outcome.run_dir / "config.yaml").read_text())["model"]["type"] == kind
    assert outcome.metrics["test"]["metrics"]["model"]["all"]["rmse"] > 0


def test_several_features_and_a_price_target_round_trip(prices, tmp_path):
    features = "data.features=[log_return, volume_change, range]"
    config = quick_config(features, "data.target=price", "train.epochs=2")
    outcome = train.train_run(config, TICKER, prices, tmp_path)
    bundle = load_bundle(outcome.run_dir)
    assert bundle.shape.n_features == 3 and len(bundle.scaler.feature_mean) == 3
    assert bundle.spec.target == "price"
    dataset = build_dataset(prices, config)
    np.testing.assert_array_equal(predict(bundle.model, dataset.test.inputs),
                                  predict(outcome.bundle.model, dataset.test.inputs))


def test_loss_curve_is_a_real_png(trained):
    path = trained.run_dir / "loss_curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    height, width, channels = image.shape
    assert width > 300 and height > 200 and channels in (3, 4)
    assert len(np.unique(image.reshape(-1, channels), axis=0)) > 10  # lines and text, not a blank canvas


def test_a_stop_request_saves_the_best_epoch_so_far(prices, tmp_path, monkeypatch):
    """Stop asked after epoch 2 of 20 (as the CLI does on Ctrl-C): the bundle is still written, marked
    interrupted, holding the best epoch."""
    stop = threading.Event()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    trained_model: list[torch.nn.Module] = []
    real_fit = train.fit

    def fit_keeping_the_model(model, *args, **kwargs):
        trained_model.append(model)
        return real_fit(model, *args, **kwargs)

    def stop_after_epoch_2(record: EpochRecord) -> None:
        state = trained_model[0].state_dict()
        snapshots[record.epoch] = {name: tensor.detach().clone() for name, tensor in state.items()}
        if record.epoch == 2:
            stop.set()

    monkeypatch.setattr(train, "fit", fit_keeping_the_model)
    outcome = train.train_run(quick_config("train.epochs=20"), TICKER, prices, tmp_path,
                              on_epoch=stop_after_epoch_2, stop=stop)

    assert outcome.result.interrupted and outcome.result.epochs_run == 2
    document = json.loads((outcome.run_dir / "bundle.json").read_text())
    assert document["training"]["interrupted"] is True and document["training"]["epochs_run"] == 2
    assert json.loads((outcome.run_dir / "metrics.json").read_text())["interrupted"] is True
    assert {path.name for path in outcome.run_dir.iterdir()} == BUNDLE_FILES
    best_epoch = outcome.result.best_epoch
    assert best_epoch in (1, 2)
    assert same_weights(weights_of(outcome.run_dir), snapshots[best_epoch])


def test_a_stop_request_before_the_first_epoch_writes_nothing(prices, tmp_path, monkeypatch):
    real_fit = train.fit
    stop = threading.Event()

    def fit_with_stop_in_batch_2(model, *args, **kwargs):
        calls = []

        def hook(module: torch.nn.Module, inputs: object, output: object) -> None:
            calls.append(1)
            if len(calls) == 2:
                stop.set()

        model.register_forward_hook(hook)
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(train, "fit", fit_with_stop_in_batch_2)
    with pytest.raises(Interrupted, match="no bundle written") as failure:
        train.train_run(quick_config(), TICKER, prices, tmp_path / "runs", stop=stop)
    assert failure.value.exit_code == 130
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_a_stop_request_after_training_changes_nothing_in_the_bundle(prices, tmp_path, monkeypatch):
    """Asked to stop while the test period is scored: the run is complete, so it is saved as complete."""
    stop = threading.Event()
    real_period_forecasts = train.period_forecasts

    def scoring_with_a_stop_request(*args, **kwargs):
        stop.set()
        return real_period_forecasts(*args, **kwargs)

    monkeypatch.setattr(train, "period_forecasts", scoring_with_a_stop_request)
    outcome = train.train_run(quick_config(), TICKER, prices, tmp_path, stop=stop)
    assert stop.is_set() and not outcome.result.interrupted
    assert {path.name for path in outcome.run_dir.iterdir()} == BUNDLE_FILES
    assert json.loads((outcome.run_dir / "bundle.json").read_text())["training"]["interrupted"] is False


def test_the_bundle_records_the_threads_it_was_trained_with(prices, tmp_path):
    outcome = train.train_run(quick_config("train.threads=2"), TICKER, prices, tmp_path)
    document = json.loads((outcome.run_dir / "bundle.json").read_text())
    assert document["training"]["threads"] == 2 == outcome.result.threads
    assert yaml.safe_load((outcome.run_dir / "config.yaml").read_text())["train"]["threads"] == 2
    assert torch.get_num_threads() == 1  # the suite's setting (conftest), given back after training


def test_load_training_prices_reads_the_configured_range(prices, tmp_path):
    (tmp_path / f"{TICKER}.csv").write_bytes(prices_to_csv(prices))
    config = quick_config("data.start=2018-03-01", "data.end=2018-06-29")
    loaded = train.load_training_prices(TICKER, tmp_path, config, on_fetch=pytest.fail)
    pd.testing.assert_frame_equal(loaded, prices.loc["2018-03-01":"2018-06-29"])


def test_load_training_prices_fetches_when_nothing_is_cached(prices, tmp_path, fake_yahoo):
    fake_yahoo.prices = prices
    said: list[str] = []
    loaded = train.load_training_prices(TICKER, tmp_path, quick_config(), on_fetch=said.append)
    assert len(fake_yahoo.calls) == 1 and fake_yahoo.calls[0]["ticker"] == TICKER
    assert len(said) == 1 and "downloading" in said[0]
    assert (tmp_path / f"{TICKER}.csv").is_file()
    np.testing.assert_allclose(loaded["Close"].to_numpy(), prices["Close"].to_numpy())


def test_train_ticker_runs_unchanged_in_a_worker_process(tmp_path, prices):
    """The training job takes and returns plain data, so a process pool (or Ray) runs it as it is; with the
    same thread count (train.threads 1 here) the worker trains exactly the weights this process does."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / f"{TICKER}.csv").write_bytes(prices_to_csv(prices))
    config = load_config(None, TINY_OVERRIDES)

    here = train.train_ticker(config, TICKER, data_dir, tmp_path / "here")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(train.train_ticker, config, TICKER, data_dir, tmp_path / "there").result(timeout=300)

    assert pickle.loads(pickle.dumps(here)) == here  # paths, numbers and strings only
    assert there.run_dir.parent.parent == tmp_path / "there" and (there.run_dir / "bundle.json").is_file()
    assert same_weights(weights_of(here.run_dir), weights_of(there.run_dir))
    assert (here.metrics["val"], here.metrics["test"]) == (there.metrics["val"], there.metrics["test"])
    assert [record.val_loss for record in here.history] == [record.val_loss for record in there.history]
    assert here.training["threads"] == there.training["threads"] == 1


def test_a_typo_of_a_cached_ticker_is_named_and_a_missing_data_dir_is_refused(tmp_path, clean_workdir, fake_yahoo):
    data_dir = write_caches(tmp_path / "data", {"AAPL": build_prices(300)})
    fake_yahoo.error = OSError("offline")  # Yahoo cannot be reached: the typo must be caught here
    sets = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    result = CliRunner().invoke(app, ["train", "-t", "AAPLE", "--data-dir", str(data_dir), *sets])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].endswith("Cached tickers with a close name: AAPL")
    missing = CliRunner().invoke(app, ["train", "-t", "AAPL", "--data-dir", str(tmp_path / "dta"), *sets])
    assert missing.exit_code == 2 and not fake_yahoo.calls[1:]  # refused before any download
    assert error_line(missing).startswith(f"Error: data dir {tmp_path / 'dta'}: no such folder")
