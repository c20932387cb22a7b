"""Run bundles: a self-contained directory per training run, loadable offline without the config file.

Layout (`<runs-dir>/<TICKER>/<run-id>/`): `bundle.json` (everything needed to rebuild the model
and its inputs), `model.safetensors`, `config.yaml` (resolved), `prices.csv` (the exact rows trained
on, so evaluation stays reproducible after the cache is revised), `history.csv`, `metrics.json`,
`loss_curve.png`. A bundle is written into a hidden temp directory and renamed into place only
when complete, so a crash leaves either a whole bundle or none. Loading never unpickles anything.

bundle.json has one schema, `BundleDocument`: the writer builds one and dumps it, so nothing the reader
would refuse is ever written. Loading trusts nothing: every file is read with a size limit, bundle.json is
validated against the schema (types, ranges, finite numbers, dates, positive scales, residual counts, model,
window and scaler agreeing; then the ticker's format) and `ModelShape`, `WindowSpec` and `Scaler` are built
from its records, and the weights' names, shapes and dtype (float32) are checked against the declared model
before the module is built. A damaged bundle is always a run-time error (exit 1) naming the file and what is
wrong. Format 1 grows only by optional fields, absent in older bundles: `config_hash` (`config.config_hash`:
the run's settings that decide its weights; None when absent), `fingerprints` (every series trained on,
in order; `[fingerprint]` for one ticker, and when absent), the window's context inputs and calendar features
(none when absent) and `context_fingerprints`, one per context series, whose recorded rows are
`context/<TICKER>.csv`; the window's `target` gained values only (a global run's excess and rank, forecasts in
log-return units like log_return's), so an older bundle reads as it was written.

A run over several tickers (a global run) has its own layout, `<runs-dir>/_global/<run-id>/` (no ticker starts with
"_", so it never collides with a ticker's runs): `global.json` (the model, the window, the common split and, per
ticker, its scaler, fingerprint, training statistics and validation residuals for its conformal intervals),
`model.safetensors` (every member's weights, named `member<i>.<tensor>`), `config.yaml`, `prices.zip` (each
ticker's exact rows as a deflated CSV; with context inputs, also each context series' rows read by any ticker, as
`context/<TICKER>.csv`, fingerprinted in global.json's `context_fingerprints`), `history.csv`, `metrics.json` and
`loss_curve.png`, written and loaded as safely. `load_run` reads either layout, and is the one place that looks
which it is.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import safetensors.torch
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from lstm_forecast import __version__
from lstm_forecast.config import (
    CONFIG_SIZE_LIMIT,
    MAX_CONTEXT,
    MAX_SEED,
    MAX_THREADS,
    CalendarFeature,
    Config,
    ContextFeature,
    Date,
    Feature,
    ModelConfig,
    RefusedYAML,
    WindowConfig,
    config_from_plain,
    load_yaml,
    thread_schedule_problem,
)
from lstm_forecast.context import CALENDAR_COLUMNS, ContextSeries, cached_context
from lstm_forecast.data import cache_name, validate_ticker
from lstm_forecast.errors import ForecastError, StopRequest, UsageError, quote
from lstm_forecast.files import (
    TEMP_PREFIX,
    is_our_temp_dir,
    json_text,
    make_temp_dir,
    publish_as_free_name,
    read_bounded,
)
from lstm_forecast.model import Ensemble, Forecaster, ModelShape, ensemble_of, gib, members_of, memory_limit
from lstm_forecast.prices import parse_prices_csv, prices_sha256, prices_to_csv, read_prices_csv
from lstm_forecast.windows import Scaler, WindowSpec

FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
PRICES_FILE = "prices.csv"
CONTEXT_DIR = "context"  # context/<TICKER>.csv: the rows of each context series the run read
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
# A run over several tickers: `<runs-dir>/_global/<run-id>/global.json` (below; no ticker starts with "_").
GLOBAL_DIR = "_global"
GLOBAL_FILE = "global.json"
OUT_OF_UNIVERSE_DIR = "out_of_universe"  # a global run's evaluation on tickers it never trained on

RUNS_DIR_ENV = "LSTM_FORECAST_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
# Writing a bundle takes seconds; a temp dir this old belongs to a process that died.
STALE_TEMP_AGE_S = 3600
# bundle.json holds a few residual lists: kilobytes, megabytes for a long horizon on decades of data.
BUNDLE_JSON_LIMIT = 32 << 20
# Memory a JSON document takes parsed, validated and dumped again, per byte of its text: measured 6.6x for 52 MB
# of ten-character residuals (each a float object and a list slot); shorter numbers take more per byte.
JSON_MEMORY_FACTOR = 16
# model.safetensors: the tensors the declared shape implies plus a JSON header of a few hundred bytes.
WEIGHTS_HEADER_LIMIT = 1 << 20
# A global model's universe: the largest index has a few thousand members.
MAX_TICKERS = 100_000
# Input columns per day at most: every own feature, every context input, every calendar column.
MAX_INPUTS = len(Feature.__args__) + MAX_CONTEXT + sum(len(columns) for columns in CALENDAR_COLUMNS.values())


@dataclass(kw_only=True)
class Run:
    """What every run records, of one ticker (`RunBundle`) or of many (`GlobalBundle`): its model, inputs, split
    and where it came from."""

    run_id: str
    config: Config
    shape: ModelShape
    spec: WindowSpec
    split: dict[str, str]  # first target day of the validation and test periods
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    run_dir: Path | None = None
    config_hash: str | None = None  # `config.config_hash` of the run's config; None in bundles from before it
    context_fingerprints: list[dict[str, Any]] = field(default_factory=list)  # one per context series, in order
    seeds: list[int] = field(default_factory=list)  # a seed ensemble's members' seeds (empty: one model)

    def path(self, name: str) -> Path:
        """A file of the saved run."""
        if self.run_dir is None:
            raise ForecastError("this bundle has not been saved yet")
        return self.run_dir / name


@dataclass(kw_only=True)
class RunBundle(Run):
    """A loaded (or about to be saved) run of one ticker: the model plus everything needed to use it honestly."""

    ticker: str
    scaler: Scaler
    fingerprint: dict[str, Any]  # ticker, first/last date, rows, sha256 of the rows trained on
    baselines: dict[str, float]  # train_mean_log_return (drift), train_naive_mae (recorded)
    calibration: dict[str, Any]  # conformal residuals per horizon step, from the validation split
    training: dict[str, Any]  # epochs run, best epoch, seconds, device, interrupted (the first member's)
    model: Forecaster | Ensemble  # a seed ensemble's members average their forecasts
    fingerprints: list[dict[str, Any]] = field(default_factory=list)  # every series trained on, in order
    member_training: list[dict[str, Any]] = field(default_factory=list)  # each member's `training`, likewise
    # What the data-quality rules found in the rows trained on (quality.Checked.to_dict); None before them.
    data_quality: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.fingerprints = self.fingerprints or [self.fingerprint]  # one series (and bundles from before the list)

    # The run as a run over N tickers × M members, as a global run is seen: here N is one.
    @property
    def names(self) -> list[str]:
        return [self.ticker]

    @property
    def members(self) -> list[Forecaster]:
        return members_of(self.model)

    @property
    def tickers(self) -> list[TickerRecordData]:
        return [TickerRecordData(self.ticker, self.scaler, self.fingerprint, self.baselines,
                                 self.calibration["residuals"])]

    def prices(self) -> dict[str, pd.DataFrame]:
        """The exact price rows the run was trained on (recorded in the bundle), by ticker, as a global run's."""
        path = self.path(PRICES_FILE)
        if not path.is_file():
            raise ForecastError(f"{path}: missing from the bundle; evaluate needs the recorded prices")
        return {self.ticker: read_prices_csv(path)[0]}

    def context_prices(self) -> dict[str, pd.DataFrame]:
        """The context series' rows the run read (context/), each checked against its recorded fingerprint."""
        frames = {}
        for fingerprint in self.context_fingerprints:
            ticker = fingerprint["ticker"]
            path = self.path(CONTEXT_DIR) / f"{cache_name(ticker)}.csv"
            if not path.is_file():
                raise ForecastError(f"{path}: missing from the bundle; evaluate needs the recorded context prices")
            prices, _ = read_prices_csv(path)
            if prices_sha256(prices) != fingerprint["sha256"]:
                raise ForecastError(
                    f"{path}: the recorded {ticker} context prices do not match the run's fingerprint of them; "
                    "the bundle is damaged, retrain the model"
                )
            frames[ticker] = prices
        return frames



def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique enough: UTC time to the millisecond."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"


def save_run(
    bundle: RunBundle | GlobalBundle, runs_dir: Path, prices: dict[str, pd.DataFrame], history: pd.DataFrame,
    metrics: dict[str, Any], write_extras: Any = None, context: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Write a run atomically (see `publish_bundle`) into `<runs_dir>/<TICKER>/<run_id>/`, or a run over several
    tickers into `<runs_dir>/_global/<run_id>/`; returns the run directory. It holds the weights (an ensemble's,
    and every global run's, as `member<i>.*`), bundle.json or global.json, config.yaml, the price rows trained on
    (`prices`, by ticker) and each context series' rows the run read (`context`: prices.csv and context/, or
    prices.zip), history.csv, metrics.json and what `write_extras(tmp_dir)` adds (the loss-curve PNG)."""
    members = bundle.members
    if isinstance(bundle, GlobalBundle):
        parent, document_name, document = Path(runs_dir) / GLOBAL_DIR, GLOBAL_FILE, global_document
        recorded = {PRICES_ARCHIVE: prices_archive({ticker: prices[ticker] for ticker in bundle.names}, context)}
    else:
        parent, document_name, document = Path(runs_dir) / cache_name(bundle.ticker), BUNDLE_FILE, bundle_document
        recorded = {PRICES_FILE: prices_to_csv(prices[bundle.ticker])}
        recorded |= {f"{CONTEXT_DIR}/{cache_name(ticker)}.csv": prices_to_csv(rows)
                     for ticker, rows in (context or {}).items()}
    remove_stale_temp_dirs(Path(runs_dir), parent.name)
    # As `read_run` reads them: an ensemble's (and every global run's) weights as member<i>.*, one model's as is.
    prefixed = len(members) > 1 or document_name == GLOBAL_FILE
    weights = safetensors.torch.save(member_weights(members) if prefixed else {
        name: tensor.detach().cpu().contiguous() for name, tensor in members[0].state_dict().items()})
    tmp_dir = make_temp_dir(parent, "a run bundle")

    def write_files(final_dir: Path) -> None:
        bundle.run_id = final_dir.name  # written into the files
        (tmp_dir / WEIGHTS_FILE).write_bytes(weights)
        (tmp_dir / document_name).write_text(json_text(document(bundle)))
        (tmp_dir / CONFIG_FILE).write_text(yaml.safe_dump(bundle.config.to_plain(), sort_keys=False))
        for file, raw in recorded.items():
            (tmp_dir / file).parent.mkdir(exist_ok=True)  # context/: written again when the name was taken
            (tmp_dir / file).write_bytes(raw)
        history.to_csv(tmp_dir / HISTORY_FILE, index=False, lineterminator="\n")
        (tmp_dir / METRICS_FILE).write_text(json_text(metrics))
        if write_extras is not None:
            write_extras(tmp_dir)

    bundle.run_dir = publish_bundle(tmp_dir, parent, bundle.run_id, write_files)
    return bundle.run_dir


def check_writable(folder: Path) -> None:
    """Fail before training rather than after it when a bundle could not be written into `folder` (a ticker's
    runs, or the global runs'); leave no trace.

    Only folders that were missing are removed, and only while empty (rmdir): another process may be
    saving into them already. One that removes a folder we are about to use is handled in `make_temp_dir`.
    """
    missing = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        # make_temp_dir creates the folders and, should another process remove one meanwhile, tries again.
        shutil.rmtree(make_temp_dir(folder, "a run bundle"))
    except OSError as exc:
        raise ForecastError(f"cannot create a run bundle in {folder}: {exc.strerror or exc}") from None
    finally:
        for path in missing:
            with contextlib.suppress(OSError):  # not empty: another run is being saved there
                path.rmdir()


def publish_bundle(tmp_dir: Path, parent: Path, run_id: str, write_files: Any) -> Path:
    """Fill `tmp_dir` (`write_files(final_dir)`) and publish it under the first free name from `run_id` in
    `parent`; on any failure the temp dir is removed and a write error is one line naming the bundle."""
    try:
        return publish_as_free_name(tmp_dir, parent, run_id, write_files)
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        # An atomic write (the loss curve) wraps its OSError, naming the temp dir that is gone now.
        cause = exc.__cause__ if isinstance(exc, ForecastError) else exc
        if isinstance(cause, OSError):
            raise ForecastError(f"cannot write the run bundle {parent / run_id}: {cause.strerror or cause}") from None
        raise


def bundle_document(bundle: RunBundle) -> dict[str, Any]:
    """bundle.json through `BundleDocument` (see `validated_document`)."""
    return validated_document(
        BundleDocument, bundle, BUNDLE_FILE, ticker=bundle.ticker, scaler=asdict(bundle.scaler),
        fingerprint=bundle.fingerprint, fingerprints=bundle.fingerprints, baselines=bundle.baselines,
        calibration=bundle.calibration, training=bundle.training, seeds=bundle.seeds or None,
        member_training=bundle.member_training or None,
        **({"data_quality": bundle.data_quality} if bundle.data_quality is not None else {}),  # an extra field
    )


def validated_document(schema: type[RunDocument], bundle: Run, name: str, **fields: Any) -> dict[str, Any]:
    """A run's JSON description: what every run records and its own `fields`, built through `schema` so that what
    the reader would refuse is never written (a diverged model's absurd residuals are an error here, not a damaged
    bundle later)."""
    try:
        document = schema(
            format_version=FORMAT_VERSION, run_id=bundle.run_id,
            created_at=bundle.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
            config_hash=bundle.config_hash, model=asdict(bundle.shape), window=asdict(bundle.spec),
            split=bundle.split, context_fingerprints=bundle.context_fingerprints or None,
            versions=bundle.versions or library_versions(), **fields,
        )
    except ValidationError as exc:
        diverged = exc.errors()[0]["loc"][0] in ("calibration", "tickers")  # residuals beyond e^±10: absurd forecasts
        advice = " (a model this far off has diverged: lower train.lr)" if diverged else ""
        raise ForecastError(
            f"cannot save the run: {name} would hold a {describe_damage(exc)}; nothing was written{advice}"
        ) from None
    # training as the trainer wrote it: its record lists `seed` before `threads`, which came later.
    return document.model_dump(mode="json") | {"training": fields["training"]}


def library_versions() -> dict[str, str]:
    return {
        "lstm_forecast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


# --- bundle.json, field by field -------------------------------------------------------------------


def _like(section: type[BaseModel], name: str) -> Any:
    """A config field's own type and bounds, for the bundle field that records it."""
    info = section.model_fields[name]
    return Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation


class Record(BaseModel):
    # strict: a bundle is written by this code, so a string where a number belongs means damage, not a typo.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


LooseDate = Annotated[Date, Field(strict=False)]  # an ISO string in JSON
# Lists whose items stay strict: the writer passes the dataclasses' tuples (JSON only ever holds lists).
AnyList = Field(strict=False)
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ShapeRecord(Record):
    kind: _like(ModelConfig, "type")
    n_features: Annotated[int, Field(ge=1, le=MAX_INPUTS)]
    hidden_size: _like(ModelConfig, "hidden_size")
    num_layers: _like(ModelConfig, "num_layers")
    dropout: _like(ModelConfig, "dropout")
    horizon: _like(WindowConfig, "horizon")
    ticker_embedding: _like(ModelConfig, "ticker_embedding") = 0  # absent before global models
    n_tickers: Annotated[int, Field(ge=0, le=MAX_TICKERS)] = 0

    @model_validator(mode="after")
    def _check_embedding(self) -> ShapeRecord:
        if (self.ticker_embedding == 0) != (self.n_tickers == 0):
            raise ValueError("model.n_tickers: expected a ticker count exactly when there is a ticker embedding")
        return self


class ContextRecord(Record):
    ticker: Annotated[str, Field(max_length=64)]
    feature: ContextFeature
    lag: Literal[0, 1]


class WindowRecord(Record):
    features: Annotated[list[Feature], Field(min_length=1, max_length=len(Feature.__args__)), AnyList]
    price_column: Literal["adj_close", "close"]
    target: Literal["log_return", "price", "excess", "rank"]  # the cross-sectional two absent before them
    lookback: _like(WindowConfig, "lookback")
    horizon: _like(WindowConfig, "horizon")
    # Absent before context inputs: none.
    context: Annotated[list[ContextRecord], Field(max_length=MAX_CONTEXT), AnyList] = []
    calendar_features: Annotated[list[CalendarFeature], Field(max_length=len(CALENDAR_COLUMNS)), AnyList] = []
    context_max_gap: Annotated[int, Field(ge=0, le=20)] = 3
    calendar: Annotated[str, Field(min_length=1, max_length=32)] | None = None

    @model_validator(mode="after")
    def _check_calendar(self) -> WindowRecord:
        if (self.calendar is None) != (not self.calendar_features):
            raise ValueError("window.calendar: expected an exchange exactly when there are calendar features")
        return self

    @property
    def n_inputs(self) -> int:
        return len(self.features) + len(self.context) + sum(len(CALENDAR_COLUMNS[n]) for n in self.calendar_features)

    def spec(self) -> WindowSpec:
        fields = record_fields(self)
        return WindowSpec(**fields | {"context": tuple(ContextSeries(**dict(item)) for item in self.context)})


Values = Annotated[list[float], Field(min_length=1, max_length=MAX_INPUTS), AnyList]


class ScalerRecord(Record):
    feature_mean: Values
    feature_std: Values
    target_mean: float
    target_std: float

    @model_validator(mode="after")
    def _check(self) -> ScalerRecord:
        # A zero or negative scale would turn every input into inf or nonsense and still give a forecast.
        stds = [*self.feature_std, self.target_std]
        if min(stds) <= 0:
            raise ValueError(
                f"scaler: expected finite means and positive standard deviations, got means "
                f"{[*self.feature_mean, self.target_mean]} and standard deviations {stds}"
            )
        return self


class FingerprintRecord(Record):
    ticker: Annotated[str, Field(max_length=64)]
    first_date: LooseDate
    last_date: LooseDate
    rows: Annotated[int, Field(ge=1, le=10_000_000)]
    sha256: Sha256

    @model_validator(mode="after")
    def _check_rows(self) -> FingerprintRecord:
        # Daily prices hold at most one row a day: a count beyond the days between the dates is damage, and what
        # a reader sizes the recorded rows by (prices.zip's entries) can never be inflated past it.
        if not self.first_date <= self.last_date or self.rows > (self.last_date - self.first_date).days + 1:
            raise ValueError("fingerprint: expected first_date <= last_date and at most one row a day between them")
        return self


class SplitRecord(Record):
    val_start: LooseDate
    test_start: LooseDate


class BaselinesRecord(Record):
    train_mean_log_return: float
    train_naive_mae: Annotated[float, Field(ge=0)]


Residual = Annotated[float, Field(ge=-10, le=10)]


class CalibrationRecord(Record):
    method: Literal["split-conformal"]
    space: Literal["log_price"]
    source: Literal["validation"]
    # One list of validation residuals per horizon step, in log-price space: beyond ±10 (a factor of
    # 22,000) no forecast was ever that wrong, so such a value is damage.
    residuals: Annotated[list[Annotated[list[Residual], Field(min_length=1, max_length=1_000_000)]],
                         Field(min_length=1)]


class TrainingRecord(Record):
    model_config = ConfigDict(extra="allow")  # newer versions may record more
    epochs_run: Annotated[int, Field(ge=0, le=100_000)]
    best_epoch: Annotated[int, Field(ge=0, le=100_000)]
    best_val_loss: float | None
    stopped_early: bool
    interrupted: bool
    seconds: Annotated[float, Field(ge=0)]
    device: Annotated[str, Field(max_length=32)]
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    threads: Annotated[int, Field(ge=1, le=MAX_THREADS)] | None = None  # absent in bundles before train.threads

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainingRecord:
        """`thread_schedule`, [[first step, threads], ...], is there only when `auto` changed the count during
        training (config.TrainConfig.threads): an extra field, so records without it read back as written."""
        schedule = (self.model_extra or {}).get("thread_schedule")
        problem = None if schedule is None else thread_schedule_problem(schedule)
        if problem:
            raise PydanticCustomError("thread_schedule", problem)
        return self


class RunDocument(Record):
    """What bundle.json and global.json both hold; unknown top-level fields are allowed for newer writers
    (format_version guards incompatible changes)."""

    model_config = ConfigDict(extra="allow")
    format_version: Literal[1]
    run_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    created_at: Annotated[str, Field(max_length=64)] = ""
    config_hash: Sha256 | None = None  # absent in bundles from before it
    model: ShapeRecord
    window: WindowRecord
    split: SplitRecord
    # Absent (None) without context inputs.
    context_fingerprints: Annotated[list[FingerprintRecord], Field(min_length=1, max_length=MAX_CONTEXT)] | None = None
    versions: Annotated[dict[str, Annotated[str, Field(max_length=100)]], Field(max_length=20)] = {}

    def check_run(self) -> None:
        """The model and the window must describe the same inputs and horizon, or every forecast made with the
        bundle would be silently misaligned; the context series recorded must be the window's."""
        for key, found, expected in (("model.n_features", self.model.n_features, self.window.n_inputs),
                                     ("model.horizon", self.model.horizon, self.window.horizon)):
            if found != expected:
                raise PydanticCustomError("mismatch", f"{key} is {found} but the window describes {expected}")
        recorded = [item.ticker for item in self.context_fingerprints or []]
        if recorded != list(dict.fromkeys(item.ticker for item in self.window.context)):
            raise PydanticCustomError("mismatch", "context_fingerprints do not name the window's context series")

    def check_ticker(
        self, where: str, scaler: ScalerRecord, fingerprint: FingerprintRecord, residuals: list[list[float]]
    ) -> None:
        """One ticker's record (its keys prefixed by `where`) against the run: its scaler describes the window's
        inputs, its validation residuals are one list per forecast day, its rows span the split."""
        for key in ("feature_mean", "feature_std"):
            if (found := len(getattr(scaler, key))) != self.window.n_inputs:
                raise PydanticCustomError(
                    "mismatch", f"{where}scaler.{key} is {found} but the window describes {self.window.n_inputs}")
        if len(residuals) != self.model.horizon or len({len(step) for step in residuals}) != 1:
            raise ValueError(f"{where}calibration.residuals: expected {self.model.horizon} lists of equal length "
                             f"(one per forecast day), got {len(residuals)}")
        if not fingerprint.first_date <= self.split.val_start < self.split.test_start <= fingerprint.last_date:
            raise ValueError(f"{where}split: expected first_date <= val_start < test_start <= last_date")


class BundleDocument(RunDocument):
    """bundle.json as this version writes it: a run of one ticker."""

    ticker: Annotated[str, Field(max_length=64)]
    scaler: ScalerRecord
    fingerprint: FingerprintRecord
    fingerprints: Annotated[list[FingerprintRecord], Field(min_length=1, max_length=100_000)] | None = None
    baselines: BaselinesRecord
    calibration: CalibrationRecord
    training: TrainingRecord
    # A seed ensemble's (absent for one model): its members' seeds and training records, weights member<i>.*.
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=MAX_SEED)]], Field(min_length=2, max_length=20)] | None = None
    member_training: Annotated[list[TrainingRecord], Field(min_length=2, max_length=20)] | None = None

    @model_validator(mode="after")
    def _check(self) -> BundleDocument:
        if len(self.seeds or []) != len(self.member_training or []):
            raise ValueError("member_training: expected one record per seed")
        self.check_run()
        self.check_ticker("", self.scaler, self.fingerprint, self.calibration.residuals)
        return self


def load_bundle(run_dir: Path | str) -> RunBundle:
    """Load and check a bundle; any missing, oversized or damaged file is a one-line error naming it."""
    run_dir = Path(run_dir)
    record, plain, config, model = read_run(run_dir, BUNDLE_FILE, BundleDocument, "missing or invalid field",
                                            lambda record: [record.ticker])
    return RunBundle(
        run_id=record.run_id,
        ticker=record.ticker,
        config=config,
        shape=model.shape,
        spec=record.window.spec(),
        scaler=Scaler(**record_fields(record.scaler)),
        fingerprint=plain["fingerprint"],
        split=plain["split"],
        baselines=plain["baselines"],
        calibration=plain["calibration"],
        training=plain["training"],
        model=model,
        versions=plain["versions"],
        created_at=record.created_at,
        run_dir=run_dir,
        config_hash=record.config_hash,
        fingerprints=plain["fingerprints"] or [],
        context_fingerprints=plain["context_fingerprints"] or [],
        seeds=record.seeds or [],
        member_training=plain["member_training"] or [],
        data_quality=plain.get("data_quality"),
    )


def read_run(
    run_dir: Path, name: str, schema: type[RunDocument], invalid: str, tickers: Callable[[Any], list[str]],
    limit: int = BUNDLE_JSON_LIMIT,
) -> tuple[Any, dict[str, Any], Config, Forecaster | Ensemble]:
    """A run's JSON description validated against `schema` (the symbols `tickers(record)` names too: else
    "`invalid` <why>"), its config.yaml matching it and its members' weights; and the record as plain data, its
    dates back to ISO strings, as saved."""
    path, document = read_document(run_dir, name, limit)
    try:
        record = schema.model_validate(document)
        for ticker in tickers(record):
            validate_ticker(ticker)
    except ValidationError as exc:
        raise ForecastError(f"{path}: {describe_damage(exc)}; the bundle is damaged") from None
    except ForecastError as exc:
        raise ForecastError(f"{path}: {invalid} {exc}; the bundle is damaged") from None
    shape, spec = ModelShape(**record_fields(record.model)), record.window.spec()
    config = read_config(run_dir / CONFIG_FILE)
    # A global run names every member's weights member<i>.*, a single ticker's only an ensemble's.
    model = load_members(run_dir / WEIGHTS_FILE, shape, len(record.seeds or [None]), name, prefixed=name == GLOBAL_FILE)
    check_config_matches(run_dir / CONFIG_FILE, config, shape, spec, n_tickers=shape.n_tickers)
    return record, record.model_dump(mode="json"), config, model


def read_document(run_dir: Path, name: str, limit: int = BUNDLE_JSON_LIMIT) -> tuple[Path, dict[str, Any]]:
    """A run's JSON description (bundle.json, or a global run's global.json), read bounded, in a format this
    version reads."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory (see `lstm-forecast runs`)")
    path = run_dir / name
    document = _read_json(path, limit)
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        advice = "upgrade lstm-forecast to read it" if newer else "retrain to get a readable bundle"
        raise ForecastError(
            f"{path}: bundle format {quote(version)} is not supported "
            f"(this lstm-forecast reads format {FORMAT_VERSION}); {advice}"
        )
    return path, document


def record_fields(record: BaseModel) -> dict[str, Any]:
    """A validated record's fields, its lists as tuples: the arguments of the frozen dataclass it describes."""
    return {name: tuple(value) if isinstance(value, list) else value for name, value in record}


def describe_damage(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"missing or invalid field {key!r} (missing)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "mismatch":  # two fields that disagree: a sentence of its own
        return message
    if error["type"] == "value_error":  # a cross-field check names its own key
        return f"missing or invalid field {message}"
    return f"missing or invalid field {key}: {message[:1].lower()}{message[1:]}, got {quote(error.get('input'))}"


def check_config_matches(
    path: Path, config: Config, shape: ModelShape, spec: WindowSpec, n_tickers: int = 0
) -> None:
    """config.yaml and bundle.json describe one run: evaluate rebuilds the windows from the config, predict
    from bundle.json, so any difference between them (an edited file) is damage."""
    expected_spec = WindowSpec.from_config(config)
    expected_shape = ModelShape.from_config(config.model, n_features=expected_spec.n_inputs,
                                            horizon=expected_spec.horizon, n_tickers=n_tickers)
    if expected_spec != spec or expected_shape != shape:
        raise ForecastError(f"{path}: does not describe the model and windows of bundle.json; the bundle is damaged")


def read_config(path: Path) -> Config:
    """The bundle's resolved config.yaml, through the same bounded, strict YAML reading as --config."""
    try:
        text = read_bounded(path, CONFIG_SIZE_LIMIT, "a config file").decode("utf-8")
        values = load_yaml(text)
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing from the bundle") from None
    except ForecastError as exc:
        raise ForecastError(f"{exc}; the bundle is damaged") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc) if isinstance(exc, RefusedYAML) else type(exc).__name__
        raise ForecastError(f"{path}: unreadable ({reason}); the bundle is damaged") from None
    if not isinstance(values, dict):
        raise ForecastError(f"{path}: not a mapping of config sections; the bundle is damaged")
    try:
        return config_from_plain(values, str(path))
    except UsageError as exc:  # a config error in a bundle is damage, not the user's usage
        raise ForecastError(f"{exc}; the bundle is damaged") from None


def load_members(
    path: Path, shape: ModelShape, count: int, document: str, prefixed: bool = False
) -> Forecaster | Ensemble:
    """The weights of `count` members, checked against the declared shape (see `read_weights`), in modules in eval
    mode: one model's tensors under their own names, an ensemble's (and every global run's) under `member<i>.`."""
    if count == 1 and not prefixed:
        return build_model(shape, read_weights(path, shape.tensor_shapes(), shape.parameter_count(), document))
    expected = {f"member{i}.{name}": size for i in range(count) for name, size in shape.tensor_shapes().items()}
    weights = read_weights(path, expected, shape.parameter_count() * count, document)
    return ensemble_of([build_model(shape, {name.split(".", 1)[1]: tensor for name, tensor in weights.items()
                                            if name.startswith(f"member{i}.")}) for i in range(count)])


def member_weights(members: list[Forecaster]) -> dict[str, Any]:
    """Several members' tensors in one file, each under `member<i>.`."""
    return {f"member{i}.{name}": tensor.detach().cpu().contiguous()
            for i, member in enumerate(members) for name, tensor in member.state_dict().items()}


def build_model(shape: ModelShape, weights: dict[str, torch.Tensor]) -> Forecaster:
    model = Forecaster(shape)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def read_weights(
    path: Path, expected: dict[str, tuple[int, ...]], parameters: int, document: str = BUNDLE_FILE
) -> dict[str, torch.Tensor]:
    """model.safetensors, checked against the tensors bundle.json declares (names, shapes, float32, finite)
    before any module is built; the file may be no larger than those tensors and their header."""
    size, limit = parameters * 4, memory_limit()
    if size > limit:
        raise ForecastError(
            f"{path.parent / document}: describes a model of {parameters:,} parameters "
            f"({gib(size)}), more than the {gib(limit)} allowed here; the bundle is damaged"
        )
    try:
        raw = read_bounded(path, size + WEIGHTS_HEADER_LIMIT, f"the weights of the model {document} describes")
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing from the bundle") from None
    except ForecastError as exc:
        raise ForecastError(f"{exc}; the bundle is damaged") from None
    try:
        weights = safetensors.torch.load(raw)
    except Exception as exc:  # safetensors raises its own error type for truncated/garbled files
        raise ForecastError(f"{path}: corrupt weights file ({type(exc).__name__}); retrain the model") from None
    found = {name: tuple(tensor.shape) for name, tensor in weights.items()}
    if found != expected:
        raise ForecastError(
            f"{path}: the weights do not fit the model described in {document}; the bundle is damaged"
        )
    for name, tensor in weights.items():
        if tensor.dtype != torch.float32:
            raise ForecastError(f"{path}: tensor {name} is {tensor.dtype}, expected float32; the bundle is damaged")
        if not torch.isfinite(tensor).all():
            raise ForecastError(f"{path}: tensor {name} holds NaN or infinite values; the bundle is damaged")
    return weights


def check_json_memory(path: Path, size: int) -> None:
    """Refuse a JSON document of `size` bytes whose parsed form would not fit: parsed, validated and dumped again,
    a document takes many times its size in Python objects (a short number in the text is a float object and a
    list slot, thrice over). A megabyte always fits."""
    if size > 1 << 20 and size * JSON_MEMORY_FACTOR > memory_limit():
        raise ForecastError(f"{path}: {size:,} bytes would need about {gib(size * JSON_MEMORY_FACTOR)} to read, "
                            f"more than the {gib(memory_limit())} allowed here")


def _read_json(path: Path, limit: int = BUNDLE_JSON_LIMIT) -> dict[str, Any]:
    """A bundle's JSON document, read with a size limit; hostile nesting or numbers are damage, not a crash."""
    try:
        raw = read_bounded(path, limit, "a bundle description")
        check_json_memory(path, len(raw))
        document = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing; not a run bundle (see `lstm-forecast runs`)") from None
    except ForecastError as exc:
        raise ForecastError(f"{exc}; the bundle is damaged") from None
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        # ValueError: malformed JSON, or an integer past Python's 4300-digit limit.
        raise ForecastError(f"{path}: not valid JSON ({type(exc).__name__}); the bundle is damaged") from None
    if not isinstance(document, dict):
        raise ForecastError(f"{path}: not a bundle description; the bundle is damaged")
    return document


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
    if not runs_dir.is_dir():
        return []
    pattern = f"{cache_name(ticker)}/*/{BUNDLE_FILE}" if ticker else f"*/*/{BUNDLE_FILE}"
    runs = [
        path.parent
        for path in runs_dir.glob(pattern)
        if not path.parent.name.startswith((".", "compare-"))
    ]
    return sorted(runs, key=lambda run: (run.name, run.parent.name))


def list_global_runs(runs_dir: Path) -> list[Path]:
    """Complete runs over several tickers (global runs), oldest first."""
    folder = Path(runs_dir) / GLOBAL_DIR
    if not folder.is_dir():
        return []
    return sorted(path.parent for path in folder.glob(f"*/{GLOBAL_FILE}") if not path.parent.name.startswith("."))


def find_run(runs_dir: Path, run: Path | None = None, ticker: str | None = None) -> Path:
    """`--run` as given, else the most recent run: `ticker`'s, when given, else of either kind (a single
    ticker's or a global run); never both."""
    if run is not None and ticker is not None:
        raise UsageError("give --run or --ticker, not both (--run names one ticker's run already)")
    if run is not None:
        return Path(run)
    ticker = validate_ticker(ticker) if ticker is not None else None
    runs = list_runs(runs_dir, ticker)
    if ticker is None:  # run ids sort by the time they were made, whatever folder holds them
        runs = sorted([*runs, *list_global_runs(runs_dir)], key=lambda found: found.name)
    if not runs:
        which = f" for {ticker}" if ticker else ""
        raise ForecastError(
            f"no trained runs{which} in {runs_dir}; train one with `lstm-forecast train -t {ticker or 'TICKER'}`"
        )
    return runs[-1]


def remove_stale_temp_dirs(runs_dir: Path, folder: str | None = None, older_than_s: float = STALE_TEMP_AGE_S) -> None:
    """Remove half-written bundles and evaluation staging folders left by a killed process (they were never renamed
    into place) in `folder` of the runs dir (a ticker's, or the global runs': saving a run cleans its own, as a
    universe would otherwise list every folder for every ticker), else in every one.

    Only this tool's (its temp prefix and marker file: a shared folder may hold other programs' temp
    dirs), and only old ones: a fresh temp dir may be another process's bundle being written right now.
    """
    if not runs_dir.is_dir():
        return
    cutoff = time.time() - older_than_s
    pattern = f"{folder or '*'}/{TEMP_PREFIX}*"
    try:
        candidates = list(runs_dir.glob(pattern))
    except OSError:  # a folder another process removed while we looked (an empty one it had just made)
        return
    for path in candidates:
        with contextlib.suppress(OSError):
            if is_our_temp_dir(path) and path.stat().st_mtime < cutoff:
                shutil.rmtree(path)


# --- a run over several tickers: global.json and prices.zip ------------------------------------------


PRICES_ARCHIVE = "prices.zip"
# A canonical price row (date, six numbers) is under a hundred bytes: an entry may hold this much per row its
# ticker's fingerprint declares, plus the header, and the archive no more than all its entries.
ROW_BYTES_LIMIT = 256
HEADER_BYTES_LIMIT = 4096
GLOBAL_JSON_LIMIT = 256 << 20  # validation residuals per ticker: a few megabytes for 400 tickers


@dataclass(frozen=True)
class TickerRecordData:
    """What a global run keeps of one ticker: enough to rebuild its inputs and convert its forecasts back."""

    ticker: str
    scaler: Scaler
    fingerprint: dict[str, Any]
    baselines: dict[str, float]  # train_mean_log_return, train_naive_mae
    residuals: list[list[float]]  # validation residuals in log-price space, one list per horizon day


@dataclass(kw_only=True)
class GlobalBundle(Run):
    """A loaded (or about to be saved) run of one model over many tickers (every member's seed in `seeds`)."""

    tickers: list[TickerRecordData]
    training: list[dict[str, Any]]  # one TrainResult summary (+ seed) per member
    members: list[Forecaster]
    skipped: dict[str, str] = field(default_factory=dict)
    # Per ticker, what the data-quality rules found in its rows (quality.Checked.to_dict); None before them.
    data_quality: dict[str, dict[str, Any]] | None = None

    @property
    def names(self) -> list[str]:
        return [record.ticker for record in self.tickers]

    def prices(self) -> dict[str, pd.DataFrame]:
        """Every ticker's recorded rows, each checked against its fingerprint."""
        return self.recorded()[0]

    def recorded(self) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
        """Every ticker's recorded rows and each context series' (those any ticker read), by ticker, all read in
        one bounded pass over prices.zip and checked against their fingerprints."""
        return read_prices_archive(self.path(PRICES_ARCHIVE), {r.ticker: r.fingerprint for r in self.tickers},
                                   {f["ticker"]: f for f in self.context_fingerprints})

    def context_prices(self) -> dict[str, pd.DataFrame]:
        """Each context series' recorded rows, by ticker, checked against their fingerprints."""
        return self.recorded()[1]

    def cached_context(
        self, folder: Path, refresh: bool = False, stop: StopRequest | None = None, refreshed: set[str] | None = None,
    ) -> dict[str, pd.DataFrame]:
        """Each context series of the run from `folder`'s cache (updated first with `refresh`, unless `refreshed`
        holds it already), or the rows the bundle recorded where none is cached; empty without context inputs."""
        frames = cached_context(folder, self.spec.context_tickers, refresh, stop=stop, refreshed=refreshed)
        if any(frame is None for frame in frames.values()):
            recorded = self.recorded()[1]
            frames = {ticker: recorded[ticker] if frame is None else frame for ticker, frame in frames.items()}
        return frames


def is_global_run(run_dir: Path) -> bool:
    return (Path(run_dir) / GLOBAL_FILE).is_file()


def load_run(run_dir: Path | str) -> RunBundle | GlobalBundle:
    """The one loader of a run, whichever format it was written in: a single ticker's bundle (bundle.json, format
    1 and its later optional fields) or a run over several tickers (global.json). The only place that looks."""
    return load_global_bundle(run_dir) if is_global_run(Path(run_dir)) else load_bundle(run_dir)


# --- global.json ---------------------------------------------------------------------------------


class TickerRecord(Record):
    ticker: Annotated[str, Field(max_length=64)]
    scaler: ScalerRecord
    fingerprint: FingerprintRecord
    baselines: BaselinesRecord
    residuals: Annotated[list[Annotated[list[Residual], Field(min_length=1, max_length=1_000_000)]],
                         Field(min_length=1)]


class GlobalDocument(RunDocument):
    """global.json as this version writes it: a run of one model over many tickers."""

    kind: Literal["global"]
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=MAX_SEED)]], Field(min_length=1, max_length=20)]
    tickers: Annotated[list[TickerRecord], Field(min_length=1, max_length=MAX_TICKERS)]
    training: Annotated[list[TrainingRecord], Field(min_length=1, max_length=20)]
    skipped: Annotated[dict[str, Annotated[str, Field(max_length=2000)]], Field(max_length=MAX_TICKERS)]

    @model_validator(mode="after")
    def _check(self) -> GlobalDocument:
        names = [record.ticker for record in self.tickers]
        if len(set(names)) != len(names):
            raise ValueError("tickers: expected each ticker once")
        if len(self.training) != len(self.seeds):
            raise ValueError("training: expected one record per seed")
        if self.model.n_tickers not in (0, len(names)):
            raise ValueError(f"model.n_tickers: expected 0 or the {len(names)} tickers of the run")
        self.check_run()
        for record in self.tickers:
            self.check_ticker(f"tickers.{record.ticker}.", record.scaler, record.fingerprint, record.residuals)
        return self


def global_document(bundle: GlobalBundle) -> dict[str, Any]:
    """global.json through `GlobalDocument` (see `validated_document`)."""
    return validated_document(
        GlobalDocument, bundle, GLOBAL_FILE, kind="global", seeds=bundle.seeds, training=bundle.training,
        tickers=[{"ticker": r.ticker, "scaler": asdict(r.scaler), "fingerprint": r.fingerprint,
                  "baselines": r.baselines, "residuals": r.residuals} for r in bundle.tickers],
        skipped=bundle.skipped,
        **({"data_quality": bundle.data_quality} if bundle.data_quality is not None else {}),  # an extra field
    )


def prices_archive(prices: dict[str, pd.DataFrame], context: dict[str, pd.DataFrame] | None = None) -> bytes:
    """Each ticker's rows as its canonical CSV (the bytes its fingerprint hashes), and each context series'
    under context/ (a context ticker may be in the universe too, with other rows), deflated into one zip."""
    buffer = io.BytesIO()
    entries = {**{_entry(ticker): frame for ticker, frame in prices.items()},
               **{_entry(ticker, CONTEXT_DIR): frame for ticker, frame in (context or {}).items()}}
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, frame in entries.items():
            # A fixed timestamp: the same rows give the same archive bytes.
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), prices_to_csv(frame),
                             compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _entry(ticker: str, folder: str | None = None) -> str:
    return f"{folder}/{cache_name(ticker)}.csv" if folder else f"{cache_name(ticker)}.csv"


def read_prices_archive(
    path: Path, fingerprints: dict[str, dict[str, Any]], context: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The recorded rows of every ticker in `fingerprints` and of every context series in `context` (ticker ->
    fingerprint, both), each entry bounded before it is inflated and its rows checked against its fingerprint."""

    # (0: a ticker's, 1: a context series'; the ticker, its entry, its fingerprint)
    wanted = [(0, ticker, _entry(ticker), fingerprint) for ticker, fingerprint in fingerprints.items()]
    wanted += [(1, ticker, _entry(ticker, CONTEXT_DIR), fingerprint) for ticker, fingerprint in (context or {}).items()]
    limits = [fingerprint["rows"] * ROW_BYTES_LIMIT + HEADER_BYTES_LIMIT for *_, fingerprint in wanted]
    # The archive's bytes and every entry inflated may all be held at once: refuse before reading what this
    # machine could not hold (the rows are the validated, one-a-day counts global.json declares).
    if 2 * sum(limits) > memory_limit():
        raise ForecastError(f"{path}: the recorded prices global.json declares would need {gib(2 * sum(limits))}, "
                            f"more than the {gib(memory_limit())} allowed here; the bundle is damaged")
    try:
        raw = read_bounded(path, sum(limits) + HEADER_BYTES_LIMIT * len(limits), "a global run's recorded prices")
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing from the bundle; evaluate needs the recorded prices") from None
    except ForecastError as exc:  # larger than the rows global.json declares could be, or not a regular file
        raise ForecastError(f"{exc}; the bundle is damaged") from None
    frames: tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]] = ({}, {})
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            entries = {info.filename: info for info in archive.infolist()}
            for (group, ticker, name, fingerprint), limit in zip(wanted, limits, strict=True):
                info, what = entries.get(name), ("prices", "context prices")[group]
                if info is None or info.file_size > limit:
                    raise ForecastError(f"{path}: {ticker}'s {what} are missing or too large; the bundle is damaged")
                with archive.open(info) as entry:
                    text = entry.read(limit + 1)  # the header's size may lie: never inflate more
                frame, _ = parse_prices_csv(text, f"{path}:{name}")
                if prices_sha256(frame) != fingerprint["sha256"]:
                    raise ForecastError(f"{path}: {ticker}'s recorded {what} do not match its fingerprint; "
                                        "the bundle is damaged, retrain the model")
                frames[group][ticker] = frame
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ForecastError(f"{path}: not a readable archive ({type(exc).__name__}); the bundle is damaged") from None
    return frames


def load_global_bundle(run_dir: Path | str) -> GlobalBundle:
    """Load and check a global run; any missing, oversized or damaged file is a one-line error naming it."""
    run_dir = Path(run_dir)
    record, plain, config, model = read_run(
        run_dir, GLOBAL_FILE, GlobalDocument, "invalid ticker",
        lambda record: [item.ticker for item in [*record.tickers, *(record.context_fingerprints or [])]],
        GLOBAL_JSON_LIMIT)
    shape, spec, members = model.shape, record.window.spec(), members_of(model)
    return GlobalBundle(
        run_id=record.run_id, config=config, shape=shape, spec=spec, split=plain["split"],
        tickers=[TickerRecordData(ticker=t.ticker, scaler=Scaler(**record_fields(t.scaler)),
                                  fingerprint=plain["tickers"][i]["fingerprint"],
                                  baselines=plain["tickers"][i]["baselines"], residuals=t.residuals)
                 for i, t in enumerate(record.tickers)],
        seeds=record.seeds, training=plain["training"], members=members, skipped=record.skipped,
        versions=record.versions, created_at=record.created_at, config_hash=record.config_hash, run_dir=run_dir,
        context_fingerprints=plain["context_fingerprints"] or [], data_quality=plain.get("data_quality"),
    )
