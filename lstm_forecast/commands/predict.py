"""`predict`: one ticker's forecast with its intervals and fan chart, or a screener over several tickers (their
newest runs, or a global run's tickers) ranked by the move; on stdout, or written where `--output` says."""

from __future__ import annotations

import sys
from pathlib import Path

from lstm_forecast.bundle import is_global_run
from lstm_forecast.console import listing, note, stderr, stdout, stop_on_signals, warn
from lstm_forecast.errors import ForecastError, Interrupted, UsageError
from lstm_forecast.files import writes_in_place
from lstm_forecast.predict import Screener, forecast_table, interval_note, run_predict, run_screener, screener_report
from lstm_forecast.progress import TickerBar
from lstm_forecast.tickers import select_forecast_tickers


def run(
    run_dir: Path | None, *, given: list[str], tickers_file: Path | None, all_cached: bool, days: int | None,
    levels: list[float] | None, output_format: str | None, output: Path | None, refresh: bool,
    data_dir: Path | None, runs_dir: Path | None,
) -> None:
    """Forecast from the run given (or the newest run of either kind, or each ticker's newest run) and print or
    write the forecast; a global run prints the screener over its tickers (or those named with --run)."""
    symbol, tickers = None, []
    if given or tickers_file or all_cached:
        selection = select_forecast_tickers(given, tickers_file, all_cached, data_dir, runs_dir, run_dir)
        if run_dir is not None and is_global_run(run_dir):
            tickers = selection.tickers  # the run's tickers to show, or ones it never trained on
        elif run_dir is not None:
            named = "--ticker" if not (tickers_file or all_cached) else "--tickers-file/--all"
            raise UsageError(f"give --run or {named}, not both (--run names one ticker's run already)")
        warn(selection.warnings)
        if not tickers and len(selection.tickers) > 1:
            _predict_screener(selection.tickers, days, levels, output_format, output, refresh, data_dir, runs_dir)
            return
        symbol = None if tickers else selection.tickers[0]
    with stop_on_signals() as stop:
        outcome = run_predict(
            run=run_dir, ticker=symbol, days=days, levels=levels or (), output_format=output_format, output=output,
            refresh=refresh, data_dir=data_dir, runs_dir=runs_dir, on_fetch=note, tickers=tickers, stop=stop,
        )
        if isinstance(outcome, Screener):
            _finish_screener(outcome)
            return
    warn(outcome.warnings)
    notes = stdout  # paths are printed unwrapped (soft_wrap), so they can be copied whole
    if outcome.output is not None:
        if writes_in_place(outcome.output):  # e.g. -o /dev/stdout: the forecast alone goes there
            notes = stderr
        notes.print(f"Forecast: {outcome.output}", markup=False, soft_wrap=True)
    elif outcome.text is not None:  # JSON or CSV on stdout: nothing else may go there
        sys.stdout.write(outcome.text)
        notes = stderr
    else:
        stdout.print(forecast_table(outcome.forecast))
        stdout.print(interval_note(outcome.forecast), markup=False)
    if outcome.chart is not None:
        notes.print(f"Fan chart: {outcome.chart}", markup=False, soft_wrap=True)


def _finish_screener(screener: Screener) -> None:
    """Show the screener; then exit 130 if it was interrupted, 1 if a ticker could not be forecast."""
    _show_screener(screener)
    if screener.interrupted:
        raise Interrupted("interrupted; the tickers not reached are listed as not run")
    if screener.failed:
        raise ForecastError(f"{len(screener.failed)} of {len(screener.rows)} tickers could not be forecast; "
                            "the table gives each reason")


def _predict_screener(
    tickers: list[str], days: int | None, levels: list[float] | None, output_format: str | None,
    output: Path | None, refresh: bool, data_dir: Path | None, runs_dir: Path | None,
) -> None:
    """`predict` over two or more tickers: the ranked table; exit 1 when a ticker could not be forecast."""
    if days is not None:
        raise UsageError("--days: over two or more tickers predict shows the next session only; give one ticker "
                         "to forecast more days")
    with stop_on_signals() as stop:
        with TickerBar(stderr, len(tickers)) as bar:
            screener = run_screener(tickers, levels or (), output_format, output, refresh, data_dir, runs_dir,
                                    on_row=bar.update_row, stop=stop)
        _finish_screener(screener)


def _show_screener(screener: Screener) -> None:
    """The screener's table on stdout, or where it was written, or its JSON/CSV alone on stdout."""
    if screener.output is not None:
        (stderr if writes_in_place(screener.output) else stdout).print(
            f"Screener: {screener.output}", markup=False, soft_wrap=True)
    elif screener.text is not None:  # JSON or CSV on stdout: nothing else may go there
        sys.stdout.write(screener.text)
    else:
        # The lines under the table wrap at a terminal's width, between words; piped, each stays one line.
        if screener.header:
            listing.print(screener.header, markup=False, soft_wrap=False)
        for item in screener_report(screener.rows):
            listing.print(item, markup=False, soft_wrap=False)
