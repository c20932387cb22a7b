"""`runs`: the run bundles in a runs dir, oldest first, one row each: what was trained, how it scored; and how
every file a run holds is read back.

A run's files are the tool's own, but they are never trusted when read back: `read_record` reads each JSON file
bounded (regular files only, a size limit, a memory check) and validates it against its schema (`RunHead`,
`RunMetrics`, `RunEvaluation`, sets.SetSummary), `read_history` does the same for history.csv. `runs`, the
screener's families and `--resume` all read through them, so a damaged run (garbage, deep nesting, huge
numbers, values out of range, a FIFO or device) lists as damaged, with the reason, and never stops a listing.
Local runs and global runs list side by side.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich import box
from rich.markup import escape
from rich.text import Text

from lstm_forecast import data
from lstm_forecast.bundle import (
    BUNDLE_FILE,
    BUNDLE_JSON_LIMIT,
    CONFIG_FILE,
    GLOBAL_FILE,
    HISTORY_FILE,
    MAX_TICKERS,
    METRICS_FILE,
    OUT_OF_UNIVERSE_DIR,
    check_json_memory,
    describe_damage,
    list_global_runs,
    list_runs,
    resolve_runs_dir,
)
from lstm_forecast.config import Config, read_yaml_mapping
from lstm_forecast.errors import ForecastError, shorten
from lstm_forecast.files import read_bounded
from lstm_forecast.sets import SUMMARY_JSON, Family, Probability, Ratio, SetSummary, adjusted_family
from lstm_forecast.tables import FitTable

CONFIG_NOTE_LIMIT = 60  # characters of distinguishing config values in the listing
EVALUATION_FILE = "evaluation.json"
# metrics.json, evaluation.json, summary.json: scores, a row per ticker and a backtest's folds, far below a bundle's
# JSON limit; a file larger than a bundle description is not one this tool wrote.
READBACK_LIMIT = BUNDLE_JSON_LIMIT
RecordT = TypeVar("RecordT", bound=BaseModel)
RUNS_DIR_FAMILY = "runs dir"  # a local run's q-value is over every ticker's newest own run in the runs dir
# An unseen ticker's q-value is over every ticker its global run was evaluated on out of universe (+ the run's id).
OUT_OF_UNIVERSE_FAMILY = "out-of-universe evaluation of global run"
# history.csv: a line of a few dozen bytes per epoch and seed; 100,000 epochs (config's most) of 20 seeds would be
# more, but no run that long is compared, and a file past this is not read whole into a DataFrame.
HISTORY_LIMIT = 64 << 20
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss")
MAX_HISTORY_EPOCH = 100_000  # train.epochs' bound


# --- what a run's files are read back as ----------------------------------------------------------------
# Each schema names only the fields a command reads (newer writers may record more: extra keys are ignored), each
# with its type and range, so a hostile or damaged value is refused by `read_record` before anything uses it.


class ReadBack(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=True)


ShortText = Annotated[str, Field(max_length=200)]
Statistic = Annotated[float, Field(ge=-1e6, le=1e6)] | None


class TrainingHead(ReadBack):
    epochs_run: Annotated[int, Field(ge=0, le=10**9)] | None = None
    interrupted: bool | None = None


class ModelHead(ReadBack):
    kind: ShortText


class TickerHead(ReadBack):
    ticker: Annotated[str, Field(min_length=1, max_length=64)]


class FingerprintHead(ReadBack):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RunHead(ReadBack):
    """bundle.json or global.json as `runs`, the screener, `--resume` and tune's reuse read them (bundle.py
    validates the whole document when a run is loaded)."""

    ticker: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    created_at: ShortText | None = None
    model: ModelHead | None = None
    training: TrainingHead | Annotated[list[TrainingHead], Field(max_length=100)] | None = None  # global: a list
    tickers: Annotated[list[TickerHead], Field(max_length=MAX_TICKERS)] = []
    config_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    fingerprint: FingerprintHead | None = None  # one ticker's rows trained on
    context_fingerprints: Annotated[list[FingerprintHead], Field(max_length=100)] | None = None

    def members(self) -> list[TrainingHead]:
        return [self.training] if isinstance(self.training, TrainingHead) else self.training or []


class RatioScore(ReadBack):
    rmse_ratio: Ratio = None


class HorizonScores(ReadBack):
    all: RatioScore = RatioScore()


class ForecasterScores(ReadBack):
    model: HorizonScores = HorizonScores()


class PValue(ReadBack):
    pvalue: Probability = None


class VersusNaive(ReadBack):
    dm_all: PValue = PValue()


class PeriodScores(ReadBack):
    metrics: ForecasterScores | None = None
    model: HorizonScores | None = None  # metrics.json before the one scores layout: beside the period's keys
    vs_naive: VersusNaive = VersusNaive()


class PooledRatio(ReadBack):
    rmse_ratio_all: Ratio = None


class RankIC(ReadBack):
    mean: Statistic = None
    t: Statistic = None
    days: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


class ForecastersIC(ReadBack):
    model: RankIC | None = None


class CrossSection(ReadBack):
    ic: ForecastersIC | None = None


class RunMetrics(ReadBack):
    """metrics.json of either kind of run: a ticker's test scores, or a global run's pooled ratio, its tickers'
    set report and the cross-section's rank IC."""

    test: PeriodScores = PeriodScores()
    pooled_ratio: PooledRatio | None = None
    per_ticker: SetSummary | None = None
    cross_section: CrossSection | None = None

    def test_scores(self) -> tuple[float | None, float | None]:
        """The test RMSE ratio to naive (all days) and its DM p-value (None where not recorded)."""
        scores = self.test.metrics.model if self.test.metrics is not None else self.test.model
        return (scores.all.rmse_ratio if scores is not None else None), self.test.vs_naive.dm_all.pvalue


class BacktestHead(ReadBack):
    interrupted: bool = False


class RunEvaluation(ReadBack):
    """evaluation.json as `runs` reads it: whether its walk-forward backtest was stopped by Ctrl-C."""

    backtest: BacktestHead | None = None


def run_summaries(
    runs_dir: Path | None = None, ticker: str | None = None
) -> tuple[Path, list[dict[str, Any]]]:
    """The runs dir and one row per run bundle in it, oldest first (the last is the one `predict` uses); a damaged
    run is a row marked damaged (`run_row`)."""
    folder = resolve_runs_dir(runs_dir, None)
    symbol = data.validate_ticker(ticker) if ticker is not None else None
    runs = list_runs(folder, symbol) + (list_global_runs(folder) if symbol is None else [])
    return folder, [run_row(run_dir) for run_dir in runs]


def run_row(run_dir: Path) -> dict[str, Any]:
    """One `runs` row, from a run's files read back through their schemas: a global run's ticker column counts its
    tickers and its ratio is the pooled test RMSE ratio on log prices; a seed ensemble's epochs are its first
    member's. A file that breaks its schema makes the row damaged (`damage` says which and why), never the
    listing fail."""
    one = (run_dir / BUNDLE_FILE).is_file()
    head, head_damage = checked_record(run_dir / (BUNDLE_FILE if one else GLOBAL_FILE), RunHead)
    metrics, metrics_damage = checked_record(run_dir / METRICS_FILE, RunMetrics)
    evaluation, evaluation_damage = checked_record(run_dir / EVALUATION_FILE, RunEvaluation)
    head = head or RunHead()
    members = head.members()
    flags = [member.interrupted for member in members]
    interrupted = any(flags) if flags and None not in flags else None  # None: unread
    if one:
        ticker, ratio = head.ticker, (metrics or RunMetrics()).test_scores()[0]
    else:
        ticker = f"global ({len(head.tickers)} tickers)" if head.tickers else None
        ratio = metrics.pooled_ratio.rmse_ratio_all if metrics and metrics.pooled_ratio else None
    damage = head_damage or metrics_damage or evaluation_damage
    if damage is None and not (ticker and head.model):
        damage = f"{run_dir / (BUNDLE_FILE if one else GLOBAL_FILE)}: no ticker or model recorded"
    return {
        "run_id": run_dir.name, "ticker": ticker, "model": head.model.kind if head.model else None,
        "created": head.created_at, "epochs": members[0].epochs_run if members else None,
        "test_rmse_ratio": ratio,
        "interrupted": interrupted,
        "evaluated": evaluation is not None,
        # A walk-forward backtest stopped by Ctrl-C: the evaluation is there, but not whole.
        "evaluation_interrupted": bool(evaluation and evaluation.backtest and evaluation.backtest.interrupted),
        "config": config_differences(run_dir / CONFIG_FILE),
        "damaged": damage is not None, "damage": damage, "path": str(run_dir),
    }


def global_runs_by_ticker(runs_dir: Path) -> dict[str, list[Path]]:
    """Each ticker's global runs, oldest first, by the tickers their global.json lists (a damaged one lists
    none)."""
    held: dict[str, list[Path]] = {}
    for run_dir in list_global_runs(runs_dir):
        head = checked_record(run_dir / GLOBAL_FILE, RunHead)[0]
        for record in head.tickers if head is not None else []:
            held.setdefault(record.ticker, []).append(run_dir)
    return held


def newest_local_scores(runs_dir: Path) -> tuple[dict[str, tuple[float | None, float | None]], dict[str, str]]:
    """The test RMSE ratio and DM p-value of every ticker's newest own run in the runs dir whose bundle.json reads
    (a universe's runs among them): the tests a local run's q-value is judged among; and the tickers whose
    metrics.json is damaged, with why (untested here)."""
    newest = {run_dir.parent: run_dir for run_dir in list_runs(runs_dir)}  # oldest first: the last one stays
    scores, damaged = {}, {}
    for folder, run_dir in newest.items():
        head = checked_record(run_dir / BUNDLE_FILE, RunHead)[0]
        # Only where `list_runs(runs_dir, ticker)` finds it: the run predict uses for that ticker.
        if head is None or head.ticker is None or data.cache_name(head.ticker) != folder.name:
            continue
        metrics, damage = checked_record(run_dir / METRICS_FILE, RunMetrics)
        scores[head.ticker] = metrics.test_scores() if metrics is not None else (None, None)
        if damage is not None:
            damaged[head.ticker] = damage
    return scores, damaged


def runs_dir_family(runs_dir: Path, made_now: Mapping[str, tuple[float | None, float | None]] | None = None
                    ) -> Family:
    """The family a ticker's own run is judged in: every ticker's newest own run in the runs dir with a test DM
    p-value (`newest_local_scores`), listed by a command or not; `made_now` (ticker -> test RMSE ratio, DM p)
    stands for those tickers' recorded scores, as a fresh evaluation of their newest runs."""
    scores, damaged = newest_local_scores(runs_dir)
    made_now = made_now or {}
    return adjusted_family(RUNS_DIR_FAMILY, scores | made_now,
                           {ticker: why for ticker, why in damaged.items() if ticker not in made_now})


def earlier_out_of_universe(run_dir: Path, now: Collection[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The summary rows of every ticker the global run in `run_dir` was evaluated on out of universe before, but
    for those in `now` (evaluated again: their new rows replace these), from out_of_universe/summary.json, which
    keeps each one's newest evaluation, read back through its schema; a damaged summary gives no rows, and
    {its path: why}."""
    path = run_dir / OUT_OF_UNIVERSE_DIR / SUMMARY_JSON
    summary, damage = checked_record(path, SetSummary)
    if summary is None:
        return [], {str(path): damage} if damage is not None else {}
    return [row.model_dump() for row in summary.rows if row.ticker not in now], {}


def read_record(path: Path, schema: type[RecordT], limit: int = READBACK_LIMIT) -> RecordT:
    """A JSON file this tool wrote earlier, read back bounded (a regular file of at most `limit` bytes, and only
    when parsing it fits in memory) and validated against `schema`; anything else is one ForecastError naming
    the file and the damage. FileNotFoundError passes through: what a missing file means is the caller's."""
    what = f"a {path.name} this tool wrote"
    raw = read_bounded(path, limit, what)
    check_json_memory(path, len(raw))
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        raise ForecastError(f"{path}: damaged, not {what} ({describe_damage(exc)})") from None


def read_history(run_dir: Path) -> pd.DataFrame:
    """A run's history.csv read back bounded and checked: HISTORY_COLUMNS (and a global run's `seed`), numbers,
    no infinity, epochs counted from 1; anything else is one ForecastError "damaged run <dir>: …"."""
    path = run_dir / HISTORY_FILE
    try:
        history = pd.read_csv(io.BytesIO(read_bounded(path, HISTORY_LIMIT, "a run's loss history")))
        # As floats: a cell of 400 digits overflows here (and is damage), not later in a plot or a table.
        values = history[list(HISTORY_COLUMNS)].apply(pd.to_numeric, errors="raise").astype(float)
    except FileNotFoundError:
        raise ForecastError(f"damaged run {run_dir}: {HISTORY_FILE} is missing") from None
    except ForecastError as exc:
        raise ForecastError(f"damaged run {run_dir}: {exc}") from None
    except (ValueError, KeyError, OverflowError, pd.errors.ParserError) as exc:  # ValueError: UTF-8, a text cell
        raise ForecastError(f"damaged run {run_dir}: {HISTORY_FILE} is not a loss history this tool wrote "
                            f"({type(exc).__name__})") from None
    epochs = values["epoch"].to_numpy()
    whole = (epochs >= 1) & (epochs <= MAX_HISTORY_EPOCH) & (epochs == np.floor(epochs))
    if values.empty or np.isinf(values.to_numpy()).any() or not whole.all() or (
            "seed" in history and not pd.api.types.is_integer_dtype(history["seed"])):
        raise ForecastError(f"damaged run {run_dir}: {HISTORY_FILE} holds no epochs, or values out of range")
    return history.assign(**values.astype({"epoch": int}))  # the checked numbers, other columns as written


def checked_record(path: Path, schema: type[RecordT]) -> tuple[RecordT | None, str | None]:
    """`read_record` for a command that goes on past damage: the record, or None with why (None when the file is
    simply absent)."""
    try:
        return read_record(path, schema), None
    except FileNotFoundError:
        return None, None
    except ForecastError as exc:
        return None, str(exc)


def config_differences(path: Path) -> dict[str, str] | None:
    """The run's config keys that differ from the defaults ({"model.hidden_size": "8"}), None if unreadable."""
    try:
        values = read_yaml_mapping(path)  # bounded: size, aliases, nesting
    except (ForecastError, OSError, ValueError, RecursionError, MemoryError):
        return None
    defaults = Config().to_plain()
    differences = {}
    for section, keys in values.items():
        if not isinstance(keys, dict) or not isinstance(defaults.get(section), dict):
            continue
        for key, value in keys.items():
            if key in defaults[section] and value != defaults[section][key]:
                differences[f"{section}.{key}"] = shorten(json.dumps(value, default=str), 24)
    return differences


def config_note(differences: dict[str, str] | None) -> str | None:
    """"hidden_size=8 epochs=3" from the differing keys, shortened to CONFIG_NOTE_LIMIT characters."""
    if differences is None:
        return None
    if not differences:
        return "defaults"
    # The key's last part is enough to tell runs apart; data.dir and runs.dir are where, not what.
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in differences.items()
             if key not in ("data.dir", "runs.dir")]
    return shorten(" ".join(parts), CONFIG_NOTE_LIMIT) if parts else "defaults"


def runs_table(rows: list[dict[str, Any]], root: Path | None = None) -> Any:
    """The `runs` listing as a rich table; a dash where a damaged bundle has no value. Given the runs dir `root`,
    the title names it and each path is shown from there (`TSLA/<run id>`, `_global/<run id>`)."""
    where = f" in {escape(str(root))}" if root is not None else ""
    title = (f"Run bundles{where}, oldest first (predict and evaluate use the newest); ratio: test RMSE / "
             "naive's")
    # Light lines. An id, a date, a number or a path is never cut or folded (a path is copied from here); the
    # state and the config wrap to the terminal's width, and a narrow one leaves out the least needed columns,
    # the path last (--json has every field).
    table = FitTable(title=title, box=box.SIMPLE_HEAD,
                     optional=("config", "created (UTC)", "model", "epochs", "path"))
    columns = ("run id", "ticker", "model", "created (UTC)", "epochs", "ratio", "state", "config", "path")
    for name in columns:
        table.add_column(name, justify="right" if name in ("epochs", "ratio") else "left",
                         no_wrap=name not in ("state", "config"))
    for row in rows:
        created, ratio = row["created"], row["test_rmse_ratio"]
        if row["damaged"]:
            state = "damaged"
        else:
            evaluated = ("evaluated (backtest interrupted)" if row["evaluation_interrupted"] else "evaluated"
                         ) if row["evaluated"] else "not evaluated"
            state = ", ".join(["interrupted"] * bool(row["interrupted"]) + [evaluated])
        cells = (
            row["run_id"],
            row["ticker"],
            row["model"],
            created[:16].replace("T", " ") if isinstance(created, str) else None,
            row["epochs"],
            f"{ratio:.3f}" if ratio is not None else None,
            state,
            config_note(row["config"]),
            _shown_path(row["path"], root),
        )
        # Text, not markup: a damaged bundle's "ticker" could hold brackets rich would try to read.
        table.add_row(*(Text("—" if cell is None else str(cell)) for cell in cells),
                      style="red" if row["damaged"] else None)
    return table


def _shown_path(path: str, root: Path | None) -> str:
    """A run's folder from the runs dir when it lies there (the title names that dir), else as it is."""
    if root is None or not Path(path).is_relative_to(root):
        return path
    return str(Path(path).relative_to(root))
