"""What several commands print or decide alike: a universe's report and exit, the notes on what the data cost
each ticker, and how many worker processes `--jobs` may start here."""

from __future__ import annotations

import os

from lstm_forecast.console import print_json, stdout, warn
from lstm_forecast.errors import ForecastError, Interrupted
from lstm_forecast.report import universe_report
from lstm_forecast.universe import Universe


def clamp_jobs(jobs: int, at_once: str) -> int:
    """`--jobs`, at most this machine's cores, with a warning when it was more; `at_once` says what the cores
    do instead, `{}` standing for their number (e.g. "training {} at once")."""
    cores = os.cpu_count() or 1
    if jobs > cores:  # more workers than cores only queue for them, each costing memory
        warn([f"--jobs {jobs} is more than this machine's {cores} cores; {at_once.format(cores)}"])
        return cores
    return jobs


def finish_universe(universe: Universe, total: int, done: str, json_output: bool) -> None:
    """Print a universe's report (or its JSON); then exit 130 if it was interrupted, 1 if a ticker failed."""
    if json_output:
        print_json(universe.report)
    else:
        resumed = universe.report.get("resumed")
        if resumed:
            lines = resumed["damaged_lines"]
            damaged = f", {lines} damaged lines of its results ignored" if lines else ""
            stdout.print(f"Resumed {universe.folder}: {resumed['reused']} tickers reused (same config and data), "
                         f"{resumed['trained_again']} trained{damaged}.", markup=False, soft_wrap=True)
        for item in universe_report(universe.report):
            stdout.print(item)
        print_notes(universe.report.get("notes") or {}, str(universe.folder / "summary.json"))
    if universe.interrupted:
        resume = f" (continue with --resume {universe.folder})" if done == "trained" else ""
        raise Interrupted(f"interrupted; the tickers finished so far are in {universe.folder}{resume}")
    failed = len(universe.report["failed"])
    if failed:
        raise ForecastError(f"{failed} of {total} tickers could not be {done}; "
                            f"{universe.folder / 'summary.csv'} gives each reason")


MAX_NOTE_TICKERS = 5  # more tickers' notes than this are counted, not listed


def print_notes(notes: dict[str, list[str]], where: str) -> None:
    """What the data cost each ticker (history cut to the context's range, windows dropped): listed for a few
    tickers, counted for more (`where` holds them all)."""
    noted = {ticker: lines for ticker, lines in notes.items() if lines}
    if len(noted) > MAX_NOTE_TICKERS:
        stdout.print(f"Note: {len(noted)} tickers had their history cut or windows dropped for the context "
                     f"inputs; {where} lists them", markup=False)
        return
    for ticker, lines in noted.items():
        for line in lines:
            stdout.print(f"Note: {ticker}: {line}", markup=False)
