"""`predict --run GLOBAL_RUN`: the next session for every ticker of a global run, ranked, beside its skill.

One forward pass per member over all the tickers at once: each ticker's last `lookback` days from its cache
(or, with none cached, the rows recorded in the bundle, flagged), scaled by its own scaler, with its ticker
index. The rows are the universe screener's (predict.py), so the table, CSV and JSON read the same; the
header states the run's own cross-sectional skill on its test period (mean rank IC and its t), since a
global model is judged by how it ranks, and a ranking with no skill behind it is only noise.

Every ranked forecast starts from the same day: a ticker whose cache ends before the others' last day is
listed with the reason instead of being ranked against forecasts made a day or more later. A run with context
inputs reads each context series' cache too (refreshed with the tickers), and refuses, in one line, a context
series that ends before the tickers' last day: the forecast would read a day it does not have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast import context, data
from lstm_forecast.errors import ForecastError, StopRequest
from lstm_forecast.files import atomic_write_text, read_bounded
from lstm_forecast.global_bundle import GlobalBundle, load_global_bundle
from lstm_forecast.intervals import conformal_quantiles, interval_bounds
from lstm_forecast.predict import (
    SCREENER_LEVEL,
    Screener,
    check_not_ours,
    level_value,
    rank_screener,
    render_screener,
    resolve_format,
    rounded,
    screener_row,
)
from lstm_forecast.sessions import calendar_for
from lstm_forecast.trainer import cpu_threads
from lstm_forecast.trainer import predict as predict_scaled
from lstm_forecast.windows import inference_inputs, values_to_prices


def run_global_screener(
    run_dir: Path,
    tickers: Sequence[str] = (),
    levels: Sequence[float] = (),
    output_format: str | None = None,
    output: Path | None = None,
    refresh: bool = False,
    data_dir: Path | None = None,
    today: date | None = None,
    stop: StopRequest | None = None,
) -> tuple[Screener, str]:
    """The ranked screener over the run's tickers (or `tickers` among them) and the header line of its skill."""
    output_format = resolve_format(output_format, output)
    bundle = load_global_bundle(run_dir)
    metrics = run_metrics(bundle)  # the run's own test scores: each ticker's and the cross-section's
    folder = data.resolve_data_dir(data_dir, bundle.config.data.dir)
    if output is not None:
        check_not_ours(output, Path(run_dir).resolve().parent.parent, folder)
    names = list(tickers) or bundle.names
    chosen = list(levels or bundle.config.predict.levels)
    level = SCREENER_LEVEL if SCREENER_LEVEL in chosen else float(chosen[0])
    rows, recent = {}, {}
    for ticker in names:
        if ticker not in bundle.names:
            rows[ticker] = screener_row(ticker, "failed", "not in this global run's tickers (evaluate it out of "
                                        "universe with evaluate --run RUN -t TICKER)", run_dir)
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
        rows |= forecast_rows(bundle, {t: recent[t] for t in current}, level, today or date.today(), metrics,
                              context_prices)
    ranked = rank_screener([rows[ticker] for ticker in names])
    text = None if output_format == "table" and output is None else render_screener(ranked, output_format)
    header = skill_header(bundle, metrics)
    if output_format == "json" and text is not None:
        text = json.dumps({"run_dir": str(run_dir), "skill": header, **json.loads(text)}, indent=2) + "\n"
    if output is not None:
        atomic_write_text(output, text)
    interrupted = any(row["status"] == "not run" for row in ranked)
    return Screener(ranked, output_format, text, output, interrupted), header


def latest_rows(
    bundle: GlobalBundle, ticker: str, folder: Path, refresh: bool, stop: StopRequest | None
) -> tuple[pd.DataFrame, str | None]:
    """The ticker's cached prices (updated first with `refresh`), or its recorded rows and a note saying so."""
    if refresh:
        data.update_cache(folder, ticker, stop=stop)
    prices = data.read_cache(folder, ticker)
    if prices is not None:
        return prices, None
    recorded = bundle.prices()[ticker]
    return recorded, f"no cached prices in {folder}; forecast from the training data's last day"


def forecast_rows(
    bundle: GlobalBundle, recent: dict[str, tuple[pd.DataFrame, str | None]], level: float, today: date,
    metrics: dict[str, Any], context_prices: dict[str, pd.DataFrame] | None = None,
) -> dict[str, dict[str, Any]]:
    """One screener row per ticker: the next session's forecast with its split-conformal interval (inputs with
    `context_prices`, each context series by ticker, when the run reads any)."""
    spec, index = bundle.spec, {name: i for i, name in enumerate(bundle.names)}
    records = {record.ticker: record for record in bundle.tickers}
    rows, inputs, anchors = {}, [], []
    for ticker, (prices, _) in recent.items():
        window, anchor_date, anchor_price = inference_inputs(prices.iloc[-spec.inference_rows:], spec,
                                                             records[ticker].scaler, context_prices)
        inputs.append(window[0])
        anchors.append((anchor_date, anchor_price))
    tickers = list(recent)
    batch = (np.stack(inputs), np.array([index[t] for t in tickers], dtype=np.int64))
    with cpu_threads(1):  # a few hundred windows: far too little work to share between threads
        scaled = np.mean([predict_scaled(member, batch) for member in bundle.members], axis=0)
    ratios = test_scores(metrics)
    first_day = anchors[0][0].date()
    calendar = calendar_for(bundle.config.data.calendar, first_day, spec.horizon, today)
    session = calendar.next_sessions(first_day, 1)[0]
    for row_number, ticker in enumerate(tickers):
        scaler = records[ticker].scaler
        values = scaled[row_number:row_number + 1] * scaler.target_std + scaler.target_mean
        anchor_date, anchor_price = anchors[row_number]
        path = values_to_prices(values, np.array([anchor_price]), spec.target)[0]
        low, high = interval_bounds(path, conformal_quantiles(records[ticker].residuals, level))
        note = recent[ticker][1]
        row = screener_row(ticker, "stale" if note else "ok", note, bundle.run_dir)
        ratio, pvalue = ratios.get(ticker, (None, None))
        row.update(last_date=anchor_date.date().isoformat(), last_price=rounded(anchor_price),
                   session=session.isoformat(), forecast=rounded(path[0]),
                   change_pct=rounded((path[0] / anchor_price - 1) * 100), level=level_value(level),
                   lower=rounded(low[0]), upper=rounded(high[0]), rmse_ratio=ratio, dm_pvalue=pvalue)
        rows[ticker] = row
    return rows


def test_scores(metrics: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    """Each ticker's test RMSE ratio and DM p-value as training recorded them (metrics.json), if readable."""
    rows = ((metrics.get("per_ticker") or {}).get("rows")) or []
    return {row["ticker"]: (row.get("rmse_ratio_all"), row.get("dm_pvalue")) for row in rows
            if isinstance(row, dict) and isinstance(row.get("ticker"), str)}


def skill_header(bundle: GlobalBundle, metrics: dict[str, Any]) -> str:
    """The run's cross-sectional skill on its own test period, in one line."""
    ic = ((metrics.get("cross_section") or {}).get("ic") or {}).get("model") or {}
    if ic.get("mean") is None or ic.get("t") is None:
        return f"Global run {bundle.run_id}: its cross-sectional skill was not recorded."
    return (f"Global run {bundle.run_id}, {len(bundle.tickers)} tickers: on its test period the forecasts ranked "
            f"the next day's moves with mean rank IC {ic['mean']:+.4f} (HAC t {ic['t']:.2f}, {ic['days']} days).")


def run_metrics(bundle: GlobalBundle) -> dict[str, Any]:
    from lstm_forecast.bundle import METRICS_FILE

    try:
        document = json.loads(read_bounded(bundle.run_dir / METRICS_FILE, 64 << 20, "a run's metrics"))
    except (ForecastError, OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
