"""Scoring a period: the model's price forecasts beside the naive and drift forecasts on the same windows.

Training scores its validation and test periods with these functions, and evaluate and the backtest score
theirs with them too, so a number means the same wherever it is printed. Every scored period is one JSON
block, the same in metrics.json, evaluation.json, backtest folds and compare.json:

    {"windows", "first_anchor", "last_anchor",
     "metrics": {"model" | "naive" | "drift": {"all" | "h1": metrics.score(...)}},
     "vs_naive": metrics.compare_to_naive(...), "verdict": "LSTM is better than the random walk (...)"}

Interval calibration lives here as well: it is the validation period's residuals, never the test period's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast import baselines, metrics
from lstm_forecast.metrics import FORECASTS
from lstm_forecast.trainer import predict
from lstm_forecast.windows import Dataset, Windows


@dataclass
class PeriodForecasts:
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
    def concat(cls, parts: list[PeriodForecasts]) -> PeriodForecasts:
        names = ("anchor_dates", "target_dates", "anchor_prices", "actual", *FORECASTS)
        return cls(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in names})


def member_predictions(members: Sequence[Any], period: Windows) -> list[np.ndarray]:
    """Each member's scaled forecasts (n, horizon) for the period's windows."""
    return [predict(member, period.model_inputs) for member in members]


def ticker_forecasts(dataset: Dataset, period: Windows, scaled: np.ndarray) -> dict[str, PeriodForecasts]:
    """Per ticker, the forecasts `scaled` (a model's, or the mean of a seed ensemble's, in scaled units) as prices
    beside the naive and drift forecasts from the same anchors."""
    model_prices = dataset.to_prices(period, scaled)  # scored on prices converted back from the model's output
    horizon = dataset.spec.horizon
    forecasts = {}
    for days in dataset.tickers:
        rows = period.of(days.index)
        anchors = period.anchor_prices[rows]
        forecasts[days.ticker] = PeriodForecasts(
            anchor_dates=period.anchor_dates[rows], target_dates=period.target_dates[rows], anchor_prices=anchors,
            actual=period.actual_prices[rows], model=model_prices[rows],
            naive=baselines.naive_forecast(anchors, horizon),
            # The drift is the ticker's own training-period mean return: the evaluation period's would peek.
            drift=baselines.drift_forecast(anchors, horizon, days.train_mean_log_return),
        )
    return forecasts


def period_forecasts(model: Any, windows: Windows, dataset: Dataset) -> PeriodForecasts:
    """A single-ticker dataset's forecasts for a period beside the naive and drift forecasts."""
    return ticker_forecasts(dataset, windows, predict(model, windows.model_inputs))[dataset.only.ticker]


def score_forecasts(forecasts: PeriodForecasts, kind: str) -> dict[str, Any]:
    """The period's scores block (see the top): model, naive and drift metrics on prices over the same
    windows, the tests against naive, and the verdict on the `kind` of model."""
    truth = (forecasts.anchor_prices, forecasts.actual)
    scores = {name: metrics.score(*truth, getattr(forecasts, name), forecasts.naive) for name in FORECASTS}
    vs_naive = metrics.compare_to_naive(*truth, forecasts.model, forecasts.naive, forecasts.actual.shape[1])
    verdict = metrics.verdict(vs_naive["dm_all"]["pvalue"], scores["model"]["all"]["rmse_ratio"])
    return {
        "windows": len(forecasts),
        "first_anchor": iso_day(forecasts.anchor_dates[0]),
        "last_anchor": iso_day(forecasts.anchor_dates[-1]),
        "metrics": scores,
        "vs_naive": vs_naive,
        "verdict": f"{kind.upper()} is {verdict}",
    }


def log_loss_differential(forecasts: PeriodForecasts) -> np.ndarray:
    """Per window (n,): the model's mean squared log-price error over the horizon minus naive's. Scale-free,
    so a $5 and a $500 stock weigh alike when a universe pools these day by day (metrics.pooled_dm)."""
    model_error = np.log(forecasts.model / forecasts.actual) ** 2
    naive_error = np.log(forecasts.naive / forecasts.actual) ** 2
    return (model_error - naive_error).mean(axis=1)


def calibration(val: PeriodForecasts) -> dict[str, Any]:
    """Validation residuals in log-price space per horizon step, for split-conformal intervals.

    A residual log(actual / forecast) does not depend on the price level, so intervals calibrated
    on last year's prices transfer to today's. The test split is never used here.
    """
    return {"method": "split-conformal", "space": "log_price", "source": "validation", "residuals": val_residuals(val)}


def val_residuals(forecasts: PeriodForecasts) -> list[list[float]]:
    """Validation residuals log(actual / forecast) per horizon day, for the ticker's conformal intervals."""
    residuals = np.log(forecasts.actual) - np.log(forecasts.model)
    return [[float(value) for value in residuals[:, step]] for step in range(residuals.shape[1])]


def iso_day(value: Any) -> str:
    """A day (datetime64, Timestamp or date) as YYYY-MM-DD."""
    return pd.Timestamp(value).date().isoformat()
