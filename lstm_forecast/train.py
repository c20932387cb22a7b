"""A training run from start to finish: prices → windows → model → trainer → metrics → bundle.

Like nanoGPT's train.py this reads top to bottom. The honesty rules live here too: the trainer
sees only the train and validation windows; the test windows are scored once, at the end, beside
the naive forecast; interval calibration uses validation residuals, never the test period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast import baselines, data, metrics, plots
from lstm_forecast.bundle import (
    LOSS_CURVE_FILE,
    RunBundle,
    check_runs_dir_writable,
    library_versions,
    new_run_id,
    remove_stale_temp_dirs,
    save_bundle,
)
from lstm_forecast.config import Config, config_hash
from lstm_forecast.errors import Interrupted
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.sessions import check_calendar
from lstm_forecast.trainer import (
    LOSSES,
    EpochRecord,
    StopRequest,
    TrainResult,
    fit,
    predict,
    resolve_device,
    seed_everything,
)
from lstm_forecast.windows import Dataset, Windows, build_dataset, targets_to_prices

FORECASTS = ("model", "naive", "drift")  # every period is scored with the model beside both baselines


@dataclass
class TrainOutcome:
    run_dir: Path
    bundle: RunBundle
    result: TrainResult
    metrics: dict[str, Any]


def load_training_prices(
    ticker: str, data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """The cached prices in the configured date range; fetched first when there is no cache yet."""
    if data.read_cache(data_dir, ticker) is None:
        if on_fetch is not None:
            on_fetch(f"No cached prices for {ticker} in {data_dir}; downloading from Yahoo Finance…")
        data.update_cache(data_dir, ticker, config.data.start, config.data.end)
    return data.load_prices(data_dir, ticker, config.data.start, config.data.end)


def train_run(
    config: Config,
    ticker: str,
    prices: pd.DataFrame,
    runs_dir: Path,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    stop: StopRequest | None = None,
) -> TrainOutcome:
    """Train one model on `prices` and write its bundle.

    Once `stop` is set (the CLI sets it on Ctrl-C), training ends after the current batch and the best
    epoch so far is scored and saved as usual; a request during scoring or saving changes nothing here.
    """
    check_calendar(config.data.calendar)  # predict needs it: a run for an unknown exchange could never forecast
    dataset = build_dataset(prices, config)
    check_runs_dir_writable(runs_dir, ticker)  # before training: hours of it are lost otherwise

    model, result = train_model(dataset, config, on_epoch, stop)
    if result.epochs_run == 0:
        raise Interrupted("interrupted before the first epoch finished; no bundle written")
    shape = model.shape

    # Scored on prices converted back from the model's output; the test split is touched only here.
    evaluated = {"val": dataset.val, "test": dataset.test}
    forecasts = {name: period_forecasts(model, windows, dataset) for name, windows in evaluated.items()}
    scores = {name: score_forecasts(forecasts[name]) for name in evaluated}
    naive_loss = naive_validation_loss(dataset, config.train.loss)
    run_metrics = {
        "ticker": ticker,
        "model": shape.kind,
        **result.summary(),
        "naive_val_loss": naive_loss,  # the loss curve's reference line
        **scores,
    }

    bundle = RunBundle(
        run_id=new_run_id(),
        ticker=ticker,
        config=config,
        shape=shape,
        spec=dataset.spec,
        scaler=dataset.scaler,
        fingerprint=fingerprint(ticker, prices),
        split={"val_start": dataset.val_start.date().isoformat(), "test_start": dataset.test_start.date().isoformat()},
        baselines={
            "train_mean_log_return": dataset.train_mean_log_return,
            "train_naive_mae": dataset.train_naive_mae,
        },
        calibration=calibration(dataset.val, forecasts["val"].model),
        training={**result.summary(), "seed": config.train.seed},
        model=model,
        versions=library_versions(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config_hash=config_hash(config),
    )
    history = history_frame(result)

    def write_loss_curve(run_dir: Path) -> None:
        plots.loss_curve(
            history["epoch"].tolist(),
            history["train_loss"].tolist(),
            history["val_loss"].tolist(),
            result.best_epoch,
            naive_loss,
            f"{ticker} · {shape.kind.upper()} · run {bundle.run_id}",  # save_bundle may add a suffix
            run_dir / LOSS_CURVE_FILE,
        )

    remove_stale_temp_dirs(runs_dir)
    run_dir = save_bundle(bundle, runs_dir, prices, history, run_metrics, write_extras=write_loss_curve)
    return TrainOutcome(run_dir=run_dir, bundle=bundle, result=result, metrics=run_metrics)


def train_model(
    dataset: Dataset,
    config: Config,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    stop: StopRequest | None = None,
) -> tuple[Forecaster, TrainResult]:
    """A fresh model trained on the dataset's training windows; returned on the CPU in eval mode."""
    # Seed before building the model: the initial weights are part of a reproducible run.
    seed_everything(config.train.seed)
    shape = ModelShape.from_config(config.model, n_features=len(dataset.spec.features), horizon=dataset.spec.horizon)
    model = Forecaster(shape)
    result = fit(
        model,
        dataset.train.inputs,
        dataset.train.targets,
        dataset.val.inputs,
        dataset.val.targets,
        config.train,
        device=resolve_device(config.train.device),
        on_epoch=on_epoch,
        stop=stop,
    )
    return model.cpu().eval(), result


def forecast_prices(model: Forecaster, windows: Windows, dataset: Dataset) -> np.ndarray:
    """The model's price forecasts (n, horizon) for a split, converted back from its scaled output."""
    scaled = predict(model, windows.inputs)
    return targets_to_prices(scaled, windows.anchor_prices, dataset.scaler, dataset.spec.target)


@dataclass
class Forecasts:
    """One evaluation period: n windows with the actual prices and the three forecasts, all (n, horizon)."""

    anchor_dates: np.ndarray  # (n,) datetime64
    target_dates: np.ndarray  # (n, horizon) datetime64
    anchor_prices: np.ndarray  # (n,)
    actual: np.ndarray
    model: np.ndarray
    naive: np.ndarray
    drift: np.ndarray

    def __len__(self) -> int:
        return len(self.anchor_prices)

    @classmethod
    def concat(cls, parts: list[Forecasts]) -> Forecasts:
        names = ("anchor_dates", "target_dates", "anchor_prices", "actual", *FORECASTS)
        return cls(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in names})


def period_forecasts(model: Forecaster, windows: Windows, dataset: Dataset) -> Forecasts:
    """The model's forecasts for a split beside the naive and drift forecasts from the same anchors."""
    horizon = dataset.spec.horizon
    return Forecasts(
        anchor_dates=windows.anchor_dates,
        target_dates=windows.target_dates,
        anchor_prices=windows.anchor_prices,
        actual=windows.actual_prices,
        model=forecast_prices(model, windows, dataset),
        naive=baselines.naive_forecast(windows.anchor_prices, horizon),
        # The drift is the training period's mean return: the evaluation period's would peek.
        drift=baselines.drift_forecast(windows.anchor_prices, horizon, dataset.train_mean_log_return),
    )


def score_forecasts(forecasts: Forecasts) -> dict[str, Any]:
    """Model, naive and drift metrics on prices over the same windows, the tests against naive, the verdict."""
    truth = (forecasts.anchor_prices, forecasts.actual)
    scores = {name: metrics.score(*truth, getattr(forecasts, name), forecasts.naive) for name in FORECASTS}
    vs_naive = metrics.compare_to_naive(*truth, forecasts.model, forecasts.naive, forecasts.actual.shape[1])
    return {
        "windows": len(forecasts),
        "first_anchor": str(np.datetime_as_string(forecasts.anchor_dates[0], unit="D")),
        "last_anchor": str(np.datetime_as_string(forecasts.anchor_dates[-1], unit="D")),
        **scores,
        "vs_naive": vs_naive,
        "verdict": metrics.verdict(vs_naive["dm_all"]["pvalue"], scores["model"]["all"]["rmse_ratio"]),
    }


def calibration(val: Windows, predicted: np.ndarray) -> dict[str, Any]:
    """Validation residuals in log-price space per horizon step, for split-conformal intervals.

    A residual log(actual / forecast) does not depend on the price level, so intervals calibrated
    on last year's prices transfer to today's. The test split is never used here.
    """
    residuals = np.log(val.actual_prices) - np.log(predicted)
    return {
        "method": "split-conformal",
        "space": "log_price",
        "source": "validation",
        "residuals": [[float(value) for value in residuals[:, step]] for step in range(residuals.shape[1])],
    }


def fingerprint(ticker: str, prices: pd.DataFrame) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "first_date": prices.index[0].date().isoformat(),
        "last_date": prices.index[-1].date().isoformat(),
        "rows": len(prices),
        "sha256": data.prices_sha256(prices),
    }


def history_frame(result: TrainResult) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [record.epoch for record in result.history],
            "train_loss": [record.train_loss for record in result.history],
            "val_loss": [record.val_loss for record in result.history],
            "lr": [record.lr for record in result.history],
            "seconds": [round(record.seconds, 4) for record in result.history],
        }
    )


def naive_validation_loss(dataset: Dataset, loss: str) -> float:
    """The training loss the naive forecast would score on the validation windows (same scaled space)."""
    val = dataset.val
    naive = baselines.naive_forecast(val.anchor_prices, dataset.spec.horizon)
    # "No change" is a log return of zero on every step, or the anchor price itself.
    naive_targets = np.zeros_like(naive) if dataset.spec.target == "log_return" else naive
    scaled = torch.as_tensor(dataset.scaler.transform_targets(naive_targets), dtype=torch.float32)
    actual = torch.as_tensor(val.targets, dtype=torch.float32)
    return float(LOSSES[loss](scaled, actual))
