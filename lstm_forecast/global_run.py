"""A global run: one recurrent model trained on the pooled windows of a universe, scored per ticker and
across the cross-section.

Reads top to bottom like train.py: prices of every ticker → one panel on a common calendar split
(panel.py) → one model per seed (`train.seeds`: a seed ensemble, forecasts averaged) through the same
trainer as a local run → the bundle → the scores. The trainer sees the pooled training and validation
windows only; the test windows are scored once, at the end, by `score_panel`, which evaluate calls too
(on the bundle's recorded prices), so training and evaluation print the same numbers.

Scores (see `score_panel`): per ticker, exactly a local run's scores block (model vs naive vs drift, DM)
with Benjamini–Hochberg q-values and the pooled DM test of the universe mode; over all tickers the pooled
RMSE ratio on log prices; across tickers each test day, the rank IC and the long–short diagnostic against
the reversal and train-mean baselines (crosssection.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast import context, data, plots
from lstm_forecast.bundle import LOSS_CURVE_FILE, new_run_id, resolve_runs_dir
from lstm_forecast.config import Config, config_hash
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError
from lstm_forecast.global_bundle import GlobalBundle, TickerRecordData, check_writable, save_global_bundle
from lstm_forecast.metrics import lag_copy_diagnostic
from lstm_forecast.model import Forecaster, ModelShape, check_trainable
from lstm_forecast.scoring import (
    PeriodForecasts,
    iso_day,
    log_loss_differential,
    member_predictions,
    score_forecasts,
    ticker_forecasts,
)
from lstm_forecast.sessions import check_calendar
from lstm_forecast.sets import scored_record, set_report
from lstm_forecast.train import fingerprint, load_training_prices, naive_validation_loss
from lstm_forecast.trainer import (
    EpochRecord,
    Samples,
    TrainResult,
    fit,
    resolve_device,
    seed_everything,
)
from lstm_forecast.windows import Dataset, build_dataset, reasons

MemberCallback = Callable[[str, EpochRecord], bool | None]  # (member label, record); true: stop this member


@dataclass(frozen=True)
class GlobalResult:
    """A finished global run as plain data: where its bundle is, who was in it, what it scored."""

    run_dir: Path
    run_id: str
    tickers: list[str]
    skipped: dict[str, str]  # ticker -> why it was left out
    training: list[dict[str, Any]]  # per member: TrainResult.summary() and its seed
    report: dict[str, Any]  # score_panel's report on the test period
    notes: dict[str, list[str]] = field(default_factory=dict)  # ticker -> history cut, windows dropped

    @property
    def interrupted(self) -> bool:
        return any(member["interrupted"] for member in self.training)


def member_labels(config: Config) -> list[str]:
    return [f"seed {config.train.seed + i}" for i in range(config.train.seeds)]


def check_global(config: Config, tickers: list[str]) -> None:
    """What a global run needs before any data is read."""
    if config.model.scope != "global":
        raise UsageError("a global run needs model.scope global (--scope global)")
    if len(tickers) < 2:
        raise UsageError("--scope global trains one model across tickers: give two or more (-t A -t B, "
                         "--tickers-file F or --all)")
    check_trainable(config)
    check_calendar(config.data.calendar)


def train_global(
    config: Config,
    tickers: list[str],
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    on_epoch: MemberCallback | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> GlobalResult:
    """Train one model (a member per seed) on the pooled windows of `tickers` and write its bundle."""
    check_global(config, tickers)
    folder = data.resolve_data_dir(data_dir, config.data.dir)
    runs = resolve_runs_dir(runs_dir, config.runs.dir)
    prices, skipped = {}, {}
    for ticker in tickers:
        try:
            prices[ticker] = load_training_prices(ticker, folder, config, on_fetch, stop)
        except ForecastError as exc:  # a broken or missing series leaves the run, with its reason
            skipped[ticker] = str(exc)
        if stop is not None and stop.is_set():
            raise Interrupted("interrupted while reading the prices; nothing was trained")
    if not prices:
        raise ForecastError(f"no ticker could be read: {reasons(skipped)}")
    # Read once for every ticker (fetched when missing); each ticker aligns it on its own sessions.
    context_prices = context.load_context(folder, [entry.ticker for entry in config.data.context], on_fetch, stop)
    resolve_device(config.train.device)
    panel = build_dataset(prices, config, context_prices=context_prices)
    skipped |= panel.skipped
    if len(panel.tickers) < 2:
        raise ForecastError(f"only {len(panel.tickers)} ticker has enough days for a global model: {reasons(skipped)}")
    check_writable(runs)  # before training: hours of it are lost otherwise
    members, results = train_members(panel, config, on_epoch, stop)
    shape = members[0].shape
    val = ticker_forecasts(panel, panel.val, np.mean(member_predictions(members, panel.val), axis=0))
    records = [
        TickerRecordData(
            ticker=days.ticker, scaler=days.scaler, fingerprint=fingerprint(days.ticker, panel.prices[days.ticker]),
            baselines={"train_mean_log_return": days.train_mean_log_return, "train_naive_mae": days.train_naive_mae},
            residuals=val_residuals(val[days.ticker]),
        )
        for days in panel.tickers
    ]
    training = [{**result.summary(), "seed": config.train.seed + i} for i, result in enumerate(results)]
    bundle = GlobalBundle(
        run_id=new_run_id(), config=config, shape=shape, spec=panel.spec, split=panel.split, tickers=records,
        seeds=[config.train.seed + i for i in range(len(members))], training=training, members=members,
        skipped=skipped, created_at=datetime.now(UTC).isoformat(timespec="seconds"), config_hash=config_hash(config),
        context_fingerprints=[fingerprint(name, rows) for name, rows in panel.context_rows.items()],
    )
    scores = score_panel(panel, members, config, shape.kind, [record.fingerprint for record in records])
    metrics = {"scope": "global", "model": shape.kind, "tickers": len(records), "skipped": skipped,
               "training": training, "naive_val_loss": naive_validation_loss(panel, config.train.loss),
               **scores.report}
    history = history_frame(results, bundle.seeds)

    def write_loss_curve(run_dir: Path) -> None:
        first = history[history["seed"] == bundle.seeds[0]]
        plots.loss_curve(
            first["epoch"].tolist(), first["train_loss"].tolist(), first["val_loss"].tolist(),
            results[0].best_epoch, metrics["naive_val_loss"],
            f"global {shape.kind.upper()} · {len(records)} tickers · seed {bundle.seeds[0]} · run {bundle.run_id}",
            run_dir / LOSS_CURVE_FILE,
        )

    run_dir = save_global_bundle(bundle, runs, panel.prices, history, metrics, write_extras=write_loss_curve,
                                 context=panel.context_rows)
    return GlobalResult(run_dir=run_dir, run_id=bundle.run_id, tickers=bundle.names, skipped=skipped,
                        training=training, report=scores.report, notes=panel.notes)


def train_members(
    panel: Dataset, config: Config, on_epoch: MemberCallback | None = None, stop: StopRequest | None = None
) -> tuple[list[Forecaster], list[TrainResult]]:
    """One model per seed, each on the pooled windows with its ticker index; a stop ends the current member
    (its best epoch is kept) and skips the rest."""
    n_tickers = len(panel.tickers)
    shape = ModelShape.from_config(config.model, n_features=panel.spec.n_inputs, horizon=panel.spec.horizon,
                                   n_tickers=n_tickers)
    train = Samples(panel.train.model_inputs, panel.train.targets)
    val = Samples(panel.val.model_inputs, panel.val.targets)
    device = resolve_device(config.train.device)
    members, results = [], []
    for label, seed in zip(member_labels(config), range(config.train.seed, config.train.seed + config.train.seeds),
                           strict=True):
        if stop is not None and stop.is_set():
            break
        seed_everything(seed)  # before the model: its initial weights are part of a reproducible run
        model = Forecaster(shape)
        callback = (lambda record, label=label: on_epoch(label, record)) if on_epoch is not None else None
        result = fit(model, train, val, config.train.model_copy(update={"seed": seed}), device=device,
                     on_epoch=callback, stop=stop)
        if result.epochs_run == 0:
            break
        members.append(model.cpu().eval())
        results.append(result)
    if not members:
        raise Interrupted("interrupted before the first epoch finished; no bundle written")
    return members, results


# --- forecasts and scores ------------------------------------------------------------------------


def val_residuals(forecasts: PeriodForecasts) -> list[list[float]]:
    """Validation residuals log(actual / forecast) per horizon day, for the ticker's conformal intervals."""
    residuals = np.log(forecasts.actual) - np.log(forecasts.model)
    return [[float(value) for value in residuals[:, step]] for step in range(residuals.shape[1])]


@dataclass
class PanelScores:
    report: dict[str, Any]  # JSON-ready: split, test period, pooled ratio, per ticker, cross-section
    section: Any  # crosssection.CrossSection: the daily IC and equity curves for the plots
    forecasts: dict[str, PeriodForecasts]  # per ticker, the test period as scored


def score_panel(
    panel: Dataset, members: list[Forecaster], config: Config, kind: str, fingerprints: list[dict[str, Any]],
) -> PanelScores:
    """The test period's report: per-ticker rows with BH q-values and the pooled DM test, the pooled RMSE
    ratio, and the cross-section (rank IC, long–short). The members' own ICs stand beside the ensemble's."""
    test = panel.test
    predictions = member_predictions(members, test)
    forecasts = ticker_forecasts(panel, test, np.mean(predictions, axis=0))
    records = []
    for days, fingerprint_ in zip(panel.tickers, fingerprints, strict=True):
        period = forecasts[days.ticker]
        lag_copy = lag_copy_diagnostic(period.anchor_prices, period.actual, period.model).to_dict()
        records.append(scored_record(
            days.ticker, "ok", 0.0, None, run_dir=None, rows=fingerprint_["rows"],
            test=score_forecasts(period, kind), echoes=lag_copy["echoes_yesterday"],
            anchors=[iso_day(day) for day in period.anchor_dates],
            differential=[float(value) for value in log_loss_differential(period)],
            horizon=panel.spec.horizon, fingerprint=fingerprint_["sha256"], notes=panel.notes.get(days.ticker),
        ))
    rows, per_ticker = set_report(records, panel.names)
    for row in rows:
        row["run_dir"] = None  # one run for all: its folder is the report's
    per_ticker["rows"] = rows
    members_ic = None
    if len(members) > 1:
        member_prices = [panel.to_prices(test, scaled) for scaled in predictions]
        members_ic = {label: {days.ticker: prices[test.of(days.index)] for days in panel.tickers}
                      for label, prices in zip(member_labels(config), member_prices, strict=True)}
    last_returns = {days.ticker: test.last_return[test.of(days.index)] for days in panel.tickers}
    train_means = {days.ticker: days.train_mean_log_return for days in panel.tickers}
    section = cross_section_of(forecasts, last_returns, train_means, config, members_ic)
    report = {
        "split": panel.split,
        "test": {"first_target_day": panel.test_start.date().isoformat(),
                 "last_target_day": iso_day(test.target_dates.max()), "windows": len(test),
                 "tickers": len(panel.tickers), "horizon": panel.spec.horizon},
        "pooled_ratio": pooled_ratio(forecasts.values()),
        "per_ticker": per_ticker,
        "cross_section": section.to_dict(),
    }
    return PanelScores(report=report, section=section, forecasts=forecasts)


def cross_section_of(
    forecasts: dict[str, PeriodForecasts], last_returns: dict[str, np.ndarray], train_means: dict[str, float],
    config: Config, member_models: dict[str, dict[str, np.ndarray]] | None = None,
) -> Any:
    """The cross-section of per-ticker test forecasts (a global run's, or local runs' side by side): days ×
    tickers frames of the day-1 forecast and realised log returns, the anchor day's return and each ticker's
    training mean, judged by crosssection.cross_section. `member_models`: label -> ticker -> model prices."""
    from lstm_forecast.crosssection import cross_section

    def frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
        columns = {ticker: pd.Series(column, index=pd.DatetimeIndex(forecasts[ticker].anchor_dates))
                   for ticker, column in values.items()}
        return pd.DataFrame(columns).sort_index()

    def day_one(prices: dict[str, np.ndarray]) -> pd.DataFrame:
        return frame({t: np.log(prices[t][:, 0] / forecasts[t].anchor_prices) for t in forecasts})

    members = {label: day_one(models) for label, models in (member_models or {}).items()} or None
    # A small universe cannot fill k longs and k shorts: the book shrinks to half the tickers (the table says k).
    k = max(1, min(config.evaluate.long_short_k, len(forecasts) // 2))
    return cross_section(day_one({t: f.model for t, f in forecasts.items()}),
                         day_one({t: f.actual for t, f in forecasts.items()}), frame(last_returns),
                         pd.Series(train_means, dtype=np.float64), k=k, cost_bps=config.evaluate.cost_bps,
                         members=members)


def pooled_ratio(forecasts: Any) -> dict[str, Any]:
    """RMSE of log-price errors over every ticker's test windows, the model's over naive's: scale-free, so a $5
    and a $500 stock weigh alike (day 1 and all horizon days)."""
    parts = list(forecasts)
    model = np.concatenate([np.log(part.model / part.actual) for part in parts])
    naive = np.concatenate([np.log(part.naive / part.actual) for part in parts])
    ratio = {step: float(np.sqrt(np.mean(model[:, sl] ** 2) / np.mean(naive[:, sl] ** 2)))
             for step, sl in (("all", slice(None)), ("h1", slice(0, 1)))}
    return {"windows": len(model), "rmse_ratio_all": ratio["all"], "rmse_ratio_h1": ratio["h1"]}


def history_frame(results: list[TrainResult], seeds: list[int]) -> pd.DataFrame:
    return pd.DataFrame([
        {"seed": seed, "epoch": r.epoch, "train_loss": r.train_loss, "val_loss": r.val_loss, "lr": r.lr,
         "seconds": round(r.seconds, 4)}
        for seed, result in zip(seeds, results, strict=True) for r in result.history
    ])
