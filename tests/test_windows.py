"""Windows: features, the chronological split without leakage, scaling and conversion back to prices."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.backtest import Fold, fold_dataset
from lstm_forecast.bundle import ScalerRecord, WindowRecord, record_fields
from lstm_forecast.config import Config, load_config
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.windows import (
    Scaler,
    WindowSpec,
    build_dataset,
    compute_features,
    inference_inputs,
    min_rows_needed,
    targets_to_prices,
)

ALL_FEATURES = ["log_return", "volume_change", "range"]


def frame(close, volume=None, start="2021-01-04") -> pd.DataFrame:
    """A canonical price frame on business days; High/Low 1% around Close, Adj Close = 0.9 * Close."""
    close = np.asarray(close, dtype=np.float64)
    volume = np.full(len(close), 1e6) if volume is None else np.asarray(volume, dtype=np.float64)
    index = pd.DatetimeIndex(pd.bdate_range(start, periods=len(close)), name="Date").as_unit("ns")
    return pd.DataFrame(
        {
            "Open": close,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Adj Close": close * 0.9,
            "Volume": volume,
        },
        index=index,
    )


def random_walk(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n)))
    prices = frame(close, volume=rng.integers(1_000, 5_000, n))
    prices["High"] = close * np.exp(np.abs(rng.normal(0, 0.01, n)))
    return prices


def config(**sections) -> Config:
    return Config.model_validate(sections)


def all_windows(dataset):
    return {"train": dataset.train, "val": dataset.val, "test": dataset.test}


def test_shapes_and_dtypes():
    cfg = config(data={"features": ALL_FEATURES}, window={"lookback": 10, "horizon": 3})
    dataset = build_dataset(random_walk(200), cfg)
    for windows in all_windows(dataset).values():
        n = len(windows)
        assert n > 0
        assert windows.inputs.shape == (n, 10, 3) and windows.inputs.dtype == np.float32
        assert windows.targets.shape == (n, 3) and windows.targets.dtype == np.float32
        assert windows.anchor_dates.shape == (n,) and windows.anchor_dates.dtype == "datetime64[ns]"
        assert windows.anchor_prices.shape == (n,) and windows.anchor_prices.dtype == np.float64
        assert windows.target_dates.shape == (n, 3) and windows.target_dates.dtype == "datetime64[ns]"
        assert windows.actual_prices.shape == (n, 3) and windows.actual_prices.dtype == np.float64
        assert windows.inputs.flags.c_contiguous and windows.targets.flags.c_contiguous


def test_window_values_on_hand_made_series():
    # 40 prices 100, 101, ...; 39 days; fractions give test 8, val 4, train 27 days.
    close = 100.0 + np.arange(40)
    prices = frame(close)
    cfg = config(data={"price_column": "close"}, window={"lookback": 3, "horizon": 2})
    dataset = build_dataset(prices, cfg)
    returns = np.log(close[1:] / close[:-1])  # day k is price row k + 1
    mean, std = returns[:27].mean(), returns[:27].std()
    assert dataset.scaler.feature_mean == pytest.approx(
        (mean,)
    ) and dataset.scaler.target_std == pytest.approx(std)

    first = dataset.train
    np.testing.assert_allclose(first.inputs[0, :, 0], (returns[0:3] - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(first.targets[0], (returns[3:5] - mean) / std, rtol=1e-6)
    assert first.anchor_dates[0] == prices.index[3]
    assert first.anchor_prices[0] == 103.0
    np.testing.assert_array_equal(first.actual_prices[0], [104.0, 105.0])
    np.testing.assert_array_equal(first.target_dates[0], prices.index[4:6])
    # The last training window predicts days 25, 26: the last two training days.
    assert len(first) == 27 - 3 - 2 + 1
    np.testing.assert_allclose(first.targets[-1], (returns[25:27] - mean) / std, rtol=1e-6)

    # The first validation window is anchored on the last training day and predicts days 27, 28.
    val = dataset.val
    assert len(val) == 4 - 2 + 1
    np.testing.assert_allclose(val.inputs[0, :, 0], (returns[24:27] - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(val.targets[0], (returns[27:29] - mean) / std, rtol=1e-6)
    assert dataset.val_start == prices.index[28] and dataset.test_start == prices.index[32]
    assert dataset.train_mean_log_return == pytest.approx(mean)
    assert dataset.train_naive_mae == pytest.approx(1.0)


@pytest.mark.parametrize("target", ["log_return", "price"])
def test_targets_convert_back_to_actual_prices(target):
    cfg = config(data={"target": target, "features": ALL_FEATURES}, window={"lookback": 5, "horizon": 4})
    prices = random_walk(150)
    dataset = build_dataset(prices, cfg)
    for windows in all_windows(dataset).values():
        # Exact in float64: unscaled true targets through the scaler and back.
        previous = np.concatenate([windows.anchor_prices[:, None], windows.actual_prices[:, :-1]], axis=1)
        returns = np.log(windows.actual_prices / previous)
        unscaled = returns if target == "log_return" else windows.actual_prices
        scaled = dataset.scaler.transform_targets(unscaled)
        back = targets_to_prices(scaled, windows.anchor_prices, dataset.scaler, target)
        np.testing.assert_allclose(back, windows.actual_prices, rtol=1e-9)
        # The stored float32 targets carry float32 precision only.
        stored = targets_to_prices(windows.targets, windows.anchor_prices, dataset.scaler, target)
        np.testing.assert_allclose(stored, windows.actual_prices, rtol=1e-5)


def test_price_target_is_scaled_with_training_prices():
    prices = random_walk(120)
    cfg = config(data={"target": "price"}, window={"lookback": 5, "horizon": 2})
    dataset = build_dataset(prices, cfg)
    train_days = dataset.train.target_dates.max()
    train_prices = prices["Adj Close"].iloc[1:][prices.index[1:] <= train_days].to_numpy()
    assert dataset.scaler.target_mean == pytest.approx(train_prices.mean())
    assert dataset.scaler.target_std == pytest.approx(train_prices.std())
    expected = (dataset.test.actual_prices - train_prices.mean()) / train_prices.std()
    np.testing.assert_allclose(dataset.test.targets, expected, rtol=1e-5)


@pytest.mark.parametrize("target", ["log_return", "price"])
def test_changing_test_prices_leaks_into_nothing_before(target):
    cfg = config(data={"target": target, "features": ALL_FEATURES}, window={"lookback": 8, "horizon": 3})
    prices = random_walk(160)
    before = build_dataset(prices, cfg)
    changed = prices.copy()
    in_test = changed.index >= before.test_start
    rng = np.random.default_rng(1)
    changed.loc[in_test] = changed.loc[in_test].to_numpy() * rng.uniform(0.5, 2.0, (in_test.sum(), 1))
    after = build_dataset(changed, cfg)

    assert after.scaler == before.scaler
    assert after.train_mean_log_return == before.train_mean_log_return
    assert after.train_naive_mae == before.train_naive_mae
    for name in ("train", "val"):
        old, new = getattr(before, name), getattr(after, name)
        np.testing.assert_array_equal(new.inputs, old.inputs)
        np.testing.assert_array_equal(new.targets, old.targets)
        np.testing.assert_array_equal(new.actual_prices, old.actual_prices)
    # The change did reach the test windows, so the comparison above could have failed.
    assert not np.array_equal(after.test.targets, before.test.targets)


def test_a_fold_hides_later_days():
    prices = random_walk(150)
    cfg = config(window={"lookback": 6, "horizon": 2}, data={"features": ["log_return", "range"]})
    fold = Fold(index=0, val_start=80, test_start=100, test_end=120)
    dataset = fold_dataset(prices, cfg, fold)
    days = prices.index[1:]
    assert dataset.test.target_dates.max() == days[119]
    changed = prices.copy()
    changed.iloc[121:] *= 3.0  # price rows after day 119
    again = fold_dataset(changed, cfg, fold)
    assert again.scaler == dataset.scaler
    np.testing.assert_array_equal(again.test.inputs, dataset.test.inputs)
    np.testing.assert_array_equal(again.test.targets, dataset.test.targets)


def test_splits_are_chronological_and_disjoint():
    cfg = config(window={"lookback": 7, "horizon": 4})
    dataset = build_dataset(random_walk(300), cfg)
    train, val, test = dataset.train, dataset.val, dataset.test
    assert train.target_dates.max() < dataset.val_start == val.target_dates.min()
    assert val.target_dates.max() < dataset.test_start == test.target_dates.min()
    for windows in (train, val, test):
        # Targets follow the anchor, in order, and the anchor is the last input day.
        assert (windows.target_dates[:, 0] > windows.anchor_dates).all()
        assert (np.diff(windows.target_dates, axis=1) > np.timedelta64(0)).all()
        assert (np.diff(windows.anchor_dates) > np.timedelta64(0)).all()
    # Every anchor whose targets fit a split is used: consecutive anchors across the whole table.
    days = np.concatenate([train.anchor_dates, val.anchor_dates, test.anchor_dates])
    assert len(np.unique(days)) == len(days)


def test_anchor_is_the_last_input_day():
    prices = random_walk(120)
    spec = WindowSpec(("log_return",), "adj_close", "log_return", lookback=5, horizon=3)
    days = prices.index[1:]
    dataset = build_dataset(prices, config(window={"lookback": 5, "horizon": 3}, data={"features": ["log_return"]}),
                            split={"val_start": str(days[70].date()), "test_start": str(days[90].date())})
    features = compute_features(prices, spec)
    scaled = dataset.scaler.transform_features(features.to_numpy())
    for windows in all_windows(dataset).values():
        row = features.index.get_indexer(pd.DatetimeIndex(windows.anchor_dates))
        np.testing.assert_allclose(windows.inputs[:, -1, 0], scaled[row, 0], rtol=1e-6)
        np.testing.assert_array_equal(windows.anchor_prices, prices["Adj Close"].to_numpy()[row + 1])


def test_date_based_split():
    prices = random_walk(200)  # business days from 2021-01-04
    cfg = config(
        split={"val_start": "2021-06-05", "test_start": "2021-08-02"},  # a Saturday, then a Monday
        window={"lookback": 10, "horizon": 3},
    )
    dataset = build_dataset(prices, cfg)
    assert dataset.val_start == pd.Timestamp("2021-06-07")
    assert dataset.test_start == pd.Timestamp("2021-08-02")
    assert dataset.train.target_dates.max() < np.datetime64("2021-06-05")
    assert dataset.val.target_dates.min() >= np.datetime64("2021-06-07")
    assert dataset.val.target_dates.max() < np.datetime64("2021-08-02")
    assert dataset.test.target_dates.min() == np.datetime64("2021-08-02")


def test_date_split_with_too_short_period_names_it():
    cfg = config(
        split={"val_start": dt.date(2021, 6, 7), "test_start": dt.date(2021, 6, 8)}, window={"horizon": 3}
    )
    with pytest.raises(ForecastError, match=r"validation period \(2021-06-07 to 2021-06-07\) has 1 trading"):
        build_dataset(random_walk(200), cfg)
    late = config(split={"val_start": "2021-06-07", "test_start": "2030-01-01"})
    with pytest.raises(ForecastError, match=r"test period \(after the last day of data\) has 0 trading days"):
        build_dataset(random_walk(200), late)


def test_constant_prices_do_not_divide_by_zero():
    prices = frame(np.full(80, 50.0), volume=np.full(80, 0.0))
    for target in ("log_return", "price"):
        cfg = config(data={"target": target, "features": ALL_FEATURES}, window={"lookback": 5, "horizon": 2})
        dataset = build_dataset(prices, cfg)
        assert dataset.scaler.feature_std == (1.0, 1.0, 1.0) and dataset.scaler.target_std == 1.0
        for windows in all_windows(dataset).values():
            assert np.isfinite(windows.inputs).all() and np.isfinite(windows.targets).all()
        back = targets_to_prices(dataset.test.targets, dataset.test.anchor_prices, dataset.scaler, target)
        np.testing.assert_allclose(back, 45.0)


def test_volume_change_handles_zero_volume():
    volume = np.array([0.0, 0.0, 1000.0, 0.0, 3.0])
    spec = WindowSpec(("volume_change",), "close", "log_return", lookback=2, horizon=1)
    features = compute_features(frame(np.arange(1.0, 6.0), volume=volume), spec)
    expected = np.log((volume[1:] + 1) / (volume[:-1] + 1))
    np.testing.assert_allclose(features["volume_change"].to_numpy(), expected)
    assert np.isfinite(features.to_numpy()).all()


def test_range_and_log_return_features():
    prices = frame([10.0, 11.0, 12.0, 9.0])
    prices["High"] = [10.5, 11.5, 13.0, 9.9]
    prices["Low"] = [9.5, 10.0, 11.0, 9.0]
    spec = WindowSpec(("range", "log_return"), "adj_close", "log_return", lookback=2, horizon=1)
    features = compute_features(prices, spec)
    assert list(features.columns) == ["range", "log_return"]
    assert features.index.equals(prices.index[1:])
    np.testing.assert_allclose(features["range"], np.log([11.5 / 10.0, 13.0 / 11.0, 9.9 / 9.0]))
    np.testing.assert_allclose(features["log_return"], np.log([11.0 / 10.0, 12.0 / 11.0, 9.0 / 12.0]))


def test_non_positive_price_is_a_clear_error():
    with pytest.raises(ForecastError, match="feature log_return is not finite on 2021-01-06"):
        compute_features(frame([10.0, 11.0, 0.0, 12.0]), WindowSpec(("log_return",), "close", "price", 2, 1))


@pytest.mark.parametrize(
    ("lookback", "horizon", "val_fraction", "test_fraction"),
    [(60, 5, 0.1, 0.2), (3, 1, 0.15, 0.15), (10, 7, 0.05, 0.3), (1, 20, 0.3, 0.25), (30, 2, 0.01, 0.02)],
)
def test_min_rows_needed_is_exact(lookback, horizon, val_fraction, test_fraction):
    cfg = config(
        split={"val_fraction": val_fraction, "test_fraction": test_fraction},
        window={"lookback": lookback, "horizon": horizon},
    )
    spec = WindowSpec.from_config(cfg)
    needed = min_rows_needed(spec, val_fraction, test_fraction)
    prices = random_walk(needed + 40)
    with pytest.raises(ForecastError, match=f"{needed - 1} price rows: too few.*need at least {needed};"):
        build_dataset(prices.iloc[: needed - 1], cfg)
    for rows in range(needed, needed + 40):
        dataset = build_dataset(prices.iloc[:rows], cfg)
        assert min(len(dataset.train), len(dataset.val), len(dataset.test)) >= 1


def test_too_short_error_is_one_line_with_the_number():
    cfg = config(window={"lookback": 20, "horizon": 5})
    needed = min_rows_needed(WindowSpec.from_config(cfg), 0.1, 0.2)
    with pytest.raises(ForecastError) as caught:
        build_dataset(random_walk(12), cfg)
    message = str(caught.value)
    assert "\n" not in message and not message.startswith("Error")
    assert "12 price rows: too few" in message and f"need at least {needed}" in message


def test_inference_inputs_match_the_last_window():
    prices = random_walk(150)
    cfg = config(data={"features": ALL_FEATURES}, window={"lookback": 12, "horizon": 3})
    dataset = build_dataset(prices, cfg)
    anchor = pd.Timestamp(dataset.test.anchor_dates[-1])
    up_to_anchor = prices.loc[:anchor]
    inputs, anchor_date, anchor_price = inference_inputs(up_to_anchor, dataset.spec, dataset.scaler)
    assert inputs.shape == (1, 12, 3) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[0], dataset.test.inputs[-1])
    assert anchor_date == anchor and anchor_price == dataset.test.anchor_prices[-1]

    _, latest_date, latest_price = inference_inputs(prices, dataset.spec, dataset.scaler)
    assert latest_date == prices.index[-1] and latest_price == prices["Adj Close"].iloc[-1]
    with pytest.raises(ForecastError, match="need at least 13"):
        inference_inputs(prices.iloc[:12], dataset.spec, dataset.scaler)


def test_spec_and_scaler_round_trip_through_json():
    cfg = config(data={"features": ["range", "log_return"], "price_column": "close", "target": "price"})
    spec = WindowSpec.from_config(cfg)
    assert spec.price_column_name == "Close"
    assert WindowSpec(**record_fields(WindowRecord.model_validate(json.loads(json.dumps(spec.to_dict()))))) == spec
    scaler = Scaler((0.1, -2.0), (0.5, 1.0), 100.0, 4.0)
    assert Scaler(**record_fields(ScalerRecord.model_validate(json.loads(json.dumps(asdict(scaler)))))) == scaler
    with pytest.raises(ValueError, match="features"):
        WindowRecord.model_validate({**spec.to_dict(), "features": ["momentum"]})


def test_windows_too_large_for_memory_are_refused_before_they_are_built(monkeypatch):
    from conftest import build_prices

    from lstm_forecast import windows

    monkeypatch.setattr(windows, "memory_limit", lambda: 100 * 1024)  # 300 days × 60 × 3 × 4 B × 3 is 648 KB
    config = load_config(None, ["data.features=[log_return,volume_change,range]"])
    with pytest.raises(UsageError, match=r"windows of window\.lookback 60 need about .* lower window\.lookback"):
        build_dataset(build_prices(300), config)
