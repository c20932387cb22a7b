"""The walk-forward backtest: K more test periods, each scored by a model trained only on the days before it.

The walk-forward backtest splits the run's test period into K consecutive blocks. Fold k trains on
every day before block k (its validation tail keeps the run's share of those days, its scaler is
refitted on its own training rows, same config and seed) and forecasts block k, from a price frame
cut off at the end of block k, so no fold can see a later day. Fold 0 has exactly the run's own
training and validation days, so it reuses the bundle's model instead of training it again: K folds
cost K - 1 trainings. Windows whose targets straddle two blocks are dropped, so anchors of
consecutive folds never overlap; the pooled metrics pool every block's windows.
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
from lstm_forecast.model import Ensemble, Forecaster
from lstm_forecast.scoring import FORECASTS, PeriodForecasts, iso_day, period_forecasts, score_forecasts
from lstm_forecast.train import train_as_run
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
    prices: pd.DataFrame, config: Config, fold: Fold, context_prices: Mapping[str, pd.DataFrame] | None = None
) -> Dataset:
    """A fold's windows from prices cut off at the end of its test block: no later day exists for it (a context
    series is read on the visible days only, so it cannot reach past them either).

    Day d is price row d + 1 (the first price row only serves the first day's return).
    """
    visible = prices.iloc[: fold.test_end + 1]
    days = visible.index[1:]
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
    trainings = len(folds) - (bundle_model is not None)
    estimate = None if seconds_per_training is None else trainings * seconds_per_training

    def report(record: EpochRecord | None) -> None:
        if on_progress is not None:
            on_progress(FoldProgress(len(results), len(folds), trainings, estimate, record))

    report(None)
    for fold in folds:
        dataset = fold_dataset(prices, config, fold, context_prices)
        reuse = fold.index == 0 and bundle_model is not None and same_scaler(dataset.scaler, bundle_scaler)
        if reuse:
            model, training = bundle_model, {"model_source": "bundle", "epochs_run": None, "best_epoch": None}
        else:
            trained = train_as_run(dataset, config, report, stop)
            if trained is None:
                return results, True
            model, result = trained
            training = {"model_source": "retrained", "epochs_run": result.epochs_run, "best_epoch": result.best_epoch}
        forecasts = period_forecasts(model, dataset.test, dataset)
        summary = {
            "fold": fold.index + 1,
            "training_days": fold.val_start,
            "val_first_day": dataset.val_start.date().isoformat(),
            "test_first_day": dataset.test_start.date().isoformat(),
            "test_last_day": iso_day(forecasts.target_dates[-1, -1]),
            **training,
            **score_forecasts(forecasts, config.model.type),
        }
        results.append(FoldResult(fold, model, dataset.scaler, forecasts, summary))
        report(None)
    return results, False


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
