"""`fetch`: one ticker's prices downloaded (or imported from a CSV) into the cache, or several tickers' in turn."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from lstm_forecast import data
from lstm_forecast.config import Config
from lstm_forecast.console import note, print_json, stderr, stdout, stop_on_signals, warn
from lstm_forecast.errors import ForecastError, Interrupted, UsageError
from lstm_forecast.progress import TickerBar
from lstm_forecast.report import fetch_table
from lstm_forecast.tickers import SHOWN_OFFENDERS, select_in_data_dir


def run(
    settings: Config, *, given: list[str], tickers_file: Path | None, all_cached: bool, data_dir: Path | None,
    start: date | None, end: date | None, refresh: bool, from_csv: Path | None, json_output: bool,
    replace: bool = False,
) -> None:
    """Fetch the tickers given and print what each cache holds now (or the JSON report)."""
    selection, folder = select_in_data_dir(settings, given, tickers_file, all_cached, data_dir)
    warn(selection.warnings)
    if replace and from_csv is None:
        raise UsageError("--replace goes with --from-csv: it lets an import drop cached rows the file lacks")
    if from_csv is not None and len(selection.tickers) > 1:
        raise UsageError(f"--from-csv imports one ticker's prices; give one ticker, not {len(selection.tickers)}")
    if len(selection.tickers) > 1:
        _fetch_many(folder, selection.tickers, start, end, refresh, settings.data.fetch_rate, json_output)
        return
    symbol = selection.tickers[0]
    if from_csv is not None:
        summary = data.import_csv(from_csv, folder, symbol, start, end, replace_rows=replace)
    else:
        with stderr.status(f"Downloading {symbol} from Yahoo Finance…"):
            summary = data.update_cache(folder, symbol, start, end, refresh=refresh)
    warn(summary.warnings)
    for message in summary.messages:
        note(message)
    if json_output:
        print_json(data.fetch_report(folder, [symbol], [data.fetch_row(symbol, summary)]))
        return
    stdout.print(
        f"{summary.ticker}: {summary.rows} rows, {summary.first} … {summary.last} "
        f"({summary.new_rows} new, {summary.mode}) → {summary.path}",
        markup=False,
    )


def _fetch_many(
    folder: Path, tickers: list[str], start: date | None, end: date | None, refresh: bool, rate: float,
    json_output: bool,
) -> None:
    """`fetch` over two or more tickers: one bar over tickers, then the table; exit 1 when a ticker failed."""
    with stop_on_signals() as stop:
        with TickerBar(stderr, len(tickers)) as bar:
            report = data.fetch_many(folder, tickers, rate, start, end, refresh, stop, on_row=bar.update_row)
        for row in report["rows"]:
            warn(row["warnings"])
            for message in row["messages"]:
                note(message)
        if json_output:
            print_json(report)
        else:
            for item in fetch_table(report):
                stdout.print(item)
        if report["interrupted"]:
            raise Interrupted(f"fetch interrupted; {report['fetched']} of {len(tickers)} tickers fetched (their "
                              "caches are whole), the rest left as they were")
        failed = [item["ticker"] for item in report["failed"]]
        if failed:
            more = f" and {len(failed) - SHOWN_OFFENDERS} more" if len(failed) > SHOWN_OFFENDERS else ""
            shown = ", ".join(failed[:SHOWN_OFFENDERS]) + more
            raise ForecastError(f"{len(failed)} of {len(tickers)} tickers could not be fetched: {shown}")
