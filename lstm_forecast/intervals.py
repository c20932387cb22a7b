"""Split-conformal prediction intervals, calibrated on validation residuals.

A residual is r = log(actual / forecast) for one horizon step. For a level L (say 80%), the
conformal quantile is the ceil((n + 1) * L)-th smallest |r| of the n validation residuals; the
interval is forecast * exp(±q). If validation and future errors are exchangeable, the interval
covers the truth with probability at least L. Markets drift between regimes, so that promise is
checked, not assumed: `coverage` measures it on the test split and `evaluate` reports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lstm_forecast.errors import ForecastError, UsageError


def conformal_quantiles(residuals: Sequence[Sequence[float]], level: float) -> np.ndarray:
    """Half-widths q (log-price units) per horizon step for a level in percent (0, 100).

    The widths are made non-decreasing with the horizon: uncertainty about day 5 cannot be smaller
    than about day 1, and a dip would only be sampling noise of the finite validation set.
    """
    if not 0 < level < 100:
        raise UsageError(f"--level {level:g}: expected a percentage between 0 and 100, e.g. 80 or 95")
    widths = []
    for step_residuals in residuals:
        magnitudes = np.sort(np.abs(np.asarray(step_residuals, dtype=float)))
        n = magnitudes.size
        rank = math.ceil((n + 1) * level / 100)
        if rank > n:
            needed = math.ceil(100 / (100 - level)) - 1
            raise ForecastError(
                f"a {level:g}% interval needs at least {needed} validation windows, the run has {n}; "
                "choose a lower --level or train on a longer history"
            )
        widths.append(magnitudes[rank - 1])
    return np.maximum.accumulate(np.asarray(widths))


def interval_bounds(forecast: np.ndarray, half_widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper prices for forecasts (..., horizon) and half-widths (horizon,)."""
    factor = np.exp(np.asarray(half_widths, dtype=float))
    return forecast / factor, forecast * factor


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict[str, float | list[float]]:
    """Share of actual prices inside [lower, upper], per horizon step and over all steps."""
    inside = (actual >= lower) & (actual <= upper)
    return {"all": float(inside.mean()), "per_step": [float(value) for value in inside.mean(axis=0)]}
