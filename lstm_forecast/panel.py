"""Windows for a global model: many tickers, one calendar split, each ticker scaled by its own training days.

The local pipeline (windows.py) splits one ticker's days by its own dates. A model trained on the pooled
windows of a universe needs one split for all: a ticker's test day must never fall in another ticker's
training period, or the network would learn the market's moves on days it is later scored on. So the
validation and test periods start on the same calendar days for every ticker (`split.val_start` /
`test_start`, or the fractions applied to the union of the universe's days), and each ticker's windows are
cut inside those periods exactly as windows.py cuts them (every target day inside its period).

Each ticker's features and targets are standardised with its own training-period mean and deviation, so a
$5 stock and a $500 stock look alike to the network; forecasts go back to prices with that ticker's scaler.

The windows are never copied out: every ticker's scaled days lie one after another in one (days, features)
array and a window is its anchor row (`GatheredWindows`), cut batch by batch by the trainer.

Context inputs (context.py) work as in a local run, ticker by ticker: each ticker's history is cut to the
days every context series covers, its scaler is fitted on its complete training days, and a window that reads
a day with a missing context value is dropped (`windows.whole_windows`); `Panel.notes` says what each cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from lstm_forecast import baselines, context
from lstm_forecast.config import Config
from lstm_forecast.errors import ForecastError
from lstm_forecast.windows import (
    GatheredWindows,
    Scaler,
    WindowSpec,
    compute_features,
    dropped_notes,
    fit_scaler,
    values_to_prices,
    whole_windows,
)

PERIODS = {"train": "training", "val": "validation", "test": "test"}  # a panel's periods, as notes name them


@dataclass
class TickerDays:
    """One ticker's part of the panel: its days, its scaler and its training statistics."""

    ticker: str
    index: int  # its position in the panel (and in a ticker embedding)
    offset: int  # its first day's row in the panel's values
    dates: np.ndarray  # datetime64[ns] (days,): the feature rows' days (the first price row has none)
    price: np.ndarray  # float64 (days,): the price on each day
    last_return: np.ndarray  # float64 (days,): the log return on each day
    val_start: int  # first day (row of `dates`) of the validation period
    test_start: int  # first day of the test period
    scaler: Scaler
    train_mean_log_return: float
    train_naive_mae: float
    anchors: dict[str, np.ndarray]  # per period (PERIODS), the rows of `dates` its windows are anchored on


@dataclass
class PanelSplit:
    """One period's windows over every ticker, concatenated ticker by ticker; row i of each array is one window."""

    inputs: GatheredWindows
    ticker: np.ndarray  # int64 (n,): the window's ticker (TickerDays.index)
    targets: np.ndarray  # float32 (n, horizon), in the ticker's own scaled units
    anchor_dates: np.ndarray  # datetime64[ns] (n,)
    anchor_prices: np.ndarray  # float64 (n,)
    target_dates: np.ndarray  # datetime64[ns] (n, horizon)
    actual_prices: np.ndarray  # float64 (n, horizon)
    last_return: np.ndarray  # float64 (n,): the log return on the anchor day, known when forecasting

    def __len__(self) -> int:
        return len(self.targets)

    def of(self, index: int) -> np.ndarray:
        """The rows of one ticker: contiguous, since the windows are concatenated ticker by ticker."""
        start, stop = np.searchsorted(self.ticker, [index, index + 1])
        return np.arange(start, stop)


@dataclass
class Panel:
    spec: WindowSpec
    tickers: list[TickerDays]
    values: np.ndarray  # float32 (all days, n_features)
    train: PanelSplit
    val: PanelSplit
    test: PanelSplit
    val_start: pd.Timestamp  # the common first day of the validation period
    test_start: pd.Timestamp
    skipped: dict[str, str] = field(default_factory=dict)  # ticker -> why it was left out
    prices: dict[str, pd.DataFrame] = field(default_factory=dict)  # each kept ticker's rows, as windowed
    context_rows: dict[str, pd.DataFrame] = field(default_factory=dict)  # context series' rows read (all tickers)
    notes: dict[str, list[str]] = field(default_factory=dict)  # ticker -> what the context cost it, if anything

    @property
    def split(self) -> dict[str, str]:
        return {"val_start": self.val_start.date().isoformat(), "test_start": self.test_start.date().isoformat()}

    @property
    def names(self) -> list[str]:
        return [days.ticker for days in self.tickers]

    def to_prices(self, period: PanelSplit, scaled: np.ndarray) -> np.ndarray:
        """Scaled forecasts (n, horizon) of `period` back to prices, each row with its own ticker's scaler."""
        means = np.array([days.scaler.target_mean for days in self.tickers])[period.ticker]
        stds = np.array([days.scaler.target_std for days in self.tickers])[period.ticker]
        values = np.asarray(scaled, dtype=np.float64) * stds[:, None] + means[:, None]
        return values_to_prices(values, period.anchor_prices, self.spec.target)


def common_split(dates: list[np.ndarray], config: Config) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first days of the validation and test periods for every ticker: the configured dates, or the
    validation and test fractions of the union of the tickers' days (the universe's calendar)."""
    split = config.split
    if split.val_start is not None and split.test_start is not None:
        return pd.Timestamp(split.val_start), pd.Timestamp(split.test_start)
    calendar = np.unique(np.concatenate(dates))
    days = len(calendar)
    test_start = days - round(days * split.test_fraction)
    val_start = test_start - round(days * split.val_fraction)
    if not 0 < val_start < test_start < days:
        raise ForecastError(f"the tickers' {days} trading days are too few for a validation and a test period")
    return pd.Timestamp(calendar[val_start]), pd.Timestamp(calendar[test_start])


def build_panel(
    prices: dict[str, pd.DataFrame], config: Config, split: dict[str, str] | None = None,
    context_prices: dict[str, pd.DataFrame] | None = None,
) -> Panel:
    """Scale and window every ticker on the common split (`split` as a bundle records it, else `common_split`).

    `context_prices` holds each context series' prices (by ticker) when the config reads any. A ticker whose
    features cannot be computed (a zero price, no day shared with the context) or whose periods hold too few
    days (or whole windows) for one window is left out, with the reason in `Panel.skipped`; no ticker left is
    an error.
    """
    spec = WindowSpec.from_config(config)
    skipped: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    rows: dict[str, pd.DataFrame] = {}
    features: dict[str, pd.DataFrame] = {}
    for ticker, frame in prices.items():
        try:
            rows[ticker], notes[ticker] = context.common_range(frame, spec, context_prices)
            features[ticker] = compute_features(rows[ticker], spec, context_prices)
        except ForecastError as exc:
            skipped[ticker] = str(exc)
    if not features:
        raise ForecastError(f"no ticker left to train on: {reasons(skipped)}")
    if split is None:
        val_day, test_day = common_split([frame.index.to_numpy() for frame in features.values()], config)
    else:
        val_day, test_day = pd.Timestamp(split["val_start"]), pd.Timestamp(split["test_start"])

    tickers: list[TickerDays] = []
    blocks: list[np.ndarray] = []
    offset = 0
    for ticker, frame in features.items():
        dates = frame.index.to_numpy().astype("datetime64[ns]")
        val_start, test_start = (int(np.searchsorted(dates, day.to_datetime64())) for day in (val_day, test_day))
        feature_values = frame.to_numpy(dtype=np.float64)
        complete = np.isfinite(feature_values).all(axis=1)  # False only where a context value is missing
        anchors, dropped = _anchors(len(dates), val_start, test_start, complete, spec)
        reason = _too_short(len(dates), val_start, test_start, spec, val_day, test_day) or _incomplete(anchors, spec)
        if reason:
            skipped[ticker] = reason
            continue
        raw_price = rows[ticker][spec.price_column_name].to_numpy(dtype=np.float64)
        log_return = np.diff(np.log(raw_price))
        target = log_return if spec.target == "log_return" else raw_price[1:]
        scaler = fit_scaler(feature_values[:val_start][complete[:val_start]], target[:val_start])
        tickers.append(TickerDays(
            ticker=ticker, index=len(tickers), offset=offset, dates=dates, price=raw_price[1:],
            last_return=log_return, val_start=val_start, test_start=test_start, scaler=scaler,
            # Training prices include the first price row: day 0's return and naive forecast need it.
            train_mean_log_return=baselines.mean_log_return(raw_price[: val_start + 1]),
            train_naive_mae=baselines.naive_mae_scale(raw_price[: val_start + 1]),
            anchors=anchors,
        ))
        notes[ticker] = notes[ticker] + dropped_notes(dropped, spec)
        blocks.append(scaler.transform_features(feature_values).astype(np.float32))
        offset += len(dates)
    if not tickers:
        raise ForecastError(f"no ticker has enough days around the split ({val_day.date()}, {test_day.date()}) "
                            f"for one window: {reasons(skipped)}")

    values = np.concatenate(blocks)
    scaled_targets = {days.ticker: _scaled_target(days, spec) for days in tickers}
    kept = {days.ticker: rows[days.ticker] for days in tickers}

    def period(name: str) -> PanelSplit:
        parts = [_windows(days, scaled_targets[days.ticker], spec, name) for days in tickers]
        ends, ticker, targets, anchor_dates, anchor_prices, target_dates, actual, last_return = (
            np.concatenate(column) for column in zip(*parts, strict=True))
        return PanelSplit(GatheredWindows(values, ends, spec.lookback), ticker, targets, anchor_dates,
                          anchor_prices, target_dates, actual, last_return)

    return Panel(spec=spec, tickers=tickers, values=values, train=period("train"), val=period("val"),
                 test=period("test"), val_start=val_day, test_start=test_day, skipped=skipped, prices=kept,
                 context_rows=context_read(kept, spec, context_prices),
                 notes={name: notes[name] for name in kept if notes[name]})


def context_read(
    prices: dict[str, pd.DataFrame], spec: WindowSpec, context_prices: dict[str, pd.DataFrame] | None
) -> dict[str, pd.DataFrame]:
    """Each context series' rows that any ticker's rows read, from the first to the last (the union of
    `context.rows_used` over the tickers): what a global bundle records to rebuild every ticker's inputs."""
    if not spec.context:
        return {}
    first: dict[str, pd.Timestamp] = {}
    last: dict[str, pd.Timestamp] = {}
    for frame in prices.values():  # every kept ticker reads each series on a day it covers (common_range)
        for name, used in context.rows_used(frame, spec, context_prices).items():
            first[name] = min(first.get(name, used.index[0]), used.index[0])
            last[name] = max(last.get(name, used.index[-1]), used.index[-1])
    return {name: context_prices[name].loc[first[name] : last[name]] for name in first}


def reasons(skipped: dict[str, str], shown: int = 2) -> str:
    """The first few tickers left out and why, and how many more: one error line, however many there are."""
    from lstm_forecast.errors import shorten

    listed = "; ".join(f"{ticker}: {shorten(why, 120)}" for ticker, why in list(skipped.items())[:shown])
    more = len(skipped) - shown
    return listed + (f"; and {more} more" if more > 0 else "")


def _too_short(days: int, val_start: int, test_start: int, spec: WindowSpec, val_day: pd.Timestamp,
               test_day: pd.Timestamp) -> str | None:
    """Why a ticker's periods cannot hold one window each, or None."""
    needed = spec.lookback + spec.horizon
    if val_start < needed:
        return (f"{val_start} trading days before the validation period ({val_day.date()}); one training window "
                f"of window.lookback {spec.lookback} + window.horizon {spec.horizon} needs {needed}")
    if test_start - val_start < spec.horizon:
        return f"{test_start - val_start} trading days in the validation period; window.horizon needs {spec.horizon}"
    if days - test_start < spec.horizon:
        return (f"{days - test_start} trading days from the test period's start ({test_day.date()}); "
                f"window.horizon needs {spec.horizon}")
    return None


def _incomplete(anchors: dict[str, np.ndarray], spec: WindowSpec) -> str | None:
    """Why a ticker with days enough has no whole window in a period (its context missing too often), or None."""
    empty = [PERIODS[name] for name, rows in anchors.items() if len(rows) == 0]
    if not empty:
        return None
    return (f"the {empty[0]} period has no window whose context inputs are all there: a context series misses "
            f"more than data.context_max_gap ({spec.context_max_gap}) sessions too often")


def _scaled_target(days: TickerDays, spec: WindowSpec) -> np.ndarray:
    target = days.last_return if spec.target == "log_return" else days.price
    return days.scaler.transform_targets(target).astype(np.float32)


def _anchors(
    days: int, val_start: int, test_start: int, complete: np.ndarray, spec: WindowSpec
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per period, the anchors of one ticker's windows as windows.build_dataset_at chooses them (every target
    day inside the period, every input day complete), and how many were dropped for an incomplete day."""
    bounds = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, days)}
    anchors, dropped = {}, {}
    for name, (first, stop) in bounds.items():
        rows = np.arange(max(first - 1, spec.lookback - 1), stop - spec.horizon)
        whole = whole_windows(complete, rows, spec.lookback)
        anchors[name], dropped[PERIODS[name]] = rows[whole], int((~whole).sum())
    return anchors, dropped


def _windows(days: TickerDays, scaled_target: np.ndarray, spec: WindowSpec, name: str) -> tuple[np.ndarray, ...]:
    """One ticker's windows of one period, as windows.build_dataset_at cuts them."""
    anchors = days.anchors[name]
    ahead = (sliding_window_view(scaled_target, spec.horizon), sliding_window_view(days.dates, spec.horizon),
             sliding_window_view(days.price, spec.horizon))
    targets, target_dates, actual = (view[anchors + 1] for view in ahead)
    return (anchors + days.offset, np.full(len(anchors), days.index, dtype=np.int64), targets, days.dates[anchors],
            days.price[anchors], target_dates, actual, days.last_return[anchors])
