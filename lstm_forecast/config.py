"""Typed run configuration: defaults < `--config FILE` < repeated `--set section.key=value`.

The schema is validated once, here; everything downstream receives a `Config` and can trust it.
Errors name where the bad value came from, the key and what was expected, e.g.
`x.yaml: train.epochs: expected an integer >= 1, got 'ten'`; for a CLI shortcut, the option:
`--model (model.type): expected one of lstm, gru, rnn, got 'transformer'`.

Every YAML we read (a config file, a `--set` value, a bundle's config.yaml) goes through `load_yaml`,
a safe loader that also refuses what plain YAML allows but a config never needs: duplicate keys (the
first would be silently dropped), aliases (`*name`: a few hundred bytes of nested aliases expand to
gigabytes, the "billion laughs"), nesting deeper than any config, and integers too long to convert.
Every value has bounds, so nothing downstream sees a seed numpy refuses or a date pandas cannot hold.

The packaged configs (lstm_forecast/configs/*.yaml: default, quick, global, tsla, and tune's search space)
ship inside the package, so an installed wheel has them: `--config quick` names one (`resolve_config`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import json
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from lstm_forecast.errors import UsageError, quote, shorten
from lstm_forecast.files import read_bounded

Feature = Literal["log_return", "volume_change", "range"]
# A context series' input: its own features, or its log price level (a volatility index is read as a level).
ContextFeature = Literal["log_return", "log_level", "volume_change", "range"]
# Known in advance from the exchange calendar: each describes the session a forecast is for (context.py).
CalendarFeature = Literal["day_of_week", "month_of_year", "month_end", "session_gap"]
# More context inputs than this is a search over tickers, not a covariate list.
MAX_CONTEXT = 32


def _refuse_bool(value: Any) -> Any:
    """YAML reads `true` and `yes` as booleans, which pydantic would quietly take for 1 (a lookback of one day)."""
    if isinstance(value, bool):
        raise PydanticCustomError("bool_is_not_a_number", "a boolean is not a number")
    return value


Int = Annotated[int, BeforeValidator(_refuse_bool)]
Float = Annotated[float, BeforeValidator(_refuse_bool)]
# Dates well inside what pandas can represent (1677-09-22 ... 2262-04-11) and every exchange calendar covers.
Date = Annotated[dt.date, Field(ge=dt.date(1900, 1, 1), le=dt.date(2200, 12, 31))]
# numpy's and torch's seeds are unsigned 32-bit.
MAX_SEED = 2**32 - 1
PATH_LENGTH = 4096


class Section(BaseModel):
    # Infinite and NaN numbers are refused too: `evaluate.cost_bps: .inf` would break every report downstream.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _ticker_symbol(value: Any) -> Any:
    """A context ticker, validated and upper-cased as `--ticker` is (data.validate_ticker)."""
    from lstm_forecast.data import validate_ticker

    if not isinstance(value, str):
        return value  # pydantic's own type error follows
    try:
        return validate_ticker(value)
    except UsageError as exc:
        # "invalid ticker 'x': expected …": keep what is expected (the value is shown by the caller, shortened).
        raise ValueError("ticker: " + str(exc).rsplit("': ", 1)[-1]) from None


class ContextInput(Section):
    """One context input: a cached ticker's feature, read on the target ticker's sessions (see context.py)."""

    ticker: Annotated[str, BeforeValidator(_ticker_symbol)]
    feature: ContextFeature = "log_return"
    # auto: the previous session when the context's exchange closes later in the day than data.calendar's.
    align: Literal["auto", "same_day", "previous_session"] = "auto"
    # The context's exchange, for `auto`; None: read from the ticker's Yahoo suffix (.L: XLON, none: XNYS).
    calendar: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class DataConfig(Section):
    dir: Annotated[str, Field(max_length=PATH_LENGTH)] | None = None
    price_column: Literal["adj_close", "close"] = "adj_close"
    # log_return or price; for a global run also excess or rank, which take the day's common move out of what the
    # model is trained on (cross-sectional targets, windows.py).
    target: Literal["log_return", "price", "excess", "rank"] = "log_return"
    features: Annotated[list[Feature], Field(min_length=1)] = ["log_return"]
    start: Date | None = None
    end: Date | None = None
    calendar: Annotated[str, Field(min_length=1, max_length=32)] = "XNYS"
    # Other series as inputs (the index, a sector ETF, a volatility index), aligned on the ticker's sessions.
    context: Annotated[list[ContextInput], Field(max_length=MAX_CONTEXT)] = []
    calendar_features: Annotated[list[CalendarFeature], Field(max_length=len(CalendarFeature.__args__))] = []
    # Sessions a missing context day is forward-filled for; windows that need a longer-missing one are dropped.
    context_max_gap: Annotated[Int, Field(ge=0, le=20)] = 3
    # Downloads started per second at most by a fetch over several tickers: Yahoo answers a faster client
    # with "too many requests" for minutes.
    fetch_rate: Annotated[Float, Field(ge=0.01, le=20)] = 2.0

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: expected each feature at most once")
        if len(set(self.calendar_features)) != len(self.calendar_features):
            raise ValueError("calendar_features: expected each feature at most once")
        inputs = [(entry.ticker, entry.feature) for entry in self.context]
        if len(set(inputs)) != len(inputs):
            raise ValueError("context: expected each ticker and feature at most once")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start: expected a date before data.end")
        return self


class SplitConfig(Section):
    # At least 0.1 %: a share so small it rounds to no day at all is a typo, not a split.
    val_fraction: Annotated[Float, Field(ge=0.001, lt=1)] = 0.1
    test_fraction: Annotated[Float, Field(ge=0.001, lt=1)] = 0.2
    val_start: Date | None = None
    test_start: Date | None = None

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction: expected val + test fractions < 0.9 (training needs rows)")
        if (self.val_start is None) != (self.test_start is None):
            raise ValueError("val_start: expected val_start and test_start to be given together")
        if self.val_start and self.test_start and self.val_start >= self.test_start:
            raise ValueError("val_start: expected a date before split.test_start")
        return self


class WindowConfig(Section):
    lookback: Annotated[Int, Field(ge=1, le=2000)] = 60
    horizon: Annotated[Int, Field(ge=1, le=250)] = 5


class ModelConfig(Section):
    type: Literal["lstm", "gru", "rnn"] = "lstm"
    hidden_size: Annotated[Int, Field(ge=1, le=4096)] = 64
    num_layers: Annotated[Int, Field(ge=1, le=16)] = 2
    dropout: Annotated[Float, Field(ge=0, lt=1)] = 0.2
    # local: one model per ticker; global: one model trained on the pooled windows of every ticker.
    scope: Literal["local", "global"] = "local"
    # A global model's learned ticker embedding size (0: none, so it can forecast tickers it never saw).
    ticker_embedding: Annotated[Int, Field(ge=0, le=256)] = 0


MAX_THREADS = 256
# A recorded thread schedule: `auto` looks again at most once a second, so a run of days changes count fewer
# times than this; and no run takes more mini-batch steps than MAX_STEPS.
MAX_THREAD_CHANGES = 100_000
MAX_STEPS = 10**12


class TrainConfig(Section):
    # Upper bounds no useful run comes near; past them a value is a typo (or hostile), not a choice.
    epochs: Annotated[Int, Field(ge=1, le=100_000)] = 50
    batch_size: Annotated[Int, Field(ge=1, le=65_536)] = 64
    lr: Annotated[Float, Field(gt=0, le=10)] = 1e-3
    weight_decay: Annotated[Float, Field(ge=0, le=10)] = 0.0
    patience: Annotated[Int, Field(ge=1, le=100_000)] = 10
    grad_clip: Annotated[Float, Field(ge=0, le=1e6)] = 1.0
    seed: Annotated[Int, Field(ge=0, le=MAX_SEED)] = 0
    # A seed ensemble: members trained with seeds seed … seed + seeds - 1, forecasts averaged.
    seeds: Annotated[Int, Field(ge=1, le=20)] = 1
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    loss: Literal["mse", "huber"] = "mse"
    # What chooses the best epoch and stops early: the validation loss, or for a global run the validation
    # period's mean daily rank IC of the day-1 forecasts across tickers (train.validation_rank_ic).
    select: Literal["loss", "rank_ic"] = "loss"
    lr_schedule: Literal["none", "plateau"] = "none"
    # CPU threads for training: `auto` (the cores other processes leave free, looked at again as training
    # goes, see trainer.ThreadPlan), a count, or a schedule an `auto` run recorded ([[step, threads], ...]),
    # replayed to repeat that run bit for bit.
    # Any, checked below: a union type would coerce `true` to 1 and describe itself badly in errors.
    threads: Any = "auto"

    @model_validator(mode="after")
    def _check_threads(self) -> TrainConfig:
        threads = self.threads
        if isinstance(threads, list | tuple):
            problem = thread_schedule_problem(threads)
            if problem:
                raise ValueError(f"threads: {problem}")
            self.threads = [[int(step), int(count)] for step, count in threads]
        elif threads != "auto" and (type(threads) is not int or not 1 <= threads <= MAX_THREADS):
            raise ValueError(f"threads: expected auto, an integer from 1 to {MAX_THREADS} or a recorded "
                             "schedule [[step, threads], ...]")
        return self


def thread_schedule_problem(schedule: Any) -> str | None:
    """What is wrong with a recorded thread schedule ([[first step, threads], ...], steps rising from 0), or None."""
    if not isinstance(schedule, list | tuple) or not 1 <= len(schedule) <= MAX_THREAD_CHANGES:
        return f"a schedule holds 1 to {MAX_THREAD_CHANGES:,} [step, threads] pairs"
    previous = -1
    for pair in schedule:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(type(x) is int for x in pair)):
            return "each schedule entry is a pair of integers [step, threads]"
        step, count = pair
        if not previous < step <= MAX_STEPS or not 1 <= count <= MAX_THREADS:
            return (f"schedule steps rise from 0 (at most {MAX_STEPS:,}) and threads are 1 to {MAX_THREADS}; "
                    f"got [{step}, {count}]")
        if previous == -1 and step != 0:
            return "a schedule starts at step 0"
        previous = step
    return None


class RunsConfig(Section):
    dir: Annotated[str, Field(max_length=PATH_LENGTH)] | None = None


class EvaluateConfig(Section):
    folds: Annotated[Int, Field(ge=1, le=50)] = 4
    cost_bps: Annotated[Float, Field(ge=0, le=10_000)] = 5.0  # 10,000 bps: the whole position
    # A global run's long–short diagnostic: long the k highest forecasts, short the k lowest, each day.
    long_short_k: Annotated[Int, Field(ge=1, le=1000)] = 10
    # ... and beside it the same books held this many days (1: the daily rows only). 5 is a documented starting
    # value, not yet chosen by the validation protocol (README, "Costs a ranking can survive").
    long_short_hold: Annotated[Int, Field(ge=1, le=250)] = 5


class PredictConfig(Section):
    levels: Annotated[list[Annotated[Float, Field(gt=0, lt=100)]], Field(min_length=1, max_length=10)] = [80.0, 95.0]


class Config(Section):
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    window: WindowConfig = WindowConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    runs: RunsConfig = RunsConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    predict: PredictConfig = PredictConfig()

    @model_validator(mode="after")
    def _check_scope(self) -> Config:
        # Both compare tickers with each other day by day: a model of one ticker has no cross-section.
        if self.model.scope == "local" and (cross := cross_sectional_settings(self)):
            key, value = cross[0]
            raise ValueError(f"{key}: expected {' or '.join(LOCAL_CHOICES[key])} for a local model ({value} compares "
                             "tickers day by day: set model.scope global, --scope global)")
        return self

    def to_plain(self) -> dict[str, Any]:
        """Plain YAML-safe values (dates as ISO strings), as written to a bundle's config.yaml."""
        return self.model_dump(mode="json")


# The settings that compare tickers day by day, and what a local model may choose instead.
CROSS_SECTIONAL = {"data.target": ("excess", "rank"), "train.select": ("rank_ic",)}
LOCAL_CHOICES = {"data.target": ("log_return", "price"), "train.select": ("loss",)}


def cross_sectional_settings(config: Config) -> list[tuple[str, str]]:
    """The (key, value) settings of `config` that compare tickers day by day, so need a global model."""
    values = {"data.target": config.data.target, "train.select": config.train.select}
    return [(key, values[key]) for key, chosen in CROSS_SECTIONAL.items() if values[key] in chosen]


# What decides the weights a run trains, and so whether two runs are "trained alike" (`--resume`): not where
# the files go (data.dir, runs.dir), nor how fast (data.fetch_rate, train.device, train.threads; threads change
# the last bits only), nor how a run is later judged or used (evaluate, predict).
NOT_HASHED = {
    "data": {"dir", "fetch_rate"}, "runs": True, "train": {"device", "threads"}, "evaluate": True, "predict": True,
}


def config_hash(config: Config) -> str:
    """sha256 (hex) of the settings that decide what is trained, as canonical JSON (sorted keys): see NOT_HASHED."""
    plain = config.model_dump(mode="json", exclude=NOT_HASHED)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


PACKAGED_FOLDER = "configs"  # inside the package: lstm_forecast/configs/
SEARCH_SPACE = "search"  # the packaged config that is tune's default search space, not a run config
DEFAULTS_SOURCE = "defaults"
SET_SOURCE = "--set"
# A config is a few kilobytes; a megabyte is far beyond any real one and still quick to refuse.
CONFIG_SIZE_LIMIT = 1 << 20
# A config nests three deep (section, key, list); anything near this limit is not a config.
MAX_YAML_DEPTH = 32
# A YAML integer or timestamp longer than this is no count, seed or date (Python refuses > 4300 digits).
MAX_NUMBER_LENGTH = 100


def load_config(
    path: Path | str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    options: Mapping[str, tuple[str, Any]] | None = None,
) -> Config:
    """Merge the defaults, an optional YAML file, `--set` overrides and CLI shortcut options, and validate once.

    `options` maps a key to the option that set it and its value, e.g. `{"model.type": ("--model", "gru")}`
    (None: not given), so an error names the option the user typed.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        path = resolve_config(path)
        file_values = read_yaml_mapping(path)
        _deep_merge(merged, file_values, sources, str(path))
    for item in overrides:
        _deep_merge(merged, parse_override(item), sources, SET_SOURCE)
    for key, (option, value) in (options or {}).items():
        if value is not None:
            section, name = key.split(".")
            _deep_merge(merged, {section: {name: value}}, sources, option)
    return validate_config(merged, sources)


def packaged_configs() -> dict[str, Path]:
    """The packaged configs by name (file name without `.yaml`), sorted: lstm_forecast/configs/*.yaml.

    pip installs a wheel as files, so each resource is a real path: the bounded reader and every error message
    use it as they use a file the user names.
    """
    folder = importlib.resources.files("lstm_forecast") / PACKAGED_FOLDER
    files = sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    return {file.name.removesuffix(".yaml"): file for file in files}


def packaged_config(name: str) -> Path:
    """The packaged config called `name` (`.yaml` optional); an unknown one is a usage error naming them all."""
    found = packaged_configs().get(name.removesuffix(".yaml"))
    if found is None:
        raise UsageError(f"no packaged config {quote(name, 40)}; {_packaged_names(packaged_configs())}")
    return found


def resolve_config(path: Path | str) -> Path:
    """`--config`'s value as a file: a path that exists wins; a bare name (no folder, `.yaml` optional) is the
    packaged config of that name."""
    given = str(path)
    try:
        Path(given).stat()
        return Path(given)  # there (the reader refuses what is not a regular file)
    except FileNotFoundError:
        pass
    except OSError:  # a name too long, a folder not searchable: the reader says which
        return Path(given)
    if any(sep in given for sep in ("/", os.sep, os.altsep) if sep):
        raise UsageError(f"{shorten(given, 60)}: config file not found")  # as given, not Path(given)
    name = given.removesuffix(".yaml")
    if name == SEARCH_SPACE:  # loading it as a config would fail on its dotted keys, a puzzling error
        raise UsageError(f"{quote(given)} is tune's packaged search space, not a config: tune uses it by "
                         "default (`lstm-forecast config show search` prints it)")
    configs = {key: value for key, value in packaged_configs().items() if key != SEARCH_SPACE}
    if name not in configs:
        raise UsageError(f"{shorten(given, 40)}: config file not found, nor a packaged config of that name; "
                         f"{_packaged_names(configs)}")
    return configs[name]


def _packaged_names(names: Iterable[str]) -> str:
    return f"packaged: {', '.join(names)} (`lstm-forecast config show NAME` prints one)"


def check_training_options(config: Config, jobs: int, executor: str, resume: Path | None) -> None:
    """The rules between model.scope and `train`'s options: worker processes (--jobs, --executor) and --resume
    train local models, one per ticker (each a seed ensemble with train.seeds > 1, as a global model is)."""
    if config.model.scope == "global" and (jobs > 1 or executor != "local" or resume is not None):
        raise UsageError("--jobs, --executor and --resume train local models; a global model trains in one "
                         "process (its batches mix every ticker)")


def config_from_plain(values: dict[str, Any], source: str) -> Config:
    """Rebuild a Config from plain values (a bundle's config.yaml)."""
    return validate_config(values, {}, default_source=source)


class RefusedYAML(yaml.YAMLError):
    """Valid YAML that a config never needs and that could hide a mistake or exhaust memory."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        self.problem = problem
        self.line = mark.line + 1 if mark is not None else None
        super().__init__(f"line {self.line}: {problem}" if self.line else problem)


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the refusals described at the top of this module."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise RefusedYAML(
                f"YAML aliases (*{quote(event.anchor, 20).strip(chr(39))}) are not allowed in a config; "
                "write the value out", event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise RefusedYAML(f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged by the base class
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if duplicate:
                raise RefusedYAML(f"duplicate key {quote(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_number(self, node: Any) -> Any:
        """Ints (with base-60 forms) and timestamps: short ones only, and a bad date is an error, not a crash."""
        if len(node.value) > MAX_NUMBER_LENGTH:
            raise RefusedYAML(f"a number of {len(node.value):,} characters", node.start_mark)
        construct = {"tag:yaml.org,2002:int": yaml.SafeLoader.construct_yaml_int,
                     "tag:yaml.org,2002:timestamp": yaml.SafeLoader.construct_yaml_timestamp}[node.tag]
        try:
            return construct(self, node)
        except (ValueError, OverflowError) as exc:  # e.g. `0000-01-01`: year 0 is out of range
            raise RefusedYAML(f"invalid value {quote(node.value)} ({exc})", node.start_mark) from None


for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp"):
    ConfigLoader.add_constructor(_tag, ConfigLoader.construct_bounded_number)


def load_yaml(text: str) -> Any:
    """Parse YAML text with `ConfigLoader`; every failure is a `yaml.YAMLError` (RefusedYAML for ours)."""
    loader = ConfigLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # the depth bound should come first; this is the backstop
        raise RefusedYAML(f"nested more than {MAX_YAML_DEPTH} levels deep") from None
    except MemoryError:
        raise RefusedYAML("too large to load") from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML config file (bounded, safe loader); anything but a mapping (or empty) is an error."""
    try:
        text = read_bounded(path, CONFIG_SIZE_LIMIT, "a config file", UsageError).decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: cannot read config file (not UTF-8 text)") from None
    try:
        values = load_yaml(text)
    except RefusedYAML as exc:
        raise UsageError(f"{path}: {exc}") from None
    except yaml.constructor.ConstructorError as exc:
        tag = f" {quote(exc.problem, 80)}" if exc.problem else ""
        raise UsageError(f"{path}: refused YAML tag{tag}: only plain YAML values are allowed") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UsageError(f"{path}: invalid YAML{where}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of sections (data:, train:, ...), got {_show(values)}")
    return values


def parse_override(item: str) -> dict[str, Any]:
    """`train.epochs=5` -> {"train": {"epochs": 5}}; the value is parsed as YAML, as in a config file."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise UsageError(f"--set {quote(item)}: expected section.key=value, e.g. --set train.epochs=20")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except RefusedYAML as exc:
        raise UsageError(f"--set {quote(key)}: {exc.problem}") from None
    except yaml.YAMLError:
        value = raw  # not YAML at all: the text itself, which validation then judges
    return {parts[0]: {parts[1]: value}}


def validate_config(
    values: dict[str, Any], sources: dict[str, str], default_source: str = DEFAULTS_SOURCE
) -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as exc:
        raise UsageError(_describe_error(exc, values, sources, default_source)) from None


def _deep_merge(target: dict[str, Any], new: dict[str, Any], sources: dict[str, str], source: str) -> None:
    for section, section_values in new.items():
        key = str(section)
        if isinstance(section_values, dict) and isinstance(target.get(key), dict | None):
            merged = target.setdefault(key, {})
            for name, value in section_values.items():
                merged[str(name)] = value
                sources[f"{key}.{name}"] = source
        else:
            target[key] = section_values
            sources[key] = source


def _describe_error(
    exc: ValidationError, values: dict[str, Any], sources: dict[str, str], default_source: str
) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    message = error["msg"]
    if error["type"] == "value_error":
        # Cross-field checks raise "key: expected ..." about a key of their own section.
        text = message.removeprefix("Value error, ")
        field, _, expectation = text.partition(": ")
        # A field's own validator is located at it already; a check across sections names its section.key.
        loc = loc if loc and loc[-1] == field else [*loc, *field.split(".")]
        key = _short(".".join(loc))
        value = _lookup(values, loc)
        return f"{_source_of(loc, sources, default_source)}: {key}: {expectation}, got {_show(value)}"
    key = _short(".".join(part for part in loc if not part.isdigit()))
    source = _source_of(loc, sources, default_source)
    if error["type"] == "extra_forbidden":
        return f"{source}: {key}: unknown key (expected one of {', '.join(_known_keys(loc))})"
    if source.startswith("--") and source != SET_SOURCE:  # a shortcut option: name it, then its key
        return f"{source} ({key}): expected {_expectation(loc)}, got {_show(error.get('input'))}"
    return f"{source}: {key}: expected {_expectation(loc)}, got {_show(error.get('input'))}"


def _source_of(loc: list[str], sources: dict[str, str], default_source: str) -> str:
    """Where the offending value came from: the file, `--set`, or the defaults."""
    for key in (".".join(loc[:2]), loc[0]):
        if key in sources:
            return sources[key]
    section_sources = [src for key, src in sources.items() if key.startswith(loc[0] + ".")]
    return section_sources[-1] if section_sources else default_source


def _known_keys(loc: list[str]) -> list[str]:
    """The keys of the mapping that holds the unknown key `loc[-1]` (a section, or an item of data.context)."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None:
            continue  # a list index
        annotation = field.annotation
        if typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


def _expectation(loc: list[str]) -> str:
    """Describe what a field accepts from its annotation and its numeric bounds."""
    model: type[BaseModel] = Config
    field = None
    for part in loc:
        if part.isdigit() or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        if typing.get_origin(annotation) is list:  # data.context.0.ticker: a field of the listed model
            annotation = typing.get_args(annotation)[0]
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if field is None:
        return "a valid value"
    return _describe_annotation(field.annotation, field.metadata)


def _describe_annotation(annotation: Any, metadata: list[Any]) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:  # a Field(...) inside Annotated carries its bounds in its own metadata
        inner = [part for arg in args[1:] for part in (arg.metadata if isinstance(arg, FieldInfo) else [arg])]
        return _describe_annotation(args[0], inner + metadata)
    if origin is Literal:
        return "one of " + ", ".join(str(arg) for arg in args)
    longest = next((item.max_length for item in metadata if isinstance(item, annotated_types.MaxLen)), None)
    if origin is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        at_most = f"at most {longest} " if longest else ""
        return f"a list of {at_most}mappings with keys {', '.join(args[0].model_fields)}"
    if origin is list:
        at_most = f" (at most {longest})" if longest else ""
        return f"a list of {_plural(_describe_annotation(args[0], []))}{at_most}"
    if annotation is str and longest:
        return f"a string of at most {longest} characters"
    if type(None) in args:
        inner = [arg for arg in args if arg is not type(None)]
        return _describe_annotation(inner[0], metadata) + " (or null)"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dt.date: "a date YYYY-MM-DD"}
    text = names.get(annotation, getattr(annotation, "__name__", "a value"))
    bounds = []
    for item in metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                bounds.append(f"{symbol} {value}")
    return f"{text} {' and '.join(bounds)}".strip()


def _plural(text: str) -> str:
    if text.startswith("one of "):
        return "values in " + text.removeprefix("one of ")
    noun, _, bounds = text.removeprefix("an ").removeprefix("a ").partition(" ")
    return f"{noun}s {bounds}".strip()


def _lookup(values: dict[str, Any], loc: list[str]) -> Any:
    current: Any = values
    for part in loc:
        if isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return None
    return current


def _show(value: Any) -> str:
    return quote(value)


def _short(key: str) -> str:
    """A key as the user wrote it, cut short: an unknown key may be a megabyte long."""
    return shorten(key, 40)
