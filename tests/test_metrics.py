"""Metrics on hand-computed cases, the DM test against a direct formula, and the lag-copy diagnostic."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from lstm_forecast import baselines, metrics

# Two windows, horizon 2. Errors (predicted - actual): [[1, 0], [-1, 2]].
ACTUAL = np.array([[10.0, 12.0], [11.0, 13.0]])
PREDICTED = np.array([[11.0, 12.0], [10.0, 15.0]])
ANCHOR = np.array([10.5, 11.5])


def test_rmse_mae_mape_on_hand_case():
    # squared errors 1, 0, 1, 4 -> mean 1.5; absolute errors 1, 0, 1, 2 -> mean 1
    assert metrics.rmse(ACTUAL, PREDICTED) == pytest.approx(math.sqrt(1.5))
    assert metrics.mae(ACTUAL, PREDICTED) == pytest.approx(1.0)
    # percent errors 1/10, 0/12, 1/11, 2/13 averaged, times 100
    assert metrics.mape(ACTUAL, PREDICTED) == pytest.approx(100 * (0.1 + 0 + 1 / 11 + 2 / 13) / 4)


def test_mape_is_none_when_an_actual_price_is_zero():
    assert metrics.mape(np.array([0.0, 1.0]), np.array([1.0, 1.0])) is None


def test_mase_scales_each_step_by_naive_mae_on_the_same_windows():
    naive = np.repeat(ANCHOR[:, None], 2, axis=1)
    # naive's absolute errors: step 1 -> 0.5, 1.5 (MAE 1); step 2 -> 0.5, 1.5 (MAE 1)
    scaled = np.abs(PREDICTED - ACTUAL) / np.abs(naive - ACTUAL).mean(axis=0)
    assert metrics.mase(ACTUAL, PREDICTED, naive) == pytest.approx(scaled.mean())
    assert metrics.mase(ACTUAL, naive, naive) == 1.0
    assert metrics.mase(ACTUAL, PREDICTED, ACTUAL) is None  # a perfect "naive" leaves nothing to scale by


def test_mase_of_naive_is_one_whatever_the_price_level():
    # Ten years of a random walk that rises fifty-fold: the training period's one-step MAE in price units
    # is a fraction of the test period's, so a training-period scale would put naive near 50, not 1.
    rng = np.random.default_rng(5)
    prices = 10 * np.exp(np.cumsum(rng.normal(np.log(50) / 2500, 0.02, 2500)))
    test = prices[-500:]
    anchor, actual = test[:-3], np.stack([test[k : len(test) - 3 + k] for k in range(1, 4)], axis=1)
    naive = np.repeat(anchor[:, None], 3, axis=1)
    training_scale = baselines.naive_mae_scale(prices[:1500])
    assert metrics.mae(actual[:, 0], naive[:, 0]) / training_scale > 5  # what the old scale reported
    scores = metrics.score(anchor, actual, naive, naive)
    assert scores["h1"]["mase"] == pytest.approx(1.0) and scores["all"]["mase"] == pytest.approx(1.0)
    # A model that halves every error of naive is MASE 0.5 on day 1 at any level.
    halfway = (naive + actual) / 2
    assert metrics.score(anchor, actual, halfway, naive)["h1"]["mase"] == pytest.approx(0.5)


def test_rmse_ratio_of_naive_is_exactly_one_and_model_is_relative():
    naive = np.repeat(ANCHOR[:, None], 2, axis=1)
    assert metrics.rmse_ratio(ACTUAL, naive, naive) == 1.0
    # naive errors 0.5, 1.5, 0.5, 1.5 -> mean square 1.25
    assert metrics.rmse_ratio(ACTUAL, PREDICTED, naive) == pytest.approx(math.sqrt(1.5 / 1.25))


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError):
        metrics.rmse(ACTUAL, PREDICTED[:, :1])


def test_directional_accuracy_counts_zero_moves_as_documented():
    anchor = np.full(5, 10.0)
    actual = np.array([11.0, 9.0, 12.0, 10.0, 8.0])  # changes +1, -1, +2, 0 (no direction), -2
    predicted = np.array([10.5, 9.5, 9.0, 11.0, 10.0])  # +, -, - (wrong), ignored day, 0 (a miss)
    assert metrics.directional_counts(anchor, actual, predicted) == (2, 4, True)
    assert metrics.directional_accuracy(anchor, actual, predicted) == 0.5
    assert metrics.up_share(anchor, actual) == 0.5  # 2 of the 4 days that moved went up


def test_naive_has_no_directional_accuracy():
    anchor = np.array([10.0, 11.0])
    assert metrics.directional_accuracy(anchor, np.array([11.0, 10.0]), anchor) is None


def test_directional_accuracy_pools_horizon_steps_from_the_anchor():
    # step moves from anchor 10: actual +1, +2 / predicted +1, -1 -> 1 of 2
    accuracy = metrics.directional_accuracy(np.array([10.0]), np.array([[11.0, 12.0]]), np.array([[11.0, 9.0]]))
    assert accuracy == 0.5


def test_binomial_pvalue_seven_of_ten():
    # 2 * P(X >= 7), X ~ Bin(10, 0.5) = 2 * (120 + 45 + 10 + 1) / 1024
    assert metrics.binomial_pvalue(7, 10) == pytest.approx(352 / 1024)
    assert metrics.binomial_pvalue(0, 0) is None


def test_diebold_mariano_one_step_matches_direct_formula():
    loss_model = np.array([1.0, 2.0, 3.0, 4.0])
    loss_naive = np.full(4, 2.0)
    # d = [-1, 0, 1, 2], mean 0.5, gamma_0 = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    # DM = 0.5 / sqrt(1.25 / 4); HLN factor sqrt((4 + 1 - 2 + 0) / 4)
    expected = 0.5 / math.sqrt(1.25 / 4) * math.sqrt(3 / 4)
    statistic, pvalue = metrics.diebold_mariano(loss_model, loss_naive, horizon=1)
    assert statistic == pytest.approx(expected)
    assert pvalue == pytest.approx(2 * stats.t.sf(expected, df=3))


def test_diebold_mariano_two_steps_uses_hac_variance():
    differences = np.array([1.0, 3.0, 2.0, 0.0, -1.0, 1.0])
    # mean 1, centred [0, 2, 1, -1, -2, 0]; gamma_0 = 10/6, gamma_1 = (0 + 2 - 1 + 2 + 0)/6 = 0.5
    # long-run variance 10/6 + 2 * 0.5 = 8/3 -> var(mean) = 4/9 -> DM = 1.5
    # HLN factor sqrt((6 + 1 - 4 + 2/6) / 6) = sqrt(5/9)
    expected = 1.5 * math.sqrt(5 / 9)
    statistic, pvalue = metrics.diebold_mariano(differences, np.zeros(6), horizon=2)
    assert statistic == pytest.approx(expected)
    assert pvalue == pytest.approx(2 * stats.t.sf(expected, df=5))


def test_diebold_mariano_falls_back_to_lag_zero_variance_when_hac_is_negative():
    differences = np.array([2.0, 0.0, 2.0, 0.0, 2.0, 0.0])
    # centred +-1: gamma_0 = 1, gamma_1 = -5/6 -> 1 - 10/6 < 0, so var(mean) = 1/6
    expected = math.sqrt(6) * math.sqrt(5 / 9)
    statistic, _ = metrics.diebold_mariano(differences, np.zeros(6), horizon=2)
    assert statistic == pytest.approx(expected)


def test_diebold_mariano_degenerate_cases_do_not_crash():
    losses = np.array([1.0, 2.0, 3.0])
    assert metrics.diebold_mariano(losses, losses, horizon=2) == (0.0, 1.0)
    assert metrics.diebold_mariano(losses, losses + 1.0) == (None, None)
    assert metrics.diebold_mariano(np.array([1.0]), np.array([2.0])) == (None, None)


def test_diebold_mariano_sign_says_who_is_better():
    rng = np.random.default_rng(0)
    loss_naive = rng.uniform(1, 2, size=50)
    statistic, pvalue = metrics.diebold_mariano(loss_naive * 0.5, loss_naive)
    assert statistic < 0 and pvalue < 0.001


def _random_walk_windows(n: int = 60, horizon: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n + horizon)))
    anchor = prices[:n]
    actual = np.stack([prices[k : n + k] for k in range(1, horizon + 1)], axis=1)
    return anchor, actual, np.repeat(anchor[:, None], horizon, axis=1)


def test_score_layout_and_naive_reference_values():
    anchor, actual, naive = _random_walk_windows()
    result = metrics.score(anchor, actual, naive, naive)
    keys = {"rmse", "mae", "mape", "mase", "directional_accuracy", "rmse_ratio"}
    assert set(result) == {"h1", "all"} and set(result["h1"]) == keys and set(result["all"]) == keys
    assert result["h1"]["rmse_ratio"] == 1.0 and result["all"]["rmse_ratio"] == 1.0
    assert result["h1"]["directional_accuracy"] is None
    assert result["h1"]["rmse"] == pytest.approx(metrics.rmse(actual[:, 0], anchor))
    json.dumps(result, allow_nan=False)


def test_compare_to_naive_on_a_perfect_model():
    anchor, actual, naive = _random_walk_windows()
    result = metrics.compare_to_naive(anchor, actual, actual, naive, horizon=3)
    assert result["windows"] == 60 and result["horizon"] == 3 and result["dm_all"]["hac_lags"] == 2
    assert result["dm_h1"]["statistic"] < 0 and result["dm_h1"]["pvalue"] < 0.001
    assert result["dm_all"]["statistic"] < 0 and result["dm_all"]["pvalue"] < 0.01
    direction = result["direction_h1"]
    assert direction["hits"] == direction["trials"] == 60 and direction["accuracy"] == 1.0
    assert direction["binomial_pvalue"] == pytest.approx(2 * 0.5**60)
    assert direction["up_share"] == metrics.up_share(anchor, actual[:, 0])
    json.dumps(result, allow_nan=False)


def test_compare_to_naive_on_naive_itself():
    anchor, actual, naive = _random_walk_windows()
    result = metrics.compare_to_naive(anchor, actual, naive, naive, horizon=3)
    assert result["dm_h1"] == {"statistic": 0.0, "pvalue": 1.0}
    assert result["direction_h1"]["accuracy"] is None and result["direction_h1"]["binomial_pvalue"] is None
    with pytest.raises(ValueError):
        metrics.compare_to_naive(anchor, actual, naive, naive, horizon=5)


def test_verdict_phrases():
    assert metrics.verdict(0.41, 1.01) == "not distinguishable from the random walk (RMSE ratio 1.010, DM p = 0.41)"
    assert metrics.verdict(0.012, 0.93) == "better than the random walk (RMSE ratio 0.930, DM p = 0.012)"
    assert metrics.verdict(0.0001, 1.2).startswith("worse than the random walk (RMSE ratio 1.200, DM p < 0.001")
    assert metrics.verdict(None, 1.0).startswith("not comparable")


def _windows_from_returns(log_returns: np.ndarray):
    """Consecutive anchors from a return series: previous, anchor and next-day prices."""
    prices = 100 * np.exp(np.cumsum(log_returns))
    return prices[:-2], prices[1:-1], prices[2:]


def test_lag_copy_fires_on_a_model_that_repeats_yesterdays_move():
    previous, anchor, next_day = _windows_from_returns(np.random.default_rng(2).normal(0, 0.01, 300))
    echo = anchor + (anchor - previous)
    diagnostic = metrics.lag_copy_diagnostic(anchor, next_day[:, None], echo[:, None])
    assert diagnostic.best_lag == 1 and diagnostic.correlations[1] == pytest.approx(1.0)
    assert diagnostic.echoes_yesterday
    assert "echoes yesterday's move" in diagnostic.verdict
    assert set(diagnostic.correlations) == set(range(-3, 4))
    json.dumps(diagnostic.to_dict(), allow_nan=False)


def test_lag_copy_fires_on_a_forecast_that_is_the_price_shifted_one_day():
    _, anchor, next_day = _windows_from_returns(np.random.default_rng(3).normal(0, 0.01, 100))
    diagnostic = metrics.lag_copy_diagnostic(anchor, next_day, anchor)
    assert diagnostic.echoes_yesterday and diagnostic.best_lag is None
    assert "shifted by one day" in diagnostic.verdict


def test_lag_copy_stays_quiet_on_real_skill_in_ar1_returns():
    rng = np.random.default_rng(4)
    phi, shocks = 0.5, rng.normal(0, 0.01, 400)
    # AR(1) recursion is inherently sequential; 400 steps in a test is cheap
    returns = np.zeros_like(shocks)
    for t in range(1, shocks.size):
        returns[t] = phi * returns[t - 1] + shocks[t]
    previous, anchor, next_day = _windows_from_returns(returns)
    skill = anchor * np.exp(phi * np.log(anchor / previous))
    diagnostic = metrics.lag_copy_diagnostic(anchor, next_day, skill)
    assert diagnostic.correlations[0] > 0.3 and diagnostic.pvalues[0] < 0.001
    assert not diagnostic.echoes_yesterday
    assert "not a mere echo" in diagnostic.verdict


def test_lag_copy_sees_a_perfect_forecast_at_lag_zero():
    _, anchor, next_day = _windows_from_returns(np.random.default_rng(5).normal(0, 0.01, 100))
    diagnostic = metrics.lag_copy_diagnostic(anchor, next_day, next_day)
    assert diagnostic.best_lag == 0 and not diagnostic.echoes_yesterday
