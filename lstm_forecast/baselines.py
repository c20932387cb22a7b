"""The two forecasts every model must beat, built on exactly the model's evaluation rows.

Both take the same `anchor_prices` (n,) the model forecast from and return prices (n, horizon),
so every metric compares like with like:

    naive  the random walk: tomorrow and every later step equal the last known price
    drift  the random walk with drift: anchor * exp(mu * k) at step k, mu = the mean daily log
           return of the training period (never of the evaluation period: that would peek)
"""

from __future__ import annotations

import numpy as np


def _anchors(anchor_prices: np.ndarray, horizon: int) -> np.ndarray:
    anchor = np.asarray(anchor_prices, dtype=float)
    if anchor.ndim != 1:
        raise ValueError(f"anchor_prices must be 1-D, got shape {anchor.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return anchor


def naive_forecast(anchor_prices: np.ndarray, horizon: int) -> np.ndarray:
    """The last known price for every step: (n, horizon)."""
    anchor = _anchors(anchor_prices, horizon)
    return np.repeat(anchor[:, None], horizon, axis=1)


def mean_log_return(train_prices: np.ndarray) -> float:
    """Mean daily log return of a training price series (the drift's mu)."""
    prices = np.asarray(train_prices, dtype=float)
    if prices.ndim != 1 or prices.size < 2 or np.any(prices <= 0):
        raise ValueError("train_prices must be a 1-D series of at least 2 positive prices")
    return float(np.mean(np.diff(np.log(prices))))


def drift_forecast(anchor_prices: np.ndarray, horizon: int, mu: float) -> np.ndarray:
    """anchor * exp(mu * k) for steps k = 1..horizon: (n, horizon)."""
    anchor = _anchors(anchor_prices, horizon)
    steps = np.arange(1, horizon + 1)
    return anchor[:, None] * np.exp(mu * steps)[None, :]


def naive_mae_scale(train_prices: np.ndarray) -> float:
    """In-sample MAE of the one-step random walk over the training prices (recorded in bundles; MASE now
    scales by the naive MAE of the period it scores, see metrics.mase)."""
    prices = np.asarray(train_prices, dtype=float)
    if prices.ndim != 1 or prices.size < 2:
        raise ValueError("train_prices must be a 1-D series of at least 2 prices")
    return float(np.mean(np.abs(np.diff(prices))))
