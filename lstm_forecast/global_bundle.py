"""A global run's bundle: one model (or a seed ensemble) for a whole universe, in one folder.

Layout (`<runs-dir>/_global/<run-id>/`; no ticker starts with "_", so it never collides with a ticker's
runs): `global.json` (the model, the window, the common split and, per ticker, its scaler, fingerprint,
training statistics and validation residuals for its conformal intervals), `model.safetensors` (every
member's weights, named `member<i>.<tensor>`), `config.yaml`, `prices.zip` (each ticker's exact rows as a
deflated CSV, so evaluation stays reproducible after a cache is revised; with context inputs, also each
context series' rows read by any ticker, as `context/<TICKER>.csv`, fingerprinted in global.json's
`context_fingerprints`), `history.csv`, `metrics.json` and `loss_curve.png`. Written atomically like a
ticker's bundle; loaded as safely: bounded reads, the schema below, weights checked before a module is built,
nothing unpickled, and every recorded series' rows checked against its fingerprint.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import safetensors.torch
import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from lstm_forecast.bundle import (
    CONFIG_FILE,
    CONTEXT_DIR,
    FORMAT_VERSION,
    GLOBAL_DIR,
    GLOBAL_FILE,
    HISTORY_FILE,
    MAX_TICKERS,
    METRICS_FILE,
    WEIGHTS_FILE,
    BaselinesRecord,
    FingerprintRecord,
    Record,
    Residual,
    RunBundle,
    ScalerRecord,
    ShapeRecord,
    SplitRecord,
    TrainingRecord,
    WindowRecord,
    check_config_matches,
    describe_damage,
    library_versions,
    load_bundle,
    load_members,
    member_weights,
    publish_bundle,
    read_config,
    read_document,
    record_fields,
)
from lstm_forecast.config import MAX_CONTEXT, MAX_SEED, Config
from lstm_forecast.errors import ForecastError, StopRequest
from lstm_forecast.files import json_text, make_temp_dir, read_bounded
from lstm_forecast.model import Forecaster, ModelShape, members_of
from lstm_forecast.windows import Scaler, WindowSpec

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


@dataclass
class GlobalBundle:
    run_id: str
    config: Config
    shape: ModelShape
    spec: WindowSpec
    split: dict[str, str]
    tickers: list[TickerRecordData]
    seeds: list[int]
    training: list[dict[str, Any]]  # one TrainResult summary (+ seed) per member
    members: list[Forecaster]
    skipped: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    config_hash: str | None = None
    run_dir: Path | None = None
    context_fingerprints: list[dict[str, Any]] = field(default_factory=list)  # one per context series, in order

    @property
    def names(self) -> list[str]:
        return [record.ticker for record in self.tickers]

    def prices(self) -> dict[str, pd.DataFrame]:
        """Every ticker's recorded rows, each checked against its fingerprint."""
        return self.recorded()[0]

    def recorded(self) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
        """Every ticker's recorded rows and each context series' (those any ticker read), by ticker, all read in
        one bounded pass over prices.zip and checked against their fingerprints."""
        if self.run_dir is None:
            raise ForecastError("this bundle has not been saved yet")
        return read_prices_archive(self.run_dir / PRICES_ARCHIVE, {r.ticker: r.fingerprint for r in self.tickers},
                                   {f["ticker"]: f for f in self.context_fingerprints})


    def cached_context(
        self, folder: Path, refresh: bool = False, stop: StopRequest | None = None
    ) -> dict[str, pd.DataFrame]:
        """Each context series of the run from `folder`'s cache (updated first with `refresh`), or the rows the
        bundle recorded where none is cached; empty without context inputs."""
        from lstm_forecast.context import cached_context

        frames = cached_context(folder, self.spec.context_tickers, refresh, stop=stop)
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


class GlobalDocument(Record):
    model_config = ConfigDict(extra="allow")  # newer writers may add fields
    format_version: Literal[1]
    kind: Literal["global"]
    run_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    created_at: Annotated[str, Field(max_length=64)] = ""
    config_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    model: ShapeRecord
    window: WindowRecord
    split: SplitRecord
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=MAX_SEED)]], Field(min_length=1, max_length=20)]
    tickers: Annotated[list[TickerRecord], Field(min_length=1, max_length=MAX_TICKERS)]
    training: Annotated[list[TrainingRecord], Field(min_length=1, max_length=20)]
    skipped: Annotated[dict[str, Annotated[str, Field(max_length=2000)]], Field(max_length=MAX_TICKERS)]
    versions: Annotated[dict[str, Annotated[str, Field(max_length=100)]], Field(max_length=20)]
    # Absent (None) without context inputs.
    context_fingerprints: Annotated[list[FingerprintRecord], Field(min_length=1, max_length=MAX_CONTEXT)] | None = None

    @model_validator(mode="after")
    def _check(self) -> GlobalDocument:
        names = [record.ticker for record in self.tickers]
        if len(set(names)) != len(names):
            raise ValueError("tickers: expected each ticker once")
        if len(self.training) != len(self.seeds):
            raise ValueError("training: expected one record per seed")
        if self.model.n_tickers not in (0, len(names)):
            raise ValueError(f"model.n_tickers: expected 0 or the {len(names)} tickers of the run")
        if self.model.horizon != self.window.horizon or self.model.n_features != self.window.n_inputs:
            raise ValueError("model: expected the horizon and inputs of the window")
        recorded = [record.ticker for record in self.context_fingerprints or []]
        if recorded != list(dict.fromkeys(item.ticker for item in self.window.context)):
            raise ValueError("context_fingerprints: expected one per context series of the window")
        split = self.split
        for record in self.tickers:
            scaler, steps = record.scaler, record.residuals
            if len(scaler.feature_mean) != self.model.n_features or len(scaler.feature_std) != self.model.n_features:
                raise ValueError(f"tickers: {record.ticker}'s scaler does not describe the window's features")
            if len(steps) != self.model.horizon or len({len(step) for step in steps}) != 1:
                raise ValueError(f"tickers: {record.ticker}'s residuals: expected one list per forecast day")
            if not record.fingerprint.first_date < split.val_start < split.test_start <= record.fingerprint.last_date:
                raise ValueError(f"tickers: {record.ticker}'s prices do not span the split")
        return self


def global_document(bundle: GlobalBundle) -> dict[str, Any]:
    """global.json through its schema: what the reader would refuse is never written."""
    try:
        document = GlobalDocument(
            format_version=FORMAT_VERSION, kind="global", run_id=bundle.run_id,
            created_at=bundle.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
            config_hash=bundle.config_hash, model=bundle.shape.to_dict(), window=bundle.spec.to_dict(),
            split=bundle.split, seeds=bundle.seeds,
            tickers=[{"ticker": r.ticker, "scaler": {k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in r.scaler.__dict__.items()},
                      "fingerprint": r.fingerprint, "baselines": r.baselines, "residuals": r.residuals}
                     for r in bundle.tickers],
            training=bundle.training, skipped=bundle.skipped, versions=bundle.versions or library_versions(),
            context_fingerprints=bundle.context_fingerprints or None,
        )
    except ValidationError as exc:
        raise ForecastError(f"cannot save the run: global.json would hold a {describe_damage(exc)}; "
                            "nothing was written (a model this far off has diverged: lower train.lr)") from None
    return document.model_dump(mode="json") | {"training": bundle.training}


# --- saving and loading --------------------------------------------------------------------------


def save_global_bundle(
    bundle: GlobalBundle, runs_dir: Path, prices: dict[str, pd.DataFrame], history: pd.DataFrame,
    metrics: dict[str, Any], write_extras: Any = None, context: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Write the bundle into `<runs_dir>/_global/<run_id>/` atomically; returns the run directory. `context`
    holds the rows of each context series the run read (`panel.context_read`), recorded in prices.zip."""
    parent = Path(runs_dir) / GLOBAL_DIR
    tmp_dir = make_temp_dir(parent, "a global run bundle")

    def write_files(final_dir: Path) -> None:
        bundle.run_id = final_dir.name
        (tmp_dir / WEIGHTS_FILE).write_bytes(safetensors.torch.save(member_weights(bundle.members)))
        (tmp_dir / GLOBAL_FILE).write_text(json_text(global_document(bundle)))
        (tmp_dir / CONFIG_FILE).write_text(yaml.safe_dump(bundle.config.to_plain(), sort_keys=False))
        (tmp_dir / PRICES_ARCHIVE).write_bytes(prices_archive({name: prices[name] for name in bundle.names},
                                                              context or {}))
        history.to_csv(tmp_dir / HISTORY_FILE, index=False, lineterminator="\n")
        (tmp_dir / METRICS_FILE).write_text(json_text(metrics))
        if write_extras is not None:
            write_extras(tmp_dir)

    bundle.run_dir = publish_bundle(tmp_dir, parent, bundle.run_id, write_files)
    return bundle.run_dir


def check_writable(runs_dir: Path) -> None:
    """Fail before training rather than after it when the bundle could not be written there."""
    shutil.rmtree(make_temp_dir(Path(runs_dir) / GLOBAL_DIR, "a global run bundle"), ignore_errors=True)


def prices_archive(prices: dict[str, pd.DataFrame], context: dict[str, pd.DataFrame] | None = None) -> bytes:
    """Each ticker's rows as its canonical CSV (the bytes its fingerprint hashes), and each context series'
    under context/ (a context ticker may be in the universe too, with other rows), deflated into one zip."""
    from lstm_forecast.prices import prices_to_csv

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
    from lstm_forecast.data import cache_name

    return f"{folder}/{cache_name(ticker)}.csv" if folder else f"{cache_name(ticker)}.csv"


def read_prices_archive(
    path: Path, fingerprints: dict[str, dict[str, Any]], context: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The recorded rows of every ticker in `fingerprints` and of every context series in `context` (ticker ->
    fingerprint, both), each entry bounded before it is inflated and its rows checked against its fingerprint."""
    from lstm_forecast.prices import parse_prices_csv, prices_sha256

    # (0: a ticker's, 1: a context series'; the ticker, its entry, its fingerprint)
    wanted = [(0, ticker, _entry(ticker), fingerprint) for ticker, fingerprint in fingerprints.items()]
    wanted += [(1, ticker, _entry(ticker, CONTEXT_DIR), fingerprint) for ticker, fingerprint in (context or {}).items()]
    limits = [fingerprint["rows"] * ROW_BYTES_LIMIT + HEADER_BYTES_LIMIT for *_, fingerprint in wanted]
    try:
        raw = read_bounded(path, sum(limits) + HEADER_BYTES_LIMIT * len(limits), "a global run's recorded prices")
    except FileNotFoundError:
        raise ForecastError(f"{path}: missing from the bundle; evaluate needs the recorded prices") from None
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
    from lstm_forecast.data import validate_ticker

    run_dir = Path(run_dir)
    path, document = read_document(run_dir, GLOBAL_FILE, GLOBAL_JSON_LIMIT)
    try:
        record = GlobalDocument.model_validate(document)
        for ticker in [*record.tickers, *(record.context_fingerprints or [])]:
            validate_ticker(ticker.ticker)
    except ValidationError as exc:
        raise ForecastError(f"{path}: {describe_damage(exc)}; the bundle is damaged") from None
    except ForecastError as exc:
        raise ForecastError(f"{path}: invalid ticker {exc}; the bundle is damaged") from None
    shape = ModelShape(**record_fields(record.model))
    spec = record.window.spec()
    config = read_config(run_dir / CONFIG_FILE)
    check_config_matches(run_dir / CONFIG_FILE, config, shape, spec, n_tickers=shape.n_tickers)
    members = members_of(load_members(run_dir / WEIGHTS_FILE, shape, len(record.seeds), GLOBAL_FILE, prefixed=True))
    plain = record.model_dump(mode="json")
    return GlobalBundle(
        run_id=record.run_id, config=config, shape=shape, spec=spec, split=plain["split"],
        tickers=[TickerRecordData(ticker=t.ticker, scaler=Scaler(**record_fields(t.scaler)),
                                  fingerprint=plain["tickers"][i]["fingerprint"],
                                  baselines=plain["tickers"][i]["baselines"], residuals=t.residuals)
                 for i, t in enumerate(record.tickers)],
        seeds=record.seeds, training=plain["training"], members=members, skipped=record.skipped,
        versions=record.versions, created_at=record.created_at, config_hash=record.config_hash, run_dir=run_dir,
        context_fingerprints=plain["context_fingerprints"] or [],
    )
