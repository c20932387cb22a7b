"""Forecast accuracy on prices, always judged beside the random walk.

Inputs follow one layout. For n evaluation windows (consecutive trading days in order):

    anchor_prices  (n,)          the last known price when the forecast is made
    actual         (n, horizon)  the true prices of the next `horizon` trading days
    predicted      (n, horizon)  the model's prices for those days
    naive          (n, horizon)  the random walk: `anchor_prices` repeated (see baselines.py)

Every number handed out is a plain Python float/int/bool/str or None, never NaN or inf, so the
results go straight into JSON. None means "not defined here" (for example a ratio over a zero).

Directional accuracy, defined once: the predicted change is `predicted - anchor`, the actual change
is `actual - anchor`. Days whose actual change is exactly zero have no direction to call and are
left out. A predicted change of exactly zero on a day that did move is a miss (no call is not a
correct call). A forecast that never calls a direction at all (the naive forecast) has no
directional accuracy: None, not a fake 0% or 50%.

The Diebold–Mariano sign convention: loss differences are model minus naive, so a negative
statistic means the model's errors are smaller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

FORECASTS = ("model", "naive", "drift")  # every period is scored with the model beside both baselines


def _float_or_none(value: float) -> float | None:
    """A plain float, or None where the value is NaN or infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _anchored(anchor_prices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`anchor_prices` shaped to broadcast against `values` of shape (n,) or (n, horizon)."""
    anchor = np.asarray(anchor_prices, dtype=float)
    if anchor.ndim != 1 or values.shape[:1] != anchor.shape:
        raise ValueError(f"anchor_prices shape {anchor.shape} does not match values shape {values.shape}")
    return anchor.reshape(-1, *([1] * (values.ndim - 1)))


def _pair(actual: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(f"actual {actual.shape} and predicted {predicted.shape} must be equal, non-empty")
    return actual, predicted


def _first_step(prices: np.ndarray) -> np.ndarray:
    """Step-1 prices from (n, horizon), or the (n,) array itself."""
    prices = np.asarray(prices, dtype=float)
    return prices[:, 0] if prices.ndim == 2 else prices


# -----------------------------------------------------------------------------
# Point accuracy. Arrays of any (equal) shape are pooled: over (n, horizon) that is every step.


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Root mean squared error, in price units."""
    actual, predicted = _pair(actual, predicted)
    return _float_or_none(np.sqrt(np.mean((predicted - actual) ** 2)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Mean absolute error, in price units."""
    actual, predicted = _pair(actual, predicted)
    return _float_or_none(np.mean(np.abs(predicted - actual)))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Mean absolute percentage error, in percent (2.5 means 2.5%); None if any actual price is 0."""
    actual, predicted = _pair(actual, predicted)
    if np.any(actual == 0):
        return None
    return _float_or_none(100.0 * np.mean(np.abs((predicted - actual) / actual)))


def mase(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> float | None:
    """Mean absolute scaled error: each absolute error over the naive forecast's MAE on the same period and
    horizon step, averaged; None if naive's MAE is 0 on some step.

    The scale is the random walk's error on the very days being judged, so MASE does not drift with the
    price level (a training-period scale in price units makes every test-period error look 10x worse once
    the price has risen 10x): 1 means as far off as naive on average, below 1 closer. Arrays are (n,) or
    (n, horizon); naive itself scores exactly 1.
    """
    actual, predicted = _pair(actual, predicted)
    actual, naive = _pair(actual, naive)
    scale = np.mean(np.abs(naive - actual), axis=0)
    if not np.all(scale > 0):
        return None
    return _float_or_none(np.mean(np.abs(predicted - actual) / scale))


def rmse_ratio(actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray) -> float | None:
    """RMSE of the model over RMSE of the naive forecast: below 1 beats the random walk."""
    model_error, naive_error = rmse(actual, predicted), rmse(actual, naive)
    if model_error is None or not naive_error:
        return None
    return _float_or_none(model_error / naive_error)


# -----------------------------------------------------------------------------
# Direction of the move from the anchor price (conventions in the module docstring).


def directional_counts(anchor_prices: np.ndarray, actual: np.ndarray, predicted: np.ndarray) -> tuple[int, int, bool]:
    """(hits, trials, made_a_call): trials are days that moved; made_a_call is False for a flat forecast."""
    actual, predicted = _pair(actual, predicted)
    anchor = _anchored(anchor_prices, actual)
    actual_change, predicted_change = actual - anchor, predicted - anchor
    moved = actual_change != 0
    hits = moved & (np.sign(predicted_change) == np.sign(actual_change))
    return int(hits.sum()), int(moved.sum()), bool(np.any(predicted_change != 0))


def directional_accuracy(anchor_prices: np.ndarray, actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Share (0..1) of moving days whose direction the forecast called right; None if it never calls one."""
    hits, trials, made_a_call = directional_counts(anchor_prices, actual, predicted)
    if not made_a_call or trials == 0:
        return None
    return hits / trials


def up_share(anchor_prices: np.ndarray, actual: np.ndarray) -> float | None:
    """Share of moving days that went up: the directional accuracy of always saying "up"."""
    actual = np.asarray(actual, dtype=float)
    actual_change = actual - _anchored(anchor_prices, actual)
    trials = int(np.count_nonzero(actual_change))
    return int(np.count_nonzero(actual_change > 0)) / trials if trials else None


def binomial_pvalue(hits: int, trials: int, chance: float = 0.5) -> float | None:
    """Two-sided exact binomial test of `hits` out of `trials` against `chance`; None for no trials."""
    if trials <= 0:
        return None
    return _float_or_none(stats.binomtest(hits, trials, chance, alternative="two-sided").pvalue)


# -----------------------------------------------------------------------------
# Diebold–Mariano: is the model's loss really different from the naive forecast's?


def diebold_mariano(
    loss_model: np.ndarray, loss_naive: np.ndarray, horizon: int = 1
) -> tuple[float | None, float | None]:
    """(statistic, two-sided p-value) of the DM test with the Harvey–Leybourne–Newbold correction.

    d_t = loss_model_t - loss_naive_t. Forecasts `horizon` steps ahead made on consecutive days
    overlap, so d_t is autocorrelated up to lag horizon-1: the variance of mean(d) is the
    rectangular-window HAC estimate (gamma_0 + 2 * sum_{k=1}^{h-1} gamma_k) / n, with gamma_k the
    lag-k autocovariance (divisor n). If that estimate is not positive (it can be, for h > 1) the
    lag-0 variance is used instead. The statistic is multiplied by
    sqrt((n + 1 - 2h + h(h-1)/n) / n) and compared with Student's t with n-1 degrees of freedom.

    Degenerate cases, handled without raising: identical losses give (0.0, 1.0), no difference;
    a constant non-zero difference, fewer than 2 values, or a sample too short for the correction
    give (None, None), untestable.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    loss_model, loss_naive = _pair(loss_model, loss_naive)
    differences = (loss_model - loss_naive).ravel()
    n = differences.size
    if not np.all(np.isfinite(differences)) or n < 2:
        return None, None
    if np.ptp(differences) == 0:
        return (0.0, 1.0) if differences[0] == 0 else (None, None)

    centred = differences - differences.mean()
    max_lag = min(horizon - 1, n - 1)
    autocovariances = np.array([centred[k:] @ centred[: n - k] for k in range(max_lag + 1)]) / n
    long_run_variance = autocovariances[0] + 2.0 * autocovariances[1:].sum()
    if long_run_variance <= 0:
        long_run_variance = autocovariances[0]
    correction = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    if correction <= 0:
        return None, None

    statistic = math.sqrt(correction) * differences.mean() / math.sqrt(long_run_variance / n)
    pvalue = 2.0 * stats.t.sf(abs(statistic), df=n - 1)
    return _float_or_none(statistic), _float_or_none(pvalue)


# -----------------------------------------------------------------------------
# Lag-copy diagnostic: does the forecast merely repeat the move that just happened?


@dataclass(frozen=True)
class LagCopyDiagnostic:
    """How the model's predicted one-step changes line up with actual one-step changes at each lag.

    Lag L pairs the prediction made at anchor t with the actual move of anchor t-L (the move from
    day t-L to t-L+1). Lag 0 is the move being forecast (skill); lag +1 is yesterday's move, the one
    that ended on the anchor day and was already known (an echo); negative lags are later moves.
    `pvalues` are one-sided (positive correlation) Pearson tests.
    """

    correlations: dict[int, float | None]
    pvalues: dict[int, float | None]
    best_lag: int | None
    echoes_yesterday: bool
    verdict: str
    windows: int

    def to_dict(self) -> dict:
        """JSON-ready: lags become string keys ("-3" ... "3")."""
        return {
            "correlations": {str(lag): value for lag, value in self.correlations.items()},
            "pvalues": {str(lag): value for lag, value in self.pvalues.items()},
            "best_lag": self.best_lag,
            "echoes_yesterday": self.echoes_yesterday,
            "verdict": self.verdict,
            "windows": self.windows,
        }


def format_pvalue(pvalue: float | None) -> str:
    """A p-value with enough digits to see which side of 0.05 it falls: 0.41, 0.012, < 0.001, n/a."""
    if pvalue is None:
        return "n/a"
    if pvalue < 0.001:
        return "< 0.001"
    return f"{pvalue:.3f}" if pvalue < 0.1 else f"{pvalue:.2f}"


def p_phrase(pvalue: float | None) -> str:
    """`p = 0.41`, `p < 0.001`, `p n/a`: for sentences."""
    text = format_pvalue(pvalue)
    return f"p {text}" if pvalue is None or pvalue < 0.001 else f"p = {text}"


def _describe(correlation: float | None) -> str:
    return "n/a" if correlation is None else f"{correlation:.2f}"


def _lagged_correlation(
    predicted_change: np.ndarray, actual_change: np.ndarray, lag: int
) -> tuple[float | None, float | None]:
    """Pearson correlation (and one-sided p) of predicted_change[t] with actual_change[t - lag]."""
    n = predicted_change.size
    if lag >= 0:
        x, y = predicted_change[lag:], actual_change[: n - lag]
    else:
        x, y = predicted_change[: n + lag], actual_change[-lag:]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    result = stats.pearsonr(x, y, alternative="greater")
    return _float_or_none(result.statistic), _float_or_none(result.pvalue)


def lag_copy_diagnostic(
    anchor_prices: np.ndarray,
    actual: np.ndarray,
    predicted: np.ndarray,
    max_lag: int = 3,
    alpha: float = 0.05,
) -> LagCopyDiagnostic:
    """Check whether the step-1 forecast is an echo of yesterday's move rather than a forecast.

    Anchors must be consecutive trading days, so that actual[t-1, 0] - anchor[t-1] is the move that
    ended on anchor day t. Correlations run from lag -max_lag to +max_lag (see `LagCopyDiagnostic`).

    `echoes_yesterday` is True when either
      * the predicted change never varies (the naive forecast, or a constant drift): its price chart
        is the actual series shifted by one day; or
      * the best-matching lag is +1, that correlation is significant, and the correlation with the
        move being forecast (lag 0) is not: the forecast follows the move it already saw and carries
        no information about the next one.
    Following yesterday's move is not by itself an echo: where returns are autocorrelated,
    yesterday's move does predict tomorrow's (an AR(1) forecast phi * r_t lines up best at lag +1 too),
    and then the lag-0 correlation is significant and the model is not flagged. Whether the size of
    the moves is right is what the RMSE ratio and the Diebold–Mariano test judge.
    """
    step1_actual, step1_predicted = _pair(_first_step(actual), _first_step(predicted))
    anchor = _anchored(anchor_prices, step1_actual)
    predicted_change, actual_change = step1_predicted - anchor, step1_actual - anchor

    lags = range(-max_lag, max_lag + 1)
    results = {lag: _lagged_correlation(predicted_change, actual_change, lag) for lag in lags}
    correlations = {lag: result[0] for lag, result in results.items()}
    pvalues = {lag: result[1] for lag, result in results.items()}
    defined = {lag: value for lag, value in correlations.items() if value is not None}
    best_lag = max(defined, key=defined.__getitem__) if defined else None

    def significant(lag: int) -> bool:
        return pvalues.get(lag) is not None and pvalues[lag] < alpha

    flat = np.ptp(predicted_change) <= 1e-12 * max(float(np.abs(anchor).max()), 1.0)
    if flat:
        echoes = True
        verdict = (
            "the forecast is the last price plus the same change every day, so it carries no news "
            "about the next move: its price chart is the actual series shifted by one day"
        )
    elif best_lag is None:
        echoes = False
        verdict = "too few varying values to compare the forecast with the actual moves"
    elif best_lag == 1 and significant(1) and not significant(0):
        echoes = True
        verdict = (
            f"the forecast echoes yesterday's move: it lines up best with the move that had already "
            f"happened (lag +1 correlation {correlations[1]:.2f}) and not with the move it forecasts "
            f"(lag 0 correlation {_describe(correlations[0])}, {p_phrase(pvalues[0])})"
        )
    elif best_lag == 1 and significant(1):
        echoes = False
        verdict = (
            f"the forecast follows yesterday's move (lag +1 correlation {correlations[1]:.2f}), but "
            f"that also tells about the move it forecasts (lag 0 correlation "
            f"{_describe(correlations[0])}, {p_phrase(pvalues[0])}), so it is not a mere echo"
        )
    else:
        echoes = False
        lag_text = f"{best_lag:+d}" if best_lag else "0"
        verdict = (
            f"no sign of echoing yesterday's move: the forecast lines up best with the actual move "
            f"at lag {lag_text} (correlation {correlations[best_lag]:.2f}, {p_phrase(pvalues[best_lag])})"
        )
    return LagCopyDiagnostic(correlations, pvalues, best_lag, echoes, verdict, int(anchor.size))


# -----------------------------------------------------------------------------
# Summaries for train's table, metrics.json, evaluate's report and evaluation.json.


def _scores(
    anchor_prices: np.ndarray, actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray
) -> dict[str, float | None]:
    return {
        "rmse": rmse(actual, predicted),
        "mae": mae(actual, predicted),
        "mape": mape(actual, predicted),
        "mase": mase(actual, predicted, naive),
        "directional_accuracy": directional_accuracy(anchor_prices, actual, predicted),
        "rmse_ratio": rmse_ratio(actual, predicted, naive),
    }


def score(
    anchor_prices: np.ndarray, actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """Accuracy of one forecast (the model or a baseline) on prices.

    Returns {"h1": {...}, "all": {...}}, each with the keys
        rmse, mae            price units
        mape                 percent (2.5 = 2.5%)
        mase                 absolute errors over naive's MAE on the same windows and step (`mase`)
        directional_accuracy share 0..1 of moving days called right; None for a flat forecast
        rmse_ratio           RMSE / naive RMSE (naive itself scores exactly 1.0)
    "h1" is the first horizon step; "all" pools every window and step (RMSE over all squared
    errors, MAE/MAPE over all absolute errors, direction over all step moves from the anchor).
    Values are plain floats, None where undefined.
    """
    actual, predicted = _pair(actual, predicted)
    actual, naive = _pair(actual, naive)
    if actual.ndim != 2:
        raise ValueError(f"actual must be (windows, horizon), got shape {actual.shape}")
    return {
        "h1": _scores(anchor_prices, actual[:, 0], predicted[:, 0], naive[:, 0]),
        "all": _scores(anchor_prices, actual, predicted, naive),
    }


def compare_to_naive(
    anchor_prices: np.ndarray, actual: np.ndarray, predicted: np.ndarray, naive: np.ndarray, horizon: int
) -> dict:
    """Significance of the model against the random walk. Layout (plain floats/ints, None if undefined):

        windows, horizon       int
        dm_h1                  {"statistic", "pvalue"}: DM on step-1 squared errors (h = 1)
        dm_all                 {"statistic", "pvalue", "hac_lags"}: DM on each window's mean squared
                               error over all steps, HAC variance with hac_lags = horizon - 1
        direction_h1           {"hits", "trials", "accuracy", "binomial_pvalue", "up_share"}: step-1
                               direction; trials are days that moved; binomial test against 50%;
                               up_share is the share of up days (the accuracy of always saying "up").
                               hits, accuracy and binomial_pvalue are None for a flat forecast.
    A negative DM statistic means the model's squared errors are smaller than the naive forecast's.
    """
    actual, predicted = _pair(actual, predicted)
    actual, naive = _pair(actual, naive)
    if actual.ndim != 2 or actual.shape[1] != horizon:
        raise ValueError(f"actual must be (windows, {horizon}), got shape {actual.shape}")
    squared_model, squared_naive = (predicted - actual) ** 2, (naive - actual) ** 2
    dm_h1 = diebold_mariano(squared_model[:, 0], squared_naive[:, 0], horizon=1)
    dm_all = diebold_mariano(squared_model.mean(axis=1), squared_naive.mean(axis=1), horizon=horizon)

    hits, trials, made_a_call = directional_counts(anchor_prices, actual[:, 0], predicted[:, 0])
    called = made_a_call and trials > 0
    return {
        "windows": int(actual.shape[0]),
        "horizon": int(horizon),
        "dm_h1": {"statistic": dm_h1[0], "pvalue": dm_h1[1]},
        "dm_all": {"statistic": dm_all[0], "pvalue": dm_all[1], "hac_lags": int(horizon - 1)},
        "direction_h1": {
            "hits": hits if called else None,
            "trials": trials,
            "accuracy": hits / trials if called else None,
            "binomial_pvalue": binomial_pvalue(hits, trials) if called else None,
            "up_share": up_share(anchor_prices, actual[:, 0]),
        },
    }


def judgement(dm_pvalue: float | None, rmse_ratio: float | None, alpha: float = 0.05) -> str | None:
    """"better" or "worse" only when the DM p-value is below `alpha` (the RMSE ratio gives the direction), else
    "same"; None when the test is undefined."""
    if dm_pvalue is None or rmse_ratio is None:
        return None
    if dm_pvalue < alpha and rmse_ratio != 1:
        return "better" if rmse_ratio < 1 else "worse"
    return "same"


def verdict(dm_pvalue: float | None, rmse_ratio: float | None, alpha: float = 0.05) -> str:
    """A plain phrase to follow the model's name, e.g. "LSTM is " + verdict(...) (see `judgement`)."""
    found = judgement(dm_pvalue, rmse_ratio, alpha)
    if found is None:
        return "not comparable with the random walk (the Diebold–Mariano test is undefined on these errors)"
    evidence = f"RMSE ratio {rmse_ratio:.3f}, DM {p_phrase(dm_pvalue)}"
    phrase = {"better": "better than", "worse": "worse than", "same": "not distinguishable from"}[found]
    return f"{phrase} the random walk ({evidence})"
