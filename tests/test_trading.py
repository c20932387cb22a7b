"""The long/flat trading diagnostic on a hand-computed four-day case."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lstm_forecast import trading

# Prices 100 -> 110 -> 121 -> 108.9 -> 119.79: daily moves +10%, +10%, -10%, +10%.
PRICES = np.array([100.0, 110.0, 121.0, 108.9, 119.79])
ANCHOR, NEXT_DAY = PRICES[:-1], PRICES[1:]
# Calls: up, down, up, up -> positions 1, 0, 1, 1 -> changes from cash: in, out, in, hold = 3 trades.
PREDICTED = ANCHOR * np.array([1.01, 0.99, 1.01, 1.01])


def test_strategy_on_hand_case_with_costs_per_change():
    result = trading.trading_diagnostic(ANCHOR, NEXT_DAY[:, None], PREDICTED[:, None], cost_bps=10)
    keep = 1 - 0.001  # 10 bps of equity per change
    np.testing.assert_array_equal(result.positions, [1, 0, 1, 1])
    assert result.strategy.trades == 3 and result.strategy.days_in_market == 3
    expected_equity = np.cumprod([1.0, 1.1 * keep, keep, 0.9 * keep, 1.1])
    np.testing.assert_allclose(result.strategy.equity, expected_equity)
    assert result.strategy.cumulative_return == pytest.approx(1.1 * 0.9 * 1.1 * keep**3 - 1)
    # peak after day 1, trough after day 3: a fall of 1 - keep * 0.9 * keep, negative as in every table
    assert result.strategy.max_drawdown == pytest.approx(keep * 0.9 * keep - 1)
    daily = np.array([1.1 * keep, keep, 0.9 * keep, 1.1]) - 1
    expected_sharpe = daily.mean() / daily.std(ddof=1) * math.sqrt(252)
    assert result.strategy.annualised_sharpe == pytest.approx(expected_sharpe)


def test_buy_and_hold_equals_the_price_ratio():
    free = trading.trading_diagnostic(ANCHOR, NEXT_DAY, PREDICTED, cost_bps=0)
    assert free.buy_and_hold.cumulative_return == pytest.approx(PRICES[-1] / PRICES[0] - 1)
    assert free.buy_and_hold.max_drawdown == pytest.approx(-0.1)  # 121 -> 108.9
    charged = trading.trading_diagnostic(ANCHOR, NEXT_DAY, PREDICTED, cost_bps=10)
    assert charged.buy_and_hold.trades == 1
    assert charged.buy_and_hold.equity[-1] == pytest.approx(PRICES[-1] / PRICES[0] * (1 - 0.001))


def test_flat_strategy_has_no_sharpe_and_no_drawdown():
    result = trading.trading_diagnostic(ANCHOR, NEXT_DAY, ANCHOR * 0.9)
    assert result.strategy.trades == 0 and result.strategy.cumulative_return == 0.0
    assert result.strategy.annualised_sharpe is None and result.strategy.max_drawdown == 0.0


def test_to_dict_is_json_ready_and_carries_the_disclaimer():
    diagnostic = trading.trading_diagnostic(ANCHOR, NEXT_DAY, PREDICTED)
    summary = diagnostic.to_dict()
    assert "not investment advice" in summary["disclaimer"]
    assert summary["days"] == 4 and summary["cost_bps"] == 5.0
    assert len(diagnostic.strategy.equity) == len(diagnostic.buy_and_hold.equity) == 5  # what equity.png draws
    json.dumps(summary, allow_nan=False)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError):
        trading.trading_diagnostic(ANCHOR, NEXT_DAY[:3], PREDICTED)
    with pytest.raises(ValueError):
        trading.trading_diagnostic(ANCHOR, NEXT_DAY, PREDICTED, cost_bps=-1)
