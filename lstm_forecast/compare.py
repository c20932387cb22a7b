"""Compare on identical footing: simple RNN vs GRU vs LSTM on one ticker, or local vs global models on many.

Each model type is trained by train.train_ticker with the same prices, windows, config and seed, only
`model.type` differing, so each gets a full run bundle of its own. The comparison itself goes into
`<runs-dir>/<TICKER>/compare-<id>/`: `compare.json` (every model's scores block on the test period, its
forecasts beside the naive and drift forecasts on the same windows, and its loss history) and
`compare_curves.png`: training and validation loss in panels of their own, all models overlaid, and each
model's test RMSE ratio with its Diebold-Mariano p-value. Like a bundle, the folder is written into a
hidden temp directory and renamed into place only when complete.

`compare_scopes` (`compare --scopes local,global` over a universe) trains a model per ticker and one global
model with the same config, seed and calendar split (the global panel's dates, set for every local run), so
both are scored on the same test windows: pooled RMSE ratio, the set's verdict, the rank IC and the
long–short diagnostic side by side, in `<runs-dir>/_compare/<id>/` (compare.json, compare_curves.png).

`compare_context` (`compare --context on,off`) shows what the covariates bought: the model trained with its
context inputs (data.context, data.calendar_features), then without them on the very price rows and split
the first run recorded, both scored on the test windows they share (a context gap may have cost the first
some), with the Diebold-Mariano test between the two. Its folder is a compare folder like the model types'.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from lstm_forecast import data, plots
from lstm_forecast.bundle import RunBundle, load_run, new_run_id, resolve_runs_dir
from lstm_forecast.config import Config
from lstm_forecast.context import calendar_names
from lstm_forecast.context_effect import (
    CONTEXT_LABELS,
    CONTEXT_RUNS,
    common_windows,
    with_vs_without,
    without_context,
)
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError, quote
from lstm_forecast.evaluate import rebuild_dataset
from lstm_forecast.files import json_text, make_temp_dir, publish_as_free_name
from lstm_forecast.metrics import format_pvalue, judgement, p_phrase
from lstm_forecast.model import RECURRENT_CORES, check_trainable
from lstm_forecast.runs import PValue, ReadBack, checked_record, read_history
from lstm_forecast.scoring import PeriodForecasts, iso_day, period_forecasts, score_forecasts
from lstm_forecast.sets import Ratio, adjusted_family, pooled_dm
from lstm_forecast.train import TickerResult, cross_section_of, pooled_ratio, train_global, train_run, train_ticker
from lstm_forecast.trainer import EpochRecord
from lstm_forecast.universe import train_universe
from lstm_forecast.windows import WindowSpec

COMPARE_FILE = "compare.json"
COMPARE_PREFIX = "compare-"  # <runs-dir>/<TICKER>/compare-<run id>/: a ticker's comparisons
# A with-vs-without q-value is over every ticker's newest context comparison in the runs dir.
CONTEXT_FAMILY = "context comparisons in the runs dir"
CURVES_FILE = "compare_curves.png"
DEFAULT_MODELS = "rnn,gru,lstm"


@dataclass
class Comparison:
    compare_dir: Path
    report: dict[str, Any]  # compare.json's content
    interrupted: bool  # Ctrl-C stopped the comparison early; the models finished so far were written
    # compare --context: per common test window, the log-price loss with context minus without, for a set's
    # pooled test ({"anchors", "differential", "horizon"}, as universe.pooled_dm reads them).
    differential: dict[str, Any] | None = None


def parse_models(text: str) -> list[str]:
    """"rnn,gru,lstm" -> ["rnn", "gru", "lstm"]; unknown, repeated or no names are usage errors."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in RECURRENT_CORES]
    if not names or unknown or len(set(names)) != len(names):
        problem = f"unknown model type {', '.join(unknown)}" if unknown else "expected each model type once"
        raise UsageError(
            f"--models {text!r}: {problem}; give a comma-separated list of {', '.join(RECURRENT_CORES)}, "
            f"e.g. --models {DEFAULT_MODELS}"
        )
    return names


def compare_models(
    config: Config,
    ticker: str,
    data_dir: Path | None,
    runs_dir: Path | None,
    kinds: list[str],
    on_epoch: Callable[[str, EpochRecord], None] | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> Comparison:
    """Train each model type on the same data (one `train_ticker` job and bundle each) and write the
    comparison folder. Once `stop` is set, the model in training keeps its best epoch and no further one starts."""
    check_trainable(config, kinds)  # every model before the first trains: a later one must not fail after hours
    results: list[TickerResult] = []
    interrupted = False
    for kind in kinds:
        settings = config.model_copy(update={"model": config.model.model_copy(update={"type": kind})})

        def report_epoch(record: EpochRecord, kind: str = kind) -> None:
            if on_epoch is not None:
                on_epoch(kind, record)

        try:
            result = train_ticker(settings, ticker, data_dir, runs_dir, report_epoch, stop, on_fetch)
        except Interrupted:  # Ctrl-C before this model's first epoch: keep what the others gave
            interrupted = True
            break
        results.append(result)
        if result.fingerprint["sha256"] != results[0].fingerprint["sha256"]:
            raise ForecastError(
                f"the cached {result.ticker} prices changed while the models were compared (another process "
                "updated them); run the comparison again"
            )
        if result.interrupted:
            interrupted = True
            break
    if not results:
        raise Interrupted("interrupted before the first model finished an epoch; no comparison written")

    first = results[0]  # every model saw the same windows, so the first run's period describes them all
    report = {
        "ticker": first.ticker,
        "models": kinds,
        "completed": [result.kind for result in results],
        "interrupted": interrupted,
        "seed": config.train.seed,
        "data": first.fingerprint,
        "split": first.split,
        "window": first.window,
        "train": config.train.model_dump(mode="json"),
        "test": {key: first.metrics["test"][key] for key in ("windows", "first_anchor", "last_anchor")}
        | {"horizon": first.window["horizon"]},
        "runs": [_run_summary(result) for result in results],
    }
    curves = {
        run["model"].upper(): (run["history"]["epoch"], run["history"]["train_loss"], run["history"]["val_loss"])
        for run in report["runs"]
    }
    runs = resolve_runs_dir(runs_dir, config.runs.dir)  # as train_ticker resolved it
    compare_dir = write_comparison(runs, first.ticker, report, curves, first.metrics["naive_val_loss"])
    return Comparison(compare_dir=compare_dir, report=report, interrupted=interrupted)


def _run_summary(result: TickerResult) -> dict[str, Any]:
    return {
        "model": result.kind,
        "run_dir": str(result.run_dir),
        "run_id": result.run_id,
        **result.training,
        "test": result.metrics["test"],
        "history": {
            "epoch": [record.epoch for record in result.history],
            "train_loss": [record.train_loss for record in result.history],
            "val_loss": [record.val_loss for record in result.history],
        },
    }


def write_comparison(
    runs_dir: Path,
    ticker: str,
    report: dict[str, Any],
    curves: dict[str, tuple[list[int], list[float], list[float]]],
    naive_val_loss: float,
    test_scores: dict[str, tuple[float | None, str]] | None = None,
    title: str | None = None,
) -> Path:
    """Write compare.json and compare_curves.png into `<runs_dir>/<TICKER>/compare-<id>/` atomically.
    `test_scores` (label -> test RMSE ratio, DM p-value text) and `title` default to those of the report's
    model types."""
    title = title or f"{ticker} · {' vs '.join(curves)} · same data, windows and seed"
    test_scores = test_scores or {
        run["model"].upper(): (run["test"]["metrics"]["model"]["all"]["rmse_ratio"],
                               format_pvalue(run["test"]["vs_naive"]["dm_all"]["pvalue"]))
        for run in report["runs"]
    }
    return publish_comparison(Path(runs_dir) / data.cache_name(ticker), f"{COMPARE_PREFIX}{new_run_id()}", report,
                              curves, naive_val_loss, test_scores, title)


def publish_comparison(
    parent: Path, name: str, report: dict[str, Any], curves: dict[str, tuple[list, list, list]],
    naive_val_loss: float | None, test_scores: dict[str, tuple[float | None, str]], title: str,
    place: str | None = None,
) -> Path:
    """compare.json and compare_curves.png, published atomically as `<parent>/<name>` (or the first free name
    after it); a write error is one line naming the folder tried last, or `place`."""
    tmp_dir = make_temp_dir(parent, "a comparison")

    def write_report(final_dir: Path) -> None:  # compare.json names its folder, so it is written per name tried
        report["compare_dir"] = str(final_dir)
        report["files"] = {"compare": str(final_dir / COMPARE_FILE), "curves": str(final_dir / CURVES_FILE)}
        (tmp_dir / COMPARE_FILE).write_text(json_text(report), encoding="utf-8")

    try:
        plots.compare_curves(curves, naive_val_loss, test_scores, title, tmp_dir / CURVES_FILE)
        return publish_as_free_name(tmp_dir, parent, name, write_report)
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            where = place or report.get("compare_dir", parent / name)  # the name chosen last
            raise ForecastError(f"cannot write the comparison {where}: {exc.strerror or exc}") from None
        raise


# --- local vs global over a universe ------------------------------------------------------------------

SCOPES = ("local", "global")
SCOPES_DIR = "_compare"


def parse_scopes(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if sorted(names) != sorted(SCOPES):
        raise UsageError(f"--scopes {text!r}: expected local,global (both, each once)")
    return names


def compare_scopes(
    config: Config,
    tickers: list[str],
    data_dir: Path,
    runs_dir: Path,
    on_epoch: Callable[[str, EpochRecord], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    stop: StopRequest | None = None,
) -> Comparison:
    """Train one global model and a local model per ticker on the same dates, config and seed; write the
    side-by-side comparison. The tickers the global panel leaves out (too short) are left out of both.
    `on_epoch(label, record)` hears the global members' epochs ("seed 0") and the local ones' ("local T")."""
    global_config = config.model_copy(update={"model": config.model.model_copy(update={"scope": "global"})})
    # train_global checks the config and the tickers before it reads any data.
    result = train_global(global_config, tickers, data_dir, runs_dir, on_epoch=on_epoch, stop=stop)
    if stop is not None and stop.is_set():
        raise Interrupted(f"interrupted; the global run was saved to {result.run_dir}, no local model was trained")
    split = result.report["split"]
    dated = config.model_copy(update={
        "model": config.model.model_copy(update={"scope": "local", "ticker_embedding": 0}),
        "split": config.split.model_copy(update={"val_start": date.fromisoformat(split["val_start"]),
                                                 "test_start": date.fromisoformat(split["test_start"])}),
    })
    local = train_universe(dated, result.tickers, data_dir, runs_dir, stop=stop, on_row=on_row,
                           on_epoch=(lambda ticker, record: on_epoch(f"local {ticker}", record)) if on_epoch else None)
    forecasts, last_returns, train_means, curves = local_test_forecasts(local.rows)
    local_section = cross_section_of(forecasts, last_returns, train_means, config)

    scopes = {
        "local": {"universe_dir": str(local.folder), "pooled_ratio": pooled_ratio(forecasts.values()),
                  "per_ticker": _set_summary(local.report), "cross_section": local_section.to_dict()},
        "global": {"run_dir": str(result.run_dir), "pooled_ratio": result.report["pooled_ratio"],
                   "per_ticker": _set_summary(result.report["per_ticker"]),
                   "cross_section": result.report["cross_section"]},
    }
    report = {"tickers": result.tickers, "left_out": result.skipped, "split": split, "seed": config.train.seed,
              "model": config.model.type, "interrupted": local.interrupted, "scopes": scopes}
    global_history = _global_curve(Path(result.run_dir))
    plot_curves = {"LOCAL (mean)": curves, "GLOBAL": global_history}
    folder = write_scopes(runs_dir, report, plot_curves)
    return Comparison(compare_dir=folder, report=report, interrupted=local.interrupted)


def _set_summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("tickers", "trained", "better_at_q05", "worse_at_q05", "median_rmse_ratio", "pooled_dm", "verdict")
    return {key: report[key] for key in keys}


def local_test_forecasts(rows: list[dict[str, Any]]) -> tuple[dict, dict, dict, tuple[list, list, list]]:
    """Each local run's test forecasts (rebuilt from its bundle, as evaluate does), the anchor days' returns,
    the training means, and the tickers' mean loss curve (over the tickers still training at each epoch)."""
    forecasts, last_returns, train_means, histories = {}, {}, {}, []
    for row in rows:
        if row["status"] != "ok":
            continue
        bundle = load_run(row["run_dir"])
        prices = bundle.prices()[bundle.ticker]
        period = _recorded_test(bundle, prices)
        close = prices[bundle.spec.price_column_name]
        returns = pd.Series(np.log(close).diff().to_numpy(), index=prices.index)
        ticker = row["ticker"]
        forecasts[ticker] = period
        last_returns[ticker] = returns.reindex(pd.DatetimeIndex(period.anchor_dates)).to_numpy()
        train_means[ticker] = bundle.baselines["train_mean_log_return"]
        histories.append(read_history(Path(row["run_dir"])).set_index("epoch"))
    if not forecasts:
        raise ForecastError("no local model could be trained; the universe folder gives each reason")
    mean = pd.concat([history[["train_loss", "val_loss"]] for history in histories]).groupby(level=0).mean()
    return forecasts, last_returns, train_means, (mean.index.tolist(), mean["train_loss"].tolist(),
                                                  mean["val_loss"].tolist())


def _global_curve(run_dir: Path) -> tuple[list, list, list]:
    history = read_history(run_dir)
    first = history[history["seed"] == history["seed"].iloc[0]]
    return first["epoch"].tolist(), first["train_loss"].tolist(), first["val_loss"].tolist()


def write_scopes(runs_dir: Path, report: dict[str, Any], curves: dict[str, tuple[list, list, list]]) -> Path:
    """compare.json and compare_curves.png into `<runs_dir>/_compare/<id>/`, atomically."""
    parent = Path(runs_dir) / SCOPES_DIR
    scopes = report["scopes"]
    test_scores = {name.upper(): (scopes[name]["pooled_ratio"]["rmse_ratio_all"],
                                  format_pvalue(scopes[name]["per_ticker"]["pooled_dm"]["pvalue"]))
                   for name in SCOPES}
    title = f"{len(report['tickers'])} tickers · local vs global {report['model'].upper()} · same dates and seed"
    return publish_comparison(parent, new_run_id(), report, curves, None, test_scores, title, f"in {parent}")


# --- with vs without the context inputs ---------------------------------------------------------------



def parse_context_runs(text: str) -> list[str]:
    """"on,off" or "off,on" (both runs, in either order); anything else is a usage error."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if sorted(names) != sorted(CONTEXT_RUNS):
        raise UsageError(f"--context {quote(text)}: expected on,off (both, each once)")
    return names


def require_context(config: Config) -> None:
    """A with-vs-without comparison needs something to leave out."""
    if not (config.data.context or config.data.calendar_features):
        raise UsageError(
            "compare --context needs context inputs: set data.context (e.g. --set "
            "'data.context=[{ticker: ^GSPC, feature: log_return}]') or data.calendar_features"
        )


def compare_context(
    config: Config,
    ticker: str,
    data_dir: Path | None,
    runs_dir: Path | None,
    on_epoch: Callable[[str, EpochRecord], None] | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> Comparison:
    """Train the model with its context inputs, then the same model without them on the very rows and split
    the first run recorded (one bundle each); score both on their common test windows and write the comparison
    folder. `on_epoch(label, record)` hears each run's epochs under CONTEXT_LABELS."""
    require_context(config)

    def report_epoch(name: str) -> Callable[[EpochRecord], None]:
        def report(record: EpochRecord) -> None:
            if on_epoch is not None:
                on_epoch(CONTEXT_LABELS[name], record)
        return report

    with_context = train_ticker(config, ticker, data_dir, runs_dir, report_epoch("on"), stop, on_fetch)
    if stop is not None and stop.is_set():
        raise Interrupted(f"interrupted; the run with context was saved to {with_context.run_dir}, "
                          "the one without was not trained")
    bundle = load_run(with_context.run_dir)
    prices = bundle.prices()[bundle.ticker]  # already cut to the days every context series covers
    on_test = _recorded_test(bundle, prices)
    split = bundle.split
    plain = without_context(config, split)
    runs = resolve_runs_dir(runs_dir, config.runs.dir)  # as train_ticker resolved it
    try:
        without = train_run(plain, with_context.ticker, prices, runs, report_epoch("off"), stop)
    except Interrupted:
        raise Interrupted(f"interrupted; the run with context was saved to {with_context.run_dir}, "
                          "the one without finished no epoch") from None
    if without.bundle.split != split:
        raise ForecastError(f"the run without context split {with_context.ticker}'s rows differently "
                            f"({without.bundle.split} against {split}); report this as a bug")

    on_part, off_part = common_windows(on_test, without.test)
    common = on_part.anchor_dates
    kind = with_context.kind
    horizon = with_context.window["horizon"]
    scores = {"on": score_forecasts(on_part, kind), "off": score_forecasts(off_part, kind)}
    report = {
        "ticker": with_context.ticker,
        "model": kind,
        "seed": config.train.seed,
        "inputs": _context_inputs(bundle.spec),
        "interrupted": with_context.interrupted or without.result.interrupted,
        "data": with_context.fingerprint,
        "split": split,
        "window": with_context.window,
        "train": config.train.model_dump(mode="json"),
        "notes": with_context.notes,
        "test": {
            "windows": len(common),
            "first_anchor": iso_day(common[0]),
            "last_anchor": iso_day(common[-1]),
            "horizon": horizon,
            "windows_with_context": len(on_test),
            "windows_without_context": len(without.test),
        },
        "runs": {
            "on": _context_run(with_context.run_dir, with_context.run_id, with_context.training,
                               with_context.history, scores["on"]),
            "off": _context_run(without.run_dir, without.bundle.run_id, without.result.summary(),
                                without.result.history, scores["off"]),
        },
        "with_vs_without": with_vs_without(on_part, off_part, horizon),
    }
    curves = {CONTEXT_LABELS[name].upper(): tuple(report["runs"][name]["history"][key]
                                                  for key in ("epoch", "train_loss", "val_loss"))
              for name in CONTEXT_RUNS}
    test_scores = {CONTEXT_LABELS[name].upper(): (scores[name]["metrics"]["model"]["all"]["rmse_ratio"],
                                                  format_pvalue(scores[name]["vs_naive"]["dm_all"]["pvalue"]))
                   for name in CONTEXT_RUNS}
    versus = report["with_vs_without"]
    title = (f"{with_context.ticker} · {kind.upper()} with vs without context · same rows, split and seed · "
             f"RMSE with/without {versus['rmse_ratio_all'] or float('nan'):.3f}, "
             f"DM p {format_pvalue(versus['dm_all']['pvalue'])}")
    compare_dir = write_comparison(runs, with_context.ticker, report, curves, with_context.metrics["naive_val_loss"],
                                   test_scores, title)
    loss = (np.log(on_part.model / on_part.actual) ** 2 - np.log(off_part.model / off_part.actual) ** 2).mean(axis=1)
    differential = {"anchors": [iso_day(day) for day in common], "differential": loss.tolist(), "horizon": horizon}
    return Comparison(compare_dir=compare_dir, report=report, interrupted=report["interrupted"],
                      differential=differential)


class ContextVersus(ReadBack):
    rmse_ratio_all: Ratio = None
    dm_all: PValue = PValue()


class ContextComparisonRecord(ReadBack):
    """compare.json as the context family reads it: the ticker, and the with-vs-without test when it is one (a
    model-type comparison has none)."""

    ticker: Annotated[str, Field(min_length=1, max_length=64)]
    with_vs_without: ContextVersus | None = None


def recorded_context_tests(runs_dir: Path) -> tuple[dict[str, tuple[float | None, float | None]], dict[str, str]]:
    """Each ticker's newest with-vs-without comparison recorded in the runs dir (its compare.json read back through
    its schema): RMSE ratio with/without and DM p-value; and the damaged ones, by folder, with why."""
    scores, damaged = {}, {}
    # compare-<run id> sorts by the time it was made: the newest of a ticker's comes last and stays.
    for path in sorted(Path(runs_dir).glob(f"*/{COMPARE_PREFIX}*/{COMPARE_FILE}"), key=lambda found: found.parent.name):
        record, damage = checked_record(path, ContextComparisonRecord)
        if damage is not None:
            damaged[str(path.parent)] = damage
        elif record is not None and record.with_vs_without is not None and (
                data.cache_name(record.ticker) == path.parent.parent.name):
            scores[record.ticker] = (record.with_vs_without.rmse_ratio_all, record.with_vs_without.dm_all.pvalue)
    return scores, damaged


def context_set(comparisons: list[Comparison], alpha: float = 0.05) -> dict[str, Any]:
    """Several tickers' with-vs-without tests judged as a set, never one by one: each per-ticker DM p-value gets its
    Benjamini–Hochberg q-value among every ticker's newest context comparison in the runs dir the comparisons were
    written to (these among them), so comparing fewer tickers cannot lower a q-value; and a pooled DM on the
    day-by-day mean across the tickers compared of the log-price loss with context minus without (scale-free, so
    every ticker weighs alike; below zero: the context helped)."""
    rows = [{"ticker": item.report["ticker"], "rmse_ratio": item.report["with_vs_without"]["rmse_ratio_all"],
             "dm_pvalue": item.report["with_vs_without"]["dm_all"]["pvalue"], "qvalue": None} for item in comparisons]
    recorded: dict[str, tuple[float | None, float | None]] = {}
    unreadable: dict[str, str] = {}  # damaged comparisons: not in the family, and said so
    for runs_dir in dict.fromkeys(item.compare_dir.parent.parent for item in comparisons):
        scores, damaged = recorded_context_tests(runs_dir)
        recorded, unreadable = recorded | scores, unreadable | damaged
    family = adjusted_family(CONTEXT_FAMILY, recorded | {row["ticker"]: (row["rmse_ratio"], row["dm_pvalue"])
                                                         for row in rows})
    tested = [row for row in rows if row["dm_pvalue"] is not None]
    for row in tested:
        row["qvalue"] = family.test_of(row["ticker"]).qvalue
    found = [judgement(row["qvalue"], row["rmse_ratio"], alpha) for row in tested]
    helped, hurt = found.count("better"), found.count("worse")
    pooled = pooled_dm([item.differential for item in comparisons if item.differential is not None])
    # judgement reads a ratio below 1 as better: a mean differential below 0 is that.
    overall = judgement(pooled["pvalue"], None if pooled["mean_differential"] is None
                        else 1 + pooled["mean_differential"], alpha)
    words = {"better": "helped", "worse": "hurt", "same": "made no distinguishable difference", None: "is untested"}
    verdict = (f"the context helped {helped} and hurt {hurt} of {len(tested)} tickers (Benjamini–Hochberg "
               f"q < {alpha:g} over the {family.label}); pooled over the tickers it {words[overall]} "
               f"(DM {p_phrase(pooled['pvalue'])})")
    return {"tickers": rows, "tested": len(tested), "helped": helped, "hurt": hurt, "pooled_dm": pooled,
            "family": {"kind": family.kind, "size": family.size, "unreadable": unreadable}, "verdict": verdict}


def _recorded_test(bundle: RunBundle, prices: pd.DataFrame) -> PeriodForecasts:
    """A bundle's test forecasts, rebuilt from its recorded rows and context rows and checked, as evaluate does."""
    dataset = rebuild_dataset(bundle, {bundle.ticker: prices}, bundle.context_prices())
    return period_forecasts(bundle.model, dataset.test, dataset)


def _context_inputs(spec: WindowSpec) -> list[str]:
    """The input columns the run without context leaves out: the context series', then the calendar's."""
    return [series.column for series in spec.context] + calendar_names(spec.calendar_features)


def _context_run(run_dir: Path, run_id: str, training: dict[str, Any], history: list[EpochRecord],
                 test: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_dir": str(run_dir),
        "run_id": run_id,
        **training,
        "test": test,  # on the common test windows
        "history": {
            "epoch": [record.epoch for record in history],
            "train_loss": [record.train_loss for record in history],
            "val_loss": [record.val_loss for record in history],
        },
    }
