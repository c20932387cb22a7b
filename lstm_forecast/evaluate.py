"""Evaluate a run bundle honestly: the model beside the naive and drift forecasts, every time.

The three questions users ask of an LSTM stock forecaster are answered without being asked:

  * "Is it any better than naive?" Every metric is printed for the model, the random walk (naive)
    and the random walk with drift, on exactly the same test windows, with the Diebold–Mariano test
    and a plain verdict (metrics.verdict).
  * "Is the prediction just yesterday's price shifted by a day?" The lag-copy diagnostic
    (metrics.lag_copy_diagnostic) says so plainly, and predictions.png zooms in where it shows.
  * "Was the scaler fit on the test data?" The dataset is rebuilt from the rows recorded in the
    bundle and the bundle's config, and must give back the bundle's split and its scaler, which was
    fitted on training rows only; the report names the days it was fitted on.

The walk-forward backtest (backtest.py) then scores K more test periods; a global run's (`--folds K`, asked for
by name) judges its K blocks as one test period, each fold's figures beside it.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lstm_forecast import data, html_report, intervals, metrics, plots, trading
from lstm_forecast.backtest import (
    ProgressCallback,
    backtest_frame,
    backtest_summary,
    global_backtest_summary,
    plan_folds,
    pooled_scores,
    run_backtest,
    run_global_backtest,
    same_scaler,
)
from lstm_forecast.bundle import (
    LOSS_CURVE_FILE,
    OUT_OF_UNIVERSE_DIR,
    PRICES_FILE,
    GlobalBundle,
    RunBundle,
    find_run,
    load_run,
    resolve_runs_dir,
)
from lstm_forecast.config import Config
from lstm_forecast.context_effect import retrained_without_context
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError
from lstm_forecast.files import (
    TEMP_MARKER,
    atomic_write_text,
    fsync_dir,
    json_text,
    make_temp_dir,
    read_bounded,
    replace_dir,
)
from lstm_forecast.model import ensemble_of
from lstm_forecast.prices import prices_sha256
from lstm_forecast.report import evaluation_report, global_report
from lstm_forecast.runs import EVALUATION_FILE, OUT_OF_UNIVERSE_FAMILY, earlier_out_of_universe
from lstm_forecast.scoring import FORECASTS, PeriodForecasts, iso_day, period_forecasts, score_forecasts
from lstm_forecast.sets import REPORT_FILE, UNIVERSE_PLOT, adjusted_family, widened_set, write_summary
from lstm_forecast.train import PhaseCallback, announce, fingerprint, score_tickers
from lstm_forecast.windows import Dataset, build_dataset, reasons

IC_PLOT = "ic.png"
LONG_SHORT_PLOT = "long_short.png"
ROLLING_IC_DAYS = 60
ONE_RUN_ONLY = ("--without-context judges one local run; for several tickers use `lstm-forecast compare --context "
                "on,off`")
FOLDS_IN_UNIVERSE = ("--folds refits a global model on the tickers it trained on; evaluate tickers it never saw "
                     "(--run with -t) without --folds")
PREDICTIONS_FILE = "predictions.csv"
PREDICTIONS_PLOT = "predictions.png"
EQUITY_PLOT = "equity.png"
BACKTEST_FILE = "backtest.csv"

ZOOM_DAYS = 60



def assess(
    forecasts: PeriodForecasts, kind: str, residuals: list[list[float]], levels: list[float],
    cost_bps: float,
) -> tuple[dict[str, Any], trading.TradingDiagnostic]:
    """The report's sections on consecutive test windows: metrics and tests, lag copy, coverage, trading."""
    diagnostic = trading.trading_diagnostic(forecasts.anchor_prices, forecasts.actual, forecasts.model, cost_bps)
    sections = {
        "test": score_forecasts(forecasts, kind),
        "lag_copy": metrics.lag_copy_diagnostic(forecasts.anchor_prices, forecasts.actual, forecasts.model).to_dict(),
        "coverage": interval_coverage(forecasts, residuals, levels),
        "trading": diagnostic.to_dict(),
    }
    return sections, diagnostic


def interval_coverage(
    forecasts: PeriodForecasts, residuals: list[list[float]], levels: list[float]
) -> list[dict[str, Any]]:
    """Empirical coverage on the test windows of the bundle's conformal intervals, per level."""
    results = []
    for level in levels:
        try:
            half_widths = intervals.conformal_quantiles(residuals, level)
        except ForecastError as exc:  # too few validation windows for this level: say so, do not fail
            results.append({"level": level, "all": None, "per_step": None, "note": str(exc)})
            continue
        lower, upper = intervals.interval_bounds(forecasts.model, half_widths)
        results.append({"level": level, **intervals.coverage(forecasts.actual, lower, upper), "note": None})
    return results


# --- the evaluation -----------------------------------------------------------------------------


@dataclass
class Evaluation:
    report: dict[str, Any]  # evaluation.json's content
    interrupted: bool = False  # Ctrl-C cut the backtest short; everything else was written
    test: PeriodForecasts | None = None  # a single ticker's test period, as scored (a universe pools these)
    warnings: list[str] = field(default_factory=list)
    over_tickers: bool = False  # a run over several tickers: judged per ticker and across the cross-section


def evaluate(
    run_dir: Path | None,
    data_dir: Path | None = None,
    folds: int | None = None,
    on_progress: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    ticker: str | None = None,
    runs_dir: Path | None = None,
    without_context: bool = False,
    on_note: Callable[[str], None] | None = None,
    tickers: list[str] | None = None,
    on_phase: PhaseCallback | None = None,
) -> Evaluation:
    """Evaluate the bundle in `run_dir` (None: the newest run in `runs_dir`, of either kind, or `ticker`'s newest)
    and write evaluation.json, predictions.csv/.png, equity.png, backtest.csv and report.html into it. `folds`
    None takes evaluate.folds from the run's config; 0 skips the backtest. A global run walks forward only when
    `folds` is given (K × seeds trainings: never by default), and on its own tickers only (`evaluate_global_folds`).
    `without_context` also trains the model again without its context inputs and reports what they bought
    (context_effect.py), announced through `on_note`. `on_phase` hears each phase as it starts (rebuilding the
    windows, scoring, writing the report and charts)."""
    loaded = load_run(find_run(resolve_runs_dir(runs_dir, None), run_dir, ticker))
    if isinstance(loaded, GlobalBundle):  # one model over several tickers: the sections a set has
        if without_context:
            raise UsageError(ONE_RUN_ONLY)
        if folds and tickers:
            raise UsageError(FOLDS_IN_UNIVERSE)
        if folds:  # None or 0: the run's own test period, as the run split it
            return evaluate_global_folds(loaded, folds, on_progress, stop, on_phase)
        return evaluate_tickers(loaded, tickers, data_dir, on_phase)
    if tickers:
        raise UsageError("give --run or --ticker, not both (--run names one ticker's run already)")
    bundle = loaded
    if without_context and not (bundle.spec.context or bundle.spec.calendar_features):
        raise UsageError(f"--without-context: run {bundle.run_id} has no context inputs to leave out (its "
                         "data.context and data.calendar_features are empty)")
    config = with_recorded_threads(bundle)
    announce(on_phase, "rebuilding the windows")
    folder = data.resolve_data_dir(data_dir, config.data.dir)
    cache = cache_state(folder, bundle)
    prices, source = recorded_prices(bundle, cache.pop("rows"))
    context_prices = bundle.context_prices()  # the rows recorded, checked against their fingerprints
    dataset = rebuild_dataset(bundle, {bundle.ticker: prices}, context_prices)

    days = _day_index(prices)
    val_start, test_start = (int(days.searchsorted(day)) for day in (dataset.val_start, dataset.test_start))

    # The run's own test windows, scored exactly as training scored them, plus the drift baseline.
    kind = bundle.shape.kind
    announce(on_phase, "scoring the test period")
    test = period_forecasts(bundle.model, dataset.test, dataset)
    # An overflow (say evaluate.cost_bps=1e300) is refused by name when evaluation.json is made; numpy's own
    # warnings would only print lines of library source before that one error line.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sections, diagnostic = assess(
            test, kind, bundle.calibration["residuals"], config.predict.levels, config.evaluate.cost_bps,
        )

    folds = config.evaluate.folds if folds is None else folds
    backtest, interrupted = None, False
    if folds > 0:
        plan = plan_folds(val_start, test_start, len(days), folds, dataset.spec.horizon)
        announce(on_phase, "the walk-forward backtest")
        results, interrupted = run_backtest(
            prices, config, plan, bundle.model, bundle.scaler, on_progress, _training_seconds(bundle), stop,
            context_prices,
        )
        backtest = backtest_summary(results, folds, interrupted, kind)
    effect = None
    if without_context and not interrupted:
        if on_note is not None:
            seconds = _training_seconds(bundle)
            about = f" (about {seconds:.0f} s, the run's own training time)" if seconds is not None else ""
            on_note(f"Training the model again without its context inputs{about}…")
        announce(on_phase, "training again without the context inputs")
        effect = retrained_without_context(bundle, config, prices, test, stop)
        interrupted = effect is None

    report = {
        "run_dir": str(bundle.run_dir),
        "run_id": bundle.run_id,
        "ticker": bundle.ticker,
        "model": bundle.shape.to_dict(),
        "training": bundle.training,
        "data": {
            "rows": len(prices),
            "first_date": bundle.fingerprint["first_date"],
            "last_date": bundle.fingerprint["last_date"],
            "sha256": bundle.fingerprint["sha256"],
            "source": source,
            **cache,
        },
        "inputs": input_section(bundle, dataset),
        # rebuild_dataset checked that this is the scaler in bundle.json, fitted on these days alone.
        "scaler": {"fit_on": "training days only", "days": val_start, "first_day": iso_day(days[0]),
                   "last_day": iso_day(days[val_start - 1])},
        "test": {
            "first_target_day": dataset.test_start.date().isoformat(),
            "last_target_day": iso_day(test.target_dates[-1, -1]),
            "horizon": dataset.spec.horizon,
            **sections["test"],
        },
        "lag_copy": sections["lag_copy"],
        "coverage": sections["coverage"],
        "trading": sections["trading"],
        "backtest": backtest,
        "with_vs_without": effect,
    }
    announce(on_phase, "writing the report and charts")
    write_outputs(bundle, report, test, diagnostic, backtest)
    return Evaluation(report=report, interrupted=interrupted, test=test)


def evaluate_tickers(
    bundle: GlobalBundle, tickers: list[str] | None = None, data_dir: Path | None = None,
    on_phase: PhaseCallback | None = None,
) -> Evaluation:
    """A run over several tickers scored on its own tickers, or on `tickers` it never trained on (out of universe).

    In universe, the run's windows are rebuilt from the prices recorded in the bundle (each ticker's rows and each
    context series' rows, checked against their fingerprints) on the run's own split; every ticker's scaler must
    come back as recorded, or the bundle is damaged. Out of universe, tickers the model never trained on are read
    from the data dir (their context series too, or the recorded rows where none is cached) and windowed on the
    same split, each scaled by its own training-period days, and scored by the same function; their files go to
    the run's out_of_universe/ folder. A model with a ticker embedding knows only its own tickers and refuses.
    The linear baseline is always the ridge on the run's own training windows, refitted from the recorded prices
    (linear.py), so out of universe it forecasts the unseen tickers' windows as the model does.
    """
    config, warnings, own = bundle.config, [], None
    announce(on_phase, "reading the prices and rebuilding the windows")
    if tickers:
        unseen, warnings = unseen_tickers(bundle, tickers)
        folder = data.resolve_data_dir(data_dir, config.data.dir)
        prices, skipped = {}, {}
        for ticker in unseen:
            try:
                prices[ticker] = data.load_prices(folder, ticker, config.data.start, config.data.end,
                                                  config.data.calendar)  # checked as the run's own tickers were
            except ForecastError as exc:
                skipped[ticker] = str(exc)
        if not prices:
            raise ForecastError(f"no ticker could be read: {reasons(skipped)}")
        dataset = build_dataset(prices, config, split=bundle.split, context_prices=bundle.cached_context(folder))
        skipped |= dataset.skipped
        fingerprints = [fingerprint(name, dataset.prices[name]) for name in dataset.names]
        own = rebuild_dataset(bundle, *bundle.recorded())
        out, scope = bundle.run_dir / OUT_OF_UNIVERSE_DIR, "out of universe"
    else:
        prices, context_prices = bundle.recorded()
        dataset = rebuild_dataset(bundle, prices, context_prices)
        skipped, fingerprints = dict(bundle.skipped), [record.fingerprint for record in bundle.tickers]
        out, scope = bundle.run_dir, "in universe"
    announce(on_phase, f"scoring the test period of {len(dataset.tickers)} tickers")
    scores = score_tickers(dataset, bundle.members, config, bundle.shape.kind, fingerprints, own)
    if tickers:
        scores.report["per_ticker"], unreadable = out_of_universe_set(bundle, scores.report["per_ticker"])
        warnings += unreadable
    report = {
        "run_dir": str(bundle.run_dir), "run_id": bundle.run_id, "scope": scope, "model": bundle.shape.to_dict(),
        "seeds": bundle.seeds, "training": bundle.training, "trained_on": len(bundle.tickers),
        "skipped": skipped, **scores.report,
    }
    announce(on_phase, "writing the report and charts")
    write_set_outputs(out, report, scores.section, bundle)
    return Evaluation(report=report, warnings=warnings, over_tickers=True)


def evaluate_global_folds(
    bundle: GlobalBundle, folds: int, on_progress: ProgressCallback | None = None, stop: StopRequest | None = None,
    on_phase: PhaseCallback | None = None,
) -> Evaluation:
    """A global run's walk-forward: its test period cut into `folds` blocks (backtest.plan_folds on the calendar of
    its tickers' days), the model refit before each block on the run's recorded rows (backtest.run_global_backtest),
    and every finished fold's test days judged as one test period, per ticker and across the cross-section, each
    fold's own figures beside them. Written like `evaluate_tickers`; a stop keeps the finished folds."""
    # Every member the run has (a Ctrl-C during training may have kept fewer than train.seeds), on its threads.
    config = with_recorded_threads(bundle)
    config = config.model_copy(update={"train": config.train.model_copy(update={"seeds": len(bundle.seeds)})})
    announce(on_phase, "reading the recorded prices and rebuilding the windows")
    prices, context_prices = bundle.recorded()
    dataset = rebuild_dataset(bundle, prices, context_prices)
    calendar = pd.DatetimeIndex(np.unique(np.concatenate([days.dates for days in dataset.tickers])))
    val_start, test_start = (int(calendar.searchsorted(day)) for day in (dataset.val_start, dataset.test_start))
    plan = plan_folds(val_start, test_start, len(calendar), folds, dataset.spec.horizon)
    results, interrupted = run_global_backtest(
        prices, config, plan, calendar, ensemble_of(bundle.members), [record.scaler for record in bundle.tickers],
        on_progress, _training_seconds(bundle), stop, context_prices, on_phase,
    )
    if not results:
        raise Interrupted("walk-forward interrupted before its first fold finished; nothing was written")
    pooled = pooled_scores(results, config, bundle.shape.kind)
    report = {
        "run_dir": str(bundle.run_dir), "run_id": bundle.run_id,
        "scope": f"in universe, walk-forward over {len(results)} fold{'s' * (len(results) > 1)}",
        "model": bundle.shape.to_dict(), "seeds": bundle.seeds, "training": bundle.training,
        "trained_on": len(bundle.tickers), "skipped": dict(bundle.skipped), **pooled.report,
        "walk_forward": global_backtest_summary(results, folds, interrupted),
    }
    announce(on_phase, "writing the report and charts")
    write_set_outputs(bundle.run_dir, report, pooled.section, bundle)
    return Evaluation(report=report, interrupted=interrupted, over_tickers=True)


def unseen_tickers(bundle: GlobalBundle, tickers: list[str]) -> tuple[list[str], list[str]]:
    """The tickers the run did not train on, and a warning naming those it did (they are left out)."""
    if bundle.shape.ticker_embedding:
        raise UsageError(
            f"{bundle.run_dir}: this global model has a ticker embedding and knows only its "
            f"{len(bundle.tickers)} tickers; train one with model.ticker_embedding 0 to forecast others"
        )
    known = set(bundle.names)
    unseen = [ticker for ticker in tickers if ticker not in known]
    if not unseen:
        raise UsageError("every ticker given was in the run's training universe; evaluate --run alone scores them")
    seen = [ticker for ticker in tickers if ticker in known]
    return unseen, ([f"left out, trained on by this run: {', '.join(seen)}"] if seen else [])


def out_of_universe_set(bundle: GlobalBundle, per_ticker: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`per_ticker`, the set report of the tickers evaluated out of universe now, widened to every ticker the run
    was evaluated on out of universe before (`runs.earlier_out_of_universe`): each q-value, the counts and the
    verdict over all of them, so evaluating fewer tickers cannot shrink the family; and a warning naming an
    earlier summary that cannot be read (its tickers left out)."""
    now = [row["ticker"] for row in per_ticker["rows"]]
    earlier, unreadable = earlier_out_of_universe(bundle.run_dir, set(now))
    family = adjusted_family(f"{OUT_OF_UNIVERSE_FAMILY} {bundle.run_id}",
                             {row["ticker"]: (row["rmse_ratio_all"], row["dm_pvalue"])
                              for row in [*per_ticker["rows"], *earlier] if row["status"] == "ok"}, unreadable)
    # The pooled test (like the cross-section) is one test over the panel scored now: the earlier rows keep no
    # loss differentials to pool.
    report = widened_set(per_ticker, earlier, family,
                            f"the {len(now)} ticker{'s' * (len(now) != 1)} evaluated now")
    report["earlier"] = [row["ticker"] for row in earlier]  # rows kept from earlier evaluations
    return report, [f"the earlier out-of-universe evaluations cannot be read, so their tickers are left out of the "
                    f"family (and of the new summary): {why}" for why in unreadable.values()]


# A set's charts for report.html, in reading order: (file, caption).
SET_CHARTS = (
    (IC_PLOT, "Daily rank IC across the tickers, with its rolling mean"),
    (LONG_SHORT_PLOT, "Long–short diagnostic (not advice)"),
    (UNIVERSE_PLOT, "Each ticker's test RMSE against naive"),
    (LOSS_CURVE_FILE, "Training and validation loss"),
)


def write_set_outputs(folder: Path, report: dict[str, Any], section: Any, bundle: GlobalBundle) -> None:
    """A set's evaluation files as one set, like a single run's (`write_outputs`): the per-ticker summary files,
    the two cross-section charts, report.html and evaluation.json are made in a staging folder first, then
    replace the old ones, evaluation.json last, so a failure at any point leaves the folder as it was."""
    per_ticker = report["per_ticker"]
    title = f"{report['scope']} · {report['test']['tickers']} tickers · run {report['run_id']}"
    with staging_folder(folder.parent) as staging:
        write_summary(staging, per_ticker["rows"], per_ticker, shown_in=folder)
        plots.ic_plot(section.daily_ic, ROLLING_IC_DAYS, f"Daily rank IC · {title}", staging / IC_PLOT)
        plots.long_short_plot(section.equity, f"Long–short diagnostic · {title}", staging / LONG_SHORT_PLOT)
        report["files"] = {**per_ticker.pop("files"), "evaluation": str(folder / EVALUATION_FILE),
                           "ic_plot": str(folder / IC_PLOT), "long_short_plot": str(folder / LONG_SHORT_PLOT),
                           "report": str(folder / REPORT_FILE)}
        page = html_page(f"Global {bundle.shape.kind.upper()} · {title}", global_report(report),
                         chart_paths(SET_CHARTS, staging, bundle.run_dir), bundle.config,
                         {"tickers": len(bundle.tickers), "split": bundle.split, "seeds": bundle.seeds})
        # Out of universe, the set has a folder of its own: replaced whole, never left half old, half new.
        publish_evaluation(staging, folder, report, page, [], whole=folder != bundle.run_dir)


def with_recorded_threads(bundle: RunBundle | GlobalBundle) -> Config:
    """The run's config with `train.threads: auto` pinned to the counts the run trained with (its schedule, when
    auto changed the count; a global run's first member's), so the backtest's refits repeat bit for bit whatever
    the machine's load (auto follows it) and match the bundle's own model."""
    record = bundle.training[0] if isinstance(bundle, GlobalBundle) else bundle.training
    config = bundle.config
    threads = record.get("thread_schedule") or record.get("threads")
    if config.train.threads != "auto" or threads is None:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update={"threads": threads})})


def cache_state(data_dir: Path, bundle: RunBundle) -> dict[str, Any]:
    """Whether the price cache still holds the rows the run was trained on ("rows": those rows, or None)."""
    ticker = bundle.ticker
    try:
        cached = data.read_cache(data_dir, ticker, bundle.config.data.calendar)  # cut as training was
    except ForecastError as exc:
        return {"cache": "unreadable", "note": f"the cached prices could not be read ({exc})", "rows": None}
    if cached is None:
        return {"cache": "missing", "note": f"no cached prices for {ticker} in {data_dir}", "rows": None}
    first, last = (pd.Timestamp(bundle.fingerprint[key]) for key in ("first_date", "last_date"))
    rows = cached.loc[first:last]
    if prices_sha256(rows) != bundle.fingerprint["sha256"]:
        return {
            "cache": "revised",
            "note": f"the cached {ticker} prices from {first.date()} to {last.date()} changed since training "
                    "(history revised, e.g. re-adjusted for a split or dividend); evaluated on the rows "
                    "recorded in the bundle",
            "rows": None,
        }
    newer = int((cached.index > last).sum())
    note = f"the cache has {newer} newer rows, not used by this run" if newer else None
    return {"cache": "matches", "note": note, "rows": rows}


def recorded_prices(bundle: RunBundle, cache_rows: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """The exact rows the run was trained on: the bundle's prices.csv, else the cache when it still matches."""
    path = bundle.run_dir / PRICES_FILE
    if path.is_file():
        prices = bundle.prices()[bundle.ticker]
        if prices_sha256(prices) != bundle.fingerprint["sha256"]:
            raise ForecastError(
                f"{path}: the recorded prices do not match the run's data fingerprint; the bundle is damaged, "
                "retrain the model"
            )
        return prices, "bundle"
    if cache_rows is not None:
        return cache_rows, "cache"
    raise ForecastError(
        f"{path}: missing from the bundle, and the cached {bundle.ticker} prices no longer match the run's "
        f"data fingerprint; retrain with `lstm-forecast train -t {bundle.ticker}`"
    )


def input_section(bundle: RunBundle, dataset: Dataset) -> dict[str, Any]:
    """What the model reads each day: the ticker's features, the context series (with their alignment and
    recorded rows) and the calendar features, and how many windows a missing context day cost."""
    spec = dataset.spec
    return {
        "features": list(spec.features),
        "context": [{**item.to_dict(), "align": "previous_session" if item.lag else "same_day"}
                    for item in spec.context],
        "context_data": bundle.context_fingerprints,
        "context_max_gap": spec.context_max_gap if spec.context else None,
        "calendar_features": list(spec.calendar_features),
        "dropped_windows": dataset.dropped,
    }


def rebuild_dataset(
    bundle: RunBundle | GlobalBundle, prices: dict[str, pd.DataFrame], context_prices: dict[str, pd.DataFrame]
) -> Dataset:
    """The run's windows from its recorded rows (by ticker) and config on its split; they must give back the
    run's window, tickers and every one of their scalers."""
    dataset = build_dataset(prices, bundle.config, split=bundle.split, context_prices=context_prices)
    if dataset.spec != bundle.spec or dataset.names != bundle.names or not all(
        same_scaler(days.scaler, record.scaler) for days, record in zip(dataset.tickers, bundle.tickers, strict=True)
    ):
        raise ForecastError(
            f"{bundle.run_dir}: rebuilding the run's windows from its recorded prices does not give back its "
            "tickers and scalers; the bundle is damaged or from another version, retrain the model"
        )
    return dataset


def write_outputs(
    bundle: RunBundle,
    report: dict[str, Any],
    test: PeriodForecasts,
    diagnostic: trading.TradingDiagnostic,
    backtest: dict[str, Any] | None,
) -> None:
    """Write the evaluation files into the bundle as one set, and list them in report["files"].

    Everything is made first, in a temp folder inside the bundle: the JSON text (a non-finite figure is an
    error here, before anything is replaced), the CSVs, every chart and report.html. Only then do the files
    replace the old ones, evaluation.json last, so a failure at any point leaves the bundle as it was.
    """
    run_dir = bundle.run_dir
    names = {
        "evaluation": EVALUATION_FILE,
        "predictions": PREDICTIONS_FILE,
        "predictions_plot": PREDICTIONS_PLOT,
        "equity_plot": EQUITY_PLOT,
        **({"backtest": BACKTEST_FILE} if backtest is not None else {}),
        "report": REPORT_FILE,
    }
    report["files"] = {key: str(run_dir / name) for key, name in names.items()}
    evaluation_json(report)  # a figure that is not finite is an error now, before anything is drawn

    # Staged beside the run, in its ticker folder: the files move in by rename (one file system), and a
    # staging folder a killed evaluate leaves is where train's clean-up of stale temp folders looks.
    with staging_folder(run_dir.parent) as staging:
        atomic_write_text(staging / PREDICTIONS_FILE, _csv(predictions_frame(test)))
        if backtest is not None:
            atomic_write_text(staging / BACKTEST_FILE, _csv(backtest_frame(backtest)))
        draw_charts(bundle, report, test, diagnostic, staging)
        # The title becomes the heading; the last line ("Wrote ...") is for the terminal.
        title = f"{bundle.ticker} · {bundle.shape.kind.upper()} · run {bundle.run_id}"
        page = html_page(title, evaluation_report(report)[1:-1], chart_paths(REPORT_CHARTS, staging, run_dir),
                         bundle.config, bundle.fingerprint)
        # A backtest.csv from an earlier evaluation would contradict the new evaluation.json.
        publish_evaluation(staging, run_dir, report, page, [] if backtest is not None else [run_dir / BACKTEST_FILE])


@contextmanager
def staging_folder(parent: Path) -> Iterator[Path]:
    """A temp folder in `parent` for an evaluation's files (one file system with their folder, so they move in by
    rename), removed when the block ends, whatever happened."""
    staging = make_temp_dir(parent, "the evaluation files")
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_evaluation(
    staging: Path, folder: Path, report: dict[str, Any], page: str, stale: list[Path], whole: bool = False,
) -> None:
    """report.html and evaluation.json into `staging` beside the files made there; then every one of them replaces
    `folder`'s, evaluation.json last, after removing `stale`; or, `whole`, the staging folder replaces `folder`."""
    atomic_write_text(staging / REPORT_FILE, page)
    atomic_write_text(staging / EVALUATION_FILE, evaluation_json(report))
    if whole:
        try:
            replace_dir(staging, folder)
        except OSError as exc:
            raise ForecastError(f"cannot write the evaluation into {folder}: {exc.strerror or exc}") from None
        return
    names = sorted(path.name for path in staging.iterdir() if path.name not in (EVALUATION_FILE, TEMP_MARKER))
    replace_as_set(staging, folder, names, EVALUATION_FILE, stale)


def evaluation_json(report: dict[str, Any]) -> str:
    """evaluation.json's text; a figure that is not a finite number is an error naming where it is."""
    try:
        return json_text(report)
    except ValueError:
        where = _non_finite(report) or "a figure"
        raise ForecastError(
            f"{report['run_dir']}: the evaluation gives {where} that is not a finite number (check the run's "
            "config, e.g. evaluate.cost_bps); nothing was written"
        ) from None


def _non_finite(value: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in a JSON-ready value, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def draw_charts(
    bundle: RunBundle, report: dict[str, Any], test: PeriodForecasts, diagnostic: trading.TradingDiagnostic,
    folder: Path,
) -> None:
    """predictions.png and equity.png into `folder`."""
    kind, ticker = bundle.shape.kind.upper(), bundle.ticker
    ratio = report["test"]["metrics"]["model"]["h1"]["rmse_ratio"]
    half_widths = {}
    for row in report["coverage"]:
        if row["all"] is not None:  # a level the validation windows cannot calibrate has no band
            half_widths[f"{row['level']:g}%"] = intervals.conformal_quantiles(bundle.calibration["residuals"],
                                                                              row["level"])
    plots.predictions_plot(
        test.target_dates, test.actual, test.model, test.naive, half_widths,
        f"{ticker} · {kind} on the test period · day-1 RMSE / naive {_ratio_text(ratio)}",
        folder / PREDICTIONS_PLOT, zoom_days=ZOOM_DAYS,
    )
    equity_dates = np.concatenate([test.anchor_dates[:1], test.target_dates[:, 0]])
    plots.equity_plot(
        equity_dates, diagnostic.strategy.equity, diagnostic.buy_and_hold.equity, diagnostic.cost_bps,
        f"{ticker} · long/flat on {kind} day-1 calls vs buy and hold (diagnostic, not advice)",
        folder / EQUITY_PLOT,
    )


# Charts of the run for report.html, in reading order: (file, caption); those not in the bundle are left out.
REPORT_CHARTS = (
    (PREDICTIONS_PLOT, "Forecasts on the test period, with their intervals"),
    (EQUITY_PLOT, "Trading diagnostic (not advice)"),
    (LOSS_CURVE_FILE, "Training and validation loss"),
    ("forecast.png", "Latest forecast (from `lstm-forecast predict`)"),
)
CHART_BYTES_LIMIT = 20 * 1024 * 1024  # a chart of ours is well under 1 MB; a bigger file is not one


def html_page(
    title: str, items: list[Any], charts: list[tuple[Path, str]], config: Config | None,
    fingerprint: dict[str, Any],
) -> str:
    """report.html: what evaluate prints, the charts inline (those that are there), the config and the data."""
    pictures = {caption: png for path, caption in charts if (png := _read_png(path)) is not None}
    config_yaml = yaml.safe_dump(config.to_plain(), sort_keys=False) if config is not None else "(not recorded)"
    return html_report.render(title, items, pictures, config_yaml, fingerprint)


def chart_paths(charts: tuple[tuple[str, str], ...], staging: Path, folder: Path) -> list[tuple[Path, str]]:
    """Each chart from the staging folder when made there now, else from `folder`."""
    return [(staging / name if (staging / name).exists() else folder / name, caption) for name, caption in charts]


def _read_png(path: Path) -> bytes | None:
    """A chart's bytes, or None when it is absent, not a regular file, too big or not a PNG."""
    try:
        png = read_bounded(path, CHART_BYTES_LIMIT, "a chart")
    except (ForecastError, OSError):
        return None
    return png if png.startswith(b"\x89PNG\r\n\x1a\n") else None


def replace_as_set(staging: Path, run_dir: Path, names: list[str], last: str, stale: list[Path]) -> None:
    """Move the staged files over the bundle's, `last` after every other one and after removing `stale`."""
    try:
        for name in names:
            os.replace(staging / name, run_dir / name)
        for path in stale:
            path.unlink(missing_ok=True)
        os.replace(staging / last, run_dir / last)
    except OSError as exc:
        raise ForecastError(f"cannot write the evaluation into {run_dir}: {exc.strerror or exc}") from None
    fsync_dir(run_dir)


def predictions_frame(forecasts: PeriodForecasts) -> pd.DataFrame:
    """Long layout: one row per window and horizon step."""
    n, horizon = forecasts.actual.shape
    return pd.DataFrame(
        {
            "anchor_date": np.repeat(np.datetime_as_string(forecasts.anchor_dates, unit="D"), horizon),
            "step": np.tile(np.arange(1, horizon + 1), n),
            "target_date": np.datetime_as_string(forecasts.target_dates, unit="D").ravel(),
            "anchor_price": np.repeat(forecasts.anchor_prices, horizon),
            **{name: getattr(forecasts, name).ravel() for name in ("actual", *FORECASTS)},
        }
    )


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def _training_seconds(bundle: RunBundle | GlobalBundle) -> float | None:
    """How long the run took to train one model, as recorded in bundle.json (a global run: its members' mean);
    None when absent or not a time."""
    records = bundle.training if isinstance(bundle, GlobalBundle) else [bundle.training]
    seconds = [record.get("seconds") for record in records]
    if all(isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
           for value in seconds):
        return float(np.mean(seconds))
    return None


def _day_index(prices: pd.DataFrame) -> pd.DatetimeIndex:
    """The days of windows.compute_features: every price row but the first."""
    return pd.DatetimeIndex(prices.index[1:])


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
