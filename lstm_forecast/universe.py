"""Universe mode: one command over a set of tickers, each an independent job, judged honestly as a set.

The tickers come from tickers.py (`select_tickers`).

Running (`train_universe`): the same config and seed for every ticker, through executors.py. Each finished
ticker is appended to `results.jsonl` in the universe folder at once, so a run killed at ticker 300 of 391
keeps 300, and `--resume UNIVERSE_DIR` skips every ticker whose bundle there was trained with the same
resolved config (`config_hash`) on the same data (the fingerprint of today's cached rows).

Judging: as a set (sets.py), with Benjamini–Hochberg q-values and a pooled Diebold–Mariano test. The folder
`<runs-dir>/_universe/<id>/` (a ticker cannot start with "_", so it never collides with one's runs) holds
`summary.csv`, `summary.json` and `universe.png` besides the results.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lstm_forecast.bundle import BUNDLE_FILE, find_run, new_run_id
from lstm_forecast.config import Config, config_hash
from lstm_forecast.context import load_context
from lstm_forecast.errors import ForecastError, StopRequest, UsageError
from lstm_forecast.evaluate import evaluate, html_page
from lstm_forecast.executors import Job, JobOutcome, run_here, run_in_pool, run_on_ray
from lstm_forecast.files import (
    append_line,
    atomic_write_text,
    bounded_lines,
    fsync_dir,
    json_text,
    open_regular,
    read_bounded,
)
from lstm_forecast.prices import prices_sha256
from lstm_forecast.report import universe_report
from lstm_forecast.runs import RunHead, checked_record, runs_dir_family
from lstm_forecast.scoring import iso_day, log_loss_differential
from lstm_forecast.sets import UNIVERSE_PLOT, SummaryRow, scored_record, set_report, write_summary
from lstm_forecast.tickers import MAX_SELECTED
from lstm_forecast.train import load_training_prices
from lstm_forecast.windows import build_dataset

UNIVERSE_DIR = "_universe"
UNIVERSE_FILE = "universe.json"
RESULTS_FILE = "results.jsonl"
RESULTS_LIMIT = 256 << 20  # a line per ticker, a few kilobytes each: thousands of tickers fit many times
# A ticker's line: its row and a loss differential per test window (a few dozen bytes each, thousands of windows).
RESULT_LINE_LIMIT = 8 << 20
UNIVERSE_FILE_LIMIT = 4 << 20  # the tickers (at most tickers.MAX_SELECTED) and a resolved config


# --- running them --------------------------------------------------------------------------------


@dataclass
class Universe:
    folder: Path
    rows: list[dict[str, Any]]  # one per ticker, in the order given: SUMMARY_COLUMNS
    report: dict[str, Any]  # summary.json's content
    interrupted: bool


def threads_per_job(config: Config, jobs: int, executor: str) -> int | str | list[list[int]]:
    """`train.threads` when set (a recorded schedule only in this process; workers take its largest count);
    else jobs in this process stay `auto`, following the load as they train (trainer.ThreadPlan), N local
    jobs share the cores (cores // N, at least one each), and a Ray task takes one CPU (or cores // N with
    --jobs N), so a cluster runs as many as it has CPUs."""
    threads = config.train.threads
    in_process = executor == "local" and jobs == 1
    if isinstance(threads, list):
        return threads if in_process else max(count for _, count in threads)
    if threads != "auto" or in_process:
        return threads
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
    stop = stop or threading.Event()
    # The context series once, before any job: a missing one is fetched here, not by parallel jobs racing to
    # download it, and one that cannot be had fails the universe at once. Jobs read it from the cache.
    load_context(data_dir, [entry.ticker for entry in config.data.context], on_fetch, stop)
    threads = threads_per_job(config, jobs, executor)
    job_config = config.model_copy(update={"train": config.train.model_copy(update={"threads": threads})})
    runs_dir.mkdir(parents=True, exist_ok=True)
    done, damaged = resumable_results(resume, job_config, data_dir) if resume is not None else ({}, 0)
    all_jobs = [Job(job_config, ticker, data_dir.resolve(), runs_dir.resolve(), threads)
                for ticker in tickers if ticker not in done]
    # The executor first: a Ray cluster that cannot be joined (or no Ray at all) leaves no empty folder behind.
    outcomes = _outcomes(all_jobs, jobs, executor, ray_address, stop, on_epoch)
    folder = resume if resume is not None else create_universe_dir(runs_dir, job_config, tickers)
    results = dict(done)
    for record in done.values():
        if on_row is not None:
            on_row(record["row"])
    interrupted = False
    for outcome in outcomes:
        results[outcome.ticker] = result_record(outcome)
        append_result(folder, results[outcome.ticker])
        interrupted = interrupted or outcome.interrupted
        if on_row is not None:
            on_row(results[outcome.ticker]["row"])
    interrupted = interrupted or stop.is_set()
    rows, report = set_report([results[ticker] for ticker in tickers if ticker in results], tickers)
    report["interrupted"] = interrupted
    if resume is not None:  # what resuming reused and what it trained again, and why
        report["resumed"] = {"reused": len(done), "trained_again": len(all_jobs), "damaged_lines": damaged}
    write_summary(folder, rows, report, kept=(RESULTS_FILE,),
                  page=set_page("Universe", job_config, folder))
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
    # Separate runs, judged among every ticker's newest own run in the runs dir (these evaluations standing for the
    # listed tickers' own scores): listing fewer tickers cannot lower a q-value.
    evaluated = {ticker: (record["row"]["rmse_ratio_all"], record["row"]["dm_pvalue"])
                 for ticker, record in results.items() if record["row"]["status"] == "ok"}
    rows, report = set_report([results[ticker] for ticker in tickers if ticker in results], tickers,
                              runs_dir_family(runs_dir, evaluated))
    report["interrupted"] = interrupted
    write_summary(folder, rows, report, kept=(RESULTS_FILE,),
                  page=set_page("Evaluated universe", None, folder))
    return Universe(folder, rows, report, interrupted)


def set_page(title: str, config: Config | None, folder: Path) -> Callable[[dict[str, Any]], str]:
    """What renders a universe's report.html from its summary: the table and verdict `train` prints, the
    per-ticker chart and the config the tickers were trained with."""

    def page(report: dict[str, Any]) -> str:
        heading = f"{title} · {report['tickers']} tickers · {folder.name}"
        return html_page(heading, universe_report(report)[:-1], [(folder / UNIVERSE_PLOT, "Each ticker's test RMSE "
                         "against naive, q-values beside")], config, {"tickers": report["tickers"],
                                                                      "trained": report["trained"]})

    return page


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


def append_result(folder: Path, record: dict[str, Any]) -> None:
    """One line per finished ticker, flushed to disk at once: a killed run keeps what it finished."""
    append_line(folder / RESULTS_FILE, json.dumps(record, allow_nan=False) + "\n", ForecastError,
                "a universe's results (damaged universe folder)")


def resumable_results(folder: Path, config: Config, data_dir: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The tickers of an earlier run of `folder` that need no training again: finished without interruption,
    their bundle still there, trained with this resolved config on exactly today's cached rows (cut to the
    context's range, and the same context rows); and how many lines of its results could not be trusted. A
    folder made for another config is refused: resuming it would mix two configs in one set."""
    path = folder / RESULTS_FILE
    if not (path.exists() or path.is_symlink()):  # a FIFO or device there is refused by name when it is read
        raise UsageError(f"--resume {folder}: not a universe folder (no {RESULTS_FILE}); see {UNIVERSE_DIR}/ "
                         "in the runs dir")
    expected_hash = config_hash(config)
    if universe_description(folder).config_hash not in (None, expected_hash):
        raise UsageError(f"--resume {folder}: its tickers were trained with another config; give the same "
                         "--config and --set, or start a new universe without --resume")
    records, damaged = trusted_records(path)
    context_prices = load_context(data_dir, [entry.ticker for entry in config.data.context])
    done = {}
    for ticker, record in records.items():
        head = checked_record(Path(record["row"]["run_dir"]) / BUNDLE_FILE, RunHead)[0]  # damaged: trained again
        if head is None or head.config_hash != expected_hash:
            continue
        try:  # the rows and context rows training would record, built as training builds them
            dataset = build_dataset({ticker: load_training_prices(ticker, data_dir, config)}, config,
                                    context_prices=context_prices)
        except ForecastError:
            continue
        recorded = [item.sha256 for item in head.context_fingerprints or []]
        if prices_sha256(dataset.prices[ticker]) == record.get("fingerprint") and recorded == [
            prices_sha256(rows) for rows in dataset.context_rows.values()
        ]:
            done[ticker] = record
    return done, damaged


class UniverseDescription(BaseModel):
    """universe.json: what a universe folder was made for (the tickers, and the config of a training)."""

    model_config = ConfigDict(extra="ignore")  # newer writers may record more
    created_at: Annotated[str, Field(max_length=64)] = ""
    tickers: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=MAX_SELECTED)]
    config_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


def universe_description(folder: Path) -> UniverseDescription:
    """A universe folder's universe.json, read bounded and validated; damage is one usage error naming it."""
    path = folder / UNIVERSE_FILE
    try:
        return UniverseDescription.model_validate_json(read_bounded(path, UNIVERSE_FILE_LIMIT, "a universe's "
                                                                    "description", UsageError))
    except FileNotFoundError:
        raise UsageError(f"--resume {folder}: not a universe folder (no {UNIVERSE_FILE}); see {UNIVERSE_DIR}/ in "
                         "the runs dir") from None
    except ValidationError:
        raise UsageError(f"--resume {folder}: damaged universe folder ({UNIVERSE_FILE} is not what this tool "
                         "writes); start a new universe without --resume") from None


class ResultRecord(BaseModel):
    """A results.jsonl line (sets.scored_record) that resume may trust: its row, and the test period's anchor days
    (each once, in order) with one loss differential each, as the pooled test reads them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    row: SummaryRow
    anchors: Annotated[list[date], Field(max_length=1_000_000)]
    differential: Annotated[list[Annotated[float, Field(ge=-1e3, le=1e3)]], Field(max_length=1_000_000)]
    horizon: Annotated[int, Field(ge=1, le=250)] | None
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None
    notes: Annotated[list[Annotated[str, Field(max_length=4000)]], Field(max_length=100)] = []

    @model_validator(mode="after")
    def _check(self) -> ResultRecord:
        if self.row.status == "ok" and (self.row.run_dir is None or self.horizon is None):
            raise ValueError("a trained ticker's record names its run and horizon")
        if len(self.anchors) != len(self.differential):
            raise ValueError("expected one loss differential per anchor day")
        if any(later <= earlier for earlier, later in pairwise(self.anchors)):
            raise ValueError("expected the anchor days each once, in order")
        return self


def trusted_records(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The records of results.jsonl that resume may trust, by ticker (the last of each), and how many lines it
    could not: a line over RESULT_LINE_LIMIT is skipped unread, one that is not JSON (a run killed while writing
    it) or breaks `ResultRecord` is skipped, and its ticker trained again."""
    records: dict[str, dict[str, Any]] = {}
    damaged = 0
    with open_regular(path, UsageError, f"--resume {path.parent}: a universe's results") as results:
        for line in bounded_lines(results, RESULTS_LIMIT, RESULT_LINE_LIMIT):
            if line is None:
                damaged += 1
                continue
            try:
                record = ResultRecord.model_validate_json(line)
            except ValidationError:
                damaged += line.strip() != b""
                continue
            if record.row.status == "ok":  # failed and interrupted tickers are trained again
                records[record.row.ticker] = record.model_dump(mode="json")
    return records, damaged


# --- judging them as a set -------------------------------------------------------------------------


