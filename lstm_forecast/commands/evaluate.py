"""`evaluate`: one run judged beside the naive and drift forecasts (with its walk-forward backtest), a
universe of the tickers' newest runs judged as a set, or a global run per ticker and across the cross-section."""

from __future__ import annotations

from pathlib import Path

from lstm_forecast.commands.shared import finish_universe
from lstm_forecast.console import note, print_json, stderr, stdout, stop_on_signals, warn
from lstm_forecast.errors import Interrupted, UsageError
from lstm_forecast.evaluate import ONE_RUN_ONLY, evaluate
from lstm_forecast.progress import FoldBar, TickerBar
from lstm_forecast.report import evaluation_report, global_report
from lstm_forecast.tickers import Plan, plan_evaluation, select_tickers
from lstm_forecast.universe import evaluate_universe


def run(
    run_dir: Path | None, *, given: list[str], tickers_file: Path | None, all_cached: bool, folds: int | None,
    data_dir: Path | None, runs_dir: Path | None, without_context: bool, json_output: bool,
) -> None:
    """Evaluate the run given, or the newest (of either kind), or the tickers' newest runs, and print the report
    (or the JSON). Tickers with --run are tickers a global run never trained on."""
    out_of_universe = None
    if run_dir is not None and (given or tickers_file or all_cached):
        selection = select_tickers(given, tickers_file, all_cached, data_dir)
        warn(selection.warnings)
        out_of_universe = selection.tickers
    elif given or tickers_file or all_cached:
        plan = plan_evaluation(run_dir, given, tickers_file, all_cached, data_dir, runs_dir)
        warn(plan.warnings)
        if len(plan.tickers) > 1:
            if without_context:
                raise UsageError(ONE_RUN_ONLY)
            _evaluate_universe(plan, folds, json_output)
            return
        given = plan.tickers
    with stop_on_signals() as stop:
        with FoldBar(stderr) as progress:
            evaluation = evaluate(run_dir, data_dir, folds, progress.update, stop,
                                  ticker=given[0] if given and out_of_universe is None else None, runs_dir=runs_dir,
                                  without_context=without_context, on_note=note, tickers=out_of_universe,
                                  on_phase=progress.phase)
        warn(evaluation.warnings)
        if json_output:
            print_json(evaluation.report)
        else:
            for item in (global_report if evaluation.over_tickers else evaluation_report)(evaluation.report):
                stdout.print(item)
        saved_to = evaluation.report["run_dir"]
        if evaluation.interrupted:
            raise Interrupted(f"backtest interrupted; the evaluation of the finished folds was saved to {saved_to}")
        if stop.is_set():
            raise Interrupted(f"evaluation interrupted after it was saved to {saved_to}")


def _evaluate_universe(plan: Plan, folds: int | None, json_output: bool) -> None:
    """`evaluate` over a universe: one bar over tickers, then the set's report; exit 1 when a ticker failed."""
    with stop_on_signals() as stop:
        with TickerBar(stderr, len(plan.tickers)) as bar:
            universe = evaluate_universe(plan.tickers, plan.runs_dir, plan.data_dir, folds, on_row=bar.update_row,
                                         stop=stop)
        finish_universe(universe, len(plan.tickers), "evaluated", json_output)
