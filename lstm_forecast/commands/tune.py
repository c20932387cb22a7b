"""`tune`: an Optuna search over the validation period, its board on stderr, then the best config's one test
score beside naive on stdout."""

from __future__ import annotations

from pathlib import Path

from lstm_forecast.commands.shared import clamp_jobs
from lstm_forecast.config import Config
from lstm_forecast.console import note, print_json, stderr, stdout, stop_on_signals, warn
from lstm_forecast.errors import Interrupted
from lstm_forecast.progress import TrialBoard
from lstm_forecast.report import tune_report
from lstm_forecast.tickers import plan_training
from lstm_forecast.tune import DEFAULT_TRIALS, plan_tune, tune


def run(
    settings: Config, *, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    runs_dir: Path | None, space: Path | None, trials: int | None, timeout: int | None, study: str | None,
    storage: str | None, jobs: int, seed: int | None, objective: str, cv_folds: int, json_output: bool,
) -> None:
    """Run (or resume) the study over the tickers given and print its report (or the JSON)."""
    plan = plan_training(settings, given, tickers_file, all_cached, data_dir, runs_dir)
    warn(plan.warnings)
    jobs = clamp_jobs(jobs, "running {} trials at once")
    if trials is None and timeout is None:
        trials = DEFAULT_TRIALS
    with stop_on_signals() as stop:
        setup = plan_tune(settings, plan.tickers, plan.data_dir, plan.runs_dir, space, study, storage, jobs,
                          objective, cv_folds, seed, on_fetch=note, stop=stop)
        with TrialBoard(stderr, setup.space.keys, trials, timeout) as board:
            outcome = tune(setup, plan.runs_dir, trials, timeout, jobs, stop, on_update=board.update,
                           on_retrain=note)
        if json_output:
            print_json(outcome.report)
        else:
            for item in tune_report(outcome.report):
                stdout.print(item)
        if outcome.interrupted:
            raise Interrupted(f"tune interrupted; every finished trial is kept in study {setup.study!r} (run the "
                              "same command again to resume)")
