"""`runs`: the run bundles in the runs dir (or the tickers' given), oldest first, as a table or JSON."""

from __future__ import annotations

from pathlib import Path

from lstm_forecast.console import listing, print_json, stderr, warn
from lstm_forecast.runs import run_summaries, runs_table
from lstm_forecast.tickers import select_tickers


def run(*, given: list[str], tickers_file: Path | None, runs_dir: Path | None, json_output: bool) -> None:
    """List the runs (of the tickers given, or all), or say how to train one when there is none."""
    tickers: list[str | None] = [None]
    if given or tickers_file:
        selection = select_tickers(given, tickers_file, False)
        warn(selection.warnings)
        tickers = list(selection.tickers)
    listings = [run_summaries(runs_dir, symbol) for symbol in tickers]
    folder = listings[0][0]
    rows = sorted((row for _, some in listings for row in some), key=lambda row: (row["run_id"], row["path"]))
    if json_output:
        print_json({"runs_dir": str(folder), "runs": rows})
    elif rows:
        listing.print(runs_table(rows, folder))
    else:
        hint = f"lstm-forecast train -t {','.join(tickers) if tickers != [None] else 'TICKER'}"
        stderr.print(f"No run bundles in {folder}; train one with `{hint}`.", markup=False)
