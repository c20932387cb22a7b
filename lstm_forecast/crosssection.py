"""Cross-sectional evaluation of a global model: does it rank tomorrow's moves across tickers?

Every input frame has one row per anchor day (a sorted DatetimeIndex) and one column per ticker; NaN
means the ticker has no window that day. `predicted` is the forecast next-day log return made on the
anchor day, `realised` the next-day log return that followed, `last_return` the log return on the anchor
day itself (known when forecasting), and `train_mean` each ticker's mean daily log return over its own
training period.

  * Daily rank IC: the Spearman correlation between a score and the realised return across the tickers
    that have both that day; a day with fewer than `min_tickers` of them, or a constant score, is skipped.
  * Its summary: mean, ICIR and a t statistic on a Newey–West (Bartlett) standard error, because daily
    ICs of one slowly changing model are autocorrelated and the iid standard error would be too small.
  * Baselines: the ticker's train mean (a pooled model rescales its output with it, so the model inherits
    its ranking), short-term reversal (score = minus the anchor day's return) and, for a global run, the linear
    baseline: a ridge on the model's own windows (linear.py). The model's partial IC beyond the train mean and
    beyond the linear baseline says what it ranks that they do not.
  * Seed agreement: for an ensemble, the mean daily rank correlation between each pair of members' forecasts
    and between each member and the ensemble (1: the seeds rank alike; near 0: each seed ranks its own way).
  * Long–short: long the k highest scores, short the k lowest, equal weights, a cost on turnover; rebalanced
    daily, and beside it held N days (each day's book takes 1/N of the capital and is kept N days), which
    trades a slower book for less turnover.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lstm_forecast.metrics import p_phrase
from lstm_forecast.trading import TRADING_DAYS_PER_YEAR

MIN_TICKERS = 5  # fewer tickers than this make a day's rank correlation mostly noise
FEWEST_TICKERS = 3  # a rank correlation of two values is always ±1
ALPHA = 0.05
# A partial correlation divides by sqrt(1 - r²): closer to a perfect correlation with the control than
# this, the forecast ranks like the control and the partial IC is undefined.
COLLINEAR = 1e-9

DIAGNOSTIC_NOTE = "A diagnostic, not advice: equal weights, cost on turnover only, no borrow costs or capacity."
SURVIVOR_NOTE = "If the tickers are today's index members, past returns are flattered by survivor bias."


def _finite(value: Any) -> float | None:
    """A plain float, or None for NaN, infinity or None (JSON has neither)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --- rank information coefficient ------------------------------------------------------------------


def _row_spearman(x: pd.DataFrame, y: pd.DataFrame, mask: pd.DataFrame, min_tickers: int) -> pd.Series:
    """Per row, the Spearman correlation of x and y over the cells in `mask`: the Pearson correlation of
    their average ranks, all rows at once. NaN for a row with fewer than `min_tickers` cells or constant ranks."""
    rank_x, rank_y = x.where(mask).rank(axis=1), y.where(mask).rank(axis=1)
    centred_x = rank_x.sub(rank_x.mean(axis=1), axis=0)
    centred_y = rank_y.sub(rank_y.mean(axis=1), axis=0)
    # Ranks are half-integers and their mean is (n + 1) / 2 exactly, so a constant row centres to exact zeros.
    var_x, var_y = (centred_x**2).sum(axis=1), (centred_y**2).sum(axis=1)
    valid = (mask.sum(axis=1) >= min_tickers) & (var_x > 0) & (var_y > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = (centred_x * centred_y).sum(axis=1) / np.sqrt(var_x * var_y)
    return correlation.clip(-1.0, 1.0).where(valid)


def _check_min_tickers(min_tickers: int) -> None:
    if min_tickers < FEWEST_TICKERS:
        raise ValueError(f"min_tickers must be at least {FEWEST_TICKERS}, got {min_tickers}")


def rank_ic(scores: pd.DataFrame, realised: pd.DataFrame, min_tickers: int = MIN_TICKERS) -> pd.Series:
    """Daily Spearman rank IC of `scores` against `realised` over the tickers with both values; skipped
    days (too few tickers, constant ranks) are left out."""
    _check_min_tickers(min_tickers)
    scores = scores.reindex(index=realised.index, columns=realised.columns)
    mask = scores.notna() & realised.notna()
    return _row_spearman(scores, realised, mask, min_tickers).dropna().rename("ic")


def partial_rank_ic(
    scores: pd.DataFrame, realised: pd.DataFrame, control: pd.DataFrame, min_tickers: int = MIN_TICKERS
) -> pd.Series:
    """Daily partial rank IC of `scores` and `realised` controlling for `control`, over the tickers that have
    all three: (r_xy − r_xz r_yz) / sqrt((1 − r_xz²)(1 − r_yz²)) with Spearman r's of that day.

    Why partial rather than the IC of the residual of the score on the control: it removes the control's
    ranking from both sides, so a forecast that is the train mean plus noise scores ≈ 0, and it needs no
    regression per day. A score that ranks exactly like the control (|r_xz| = 1) has no partial IC that day.
    """
    _check_min_tickers(min_tickers)
    scores = scores.reindex(index=realised.index, columns=realised.columns)
    control = control.reindex(index=realised.index, columns=realised.columns)
    mask = scores.notna() & realised.notna() & control.notna()
    r_xy = _row_spearman(scores, realised, mask, min_tickers)
    r_xz = _row_spearman(scores, control, mask, min_tickers)
    r_yz = _row_spearman(realised, control, mask, min_tickers)
    denominator = (1.0 - r_xz**2) * (1.0 - r_yz**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = (r_xy - r_xz * r_yz) / np.sqrt(denominator)
    return partial.where(denominator > COLLINEAR).clip(-1.0, 1.0).dropna().rename("partial_ic")


def newey_west_lags(days: int) -> int:
    """The Newey–West (1994) rule of thumb: floor(4 (T/100)^(2/9))."""
    return math.floor(4.0 * (days / 100.0) ** (2.0 / 9.0))


def newey_west_se(values: np.ndarray | pd.Series, lags: int) -> float | None:
    """Newey–West standard error of the mean: sqrt(lrv / T), lrv = γ0 + 2 Σ_{k=1..L} (1 − k/(L+1)) γk (Bartlett
    weights), γk the lag-k autocovariance with divisor T. Bartlett weights keep lrv ≥ 0 in exact arithmetic; one
    that rounds to ≤ 0 falls back to γ0. None for fewer
    than 2 values or non-finite ones; lags beyond T − 1 are cut to T − 1."""
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    values = np.asarray(values, dtype=float)
    count = values.size
    if count < 2 or not np.all(np.isfinite(values)):
        return None
    centred = values - values.mean()
    lags = min(lags, count - 1)
    autocovariances = np.array([centred[k:] @ centred[: count - k] for k in range(lags + 1)]) / count
    weights = 1.0 - np.arange(1, lags + 1) / (lags + 1)
    long_run_variance = autocovariances[0] + 2.0 * weights @ autocovariances[1:]
    if long_run_variance <= 0:
        long_run_variance = autocovariances[0]
    return float(math.sqrt(long_run_variance / count))


def ic_summary(ic: pd.Series, lags: int | None = None) -> dict[str, Any]:
    """days, mean, std (ddof 1), icir (mean/std), positive_share, hac_se (Newey–West, `lags` or the 1994 rule),
    t (mean/hac_se), two-sided pvalue (Student t, T − 1 df) and lags. Fewer than 3 days or ICs that never vary:
    the spread-based fields are None (mean and positive_share stay where there is at least one day)."""
    values = pd.Series(ic, dtype=float).dropna().to_numpy()
    days = int(values.size)
    summary: dict[str, Any] = {
        "days": days, "mean": None, "std": None, "icir": None, "positive_share": None,
        "hac_se": None, "t": None, "pvalue": None, "lags": None,
    }
    if days:
        summary["mean"] = _finite(values.mean())
        summary["positive_share"] = _finite(np.mean(values > 0))
    if days < 3:
        return summary
    std = float(np.std(values, ddof=1))
    summary["std"] = _finite(std)
    if std == 0:
        return summary
    lags = newey_west_lags(days) if lags is None else lags
    hac_se = newey_west_se(values, lags)
    summary.update(icir=_finite(values.mean() / std), lags=min(lags, days - 1), hac_se=_finite(hac_se))
    if hac_se:
        t = values.mean() / hac_se
        summary.update(t=_finite(t), pvalue=_finite(2.0 * stats.t.sf(abs(t), df=days - 1)))
    return summary


# --- long–short diagnostic -------------------------------------------------------------------------


def long_short(scores: pd.DataFrame, realised: pd.DataFrame, k: int, cost_bps: float, hold: int = 1) -> pd.DataFrame:
    """Daily returns of the top-k minus bottom-k portfolio by `scores`, equal weights ±1/k.

    Columns gross, turnover, cost, net; one row per day traded. A day with fewer than 2k tickers holding
    both a score and a realised return is not traded: no position, left out of the rows. Gross is the mean
    simple return (expm1 of the log return) of the longs minus that of the shorts; turnover Σ|w_t − w_{t−1}|
    against the previous anchor day's weights (2 on the first day and on the first day back after a day
    out; closing the book on the day out is not charged); cost = cost_bps/1e4 × turnover; net = gross − cost.
    Ties break by ticker name (rank "first" on sorted columns), so the result never depends on the column order.

    `hold` N > 1: each day's book takes 1/N of the capital and is kept N days, so the position is the sum of the
    last N days' books over N (a day not traded adds an empty book); a day is in the rows while any of those
    books is held. N = 1 is the daily rebalanced book above.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if hold < 1:
        raise ValueError(f"hold must be >= 1, got {hold}")
    realised = realised.sort_index(axis=1)
    scores = scores.reindex(index=realised.index, columns=realised.columns)
    mask = scores.notna() & realised.notna()
    present = mask.sum(axis=1)
    traded = present >= 2 * k
    ranks = scores.where(mask).rank(axis=1, method="first")  # NaN outside the mask: never long nor short
    longs, shorts = ranks.gt(present - k, axis=0), ranks.le(k)
    books = ((longs.astype(float) - shorts.astype(float)) / k).mul(traded, axis=0)
    weights = books.rolling(hold, min_periods=1).sum() / hold
    held = traded.astype(float).rolling(hold, min_periods=1).max() > 0
    turnover = weights.diff().fillna(weights).abs().sum(axis=1)
    # An older book may hold a ticker that has no score today: its realised return still counts.
    gross = (weights * np.expm1(realised).fillna(0.0)).sum(axis=1)
    cost = cost_bps / 1e4 * turnover
    daily = pd.DataFrame({"gross": gross, "turnover": turnover, "cost": cost, "net": gross - cost})
    return daily[held]


def market(realised: pd.DataFrame) -> pd.DataFrame:
    """The equal-weight long-only benchmark: each day the mean simple return of every ticker with a realised
    return, no turnover and no cost (the same columns as `long_short`)."""
    gross = np.expm1(realised).mean(axis=1).dropna()
    zero = pd.Series(0.0, index=gross.index)
    return pd.DataFrame({"gross": gross, "turnover": zero, "cost": zero, "net": gross})


def annualised_sharpe(net: np.ndarray | pd.Series) -> tuple[float | None, float | None]:
    """(Sharpe, its standard error), both annualised by √252: mean/std (ddof 1) of daily returns, and Lo's
    (2002) iid standard error sqrt((1 + SR_d²/2) / T) of the daily ratio SR_d. None with fewer than 2 days
    or returns that never vary."""
    values = np.asarray(net, dtype=float)
    if values.size < 2:
        return None, None
    spread = float(np.std(values, ddof=1))
    if spread == 0 or not math.isfinite(spread):
        return None, None
    daily = float(values.mean()) / spread
    scale = math.sqrt(TRADING_DAYS_PER_YEAR)
    return _finite(daily * scale), _finite(math.sqrt((1.0 + daily**2 / 2.0) / values.size) * scale)


def max_drawdown(equity: np.ndarray | pd.Series) -> float | None:
    """The largest fall from a running peak of an equity curve that starts at 1.0 (the start counts as a
    peak), as a negative fraction: −0.12 is a 12 % fall. None for an empty curve."""
    values = np.concatenate([[1.0], np.asarray(equity, dtype=float)])
    if values.size == 1:
        return None
    return _finite(np.min(values / np.maximum.accumulate(values) - 1.0))


def strategy_stats(daily: pd.DataFrame) -> dict[str, Any]:
    """days, mean_daily (net), mean_daily_gross, std_daily, sharpe ± sharpe_se (annualised), max_drawdown,
    mean_turnover and total_return of one strategy's daily frame (`long_short` or `market`)."""
    net = daily["net"].to_numpy(dtype=float)
    equity = np.cumprod(1.0 + net)
    sharpe, sharpe_se = annualised_sharpe(net)
    return {
        "days": int(net.size),
        "mean_daily": _finite(net.mean()) if net.size else None,
        "mean_daily_gross": _finite(daily["gross"].mean()) if net.size else None,
        "std_daily": _finite(np.std(net, ddof=1)) if net.size > 1 else None,
        "sharpe": sharpe,
        "sharpe_se": sharpe_se,
        "max_drawdown": max_drawdown(equity),
        "mean_turnover": _finite(daily["turnover"].mean()) if net.size else None,
        "total_return": _finite(equity[-1] - 1.0) if net.size else None,
    }


# --- seed agreement --------------------------------------------------------------------------------


def seed_agreement(
    members: Mapping[str, pd.DataFrame], ensemble: pd.DataFrame, min_tickers: int = MIN_TICKERS
) -> dict[str, Any]:
    """How alike the members rank the tickers: the mean over days of the daily Spearman correlation between each
    pair of members' forecasts, and between each member and the ensemble; `pairwise` and `with_ensemble` are the
    means of those means (None where no day has `min_tickers` tickers to rank)."""
    def agreement(first: pd.DataFrame, second: pd.DataFrame) -> dict[str, Any]:
        daily = rank_ic(first, second, min_tickers)
        return {"mean": _finite(daily.mean()) if len(daily) else None, "days": len(daily)}

    pairs = [{"members": [a, b], **agreement(members[a], members[b])} for a, b in combinations(members, 2)]
    each = [{"label": label, **agreement(frame, ensemble)} for label, frame in members.items()]

    def mean_of(rows: list[dict[str, Any]]) -> float | None:
        values = [row["mean"] for row in rows if row["mean"] is not None]
        return _finite(np.mean(values)) if values else None

    return {"pairwise": mean_of(pairs), "with_ensemble": mean_of(each), "pairs": pairs, "members": each}


# --- everything together ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossSection:
    """The cross-sectional evaluation: daily series for the plots and the summaries for the report.

    `equity`: one column per daily rebalanced strategy (model, linear where there is one, reversal, train_mean,
    market) and the model held `hold` days ("model_held", where hold > 1), growth of 1 compounded from the net
    daily returns; a day a strategy did not trade carries its last value. `held`: the strategies' summaries held
    `hold` days (empty when hold is 1). `seed_agreement`: None for a single model.
    """

    days: int
    tickers_per_day: dict[str, float | None]
    daily_ic: pd.Series
    daily_partial_ic: pd.Series
    ic: dict[str, dict[str, Any]]
    members: list[dict[str, Any]]
    k: int
    cost_bps: float
    daily: dict[str, pd.DataFrame]
    strategies: dict[str, dict[str, Any]]
    equity: pd.DataFrame
    verdict: str
    notes: list[str] = field(default_factory=list)
    hold: int = 1
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed_agreement: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, ints, strings and None (never NaN or infinity)."""
        return {
            "days": self.days,
            "tickers_per_day": dict(self.tickers_per_day),
            "ic": {name: dict(summary) for name, summary in self.ic.items()},
            "members": [dict(member) for member in self.members],
            "seed_agreement": self.seed_agreement,
            "long_short": {
                "k": self.k,
                "cost_bps": float(self.cost_bps),
                "strategies": {name: dict(result) for name, result in self.strategies.items()},
                "hold": self.hold,
                "held": {name: dict(result) for name, result in self.held.items()},
            },
            "verdict": self.verdict,
            "notes": list(self.notes),
        }


def _broadcast(values: pd.Series, like: pd.DataFrame) -> pd.DataFrame:
    """A per-ticker constant as a frame shaped like `like` (NaN for a ticker it lacks)."""
    row = values.reindex(like.columns).to_numpy(dtype=float)
    return pd.DataFrame(np.broadcast_to(row, like.shape), index=like.index, columns=like.columns)


def _significant(summary: dict[str, Any]) -> bool:
    return summary["pvalue"] is not None and summary["pvalue"] < ALPHA


def _ic_sentence(summary: dict[str, Any]) -> str:
    if summary["t"] is None:
        return (f"Too few test days with at least the minimum number of tickers ({summary['days']}) to judge "
                "whether the model ranks tomorrow's moves.")
    figures = (f"mean daily rank IC {summary['mean']:+.4f} (HAC t {summary['t']:.2f}, {p_phrase(summary['pvalue'])}, "
               f"{summary['days']} test days)")
    if not _significant(summary):
        return f"The model's {figures} is not distinguishable from zero at 5 %: no evidence it ranks tomorrow's moves."
    if summary["mean"] > 0:
        return f"The model ranks tomorrow's moves: its {figures} is distinguishable from zero at 5 %."
    return f"The model ranks tomorrow's moves backwards: its {figures} is below zero at 5 %."


# What the model's partial IC is beyond: (the phrase for it, its short name).
CONTROLS = {"beyond_train_mean": ("each ticker's train mean", "the train mean"),
            "beyond_linear": ("the linear baseline on the same windows", "the linear baseline")}


def _beyond_sentence(summary: dict[str, Any], control: str) -> str:
    phrase, short = CONTROLS[control]
    if summary["t"] is None:
        return (f"Whether it adds anything beyond {phrase} cannot be told (the partial IC is "
                f"undefined: too few days, or the forecast ranks like {short}).")
    figures = f"partial IC {summary['mean']:+.4f}, t {summary['t']:.2f}, {p_phrase(summary['pvalue'])}"
    if _significant(summary) and summary["mean"] > 0:
        return f"It adds to {phrase} ({figures})."
    return f"Beyond {phrase} it adds nothing distinguishable from zero ({figures})."


def _sharpe_text(result: dict[str, Any]) -> str:
    if result["sharpe"] is None:
        return "n/a"
    return f"{result['sharpe']:.2f} ± {result['sharpe_se']:.2f}"


def _long_short_sentence(model: dict[str, Any], reversal: dict[str, Any], k: int, cost_bps: float) -> str:
    head = f"Long–short top/bottom {k}, net of {cost_bps:g} bps on turnover: Sharpe {_sharpe_text(model)}"
    against = f" against reversal's {_sharpe_text(reversal)}"
    if model["sharpe"] is None:
        return head + against + "."
    if abs(model["sharpe"]) <= stats.norm.ppf(1 - ALPHA / 2) * model["sharpe_se"]:
        judged = "not distinguishable from zero"
    else:
        judged = f"{'above' if model['sharpe'] > 0 else 'below'} zero at 5 %"
    return f"{head} ({judged}, {model['days']} days){against}."


def _held_sentence(held: dict[str, Any], daily: dict[str, Any], hold: int, cost_bps: float) -> str:
    if held["mean_turnover"] is None or daily["mean_turnover"] is None:
        return f"Held {hold} days instead of rebalanced daily: no day traded."
    return (f"Held {hold} days instead of rebalanced daily: Sharpe {_sharpe_text(held)} net, turnover "
            f"{held['mean_turnover']:.2f} a day against {daily['mean_turnover']:.2f} (a cost of "
            f"{held['mean_turnover'] * cost_bps:.1f} against {daily['mean_turnover'] * cost_bps:.1f} bps a day).")


def cross_section(
    predicted: pd.DataFrame,
    realised: pd.DataFrame,
    last_return: pd.DataFrame,
    train_mean: pd.Series,
    k: int = 10,
    cost_bps: float = 5.0,
    members: Mapping[str, pd.DataFrame] | None = None,
    min_tickers: int = MIN_TICKERS,
    linear: pd.DataFrame | None = None,
    hold: int = 1,
) -> CrossSection:
    """The global model judged on the cross-section: its daily rank IC beside the train-mean, reversal and (given
    `linear`, the ridge's day-1 forecasts) linear baselines, its partial IC beyond the train mean and the linear
    baseline, each ensemble member's IC and how alike the members rank, and the long–short diagnostic of the model
    and the baselines beside the equal-weight market, rebalanced daily and (hold > 1) held `hold` days. All frames
    are aligned on `predicted`'s days and tickers (tickers sorted, so ties always break the same way)."""
    _check_min_tickers(min_tickers)
    predicted = predicted.sort_index(axis=1)
    realised = realised.reindex(index=predicted.index, columns=predicted.columns)
    reversal = -last_return.reindex(index=predicted.index, columns=predicted.columns)
    mean_score = _broadcast(train_mean, predicted)
    baselines = {"reversal": reversal, "train_mean": mean_score}
    if linear is not None:
        baselines = {"linear": linear.reindex(index=predicted.index, columns=predicted.columns), **baselines}

    present = (predicted.notna() & realised.notna()).sum(axis=1)
    present = present[present > 0]
    tickers_per_day = {name: _finite(value) for name, value in present.agg(["min", "median", "max"]).items()}
    daily_ic = rank_ic(predicted, realised, min_tickers)
    daily_partial = partial_rank_ic(predicted, realised, mean_score, min_tickers)
    ic = {"model": ic_summary(daily_ic), "beyond_train_mean": ic_summary(daily_partial)}
    if linear is not None:
        ic["beyond_linear"] = ic_summary(partial_rank_ic(predicted, realised, baselines["linear"], min_tickers))
    ic |= {name: ic_summary(rank_ic(score, realised, min_tickers)) for name, score in baselines.items()}
    member_rows = [{"label": label, **ic_summary(rank_ic(frame, realised, min_tickers))}
                   for label, frame in (members or {}).items()]
    agreement = seed_agreement(members, predicted, min_tickers) if members and len(members) > 1 else None

    scores = {"model": predicted, **baselines}
    daily = {name: long_short(score, realised, k, cost_bps) for name, score in scores.items()}
    daily["market"] = market(realised)
    strategies = {name: strategy_stats(frame) for name, frame in daily.items()}
    held_daily = {name: long_short(score, realised, k, cost_bps, hold) for name, score in scores.items()
                  if hold > 1}
    held = {name: strategy_stats(frame) for name, frame in held_daily.items()}
    curves = {name: frame["net"] for name, frame in daily.items()}
    if held_daily:
        curves["model_held"] = held_daily["model"]["net"]
    equity = pd.DataFrame({name: (1.0 + net).cumprod() for name, net in curves.items()}).ffill()

    sentences = [_ic_sentence(ic["model"]), *(_beyond_sentence(ic[control], control) for control in CONTROLS
                                                if control in ic),
                 _long_short_sentence(strategies["model"], strategies["reversal"], k, cost_bps)]
    if held:
        sentences.append(_held_sentence(held["model"], strategies["model"], hold, cost_bps))
    return CrossSection(
        days=len(present), tickers_per_day=tickers_per_day, daily_ic=daily_ic, daily_partial_ic=daily_partial,
        ic=ic, members=member_rows, k=k, cost_bps=cost_bps, daily=daily, strategies=strategies, equity=equity,
        verdict=" ".join(sentences), notes=[DIAGNOSTIC_NOTE, SURVIVOR_NOTE], hold=hold, held=held,
        seed_agreement=agreement,
    )
