"""The command line: parse, call one function, print.

Heavy libraries (torch, pandas, yfinance) are imported inside the commands, so that
`lstm-forecast --help` answers at once. Every user-facing failure is a `ForecastError`,
caught once in `ForecastGroup.main`, printed as one `Error: ...` line on stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from lstm_forecast import __version__
from lstm_forecast.errors import ForecastError, Interrupted

# soft_wrap: a summary line piped to a file stays one line (paths are never broken at 80 columns);
# piped tables get 100 columns rather than rich's 80, terminals their own width.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 100)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class ForecastGroup(TyperGroup):
    """Runs a command and turns every failure into one `Error: ...` line and the guide's exit code."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            if code == 130:  # Typer turned a Ctrl-C outside training into a bare exit code
                code = fail("interrupted", 130)
        except ForecastError as exc:
            code = fail(str(exc), exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            code = fail("interrupted", 130)
        except OSError as exc:
            code = fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", 1)
        except Exception as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was shown: not an error
                code = 0
            elif hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
                # Typer's own usage errors (missing option, bad value): same one-line format.
                context = getattr(exc, "ctx", None)
                message = exc.format_message().rstrip()
                if context is not None:
                    message += ("" if message.endswith((".", ")")) else ".") + f" See '{context.command_path} --help'."
                code = fail(message, exc.exit_code)
            else:  # a bug: still one line, the traceback on request
                detail = f"unexpected {type(exc).__name__}: {exc}"
                code = fail(f"{detail} (set LSTM_FORECAST_DEBUG=1 for the traceback)", 1)
        sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, exit_code: int) -> int:
    """Print one error line (and the traceback when LSTM_FORECAST_DEBUG=1); return the exit code."""
    if os.environ.get("LSTM_FORECAST_DEBUG") == "1" and sys.exc_info()[0] is not None:
        traceback.print_exc()
    first_line = " ".join(message.split())
    print(f"Error: {first_line}", file=sys.stderr)
    return exit_code


def warn(messages: list[str]) -> None:
    for message in messages:
        stderr.print(f"[yellow]Warning:[/] {message}")


app = typer.Typer(
    cls=ForecastGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    help="Honest LSTM stock-price forecasts: every number beside the random-walk baseline.",
)


def _version(value: bool) -> None:
    if value:
        print(f"lstm-forecast {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Fetch prices, train an LSTM, evaluate it honestly against the naive forecast, predict."""


# Options shared by several commands.
ISO_DAY = "%Y-%m-%d"
TickerOption = Annotated[
    str, typer.Option("--ticker", "-t", metavar="TICKER", help="Ticker symbol, e.g. TSLA or ^GSPC.")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", metavar="DIR", help="Price cache (default: $LSTM_FORECAST_DATA_DIR, data.dir, ./data)."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", metavar="FILE", help="YAML config merged over the defaults.")
]


@app.command()
def fetch(
    ticker: TickerOption,
    start: Annotated[datetime | None, typer.Option(formats=[ISO_DAY], help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[datetime | None, typer.Option(formats=[ISO_DAY], help="Last day, YYYY-MM-DD.")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Download the whole range again.")] = False,
    from_csv: Annotated[
        Path | None,
        # A file named on the command line that is not there is a usage error (exit 2), as for --config.
        typer.Option("--from-csv", exists=True, dir_okay=False, help="Import a local Yahoo-layout CSV, no download."),
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Download daily prices from Yahoo Finance into the local cache (or import a CSV)."""
    from lstm_forecast import data
    from lstm_forecast.config import load_config

    settings = load_config(config)
    symbol = data.validate_ticker(ticker)
    folder = data.resolve_data_dir(data_dir, settings.data.dir)
    if from_csv is not None:
        summary = data.import_csv(from_csv, folder, symbol, _day(start), _day(end))
    else:
        with stderr.status(f"Downloading {symbol} from Yahoo Finance…"):
            summary = data.update_cache(folder, symbol, _day(start), _day(end), refresh=refresh)
    warn(summary.warnings)
    for message in summary.messages:
        stderr.print(message)
    stdout.print(
        f"{summary.ticker}: {summary.rows} rows, {summary.first} … {summary.last} "
        f"({summary.new_rows} new, {summary.mode}) → {summary.path}"
    )


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a config key, e.g. train.lr=0.0005 (repeatable)."),
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", metavar="DIR", help="Run bundles (default: $LSTM_FORECAST_RUNS_DIR, runs.dir, ./runs)."),
]
RunOption = Annotated[
    Path | None, typer.Option("--run", metavar="RUN_DIR", help="Run bundle (default: the newest run).")
]
RunTickerOption = Annotated[
    str | None, typer.Option("--ticker", "-t", metavar="TICKER", help="Use this ticker's newest run.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (progress on stderr).")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="lstm, gru or rnn (model.type).")]
EpochsOption = Annotated[int | None, typer.Option("--epochs", help="Maximum epochs (train.epochs).")]


@app.command()
def train(
    ticker: TickerOption,
    config: ConfigOption = None,
    set_: SetOption = None,
    model: ModelOption = None,
    epochs: EpochsOption = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (train.seed).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps (train.device).")] = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train a model on the cached prices and write a run bundle with metrics and a loss curve."""
    from lstm_forecast import data
    from lstm_forecast.bundle import resolve_runs_dir
    from lstm_forecast.config import load_config
    from lstm_forecast.model import check_trainable
    from lstm_forecast.train import load_training_prices, train_run

    shortcuts = {"model.type": ("--model", model), "train.epochs": ("--epochs", epochs),
                 "train.seed": ("--seed", seed), "train.device": ("--device", device)}
    settings = load_config(config, set_ or [], shortcuts)
    check_trainable(settings)
    symbol = data.validate_ticker(ticker)
    folder = data.resolve_data_dir(data_dir, settings.data.dir)
    runs = resolve_runs_dir(runs_dir, settings.runs.dir)
    prices = load_training_prices(symbol, folder, settings, on_fetch=stderr.print)
    from lstm_forecast.progress import EpochBars

    with EpochBars(stderr, [f"{symbol} {settings.model.type.upper()}"], settings.train.epochs) as progress:
        outcome = train_run(settings, symbol, prices, runs, on_epoch=progress.update)
    if json_output:
        print_json({"run_dir": str(outcome.run_dir), **outcome.metrics})
    else:
        print_training_summary(outcome)
    if outcome.result.interrupted:
        raise Interrupted(f"training interrupted; the best epoch so far was saved to {outcome.run_dir}")


def print_training_summary(outcome: Any) -> None:
    from lstm_forecast.report import forecast_table, tests_line

    result, scores = outcome.result, outcome.metrics
    horizon = outcome.bundle.spec.horizon
    stopped = " (stopped early)" if result.stopped_early else ""
    stdout.print(
        f"Trained {outcome.bundle.shape.kind.upper()} on {outcome.bundle.ticker}: {result.epochs_run} epochs{stopped}, "
        f"best epoch {result.best_epoch}, {result.seconds:.1f} s on {result.device}"
    )
    for split, title in (("val", "Validation"), ("test", "Test (never seen in training)")):
        split_scores = scores[split]
        period = f"{split_scores['first_anchor']} … {split_scores['last_anchor']}, {split_scores['windows']} windows"
        stdout.print(forecast_table(f"{title}: {period}", split_scores, horizon, outcome.bundle.shape.kind))
        stdout.print(tests_line(split_scores["vs_naive"]))
        stdout.print(f"Verdict: {outcome.bundle.shape.kind.upper()} is {split_scores['verdict']}.")
    stdout.print(f"Run bundle: {outcome.run_dir}")


@app.command()
def predict(
    run: RunOption = None,
    ticker: RunTickerOption = None,
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, metavar="N", help="Trading days to forecast, up to the run's horizon."),
    ] = None,
    levels: Annotated[
        list[float] | None,
        typer.Option("--level", metavar="PCT", help="Interval level in percent, repeatable (default: 80 and 95)."),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--format", "-f", metavar="FORMAT", help="table, json or csv (default: from --output, or table)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write the forecast here; the fan chart goes beside it."),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Update the price cache from Yahoo Finance first.")
    ] = False,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Forecast the next trading sessions with prediction intervals, from cached prices (offline)."""
    from lstm_forecast.predict import forecast_table, interval_note, run_predict

    outcome = run_predict(
        run=run, ticker=ticker, days=days, levels=levels or (), output_format=output_format, output=output,
        refresh=refresh, data_dir=data_dir, runs_dir=runs_dir, on_fetch=stderr.print,
    )
    warn(outcome.warnings)
    notes = stdout  # paths are printed unwrapped (soft_wrap), so they can be copied whole
    if outcome.output is not None:
        stdout.print(f"Forecast: {outcome.output}", markup=False, soft_wrap=True)
    elif outcome.text is not None:  # JSON or CSV on stdout: nothing else may go there
        sys.stdout.write(outcome.text)
        notes = stderr
    else:
        stdout.print(forecast_table(outcome.forecast))
        stdout.print(interval_note(outcome.forecast), markup=False)
    if outcome.chart is not None:
        notes.print(f"Fan chart: {outcome.chart}", markup=False, soft_wrap=True)


@app.command("runs")
def list_runs(
    ticker: Annotated[
        str | None, typer.Option("--ticker", "-t", metavar="TICKER", help="Only this ticker's runs.")
    ] = None,
    runs_dir: RunsDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the run bundles, oldest first: id, ticker, model, epochs and test RMSE against naive."""
    from lstm_forecast.predict import run_summaries, runs_table

    folder, rows = run_summaries(runs_dir, ticker)
    if json_output:
        print_json({"runs_dir": str(folder), "runs": rows})
    elif rows:
        # The table's natural width, as `ls -l` never cuts a path: a narrow terminal wraps long lines instead.
        Console(highlight=False, width=10_000).print(runs_table(rows))
    else:
        stderr.print(f"No run bundles in {folder}; train one with `lstm-forecast train -t TICKER`.", markup=False)


FoldsOption = Annotated[
    int | None,
    typer.Option("--folds", min=0, metavar="K", help="Walk-forward folds, 0 for none (default: evaluate.folds)."),
]


@app.command()
def evaluate(
    run: RunOption = None,
    ticker: RunTickerOption = None,
    folds: FoldsOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Judge a run beside the naive and drift forecasts: tests, lag copy, intervals, backtest, plots."""
    from lstm_forecast.bundle import find_run, resolve_runs_dir
    from lstm_forecast.evaluate import evaluate as evaluate_run
    from lstm_forecast.progress import FoldBar
    from lstm_forecast.report import evaluation_report

    run_dir = find_run(resolve_runs_dir(runs_dir, None), run, ticker)
    with FoldBar(stderr) as progress:
        evaluation = evaluate_run(run_dir, data_dir, folds, on_progress=progress.update)
    if json_output:
        print_json(evaluation.report)
    else:
        for item in evaluation_report(evaluation.report):
            stdout.print(item)
    if evaluation.interrupted:
        raise Interrupted(f"backtest interrupted; the evaluation of the finished folds was saved to {run_dir}")


@app.command()
def compare(
    ticker: TickerOption,
    models: Annotated[
        str, typer.Option("--models", metavar="LIST", help="Comma-separated model types: rnn, gru, lstm.")
    ] = "rnn,gru,lstm",
    config: ConfigOption = None,
    set_: SetOption = None,
    epochs: EpochsOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train each model type on identical data, windows and seed; one table, one loss-curve overlay."""
    from lstm_forecast import data
    from lstm_forecast.bundle import resolve_runs_dir
    from lstm_forecast.compare import compare_models, parse_models
    from lstm_forecast.config import load_config
    from lstm_forecast.model import check_trainable
    from lstm_forecast.report import compare_report
    from lstm_forecast.train import load_training_prices

    kinds = parse_models(models)
    settings = load_config(config, set_ or [], {"train.epochs": ("--epochs", epochs)})
    check_trainable(settings, kinds)
    symbol = data.validate_ticker(ticker)
    folder = data.resolve_data_dir(data_dir, settings.data.dir)
    runs = resolve_runs_dir(runs_dir, settings.runs.dir)
    prices = load_training_prices(symbol, folder, settings, on_fetch=stderr.print)
    from lstm_forecast.progress import EpochBars

    with EpochBars(stderr, [kind.upper() for kind in kinds], settings.train.epochs) as progress:
        comparison = compare_models(
            settings, symbol, prices, runs, kinds, on_epoch=lambda kind, record: progress.update(record, kind.upper())
        )
    if json_output:
        print_json(comparison.report)
    else:
        for item in compare_report(comparison.report):
            stdout.print(item)
    if comparison.interrupted:
        raise Interrupted(f"comparison interrupted; the models finished so far were saved to {comparison.compare_dir}")


def print_json(document: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout, nothing else there."""
    import json

    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def main() -> None:
    """Console-script entry point."""
    app()
