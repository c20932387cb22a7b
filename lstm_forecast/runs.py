"""`runs`: the run bundles in a runs dir, oldest first, one row each: what was trained, how it scored.

Rows come from the bundles' JSON and YAML files only, each read with a size limit, so a damaged bundle
(garbage, deep nesting, huge numbers, missing files) lists as damaged, with None where a value cannot be read,
and never stops the listing. Local runs and global runs list side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.markup import escape
from rich.text import Text

from lstm_forecast import data
from lstm_forecast.bundle import (
    BUNDLE_FILE,
    BUNDLE_JSON_LIMIT,
    CONFIG_FILE,
    GLOBAL_FILE,
    METRICS_FILE,
    list_global_runs,
    list_runs,
    resolve_runs_dir,
)
from lstm_forecast.config import Config, read_yaml_mapping
from lstm_forecast.errors import ForecastError, shorten
from lstm_forecast.files import read_bounded
from lstm_forecast.tables import FitTable

CONFIG_NOTE_LIMIT = 60  # characters of distinguishing config values in the listing


def run_summaries(
    runs_dir: Path | None = None, ticker: str | None = None
) -> tuple[Path, list[dict[str, Any]]]:
    """The runs dir and one row per run bundle in it, oldest first (the last is the one `predict` uses).

    Rows come from the bundles' JSON and YAML files only, each read with a size limit, so a damaged bundle
    (garbage, deep nesting, huge numbers, missing files) lists as damaged, with None where a value cannot
    be read, and never stops the listing.
    """
    folder = resolve_runs_dir(runs_dir, None)
    symbol = data.validate_ticker(ticker) if ticker is not None else None
    runs = list_runs(folder, symbol) + (list_global_runs(folder) if symbol is None else [])
    return folder, [run_row(run_dir) for run_dir in runs]


def run_row(run_dir: Path) -> dict[str, Any]:
    """One `runs` row, from a run's JSON and YAML files: a global run's ticker column counts its tickers and its
    ratio is the pooled test RMSE ratio on log prices; a seed ensemble's epochs are its first member's."""
    one = (run_dir / BUNDLE_FILE).is_file()
    document = read_json_or_empty(run_dir / (BUNDLE_FILE if one else GLOBAL_FILE))
    training = document.get("training")
    members = [training] if one else training if isinstance(training, list) else []
    first = members[0] if members and isinstance(members[0], dict) else {}
    flags = [member.get("interrupted") for member in members if isinstance(member, dict)]
    interrupted = any(flags) if flags and all(isinstance(flag, bool) for flag in flags) else None  # None: unread
    tickers = document.get("tickers")
    count = len(tickers) if isinstance(tickers, list) else None
    if one:
        ticker, ratio = _text(document.get("ticker")), scores_on_test(run_dir)[0]
    else:
        ticker = f"global ({count} tickers)" if count else None
        ratio = _ratio(_dig(read_json_or_empty(run_dir / METRICS_FILE), "pooled_ratio", "rmse_ratio_all"))
    return {
        "run_id": run_dir.name, "ticker": ticker, "model": _text(_dig(document, "model", "kind")),
        "created": _text(document.get("created_at")), "epochs": _count(first.get("epochs_run")),
        "test_rmse_ratio": ratio,
        "interrupted": interrupted,
        "evaluated": (run_dir / "evaluation.json").is_file(),
        # A walk-forward backtest stopped by Ctrl-C: the evaluation is there, but not whole.
        "evaluation_interrupted": _dig(read_json_or_empty(run_dir / "evaluation.json"), "backtest", "interrupted")
        is True,
        "config": config_differences(run_dir / CONFIG_FILE),
        "damaged": not (ticker and _dig(document, "model", "kind")), "path": str(run_dir),
    }


def global_runs_by_ticker(runs_dir: Path) -> dict[str, list[Path]]:
    """Each ticker's global runs, oldest first, by the tickers their global.json lists (an unreadable one lists
    none)."""
    held: dict[str, list[Path]] = {}
    for run_dir in list_global_runs(runs_dir):
        for record in read_json_or_empty(run_dir / GLOBAL_FILE).get("tickers") or []:
            if isinstance(record, dict) and isinstance(record.get("ticker"), str):
                held.setdefault(record["ticker"], []).append(run_dir)
    return held


def scores_on_test(run_dir: Path) -> tuple[float | None, float | None]:
    """The run's test RMSE ratio to naive (all days) and its Diebold–Mariano p-value, from metrics.json; None
    where a value cannot be read."""
    scores = read_json_or_empty(run_dir / "metrics.json")
    # metrics.json before the one scores layout had the forecasts beside the period's keys.
    ratio = _dig(scores, "test", "metrics", "model", "all", "rmse_ratio") or _dig(scores, "test", "model", "all",
                                                                                 "rmse_ratio")
    return score_pair(ratio, _dig(scores, "test", "vs_naive", "dm_all", "pvalue"))


def newest_local_scores(runs_dir: Path) -> dict[str, tuple[float | None, float | None]]:
    """The test RMSE ratio and DM p-value of every ticker's newest own run in the runs dir whose bundle.json reads
    (a universe's runs among them): the tests a local run's q-value is judged among."""
    newest = {run_dir.parent: run_dir for run_dir in list_runs(runs_dir)}  # oldest first: the last one stays
    scores = {}
    for folder, run_dir in newest.items():
        ticker = read_json_or_empty(run_dir / BUNDLE_FILE).get("ticker")
        # Only where `list_runs(runs_dir, ticker)` finds it: the run predict uses for that ticker.
        if isinstance(ticker, str) and data.cache_name(ticker) == folder.name:
            scores[ticker] = scores_on_test(run_dir)
    return scores


def recorded_tests(per_ticker: Any) -> dict[str, tuple[float | None, float | None, float | None]]:
    """Each ticker's test RMSE ratio, DM p-value and Benjamini–Hochberg q-value as a set report wrote them (a global
    run's metrics.json `per_ticker`, or its out-of-universe summary.json); None where a value cannot be read."""
    rows = per_ticker.get("rows") if isinstance(per_ticker, dict) else None
    return {row["ticker"]: (*score_pair(row.get("rmse_ratio_all"), row.get("dm_pvalue")),
                            score_pair(None, row.get("bh_qvalue"))[1])
            for row in rows or [] if isinstance(row, dict) and isinstance(row.get("ticker"), str)}


def score_pair(ratio: Any, pvalue: Any) -> tuple[float | None, float | None]:
    """An RMSE ratio and a p-value as read from a file: a finite number, and one between 0 and 1, or None."""
    pvalue = _ratio(pvalue)
    return _ratio(ratio), pvalue if pvalue is not None and 0 <= pvalue <= 1 else None


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON object from a regular file of bundle size, else {} (absent or damaged: `runs` lists it anyway)."""
    try:
        document = json.loads(read_bounded(path, BUNDLE_JSON_LIMIT, "a bundle's JSON file"))
    except (ForecastError, OSError, ValueError, RecursionError, MemoryError):  # ValueError: JSON, UTF-8, digits
        return {}
    return document if isinstance(document, dict) else {}


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


def _text(value: Any) -> str | None:
    return shorten(value, 80) if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else None


def _ratio(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _dig(document: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


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
