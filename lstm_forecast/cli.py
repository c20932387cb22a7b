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

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class ForecastGroup(TyperGroup):
    """Runs a command and turns every failure into one `Error: ...` line and the guide's exit code."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
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
                hint = f" See '{context.command_path} --help'." if context is not None else ""
                code = fail(f"{exc.format_message()}{hint}", exc.exit_code)
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
        Path | None, typer.Option("--from-csv", help="Import a local Yahoo-layout CSV, no download.")
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
        summary = data.import_csv(from_csv, folder, symbol)
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
    from lstm_forecast.train import load_training_prices, train_run

    shortcuts = {"model.type": model, "train.epochs": epochs, "train.seed": seed, "train.device": device}
    overrides = [*(set_ or []), *(f"{key}={value}" for key, value in shortcuts.items() if value is not None)]
    settings = load_config(config, overrides)
    symbol = data.validate_ticker(ticker)
    folder = data.resolve_data_dir(data_dir, settings.data.dir)
    runs = resolve_runs_dir(runs_dir, settings.runs.dir)
    prices = load_training_prices(symbol, folder, settings, on_fetch=stderr.print)
    with EpochProgress(settings.train.epochs, f"{symbol} {settings.model.type.upper()}") as progress:
        outcome = train_run(settings, symbol, prices, runs, on_epoch=progress.update)
    if json_output:
        print_json({"run_dir": str(outcome.run_dir), **outcome.metrics})
    else:
        print_training_summary(outcome)
    if outcome.result.interrupted:
        raise Interrupted(f"training interrupted; the best epoch so far was saved to {outcome.run_dir}")


class EpochProgress:
    """A rich progress bar over epochs on stderr: epoch, losses, best epoch and elapsed time."""

    def __init__(self, epochs: int, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("train {task.fields[train]} · val {task.fields[val]} · best {task.fields[best]}"),
            TimeElapsedColumn(),
            console=stderr,
            transient=False,
        )
        self.task = self.progress.add_task(label, total=epochs, train="—", val="—", best="—")

    def __enter__(self) -> EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, record: Any) -> None:
        self.progress.update(
            self.task,
            completed=record.epoch,
            train=f"{record.train_loss:.4f}",
            val=f"{record.val_loss:.4f}",
            best=f"{record.best_epoch} ({record.best_val_loss:.4f})",
        )


def print_training_summary(outcome: Any) -> None:
    from lstm_forecast.report import significance_line, split_table

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
        stdout.print(split_table(f"{title}: {period}", split_scores, horizon))
        stdout.print(significance_line(split_scores))
    stdout.print(f"Run bundle: {outcome.run_dir}")


def print_json(document: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout, nothing else there."""
    import json

    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def main() -> None:
    """Console-script entry point."""
    app()
