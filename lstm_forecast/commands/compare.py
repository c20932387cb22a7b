"""`compare`: model types trained on identical data, windows and seed (one ticker, or several in turn), local
models against one global model (`--scopes`), or a model with and without its context inputs (`--context`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from lstm_forecast.compare import (
    CONTEXT_LABELS,
    DEFAULT_MODELS,
    Comparison,
    compare_context,
    compare_models,
    compare_scopes,
    context_set,
    parse_context_runs,
    parse_scopes,
    require_context,
)
from lstm_forecast.config import Config
from lstm_forecast.console import note, print_json, stderr, stdout, stop_on_signals, warn
from lstm_forecast.errors import ForecastError, Interrupted, StopRequest, UsageError
from lstm_forecast.progress import EpochBars, TickerBar
from lstm_forecast.report import compare_report, context_report, scopes_report
from lstm_forecast.tickers import plan_training
from lstm_forecast.train import member_labels


def run(
    settings: Config, *, models: str, kinds: list[str], given: list[str], tickers_file: Path | None,
    all_cached: bool, data_dir: Path | None, runs_dir: Path | None, scopes: str | None, context_runs: str | None,
    json_output: bool,
) -> None:
    """Run the comparison the options ask for (`models` as given, `kinds` parsed from it) and print its report."""
    if context_runs is not None:
        _context(settings, context_runs, scopes, models, given, tickers_file, all_cached, data_dir, runs_dir,
                 json_output)
    elif scopes is not None:
        _scopes(settings, scopes, models, given, tickers_file, all_cached, data_dir, runs_dir, json_output)
    elif tickers_file is not None or all_cached or len(given) != 1 or "," in given[0]:
        _universe(settings, kinds, given, tickers_file, all_cached, data_dir, runs_dir, json_output)
    else:
        _one_ticker(settings, kinds, given[0], data_dir, runs_dir, json_output)


def _one_ticker(settings: Config, kinds: list[str], symbol: str, data_dir: Path | None, runs_dir: Path | None,
                json_output: bool) -> None:
    """`compare -t TICKER`: one bar per model type, then the table."""
    with stop_on_signals() as stop:
        with EpochBars(stderr, [kind.upper() for kind in kinds], settings.train.epochs) as bars:
            comparison = compare_models(
                settings, symbol, data_dir, runs_dir, kinds,
                on_epoch=lambda kind, record: bars.update(record, kind.upper()), stop=stop, on_fetch=note,
            )
        if json_output:
            print_json(comparison.report)
        else:
            for item in compare_report(comparison.report):
                stdout.print(item)
        if comparison.interrupted or stop.is_set():
            raise Interrupted(
                f"comparison interrupted; the models finished so far were saved to {comparison.compare_dir}"
            )


def _scopes(
    settings: Config, scopes: str, models: str, given: list[str], tickers_file: Path | None, all_cached: bool,
    data_dir: Path | None, runs_dir: Path | None, json_output: bool,
) -> None:
    """`compare --scopes local,global`: one bar over the local tickers after the global model's epochs."""
    parse_scopes(scopes)
    if models != DEFAULT_MODELS:
        raise UsageError("--scopes compares local and global models of one type (model.type or --set "
                         "model.type=…); give --models without --scopes")
    plan = plan_training(settings, given, tickers_file, all_cached, data_dir, runs_dir)
    warn(plan.warnings)
    labels = member_labels(settings)

    def on_epoch(label: str, record: Any) -> None:
        if label in labels:
            bars.update(record, label)
        else:
            tickers.update_epoch(label.removeprefix("local "), record)

    with stop_on_signals() as stop:
        with EpochBars(stderr, labels, settings.train.epochs) as bars, TickerBar(stderr, len(plan.tickers)) as tickers:
            comparison = compare_scopes(settings, plan.tickers, plan.data_dir, plan.runs_dir, on_epoch,
                                        tickers.update_row, stop)
        if json_output:
            print_json(comparison.report)
        else:
            for item in scopes_report(comparison.report):
                stdout.print(item)
        if comparison.interrupted or stop.is_set():
            raise Interrupted(f"comparison interrupted; what finished was saved to {comparison.compare_dir}")


def _context(
    settings: Config, context_runs: str, scopes: str | None, models: str, given: list[str], tickers_file: Path | None,
    all_cached: bool, data_dir: Path | None, runs_dir: Path | None, json_output: bool,
) -> None:
    """`compare --context on,off`: one comparison per ticker, in turn; over two or more, as `compare` over several
    (exit 1 when one failed, 130 on Ctrl-C)."""
    parse_context_runs(context_runs)
    if scopes is not None:
        raise UsageError("--context and --scopes are separate comparisons; give one of them")
    if models != DEFAULT_MODELS:
        raise UsageError("--context compares one model type (model.type or --set model.type=…) with and without "
                         "its context inputs; give --models without --context")
    require_context(settings)
    several = tickers_file is not None or all_cached or len(given) != 1 or "," in given[0]
    if several:
        plan = plan_training(settings, given, tickers_file, all_cached, data_dir, runs_dir)
        warn(plan.warnings)
        tickers, data_dir, runs_dir = plan.tickers, plan.data_dir, plan.runs_dir
    else:
        tickers = given
    with stop_on_signals() as stop:

        def one(symbol: str) -> Comparison:
            prefix = f"{symbol} " if several else ""
            with EpochBars(stderr, [f"{prefix}{label.upper()}" for label in CONTEXT_LABELS.values()],
                           settings.train.epochs) as bars:
                return compare_context(
                    settings, symbol, data_dir, runs_dir, stop=stop, on_fetch=note,
                    on_epoch=lambda label, record: bars.update(record, f"{prefix}{label.upper()}"),
                )

        comparisons, failures, interrupted = _in_turn(tickers, stop, one, context_report, json_output, several)
        reports = [comparison.report for comparison in comparisons]
        summary = context_set(comparisons) if several and comparisons else None
        if json_output:
            print_json({"comparisons": reports, "failed": failures, "set": summary} if several else reports[0])
        elif summary is not None:
            stdout.print(f"[bold]Across the tickers: {escape(summary['verdict'])}.[/]")
        if not several and (interrupted or stop.is_set()):
            raise Interrupted(f"comparison interrupted; what finished was saved to {reports[0]['compare_dir']}")
        _finish(len(reports), len(tickers), failures, interrupted or stop.is_set())


def _universe(
    settings: Config, kinds: list[str], given: list[str], tickers_file: Path | None, all_cached: bool,
    data_dir: Path | None, runs_dir: Path | None, json_output: bool,
) -> None:
    """`compare` over several tickers: one comparison each, in turn; exit 1 when one failed, 130 on Ctrl-C."""
    plan = plan_training(settings, given, tickers_file, all_cached, data_dir, runs_dir)
    warn(plan.warnings)
    with stop_on_signals() as stop:

        def one(symbol: str) -> Comparison:
            with EpochBars(stderr, [f"{symbol} {kind.upper()}" for kind in kinds], settings.train.epochs) as bars:
                return compare_models(
                    settings, symbol, plan.data_dir, plan.runs_dir, kinds, stop=stop, on_fetch=note,
                    on_epoch=lambda kind, record: bars.update(record, f"{symbol} {kind.upper()}"),
                )

        comparisons, failures, interrupted = _in_turn(plan.tickers, stop, one, compare_report, json_output)
        reports = [comparison.report for comparison in comparisons]
        if json_output:
            print_json({"comparisons": reports, "failed": failures})
        _finish(len(reports), len(plan.tickers), failures, interrupted or stop.is_set())


def _in_turn(
    tickers: list[str], stop: StopRequest, one: Callable[[str], Comparison],
    render: Callable[[dict[str, Any]], list[Any]], json_output: bool, several: bool = True,
) -> tuple[list[Comparison], list[dict[str, str]], bool]:
    """One comparison per ticker, in turn, each printed as it ends (unless JSON); over several, a ticker that fails
    is recorded with its reason and stops no other (a lone ticker's failure is the command's). Ctrl-C ends the
    turn: the comparisons finished, the failures and whether it was interrupted."""
    comparisons, failures = [], []
    for symbol in tickers:
        if stop.is_set():
            break
        try:
            comparison = one(symbol)
        except ForecastError as exc:
            if not several:
                raise
            if isinstance(exc, Interrupted):  # the tickers compared so far are still reported
                return comparisons, failures, True
            failures.append({"ticker": symbol, "error": " ".join(str(exc).split())})
            continue
        comparisons.append(comparison)
        if not json_output:
            for item in render(comparison.report):
                stdout.print(item)
        if comparison.interrupted:
            return comparisons, failures, True
    return comparisons, failures, False


def _finish(compared: int, total: int, failures: list[dict[str, str]], interrupted: bool) -> None:
    """Warn of the tickers not compared; exit 130 when interrupted, 1 when one failed."""
    warn([f"{failure['ticker']} was not compared: {failure['error']}" for failure in failures])
    if interrupted:
        raise Interrupted(f"comparisons interrupted after {compared} of {total} tickers")
    if failures:
        raise ForecastError(f"{len(failures)} of {total} tickers could not be compared")
