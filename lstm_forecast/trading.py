"""Trading diagnostic: would acting on the model's next-day calls have beaten simply holding?

A diagnostic of forecast usefulness, not investment advice. The rules, for n consecutive anchors:

  * Long/flat: at the close of anchor day t the strategy holds the stock for the next day if the
    step-1 predicted price is above the anchor price, otherwise it holds cash (earning nothing).
  * The day's return is actual[t, 0] / anchor[t] - 1, the true next-day move.
  * Both the strategy and buy-and-hold start in cash; every position change (entering or leaving)
    costs `cost_bps` basis points of equity, so buy-and-hold pays once, on entry. Nothing is charged
    to close out at the end: both are marked to market on the last day.
  * Sharpe ratio: mean / standard deviation (ddof 1) of daily net returns times sqrt(252), zero
    risk-free rate. Max drawdown: the largest fall from a running peak of equity, as a negative
    fraction (−0.2 = a 20% fall), the sign the tables and the cross-section's JSON use too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TRADING_DAYS_PER_YEAR = 252

DISCLAIMER = (
    "Diagnostic only, not investment advice: a long/flat backtest of the model's next-day calls on past "
    "prices, with a flat cost per position change and no slippage, taxes or market impact. "
    "Past results do not predict future returns."
)


@dataclass(frozen=True)
class StrategyResult:
    """One equity curve and its summary. `equity` has n+1 points: 1.0 at the first anchor's close,
    then the value at the close of each following day."""

    equity: np.ndarray
    daily_returns: np.ndarray
    trades: int
    days_in_market: int

    @property
    def cumulative_return(self) -> float:
        return float(self.equity[-1] - 1.0)

    @property
    def annualised_sharpe(self) -> float | None:
        """None with fewer than 2 days or returns that never vary."""
        if self.daily_returns.size < 2:
            return None
        spread = float(np.std(self.daily_returns, ddof=1))
        if spread == 0 or not math.isfinite(spread):
            return None
        return float(np.mean(self.daily_returns) / spread * math.sqrt(TRADING_DAYS_PER_YEAR))

    @property
    def max_drawdown(self) -> float:
        """The largest fall from a running peak, as a negative fraction (0.0 when equity never falls)."""
        running_peak = np.maximum.accumulate(self.equity)
        return float(np.min(self.equity / running_peak - 1.0))

    def summary(self) -> dict:
        return {
            "cumulative_return": self.cumulative_return,
            "annualised_sharpe": self.annualised_sharpe,
            "max_drawdown": self.max_drawdown,
            "trades": self.trades,
            "days_in_market": self.days_in_market,
        }


@dataclass(frozen=True)
class TradingDiagnostic:
    """The long/flat strategy beside buy-and-hold over the same days."""

    strategy: StrategyResult
    buy_and_hold: StrategyResult
    positions: np.ndarray
    cost_bps: float
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict:
        """JSON-ready summary (the equity curves are drawn in equity.png, not stored)."""
        return {
            "disclaimer": self.disclaimer,
            "days": int(self.positions.size),
            "cost_bps": float(self.cost_bps),
            "strategy": self.strategy.summary(),
            "buy_and_hold": self.buy_and_hold.summary(),
        }


def _run(positions: np.ndarray, asset_returns: np.ndarray, cost: float) -> StrategyResult:
    """Equity of holding `positions` (1 long, 0 cash) over `asset_returns`, paying `cost` per change."""
    changes = np.abs(np.diff(positions, prepend=0.0))
    growth = (1.0 + positions * asset_returns) * (1.0 - cost) ** changes
    equity = np.concatenate([[1.0], np.cumprod(growth)])
    return StrategyResult(equity, growth - 1.0, int(changes.sum()), int(positions.sum()))


def _first_step(prices: np.ndarray) -> np.ndarray:
    prices = np.asarray(prices, dtype=float)
    return prices[:, 0] if prices.ndim == 2 else prices


def trading_diagnostic(
    anchor_prices: np.ndarray, actual: np.ndarray, predicted: np.ndarray, cost_bps: float = 5.0
) -> TradingDiagnostic:
    """Backtest the step-1 calls over consecutive anchors; `actual`/`predicted` are (n, horizon) or (n,)."""
    anchor = np.asarray(anchor_prices, dtype=float)
    next_actual, next_predicted = _first_step(actual), _first_step(predicted)
    if not (anchor.ndim == 1 and anchor.size > 0 and anchor.shape == next_actual.shape == next_predicted.shape):
        raise ValueError(f"anchor_prices {anchor.shape}, actual and predicted must describe the same non-empty windows")
    if not (np.all(anchor > 0) and np.all(np.isfinite(next_actual)) and np.all(np.isfinite(next_predicted))):
        raise ValueError("prices must be finite and anchor prices positive")
    if cost_bps < 0:
        raise ValueError(f"cost_bps must be >= 0, got {cost_bps}")

    asset_returns = next_actual / anchor - 1.0
    cost = cost_bps / 10_000
    positions = (next_predicted > anchor).astype(float)
    return TradingDiagnostic(
        strategy=_run(positions, asset_returns, cost),
        buy_and_hold=_run(np.ones_like(asset_returns), asset_returns, cost),
        positions=positions.astype(int),
        cost_bps=float(cost_bps),
    )
