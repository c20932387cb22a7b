"""The search space of `tune`: which config keys a trial may change, and over what ranges or choices.

A space is a YAML mapping of the config's own keys (`section.key`) to a range or a list of choices:

    window.lookback: {int: [10, 120], log: true}     # integers, sampled on a log scale
    train.lr: {float: [1.0e-4, 1.0e-2], log: true}
    model.type: [lstm, gru]                          # a choice
    data.features: [[log_return], [log_return, range]]   # a list-valued key: a choice of lists

It is read with the config's bounded, safe YAML reader and checked completely before any trial runs: every
key must exist in the config schema and be one a search may change; each range's two ends and each choice
must make a valid config (the schema's own bounds apply, and the message is the schema's); and the config
made of every low end, and of every high end, must be valid together. A mistake therefore costs nothing,
not a night of failed trials.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_forecast.config import Config, read_yaml_mapping, validate_config
from lstm_forecast.errors import UsageError, quote, shorten

# Keys a search must not change, and why: each decides what the trials are compared on (the days, the
# validation period, the horizon scored), is luck rather than a setting (the seed), or changes only where and
# how fast a trial runs.
NOT_SEARCHABLE = {
    "data.dir": "where the prices are is not a setting of the model",
    "data.price_column": "it changes the prices the trials are scored on",
    "data.start": "it changes the days the trials are scored on",
    "data.end": "it changes the days the trials are scored on",
    "data.calendar": "the exchange calendar is not a setting of the model",
    "data.fetch_rate": "it only paces downloads",
    "split": "the split decides the validation period every trial is compared on",
    "window.horizon": "trials are compared on forecasts of one horizon",
    "model.scope": "tune searches local models (one per ticker)",
    "model.ticker_embedding": "tune searches local models (one per ticker)",
    "train.seed": "searching over seeds picks luck, not settings (every trial trains with train.seed)",
    "train.seeds": "a seed ensemble is a global model's",
    "train.device": "the device changes where a trial runs, not what it learns",
    "train.threads": "tune sets each trial's threads itself (see --jobs)",
    "runs": "where bundles go is not a setting of the model",
    "evaluate": "evaluation settings do not change the model",
    "predict": "prediction settings do not change the model",
}
RANGE_KINDS = ("int", "float")
SPACE_HELP = "expected {int: [low, high]} or {float: [low, high]} (with log: true for a log scale) or a list of choices"


@dataclass(frozen=True)
class Dimension:
    """One key of the space: a range (`kind` int or float, `low` < `high`) or a choice among `choices`."""

    key: str  # section.key
    kind: str  # int, float or choice
    low: int | float | None = None  # an int for an int range
    high: int | float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()  # config values; lists (data.features) are kept as tuples

    def suggest(self, trial: Any) -> Any:
        """The config value an Optuna trial draws for this key."""
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        # Optuna's choices must be plain scalars: a list-valued choice is offered under its label.
        labels = [choice_label(choice) for choice in self.choices]
        label = trial.suggest_categorical(self.key, labels)
        return self.value_of(label)

    def value_of(self, param: Any) -> Any:
        """The config value of a stored Optuna parameter (a choice's label back to its list)."""
        if self.kind != "choice":
            return param
        for choice in self.choices:
            if choice_label(choice) == param:
                return list(choice) if isinstance(choice, tuple) else choice
        raise ValueError(f"{self.key}: {param!r} is not one of the space's choices")

    def describe(self) -> str:
        if self.kind == "choice":
            return " | ".join(choice_label(choice) for choice in self.choices)
        scale = ", log" if self.log else ""
        return f"{self.kind} {self.low:g} … {self.high:g}{scale}"


def choice_label(choice: Any) -> Any:
    """A choice as Optuna stores it: a list becomes `a+b+c`, a scalar stays as it is."""
    return "+".join(str(item) for item in choice) if isinstance(choice, tuple | list) else choice


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    source: str  # the file it was read from, for messages

    @property
    def keys(self) -> list[str]:
        return [dimension.key for dimension in self.dimensions]

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready: a study records it beside its digest, so `tune` can say what a study was made with."""
        plain = {}
        for dimension in self.dimensions:
            if dimension.kind == "choice":
                plain[dimension.key] = [list(c) if isinstance(c, tuple) else c for c in dimension.choices]
            else:
                plain[dimension.key] = {dimension.kind: [dimension.low, dimension.high], "log": dimension.log}
        return plain

    def digest(self) -> str:
        """sha256 of the space as canonical JSON: the same ranges and choices, however the file was written."""
        return hashlib.sha256(json.dumps(self.to_plain(), sort_keys=True).encode()).hexdigest()

    def sample(self, trial: Any) -> dict[str, Any]:
        """Config values for every key, drawn by the trial."""
        return {dimension.key: dimension.suggest(trial) for dimension in self.dimensions}

    def values_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """Config values of a finished trial's stored parameters."""
        return {dimension.key: dimension.value_of(params[dimension.key]) for dimension in self.dimensions}


def with_values(base: Config, values: dict[str, Any], source: str) -> Config:
    """`base` with `values` (section.key -> value) set, validated by the schema; errors name `source`."""
    plain = base.to_plain()
    for key, value in values.items():
        section, name = key.split(".")
        plain[section][name] = list(value) if isinstance(value, tuple) else value
    return validate_config(plain, {}, default_source=source)


def load_space(path: Path, base: Config) -> SearchSpace:
    """Read and check the space in `path` against the config schema, over the `base` config (see the top)."""
    source = str(path)
    entries = read_yaml_mapping(Path(path))
    if not entries:
        raise UsageError(f"{source}: the search space is empty; give at least one key, e.g. "
                         "window.lookback: {int: [10, 120], log: true}")
    dimensions = tuple(_dimension(str(key), value, base, source) for key, value in entries.items())
    space = SearchSpace(dimensions, source)
    # Each end is valid alone; the lows together and the highs together must be too (a cross-field check).
    for end in ("low", "high"):
        corner = {d.key: getattr(d, end) for d in dimensions if d.kind != "choice"}
        if len(corner) > 1:
            with_values(base, corner, source)
    return space


def _dimension(key: str, entry: Any, base: Config, source: str) -> Dimension:
    shown = shorten(key, 40)
    current = _current_value(key, base, source)
    if isinstance(entry, list):
        return _choice(key, entry, current, base, source)
    if not isinstance(entry, dict):
        raise UsageError(f"{source}: {shown}: {SPACE_HELP}, got {quote(entry)}")
    kinds = [kind for kind in RANGE_KINDS if kind in entry]
    unknown = sorted(str(name) for name in entry if name not in (*RANGE_KINDS, "log"))
    if len(kinds) != 1 or unknown:
        raise UsageError(f"{source}: {shown}: {SPACE_HELP}, got {quote(entry)}")
    kind = kinds[0]
    if isinstance(current, bool) or not isinstance(current, int | float):
        raise UsageError(f"{source}: {shown}: a range needs a numeric key, and {shown} is {quote(current)}; "
                         "give a list of choices instead")
    if kind == "float" and isinstance(current, int):
        raise UsageError(f"{source}: {shown}: an integer key; use {{int: [low, high]}}")
    bounds = entry[kind]
    number = int if kind == "int" else (int, float)
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(end, number) and not isinstance(end, bool) for end in bounds)):
        expected = "two integers" if kind == "int" else "two numbers"
        raise UsageError(f"{source}: {shown}: {kind}: expected [low, high], {expected}, got {quote(bounds)}")
    low, high = bounds
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise UsageError(f"{source}: {shown}: log: expected true or false, got {quote(log)}")
    if not low < high:
        raise UsageError(f"{source}: {shown}: expected low < high, got [{low}, {high}]; for one value, set "
                         f"it in the config instead (--set {key}={low})")
    if log and low <= 0:
        raise UsageError(f"{source}: {shown}: a log scale needs low > 0, got [{low}, {high}]")
    cast = int if kind == "int" else float
    for end in (low, high):  # the schema's own bounds, in the schema's own words
        with_values(base, {key: cast(end)}, source)
    return Dimension(key, kind, low=cast(low), high=cast(high), log=log)


def _choice(key: str, entry: list[Any], current: Any, base: Config, source: str) -> Dimension:
    shown = shorten(key, 40)
    if not entry:
        raise UsageError(f"{source}: {shown}: an empty list of choices")
    list_valued = isinstance(current, list)
    choices = tuple(tuple(choice) if list_valued and isinstance(choice, list) else choice for choice in entry)
    for choice in choices:
        if isinstance(choice, dict | list) or (isinstance(choice, tuple) and not list_valued):
            raise UsageError(f"{source}: {shown}: choices are plain values{' or lists' * list_valued}, got "
                             f"{quote(list(choice) if isinstance(choice, tuple) else choice)}")
        with_values(base, {key: choice}, source)
    labels = [choice_label(choice) for choice in choices]
    repeated = sorted({str(label) for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"{source}: {shown}: choice {quote(repeated[0])} is given twice")
    return Dimension(key, "choice", choices=choices)


def _current_value(key: str, base: Config, source: str) -> Any:
    """The base config's value of `key`, after checking it is a key of the schema that a search may change."""
    shown = shorten(key, 40)
    section, _, name = key.partition(".")
    sections = list(Config.model_fields)
    if not name or "." in name:
        raise UsageError(f"{source}: {shown}: expected a config key section.key, e.g. window.lookback")
    if section not in Config.model_fields:
        raise UsageError(f"{source}: {shown}: unknown section (expected one of {', '.join(sections)})")
    fields = type(getattr(base, section)).model_fields
    if name not in fields:
        raise UsageError(f"{source}: {shown}: unknown key (expected one of {', '.join(fields)})")
    reason = NOT_SEARCHABLE.get(key) or NOT_SEARCHABLE.get(section)
    if reason:
        raise UsageError(f"{source}: {shown}: not searchable: {reason}")
    return getattr(getattr(base, section), name)
