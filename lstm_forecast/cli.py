"""The command line: each command parses its options and calls one function, its module's `run`.

A command turns its options into values (the config they load, the model list, dates) and hands them to `run`
in lstm_forecast/commands/, which chooses between the command's forms (one ticker, a universe, a global model),
does the work and prints. Those modules import torch and pandas, so each command imports its own when it runs:
`lstm-forecast --help` answers at once. What every command shares (the consoles, one-line errors and warnings,
the stop request signals set, the group that turns a failure into its exit code) is in console.py.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from lstm_forecast import __version__
from lstm_forecast.console import ForecastCommand, ForecastGroup
from lstm_forecast.errors import UsageError

app = typer.Typer(
    cls=ForecastGroup,
    no_args_is_help=True,
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


# Numeric options that are not config keys are bounded here, at the boundary, as the config schema bounds
# the keys they stand beside (tests/test_cli.py checks they agree): a typo like `--folds 1000000000` is a
# usage error, not a 7 GiB allocation. Options that set a config key (--epochs, --seed) are checked by the
# schema itself, which names the option. The schema is not imported here, so that `--help` stays fast.
MAX_DAYS = 250  # window.horizon's bound
MAX_FOLDS = 50  # evaluate.folds's bound
MAX_LEVELS = 10  # predict.levels's bound
MAX_JOBS = 256  # train.threads's bound: more jobs than that is a typo
MAX_TRIALS = 100_000  # more than that is a typo, not a search
EXECUTORS = ("local", "ray")


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value[:40]!r} is not one of {', '.join(choices)}")
    return value


def _percent_levels(levels: list[float] | None) -> list[float] | None:
    """Each level strictly between 0 and 100, as predict.levels in the config (typer's ranges are closed)."""
    if levels is not None and len(levels) > MAX_LEVELS:
        raise typer.BadParameter(f"at most {MAX_LEVELS} levels, as predict.levels")
    for level in levels or ():
        if not 0 < level < 100:  # NaN fails this too
            raise typer.BadParameter(f"{level:g} is not a percentage between 0 and 100 (exclusive), e.g. 80")
    return levels


def _as_date(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def require_tickers(ctx: typer.Context, given: list[str] | None, tickers_file: Path | None, all_cached: bool) -> None:
    """No ticker at all: the usage error typer gives for a missing --ticker, as when the option was required."""
    if not (given or tickers_file or all_cached):
        raise UsageError(f"Missing option '--ticker' / '-t'. See '{ctx.command_path} --help'.")


# Options shared by several commands.
ISO_DAY = "%Y-%m-%d"
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", metavar="DIR", help="Price cache (default: $LSTM_FORECAST_DATA_DIR, data.dir, ./data)."),
]
# A str, not a Path: `./quick` (a file that is missing) must not become `quick` (a packaged config).
ConfigOption = Annotated[
    str | None, typer.Option("--config", "-c", metavar="FILE|NAME",
                             help="YAML config merged over the defaults, or a packaged one by name, e.g. quick "
                                  "(`config list`).")
]
TickersOption = Annotated[
    list[str] | None,
    typer.Option("--ticker", "-t", metavar="TICKER",
                 help="Ticker symbol, e.g. TSLA or ^GSPC; repeatable, or a comma list (TSLA,AAPL)."),
]
TickersFileOption = Annotated[
    Path | None,
    typer.Option("--tickers-file", exists=True, dir_okay=False, metavar="FILE",
                 help="Tickers, one per line (# comments), or a CSV with a ticker or symbol column."),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every ticker cached in the data dir.")]
JobsOption = Annotated[
    int, typer.Option("--jobs", "-j", min=1, max=MAX_JOBS, metavar="N",
                      help="Tickers trained at once in worker processes (threads per job: cores / N).")
]
ExecutorOption = Annotated[
    str, typer.Option("--executor", metavar="NAME", callback=lambda value: _one_of(value, EXECUTORS),
                      help="local (this machine) or ray (a Ray cluster; pip install 'lstm-forecast\\[ray]').")
]
RayAddressOption = Annotated[
    str | None, typer.Option("--ray-address", metavar="ADDR", help="Ray cluster to join (default: $RAY_ADDRESS, "
                             "else a local Ray instance for this command).")
]
ResumeOption = Annotated[
    Path | None, typer.Option("--resume", metavar="DIR", file_okay=False, exists=True,
                              help="Continue a universe (its _universe/ folder): skip tickers already trained "
                              "alike on the same data.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a config key, e.g. train.lr=0.0005 (repeatable)."),
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", metavar="DIR", help="Run bundles (default: $LSTM_FORECAST_RUNS_DIR, runs.dir, ./runs)."),
]
RunOption = Annotated[
    Path | None, typer.Option("--run", metavar="DIR", help="Run bundle (default: the newest run).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (progress on stderr).")]
ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", metavar="TYPE", help="lstm, gru or rnn (model.type).")
]
EpochsOption = Annotated[
    int | None, typer.Option("--epochs", metavar="N", help="Maximum epochs (train.epochs).")
]
ScopeOption = Annotated[
    str | None, typer.Option("--scope", metavar="SCOPE", help="local (a model per ticker) or global (one model "
                             "across all the tickers given) (model.scope).")
]
SeedsOption = Annotated[
    int | None, typer.Option("--seeds", metavar="N", help="A seed ensemble of N members, seeds train.seed … +N-1, "
                             "forecasts averaged (train.seeds).")
]


@app.command(cls=ForecastCommand)
def fetch(
    ctx: typer.Context,
    ticker: TickersOption = None,
    tickers_file: TickersFileOption = None,
    all_cached: AllOption = False,
    start: Annotated[datetime | None, typer.Option(formats=[ISO_DAY], metavar="DATE",
                                                   help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[datetime | None, typer.Option(formats=[ISO_DAY], metavar="DATE",
                                                 help="Last day, YYYY-MM-DD.")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Download the whole range again.")] = False,
    from_csv: Annotated[
        Path | None,
        # A file named on the command line that is not there is a usage error (exit 2), as for --config.
        typer.Option("--from-csv", exists=True, dir_okay=False, metavar="FILE",
                     help="Import a local Yahoo-layout CSV, no download."),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="With --from-csv: let the file's rows replace the "
                                                           "cache even where it lacks cached days.")] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Download daily prices from Yahoo Finance into the local cache (or import a CSV).

    Several tickers: one at a time, data.fetch_rate a second, rate limits waited out, each failure its own.

    Examples:
      lstm-forecast fetch -t TSLA,AAPL --start 2015-01-01
      lstm-forecast fetch -t TSLA --from-csv TSLA.csv"""
    from lstm_forecast.commands import fetch as command
    from lstm_forecast.config import load_config

    require_tickers(ctx, ticker, tickers_file, all_cached)
    command.run(load_config(config), given=ticker or [], tickers_file=tickers_file, all_cached=all_cached,
                data_dir=data_dir, start=_as_date(start), end=_as_date(end), refresh=refresh, from_csv=from_csv,
                json_output=json_output, replace=replace)


@app.command(cls=ForecastCommand)
def train(
    ctx: typer.Context,
    ticker: TickersOption = None,
    tickers_file: TickersFileOption = None,
    all_cached: AllOption = False,
    config: ConfigOption = None,
    set_: SetOption = None,
    model: ModelOption = None,
    epochs: EpochsOption = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="N", help="Random seed (train.seed).")] = None,
    device: Annotated[str | None, typer.Option("--device", metavar="DEVICE",
                                               help="auto, cpu, cuda or mps (train.device).")] = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    jobs: JobsOption = 1,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    resume: ResumeOption = None,
    scope: ScopeOption = None,
    seeds: SeedsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train a model on the cached prices and write a run bundle with metrics and a loss curve.

    Over two or more tickers each is its own run (same config and seed), judged as a set: Benjamini–Hochberg
    q-values, a pooled test, summary.csv and universe.png in the runs dir's _universe/ folder. With --scope
    global, one model is trained across all of them (per-ticker scalers, one calendar split) and judged per
    ticker and across the cross-section (rank IC, long–short); its bundle goes to the runs dir's _global/.

    Examples:
      lstm-forecast train -t TSLA --epochs 30 --set window.lookback=90
      lstm-forecast train --tickers-file sp500.txt --scope global --seeds 3"""
    from lstm_forecast.commands import train as command
    from lstm_forecast.config import load_config

    if resume is None:  # a universe folder records its tickers
        require_tickers(ctx, ticker, tickers_file, all_cached)
    shortcuts = {"model.type": ("--model", model), "train.epochs": ("--epochs", epochs),
                 "train.seed": ("--seed", seed), "train.device": ("--device", device),
                 "model.scope": ("--scope", scope), "train.seeds": ("--seeds", seeds)}
    command.run(load_config(config, set_ or [], shortcuts), given=ticker or [], tickers_file=tickers_file,
                all_cached=all_cached, data_dir=data_dir, runs_dir=runs_dir, jobs=jobs, executor=executor,
                ray_address=ray_address, resume=resume, json_output=json_output)


PredictTickersOption = Annotated[
    list[str] | None,
    typer.Option("--ticker", "-t", metavar="TICKER", help="Use this ticker's newest run; two or more (repeatable, "
                 "or a comma list) print one ranked table of next-session forecasts."),
]

@app.command(cls=ForecastCommand)
def predict(
    run: RunOption = None,
    ticker: PredictTickersOption = None,
    tickers_file: TickersFileOption = None,
    all_cached: AllOption = False,
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, max=MAX_DAYS, metavar="N",
                     help="Trading days to forecast, up to the run's horizon."),
    ] = None,
    levels: Annotated[
        list[float] | None,
        typer.Option("--level", metavar="PCT", callback=_percent_levels,
                     help="Interval level in percent, repeatable (default: 80 and 95)."),
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
    json_output: JsonOption = False,
) -> None:
    """Forecast the next trading sessions with prediction intervals, from cached prices (offline).

    Over two or more tickers: one table of next-session forecasts ranked by the move, each beside its run's own
    test skill (RMSE ratio to naive, DM p, Benjamini–Hochberg q across the tickers). --format, --output and
    --level apply to it; --days and --run do not, and no fan charts are drawn. Exit 1 if a ticker failed.
    A global run (--run, or the newest run) gives that table over its tickers; with --run, -t may name tickers it
    never trained on (a model without a ticker embedding forecasts them, flagged unseen).

    Examples:
      lstm-forecast predict -t TSLA --days 5 --level 90
      lstm-forecast predict -t TSLA,AAPL,MSFT --format csv -o screener.csv"""
    from lstm_forecast.commands import predict as command

    if json_output:  # --json is --format json, as every other command's --json prints one JSON object
        if output_format not in (None, "json"):
            raise UsageError(f"--json prints JSON; it cannot go with --format {output_format[:20]}")
        output_format = "json"
    command.run(run, given=ticker or [], tickers_file=tickers_file, all_cached=all_cached, days=days, levels=levels,
                output_format=output_format, output=output, refresh=refresh, data_dir=data_dir, runs_dir=runs_dir)


@app.command("runs", cls=ForecastCommand)
def list_runs(
    ticker: Annotated[
        list[str] | None,
        typer.Option("--ticker", "-t", metavar="TICKER", help="Only this ticker's runs; repeatable, or a comma list."),
    ] = None,
    tickers_file: TickersFileOption = None,
    runs_dir: RunsDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the run bundles, oldest first: id, ticker, model, epochs and test RMSE against naive.

    On a terminal the table fits its width (paths wrap; --json has every field whole).

    Examples:
      lstm-forecast runs -t TSLA
      lstm-forecast runs --json"""
    from lstm_forecast.commands import runs as command

    command.run(given=ticker or [], tickers_file=tickers_file, runs_dir=runs_dir, json_output=json_output)


FoldsOption = Annotated[
    int | None,
    typer.Option("--folds", min=0, max=MAX_FOLDS, metavar="N",
                 help="Walk-forward folds, 0 for none (default: evaluate.folds; a global run: none unless given)."),
]


RunTickersOption = Annotated[
    list[str] | None,
    typer.Option("--ticker", "-t", metavar="TICKER",
                 help="Use this ticker's newest run; repeatable, or a comma list, to judge a universe."),
]

@app.command(cls=ForecastCommand)
def evaluate(
    run: RunOption = None,
    ticker: RunTickersOption = None,
    tickers_file: TickersFileOption = None,
    all_cached: AllOption = False,
    folds: FoldsOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    without_context: Annotated[bool, typer.Option(
        "--without-context", help="Also train the run's model again without its context inputs (same rows, split "
        "and seed) and show what they bought, with the DM test between the two.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Judge a run beside the naive and drift forecasts: tests, lag copy, intervals, backtest, plots.

    Over two or more tickers, each one's newest run, then the set: Benjamini–Hochberg q-values, a pooled test.

    Examples:
      lstm-forecast evaluate -t TSLA --folds 5
      lstm-forecast evaluate --run runs/_global/20260105-093000 --folds 4
      lstm-forecast evaluate --run runs/TSLA/20260105-093000 --without-context"""
    from lstm_forecast.commands import evaluate as command

    command.run(run, given=ticker or [], tickers_file=tickers_file, all_cached=all_cached, folds=folds,
                data_dir=data_dir, runs_dir=runs_dir, without_context=without_context, json_output=json_output)


@app.command(cls=ForecastCommand)
def compare(
    ctx: typer.Context,
    ticker: TickersOption = None,
    tickers_file: TickersFileOption = None,
    all_cached: AllOption = False,
    models: Annotated[
        str, typer.Option("--models", metavar="LIST", help="Comma-separated model types: rnn, gru, lstm.")
    ] = "rnn,gru,lstm",
    config: ConfigOption = None,
    set_: SetOption = None,
    epochs: EpochsOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    scopes: Annotated[
        str | None, typer.Option("--scopes", metavar="LIST", help="local,global: a model per ticker against one "
                                 "global model on the same dates, over two or more tickers.")
    ] = None,
    context_runs: Annotated[
        str | None, typer.Option("--context", metavar="LIST", help="on,off: the model with its context inputs "
                                 "(data.context, data.calendar_features) against the same model without them, on "
                                 "identical rows and split, with the Diebold–Mariano test between the two.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Train each model type on identical data, windows and seed; one table, one loss-curve overlay.

    Over two or more tickers, one comparison each, one after another; a ticker that fails stops no other.
    With --scopes local,global: local models and one global model side by side on the same test windows.
    With --context on,off: the model with and without its context inputs, on the same rows and test windows.

    Examples:
      lstm-forecast compare -t TSLA --models gru,lstm --epochs 30
      lstm-forecast compare -t TSLA,AAPL,MSFT --scopes local,global"""
    from lstm_forecast.commands import compare as command
    from lstm_forecast.compare import parse_models
    from lstm_forecast.config import load_config

    kinds = parse_models(models)
    require_tickers(ctx, ticker, tickers_file, all_cached)
    settings = load_config(config, set_ or [], {"train.epochs": ("--epochs", epochs)})
    command.run(settings, models=models, kinds=kinds, given=ticker or [], tickers_file=tickers_file,
                all_cached=all_cached, data_dir=data_dir, runs_dir=runs_dir, scopes=scopes, context_runs=context_runs,
                json_output=json_output)


@app.command(cls=ForecastCommand)
def tune(
    ctx: typer.Context,
    ticker: TickersOption = None,
    tickers_file: TickersFileOption = None,
    all_cached: AllOption = False,
    config: ConfigOption = None,
    set_: SetOption = None,
    space: Annotated[
        Path | None, typer.Option("--space", exists=True, dir_okay=False, metavar="FILE",
                                  help="Search space YAML (default: the packaged one, `config show search`).")
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", "-n", min=1, max=MAX_TRIALS, metavar="N",
                                 help="Trials in the study in all; a resumed study runs the missing ones "
                                      "(default: 20, or none with --timeout).")
    ] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", min=1, max=10**7, metavar="SECONDS",
                                 help="Start no trial after this many seconds (the one running finishes).")
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", metavar="NAME", help="Study name; the same again resumes it "
                                 "(default: the tickers).")
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", metavar="URL", help="A database shared by many machines, e.g. "
                                 "postgresql://user:pw@host/db (default: a file in <runs-dir>/tune/<study>/).")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=MAX_JOBS, metavar="N",
                          help="Trials at once in worker processes sharing the study (threads: cores / N).")
    ] = 1,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, max=2**32 - 1, metavar="N",
                                 help="The sampler's seed (default: train.seed).")
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", metavar="h1|all", callback=lambda value: _one_of(value, ("h1", "all")),
                          help="Validation RMSE ratio to naive on day 1 (h1) or all horizon days.")
    ] = "h1",
    cv_folds: Annotated[
        int, typer.Option("--cv-folds", min=0, max=MAX_FOLDS, metavar="N",
                          help="Mean over N walk-forward folds before the test period (0: the validation period).")
    ] = 0,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search hyper-parameters with Optuna on the validation period, then score the best config once on the test.

    Trials are pruned on their validation loss; the study resumes under the same --study; --jobs N shares it
    between processes, --storage URL between machines. best.yaml, trials.csv and tune.png go to
    <runs-dir>/tune/<study>/; the best config is retrained into a normal run bundle and its test score printed
    beside naive, with the optimism of the validation figure stated.

    Examples:
      lstm-forecast tune -t TSLA --trials 50 --jobs 2
      lstm-forecast tune -t TSLA,AAPL --study nightly --timeout 3600"""
    from lstm_forecast.commands import tune as command
    from lstm_forecast.config import load_config

    require_tickers(ctx, ticker, tickers_file, all_cached)
    command.run(load_config(config, set_ or []), given=ticker or [], tickers_file=tickers_file,
                all_cached=all_cached, data_dir=data_dir, runs_dir=runs_dir, space=space, trials=trials,
                timeout=timeout, study=study, storage=storage, jobs=jobs, seed=seed, objective=objective,
                cv_folds=cv_folds, json_output=json_output)


config_app = typer.Typer(
    cls=ForecastGroup, no_args_is_help=True, rich_markup_mode="rich",
    help="The packaged configs: list them, or print one to copy and edit.",
)
app.add_typer(config_app, name="config")


@config_app.command("show", cls=ForecastCommand)
def config_show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A packaged config (`config list`).")] = "default",
    json_output: JsonOption = False,
) -> None:
    """Print a packaged config as shipped, to copy and edit: `config show quick > my.yaml`.

    With no NAME, `default`: every key with its default and what it means."""
    from lstm_forecast.commands import config as command

    command.show(name=name, json_output=json_output)


@config_app.command("list", cls=ForecastCommand)
def config_list(json_output: JsonOption = False) -> None:
    """Name the packaged configs, each with the first line of its comment; `--config NAME` uses one."""
    from lstm_forecast.commands import config as command

    command.list_configs(json_output=json_output)


def main() -> None:
    """Console-script entry point."""
    app()
