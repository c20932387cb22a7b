"""Run bundles: a self-contained directory per training run, loadable offline without the config file.

Layout (`<runs-dir>/<TICKER>/<run-id>/`): `bundle.json` (everything needed to rebuild the model
and its inputs), `model.safetensors`, `config.yaml` (resolved), `prices.csv` (the exact rows trained
on, so evaluation stays reproducible after the cache is revised), `history.csv`, `metrics.json`,
`loss_curve.png`. A bundle is written into a hidden temp directory and renamed into place only
when complete, so a crash leaves either a whole bundle or none. Loading never unpickles anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.torch
import torch
import yaml

from lstm_forecast import __version__
from lstm_forecast.config import Config, config_from_plain
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.files import TEMP_PREFIX, free_name, make_temp_dir, publish_dir
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.windows import Scaler, WindowSpec

FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
PRICES_FILE = "prices.csv"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"

RUNS_DIR_ENV = "LSTM_FORECAST_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
# Writing a bundle takes seconds; a temp dir this old belongs to a process that died.
STALE_TEMP_AGE_S = 3600


@dataclass
class RunBundle:
    """A loaded (or about to be saved) run: the model plus everything needed to use it honestly."""

    run_id: str
    ticker: str
    config: Config
    shape: ModelShape
    spec: WindowSpec
    scaler: Scaler
    fingerprint: dict[str, Any]  # ticker, first/last date, rows, sha256 of the rows trained on
    split: dict[str, str]  # first target day of the validation and test periods
    baselines: dict[str, float]  # train_mean_log_return (drift), train_naive_mae (MASE scale)
    calibration: dict[str, Any]  # conformal residuals per horizon step, from the validation split
    training: dict[str, Any]  # epochs run, best epoch, seconds, device, interrupted
    model: Forecaster
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    run_dir: Path | None = None

    def prices(self) -> pd.DataFrame:
        """The exact price rows the run was trained on (recorded in the bundle)."""
        from lstm_forecast.data import read_prices_csv

        path = self._path(PRICES_FILE)
        if not path.is_file():
            raise ForecastError(f"{path}: missing from the bundle; evaluate needs the recorded prices")
        prices, _ = read_prices_csv(path)
        return prices

    def _path(self, name: str) -> Path:
        if self.run_dir is None:
            raise ForecastError("this bundle has not been saved yet")
        return self.run_dir / name


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique enough: UTC time to the millisecond."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"


def save_bundle(
    bundle: RunBundle,
    runs_dir: Path,
    prices: pd.DataFrame,
    history: pd.DataFrame,
    metrics: dict[str, Any],
    write_extras: Any = None,
) -> Path:
    """Write the bundle into `<runs_dir>/<TICKER>/<run_id>/` atomically; returns the run directory.

    `write_extras(tmp_dir)` may add files (the loss-curve PNG) before the rename.
    """
    from lstm_forecast.data import cache_name, prices_to_csv

    ticker_dir = Path(runs_dir) / cache_name(bundle.ticker)
    tmp_dir = make_temp_dir(ticker_dir, "a run bundle")
    bundle.run_id = free_name(ticker_dir, bundle.run_id)
    final_dir = ticker_dir / bundle.run_id
    try:
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in bundle.model.state_dict().items()}
        (tmp_dir / WEIGHTS_FILE).write_bytes(safetensors.torch.save(weights))
        (tmp_dir / BUNDLE_FILE).write_text(_dumps(bundle_document(bundle)))
        (tmp_dir / CONFIG_FILE).write_text(yaml.safe_dump(bundle.config.to_plain(), sort_keys=False))
        (tmp_dir / PRICES_FILE).write_bytes(prices_to_csv(prices))
        history.to_csv(tmp_dir / HISTORY_FILE, index=False, lineterminator="\n")
        (tmp_dir / METRICS_FILE).write_text(_dumps(metrics))
        if write_extras is not None:
            write_extras(tmp_dir)
        publish_dir(tmp_dir, final_dir)
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        # An atomic write (the loss curve) wraps its OSError, naming the temp dir that is gone now.
        cause = exc.__cause__ if isinstance(exc, ForecastError) else exc
        if isinstance(cause, OSError):
            raise ForecastError(f"cannot write the run bundle {final_dir}: {cause.strerror or cause}") from None
        raise
    bundle.run_dir = final_dir
    return final_dir


def check_runs_dir_writable(runs_dir: Path, ticker: str) -> None:
    """Fail before training rather than after it when the bundle could not be written; leave no trace."""
    from lstm_forecast.data import cache_name

    ticker_dir = Path(runs_dir) / cache_name(ticker)
    created = [path for path in (ticker_dir, *ticker_dir.parents) if not path.exists()]  # deepest first
    try:
        make_temp_dir(ticker_dir, "a run bundle").rmdir()
    finally:
        for path in created:
            with contextlib.suppress(OSError):  # no longer empty: another run is being saved there
                path.rmdir()


def bundle_document(bundle: RunBundle) -> dict[str, Any]:
    """The plain-JSON description stored as bundle.json."""
    return {
        "format_version": FORMAT_VERSION,
        "run_id": bundle.run_id,
        "created_at": bundle.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "ticker": bundle.ticker,
        "model": bundle.shape.to_dict(),
        "window": bundle.spec.to_dict(),
        "scaler": bundle.scaler.to_dict(),
        "fingerprint": bundle.fingerprint,
        "split": bundle.split,
        "baselines": bundle.baselines,
        "calibration": bundle.calibration,
        "training": bundle.training,
        "versions": bundle.versions or library_versions(),
    }


def library_versions() -> dict[str, str]:
    return {
        "lstm_forecast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def load_bundle(run_dir: Path | str) -> RunBundle:
    """Load and check a bundle; any missing or corrupt file is a one-line error naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory (see `lstm-forecast runs`)")
    document = _read_json(run_dir / BUNDLE_FILE)
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        advice = "upgrade lstm-forecast to read it" if newer else "retrain to get a readable bundle"
        raise ForecastError(
            f"{run_dir / BUNDLE_FILE}: bundle format {version!r} is not supported "
            f"(this lstm-forecast reads format {FORMAT_VERSION}); {advice}"
        )
    path = run_dir / BUNDLE_FILE
    try:
        shape = ModelShape.from_dict(document["model"])
        spec = WindowSpec.from_dict(document["window"])
        scaler = Scaler.from_dict(document["scaler"])
        fingerprint = document["fingerprint"]
        for key in ("ticker", "first_date", "last_date", "rows", "sha256"):
            if key not in fingerprint:
                raise KeyError(f"fingerprint.{key}")
        run_id, ticker = str(document["run_id"]), str(document["ticker"])
        sections = {key: document[key] for key in ("split", "baselines", "calibration", "training")}
    except (KeyError, TypeError, ValueError) as exc:
        raise ForecastError(f"{path}: missing or invalid field {exc}; the bundle is damaged") from None
    _check_consistent(path, shape, spec, scaler)
    config_path = run_dir / CONFIG_FILE
    try:
        config_values = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ForecastError(f"{config_path}: missing from the bundle") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ForecastError(f"{config_path}: unreadable ({type(exc).__name__}); the bundle is damaged") from None
    config = config_from_plain(config_values if isinstance(config_values, dict) else {}, str(config_path))
    model = _load_model(run_dir / WEIGHTS_FILE, shape)
    return RunBundle(
        run_id=run_id,
        ticker=ticker,
        config=config,
        shape=shape,
        spec=spec,
        scaler=scaler,
        fingerprint=fingerprint,
        model=model,
        versions=document.get("versions", {}),
        created_at=str(document.get("created_at", "")),
        run_dir=run_dir,
        **sections,
    )


def _check_consistent(path: Path, shape: ModelShape, spec: WindowSpec, scaler: Scaler) -> None:
    """The model, the window and the scaler must describe the same inputs and horizon, or every
    forecast made with the bundle would be silently misaligned."""
    n_features = len(spec.features)
    sizes = {
        "model.n_features": (shape.n_features, n_features),
        "model.horizon": (shape.horizon, spec.horizon),
        "scaler.feature_mean": (len(scaler.feature_mean), n_features),
        "scaler.feature_std": (len(scaler.feature_std), n_features),
    }
    for key, (found, expected) in sizes.items():
        if found != expected:
            raise ForecastError(
                f"{path}: {key} is {found} but the window describes {expected}; the bundle is damaged"
            )


def _load_model(path: Path, shape: ModelShape) -> Forecaster:
    try:
        weights = safetensors.torch.load(path.read_bytes())
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing from the bundle") from None
    except Exception as exc:  # safetensors raises its own error type for truncated/garbled files
        raise ForecastError(f"{path}: corrupt weights file ({type(exc).__name__}); retrain the model") from None
    model = Forecaster(shape)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError:
        raise ForecastError(
            f"{path}: the weights do not fit the model described in bundle.json; the bundle is damaged"
        ) from None
    model.eval()
    return model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing; not a run bundle (see `lstm-forecast runs`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForecastError(f"{path}: not valid JSON ({type(exc).__name__}); the bundle is damaged") from None
    if not isinstance(document, dict):
        raise ForecastError(f"{path}: not a bundle description; the bundle is damaged")
    return document


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, allow_nan=False) + "\n"


# --- finding runs -------------------------------------------------------------------------------


def resolve_runs_dir(cli_dir: Path | str | None, config_dir: str | None) -> Path:
    """--runs-dir > $LSTM_FORECAST_RUNS_DIR > config runs.dir > ./runs."""
    chosen = cli_dir or os.environ.get(RUNS_DIR_ENV) or config_dir or DEFAULT_RUNS_DIR
    path = Path(chosen).expanduser()  # as for the data dir: a config or env value is not shell-expanded
    if path.exists() and not path.is_dir():
        raise UsageError(f"runs dir {path} is a file, not a folder")
    return path


def list_runs(runs_dir: Path, ticker: str | None = None) -> list[Path]:
    """Complete run bundles, oldest first (run ids sort by time); temp and compare dirs are skipped."""
    from lstm_forecast.data import cache_name

    if not runs_dir.is_dir():
        return []
    pattern = f"{cache_name(ticker)}/*/{BUNDLE_FILE}" if ticker else f"*/*/{BUNDLE_FILE}"
    runs = [
        path.parent
        for path in runs_dir.glob(pattern)
        if not path.parent.name.startswith((".", "compare-"))
    ]
    return sorted(runs, key=lambda run: (run.name, run.parent.name))


def find_run(runs_dir: Path, run: Path | None = None, ticker: str | None = None) -> Path:
    """`--run` as given, else the most recent run (of `ticker`, when given); never both."""
    from lstm_forecast.data import validate_ticker

    if run is not None and ticker is not None:
        raise UsageError("give --run or --ticker, not both (--run names one ticker's run already)")
    if run is not None:
        return Path(run)
    ticker = validate_ticker(ticker) if ticker is not None else None
    runs = list_runs(runs_dir, ticker)
    if not runs:
        which = f" for {ticker}" if ticker else ""
        raise ForecastError(
            f"no trained runs{which} in {runs_dir}; train one with `lstm-forecast train -t TICKER`"
        )
    return runs[-1]


def remove_stale_temp_dirs(runs_dir: Path, older_than_s: float = STALE_TEMP_AGE_S) -> None:
    """Remove half-written bundles left by a killed process (they were never renamed into place).

    Only old ones: a fresh temp dir may be another process's bundle being written right now.
    """
    if not runs_dir.is_dir():
        return
    cutoff = time.time() - older_than_s
    for path in runs_dir.glob(f"*/{TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path)
