"""`train`: a model for one ticker, a universe of them (one each, judged as a set), or one global model across
the tickers; the progress bars on stderr, the report on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lstm_forecast.commands.shared import clamp_jobs, finish_universe, print_notes
from lstm_forecast.config import Config, check_training_options
from lstm_forecast.console import note, print_json, stderr, stdout, stop_on_signals, warn
from lstm_forecast.errors import Interrupted
from lstm_forecast.progress import EpochBars, TickerBar
from lstm_forecast.report import global_report, scores_table, tests_line
from lstm_forecast.tickers import Plan, plan_training
from lstm_forecast.train import TickerResult, member_labels, train_global, train_ticker
from lstm_forecast.trainer import BatchProgress, EpochRecord
from lstm_forecast.universe import train_universe, universe_description


def run(
    settings: Config, *, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    runs_dir: Path | None, jobs: int, executor: str, ray_address: str | None, resume: Path | None,
    json_output: bool,
) -> None:
    """Train what the config's scope and the tickers given call for, and print its report (or the JSON)."""
    check_training_options(settings, jobs, executor, resume)
    if resume is not None and not (given or tickers_file or all_cached):  # the folder records its tickers
        given = [",".join(universe_description(resume).tickers)]
    plan = plan_training(settings, given, tickers_file, all_cached, data_dir, runs_dir)
    warn(plan.warnings)
    if settings.model.scope == "global":
        _global_model(settings, plan, json_output)
    elif len(plan.tickers) > 1 or jobs > 1 or executor != "local" or resume is not None:
        _universe(settings, plan, jobs, executor, ray_address, resume, json_output)
    else:
        _one_ticker(settings, plan.tickers[0], data_dir, runs_dir, json_output)


def _one_ticker(settings: Config, symbol: str, data_dir: Path | None, runs_dir: Path | None,
                json_output: bool) -> None:
    """`train -t TICKER`: one bar over epochs, then the summary beside naive."""
    # A stop signal from the first batch until the bundle is in place keeps the best epoch (see console.py). The
    # bar is drawn from the first epoch on, so the label of a ticker that is not valid is never shown.
    labels = [f"{symbol} {settings.model.type.upper()}"]
    if settings.train.seeds > 1:  # a seed ensemble: a bar per member, trained one after another
        labels = [f"{symbol} {label}" for label in member_labels(settings)]
    with stop_on_signals() as stop:
        with EpochBars(stderr, labels, settings.train.epochs) as bars:
            members = MemberBars(bars, labels)
            result = train_ticker(settings, symbol, data_dir, runs_dir, members.update, stop, on_fetch=note,
                                  on_batch=members.update_batch, on_phase=bars.phase)
        if json_output:
            print_json({"run_dir": str(result.run_dir), **result.metrics})
        else:
            _print_training_summary(result)
        if stop.is_set():
            raise Interrupted(f"training interrupted; the best epoch so far was saved to {result.run_dir}")


def _universe(
    settings: Config, plan: Plan, jobs: int, executor: str, ray_address: str | None, resume: Path | None,
    json_output: bool,
) -> None:
    """`train` over a universe: one bar over tickers, then the set's report; exit 1 when a ticker failed."""
    if executor == "local":
        jobs = clamp_jobs(jobs, "training {} at once")
    with stop_on_signals() as stop:
        with TickerBar(stderr, len(plan.tickers)) as bar:
            universe = train_universe(settings, plan.tickers, plan.data_dir, plan.runs_dir, jobs, executor,
                                      ray_address, resume, on_row=bar.update_row, on_epoch=bar.update_epoch,
                                      stop=stop, on_fetch=note)
        finish_universe(universe, len(plan.tickers), "trained", json_output)


def _global_model(settings: Config, plan: Plan, json_output: bool) -> None:
    """`train --scope global`: one bar per seed, then the per-ticker and cross-sectional report."""
    with stop_on_signals() as stop:
        with EpochBars(stderr, member_labels(settings), settings.train.epochs) as bars:
            result = train_global(settings, plan.tickers, plan.data_dir, plan.runs_dir,
                                  on_epoch=lambda label, record: bars.update(record, label), stop=stop, on_fetch=note,
                                  on_batch=lambda label, progress: bars.update_batch(progress, label),
                                  on_phase=bars.phase)
        if json_output:
            print_json({"run_dir": str(result.run_dir), "tickers": result.tickers, "training": result.training,
                        **result.report})
        else:
            for member in result.training:
                _print_member(member)
            print_notes(result.notes, str(result.run_dir / "metrics.json"))
            for item in global_report({**result.report, "scope": "in universe", "run_dir": str(result.run_dir),
                                       "model": {"kind": settings.model.type}, "skipped": result.skipped}):
                stdout.print(item)
            stdout.print(f"Run bundle: {result.run_dir} (lstm-forecast evaluate --run {result.run_dir} writes "
                         "the report files and charts)", markup=False, soft_wrap=True)
        if stop.is_set():
            raise Interrupted(f"training interrupted; the members finished so far were saved to {result.run_dir}")


class MemberBars:
    """Each report to its member's bar: the members of a seed ensemble train one after another, each from epoch 1,
    so a report that is not further along than the last one (an epoch, or a batch's share of one) is the next
    member's first."""

    def __init__(self, bars: EpochBars, labels: list[str]) -> None:
        self.bars, self.labels = bars, labels
        self.member, self.reached = -1, 0.0

    def update(self, record: EpochRecord) -> None:
        self.bars.update(record, self._label(record.epoch))

    def update_batch(self, progress: BatchProgress) -> None:
        self.bars.update_batch(progress, self._label(progress.epoch - 1 + progress.batch / progress.batches))

    def _label(self, reached: float) -> str:
        if self.member < 0 or reached <= self.reached:
            self.member += 1
        self.reached = reached
        return self.labels[min(self.member, len(self.labels) - 1)]


def _print_training_summary(result: TickerResult) -> None:
    """The `train` report: how training went (each member's, for a seed ensemble), then the validation and test
    scores beside naive's."""
    training, kind = result.training, result.kind
    # Interrupted (Ctrl-C): the epochs run are fewer than asked for, and the report says so before any score.
    stopped = (" (interrupted: the best epoch so far was kept)" if training["interrupted"]
               else " (stopped early)" if training["stopped_early"] else "")
    members = result.metrics.get("members") or []
    stdout.print(
        f"Trained {kind.upper()} on {result.ticker}: {training['epochs_run']} epochs{stopped}, "
        f"best epoch {training['best_epoch']}, {training['seconds']:.1f} s on {training['device']}"
        if not members else f"Trained a seed ensemble of {len(members)} {kind.upper()} models on {result.ticker}, "
        f"forecasts averaged{' (interrupted: the members finished so far were kept)' * training['interrupted']}:"
    )
    for member in members:
        _print_member(member)
    for line in result.notes:
        stdout.print(f"Note: {line}", markup=False)
    for split, title in (("val", "Validation"), ("test", "Test (never seen in training)")):
        scores = result.metrics[split]
        period = f"{scores['first_anchor']} … {scores['last_anchor']}, {scores['windows']} windows"
        stdout.print(scores_table(f"{title}: {period}", scores["metrics"], result.window["horizon"], kind))
        stdout.print(tests_line(scores["vs_naive"]))
        stdout.print(f"Verdict: {scores['verdict']}.")
    stdout.print(f"Run bundle: {result.run_dir}", markup=False)


def _print_member(member: dict[str, Any]) -> None:
    """One member of a seed ensemble: its seed and how its training went."""
    stopped = " (stopped early)" if member["stopped_early"] else ""
    stdout.print(f"Seed {member['seed']}: {member['epochs_run']} epochs{stopped}, best epoch "
                 f"{member['best_epoch']} (validation loss {member['best_val_loss']:.4f}), "
                 f"{member['seconds']:.1f} s on {member['device']}"
                 + (f"; test RMSE / naive {member['test_rmse_ratio']:.3f}" if "test_rmse_ratio" in member else ""),
                 markup=False)
