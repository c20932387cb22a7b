"""Naive and drift baselines on a hand-made series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstm_forecast import baselines


def test_naive_repeats_each_rows_anchor():
    forecast = baselines.naive_forecast(np.array([100.0, 200.0]), horizon=3)
    np.testing.assert_array_equal(forecast, [[100, 100, 100], [200, 200, 200]])


def test_mean_log_return_of_a_steady_ten_percent_series():
    assert baselines.mean_log_return(np.array([100.0, 110.0, 121.0])) == pytest.approx(math.log(1.1))


def test_drift_compounds_the_training_mean_per_step():
    forecast = baselines.drift_forecast(np.array([100.0, 50.0]), horizon=2, mu=math.log(1.1))
    np.testing.assert_allclose(forecast, [[110.0, 121.0], [55.0, 60.5]])


def test_baselines_use_the_given_rows_and_training_drift():
    anchor = np.array([121.0, 100.0, 80.0])
    mu = baselines.mean_log_return(np.array([100.0, 110.0, 121.0]))
    np.testing.assert_array_equal(baselines.naive_forecast(anchor, 2)[:, 0], anchor)
    np.testing.assert_allclose(baselines.drift_forecast(anchor, 2, mu), anchor[:, None] * np.array([1.1, 1.21]))


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError):
        baselines.naive_forecast(np.array([100.0]), horizon=0)
    with pytest.raises(ValueError):
        baselines.mean_log_return(np.array([100.0, -1.0]))
    with pytest.raises(ValueError):
        baselines.drift_forecast(np.ones((2, 2)), horizon=1, mu=0.0)
