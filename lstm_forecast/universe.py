"""Universe mode: one command over a set of tickers, each an independent job, judged honestly as a set.

Choosing (`select_tickers`): `-t` is repeatable and takes comma lists, `--tickers-file` one ticker per line
(or a CSV with a `ticker` or `symbol` column), `--all` every ticker cached in the data dir; duplicates are
dropped with a warning, the order kept, and every invalid name is reported in one error before anything runs.

Running (`train_universe`): the same config and seed for every ticker, through executors.py. Each finished
ticker is appended to `results.jsonl` in the universe folder at once, so a run killed at ticker 300 of 391
keeps 300, and `--resume UNIVERSE_DIR` skips every ticker whose bundle there was trained with the same
resolved config (`config_hash`) on the same data (the fingerprint of today's cached rows).

Judging (`universe_report`): among 391 tickers about 20 beat the random walk at p < 0.05 by luck alone, so
each ticker's Diebold–Mariano p-value gets a Benjamini–Hochberg q-value, and the set as a whole is tested by
one pooled Diebold–Mariano test on the day-by-day cross-sectional mean of the tickers' loss differentials:
the tickers share their days, so they are never counted as independent trials. The folder
`<runs-dir>/_universe/<id>/` (a ticker cannot start with "_", so it never collides with one's runs) holds
`summary.csv`, `summary.json` and `universe.png` besides the results.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lstm_forecast import data
from lstm_forecast.bundle import BUNDLE_FILE, BUNDLE_JSON_LIMIT, new_run_id
from lstm_forecast.config import Config, config_hash
from lstm_forecast.errors import ForecastError, StopRequest, UsageError, quote
from lstm_forecast.executors import Job, JobOutcome, run_here, run_in_pool, run_on_ray
from lstm_forecast.files import atomic_write_text, fsync_dir, json_text, read_bounded

UNIVERSE_DIR = "_universe"
UNIVERSE_FILE = "universe.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
UNIVERSE_PLOT = "universe.png"
TICKERS_FILE_LIMIT = 1 << 20  # a list of a few thousand symbols is kilobytes
RESULTS_LIMIT = 256 << 20  # a line per ticker, a few kilobytes each: thousands of tickers fit many times
SHOWN_OFFENDERS = 5  # invalid names quoted in the one error line; the rest are counted
Q_THRESHOLD = 0.05
SUMMARY_COLUMNS = (
    "ticker", "status", "run_dir", "rows", "rmse_ratio_h1", "rmse_ratio_all", "dm_pvalue", "bh_qvalue",
    "direction_accuracy", "binomial_pvalue", "lag_copy", "seconds", "error",
)


# --- choosing the tickers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    tickers: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class Plan:
    """What a command over tickers will work on, all checked before any work starts."""

    tickers: list[str]
    warnings: list[str]
    data_dir: Path | None  # None: each run's own (evaluate resolves it against the run's config)
    runs_dir: Path


def plan_training(
    config: Config, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    runs_dir: Path | None,
) -> Plan:
    """The config's model checked against this machine's memory, then every ticker, then the folders, in the
    order a single `train` checks them (`--all` needs the data dir to list its tickers)."""
    from lstm_forecast.bundle import resolve_runs_dir
    from lstm_forecast.model import check_trainable

    check_trainable(config)
    selection, folder = select_in_data_dir(config, given, tickers_file, all_cached, data_dir)
    return Plan(selection.tickers, selection.warnings, folder, resolve_runs_dir(runs_dir, config.runs.dir))


def select_in_data_dir(
    config: Config, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None
) -> tuple[Selection, Path]:
    """The tickers and the data dir they are cached in (resolved first only for --all, which lists it: a bad
    ticker is reported before a bad data dir, as a single command always did)."""
    folder = data.resolve_data_dir(data_dir, config.data.dir) if all_cached else None
    selection = select_tickers(given, tickers_file, all_cached, folder)
    return selection, folder or data.resolve_data_dir(data_dir, config.data.dir)


def plan_evaluation(
    run: Path | None, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    runs_dir: Path | None,
) -> Plan:
    """The tickers whose newest runs `evaluate` judges (a given --run names one run: never with tickers)."""
    from lstm_forecast.bundle import resolve_runs_dir

    folder = data.resolve_data_dir(data_dir, None) if all_cached else None
    selection = select_tickers(given, tickers_file, all_cached, folder)
    if run is not None:
        raise UsageError("give --run or --ticker, not both (--run names one ticker's run already)")
    # The data dir stays as given: each run resolves it against its own config, as a single evaluate does.
    return Plan(selection.tickers, selection.warnings, data_dir, resolve_runs_dir(runs_dir, None))


def select_tickers(given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None) -> Selection:
    """The tickers named by `-t` (comma lists allowed), `--tickers-file` and `--all` (the tickers cached in
    `data_dir`), in that order, each once."""
    names = [name.strip() for value in given for name in value.split(",") if name.strip()]
    if tickers_file is not None:
        names += read_tickers_file(tickers_file)
    if all_cached and data_dir is not None:
        cached = cached_tickers(data_dir)
        if not cached:
            raise UsageError(f"--all: no cached prices in {data_dir}; fetch some first (lstm-forecast fetch -t …)")
        names += cached
    if not names:
        raise UsageError("no tickers: give -t TICKER (repeatable, or a comma list), --tickers-file FILE or --all")
    valid, invalid, errors = [], [], []
    for name in names:
        try:
            valid.append(data.validate_ticker(name))
        except UsageError as exc:
            invalid.append(name)
            errors.append(exc)
    if len(invalid) == 1:
        raise errors[0]  # one bad name: the message a single ticker gets, which says what a symbol looks like
    if invalid:
        shown = ", ".join(quote(name) for name in invalid[:SHOWN_OFFENDERS])
        more = f" and {len(invalid) - SHOWN_OFFENDERS} more" if len(invalid) > SHOWN_OFFENDERS else ""
        raise UsageError(
            f"{len(invalid)} invalid ticker{'s' * (len(invalid) != 1)}: {shown}{more}; expected Yahoo Finance "
            "symbols such as TSLA, ^GSPC, BRK-B"
        )
    unique = list(dict.fromkeys(valid))
    repeated = sorted({name for name in valid if valid.count(name) > 1})
    warnings = [f"dropped repeated tickers: {', '.join(repeated)}"] if repeated else []
    return Selection(unique, warnings)


def read_tickers_file(path: Path) -> list[str]:
    """One ticker per line (blank lines and # comments ignored), or a CSV with a `ticker` or `symbol` column."""
    try:
        text = read_bounded(path, TICKERS_FILE_LIMIT, "a tickers file", UsageError).decode("utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"--tickers-file {path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"--tickers-file {path}: not UTF-8 text") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if lines and "," in lines[0]:
        rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        header = {name.strip().lower(): name for name in rows[0]} if rows else {}
        column = header.get("ticker") or header.get("symbol")
        if column is None:
            raise UsageError(f"--tickers-file {path}: a CSV needs a `ticker` or `symbol` column")
        return [(row[column] or "").strip() for row in rows if (row[column] or "").strip()]
    return lines


def cached_tickers(data_dir: Path) -> list[str]:
    """Every ticker with a price cache in `data_dir`, sorted (a folder of Yahoo CSVs counts)."""
    if not data_dir.is_dir():
        return []
    names = []
    for path in sorted(data_dir.glob("*.csv")):
        try:
            names.append(data.validate_ticker(path.stem))
        except UsageError:
            continue  # not a cache file of ours (README.csv, notes.csv)
    return names


# --- running them --------------------------------------------------------------------------------


@dataclass
class Universe:
    folder: Path
    rows: list[dict[str, Any]]  # one per ticker, in the order given: SUMMARY_COLUMNS
    report: dict[str, Any]  # summary.json's content
    interrupted: bool


def threads_per_job(config: Config, jobs: int, executor: str) -> int:
    """`train.threads` when set; else jobs in this process take the cores free now (`auto`, looked at once for
    the universe rather than before every ticker), N local jobs share the cores (cores // N, at least one each),
    and a Ray task takes one CPU (or cores // N with --jobs N), so a cluster runs as many as it has CPUs."""
    if config.train.threads != "auto":
        return config.train.threads
    if executor == "local" and jobs == 1:
        from lstm_forecast.trainer import training_threads

        return training_threads("auto")
    if executor == "ray" and jobs == 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // jobs)


def train_universe(
    config: Config,
    tickers: list[str],
    data_dir: Path,
    runs_dir: Path,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    resume: Path | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[str, Any], Any] | None = None,
    stop: StopRequest | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> Universe:
    """Train every ticker (skipping, with `resume`, those already done alike) and write the universe folder.

    `on_row` hears each ticker's summary row as it finishes (resumed ones first), `on_epoch(ticker, record)`
    every epoch of a job run in this process; `stop` is the caller's stop request (see executors.py);
    `on_fetch` hears about a context series' download before it starts."""
    from lstm_forecast.context import load_context

    stop = stop or threading.Event()
    # The context series once, before any job: a missing one is fetched here, not by parallel jobs racing to
    # download it, and one that cannot be had fails the universe at once. Jobs read it from the cache.
    load_context(data_dir, [entry.ticker for entry in config.data.context], on_fetch, stop)
    threads = threads_per_job(config, jobs, executor)
    job_config = config.model_copy(update={"train": config.train.model_copy(update={"threads": threads})})
    runs_dir.mkdir(parents=True, exist_ok=True)
    folder = resume if resume is not None else create_universe_dir(runs_dir, job_config, tickers)
    done = resumable_results(folder, job_config, data_dir) if resume is not None else {}
    all_jobs = [Job(job_config, ticker, data_dir.resolve(), runs_dir.resolve(), threads)
                for ticker in tickers if ticker not in done]
    results = dict(done)
    for record in done.values():
        if on_row is not None:
            on_row(record["row"])
    interrupted = False
    for outcome in _outcomes(all_jobs, jobs, executor, ray_address, stop, on_epoch):
        results[outcome.ticker] = result_record(outcome)
        append_result(folder, results[outcome.ticker])
        interrupted = interrupted or outcome.interrupted
        if on_row is not None:
            on_row(results[outcome.ticker]["row"])
    interrupted = interrupted or stop.is_set()
    rows, report = universe_report([results[ticker] for ticker in tickers if ticker in results], tickers)
    report["interrupted"] = interrupted
    write_summary(folder, rows, report)
    return Universe(folder, rows, report, interrupted)


def _outcomes(
    jobs: list[Job], workers: int, executor: str, ray_address: str | None, stop: StopRequest,
    on_epoch: Callable[[str, Any], Any] | None,
) -> Iterator[JobOutcome]:
    if not jobs:
        return iter(())
    if executor == "ray":
        return run_on_ray(jobs, ray_address, stop)
    if workers == 1:
        return run_here(jobs, stop, on_epoch)
    return run_in_pool(jobs, min(workers, len(jobs)), stop)


def evaluate_universe(
    tickers: list[str],
    runs_dir: Path,
    data_dir: Path | None,
    folds: int | None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[Any], None] | None = None,
    stop: StopRequest | None = None,
) -> Universe:
    """`evaluate` on each ticker's newest run, one after another, then the set's report in a universe folder."""
    from lstm_forecast.bundle import find_run
    from lstm_forecast.evaluate import evaluate
    from lstm_forecast.scoring import iso_day, log_loss_differential

    stop = stop or threading.Event()
    runs_dir.mkdir(parents=True, exist_ok=True)
    folder = create_universe_dir(runs_dir, None, tickers)
    results: dict[str, dict[str, Any]] = {}
    for ticker in tickers:
        if stop.is_set():
            break
        started = time.perf_counter()
        try:
            evaluation = evaluate(find_run(runs_dir, None, ticker), data_dir, folds, on_progress, stop)
        except ForecastError as exc:
            record = scored_record(ticker, "failed", time.perf_counter() - started, " ".join(str(exc).split()))
        else:
            report, test = evaluation.report, evaluation.test
            record = scored_record(
                ticker, "interrupted" if evaluation.interrupted else "ok", time.perf_counter() - started, None,
                run_dir=Path(report["run_dir"]), rows=report["data"]["rows"], test=report["test"],
                echoes=report["lag_copy"]["echoes_yesterday"], anchors=[iso_day(day) for day in test.anchor_dates],
                differential=[float(value) for value in log_loss_differential(test)],
                horizon=report["test"]["horizon"], fingerprint=report["data"]["sha256"],
            )
        results[ticker] = record
        append_result(folder, record)
        if on_row is not None:
            on_row(record["row"])
    interrupted = stop.is_set()
    rows, report = universe_report([results[ticker] for ticker in tickers if ticker in results], tickers)
    report["interrupted"] = interrupted
    write_summary(folder, rows, report)
    return Universe(folder, rows, report, interrupted)


def create_universe_dir(runs_dir: Path, config: Config | None, tickers: list[str]) -> Path:
    """A new `<runs_dir>/_universe/<id>/` holding universe.json (what is being run: the tickers, and the config
    trained with; None for an evaluation) and an empty results file."""
    parent = runs_dir / UNIVERSE_DIR
    parent.mkdir(parents=True, exist_ok=True)
    base = new_run_id()
    for attempt in range(100):
        folder = parent / (base if attempt == 0 else f"{base}-{attempt + 1}")
        try:
            folder.mkdir()  # exclusive: two universes started in the same millisecond take different names
            break
        except FileExistsError:
            continue
    else:
        raise ForecastError(f"cannot create a universe folder in {parent}: every name is taken")
    description = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tickers": tickers,
        "config_hash": config_hash(config) if config is not None else None,
        "config": config.to_plain() if config is not None else None,
    }
    atomic_write_text(folder / UNIVERSE_FILE, json_text(description))
    (folder / RESULTS_FILE).touch()
    fsync_dir(folder)
    return folder


def result_record(outcome: JobOutcome) -> dict[str, Any]:
    """What results.jsonl keeps of a finished training job: its summary row and its test loss differentials."""
    result = outcome.result
    if result is None:
        status = "interrupted" if outcome.interrupted else "failed"
        return scored_record(outcome.ticker, status, outcome.seconds, outcome.error)
    return scored_record(
        outcome.ticker, "interrupted" if result.interrupted else "ok", outcome.seconds, None,
        run_dir=result.run_dir, rows=result.fingerprint["rows"], test=result.metrics["test"],
        echoes=result.lag_copy["echoes_yesterday"], anchors=result.test_anchors,
        differential=result.test_loss_differential, horizon=result.window["horizon"],
        fingerprint=result.fingerprint["sha256"], notes=result.notes,
    )


def scored_record(
    ticker: str, status: str, seconds: float, error: str | None, run_dir: Path | None = None,
    rows: int | None = None, test: dict[str, Any] | None = None, echoes: bool | None = None,
    anchors: list[str] | None = None, differential: list[float] | None = None, horizon: int | None = None,
    fingerprint: str | None = None, notes: list[str] | None = None,
) -> dict[str, Any]:
    """A ticker's summary row (SUMMARY_COLUMNS) from its test scores block, with what the pooled test needs
    and the notes on what its data cost (history cut to the context's range, windows dropped)."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(ticker=ticker, status=status, seconds=round(seconds, 2), error=error)
    if test is not None:
        scores, vs_naive = test["metrics"]["model"], test["vs_naive"]
        row.update(
            run_dir=str(run_dir), rows=rows,
            rmse_ratio_h1=scores["h1"]["rmse_ratio"], rmse_ratio_all=scores["all"]["rmse_ratio"],
            dm_pvalue=vs_naive["dm_all"]["pvalue"], direction_accuracy=vs_naive["direction_h1"]["accuracy"],
            binomial_pvalue=vs_naive["direction_h1"]["binomial_pvalue"], lag_copy="yes" if echoes else "no",
        )
    return {"row": row, "anchors": anchors or [], "differential": differential or [], "horizon": horizon,
            "fingerprint": fingerprint, "notes": notes or []}


def append_result(folder: Path, record: dict[str, Any]) -> None:
    """One line per finished ticker, flushed to disk at once: a killed run keeps what it finished."""
    with open(folder / RESULTS_FILE, "a", encoding="utf-8") as results:
        results.write(json.dumps(record, allow_nan=False) + "\n")
        results.flush()
        os.fsync(results.fileno())


def resumable_results(folder: Path, config: Config, data_dir: Path) -> dict[str, dict[str, Any]]:
    """The tickers of an earlier run of `folder` that need no training again: finished without interruption,
    their bundle still there, trained with this resolved config on exactly today's cached rows (cut to the
    context's range, and the same context rows)."""
    from lstm_forecast.context import load_context
    from lstm_forecast.prices import prices_sha256
    from lstm_forecast.train import load_training_prices, prepare_inputs

    path = folder / RESULTS_FILE
    if not path.is_file():
        raise UsageError(f"--resume {folder}: not a universe folder (no {RESULTS_FILE}); see {UNIVERSE_DIR}/ "
                         "in the runs dir")
    expected_hash = config_hash(config)
    records: dict[str, dict[str, Any]] = {}
    text = read_bounded(path, RESULTS_LIMIT, "a universe's results", UsageError).decode("utf-8", "replace")
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue  # the last line of a run killed while writing it
        if _usable(record):
            records[record["row"]["ticker"]] = record
    context_prices = load_context(data_dir, [entry.ticker for entry in config.data.context])
    done = {}
    for ticker, record in records.items():
        document = _bundle_document(Path(record["row"]["run_dir"]))
        if document.get("config_hash") != expected_hash:
            continue
        try:
            prices, context_rows, _ = prepare_inputs(load_training_prices(ticker, data_dir, config), config,
                                                     context_prices)
        except ForecastError:
            continue
        recorded = [item.get("sha256") for item in document.get("context_fingerprints") or []
                    if isinstance(item, dict)]
        if prices_sha256(prices) == record.get("fingerprint") and recorded == [
            prices_sha256(rows) for rows in context_rows.values()
        ]:
            done[ticker] = record
    return done


def _usable(record: Any) -> bool:
    """A results.jsonl line as this code writes it for a ticker that trained (anything else is trained again)."""
    if not isinstance(record, dict) or not isinstance(row := record.get("row"), dict):
        return False
    numbers = [row.get(key) for key in SUMMARY_COLUMNS if key not in ("ticker", "status", "run_dir", "lag_copy",
                                                                         "error")]
    return (
        row.get("status") == "ok" and isinstance(row.get("ticker"), str) and isinstance(row.get("run_dir"), str)
        and all(value is None or (isinstance(value, int | float) and not isinstance(value, bool)) for value in numbers)
        and isinstance(record.get("anchors"), list) and all(isinstance(day, str) for day in record["anchors"])
        and isinstance(record.get("differential"), list)
        and all(isinstance(value, int | float) for value in record["differential"])
        and len(record["anchors"]) == len(record["differential"]) and isinstance(record.get("horizon"), int)
    )


def _bundle_document(run_dir: Path) -> dict[str, Any]:
    """A ticker bundle's bundle.json as plain data ({} when unreadable: the ticker is trained again)."""
    try:
        document = json.loads(read_bounded(run_dir / BUNDLE_FILE, BUNDLE_JSON_LIMIT, "a bundle description"))
    except (ForecastError, OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


# --- judging them as a set -------------------------------------------------------------------------


def universe_report(records: list[dict[str, Any]], tickers: list[str]) -> tuple[list[dict[str, Any]], dict]:
    """The summary rows with their Benjamini–Hochberg q-values, and the set's verdict with the pooled test."""
    from scipy.stats import false_discovery_control

    rows = [dict(record["row"]) for record in records]
    tested = [row for row in rows if row["status"] == "ok" and row["dm_pvalue"] is not None]
    if tested:
        qvalues = false_discovery_control([row["dm_pvalue"] for row in tested], method="bh")
        for row, qvalue in zip(tested, qvalues, strict=True):
            row["bh_qvalue"] = float(qvalue)
    ratios = sorted(row["rmse_ratio_all"] for row in rows if row["status"] == "ok" and row["rmse_ratio_all"])
    better = [row for row in tested if row["bh_qvalue"] < Q_THRESHOLD and row["rmse_ratio_all"] < 1]
    worse = [row for row in tested if row["bh_qvalue"] < Q_THRESHOLD and row["rmse_ratio_all"] > 1]
    pooled = pooled_dm([record for record in records if record["row"]["status"] == "ok"])
    report = {
        "tickers": len(tickers),
        "trained": sum(row["status"] == "ok" for row in rows),
        "failed": [{"ticker": row["ticker"], "error": row["error"]} for row in rows if row["status"] == "failed"],
        "not_run": [ticker for ticker in tickers if ticker not in {row["ticker"] for row in rows}],
        "better_at_q05": len(better),
        "worse_at_q05": len(worse),
        "median_rmse_ratio": _median(ratios),
        "pooled_dm": pooled,
        "verdict": set_verdict(len(tested), len(better), len(worse), pooled),
        # Per ticker, what its data cost (results.jsonl lines written before notes have none).
        "notes": {record["row"]["ticker"]: record["notes"] for record in records if record.get("notes")},
        "method": "per-ticker DM p-values (test period, all horizon days) adjusted by Benjamini-Hochberg; pooled "
                  "DM on the daily cross-sectional mean of the tickers' squared log-price error differentials "
                  "(model minus naive), HAC over the horizon, since the tickers share their days",
        "rows": rows,
    }
    return rows, report


def pooled_dm(records: list[dict[str, Any]]) -> dict[str, Any]:
    """DM test of the day-by-day mean (across tickers) of model-minus-naive loss differentials against zero."""
    import numpy as np
    import pandas as pd

    from lstm_forecast.metrics import diebold_mariano

    series = [pd.Series(record["differential"], index=pd.to_datetime(record["anchors"]))
              for record in records if record["differential"]]
    if not series:
        return {"days": 0, "mean_differential": None, "statistic": None, "pvalue": None}
    daily = pd.concat(series, axis=1, sort=True).mean(axis=1, skipna=True).to_numpy()
    horizon = max(record["horizon"] or 1 for record in records)
    statistic, pvalue = diebold_mariano(daily, np.zeros_like(daily), horizon=horizon)
    return {"days": int(daily.size), "mean_differential": float(daily.mean()), "statistic": statistic,
            "pvalue": pvalue}


def set_verdict(tested: int, better: int, worse: int, pooled: dict[str, Any]) -> str:
    """The set in plain words."""
    from lstm_forecast.metrics import p_phrase

    counts = (f"{better} of {tested} tickers beat the random walk at q < {Q_THRESHOLD:g} (Benjamini–Hochberg), "
              f"{worse} did worse")
    pvalue, mean = pooled["pvalue"], pooled["mean_differential"]
    if pvalue is None:
        return f"{counts}; the pooled test could not be computed"
    if pvalue < Q_THRESHOLD:
        side = "better" if mean < 0 else "worse"
        return f"{counts}; pooled over the set the model is {side} than the random walk ({p_phrase(pvalue)})"
    return f"{counts}; pooled over the set the model is not distinguishable from the random walk ({p_phrase(pvalue)})"


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def write_summary(folder: Path, rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """summary.csv, summary.json and universe.png, each written atomically (JSON last: it says the set is whole)."""
    from lstm_forecast import plots

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / SUMMARY_CSV, buffer.getvalue())
    scored = [row for row in rows if row["rmse_ratio_all"] is not None and math.isfinite(row["rmse_ratio_all"])]
    plots.universe_plot(
        [row["ticker"] for row in scored], [row["rmse_ratio_all"] for row in scored],
        [row["bh_qvalue"] for row in scored], Q_THRESHOLD, f"{len(scored)} tickers · test RMSE / naive",
        folder / UNIVERSE_PLOT,
    )
    names = (SUMMARY_CSV, SUMMARY_JSON, UNIVERSE_PLOT, RESULTS_FILE)  # a global run's folder has no results.jsonl
    report["files"] = {name: str(folder / name) for name in names if name != RESULTS_FILE or (folder / name).exists()}
    report["folder"] = str(folder)
    atomic_write_text(folder / SUMMARY_JSON, json_text(report))
