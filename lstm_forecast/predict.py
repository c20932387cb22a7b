"""Forecast the next trading sessions from a run bundle: latest cached prices → model → prices with intervals.

Reads top to bottom like train.py: choose the run, read the price cache (no network unless `--refresh`),
build the one input window exactly as training built its windows, run the model once, turn its output
into prices, put split-conformal intervals around them (calibrated on the validation residuals stored in
the bundle) and label each step with the exchange's next trading session.

The model forecasts all `horizon` days at once (direct multi-step), so it can show fewer days than it was
trained for but never more. Same bundle and same cache give byte-identical JSON, CSV and table; the clock
only decides whether the cache is old enough to warn about, and the age of the data the chart's note states.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast import context, data
from lstm_forecast.bundle import (
    METRICS_FILE,
    OUT_OF_UNIVERSE_DIR,
    GlobalBundle,
    RunBundle,
    TickerRecordData,
    find_run,
    list_runs,
    load_run,
    resolve_runs_dir,
)
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError
from lstm_forecast.files import atomic_write_text, json_text, writes_in_place
from lstm_forecast.intervals import conformal_quantiles, interval_bounds
from lstm_forecast.metrics import format_pvalue
from lstm_forecast.model import ensemble_of
from lstm_forecast.runs import (
    OUT_OF_UNIVERSE_FAMILY,
    RunMetrics,
    checked_record,
    global_runs_by_ticker,
    runs_dir_family,
)
from lstm_forecast.scoring import member_predictions, ticker_forecasts, val_residuals
from lstm_forecast.sessions import TradingCalendar, calendar_for
from lstm_forecast.sets import Q_THRESHOLD, SUMMARY_JSON, Family, SetSummary, recorded_family
from lstm_forecast.tables import FitTable
from lstm_forecast.trainer import cpu_threads
from lstm_forecast.trainer import predict as predict_scaled
from lstm_forecast.windows import Scaler, build_dataset, inference_inputs, targets_to_prices

FORMATS = ("table", "json", "csv")
CHART_FILE = "forecast.png"
HISTORY_SESSIONS = 120  # sessions of history drawn before the forecast on the fan chart
STALE_AFTER_SESSIONS = 5  # warn when more sessions than this have closed since the last cached day
DECIMALS = 4  # prices and percentages in JSON and CSV: fixed, so repeated runs give identical bytes
TABLE_WIDTH = 100  # a table written to a file has a fixed width, not the terminal's


@dataclass(frozen=True)
class Forecast:
    """One forecast: a price and its interval per level for each of the next sessions."""

    ticker: str
    run_id: str
    run_dir: Path | None
    model: str
    price_column: str  # "Adj Close" or "Close": what the prices are
    calendar: str
    last_date: date  # the anchor: the last day of prices the model read
    last_price: float
    dates: list[date]
    prices: np.ndarray  # (days,)
    lower: dict[float, np.ndarray]  # level in percent -> (days,)
    upper: dict[float, np.ndarray]
    calibration_windows: int  # validation windows behind each interval
    history: pd.Series = field(repr=False)  # the recent prices, for the fan chart

    @property
    def levels(self) -> list[float]:
        return list(self.lower)

    @property
    def change_pct(self) -> np.ndarray:
        return (self.prices / self.last_price - 1.0) * 100.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON document; keys in a fixed order, numbers rounded to DECIMALS places."""
        steps = []
        for step, day in enumerate(self.dates):
            intervals = {
                level_name(level): {
                    "lower": rounded(self.lower[level][step]),
                    "upper": rounded(self.upper[level][step]),
                }
                for level in self.levels
            }
            steps.append(
                {
                    "date": day.isoformat(),
                    "step": step + 1,
                    "price": rounded(self.prices[step]),
                    "change_pct": rounded(self.change_pct[step]),
                    "intervals": intervals,
                }
            )
        return {
            "ticker": self.ticker,
            "run_id": self.run_id,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
            "model": self.model,
            "last_date": self.last_date.isoformat(),
            "last_price": rounded(self.last_price),
            "levels": [level_value(level) for level in self.levels],
            "forecasts": steps,
            "price_column": self.price_column,
            "calendar": self.calendar,
            "calibration_windows": self.calibration_windows,
        }

    def to_json(self) -> str:
        return json_text(self.to_dict())

    def to_csv(self) -> str:
        """One row per step: date,step,price,change_pct,lower_80,upper_80,lower_95,upper_95."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        names = [f"{side}_{level_name(level)}" for level in self.levels for side in ("lower", "upper")]
        writer.writerow(["date", "step", "price", "change_pct", *names])
        change = self.change_pct
        for step, day in enumerate(self.dates):
            values = [self.prices[step], change[step]]
            values += [side[level][step] for level in self.levels for side in (self.lower, self.upper)]
            writer.writerow([day.isoformat(), step + 1, *(rounded(value) for value in values)])
        return buffer.getvalue()


@dataclass
class PredictOutcome:
    """What the `predict` command did: the forecast, where it was written, and warnings for stderr."""

    forecast: Forecast
    format: str
    text: str | None  # the JSON/CSV/plain table written to `output`, or JSON/CSV for stdout
    output: Path | None
    chart: Path | None  # None when the chart could not be written (see warnings)
    warnings: list[str]


def run_predict(
    run: Path | None = None,
    ticker: str | None = None,
    days: int | None = None,
    levels: Sequence[float] = (),
    output_format: str | None = None,
    output: Path | None = None,
    refresh: bool = False,
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    today: date | None = None,
    on_fetch: Callable[[str], None] | None = None,
    tickers: Sequence[str] = (),
    stop: StopRequest | None = None,
) -> PredictOutcome | Screener:
    """The `predict` command: choose the run (the newest of either kind when none is given), forecast from the
    latest prices, write `output` and the chart. A global run gives the screener over its tickers, or over
    `tickers` (those it never saw too, when it has no ticker embedding).

    `today` (default: the real date) only decides the stale-cache warning.
    """
    output_format = resolve_format(output_format, output)
    run_dir = find_run(resolve_runs_dir(runs_dir, None), run, ticker)
    bundle = load_run(run_dir)
    if isinstance(bundle, GlobalBundle):  # one model over several tickers: the next session of each, ranked
        if days is not None:
            raise UsageError("--days: a global run's screener shows the next session only")
        return screen_run(bundle, tickers, levels, output_format, output, refresh, data_dir, today, stop)
    if tickers:
        raise UsageError("give --run or --ticker, not both (--run names one ticker's run already)")
    days = check_days(days, bundle.spec.horizon)
    # Intervals first: a bad --level fails before any download.
    half_widths = interval_half_widths(bundle, levels or bundle.config.predict.levels)

    folder = data.resolve_data_dir(data_dir, bundle.config.data.dir)
    if output is not None:
        check_not_ours(output, run_dir.resolve().parent.parent, folder)
    today = today or date.today()
    prices, context_prices, calendar, warnings = latest_prices(bundle, bundle.ticker, folder, refresh, today, on_fetch)
    forecast = make_forecast(bundle, prices, days, half_widths, calendar, context_prices)

    text = None if output_format == "table" and output is None else render(forecast, output_format)
    chart = chart_path(output, run_dir)  # before writing: what the user named decides, not what was written
    if output is not None:
        atomic_write_text(output, text)
    try:
        draw_fan_chart(forecast, chart, calendar.sessions_between(forecast.last_date, today))
    except ForecastError as exc:  # the forecast itself is done; a read-only bundle only loses the picture
        warnings.append(f"the fan chart was not saved: {exc}")
        chart = None
    return PredictOutcome(forecast, output_format, text, output, chart, warnings)


def chart_path(output: Path | None, run_dir: Path) -> Path:
    """Where the fan chart goes: beside a regular --output file as `<name>.png` (x.json -> x.json.png, so the
    charts of x.json, x.csv and x.txt never overwrite one another or another file), else into the bundle (no
    --output, or an output written in place: a device or a FIFO such as /dev/null, or /dev/stdout)."""
    if output is None or writes_in_place(output) or (output.exists() and not output.is_file()):
        return run_dir / CHART_FILE
    return output.with_name(output.name + ".png")


def check_not_ours(output: Path, runs_dir: Path, data_dir: Path) -> None:
    """Refuse an --output that is one of the tool's own files: in the runs dir, or a price cache (or its
    sidecar) in the data dir. Overwriting one would leave every later command failing on it."""
    target = output.resolve()
    in_bundles = runs_dir.resolve() in target.parents
    is_cache = target.parent == data_dir.resolve() and target.name.endswith((".csv", ".meta.json", ".lock"))
    if in_bundles or is_cache:
        what = "the run bundles" if in_bundles else "the price cache"
        raise UsageError(f"--output {output}: that is in {what} this tool keeps; write the forecast elsewhere")


def resolve_format(output_format: str | None, output: Path | None) -> str:
    """--format as given, else from --output's suffix (.json, .csv), else a table."""
    if output is not None and output.suffix.lower() == ".png":
        raise UsageError(
            f"--output {output}: write the forecast as .json, .csv or text; the chart is saved beside it"
        )
    if output_format is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        return suffix if suffix in ("json", "csv") else "table"
    if output_format not in FORMATS:
        raise UsageError(f"--format {output_format!r}: expected one of {', '.join(FORMATS)}")
    return output_format


def check_days(days: int | None, horizon: int) -> int:
    """--days, defaulting to the run's horizon; more than the horizon cannot be forecast by this run."""
    if days is None:
        return horizon
    if days < 1:
        raise UsageError(f"--days {days}: expected at least 1 trading day")
    if days > horizon:
        raise UsageError(
            f"--days {days}: the run was trained to forecast {horizon} days at once (direct multi-step), "
            f"so it has no forecast for day {horizon + 1} or later; retrain with --set window.horizon={days} "
            f"to forecast {days} days"
        )
    return days


def interval_half_widths(bundle: RunBundle, levels: Sequence[float]) -> dict[float, np.ndarray]:
    """Conformal half-widths (log-price units, one per horizon step) for each level, ascending."""
    residuals = bundle.calibration["residuals"]  # one list per forecast day: the bundle's schema checked them
    return {float(level): conformal_quantiles(residuals, float(level)) for level in sorted(set(levels))}


def latest_prices(
    bundle: RunBundle | GlobalBundle, ticker: str, data_dir: Path, refresh: bool, today: date,
    on_fetch: Callable[[str], None] | None = None, stop: StopRequest | None = None, refreshed: set[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], TradingCalendar, list[str]]:
    """The ticker's prices to forecast from (see latest_rows), the context series' (see recent_context), the run's
    trading calendar from their last day on, and the warnings: nothing cached, or a cache more than
    STALE_AFTER_SESSIONS sessions old."""
    prices, fallback_warning = latest_rows(bundle, ticker, data_dir, refresh, stop, on_fetch)
    context_prices = recent_context(bundle, data_dir, refresh, fallback_warning is not None, on_fetch, stop,
                                    refreshed)
    context.check_fresh(ticker, prices, bundle.spec, context_prices)
    last_day = prices.index[-1].date()
    try:
        calendar = calendar_for(bundle.config.data.calendar, last_day, bundle.spec.horizon, today)
    except UsageError as exc:  # the bundle's own config names it: a damaged bundle, not a usage error
        raise ForecastError(f"{bundle.run_dir}: {exc}; the bundle is damaged") from None
    if fallback_warning is not None:
        return prices, context_prices, calendar, [fallback_warning]
    return prices, context_prices, calendar, stale_cache_warning(ticker, last_day, calendar, today)


def recent_context(
    bundle: RunBundle | GlobalBundle, data_dir: Path, refresh: bool, from_bundle: bool,
    on_fetch: Callable[[str], None] | None = None, stop: StopRequest | None = None,
    refreshed: set[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Each context series' cached prices (updated first with `refresh`, like the ticker's, unless it is in
    `refreshed` already; it is added), or the bundle's recorded rows when the ticker's own prices come from the
    bundle too; a missing cache is an error."""
    tickers = bundle.spec.context_tickers
    if not tickers:
        return {}
    if from_bundle:
        return bundle.context_prices()
    frames = context.cached_context(data_dir, tickers, refresh, on_fetch, stop, refreshed)
    for ticker, cached in frames.items():
        if cached is None:
            raise ForecastError(
                f"no cached prices for the context series {ticker} in {data_dir}; fetch them with "
                f"`lstm-forecast fetch -t {ticker}` or predict with --refresh"
            )
    return frames


def stale_cache_warning(ticker: str, last_day: date, calendar: TradingCalendar, today: date) -> list[str]:
    """A warning when more than STALE_AFTER_SESSIONS sessions have closed since the last cached day."""
    missed = calendar.sessions_between(last_day, today)
    if missed <= STALE_AFTER_SESSIONS:
        return []
    return [
        f"the cached prices for {ticker} end on {last_day}, {missed} trading sessions before today; "
        f"run with --refresh (or `lstm-forecast fetch -t {ticker}`) to forecast from the latest prices"
    ]


def make_forecast(
    bundle: RunBundle,
    prices: pd.DataFrame,
    days: int,
    half_widths: dict[float, np.ndarray],
    calendar: TradingCalendar,
    context_prices: dict[str, pd.DataFrame] | None = None,
) -> Forecast:
    """Forecast the `days` sessions after the last row of `prices` with the bundle's model."""
    spec = bundle.spec
    anchor_date, anchor_price, path = forecast_paths(bundle, {bundle.ticker: bundle.scaler},
                                                     {bundle.ticker: prices}, context_prices)[bundle.ticker]
    if (trouble := not_a_price(path, anchor_date)) is not None:
        raise ForecastError(trouble)
    bounds = {level: interval_bounds(path, widths) for level, widths in half_widths.items()}
    return Forecast(
        ticker=bundle.ticker,
        run_id=bundle.run_id,
        run_dir=bundle.run_dir,
        model=bundle.shape.kind,
        price_column=spec.price_column_name,
        calendar=calendar.name,
        last_date=anchor_date.date(),
        last_price=anchor_price,
        dates=calendar.next_sessions(anchor_date.date(), days),
        prices=path[:days],
        lower={level: low[:days] for level, (low, _) in bounds.items()},
        upper={level: high[:days] for level, (_, high) in bounds.items()},
        calibration_windows=len(bundle.calibration["residuals"][0]),
        history=prices[spec.price_column_name].iloc[-HISTORY_SESSIONS:],
    )


def forecast_paths(
    bundle: RunBundle | GlobalBundle, scalers: dict[str, Scaler], recent: dict[str, pd.DataFrame],
    context_prices: dict[str, pd.DataFrame] | None = None,
) -> dict[str, tuple[pd.Timestamp, float, np.ndarray]]:
    """Each ticker's forecast from its latest prices (`recent`, scaled by `scalers`), as prices on the horizon's
    sessions, with its anchor day and price: one batched forward of the run's members, their mean. A ticker the
    run never saw reads with index 0, which a model without a ticker embedding ignores."""
    spec, index = bundle.spec, {name: i for i, name in enumerate(bundle.names)}
    # Only the last lookback days (plus the one before the first, for its return) enter the model.
    latest = {ticker: inference_inputs(prices.iloc[-spec.inference_rows:], spec, scalers[ticker], context_prices)
              for ticker, prices in recent.items()}
    batch = (np.concatenate([inputs for inputs, _, _ in latest.values()]),
             np.array([index.get(ticker, 0) for ticker in latest], dtype=np.int64))
    # A few hundred windows at most are far too little work to share: handing them between OpenMP threads costs
    # more than the whole forward (over 100 ms per call measured on a busy 2-core machine, against 0.1-0.5 ms on
    # one thread).
    with cpu_threads(1):
        scaled = predict_scaled(ensemble_of(bundle.members), batch)
    return {ticker: (anchor_date, anchor_price, targets_to_prices(scaled[row:row + 1], np.array([anchor_price]),
                                                                   scalers[ticker], spec.target)[0])
            for row, (ticker, (_, anchor_date, anchor_price)) in enumerate(latest.items())}


def not_a_price(path: np.ndarray, anchor_date: pd.Timestamp) -> str | None:
    """Why a forecast path is unusable (a value that is not a positive price), or None."""
    if np.all(np.isfinite(path)) and np.all(path > 0):
        return None
    return f"the model's forecast from {anchor_date.date()} is not a positive price; the run may be damaged, retrain it"


# --- presenting a forecast ----------------------------------------------------------------------


def render(forecast: Forecast, output_format: str) -> str:
    """The forecast as JSON, CSV or a plain-text table (for a file)."""
    if output_format == "json":
        return forecast.to_json()
    if output_format == "csv":
        return forecast.to_csv()
    from rich.console import Console

    console = Console(file=io.StringIO(), width=TABLE_WIDTH, color_system=None, force_terminal=False)
    console.print(forecast_table(forecast))
    console.print(interval_note(forecast), markup=False)
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())


def forecast_table(forecast: Forecast) -> Any:
    """A rich table: date, forecast, change from the last close, and the low/high of each interval."""
    from rich.table import Table

    title = (
        f"{forecast.ticker} · {forecast.model.upper()} · last close {forecast.last_date} "
        f"{forecast.last_price:,.2f} ({forecast.price_column})"
    )
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("date")
    table.add_column("forecast", justify="right")
    table.add_column("change %", justify="right")
    for level in forecast.levels:
        table.add_column(f"{level_name(level)}% low", justify="right")
        table.add_column(f"{level_name(level)}% high", justify="right")
    change = forecast.change_pct
    for step, day in enumerate(forecast.dates):
        bounds = [
            f"{side[step]:,.2f}"
            for level in forecast.levels
            for side in (forecast.lower[level], forecast.upper[level])
        ]
        table.add_row(day.isoformat(), f"{forecast.prices[step]:,.2f}", f"{change[step]:+.2f}", *bounds)
    return table


def interval_note(forecast: Forecast) -> str:
    """The line under the table: which run, and where the intervals come from."""
    return (
        f"Run {forecast.run_id}. Intervals are split-conformal from {forecast.calibration_windows} "
        "validation windows, per forecast day; `lstm-forecast evaluate` shows their coverage on the "
        "test period. Not investment advice."
    )


def draw_fan_chart(forecast: Forecast, path: Path, sessions_since: int) -> Path:
    """The fan chart: recent prices, the forecast path and a shaded band per interval level; the note says
    how old the last price is (`sessions_since`: sessions closed between it and today)."""
    from lstm_forecast import plots  # matplotlib only when drawing

    title = (
        f"{forecast.ticker} · {forecast.model.upper()} · run {forecast.run_id} · "
        f"next {len(forecast.dates)} sessions"
    )
    age = "the latest session" if sessions_since == 0 else (
        f"{sessions_since} session{'s' if sessions_since != 1 else ''} before today")
    stale = "  ⚠ old data: run predict with --refresh" if sessions_since > STALE_AFTER_SESSIONS else ""
    note = f"prices up to {forecast.last_date.isoformat()}, {age}{stale}"
    bands = {f"{level_name(level)}%": (low, forecast.upper[level]) for level, low in forecast.lower.items()}
    return plots.fan_chart(
        history_dates=forecast.history.index.to_numpy(),
        history_prices=forecast.history.to_numpy(),
        forecast_dates=np.array(forecast.dates, dtype="datetime64[D]"),
        forecast_prices=forecast.prices,
        bands=bands,
        price_label=forecast.price_column,
        title=title,
        note=note,
        path=path,
    )


def level_name(level: float) -> str:
    """80.0 -> "80", 97.5 -> "97.5": the key of a level in JSON and in CSV column names."""
    return f"{level:g}"


def level_value(level: float) -> int | float:
    return int(level) if float(level).is_integer() else float(level)


def rounded(value: float) -> float:
    """Rounded for output; + 0.0 turns a rounded -0.0 into 0.0."""
    return round(float(value), DECIMALS) + 0.0


# --- the screener: many tickers in one table that states each run's own skill ---------------------


SCREENER_LEVEL = 80.0  # the interval a row shows when its levels include it; else the first level configured
REFRESH_PACE_S = 0.5  # --refresh over many tickers updates one cache at a time, two a second at most
SCREENER_COLUMNS = (
    "rank", "ticker", "status", "last_date", "last_price", "session", "forecast", "change_pct", "level", "lower",
    "upper", "rmse_ratio", "dm_pvalue", "bh_qvalue", "verdict", "run_dir", "note", "family", "family_size",
)
NOT_FORECAST = ("failed", "not run")  # the statuses of a row without a forecast
SHOWN_REASONS = 10  # tickers named under the table per kind of trouble; the files name every one
Recorded = tuple[RunMetrics | None, str | None]  # a run's metrics.json read back, and why it could not be (damage)


@dataclass
class Screener:
    """What `predict` over two or more tickers did: one row per ticker, ranked, and where it was written."""

    rows: list[dict[str, Any]]  # SCREENER_COLUMNS: the forecasts by change_pct, biggest rise first, then the rest
    format: str
    text: str | None  # the JSON/CSV/plain table written to `output`, or JSON/CSV for stdout
    output: Path | None
    interrupted: bool
    header: str | None = None  # a global run's skill across the cross-section, printed above the table

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "failed"]


def run_screener(
    tickers: Sequence[str],
    levels: Sequence[float] = (),
    output_format: str | None = None,
    output: Path | None = None,
    refresh: bool = False,
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    today: date | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    stop: StopRequest | None = None,
) -> Screener:
    """`predict` over two or more tickers: each ticker's newest run, its own or a global run trained on it,
    forecasts the next session (one model forward each, in this process), ranked by the forecast move beside the
    run's own test RMSE ratio to naive, its DM p-value and its Benjamini–Hochberg q-value within the run's family
    (a global run's own tickers; for a ticker's own run, every ticker's newest own run in the runs dir), which
    the tickers listed do not change. A ticker that cannot be forecast is a row with the reason; one whose cache
    is stale is forecast and flagged. No fan charts are drawn."""
    output_format = resolve_format(output_format, output)
    runs_folder = resolve_runs_dir(runs_dir, None)
    if output is not None:  # a usage error, before any work, as for one ticker
        check_not_ours(output, runs_folder, data.resolve_data_dir(data_dir, None))
    today = today or date.today()
    pace = _paced(REFRESH_PACE_S)
    rows = []
    refreshed: set[str] = set()  # context series shared by the tickers' runs: refreshed once
    held, loaded = global_runs_by_ticker(runs_folder), {}  # a global run is read once, whatever its tickers
    local = runs_dir_family(runs_folder)
    for ticker in tickers:
        if stop is not None and stop.is_set():
            row = screener_row(ticker, "not run", "interrupted before it was forecast")
        else:
            try:
                row = screen_ticker(ticker, runs_folder, data_dir, levels, output, refresh, today, pace, stop,
                                    refreshed, held.get(ticker, []), loaded, local=local)
            except Interrupted:  # a download abandoned on Ctrl-C: the cache is as it was
                row = screener_row(ticker, "not run", "interrupted while its prices were downloaded")
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return finish_screener(rows, output_format, output)


def finish_screener(
    rows: list[dict[str, Any]], output_format: str, output: Path | None, header: str | None = None,
    run_dir: Path | None = None,
) -> Screener:
    """Either screener's end: the rows ranked, rendered and written to `output`. A global run's (`run_dir`) JSON
    leads with the run and its skill (`header`)."""
    ranked = rank_screener(rows)
    text = None if output_format == "table" and output is None else render_screener(ranked, output_format)
    if run_dir is not None and output_format == "json" and text is not None:
        text = json.dumps({"run_dir": str(run_dir), "skill": header, **json.loads(text)}, indent=2) + "\n"
    if output is not None:
        atomic_write_text(output, text)
    interrupted = any(row["status"] == "not run" for row in ranked)
    return Screener(ranked, output_format, text, output, interrupted, header)


def screen_ticker(
    ticker: str, runs_dir: Path, data_dir: Path | None, levels: Sequence[float], output: Path | None,
    refresh: bool, today: date, on_fetch: Callable[[str], None], stop: StopRequest | None,
    refreshed: set[str] | None = None, held: Sequence[Path] = (),
    loaded: dict[Path, tuple[RunBundle | GlobalBundle, Family]] | None = None, *, local: Family,
) -> dict[str, Any]:
    """One screener row: the next-session forecast of the ticker's newest run, its own or one of the global runs
    trained on it (`held`; `loaded` keeps the runs read already, with their families of tests), or the reason
    there is none. `refreshed` holds the context series refreshed already (the screener's tickers share them);
    `local` is the family a local run's test is judged in (a global run's: its own tickers)."""
    loaded = {} if loaded is None else loaded
    try:
        # Run ids sort by the time they were made: the newest of the ticker's own and the global ones.
        run_dir = max([*list_runs(runs_dir, ticker)[-1:], *held], key=lambda found: found.name, default=None)
        run_dir = run_dir or find_run(runs_dir, None, ticker)  # none: the error a ticker without runs gets
        if run_dir not in loaded:
            run = load_run(run_dir)
            loaded[run_dir] = run, global_family(run) if isinstance(run, GlobalBundle) else local
        bundle, family = loaded[run_dir]
    except ForecastError as exc:
        return screener_row(ticker, "failed", str(exc))
    folder = data.resolve_data_dir(data_dir, bundle.config.data.dir)
    if output is not None:  # a run's own data.dir may differ from the one run_screener checked
        check_not_ours(output, runs_dir, folder)
    try:
        prices, context_prices, _, warnings = latest_prices(bundle, ticker, folder, refresh, today, on_fetch, stop,
                                                            refreshed)
        records = {record.ticker: record for record in bundle.tickers}
        return forecast_rows(bundle, records, {ticker: (prices, " ".join(warnings) or None)},
                             screener_level(levels, bundle), today, family, context_prices)[ticker]
    except Interrupted:
        raise
    except ForecastError as exc:
        return screener_row(ticker, "failed", str(exc), run_dir)


def screener_level(levels: Sequence[float], bundle: RunBundle | GlobalBundle) -> float:
    """The interval a screener row shows: SCREENER_LEVEL when among the levels asked for (else the run's), or the
    first of them."""
    chosen = list(levels or bundle.config.predict.levels)
    return SCREENER_LEVEL if SCREENER_LEVEL in chosen else float(chosen[0])


def screener_row(ticker: str, status: str, note: str | None, run_dir: Path | None = None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCREENER_COLUMNS)
    row.update(ticker=ticker, status=status, note=note, run_dir=str(run_dir) if run_dir is not None else None)
    return row


def _paced(seconds: float) -> Callable[[str], None]:
    """A callback for each download: it waits until `seconds` have passed since the previous one began."""
    previous = [-math.inf]

    def wait(_message: str) -> None:
        time.sleep(max(0.0, previous[0] + seconds - time.monotonic()))
        previous[0] = time.monotonic()

    return wait


def rank_screener(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their verdicts (from each row's q-value in its family), the forecasts ranked by change_pct,
    biggest rise first (ties in the order given), then the tickers without one."""
    forecast = sorted((row for row in rows if row["status"] not in NOT_FORECAST), key=lambda row: -row["change_pct"])
    for rank, row in enumerate(forecast, start=1):
        row.update(rank=rank, verdict=skill_verdict(row["rmse_ratio"], row["bh_qvalue"]))
    return forecast + [row for row in rows if row["status"] in NOT_FORECAST]


def skill_verdict(rmse_ratio: float | None, qvalue: float | None) -> str:
    """The run's skill on its own test period in a few words: better or worse only when q < Q_THRESHOLD."""
    if rmse_ratio is None or qvalue is None:
        return "not scored"
    if qvalue < Q_THRESHOLD and rmse_ratio < 1:
        return f"beats naive (q<{Q_THRESHOLD:g})"
    if qvalue < Q_THRESHOLD and rmse_ratio > 1:
        return f"worse than naive (q<{Q_THRESHOLD:g})"
    return "no skill shown"


def render_screener(rows: list[dict[str, Any]], output_format: str) -> str:
    """The screener as JSON (the rows and the counts), CSV (SCREENER_COLUMNS) or a plain-text table."""
    if output_format == "json":
        return json_text({**screener_counts(rows), "advice": advice_line(rows), "rows": rows})
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SCREENER_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    from rich.console import Console

    # The table's natural width, as `runs` prints one: a reason or a path is never folded.
    console = Console(file=io.StringIO(), width=10_000, color_system=None, force_terminal=False)
    for item in screener_report(rows):
        console.print(item, markup=False)
    return "".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines())


def screener_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = [row["verdict"] or "" for row in rows]
    return {
        "tickers": len(rows),
        "forecast": sum(row["status"] not in NOT_FORECAST for row in rows),
        "failed": sum(row["status"] == "failed" for row in rows),
        "stale": sum(row["status"] == "stale" for row in rows),
        "beat_naive": sum(verdict.startswith("beats") for verdict in verdicts),
        "worse_than_naive": sum(verdict.startswith("worse") for verdict in verdicts),
        "tested": sum(row["bh_qvalue"] is not None for row in rows),
        "families": families(rows),
    }


def families(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The families the rows' q-values come from, each with its size ({"runs dir (312 tests)": 312}), in the
    order first met."""
    return {row["family"]: row["family_size"] for row in rows if row["family"] is not None}


def screener_report(rows: list[dict[str, Any]]) -> list[Any]:
    """The table, a line per flagged or failed ticker with its reason, and the line saying what the ranking is."""
    from rich import box
    from rich.text import Text

    levels = {row["level"] for row in rows if row["level"] is not None}
    one_level = len(levels) == 1
    # Every cell but the verdict and the q family is a number, a date or a word, never cut; a terminal too
    # narrow for them all leaves out, in this order, what the other columns or the lines below the table also
    # say (--format csv has every column): the q family (the line under the table names the families), the
    # session, the last date, DM p (BH q decides), the last price (change % gives the move),
    # RMSE/naive (the verdict says whether it beats naive) and the status (a line below names each failed,
    # stale or unseen ticker).
    # Light lines, as `runs` draws them, leave the numbers more of the width.
    table = FitTable(title="Next-session forecasts, biggest forecast rise first; skill: each run's own test period",
                     optional=("q family", "session", "last date", "DM p", "last price", "RMSE/naive", "status"),
                     whole="--format csv", box=box.SIMPLE_HEAD, pad_edge=False)
    headers = ("#", "ticker", "last date", "last price", "session", "forecast", "change %",
               f"{level_name(next(iter(levels)))}% interval" if one_level else "interval",
               "RMSE/naive", "DM p", "BH q", "verdict", "status", "q family")
    for header in headers:
        left = header in ("ticker", "last date", "session", "verdict", "status", "q family")
        table.add_column(header, justify="left" if left else "right", no_wrap=header not in ("verdict", "q family"))
    for row in rows:
        interval = None
        if row["lower"] is not None:
            interval = f"{row['lower']:,.2f} – {row['upper']:,.2f}" + ("" if one_level else f" ({row['level']}%)")
        cells = (
            row["rank"], row["ticker"], row["last_date"], _money(row["last_price"]), row["session"],
            _money(row["forecast"]), f"{row['change_pct']:+.2f}" if row["change_pct"] is not None else None,
            interval, f"{row['rmse_ratio']:.3f}" if row["rmse_ratio"] is not None else None,
            format_pvalue(row["dm_pvalue"]) if row["rank"] else None,
            format_pvalue(row["bh_qvalue"]) if row["rank"] else None, row["verdict"], row["status"], row["family"],
        )
        table.add_row(*(Text("—" if cell is None else str(cell)) for cell in cells),
                      style="red" if row["status"] == "failed" else None)
    items: list[Any] = [table]
    failed = [row for row in rows if row["status"] in NOT_FORECAST]
    items += [f"{row['ticker']} ({row['status']}): {row['note']}" for row in failed[:SHOWN_REASONS]]
    if len(failed) > SHOWN_REASONS:
        items.append(f"… and {len(failed) - SHOWN_REASONS} more not forecast (--format csv gives every reason)")
    unseen = [row for row in rows if row["status"] == "unseen"]  # forecast by a global run that never saw them
    items += [f"{row['ticker']} (unseen): {row['note']}" for row in unseen[:SHOWN_REASONS]]
    stale = [row["ticker"] for row in rows if row["status"] == "stale"]
    if stale:
        more = f" and {len(stale) - SHOWN_REASONS} more" if len(stale) > SHOWN_REASONS else ""
        items.append(f"Stale (prices more than {STALE_AFTER_SESSIONS} sessions old, or none cached): "
                     f"{', '.join(stale[:SHOWN_REASONS])}{more}; "
                     "run with --refresh for the latest prices (--format csv says how old each is).")
    if levels - {SCREENER_LEVEL}:
        items.append(f"Intervals are split-conformal; where {level_name(SCREENER_LEVEL)}% is not among a run's "
                     "levels, the first level configured is shown.")
    items.append(advice_line(rows))
    return items


def advice_line(rows: list[dict[str, Any]]) -> str:
    """What the ranking is and is not, how many of its rows show skill, and the families their q-values are
    judged in (every test of their kind, never only the tickers listed)."""
    counts = screener_counts(rows)
    sizes = counts["families"]
    over = f"over the {sum(sizes.values())} tested" if len(sizes) <= 1 else "within each row's family"
    judged = (f" Each q-value is over its run's whole family, however few tickers are listed: "
              f"{'; '.join(sizes)}." if sizes else "")
    return (
        f"A ranking of forecast moves, not of skill, and not investment advice: {counts['beat_naive']} of "
        f"{counts['forecast']} forecast tickers beat the random walk on their own test period at q < "
        f"{Q_THRESHOLD:g} (Benjamini–Hochberg {over}), {counts['worse_than_naive']} did worse; {counts['failed']} "
        f"could not be forecast.{judged}"
    )


def _money(value: float | None) -> str | None:
    return f"{value:,.2f}" if value is not None else None


# --- a global run: the next session of every ticker, under the run's skill ---------------------------


def screen_run(
    bundle: GlobalBundle,
    tickers: Sequence[str] = (),
    levels: Sequence[float] = (),
    output_format: str = "table",
    output: Path | None = None,
    refresh: bool = False,
    data_dir: Path | None = None,
    today: date | None = None,
    stop: StopRequest | None = None,
) -> Screener:
    """The ranked screener over the run's tickers (or `tickers`), under the header line of its skill. A ticker the
    run never trained on is forecast too when the model has no ticker embedding, flagged "unseen", scaled by its own
    training days on the run's split, its intervals calibrated on its own validation windows, and shown with its
    out-of-universe test score where `evaluate --run RUN -t TICKER` made one."""
    run_dir = bundle.run_dir
    metrics = run_metrics(bundle)  # the run's own test scores: each ticker's and the cross-section's
    folder = data.resolve_data_dir(data_dir, bundle.config.data.dir)
    if output is not None:
        check_not_ours(output, Path(run_dir).resolve().parent.parent, folder)
    names = list(tickers) or bundle.names
    level = screener_level(levels, bundle)
    rows, recent = {}, {}
    for ticker in names:
        if ticker not in bundle.names and bundle.shape.ticker_embedding:
            rows[ticker] = screener_row(ticker, "failed", "not in this global run's tickers, and its model has a "
                                        "ticker embedding that knows only those", run_dir)
            continue
        if stop is not None and stop.is_set():
            rows[ticker] = screener_row(ticker, "not run", "interrupted before it was forecast", run_dir)
            continue
        try:
            recent[ticker] = latest_rows(bundle, ticker, folder, refresh, stop)
        except ForecastError as exc:
            rows[ticker] = screener_row(ticker, "failed", str(exc), run_dir)
    last_day = max((frame.index[-1] for frame, _ in recent.values()), default=None)
    behind = {t for t, (frame, _) in recent.items() if frame.index[-1] < last_day}
    for ticker in behind:
        ends = recent[ticker][0].index[-1].date()
        rows[ticker] = screener_row(ticker, "failed", f"its prices end on {ends}, before the others' "
                                    f"{last_day.date()}; fetch it (lstm-forecast fetch -t {ticker}) to rank it with "
                                    "them", run_dir)
    current = [t for t in recent if t not in behind]
    if current:
        context_prices = bundle.cached_context(folder, refresh, stop)
        for ticker in current:
            context.check_fresh(ticker, recent[ticker][0], bundle.spec, context_prices)
        records = {record.ticker: record for record in bundle.tickers}
        for ticker in [t for t in current if t not in records]:
            try:
                records[ticker] = unseen_record(bundle, ticker, recent[ticker][0], context_prices)
            except ForecastError as exc:
                rows[ticker] = screener_row(ticker, "failed", f"not in this global run's tickers, and {exc}", run_dir)
        current = [t for t in current if t in records]
        rows |= forecast_rows(bundle, records, {t: recent[t] for t in current}, level, today or date.today(),
                              global_family(bundle, metrics), context_prices)
    return finish_screener([rows[ticker] for ticker in names], output_format, output, skill_header(bundle, metrics),
                           run_dir)


def unseen_record(
    bundle: GlobalBundle, ticker: str, prices: pd.DataFrame, context_prices: dict[str, pd.DataFrame]
) -> TickerRecordData:
    """What forecasting a ticker the run never trained on needs, made as the run made its own tickers': its
    scaler, fitted on its training days of the run's split, and its validation residuals for the intervals."""
    dataset = build_dataset({ticker: prices}, bundle.config, split=bundle.split, context_prices=context_prices)
    days = dataset.only
    val = ticker_forecasts(dataset, dataset.val, np.mean(member_predictions(bundle.members, dataset.val), axis=0))
    return TickerRecordData(ticker=ticker, scaler=days.scaler, fingerprint={}, baselines={},
                            residuals=val_residuals(val[ticker]))


def latest_rows(
    bundle: RunBundle | GlobalBundle, ticker: str, folder: Path, refresh: bool, stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, str | None]:
    """The ticker's cached prices (updated from Yahoo first with `refresh`), or the rows the run recorded and a
    warning saying so when nothing is cached (a ticker the run never saw has none: an error)."""
    if refresh:
        if on_fetch is not None:
            on_fetch(f"Updating the {ticker} price cache in {folder} from Yahoo Finance…")
        data.update_cache(folder, ticker, stop=stop)
    prices = data.read_cache(folder, ticker, bundle.config.data.calendar)  # cut by the rules as training was
    if prices is not None:
        return prices, None
    if ticker not in bundle.names:
        raise ForecastError(f"no cached prices for {ticker} in {folder}; fetch them with `lstm-forecast fetch -t "
                            f"{ticker}`")
    recorded = bundle.prices()[ticker]
    return recorded, (
        f"no cached prices for {ticker} in {folder}; forecasting from the last day of the training data, "
        f"{recorded.index[-1].date()} (run `lstm-forecast predict --refresh` or "
        f"`lstm-forecast fetch -t {ticker}` for newer prices)"
    )


def forecast_rows(
    bundle: RunBundle | GlobalBundle, records: dict[str, TickerRecordData],
    recent: dict[str, tuple[pd.DataFrame, str | None]], level: float, today: date,
    family: Family, context_prices: dict[str, pd.DataFrame] | None = None,
) -> dict[str, dict[str, Any]]:
    """One screener row per ticker of a run of either kind: the next session's forecast with its split-conformal
    interval (inputs with `context_prices`, each context series by ticker, when the run reads any) beside its test
    RMSE ratio, DM p and q-value in the run's `family` of tests (a ticker a global run never trained on: in its
    out-of-universe evaluation's)."""
    known = set(bundle.names)
    # The scores of a global run's out-of-universe evaluation, read only when a ticker needs them.
    unseen = out_of_universe_family(bundle) if any(ticker not in known for ticker in recent) else None
    paths = forecast_paths(bundle, {ticker: records[ticker].scaler for ticker in recent},
                           {ticker: prices for ticker, (prices, _) in recent.items()}, context_prices)
    first_day = next(iter(paths.values()))[0].date()
    calendar = calendar_for(bundle.config.data.calendar, first_day, bundle.spec.horizon, today)
    session = calendar.next_sessions(first_day, 1)[0]
    rows = {}
    for ticker, (anchor_date, anchor_price, path) in paths.items():
        if (trouble := not_a_price(path, anchor_date)) is not None:
            rows[ticker] = screener_row(ticker, "failed", trouble, bundle.run_dir)
            continue
        low, high = interval_bounds(path, conformal_quantiles(records[ticker].residuals, level))
        note = recent[ticker][1]
        if ticker in known:
            judged_in = family
            damage = family.damaged.get(ticker)
            note = "; ".join(filter(None, [note, damage and f"its test scores cannot be read: {damage}"])) or None
            row = screener_row(ticker, "stale" if recent[ticker][1] else "ok", note, bundle.run_dir)
        else:  # `unseen` was read: this ticker needed it
            judged_in = unseen
            damage = unseen.damaged.get(OUT_OF_UNIVERSE_DIR)
            scored = "its out-of-universe test score beside" if ticker in unseen.tests else (
                f"its out-of-universe test scores cannot be read: {damage}" if damage else
                "no test score yet: evaluate --run RUN -t TICKER scores it out of universe")
            row = screener_row(ticker, "unseen", f"not trained on by this run; {scored}", bundle.run_dir)
        test = judged_in.test_of(ticker)
        row.update(last_date=anchor_date.date().isoformat(), last_price=rounded(anchor_price),
                   session=session.isoformat(), forecast=rounded(path[0]),
                   change_pct=rounded((path[0] / anchor_price - 1) * 100), level=level_value(level),
                   lower=rounded(low[0]), upper=rounded(high[0]), rmse_ratio=test.rmse_ratio, dm_pvalue=test.pvalue,
                   bh_qvalue=test.qvalue)
        if test.qvalue is not None:  # the family that q-value belongs to
            row.update(family=judged_in.label, family_size=judged_in.size)
        rows[ticker] = row
    return rows


def skill_header(bundle: GlobalBundle, metrics: Recorded) -> str:
    """The run's cross-sectional skill on its own test period, in one line."""
    scores, damage = metrics
    if damage is not None:
        return f"Global run {bundle.run_id}: its test scores cannot be read ({damage})."
    section = scores.cross_section if scores is not None else None
    ic = section.ic.model if section is not None and section.ic is not None else None
    if ic is None or ic.mean is None or ic.t is None:
        return f"Global run {bundle.run_id}: its cross-sectional skill was not recorded."
    return (f"Global run {bundle.run_id}, {len(bundle.tickers)} tickers: on its test period the forecasts ranked "
            f"the next day's moves with mean rank IC {ic.mean:+.4f} (HAC t {ic.t:.2f}, {ic.days} days).")


def global_family(bundle: GlobalBundle, metrics: Recorded | None = None) -> Family:
    """The family a global run's q-values are judged in: its own tickers, as training judged them (metrics.json,
    `metrics` when read already), whichever of them a command lists; a damaged metrics.json judges none, and
    says so for each."""
    scores, damage = run_metrics(bundle) if metrics is None else metrics
    kind = f"global run {bundle.run_id}"
    if damage is not None:
        return recorded_family(kind, {}, dict.fromkeys(bundle.names, damage))
    per_ticker = scores.per_ticker if scores is not None else None
    return recorded_family(kind, per_ticker.tests() if per_ticker is not None else {})


def out_of_universe_family(bundle: GlobalBundle) -> Family:
    """The tickers a global run was evaluated on out of universe (`evaluate --run RUN -t ...`), as that evaluation
    judged them; a damaged summary.json judges none, and says so."""
    summary, damage = checked_record(bundle.run_dir / OUT_OF_UNIVERSE_DIR / SUMMARY_JSON, SetSummary)
    kind = f"{OUT_OF_UNIVERSE_FAMILY} {bundle.run_id}"
    if damage is not None:
        return recorded_family(kind, {}, {OUT_OF_UNIVERSE_DIR: damage})
    return recorded_family(kind, summary.tests() if summary is not None else {})


def run_metrics(bundle: GlobalBundle) -> Recorded:
    """The run's metrics.json as training wrote it, read back through its schema: (None, None) when absent, (None,
    why) when damaged."""
    return checked_record(bundle.run_dir / METRICS_FILE, RunMetrics)
