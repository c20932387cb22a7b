"""The walk-forward backtest: K more test periods, each scored by a model trained only on the days before it.

The walk-forward backtest splits the run's test period into K consecutive blocks. Fold k trains on
every day before block k (its validation tail keeps the run's share of those days, its scaler is
refitted on its own training rows, same config and seed) and forecasts block k, from a price frame
cut off at the end of block k, so no fold can see a later day. Fold 0 has exactly the run's own
training and validation days, so it reuses the bundle's model instead of training it again: K folds
cost K - 1 trainings. Windows whose targets straddle two blocks are dropped, so anchors of
consecutive folds never overlap; the pooled metrics pool every block's windows.

A global run's walk-forward is the same plan on the calendar of its tickers' days: each fold's panel is rebuilt
from every ticker's rows up to the end of its block (each ticker's scaler and train mean refit on the fold's
training days), the model refit with every seed member and the linear baseline refit on the fold's training
windows, and the block forecast (train.panel_forecasts) and scored (train.score_panel). The folds' forecasts are
then pooled into one test period and scored by the same function (`pooled_scores`): each ticker's windows of
every fold together, and one cross-section over all the days, so the rank IC's HAC t stands on all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.config import Config
from lstm_forecast.errors import StopRequest, UsageError
from lstm_forecast.model import Ensemble, Forecaster, members_of
from lstm_forecast.scoring import FORECASTS, PeriodForecasts, iso_day, period_forecasts, score_forecasts
from lstm_forecast.train import (
    PanelForecasts,
    PhaseCallback,
    TickerScores,
    announce,
    fingerprint,
    panel_forecasts,
    score_panel,
    train_as_run,
)
from lstm_forecast.trainer import EpochRecord
from lstm_forecast.windows import Dataset, Scaler, build_dataset


@dataclass(frozen=True)
class FoldProgress:
    """One progress report of the backtest: first at the start, then after every epoch and every fold."""

    completed: int  # folds finished
    total: int
    trainings: int  # models the backtest trains (fold 1 reuses the run's own)
    estimate_seconds: float | None  # trainings × the run's own recorded training time, when known
    record: EpochRecord | None  # the epoch just finished; None at the start and when a fold finishes


ProgressCallback = Callable[[FoldProgress], None]


@dataclass(frozen=True)
class Fold:
    """Days (rows of windows.compute_features) of one fold: train [0, val_start), validation
    [val_start, test_start), test block [test_start, test_end)."""

    index: int
    val_start: int
    test_start: int
    test_end: int


def plan_folds(val_start: int, test_start: int, test_end: int, folds: int, horizon: int) -> list[Fold]:
    """K consecutive test blocks covering the run's test days [test_start, test_end).

    Each fold's validation tail keeps the run's share of the days before its test block, so fold 0
    has exactly the run's own training and validation days.
    """
    # Near-equal blocks are floor(days / K) or ceil(days / K) long, so days // horizon blocks is the most that
    # fit; checked before any array is built, so a huge --folds costs nothing.
    days = test_end - test_start
    most = days // horizon
    if folds > most:
        advice = f"use fewer, e.g. --folds {most}" if most else "skip the backtest with --folds 0"
        raise UsageError(
            f"{folds} walk-forward folds: the test period has {days} trading days, too few for {folds} blocks of "
            f"at least window.horizon {horizon} days; {advice}"
        )
    bounds = test_start + np.round(np.arange(folds + 1) * days / folds).astype(int)
    val_share = (test_start - val_start) / test_start
    return [
        Fold(index, int(start) - round(int(start) * val_share), int(start), int(stop))
        for index, (start, stop) in enumerate(itertools.pairwise(bounds))
    ]


def fold_dataset(
    prices: pd.DataFrame | Mapping[str, pd.DataFrame], config: Config, fold: Fold,
    context_prices: Mapping[str, pd.DataFrame] | None = None, calendar: pd.DatetimeIndex | None = None,
) -> Dataset:
    """A fold's windows from prices cut off at the end of its test block: no later day exists for it (a context
    series is read on the visible days only, so it cannot reach past them either); each ticker's scaler and
    training statistics are fitted on the fold's training days alone (windows.build_dataset).

    The fold's rows count the days of `calendar`: a global run's union of its tickers' days, by default the one
    frame's own days (day d is price row d + 1: the first price row only serves the first day's return).
    """
    days = prices.index[1:] if calendar is None else calendar
    last = days[fold.test_end - 1]
    visible = (prices.loc[:last] if isinstance(prices, pd.DataFrame)
               else {ticker: frame.loc[:last] for ticker, frame in prices.items()})
    split = {"val_start": iso_day(days[fold.val_start]), "test_start": iso_day(days[fold.test_start])}
    return build_dataset(visible, config, split=split, context_prices=context_prices)


@dataclass
class FoldResult:
    fold: Fold
    model: Forecaster | Ensemble
    scaler: Scaler
    forecasts: PeriodForecasts
    summary: dict[str, Any]  # periods, training and scores block (scoring.py) of the fold: JSON-ready


def run_backtest(
    prices: pd.DataFrame,
    config: Config,
    folds: list[Fold],
    bundle_model: Forecaster | Ensemble | None = None,
    bundle_scaler: Scaler | None = None,
    on_progress: ProgressCallback | None = None,
    seconds_per_training: float | None = None,
    stop: StopRequest | None = None,
    context_prices: Mapping[str, pd.DataFrame] | None = None,
) -> tuple[list[FoldResult], bool]:
    """Train and forecast each fold in order; returns the finished folds and whether `stop` cut it short.

    `bundle_model` is used for fold 0 when fold 0's scaler equals `bundle_scaler` (the same training rows).
    `seconds_per_training` (the run's own training time) gives the estimate in the first progress report.
    """
    results: list[FoldResult] = []
    trainings = (len(folds) - (bundle_model is not None)) * config.train.seeds  # models, a member per seed
    report = progress_reporter(on_progress, results, len(folds), trainings, seconds_per_training)
    report(None)
    for fold in folds:
        dataset = fold_dataset(prices, config, fold, context_prices)
        scalers = [bundle_scaler] if bundle_scaler is not None else []
        trained = fold_model(dataset, config, fold, bundle_model, scalers, report, stop)
        if trained is None:
            return results, True
        model, training = trained
        forecasts = period_forecasts(model, dataset.test, dataset)
        summary = {
            **fold_days(fold, dataset),
            "test_last_day": iso_day(forecasts.target_dates[-1, -1]),
            **training,
            **score_forecasts(forecasts, config.model.type),
        }
        results.append(FoldResult(fold, model, dataset.scaler, forecasts, summary))
        report(None)
    return results, False


def progress_reporter(
    on_progress: ProgressCallback | None, finished: list[Any], total: int, trainings: int,
    seconds_per_training: float | None,
) -> Callable[[EpochRecord | None], None]:
    """What reports a backtest's progress: the folds in `finished` so far and, during a fold's training, its epoch.
    The estimate is `trainings` × the run's own time per model."""
    estimate = None if seconds_per_training is None else trainings * seconds_per_training

    def report(record: EpochRecord | None) -> None:
        if on_progress is not None:
            on_progress(FoldProgress(len(finished), total, trainings, estimate, record))

    return report


def fold_model(
    dataset: Dataset, config: Config, fold: Fold, bundle_model: Forecaster | Ensemble | None,
    bundle_scalers: list[Scaler], on_epoch: Callable[[EpochRecord], None], stop: StopRequest | None,
) -> tuple[Forecaster | Ensemble, dict[str, Any]] | None:
    """The model that forecasts a fold, and its training record: for fold 0, the run's own when the fold's scalers
    are the run's (the same training rows, so the same model), else one trained as the run was (train_as_run:
    its seeds, its threads); None when `stop` ended the training."""
    days = dataset.tickers
    if fold.index == 0 and bundle_model is not None and len(days) == len(bundle_scalers) and all(
        same_scaler(one.scaler, scaler) for one, scaler in zip(days, bundle_scalers, strict=True)
    ):
        return bundle_model, {"model_source": "bundle", "epochs_run": None, "best_epoch": None}
    trained = train_as_run(dataset, config, on_epoch, stop)
    if trained is None:
        return None
    model, result = trained
    return model, {"model_source": "retrained", "epochs_run": result.epochs_run, "best_epoch": result.best_epoch}


def fold_days(fold: Fold, dataset: Dataset) -> dict[str, Any]:
    """Where a fold lies: its number, its training days and the first days of its validation and test."""
    return {"fold": fold.index + 1, "training_days": fold.val_start,
            "val_first_day": dataset.val_start.date().isoformat(),
            "test_first_day": dataset.test_start.date().isoformat()}


def backtest_summary(results: list[FoldResult], requested: int, interrupted: bool, kind: str) -> dict[str, Any]:
    """The folds and their pooled metrics."""
    pooled = PeriodForecasts.concat([result.forecasts for result in results]) if results else None
    return {
        "folds": requested,
        "completed": len(results),
        "interrupted": interrupted,
        "design": "expanding window: each fold trains on every day before its test block (scaler refitted, "
                  "same config and seed); fold 1 reuses the run's model, which was trained on exactly those days",
        "fold_results": [result.summary for result in results],
        "pooled": score_forecasts(pooled, kind) if pooled is not None else None,
    }


def backtest_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per fold and a pooled row, for backtest.csv."""
    rows = [*summary["fold_results"], {"fold": "pooled", **(summary["pooled"] or {})}]
    records = []
    for row in rows:
        record = {key: row.get(key) for key in (
            "fold", "training_days", "val_first_day", "test_first_day", "test_last_day",
            "first_anchor", "last_anchor", "windows", "model_source", "epochs_run", "best_epoch")}
        for name in FORECASTS:
            for key in ("rmse", "mae", "mape", "mase", "directional_accuracy", "rmse_ratio"):
                record[f"{name}_{key}"] = row["metrics"][name]["all"][key] if "metrics" in row else None
        vs_naive = row.get("vs_naive") or {}
        record["dm_pvalue"] = vs_naive.get("dm_all", {}).get("pvalue")
        record["binomial_pvalue"] = vs_naive.get("direction_h1", {}).get("binomial_pvalue")
        records.append(record)
    # Nullable integers: the pooled row has no training days or epochs, and counts must not print as 12.0.
    counts = {key: "Int64" for key in ("training_days", "windows", "epochs_run", "best_epoch")}
    return pd.DataFrame.from_records(records).astype(counts)


def same_scaler(first: Scaler, second: Scaler | None) -> bool:
    """Equal up to floating-point noise (a mean over the same rows may differ in the last bit across CPUs)."""
    if second is None:
        return False
    pairs = [(first.feature_mean, second.feature_mean), (first.feature_std, second.feature_std),
             ((first.target_mean, first.target_std), (second.target_mean, second.target_std))]
    return all(len(a) == len(b) and np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in pairs)


# --- a global run's walk-forward: the same folds, one model over every ticker ------------------------


REFIT_NOTE = ("Walk-forward: at each refit the long–short books are closed and opened afresh, and the turnover is "
              "charged, as on the first test day.")


@dataclass
class TickersFold:
    """One fold of a global run: its windows over every ticker, its test forecasts and their scores."""

    fold: Fold
    dataset: Dataset
    forecasts: PanelForecasts  # the fold's test block, with the fold's own scalers, train means and ridge
    scores: TickerScores  # score_panel on `forecasts`
    summary: dict[str, Any]  # where the fold lies, its training, its pooled ratio and cross-section: JSON-ready


def run_global_backtest(
    prices: Mapping[str, pd.DataFrame],
    config: Config,
    folds: list[Fold],
    calendar: pd.DatetimeIndex,
    bundle_model: Forecaster | Ensemble,
    bundle_scalers: list[Scaler],
    on_progress: ProgressCallback | None = None,
    seconds_per_training: float | None = None,
    stop: StopRequest | None = None,
    context_prices: Mapping[str, pd.DataFrame] | None = None,
    on_phase: PhaseCallback | None = None,
) -> tuple[list[TickersFold], bool]:
    """A global run's folds in order (days counted on `calendar`, the union of its tickers' days): each one's
    panel rebuilt from the prices visible at the end of its block, the model (every seed member) refit on it as
    the run was, and its test block forecast (the linear baseline refit on the fold's training windows too) and
    scored per ticker and across the cross-section; returns the finished folds and whether `stop` cut it short.
    Fold 0 reuses the run's members when every scaler is the run's."""
    results: list[TickersFold] = []
    trainings = (len(folds) - 1) * config.train.seeds  # fold 0 is the run's own model
    report = progress_reporter(on_progress, results, len(folds), trainings, seconds_per_training)
    report(None)
    for fold in folds:
        step = f"fold {fold.index + 1}/{len(folds)}"
        announce(on_phase, f"{step}: rebuilding the windows")
        dataset = fold_dataset(prices, config, fold, context_prices, calendar)
        if fold.index > 0:  # fold 1 is the run's own model
            announce(on_phase, f"{step}: training {config.train.seeds} model{'s' * (config.train.seeds > 1)} on "
                               f"{len(dataset.tickers)} tickers")
        trained = fold_model(dataset, config, fold, bundle_model, bundle_scalers, report, stop)
        if trained is None:
            return results, True
        model, training = trained
        announce(on_phase, f"{step}: scoring the test block")
        forecasts = panel_forecasts(dataset, members_of(model), config,
                                    [fingerprint(name, dataset.prices[name]) for name in dataset.names])
        scores = score_panel(forecasts, config, model.shape.kind)
        summary = {**fold_days(fold, dataset), "test_last_day": forecasts.last_day,
                   "tickers": len(dataset.tickers), "windows": len(dataset.test), **training,
                   "skipped": dataset.skipped, "pooled_ratio": scores.report["pooled_ratio"],
                   "cross_section": scores.report["cross_section"]}
        results.append(TickersFold(fold, dataset, forecasts, scores, summary))
        report(None)
    return results, False


def pooled_forecasts(results: list[TickersFold]) -> PanelForecasts:
    """Every finished fold's test block as one test period (for `score_panel`): a ticker's windows of every fold
    are its per-ticker row, and its rows and fingerprint are the latest fold's (the one that sees the most rows).

    In the cross-section each ticker's days of each fold are a column of their own ("TICKER · fold i"): a day has
    one fold, so its cross-section is that day's tickers, and the train-mean and linear baselines (and the partial
    ICs beyond them) read what that fold fitted, never a later one. The long–short book therefore opens afresh at
    each refit."""
    panels = [(result.fold.index + 1, result.forecasts) for result in results]
    first, last = panels[0][1], panels[-1][1]
    return PanelForecasts(
        split=first.split, first_day=first.first_day, last_day=last.last_day, horizon=last.horizon,
        columns={f"{column.ticker} · fold {number}": column
                 for number, panel in panels for column in panel.columns.values()},
        fingerprints={ticker: rows for _, panel in panels for ticker, rows in panel.fingerprints.items()},
        notes={ticker: panel.notes.get(ticker, []) for _, panel in panels for ticker in panel.fingerprints},
        linear=pooled_linear(results), section_notes=[REFIT_NOTE],
    )


def pooled_linear(results: list[TickersFold]) -> dict[str, Any]:
    """What the pooled linear baseline is: each fold's own ridge, fitted on the fold's training windows with its
    penalty chosen on the fold's validation windows; or why there is none (a fold could not fit one)."""
    fits = [(result.fold.index + 1, result.forecasts.linear) for result in results]
    for _, about in fits:
        if "absent" in about:
            return about
    return {"model": fits[0][1]["model"], "refit": "per fold, on the fold's training windows",
            "coefficients": fits[0][1]["coefficients"], "penalties": [about["penalty"] for _, about in fits],
            "folds": [{"fold": number, **about} for number, about in fits]}


def pooled_scores(results: list[TickersFold], config: Config, kind: str) -> TickerScores:
    """Every finished fold's test days judged as one test period (`pooled_forecasts`, `score_panel`)."""
    return score_panel(pooled_forecasts(results), config, kind)


def global_backtest_summary(results: list[TickersFold], requested: int, interrupted: bool) -> dict[str, Any]:
    """The walk-forward section of a global run's evaluation: what was done and each fold's own figures."""
    return {
        "folds": requested,
        "completed": len(results),
        "interrupted": interrupted,
        "design": "expanding window: each fold refits the model (every seed member, the run's config, seeds and "
                  "threads) on every day before its test block, with each ticker's scaler and train mean refitted "
                  "on the fold's training days; fold 1 reuses the run's members, trained on exactly those days. "
                  "The report above pools every finished fold's test days",
        "fold_results": [result.summary for result in results],
    }
