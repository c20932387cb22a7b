"""Turn a price frame into scaled (lookback -> horizon) samples: features, split, scale, window.

Days are the rows of the feature frame (the first price row has no previous day and is dropped).
They are split chronologically into train [0, a), validation [a, b) and test [b, end). A window
anchored on day t reads inputs t-lookback+1..t and predicts days t+1..t+horizon; it belongs to a
split only if every one of its target days lies inside that split, so no target is ever seen by an
earlier split. Windows straddling a boundary are dropped. Inputs may reach back into earlier
periods: that is the past, known at forecast time. The scaler is fitted on training rows only.

Each window keeps the date and price it is anchored on and the real prices on its target dates, so
a prediction converts back to prices and dates exactly (`targets_to_prices`).

Context inputs and calendar features (context.py) are more columns of the same days. A day whose context
value is missing (a gap longer than `data.context_max_gap`) is NaN there: every window reading it is dropped,
and the scaler is fitted on the training days that have every input.

Cross-sectional targets (a global run's `data.target` excess or rank) take the day's common move out of what the
model is trained on; its inputs stay the same. `excess` is the ticker's log return minus the mean over the
tickers read that have that day; `rank` is the day's rank of the return among them, as (rank - 1/2) / n - 1/2
(uniform in (-1/2, 1/2), ties averaged). Each is turned into a series in log-return units (`target_series`) that
the ticker's scaler, fitted on its raw training returns exactly as for `log_return`, maps back: a forecast is
the predicted excess move plus the ticker's training mean return (its mean excess plus the market's mean over
its training days). A rank forecast is first read in the ticker's excess-return units: standardised over its
training days, times the training standard deviation of its excess return. Only training days enter these
statistics, and since the scaler is a log-return run's, a ticker the run never saw is scaled from its own
prices alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from lstm_forecast import baselines, context
from lstm_forecast.config import Config
from lstm_forecast.errors import ForecastError, UsageError, shorten
from lstm_forecast.model import memory_limit

PRICE_COLUMNS = {"adj_close": "Adj Close", "close": "Close"}
# What a model is trained to forecast. Every target but `price` is a daily log return (or stands for one), so
# its forecasts compound back to prices alike; `excess` and `rank` are cross-sectional (`cross_section_moves`).
TARGETS = ("log_return", "price", "excess", "rank")
RETURN_TARGETS = ("log_return", "excess", "rank")
CROSS_SECTION_TARGETS = ("excess", "rank")

# A standard deviation below this is a constant series (e.g. a flat price); dividing by it would
# blow the scaled values up, so such a feature is only centred (std replaced by 1.0).
MIN_STD = 1e-10


def _log_return(prices: pd.DataFrame, price: np.ndarray) -> np.ndarray:
    return np.diff(np.log(price))


def _volume_change(prices: pd.DataFrame, price: np.ndarray) -> np.ndarray:
    # log((v_t + 1) / (v_{t-1} + 1)): the +1 keeps zero-volume days (holidays in some feeds,
    # indices without volume) finite, and is negligible against real volumes in the thousands.
    return np.diff(np.log1p(prices["Volume"].to_numpy(dtype=np.float64)))


def _range(prices: pd.DataFrame, price: np.ndarray) -> np.ndarray:
    # log(High / Low) is scale-free, so adjusted and unadjusted prices give the same value.
    high = prices["High"].to_numpy(dtype=np.float64)
    low = prices["Low"].to_numpy(dtype=np.float64)
    return np.log(high / low)[1:]


FEATURES: dict[str, Callable[[pd.DataFrame, np.ndarray], np.ndarray]] = {
    "log_return": _log_return,
    "volume_change": _volume_change,
    "range": _range,
}


@dataclass(frozen=True)
class WindowSpec:
    """Everything needed to rebuild a bundle's inputs from prices, without the config file.

    Unchecked, like `Scaler`: built from a validated config, or from bundle.json through `bundle.WindowRecord`."""

    features: tuple[str, ...]
    price_column: str
    target: str
    lookback: int
    horizon: int
    context: tuple[context.ContextSeries, ...] = ()  # other series' inputs, after the ticker's own
    calendar_features: tuple[str, ...] = ()  # then these, of the session each day's window forecasts first
    context_max_gap: int = 3
    calendar: str | None = None  # the exchange the calendar features come from (None without them)

    @classmethod
    def from_config(cls, config: Config) -> WindowSpec:
        data = config.data
        return cls(
            features=tuple(data.features),
            price_column=data.price_column,
            target=data.target,
            lookback=config.window.lookback,
            horizon=config.window.horizon,
            context=context.resolve(data.context, data.calendar),
            calendar_features=tuple(data.calendar_features),
            context_max_gap=data.context_max_gap,
            calendar=data.calendar if data.calendar_features else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "features": list(self.features), "context": [item.to_dict() for item in self.context],
                "calendar_features": list(self.calendar_features)}

    @property
    def n_inputs(self) -> int:
        """Input columns per day: the ticker's features, the context inputs, the calendar columns."""
        return len(self.features) + len(self.context) + context.width(self.calendar_features)

    @property
    def context_tickers(self) -> list[str]:
        """The context series read, each once, in order."""
        return list(dict.fromkeys(item.ticker for item in self.context))

    @property
    def inference_rows(self) -> int:
        """Price rows a forecast reads: the lookback, the row before it (for returns) and, with context, the
        rows that decide whether a context day is too stale (context.align looks back context_max_gap rows)."""
        return self.lookback + 1 + (self.context_max_gap + 1 if self.context else 0)

    @property
    def price_column_name(self) -> str:
        """The price frame's column: "Adj Close" or "Close"."""
        return PRICE_COLUMNS[self.price_column]


@dataclass(frozen=True)
class Scaler:
    """Per-feature and target mean/std as plain numbers (JSON-ready), fitted on training rows only."""

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mean: float
    target_std: float

    def transform_features(self, x: np.ndarray) -> np.ndarray:
        """Scale an array whose last axis is the features."""
        return (np.asarray(x, dtype=np.float64) - np.array(self.feature_mean)) / np.array(self.feature_std)

    def transform_targets(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.target_mean) / self.target_std

    def inverse_targets(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64) * self.target_std + self.target_mean


def fit_scaler(train_features: np.ndarray, train_targets: np.ndarray) -> Scaler:
    """Mean/std of the training rows' features (n, F) and target series (n,)."""
    feature_std = np.std(train_features, axis=0)
    target_std = float(np.std(train_targets))
    return Scaler(
        feature_mean=tuple(float(v) for v in np.mean(train_features, axis=0)),
        feature_std=tuple(float(v) if v >= MIN_STD else 1.0 for v in feature_std),
        target_mean=float(np.mean(train_targets)),
        target_std=target_std if target_std >= MIN_STD else 1.0,
    )


@dataclass(frozen=True)
class GatheredWindows:
    """Windows cut on the fly, by index, from one array of days: row i is `values[ends[i] - lookback + 1 :
    ends[i] + 1]`. A global model's windows over hundreds of tickers are never materialised as a
    (windows × lookback × features) copy: memory grows with days × tickers, not × lookback. The trainer and
    `trainer.predict` take one wherever they take a windows array."""

    values: np.ndarray  # float32 (days, n_features): every series' scaled days, one after another
    ends: np.ndarray  # int64 (n,): the row of `values` each window is anchored on (its last input day)
    lookback: int

    def __len__(self) -> int:
        return len(self.ends)

    def materialise(self) -> np.ndarray:
        """The windows as one (n, lookback, n_features) array: for small sets, and to check the gather."""
        offsets = np.arange(1 - self.lookback, 1)
        return self.values[self.ends[:, None] + offsets]


PERIODS = {"train": "training", "val": "validation", "test": "test"}  # a dataset's periods, as notes name them


@dataclass
class Windows:
    """One period's windows over every ticker of a dataset, ticker by ticker; row i of every array is one window.

    `inputs` is materialised, (n, lookback, n_features), for a dataset of one ticker: small, and the fastest to
    train on. Over several tickers the windows are gathered batch by batch from the dataset's days
    (`GatheredWindows`): memory grows with days × tickers, not × lookback. The trainer takes either."""

    inputs: np.ndarray | GatheredWindows  # float32, scaled
    ticker: np.ndarray  # int64 (n,): the window's ticker (TickerDays.index)
    targets: np.ndarray  # float32 (n, horizon), in the ticker's own scaled units
    anchor_dates: np.ndarray  # datetime64[ns] (n,), the last input day
    anchor_prices: np.ndarray  # float64 (n,), the price on the anchor day
    target_dates: np.ndarray  # datetime64[ns] (n, horizon)
    actual_prices: np.ndarray  # float64 (n, horizon), the real prices on the target dates
    last_return: np.ndarray  # float64 (n,): the log return on the anchor day, known when forecasting

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def model_inputs(self) -> tuple[np.ndarray | GatheredWindows, np.ndarray]:
        """What a model takes: the windows and each one's ticker index (ignored by a model without a ticker
        embedding)."""
        return self.inputs, self.ticker

    def of(self, index: int) -> np.ndarray:
        """The rows of one ticker: contiguous, since the windows are concatenated ticker by ticker."""
        start, stop = np.searchsorted(self.ticker, [index, index + 1])
        return np.arange(start, stop)


@dataclass
class TickerDays:
    """One ticker's part of a dataset: its days, its scaler and its training statistics."""

    ticker: str
    index: int  # its position in the dataset (and in a ticker embedding)
    offset: int  # its first day's row in the dataset's values
    dates: np.ndarray  # datetime64[ns] (days,): the feature rows' days (the first price row has none)
    price: np.ndarray  # float64 (days,): the price on each day
    last_return: np.ndarray  # float64 (days,): the log return on each day
    target: np.ndarray  # float64 (days,): what its windows are trained to forecast (`target_series`)
    val_start: int  # first day (row of `dates`) of the validation period
    test_start: int  # first day of the test period
    scaler: Scaler
    train_mean_log_return: float  # mean daily log return over training rows (drift baseline)
    train_naive_mae: float  # in-sample one-step naive MAE on training prices (recorded)
    anchors: dict[str, np.ndarray]  # per period (PERIODS), the rows of `dates` its windows are anchored on
    dropped: dict[str, int]  # windows dropped per period for a missing context input (training, validation, test)


@dataclass
class Dataset:
    """Train/validation/test windows of N ≥ 1 tickers on one calendar split, each ticker scaled by its own
    training days. A single ticker's dataset is a dataset of one; `only` is that ticker."""

    spec: WindowSpec
    tickers: list[TickerDays]
    values: np.ndarray  # float32 (all days, n_features): every ticker's scaled days, one after another
    train: Windows
    val: Windows
    test: Windows
    val_start: pd.Timestamp  # the first day of the validation period, the same for every ticker
    test_start: pd.Timestamp  # the first day of the test period
    skipped: dict[str, str] = field(default_factory=dict)  # ticker -> why it was left out (several tickers)
    prices: dict[str, pd.DataFrame] = field(default_factory=dict)  # each kept ticker's rows, as windowed
    context_rows: dict[str, pd.DataFrame] = field(default_factory=dict)  # context series' rows read (all tickers)
    notes: dict[str, list[str]] = field(default_factory=dict)  # ticker -> what the data cost it, if anything

    @property
    def split(self) -> dict[str, str]:
        """The first days of the validation and test periods, as a bundle records them."""
        return {"val_start": self.val_start.date().isoformat(), "test_start": self.test_start.date().isoformat()}

    @property
    def names(self) -> list[str]:
        return [days.ticker for days in self.tickers]

    @property
    def only(self) -> TickerDays:
        """The ticker of a single-ticker dataset."""
        if len(self.tickers) != 1:
            raise ValueError(f"a dataset of {len(self.tickers)} tickers has no single scaler")
        return self.tickers[0]

    @property
    def scaler(self) -> Scaler:
        return self.only.scaler

    @property
    def train_mean_log_return(self) -> float:
        return self.only.train_mean_log_return

    @property
    def train_naive_mae(self) -> float:
        return self.only.train_naive_mae

    @property
    def dropped(self) -> dict[str, int]:
        return self.only.dropped

    def to_prices(self, period: Windows, scaled: np.ndarray) -> np.ndarray:
        """Scaled forecasts (n, horizon) of `period` back to prices, each row with its own ticker's scaler."""
        means = np.array([days.scaler.target_mean for days in self.tickers])[period.ticker]
        stds = np.array([days.scaler.target_std for days in self.tickers])[period.ticker]
        values = np.asarray(scaled, dtype=np.float64) * stds[:, None] + means[:, None]
        return values_to_prices(values, period.anchor_prices, self.spec.target)


def dropped_notes(dropped: dict[str, int], spec: WindowSpec) -> list[str]:
    """The note on windows dropped for a missing context input (per period: training, validation, test)."""
    total = sum(dropped.values())
    if total == 0:
        return []
    periods = ", ".join(f"{count} {name}" for name, count in dropped.items() if count)
    return [f"{total} windows dropped ({periods}): a context series missed more than "
            f"{spec.context_max_gap} sessions in a row (data.context_max_gap)"]


def whole_windows(complete: np.ndarray, anchors: np.ndarray, lookback: int) -> np.ndarray:
    """Which windows anchored on `anchors` (rows of the days) read only days with every input: a day is
    incomplete (`complete` False) where a context value is missing, and a window reading one is dropped."""
    missing = np.concatenate([[0], np.cumsum(~complete)])  # missing[k]: incomplete days before day k
    return missing[anchors + 1] - missing[anchors + 1 - lookback] == 0


def compute_features(
    prices: pd.DataFrame, spec: WindowSpec, context_prices: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """One row per day (the first price row is dropped: it has no previous day), one column per input: the
    ticker's features, then its context inputs (NaN where unusable) and calendar columns (context.py)."""
    features = _own_features(prices, spec)
    parts = [features]
    if spec.context:
        parts.append(context.context_columns(prices, spec, context_prices))
    if spec.calendar_features:
        parts.append(context.calendar_columns(features.index, spec))
    return pd.concat(parts, axis=1) if len(parts) > 1 else features


def _own_features(prices: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    price = prices[spec.price_column_name].to_numpy(dtype=np.float64)
    if len(price) < 2:
        return pd.DataFrame(columns=list(spec.features), index=prices.index[1:], dtype=np.float64)
    # A zero or negative price gives inf/nan here; the check below names the day instead of a warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {name: FEATURES[name](prices, price) for name in spec.features}
    features = pd.DataFrame(columns, index=prices.index[1:])
    finite = np.isfinite(features.to_numpy())
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        day = pd.Timestamp(features.index[row]).date()
        raise ForecastError(
            f"feature {features.columns[column]} is not finite on {day}: prices, High/Low and Volume must be "
            "positive numbers; check or re-fetch the price data"
        )
    return features


def min_rows_needed(spec: WindowSpec, val_fraction: float, test_fraction: float) -> int:
    """Fewest price rows for which a fractional split gives every split at least one window.

    Exact, and valid for every longer history too: the training share n - round(n*fv) - round(n*ft)
    can dip by one as n grows, so this is one past the last failing length, not the first passing one.
    """
    train_fraction = 1.0 - val_fraction - test_fraction
    train_days = spec.lookback + spec.horizon
    # Each requirement flips from failing to passing within 1/train_fraction days of its centre
    # (rounding moves each share by at most one day), so checking the day counts around each centre
    # finds the last failure without scanning every length from 1.
    centres = (
        train_days / train_fraction,
        (spec.horizon - 0.5) / val_fraction,
        (spec.horizon - 0.5) / test_fraction,
    )
    reach = int(1 / train_fraction) + 3
    days = np.unique(np.concatenate([np.arange(int(c) - reach, int(c) + reach + 1) for c in centres]))
    days = days[days >= 1]
    n_test = np.round(days * test_fraction)
    n_val = np.round(days * val_fraction)
    passing = (days - n_test - n_val >= train_days) & (n_val >= spec.horizon) & (n_test >= spec.horizon)
    failing = days[~passing]
    last_failing = int(failing.max()) if len(failing) else 0
    return last_failing + 1 + 1  # +1: first passing day count; +1: the price row dropped by differencing


def build_dataset(
    prices: pd.DataFrame | Mapping[str, pd.DataFrame], config: Config, split: Mapping[str, str] | None = None,
    context_prices: Mapping[str, pd.DataFrame] | None = None,
) -> Dataset:
    """Every ticker's windows on one calendar split: `split` as a bundle records it, else `split.val_start`/
    `test_start` from the config, else the fractions of the union of the tickers' days (each date moved to the
    first of those days on or after it). `prices` is one frame (a dataset of one) or frames by ticker.

    Each ticker's history is first cut to the days every context series covers (`context_prices`, by ticker,
    when the config reads any). A single ticker that cannot be windowed is an error; among several, it is left
    out with the reason in `Dataset.skipped`, and none left is an error. The walk-forward backtest's folds are
    datasets of prices cut off at the end of their test block, split on the fold's dates.
    """
    frames = {"": prices} if isinstance(prices, pd.DataFrame) else dict(prices)
    spec = WindowSpec.from_config(config)
    one = len(frames) == 1
    skipped: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    rows: dict[str, pd.DataFrame] = {}
    features: dict[str, pd.DataFrame] = {}
    for ticker, frame in frames.items():
        try:
            rows[ticker], notes[ticker] = context.common_range(frame, spec, context_prices)
            features[ticker] = compute_features(rows[ticker], spec, context_prices)
        except ForecastError as exc:
            if one:
                raise
            skipped[ticker] = str(exc)
    if not features:
        raise ForecastError(f"no ticker left to train on: {reasons(skipped)}")
    calendar = np.unique(np.concatenate([frame.index.to_numpy() for frame in features.values()]))
    val_day, test_day = split_days(calendar, config, split, spec)
    bounds = {ticker: tuple(int(np.searchsorted(frame.index.to_numpy(), day.to_datetime64()))
                            for day in (val_day, test_day)) for ticker, frame in features.items()}
    moves = cross_section_moves({ticker: rows[ticker] for ticker in features}, spec)
    return window_days(spec, rows, features, bounds, val_day, test_day, skipped, notes, context_prices, moves)


def split_days(
    calendar: np.ndarray, config: Config, split: Mapping[str, str] | None, spec: WindowSpec
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first days of the validation and test periods on `calendar` (the union of the tickers' days)."""
    if split is not None:
        days = (pd.Timestamp(split["val_start"]), pd.Timestamp(split["test_start"]))
    elif config.split.val_start is not None and config.split.test_start is not None:
        days = (pd.Timestamp(config.split.val_start), pd.Timestamp(config.split.test_start))
    else:
        fractions = config.split
        count = len(calendar)
        needed = min_rows_needed(spec, fractions.val_fraction, fractions.test_fraction)
        if count + 1 < needed:
            raise ForecastError(
                f"{_rows(count + 1)}: too few for window.lookback {spec.lookback}, window.horizon "
                f"{spec.horizon} and a {fractions.val_fraction:g}/{fractions.test_fraction:g} validation/test "
                f"split: need at least {needed}; fetch a longer history or shorten window.lookback"
            )
        test_start = count - round(count * fractions.test_fraction)
        val_start = test_start - round(count * fractions.val_fraction)
        return pd.Timestamp(calendar[val_start]), pd.Timestamp(calendar[test_start])
    # A date that is no trading day stands for the first day after it.
    places = np.searchsorted(calendar, [day.to_datetime64() for day in days])
    first, second = (pd.Timestamp(calendar[place]) if place < len(calendar) else day
                     for place, day in zip(places, days, strict=True))
    return first, second


def window_days(
    spec: WindowSpec, rows: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame],
    bounds: dict[str, tuple[int, int]], val_day: pd.Timestamp, test_day: pd.Timestamp,
    skipped: dict[str, str], notes: dict[str, list[str]], context_prices: Mapping[str, pd.DataFrame] | None,
    moves: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Dataset:
    """Scale and window every ticker within its bounds (val_start, test_start: rows of its days); `moves` are
    the tickers' cross-sectional moves for a cross-sectional target (`cross_section_moves`)."""
    one = len(features) == 1
    tickers: list[TickerDays] = []
    blocks: list[np.ndarray] = []
    offset = 0
    for ticker, frame in features.items():
        try:
            days, scaled = ticker_days(ticker, len(tickers), offset, rows[ticker], frame, spec, *bounds[ticker],
                                       moves=(moves or {}).get(ticker))
        except ForecastError as exc:
            if one:
                raise
            skipped[ticker] = str(exc)
            continue
        tickers.append(days)
        blocks.append(scaled)
        notes[ticker] = notes[ticker] + dropped_notes(days.dropped, spec)
        offset += len(days.dates)
    if not tickers:
        raise ForecastError(f"no ticker has enough days around the split ({val_day.date()}, {test_day.date()}) "
                            f"for one window: {reasons(skipped)}")
    if one:
        _check_window_memory(len(tickers[0].dates), spec)
    values = np.concatenate(blocks)
    kept = {days.ticker: rows[days.ticker] for days in tickers}
    periods = {name: period_windows(tickers, values, spec, name, materialise=one) for name in PERIODS}
    return Dataset(spec=spec, tickers=tickers, values=values, train=periods["train"], val=periods["val"],
                   test=periods["test"], val_start=val_day, test_start=test_day, skipped=skipped, prices=kept,
                   context_rows=context_read(kept, spec, context_prices),
                   notes={name: notes[name] for name in kept if notes[name]})


def ticker_days(
    ticker: str, index: int, offset: int, rows: pd.DataFrame, features: pd.DataFrame, spec: WindowSpec,
    val_start: int, test_start: int, moves: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[TickerDays, np.ndarray]:
    """One ticker's days, scaler (fitted on its complete training days) and window anchors, and its scaled
    feature rows; a ForecastError naming the period that cannot hold one window. `moves`: its excess return
    and cross-sectional score on each day, for a cross-sectional target (`cross_section_moves`)."""
    end = n_days = len(features)
    if not 0 <= val_start <= test_start <= n_days:
        raise ValueError(f"expected 0 <= {val_start=} <= {test_start=} <= {n_days} days")
    dates = features.index.to_numpy().astype("datetime64[ns]")
    needed = spec.lookback + spec.horizon
    if val_start < needed:
        begins = pd.Timestamp(dates[val_start]).date() if val_start < n_days else "after the last day of data"
        raise ForecastError(
            f"{val_start} trading days before the validation period ({begins}); one training window of "
            f"window.lookback {spec.lookback} + window.horizon {spec.horizon} needs {needed}; use a longer price "
            "history, move the split dates or shorten the window"
        )
    _check_period("validation", dates, val_start, test_start, spec.horizon, spec)
    _check_period("test", dates, test_start, end, spec.horizon, spec)

    raw_price = rows[spec.price_column_name].to_numpy(dtype=np.float64)
    log_return = np.diff(np.log(raw_price))
    feature_values = features.to_numpy(dtype=np.float64)
    complete = np.isfinite(feature_values).all(axis=1)  # False only where a context value is missing
    if not complete[:val_start].any():
        raise ForecastError("no training day has every context input; see data.context_max_gap")
    # The scaler maps forecasts back to returns (or prices): fitted on the raw series for every target.
    unscaled = raw_price[1:] if spec.target == "price" else log_return
    scaler = fit_scaler(feature_values[:val_start][complete[:val_start]], unscaled[:val_start])
    anchors, dropped = {}, {}
    periods = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, end)}
    for name, (first, stop) in periods.items():
        # Anchors whose inputs exist and whose targets all lie in [first, stop), reading complete days only.
        candidates = np.arange(max(first - 1, spec.lookback - 1), stop - spec.horizon)
        whole = whole_windows(complete, candidates, spec.lookback)
        anchors[name], dropped[PERIODS[name]] = candidates[whole], int((~whole).sum())
        if not whole.any():
            raise ForecastError(
                f"the {PERIODS[name]} period has no window whose context inputs are all there: a context series "
                f"misses more than data.context_max_gap ({spec.context_max_gap}) sessions too often; raise it or "
                "drop that series"
            )
    days = TickerDays(
        ticker=ticker, index=index, offset=offset, dates=dates, price=raw_price[1:], last_return=log_return,
        target=target_series(spec.target, unscaled, moves, val_start), val_start=val_start, test_start=test_start,
        scaler=scaler,
        # Training prices include the first price row: day 0's return and naive forecast need it.
        train_mean_log_return=baselines.mean_log_return(raw_price[: val_start + 1]),
        train_naive_mae=baselines.naive_mae_scale(raw_price[: val_start + 1]),
        anchors=anchors, dropped=dropped,
    )
    return days, scaler.transform_features(feature_values).astype(np.float32)


def cross_section_moves(
    rows: Mapping[str, pd.DataFrame], spec: WindowSpec
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per ticker, on each of its feature days: its excess return (its log return minus the day's mean over the
    tickers that have that day) and the day's cross-sectional score its target is made of (the excess itself, or
    the normalised rank; see the top). Empty unless the target is cross-sectional."""
    if spec.target not in CROSS_SECTION_TARGETS:
        return {}
    column = spec.price_column_name
    # One days x tickers frame on the union of their days: NaN where a ticker has no row that day.
    returns = pd.DataFrame({ticker: pd.Series(np.diff(np.log(frame[column].to_numpy(dtype=np.float64))),
                                              index=frame.index[1:]) for ticker, frame in rows.items()})
    excess = returns.sub(returns.mean(axis=1), axis=0)
    if spec.target == "excess":
        score = excess
    else:
        present = returns.notna().sum(axis=1)
        score = (returns.rank(axis=1) - 0.5).div(present, axis=0) - 0.5
    return {ticker: (excess[ticker].loc[frame.index[1:]].to_numpy(), score[ticker].loc[frame.index[1:]].to_numpy())
            for ticker, frame in rows.items()}


def target_series(
    target: str, unscaled: np.ndarray, moves: tuple[np.ndarray, np.ndarray] | None, val_start: int
) -> np.ndarray:
    """What a ticker's windows are trained to forecast on each day, in the units its scaler maps back: the raw
    series (`unscaled`: log returns, or prices), or for a cross-sectional target its training mean return plus
    the day's score, centred and put in excess-return units on its training days (see the top). A dataset of one
    ticker has no cross-section: its score is constant and the series its training mean (never trained on:
    such a dataset only scales and forecasts a ticker a global run never saw)."""
    if target not in CROSS_SECTION_TARGETS:
        return unscaled
    if moves is None:
        raise ValueError(f"target {target!r} needs the cross-sectional moves")
    excess, score = moves
    train = slice(0, val_start)
    spread = float(np.std(score[train]))
    # For excess the ratio is one: the series is the return minus the day's mean plus the ticker's training
    # mean of that mean (the market's training mean return over its days).
    ratio = float(np.std(excess[train])) / spread if spread >= MIN_STD else 0.0
    return float(np.mean(unscaled[train])) + ratio * (score - float(np.mean(score[train])))


def period_windows(
    tickers: list[TickerDays], values: np.ndarray, spec: WindowSpec, name: str, materialise: bool
) -> Windows:
    """One period's windows over every ticker, concatenated ticker by ticker."""
    parts = []
    for days in tickers:
        anchors = days.anchors[name]
        scaled_target = days.scaler.transform_targets(days.target).astype(np.float32)
        # Views, not copies: row j is days j..j+horizon-1, the targets of the window anchored on day j-1.
        ahead = (sliding_window_view(scaled_target, spec.horizon), sliding_window_view(days.dates, spec.horizon),
                 sliding_window_view(days.price, spec.horizon))
        targets, target_dates, actual = (view[anchors + 1] for view in ahead)
        parts.append((anchors + days.offset, np.full(len(anchors), days.index, dtype=np.int64), targets,
                      days.dates[anchors], days.price[anchors], target_dates, actual, days.last_return[anchors]))
    ends, ticker, targets, anchor_dates, anchor_prices, target_dates, actual, last_return = (
        np.concatenate(column) for column in zip(*parts, strict=True))
    inputs = GatheredWindows(values, ends, spec.lookback)
    return Windows(inputs.materialise() if materialise else inputs, ticker, targets, anchor_dates, anchor_prices,
                   target_dates, actual, last_return)


def context_read(
    prices: dict[str, pd.DataFrame], spec: WindowSpec, context_prices: Mapping[str, pd.DataFrame] | None
) -> dict[str, pd.DataFrame]:
    """Each context series' rows that any ticker's rows read, from the first to the last (the union of
    `context.rows_used` over the tickers): what a bundle records to rebuild every ticker's inputs."""
    if not spec.context:
        return {}
    first: dict[str, pd.Timestamp] = {}
    last: dict[str, pd.Timestamp] = {}
    for frame in prices.values():  # every kept ticker reads each series on a day it covers (common_range)
        for name, used in context.rows_used(frame, spec, context_prices).items():
            if len(used) == 0:
                continue
            first[name] = min(first.get(name, used.index[0]), used.index[0])
            last[name] = max(last.get(name, used.index[-1]), used.index[-1])
    return {name: context_prices[name].loc[first[name] : last[name]] for name in first}


def reasons(skipped: dict[str, str], shown: int = 2) -> str:
    """The first few tickers left out and why, and how many more: one error line, however many there are."""
    listed = "; ".join(f"{ticker}: {shorten(why, 120)}" for ticker, why in list(skipped.items())[:shown])
    more = len(skipped) - shown
    return listed + (f"; and {more} more" if more > 0 else "")


# The windows exist about three times in float32 while training: cut from the days, on the device, and
# shuffled for an epoch.
WINDOW_COPIES = 3


def _check_window_memory(n_days: int, spec: WindowSpec) -> None:
    """Refuse, before building them, windows that would not fit: days × lookback × features grow fast
    (a 2000-day lookback over 19,000 days of three features is 1.1 GB a copy)."""
    needed = n_days * spec.lookback * spec.n_inputs * 4 * WINDOW_COPIES
    if needed > memory_limit():
        raise UsageError(
            f"{n_days:,} days of {spec.n_inputs} input(s) in windows of window.lookback {spec.lookback} "
            f"need about {needed / 1024**3:.1f} GiB, more than the {memory_limit() / 1024**3:.1f} GiB allowed "
            "here (half the memory); lower window.lookback, use fewer data.features or a later data.start"
        )


def _check_period(name: str, dates: np.ndarray, start: int, stop: int, needed: int, spec: WindowSpec) -> None:
    """Raise a one-line error when a period holds too few days for a single window."""
    if stop - start >= needed:
        return
    if stop > start:
        span = f"{pd.Timestamp(dates[start]).date()} to {pd.Timestamp(dates[stop - 1]).date()}"
    elif start < len(dates):
        span = f"before {pd.Timestamp(dates[start]).date()}"
    else:
        span = "after the last day of data"
    raise ForecastError(
        f"the {name} period ({span}) has {stop - start} trading days but window.horizon {spec.horizon} needs "
        f"at least {needed}; "
        "use a longer price history, move the split dates or shorten the window"
    )


def targets_to_prices(
    predicted_scaled: np.ndarray, anchor_prices: np.ndarray, scaler: Scaler, target: str
) -> np.ndarray:
    """Scaled predictions (..., n, horizon) -> prices on the target dates (float64).

    log_return: the anchor price compounded by the cumulative predicted returns; price: unscaled.
    """
    return values_to_prices(scaler.inverse_targets(predicted_scaled), anchor_prices, target)


def values_to_prices(values: np.ndarray, anchor_prices: np.ndarray, target: str) -> np.ndarray:
    """Unscaled target values (..., n, horizon) -> prices on the target dates (see `targets_to_prices`); a
    cross-sectional target's values are log returns (see the top)."""
    if target in RETURN_TARGETS:
        return np.asarray(anchor_prices, dtype=np.float64)[..., None] * np.exp(np.cumsum(values, axis=-1))
    if target == "price":
        return values
    raise ValueError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")


def inference_inputs(
    prices: pd.DataFrame, spec: WindowSpec, scaler: Scaler, context_prices: Mapping[str, pd.DataFrame] | None = None,
) -> tuple[np.ndarray, pd.Timestamp, float]:
    """The latest `lookback` days as one scaled input (1, lookback, F) float32, its anchor date and price.

    Give the last `spec.inference_rows` price rows (or more): with context, the rows before the lookback decide
    whether a context day inside it is too stale."""
    features = compute_features(prices, spec, context_prices)
    if len(features) < spec.lookback:
        raise ForecastError(
            f"{_rows(len(prices))}: too few for window.lookback {spec.lookback}: need at least "
            f"{spec.lookback + 1}; fetch a longer history"
        )
    values = features.to_numpy(dtype=np.float64)[-spec.lookback :]
    if not np.isfinite(values).all():
        column = features.columns[int(np.argwhere(~np.isfinite(values))[0][1])]
        raise ForecastError(
            f"the context input {column} is missing for more than {spec.context_max_gap} sessions in a row within "
            f"the last {spec.lookback} days; refresh the context series' cache (predict --refresh)"
        )
    latest = scaler.transform_features(values)
    anchor_price = float(prices[spec.price_column_name].iloc[-1])
    return latest.astype(np.float32)[None], pd.Timestamp(features.index[-1]), anchor_price


def _rows(count: int) -> str:
    return f"{count} price row" + ("" if count == 1 else "s")
