"""Conformal intervals: quantile ranks on a hand-made residual set, ordering, widening, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.intervals import conformal_quantiles, coverage, interval_bounds


def test_conformal_quantile_is_the_finite_sample_rank():
    # |r| sorted: 0.01 .. 0.09 (n = 9). Level 80: rank ceil(10 * 0.8) = 8 -> 0.08.
    residuals = [[0.05, -0.01, 0.09, -0.03, 0.02, -0.08, 0.07, 0.04, -0.06]]
    assert conformal_quantiles(residuals, 80) == pytest.approx([0.08])
    # Level 50: rank ceil(10 * 0.5) = 5 -> 0.05.
    assert conformal_quantiles(residuals, 50) == pytest.approx([0.05])


def test_widths_never_shrink_with_the_horizon():
    residuals = [[0.01, 0.02, 0.03, 0.04], [0.01, 0.01, 0.01, 0.01], [0.05, 0.06, 0.07, 0.08]]
    widths = conformal_quantiles(residuals, 50)
    # n = 4, rank ceil(5 * 0.5) = 3: 0.03, 0.01 (raised to 0.03), 0.07.
    assert widths.tolist() == pytest.approx([0.03, 0.03, 0.07])


def test_too_few_windows_for_the_level_is_a_clear_error():
    with pytest.raises(ForecastError, match="needs at least 19 validation windows, the run has 9"):
        conformal_quantiles([[0.01] * 9], 95)
    with pytest.raises(UsageError, match="between 0 and 100"):
        conformal_quantiles([[0.01] * 9], 100)


def test_bounds_order_and_wider_at_higher_level():
    rng = np.random.default_rng(0)
    residuals = rng.normal(0, 0.02, size=(3, 200)) * np.array([[1.0], [1.5], [2.0]])
    forecast = np.array([100.0, 101.0, 102.0])
    low80, high80 = interval_bounds(forecast, conformal_quantiles(residuals, 80))
    low95, high95 = interval_bounds(forecast, conformal_quantiles(residuals, 95))
    assert np.all(low95 < low80) and np.all(low80 < forecast) and np.all(forecast < high80)
    assert np.all(high80 < high95)
    assert np.all(np.diff(np.log(high95 / forecast)) >= 0)


def test_coverage_counts_inside_per_step():
    actual = np.array([[1.0, 5.0], [2.0, 2.0]])
    lower = np.array([[0.0, 0.0], [0.0, 3.0]])
    upper = np.array([[2.0, 4.0], [2.0, 4.0]])
    result = coverage(actual, lower, upper)
    assert result["per_step"] == [1.0, 0.0]
    assert result["all"] == 0.5


def test_calibrated_intervals_cover_exchangeable_data():
    rng = np.random.default_rng(1)
    calibration = rng.standard_t(4, size=(1, 2000)) * 0.02
    future = rng.standard_t(4, size=(20000, 1)) * 0.02
    low, high = interval_bounds(np.ones((20000, 1)), conformal_quantiles(calibration, 80))
    assert coverage(np.exp(future), low, high)["all"] == pytest.approx(0.80, abs=0.02)
