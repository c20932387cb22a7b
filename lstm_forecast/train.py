"""A training run from start to finish: prices → windows → model → trainer → metrics → bundle.

Like nanoGPT's train.py this reads top to bottom. A run is N ≥ 1 tickers × M ≥ 1 seed members: one dataset
builder (windows.build_dataset) and one trainer (`train_model`, one member per seed in `train_members`) serve
a single ticker's run and a global run over many. The honesty rules live here too: the trainer sees only the
train and validation windows; the test windows are scored once, at the end, beside the naive forecast;
interval calibration uses validation residuals, never the test period.

`train_ticker` is the whole job for one ticker with plain, picklable arguments and result (paths, numbers,
strings, `EpochRecord`s), so the CLI, a worker process or a Ray task run it unchanged; `train_run` is its
in-process core, for callers that already hold the prices and want the live model.

`train_global` trains one model (a member per seed, forecasts averaged) on the pooled windows of a universe,
split on one calendar, and scores it per ticker and across the cross-section (`score_tickers`, which evaluate
calls too on the bundle's recorded prices, so training and evaluation print the same numbers): per ticker
exactly a local run's scores block with Benjamini–Hochberg q-values and the pooled DM test (sets.py); over
all tickers the pooled RMSE ratio on log prices; across tickers each test day, the rank IC and the long–short
diagnostic against the reversal, train-mean and linear baselines (crosssection.py). Forecasting and judging are
two steps: `panel_forecasts` makes the test forecasts as plain data and `score_panel` judges them, so a
walk-forward's folds, pooled into one such panel (backtest.py), are judged by the same function.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast import baselines, context, data, plots, quality
from lstm_forecast.bundle import (
    GLOBAL_DIR,
    LOSS_CURVE_FILE,
    GlobalBundle,
    RunBundle,
    TickerRecordData,
    check_writable,
    library_versions,
    new_run_id,
    resolve_runs_dir,
    save_run,
)
from lstm_forecast.config import Config, config_hash, cross_sectional_settings
from lstm_forecast.crosssection import MIN_TICKERS, CrossSection, cross_section, rank_ic
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError
from lstm_forecast.linear import fit_ridge
from lstm_forecast.metrics import lag_copy_diagnostic
from lstm_forecast.model import Ensemble, Forecaster, ModelShape, check_trainable, ensemble_of
from lstm_forecast.prices import prices_sha256
from lstm_forecast.scoring import (
    PeriodForecasts,
    calibration,
    iso_day,
    log_loss_differential,
    member_predictions,
    period_forecasts,
    score_forecasts,
    ticker_forecasts,
    val_residuals,
)
from lstm_forecast.sessions import check_calendar
from lstm_forecast.sets import scored_record, set_report
from lstm_forecast.tickers import cached_tickers
from lstm_forecast.trainer import (
    LOSSES,
    BatchCallback,
    BatchProgress,
    EpochCallback,
    EpochRecord,
    Samples,
    TrainResult,
    fit,
    resolve_device,
    seed_everything,
)
from lstm_forecast.windows import RETURN_TARGETS, Dataset, build_dataset, reasons


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


PhaseCallback = Callable[[str], None]  # hears the phase of a run that starts now: "building windows"


def announce(on_phase: PhaseCallback | None, phase: str) -> None:
    """Say which phase of the work starts now (the CLI shows it on stderr: a long silence looks like a hang)."""
    if on_phase is not None:
        on_phase(phase)


def train_ticker(
    config: Config,
    ticker: str,
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
    on_batch: BatchCallback | None = None,
    on_phase: PhaseCallback | None = None,
) -> TickerResult:
    """Train `config`'s model on `ticker`'s cached prices (fetched first when there is no cache) and write its
    bundle. `data_dir` and `runs_dir` of None resolve as for the CLI ($LSTM_FORECAST_*, the config, ./data
    and ./runs). Progress comes through `on_epoch`, which may end training (see trainer.fit), and `on_batch`
    within an epoch; `on_phase` hears each phase of the run as it starts (reading prices, windowing, …);
    `stop` is the caller's stop request (the CLI's signal handler), `on_fetch` hears about a download before it
    starts.
    """
    check_trainable(config)
    symbol = data.validate_ticker(ticker)
    folder = data.resolve_data_dir(data_dir, config.data.dir)
    runs = resolve_runs_dir(runs_dir, config.runs.dir)
    announce(on_phase, "reading prices")
    checked, context_prices = load_training_inputs(symbol, folder, config, on_fetch, stop)
    resolve_device(config.train.device)  # an unavailable device fails before the data is windowed
    outcome = train_run(config, symbol, checked.rows, runs, on_epoch=on_epoch, stop=stop,
                        context_prices=context_prices, on_batch=on_batch, on_phase=on_phase, data_quality=checked)
    return TickerResult(**{plain.name: getattr(outcome, plain.name) for plain in fields(TickerResult)})


@dataclass(frozen=True, kw_only=True)
class TrainOutcome(TickerResult):
    """What `train_run` made: its TickerResult and, for callers in this process, the live model (in `bundle`)."""

    bundle: RunBundle
    result: TrainResult  # the first member's training
    test: PeriodForecasts  # the test period's forecasts, as scored


def load_training_prices(
    ticker: str, data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> pd.DataFrame:
    """The cached prices in the configured date range after the data-quality rules (`load_checked_prices`)."""
    return load_checked_prices(ticker, data_dir, config, on_fetch, stop).rows


def load_checked_prices(
    ticker: str, data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> quality.Checked:
    """The cached prices in the configured date range, checked against the run's exchange calendar by the
    data-quality rules (cut after a long gap or level break, refused when too little is left), with what the rules
    found; fetched first when there is no cache yet."""
    if not data.has_cache(data_dir, ticker):  # read once, below: a universe reads hundreds
        if on_fetch is not None:
            on_fetch(f"No cached prices for {ticker} in {data_dir}; downloading from Yahoo Finance…")
        try:
            data.update_cache(data_dir, ticker, config.data.start, config.data.end, stop=stop)
        except Interrupted:
            raise
        except ForecastError as exc:  # a typo of a cached ticker is likelier than a missing listing
            close = difflib.get_close_matches(ticker, cached_tickers(data_dir), n=3, cutoff=0.6)
            if not close:
                raise
            raise ForecastError(f"no cached prices for {ticker} in {data_dir}, and {exc} Cached tickers with a "
                                f"close name: {', '.join(close)}") from None
    return data.load_checked(data_dir, ticker, config.data.start, config.data.end, config.data.calendar)


def load_training_inputs(
    ticker: str, data_dir: Path, config: Config, on_fetch: Callable[[str], None] | None = None,
    stop: StopRequest | None = None,
) -> tuple[quality.Checked, dict[str, pd.DataFrame]]:
    """The ticker's checked prices (`load_checked_prices`) and its context series' by ticker (none without
    context)."""
    prices = load_checked_prices(ticker, data_dir, config, on_fetch, stop)
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
    on_batch: BatchCallback | None = None,
    on_phase: PhaseCallback | None = None,
    data_quality: quality.Checked | None = None,
) -> TrainOutcome:
    """Train one model on `prices` (and the context series' prices, by ticker, when the config reads any) and
    write its bundle. The history is first cut to the days every context series covers. Progress and phases
    are reported as `train_ticker` says. `data_quality`, what the data-quality rules found reading `prices`, goes
    into the run's notes and its bundle.

    Once `stop` is set (the CLI sets it on Ctrl-C), training ends after the current batch and the best
    epoch so far is scored and saved as usual; a request during scoring or saving changes nothing here.
    """
    check_calendar(config.data.calendar)  # predict needs it: a run for an unknown exchange could never forecast
    if cross := cross_sectional_settings(config):  # a config made in code (compare's local side) skips validation
        key, value = cross[0]
        raise UsageError(f"{key} {value} compares tickers day by day: a model of one ticker cannot be trained on it; "
                         "set model.scope global")
    announce(on_phase, "building windows")
    dataset = build_dataset({ticker: prices}, config, context_prices=context_prices)
    # What the data cost: the rules' cut and notes, then the context's (the history cut, windows dropped).
    notes = [*(data_quality.notes if data_quality else []), *dataset.notes.get(ticker, [])]

    # One model, or a seed ensemble (train.seeds members, their forecasts averaged): the first member's training
    # is the run's own record, each member's beside it.
    callback = (lambda label, record: on_epoch(record)) if on_epoch is not None else None
    batch_callback = (lambda label, progress: on_batch(progress)) if on_batch is not None else None
    trained = train_dataset(dataset, config, runs_dir / data.cache_name(ticker), callback, stop, batch_callback,
                            on_phase)
    members, result, ensemble = trained.members, trained.results[0], len(trained.members) > 1
    model, shape = ensemble_of(members), members[0].shape
    # A stop during any member (or before the last began) interrupted the run, whichever member it hit.
    summary = {**result.summary(), "interrupted": len(members) < config.train.seeds
               or any(one.interrupted for one in trained.results)}

    # Scored on prices converted back from the model's output; the test split is touched only here.
    announce(on_phase, "scoring the test period")
    forecasts = {"val": trained.val[ticker], "test": period_forecasts(model, dataset.test, dataset)}
    scores = {name: score_forecasts(period, shape.kind) for name, period in forecasts.items()}
    run_metrics = {
        "ticker": ticker,
        "model": shape.kind,
        **summary,
        "naive_val_loss": trained.naive_loss,  # the loss curve's reference line
        **scores,
        "notes": notes,
        **({"members": member_scores(members, trained.training, dataset)} if ensemble else {}),
    }
    (record,) = trained.records()
    bundle = RunBundle(
        **trained.run_fields(config),
        ticker=ticker,
        scaler=record.scaler,
        fingerprint=record.fingerprint,
        baselines=record.baselines,
        calibration=calibration(forecasts["val"]),
        training={**summary, "seed": config.train.seed},
        model=model,
        seeds=trained.seeds if ensemble else [],
        member_training=trained.training if ensemble else [],
        data_quality=data_quality.to_dict() if data_quality else None,
    )
    announce(on_phase, "writing the bundle")
    run_dir = save_trained(bundle, trained, runs_dir, run_metrics, f"{ticker} · {shape.kind.upper()}")
    test = forecasts["test"]
    return TrainOutcome(
        ticker=ticker,
        kind=shape.kind,
        run_dir=run_dir,
        run_id=bundle.run_id,
        training=summary,
        metrics=run_metrics,
        history=result.history,
        fingerprint=bundle.fingerprint,
        split=bundle.split,
        window=bundle.spec.to_dict(),
        lag_copy=lag_copy_diagnostic(test.anchor_prices, test.actual, test.model).to_dict(),
        test_anchors=[iso_day(day) for day in test.anchor_dates],
        test_loss_differential=[float(value) for value in log_loss_differential(test)],
        notes=notes,  # the data-quality cut, the history cut to the context's range, windows dropped
        bundle=bundle, result=result, test=test,
    )


@dataclass
class Trained:
    """A run's members trained on its dataset (`train_dataset`), before the run is scored and saved."""

    dataset: Dataset
    members: list[Forecaster]
    results: list[TrainResult]  # each member's, in order
    seeds: list[int]
    training: list[dict[str, Any]]  # each member's TrainResult.summary() and seed
    val: dict[str, PeriodForecasts]  # per ticker, the validation forecasts of the members' mean
    naive_loss: float  # the naive forecast's validation loss: the loss curve's reference line

    def records(self) -> list[TickerRecordData]:
        """What the run keeps of each ticker: its scaler, the rows trained on, its training baselines and the
        validation residuals that calibrate its intervals (never the test period's)."""
        return [TickerRecordData(
            ticker=days.ticker, scaler=days.scaler,
            fingerprint=fingerprint(days.ticker, self.dataset.prices[days.ticker]),
            baselines={"train_mean_log_return": days.train_mean_log_return, "train_naive_mae": days.train_naive_mae},
            residuals=val_residuals(self.val[days.ticker]),
        ) for days in self.dataset.tickers]

    def run_fields(self, config: Config) -> dict[str, Any]:
        """What every run records (bundle.Run), of one ticker or of many."""
        return {"run_id": new_run_id(), "config": config, "shape": self.members[0].shape, "spec": self.dataset.spec,
                "split": self.dataset.split, "versions": library_versions(),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "config_hash": config_hash(config),
                "context_fingerprints": [fingerprint(name, rows) for name, rows in self.dataset.context_rows.items()]}


def train_dataset(
    dataset: Dataset, config: Config, folder: Path, on_epoch: MemberCallback | None = None,
    stop: StopRequest | None = None, on_batch: MemberBatchCallback | None = None,
    on_phase: PhaseCallback | None = None,
) -> Trained:
    """What a run of either layout does once its dataset is built: check that its bundle can be written into
    `folder`, then train its members (`train_members`) and forecast the validation windows with their mean."""
    check_writable(folder)  # before training: hours of it are lost otherwise
    announce(on_phase, "training")
    members, results = train_members(dataset, config, on_epoch, stop, on_batch)
    announce(on_phase, "forecasting the validation period")
    seeds = member_seeds(config)[:len(members)]
    val = ticker_forecasts(dataset, dataset.val, np.mean(member_predictions(members, dataset.val), axis=0))
    return Trained(dataset, members, results, seeds,
                   [{**one.summary(), "seed": seed} for one, seed in zip(results, seeds, strict=True)], val,
                   naive_validation_loss(dataset, config.train.loss))


def save_trained(bundle: RunBundle | GlobalBundle, trained: Trained, runs_dir: Path, metrics: dict[str, Any],
                 title: str) -> Path:
    """Write the run's bundle (bundle.save_run) with its history.csv (one row per epoch of each member, by seed;
    a single model's without the seed, as format 1 has it) and loss_curve.png: the first member's curves beside
    the naive forecast's validation loss, under `title` and the run id the bundle is saved as."""
    # The selection score beside the validation loss when one chose the epoch (train.select rank_ic).
    scored = trained.results[0].best_val_score is not None
    history = pd.DataFrame([
        {"seed": seed, "epoch": r.epoch, "train_loss": r.train_loss, "val_loss": r.val_loss,
         **({"val_score": r.val_score} if scored else {}), "lr": r.lr, "seconds": round(r.seconds, 4)}
        for seed, result in zip(trained.seeds, trained.results, strict=True) for r in result.history
    ])
    curve = history[history["seed"] == trained.seeds[0]]
    if isinstance(bundle, RunBundle) and len(trained.members) == 1:
        history = history.drop(columns="seed")

    def write_loss_curve(run_dir: Path) -> None:  # save_run may add a suffix to the run id: drawn with the final one
        plots.loss_curve(curve["epoch"].tolist(), curve["train_loss"].tolist(), curve["val_loss"].tolist(),
                         trained.results[0].best_epoch, trained.naive_loss, f"{title} · run {bundle.run_id}",
                         run_dir / LOSS_CURVE_FILE)

    return save_run(bundle, runs_dir, trained.dataset.prices, history, metrics, write_extras=write_loss_curve,
                    context=trained.dataset.context_rows)


def member_scores(
    members: list[Forecaster], training: list[dict[str, Any]], dataset: Dataset
) -> list[dict[str, Any]]:
    """Each member of a seed ensemble on its own: its training and its test RMSE ratio to naive (all days)."""
    scored = []
    for member, record in zip(members, training, strict=True):
        test = score_forecasts(period_forecasts(member, dataset.test, dataset), member.shape.kind)
        scored.append({**record, "test_rmse_ratio": test["metrics"]["model"]["all"]["rmse_ratio"]})
    return scored


def train_model(
    dataset: Dataset,
    config: Config,
    on_epoch: EpochCallback | None = None,
    stop: StopRequest | None = None,
    on_batch: BatchCallback | None = None,
) -> tuple[Forecaster, TrainResult]:
    """A fresh model trained on the dataset's training windows (with each window's ticker index); returned on the
    CPU in eval mode."""
    # Seed before building the model: the initial weights are part of a reproducible run.
    seed_everything(config.train.seed)
    shape = ModelShape.from_config(config.model, n_features=dataset.spec.n_inputs, horizon=dataset.spec.horizon,
                                   n_tickers=len(dataset.tickers))
    model = Forecaster(shape)
    result = fit(
        model,
        Samples(dataset.train.model_inputs, dataset.train.targets),
        Samples(dataset.val.model_inputs, dataset.val.targets),
        config.train,
        device=resolve_device(config.train.device),
        on_epoch=on_epoch,
        stop=stop,
        on_batch=on_batch,
        val_score=validation_rank_ic(dataset) if config.train.select == "rank_ic" else None,
    )
    return model.cpu().eval(), result


def validation_rank_ic(dataset: Dataset) -> Callable[[np.ndarray], float]:
    """train.select rank_ic's score of a model's scaled forecasts of the validation windows (lower is better, as
    trainer.fit takes it): minus the mean daily Spearman rank IC, across tickers, of its day-1 forecasts against
    the realised day-1 log returns (NaN when no day could be ranked). Only the validation period is read."""
    val = dataset.val
    anchor_days, day = np.unique(val.anchor_dates, return_inverse=True)

    def grid(values: np.ndarray) -> pd.DataFrame:  # days x tickers, as crosssection.rank_ic takes them
        table = np.full((len(anchor_days), len(dataset.tickers)), np.nan)
        table[day, val.ticker] = values
        return pd.DataFrame(table, index=pd.DatetimeIndex(anchor_days), columns=dataset.names)

    realised = grid(np.log(val.actual_prices[:, 0] / val.anchor_prices))
    if not (realised.notna().sum(axis=1) >= MIN_TICKERS).any():
        raise ForecastError(f"train.select rank_ic: no validation day has windows of {MIN_TICKERS} tickers to "
                            "rank; use more tickers or train.select loss")

    def score(scaled: np.ndarray) -> float:
        # Each ticker's forecast back in its own units first: the scaled outputs of two tickers do not compare.
        day_one = np.log(dataset.to_prices(val, scaled)[:, 0] / val.anchor_prices)
        daily = rank_ic(grid(day_one), realised)
        return -float(daily.mean()) if len(daily) else math.nan

    return score


def train_members(
    dataset: Dataset, config: Config, on_epoch: MemberCallback | None = None, stop: StopRequest | None = None,
    on_batch: MemberBatchCallback | None = None,
) -> tuple[list[Forecaster], list[TrainResult]]:
    """One model per seed (`train.seeds` of them from `train.seed` on: a seed ensemble); a stop ends the current
    member (its best epoch is kept) and skips the rest. `on_epoch(label, record)` hears each member's epochs,
    `on_batch(label, progress)` how far its epoch has got."""
    members, results = [], []
    for label, seed in zip(member_labels(config), member_seeds(config), strict=True):
        if stop is not None and stop.is_set():
            break
        callback = (lambda record, label=label: on_epoch(label, record)) if on_epoch is not None else None
        batch_callback = (lambda progress, label=label: on_batch(label, progress)) if on_batch is not None else None
        seeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
        model, result = train_model(dataset, seeded, callback, stop, batch_callback)
        if result.epochs_run == 0:
            break
        members.append(model)
        results.append(result)
    if not members:
        raise Interrupted("interrupted before the first epoch finished; no bundle written")
    return members, results


def train_as_run(
    dataset: Dataset, config: Config, on_epoch: EpochCallback | None = None, stop: StopRequest | None = None
) -> tuple[Forecaster | Ensemble, TrainResult] | None:
    """The model a run of `config` trains on `dataset`, as `train_run` trains it (one model, or a seed ensemble),
    and its first member's record; None when `stop` ended it before every member finished."""
    callback = (lambda label, record: on_epoch(record)) if on_epoch is not None else None
    try:
        members, results = train_members(dataset, config, callback, stop)
    except Interrupted:
        return None
    if len(members) < config.train.seeds or any(result.interrupted for result in results):
        return None
    return ensemble_of(members), results[0]


def fingerprint(ticker: str, prices: pd.DataFrame) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "first_date": prices.index[0].date().isoformat(),
        "last_date": prices.index[-1].date().isoformat(),
        "rows": len(prices),
        "sha256": prices_sha256(prices),
    }


def naive_validation_loss(dataset: Dataset, loss: str) -> float:
    """The training loss the naive forecast would score on the validation windows, in each ticker's scaled space
    (the loss curve's reference line)."""
    val = dataset.val
    # "No change" is a log return of zero on every step (a cross-sectional target's series is in log-return
    # units too), or the anchor price itself.
    if dataset.spec.target in RETURN_TARGETS:
        naive = np.zeros_like(val.targets, dtype=np.float64)
    else:
        naive = baselines.naive_forecast(val.anchor_prices, dataset.spec.horizon)
    means = np.array([days.scaler.target_mean for days in dataset.tickers])[val.ticker][:, None]
    stds = np.array([days.scaler.target_std for days in dataset.tickers])[val.ticker][:, None]
    scaled = torch.as_tensor((naive - means) / stds, dtype=torch.float32)
    return float(LOSSES[loss](scaled, torch.as_tensor(val.targets, dtype=torch.float32)))

# --- a global run: one model over many tickers ------------------------------------------------------


MemberCallback = Callable[[str, EpochRecord], bool | None]  # (member label, record); true: stop this member
MemberBatchCallback = Callable[[str, BatchProgress], None]  # (member label, how far its epoch has got)


@dataclass(frozen=True)
class GlobalResult:
    """A finished global run as plain data: where its bundle is, who was in it, what it scored."""

    run_dir: Path
    run_id: str
    tickers: list[str]
    skipped: dict[str, str]  # ticker -> why it was left out
    training: list[dict[str, Any]]  # per member: TrainResult.summary() and its seed
    report: dict[str, Any]  # score_tickers' report on the test period
    notes: dict[str, list[str]] = field(default_factory=dict)  # ticker -> history cut, windows dropped

    @property
    def interrupted(self) -> bool:
        return any(member["interrupted"] for member in self.training)


def member_seeds(config: Config) -> list[int]:
    """A seed ensemble's seeds: train.seed … train.seed + train.seeds - 1 (one model: train.seed)."""
    return list(range(config.train.seed, config.train.seed + config.train.seeds))


def member_labels(config: Config) -> list[str]:
    return [f"seed {seed}" for seed in member_seeds(config)]


def check_global(config: Config, tickers: list[str]) -> None:
    """What a global run needs before any data is read."""
    if config.model.scope != "global":
        raise UsageError("a global run needs model.scope global (--scope global)")
    if len(tickers) < 2:
        raise UsageError("--scope global trains one model across tickers: give two or more (-t A -t B, "
                         "--tickers-file F or --all)")
    if config.train.select == "rank_ic" and len(tickers) < MIN_TICKERS:
        raise UsageError(f"train.select rank_ic ranks the tickers each day: give at least {MIN_TICKERS}, or use "
                         "train.select loss")
    check_trainable(config)
    check_calendar(config.data.calendar)


def train_global(
    config: Config,
    tickers: list[str],
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    on_epoch: MemberCallback | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
    on_batch: MemberBatchCallback | None = None,
    on_phase: PhaseCallback | None = None,
) -> GlobalResult:
    """Train one model (a member per seed) on the pooled windows of `tickers` and write its bundle; progress and
    phases are reported as `train_ticker` says, each member's under its label."""
    check_global(config, tickers)
    folder = data.resolve_data_dir(data_dir, config.data.dir)
    runs = resolve_runs_dir(runs_dir, config.runs.dir)
    announce(on_phase, f"reading the prices of {len(tickers)} tickers")
    prices, skipped, checks = {}, {}, {}
    for ticker in tickers:
        try:
            checks[ticker] = load_checked_prices(ticker, folder, config, on_fetch, stop)
            prices[ticker] = checks[ticker].rows
        except ForecastError as exc:  # a broken or missing series leaves the run, with its reason
            skipped[ticker] = str(exc)
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted while reading the prices; nothing was trained")
    if not prices:
        raise ForecastError(f"no ticker could be read: {reasons(skipped)}")
    # Read once for every ticker (fetched when missing); each ticker aligns it on its own sessions.
    context_prices = context.load_context(folder, [entry.ticker for entry in config.data.context], on_fetch, stop)
    resolve_device(config.train.device)
    announce(on_phase, "building windows")
    dataset = build_dataset(prices, config, context_prices=context_prices)
    skipped |= dataset.skipped
    # The rules' notes first, then the context's: the per-ticker summary and the result carry both.
    dataset.notes.update({ticker: [*checked.notes, *dataset.notes.get(ticker, [])]
                          for ticker, checked in checks.items() if checked.notes and ticker in dataset.names})
    if len(dataset.tickers) < 2:
        raise ForecastError(f"only {len(dataset.tickers)} ticker has enough days for a global model: "
                            f"{reasons(skipped)}")
    trained = train_dataset(dataset, config, runs / GLOBAL_DIR, on_epoch, stop, on_batch, on_phase)
    records, kind = trained.records(), trained.members[0].shape.kind
    bundle = GlobalBundle(**trained.run_fields(config), seeds=trained.seeds, tickers=records, training=trained.training,
                          members=trained.members, skipped=skipped,
                          data_quality={ticker: checks[ticker].to_dict() for ticker in dataset.names})
    announce(on_phase, f"scoring the test period of {len(records)} tickers")
    scores = score_tickers(dataset, trained.members, config, kind, [record.fingerprint for record in records])
    metrics = {"scope": "global", "model": kind, "tickers": len(records), "skipped": skipped,
               "training": trained.training, "naive_val_loss": trained.naive_loss, **scores.report}
    announce(on_phase, "writing the bundle")
    run_dir = save_trained(bundle, trained, runs, metrics,
                           f"global {kind.upper()} · {len(records)} tickers · seed {bundle.seeds[0]}")
    return GlobalResult(run_dir=run_dir, run_id=bundle.run_id, tickers=bundle.names, skipped=skipped,
                        training=trained.training, report=scores.report, notes=dataset.notes)


# --- forecasts and scores ------------------------------------------------------------------------


@dataclass
class TickerScores:
    report: dict[str, Any]  # JSON-ready: split, test period, pooled ratio, per ticker, cross-section
    section: CrossSection  # the daily IC and equity curves for the plots
    forecasts: dict[str, PeriodForecasts]  # per ticker, the test period as scored


@dataclass(frozen=True)
class TickerColumn:
    """One ticker's test windows of one test period (a fold's block, in a walk-forward): a column of the
    cross-section, with the forecasts of the model, its members and the linear baseline."""

    ticker: str
    forecasts: PeriodForecasts  # the model's (the members' mean) beside naive and drift
    last_returns: np.ndarray  # (n,) each window's anchor-day log return: the reversal baseline
    train_mean: float  # the ticker's training-period mean log return, as its scaler saw it
    member_prices: dict[str, np.ndarray]  # an ensemble's: label -> that member's prices (n, horizon); {} for one model
    linear_prices: np.ndarray | None  # the ridge's prices (n, 1); None when no ridge could be fitted


@dataclass
class PanelForecasts:
    """A test period's forecasts over many tickers as plain data, before any score (`panel_forecasts`); a
    walk-forward pools its folds' into one (backtest.pooled_forecasts). `score_panel` judges it."""

    split: dict[str, str]
    first_day: str  # the test period's first day
    last_day: str  # its last target day
    horizon: int
    columns: dict[str, TickerColumn]  # the cross-section's, by name: the ticker, or "TICKER · fold i" when pooled
    fingerprints: dict[str, dict[str, Any]]  # per ticker: its price rows' fingerprint (rows, sha256)
    notes: dict[str, list[str]]  # per ticker: what its data cost
    linear: dict[str, Any]  # the linear baseline: how it was fitted, or why it is absent
    section_notes: list[str] = field(default_factory=list)  # said under the cross-section's verdict


def score_tickers(
    dataset: Dataset, members: list[Forecaster], config: Config, kind: str, fingerprints: list[dict[str, Any]],
    own: Dataset | None = None,
) -> TickerScores:
    """The test period's report (`score_panel`) on `dataset`'s test forecasts (`panel_forecasts`)."""
    return score_panel(panel_forecasts(dataset, members, config, fingerprints, own), config, kind)


def panel_forecasts(
    dataset: Dataset, members: list[Forecaster], config: Config, fingerprints: list[dict[str, Any]],
    own: Dataset | None = None,
) -> PanelForecasts:
    """`dataset`'s test forecasts per ticker: the members' mean beside naive and drift, each member's own (an
    ensemble's), and the linear baseline's: a ridge fitted on `own`'s training windows (the run's own dataset;
    None: `dataset` is), forecasting `dataset`'s test windows. A ridge too large to fit is left out with its
    reason. `fingerprints`: each ticker's, in `dataset`'s order."""
    test = dataset.test
    predictions = member_predictions(members, test)
    forecasts = ticker_forecasts(dataset, test, np.mean(predictions, axis=0))
    # One model has no members to compare with its forecasts.
    member_prices = ({label: dataset.to_prices(test, scaled)
                      for label, scaled in zip(member_labels(config), predictions, strict=True)}
                     if len(members) > 1 else {})
    own = dataset if own is None else own
    try:
        ridge = fit_ridge(own)
        linear_prices = dataset.to_prices(test, ridge.predict(test.inputs)[:, None])
        about = {**ridge.to_dict(), "fitted_on_tickers": len(own.tickers)}
    except ForecastError as exc:  # a diagnostic too large to fit must not cost the run its report
        linear_prices, about = None, {"absent": str(exc)}
    columns = {}
    for days in dataset.tickers:
        rows = test.of(days.index)
        columns[days.ticker] = TickerColumn(
            ticker=days.ticker, forecasts=forecasts[days.ticker], last_returns=test.last_return[rows],
            train_mean=days.train_mean_log_return,
            member_prices={label: prices[rows] for label, prices in member_prices.items()},
            linear_prices=None if linear_prices is None else linear_prices[rows],
        )
    return PanelForecasts(
        split=dataset.split, first_day=dataset.test_start.date().isoformat(),
        last_day=iso_day(test.target_dates.max()), horizon=dataset.spec.horizon, columns=columns,
        fingerprints=dict(zip(dataset.names, fingerprints, strict=True)), notes=dataset.notes, linear=about,
    )


def score_panel(panel: PanelForecasts, config: Config, kind: str) -> TickerScores:
    """The report on a panel's test forecasts: per ticker (its columns' windows together) a local run's scores
    block and summary row, with BH q-values and the pooled DM test; the pooled RMSE ratio; and the cross-section
    (rank IC, long–short) of its columns, the members' and the linear baseline's ICs beside the model's."""
    parts: dict[str, list[PeriodForecasts]] = {}
    for column in panel.columns.values():
        parts.setdefault(column.ticker, []).append(column.forecasts)
    forecasts = {ticker: PeriodForecasts.concat(periods) for ticker, periods in parts.items()}
    records = []
    for ticker, period in forecasts.items():
        recorded = panel.fingerprints[ticker]
        lag_copy = lag_copy_diagnostic(period.anchor_prices, period.actual, period.model)
        records.append(scored_record(
            ticker, "ok", 0.0, None, run_dir=None, rows=recorded["rows"],
            test=score_forecasts(period, kind), echoes=lag_copy.echoes_yesterday,
            anchors=[iso_day(day) for day in period.anchor_dates],
            differential=[float(value) for value in log_loss_differential(period)],
            horizon=panel.horizon, fingerprint=recorded["sha256"], notes=panel.notes.get(ticker),
        ))
    rows, per_ticker = set_report(records, list(forecasts))
    for row in rows:
        row["run_dir"] = None  # one run for all: its folder is the report's
    per_ticker["rows"] = rows
    columns = panel.columns
    labels = next(iter(columns.values())).member_prices.keys()  # every column has the same members
    members = {label: {name: column.member_prices[label] for name, column in columns.items()}
               for label in labels} or None
    linear = ({name: column.linear_prices for name, column in columns.items()}
              if all(column.linear_prices is not None for column in columns.values()) else None)
    # The long–short book is sized on the tickers, not on the columns (a walk-forward has one per ticker and fold).
    section = cross_section_of({name: column.forecasts for name, column in columns.items()},
                               {name: column.last_returns for name, column in columns.items()},
                               {name: column.train_mean for name, column in columns.items()},
                               config, members, linear, tickers=len(forecasts))
    section.notes.extend(panel.section_notes)
    report = {
        "split": panel.split,
        "test": {"first_target_day": panel.first_day, "last_target_day": panel.last_day,
                 "windows": sum(len(period) for period in forecasts.values()), "tickers": len(forecasts),
                 "horizon": panel.horizon},
        "pooled_ratio": pooled_ratio(forecasts.values()),
        "per_ticker": per_ticker,
        "cross_section": section.to_dict(),
        "linear_baseline": panel.linear,
    }
    return TickerScores(report=report, section=section, forecasts=forecasts)


def cross_section_of(
    forecasts: dict[str, PeriodForecasts], last_returns: dict[str, np.ndarray], train_means: dict[str, float],
    config: Config, member_models: dict[str, dict[str, np.ndarray]] | None = None,
    linear_models: dict[str, np.ndarray] | None = None, tickers: int | None = None,
) -> CrossSection:
    """The cross-section of per-ticker test forecasts (a global run's, or local runs' side by side): days ×
    columns frames of the day-1 forecast and realised log returns, the anchor day's return and each column's
    training mean, judged by crosssection.cross_section. A column is a ticker's test windows (a walk-forward's
    has one per ticker and fold). `member_models`: label -> column -> model prices; `linear_models`: column -> the
    linear baseline's prices (n, ≥ 1), day 1 first; `tickers`: how many the columns are of (None: one each)."""
    def frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
        columns = {ticker: pd.Series(column, index=pd.DatetimeIndex(forecasts[ticker].anchor_dates))
                   for ticker, column in values.items()}
        return pd.DataFrame(columns).sort_index()

    def day_one(prices: dict[str, np.ndarray]) -> pd.DataFrame:
        return frame({t: np.log(prices[t][:, 0] / forecasts[t].anchor_prices) for t in forecasts})

    members = {label: day_one(models) for label, models in (member_models or {}).items()} or None
    linear = day_one(linear_models) if linear_models is not None else None
    # A small universe cannot fill k longs and k shorts: the book shrinks to half the tickers (the table says k).
    k = max(1, min(config.evaluate.long_short_k, (len(forecasts) if tickers is None else tickers) // 2))
    return cross_section(day_one({t: f.model for t, f in forecasts.items()}),
                         day_one({t: f.actual for t, f in forecasts.items()}), frame(last_returns),
                         pd.Series(train_means, dtype=np.float64), k=k, cost_bps=config.evaluate.cost_bps,
                         members=members, linear=linear, hold=config.evaluate.long_short_hold)


def pooled_ratio(forecasts: Any) -> dict[str, Any]:
    """RMSE of log-price errors over every ticker's test windows, the model's over naive's: scale-free, so a $5
    and a $500 stock weigh alike (day 1 and all horizon days)."""
    parts = list(forecasts)
    model = np.concatenate([np.log(part.model / part.actual) for part in parts])
    naive = np.concatenate([np.log(part.naive / part.actual) for part in parts])
    ratio = {step: float(np.sqrt(np.mean(model[:, sl] ** 2) / np.mean(naive[:, sl] ** 2)))
             for step, sl in (("all", slice(None)), ("h1", slice(0, 1)))}
    return {"windows": len(model), "rmse_ratio_all": ratio["all"], "rmse_ratio_h1": ratio["h1"]}


