"""Properties that must hold for every input, checked with hypothesis on small random cases.

Windowing: each window's inputs, targets, dates and prices are exactly the slices of the series it claims
to be, no target day comes before or on its anchor (the window's last input day) nor outside its split,
no window that fits a split is left out, and enough rows for `min_rows_needed` always give every split a
window. Metrics: the naive forecast's RMSE ratio is exactly 1, and the pooled metrics do not depend on the
order of the evaluation rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_prices
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_forecast import baselines, metrics
from lstm_forecast.backtest import Fold, fold_dataset
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.windows import (
    FEATURES,
    Windows,
    WindowSpec,
    build_dataset,
    compute_features,
    min_rows_needed,
    targets_to_prices,
)

FAST = settings(max_examples=40, deadline=None)


@st.composite
def split_layouts(draw: st.DrawFn) -> tuple[WindowSpec, int, int, int, int, int]:
    """A window spec, day boundaries with room for a window in every split, a row count and a seed."""
    lookback, horizon = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    features = draw(st.lists(st.sampled_from(sorted(FEATURES)), min_size=1, max_size=3, unique=True))
    spec = WindowSpec(tuple(features), draw(st.sampled_from(["adj_close", "close"])),
                      draw(st.sampled_from(["log_return", "price"])), lookback, horizon)
    val_start = lookback + horizon + draw(st.integers(0, 8))
    test_start = val_start + horizon + draw(st.integers(0, 8))
    test_end = test_start + horizon + draw(st.integers(0, 8))
    days = test_end + draw(st.integers(0, 4))  # days after test_end exist but belong to no split
    return spec, val_start, test_start, test_end, days + 1, draw(st.integers(0, 2**16))


def check_windows(windows: Windows, start: int, stop: int, spec: WindowSpec, series: dict[str, np.ndarray]) -> None:
    """Every window of one split against the series, vectorised: row i is anchored on day anchors[i]."""
    dates = series["dates"]
    anchors = np.searchsorted(dates, windows.anchor_dates)
    assert np.array_equal(dates[anchors], windows.anchor_dates)  # anchors are days of the series
    # No window that fits is missing: every anchor whose inputs exist and whose targets lie in the split.
    assert np.array_equal(anchors, np.arange(max(start - 1, spec.lookback - 1), stop - spec.horizon))
    inputs = anchors[:, None] + np.arange(-spec.lookback + 1, 1)  # the lookback days ending on the anchor
    ahead = anchors[:, None] + np.arange(1, spec.horizon + 1)  # the horizon days after it
    assert np.array_equal(windows.inputs, series["scaled_features"][inputs])
    assert np.array_equal(windows.targets, series["scaled_targets"][ahead])
    assert np.array_equal(windows.target_dates, dates[ahead])
    assert np.array_equal(windows.anchor_prices, series["price"][anchors])
    assert np.array_equal(windows.actual_prices, series["price"][ahead])
    assert np.all(windows.target_dates > windows.anchor_dates[:, None])
    if len(windows):
        assert dates[start] <= windows.target_dates.min() and windows.target_dates.max() <= dates[stop - 1]


@FAST
@given(split_layouts())
def test_every_window_is_the_slice_of_the_series_it_claims(layout):
    spec, val_start, test_start, test_end, rows, seed = layout
    prices = build_prices(rows, seed=seed)
    config = load_config(None, [f"data.features=[{','.join(spec.features)}]", f"data.price_column={spec.price_column}",
                                f"data.target={spec.target}", f"window.lookback={spec.lookback}",
                                f"window.horizon={spec.horizon}"])
    # A walk-forward fold's dataset: the days after test_end exist but belong to no split.
    dataset = fold_dataset(prices, config, Fold(0, val_start, test_start, test_end))

    features = compute_features(prices, spec).to_numpy()
    price = prices[spec.price_column_name].to_numpy()
    target = np.diff(np.log(price)) if spec.target == "log_return" else price[1:]
    series = {
        "dates": compute_features(prices, spec).index.to_numpy(),
        "price": price[1:],
        "scaled_features": dataset.scaler.transform_features(features).astype(np.float32),
        "scaled_targets": dataset.scaler.transform_targets(target).astype(np.float32),
    }
    splits = [(dataset.train, 0, val_start), (dataset.val, val_start, test_start), (dataset.test, test_start, test_end)]
    for windows, start, stop in splits:
        assert len(windows) > 0
        check_windows(windows, start, stop, spec, series)
    # The scaler saw training days only.
    assert np.allclose(dataset.scaler.feature_mean, features[:val_start].mean(axis=0), rtol=1e-12, atol=1e-15)
    # The scaled targets convert back to the actual prices (float32 scaling: to about 1e-6).
    for windows, _, _ in splits:
        converted = targets_to_prices(windows.targets, windows.anchor_prices, dataset.scaler, spec.target)
        assert np.allclose(converted, windows.actual_prices, rtol=1e-4)


@FAST
@given(
    lookback=st.integers(1, 30),
    horizon=st.integers(1, 10),
    val_fraction=st.sampled_from([0.05, 0.1, 0.15, 0.2]),
    test_fraction=st.sampled_from([0.1, 0.2, 0.3]),
    extra=st.integers(0, 40),
)
def test_min_rows_needed_always_gives_every_split_a_window(lookback, horizon, val_fraction, test_fraction, extra):
    config = load_config(None, [f"window.lookback={lookback}", f"window.horizon={horizon}",
                                f"split.val_fraction={val_fraction}", f"split.test_fraction={test_fraction}"])
    needed = min_rows_needed(WindowSpec.from_config(config), val_fraction, test_fraction)
    prices = build_prices(needed + extra)
    dataset = build_dataset(prices, config)
    assert min(len(dataset.train), len(dataset.val), len(dataset.test)) >= 1
    assert dataset.train.target_dates.max() < dataset.val.target_dates.min()
    assert dataset.val.target_dates.max() < dataset.test.target_dates.min()
    with pytest.raises(ForecastError, match=f"need at least {needed}"):
        build_dataset(prices.iloc[: needed - 1], config)


# --- metrics ----------------------------------------------------------------------------------------


@st.composite
def evaluation_rows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Anchors (n,), actual and predicted prices (n, horizon), and a permutation of the n rows."""
    n, horizon = draw(st.integers(2, 30)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    anchors = 100 * np.exp(rng.normal(0, 0.3, n))
    actual = anchors[:, None] * np.exp(np.cumsum(rng.normal(0, 0.02, (n, horizon)), axis=1))
    predicted = anchors[:, None] * np.exp(rng.normal(0, 0.02, (n, horizon)))
    # Some predictions exactly on the anchor or on the actual price: ties are where direction rules bite.
    predicted = np.where(rng.random((n, horizon)) < 0.2, anchors[:, None], predicted)
    predicted = np.where(rng.random((n, horizon)) < 0.1, actual, predicted)
    return anchors, actual, predicted, rng.permutation(n)


def close(first: float | None, second: float | None) -> bool:
    """Equal up to the rounding of a sum taken in another order."""
    return (first is None and second is None) or first == pytest.approx(second, rel=1e-9, abs=1e-12)


@FAST
@given(evaluation_rows())
def test_naive_rmse_ratio_and_mase_are_one(rows):
    anchors, actual, _, _ = rows
    naive = baselines.naive_forecast(anchors, actual.shape[1])
    scores = metrics.score(anchors, actual, naive, naive)
    assert scores["h1"]["rmse_ratio"] == scores["all"]["rmse_ratio"] == 1.0
    assert scores["h1"]["mase"] == pytest.approx(1.0) and scores["all"]["mase"] == pytest.approx(1.0)
    assert scores["all"]["directional_accuracy"] is None  # the naive forecast never calls a direction


@FAST
@given(evaluation_rows())
def test_metrics_do_not_depend_on_the_order_of_the_rows(rows):
    anchors, actual, predicted, order = rows
    naive = baselines.naive_forecast(anchors, actual.shape[1])
    scores = metrics.score(anchors, actual, predicted, naive)
    shuffled = metrics.score(anchors[order], actual[order], predicted[order], naive[order])
    for step in ("h1", "all"):
        for name, value in scores[step].items():
            assert close(value, shuffled[step][name]), (step, name)
    # The one-step DM test has no autocorrelation term, so it is order-free too; the binomial test is.
    compared = metrics.compare_to_naive(anchors, actual, predicted, naive, actual.shape[1])
    reordered = metrics.compare_to_naive(anchors[order], actual[order], predicted[order], naive[order],
                                         actual.shape[1])
    assert all(close(compared["dm_h1"][key], reordered["dm_h1"][key]) for key in ("statistic", "pvalue"))
    assert compared["direction_h1"] == reordered["direction_h1"]
