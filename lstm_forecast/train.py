"""A training run from start to finish: prices → windows → model → trainer → metrics → bundle.

Like nanoGPT's train.py this reads top to bottom. The honesty rules live here too: the trainer
sees only the train and validation windows; the test windows are scored once, at the end, beside
the naive forecast; interval calibration uses validation residuals, never the test period.

`train_ticker` is the whole job for one ticker with plain, picklable arguments and result (paths, numbers,
strings, `EpochRecord`s), so the CLI, a worker process or a Ray task run it unchanged; `train_run` is its
in-process core, for callers that already hold the prices and want the live model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast import baselines, context, data, plots
from lstm_forecast.bundle import (
    LOSS_CURVE_FILE,
    RunBundle,
    check_runs_dir_writable,
    library_versions,
    new_run_id,
    remove_stale_temp_dirs,
    resolve_runs_dir,
    save_bundle,
)
from lstm_forecast.config import Config, config_hash
from lstm_forecast.errors import Interrupted, StopRequest
from lstm_forecast.metrics import lag_copy_diagnostic
from lstm_forecast.model import Forecaster, ModelShape, check_trainable
from lstm_forecast.prices import prices_sha256
from lstm_forecast.scoring import (
    PeriodForecasts,
    calibration,
    iso_day,
    log_loss_differential,
    period_forecasts,
    score_forecasts,
)
from lstm_forecast.sessions import check_calendar
from lstm_forecast.trainer import (
    LOSSES,
    EpochCallback,
    EpochRecord,
    Samples,
    TrainResult,
    fit,
    resolve_device,
    seed_everything,
)
from lstm_forecast.windows import Dataset, WindowSpec, build_dataset


@dataclass(frozen=True)
class TickerResult:
    """A finished training job as plain data, whichever executor ran it: where its bundle is, what it scored."""

    ticker: str
    kind: str  # the recurrent core: lstm, gru or rnn (the config's model.type)
    run_dir: Path
    run_id: str
    training: dict[str, Any]  # TrainResult.summary(): epochs, best epoch, seconds, device, threads, interrupted
    metrics: dict[str, Any]  # metrics.json: the training summary, naive's validation loss, val and test scores
    history: list[EpochRecord]
    fingerprint: dict[str, Any]  # of the price rows trained on
    split: dict[str, str]
    window: dict[str, Any]  # the bundle's window spec: features, price column, target, lookback, horizon
    lag_copy: dict[str, Any]  # metrics.lag_copy_diagnostic on the test windows
    # Per test window: its anchor day and scoring.log_loss_differential, for a universe's pooled test.
    test_anchors: list[str]
    test_loss_differential: list[float]
    notes: list[str] = field(default_factory=list)  # what the data cost: history cut, windows dropped

    @property
    def interrupted(self) -> bool:
        return bool(self.training["interrupted"])


def train_ticker(
    config: Config,
    ticker: str,
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> TickerResult:
    """Train `config`'s model on `ticker`'s cached prices (fetched first when there is no cache) and write its
    bundle. `data_dir` and `runs_dir` of None resolve as for the CLI ($LSTM_FORECAST_*, the config, ./data
    and ./runs). Progress comes through `on_epoch`, which may end training (see trainer.fit); `stop` is the
    caller's stop request (the CLI's signal handler), `on_fetch` hears about a download before it starts.
    """
    check_trainable(config)
    symbol = data.validate_ticker(ticker)
    folder = data.resolve_data_dir(data_dir, config.data.dir)
    runs = resolve_runs_dir(runs_dir, config.runs.dir)
    prices, context_prices = load_training_inputs(symbol, folder, config, on_fetch, stop)
    resolve_device(config.train.device)  # an unavailable device fails before the data is windowed
    outcome = train_run(config, symbol, prices, runs, on_epoch=on_epoch, stop=stop, context_prices=context_prices)
    test = outcome.test
    return TickerResult(
        ticker=symbol,
        kind=outcome.bundle.shape.kind,
        run_dir=outcome.run_dir,
        run_id=outcome.bundle.run_id,
        training=outcome.result.summary(),
        metrics=outcome.metrics,
        history=outcome.result.history,
        fingerprint=outcome.bundle.fingerprint,
        split=outcome.bundle.split,
        window=outcome.bundle.spec.to_dict(),
        lag_copy=lag_copy_diagnostic(test.anchor_prices, test.actual, test.model).to_dict(),
        test_anchors=[iso_day(day) for day in test.anchor_dates],
        test_loss_differential=[float(value) for value in log_loss_differential(test)],
        notes=outcome.notes,
    )


@dataclass
class TrainOutcome:
    """What `train_run` made, the live model included (in `bundle`)."""

    run_dir: Path
    bundle: RunBundle
    result: TrainResult
    metrics: dict[str, Any]
    test: PeriodForecasts  # the test period's forecasts, as scored
    notes: list[str]  # the history cut to the context's range, windows dropped for a missing context day


def load_training_prices(
    ticker: str, data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> pd.DataFrame:
    """The cached prices in the configured date range; fetched first when there is no cache yet."""
    if not data.has_cache(data_dir, ticker):  # read once, below: a universe reads hundreds
        if on_fetch is not None:
            on_fetch(f"No cached prices for {ticker} in {data_dir}; downloading from Yahoo Finance…")
        data.update_cache(data_dir, ticker, config.data.start, config.data.end, stop=stop)
    return data.load_prices(data_dir, ticker, config.data.start, config.data.end)


def load_training_inputs(
    ticker: str, data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The ticker's prices (`load_training_prices`) and its context series' by ticker (none without context)."""
    prices = load_training_prices(ticker, data_dir, config, on_fetch, stop)
    tickers = [entry.ticker for entry in config.data.context]
    return prices, context.load_context(data_dir, tickers, on_fetch, stop)


def train_run(
    config: Config,
    ticker: str,
    prices: pd.DataFrame,
    runs_dir: Path,
    on_epoch: EpochCallback | None = None,
    stop: StopRequest | None = None,
    context_prices: Mapping[str, pd.DataFrame] | None = None,
) -> TrainOutcome:
    """Train one model on `prices` (and the context series' prices, by ticker, when the config reads any) and
    write its bundle. The history is first cut to the days every context series covers.

    Once `stop` is set (the CLI sets it on Ctrl-C), training ends after the current batch and the best
    epoch so far is scored and saved as usual; a request during scoring or saving changes nothing here.
    """
    check_calendar(config.data.calendar)  # predict needs it: a run for an unknown exchange could never forecast
    prices, context_rows, notes = prepare_inputs(prices, config, context_prices)
    dataset = build_dataset({ticker: prices}, config, context_prices=context_rows)
    notes = notes + dataset.notes.get(ticker, [])
    check_runs_dir_writable(runs_dir, ticker)  # before training: hours of it are lost otherwise

    model, result = train_model(dataset, config, on_epoch, stop)
    if result.epochs_run == 0:
        raise Interrupted("interrupted before the first epoch finished; no bundle written")
    shape = model.shape

    # Scored on prices converted back from the model's output; the test split is touched only here.
    evaluated = {"val": dataset.val, "test": dataset.test}
    forecasts = {name: period_forecasts(model, windows, dataset) for name, windows in evaluated.items()}
    scores = {name: score_forecasts(forecasts[name], shape.kind) for name in evaluated}
    naive_loss = naive_validation_loss(dataset, config.train.loss)
    run_metrics = {
        "ticker": ticker,
        "model": shape.kind,
        **result.summary(),
        "naive_val_loss": naive_loss,  # the loss curve's reference line
        **scores,
        "notes": notes,  # what the context cost: the history cut, windows dropped
    }

    bundle = RunBundle(
        run_id=new_run_id(),
        ticker=ticker,
        config=config,
        shape=shape,
        spec=dataset.spec,
        scaler=dataset.scaler,
        fingerprint=fingerprint(ticker, prices),
        context_fingerprints=[fingerprint(name, rows) for name, rows in context_rows.items()],
        split=dataset.split,
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

    remove_stale_temp_dirs(runs_dir, ticker)
    run_dir = save_bundle(bundle, runs_dir, prices, history, run_metrics, write_extras=write_loss_curve,
                          context=context_rows)
    return TrainOutcome(run_dir=run_dir, bundle=bundle, result=result, metrics=run_metrics, test=forecasts["test"],
                        notes=notes)


def prepare_inputs(
    prices: pd.DataFrame, config: Config, context_prices: Mapping[str, pd.DataFrame] | None
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """The ticker's rows cut to the context's common range, the context rows they read (what the bundle
    records) and the notes saying what was cut. Without context: the prices as given, nothing else."""
    spec = WindowSpec.from_config(config)
    if not spec.context:
        return prices, {}, []
    prices, notes = context.common_range(prices, spec, context_prices)
    return prices, context.rows_used(prices, spec, context_prices), notes


def train_model(
    dataset: Dataset,
    config: Config,
    on_epoch: EpochCallback | None = None,
    stop: StopRequest | None = None,
) -> tuple[Forecaster, TrainResult]:
    """A fresh model trained on the dataset's training windows; returned on the CPU in eval mode."""
    # Seed before building the model: the initial weights are part of a reproducible run.
    seed_everything(config.train.seed)
    shape = ModelShape.from_config(config.model, n_features=dataset.spec.n_inputs, horizon=dataset.spec.horizon)
    model = Forecaster(shape)
    result = fit(
        model,
        Samples(dataset.train.model_inputs, dataset.train.targets),
        Samples(dataset.val.model_inputs, dataset.val.targets),
        config.train,
        device=resolve_device(config.train.device),
        on_epoch=on_epoch,
        stop=stop,
    )
    return model.cpu().eval(), result


def fingerprint(ticker: str, prices: pd.DataFrame) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "first_date": prices.index[0].date().isoformat(),
        "last_date": prices.index[-1].date().isoformat(),
        "rows": len(prices),
        "sha256": prices_sha256(prices),
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
    """The training loss the naive forecast would score on the validation windows, in each ticker's scaled space
    (the loss curve's reference line)."""
    val = dataset.val
    # "No change" is a log return of zero on every step, or the anchor price itself.
    if dataset.spec.target == "log_return":
        naive = np.zeros_like(val.targets, dtype=np.float64)
    else:
        naive = baselines.naive_forecast(val.anchor_prices, dataset.spec.horizon)
    means = np.array([days.scaler.target_mean for days in dataset.tickers])[val.ticker][:, None]
    stds = np.array([days.scaler.target_std for days in dataset.tickers])[val.ticker][:, None]
    scaled = torch.as_tensor((naive - means) / stds, dtype=torch.float32)
    return float(LOSSES[loss](scaled, torch.as_tensor(val.targets, dtype=torch.float32)))
