"""Configuration: defaults, merging, --set overrides and the wording of every error."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from lstm_forecast.config import Config, config_hash, load_config, packaged_config, parse_override
from lstm_forecast.errors import UsageError


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(UsageError) as caught:
        load_config(*args, **kwargs)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_defaults_match_the_guide():
    config = load_config()
    assert config.data.price_column == "adj_close"
    assert config.data.target == "log_return"
    assert config.data.features == ["log_return"]
    assert (config.split.val_fraction, config.split.test_fraction) == (0.1, 0.2)
    assert (config.window.lookback, config.window.horizon) == (60, 5)
    assert (config.model.type, config.model.hidden_size, config.model.num_layers) == ("lstm", 64, 2)
    assert config.model.dropout == 0.2
    assert (config.train.epochs, config.train.batch_size, config.train.lr) == (50, 64, 1e-3)
    assert (config.train.patience, config.train.grad_clip, config.train.seed) == (10, 1.0, 0)
    assert config.train.device == "auto"


def test_default_yaml_lists_every_key_with_the_default_value():
    values = yaml.safe_load(packaged_config("default").read_text())
    assert values == Config().to_plain()
    text = packaged_config("default").read_text()
    for line in text.splitlines():
        if line.startswith("  ") and ":" in line:
            assert "#" in line, f"key without a comment: {line!r}"


@pytest.mark.parametrize("name", ["default.yaml", "quick.yaml", "tsla.yaml", "global.yaml"])
def test_shipped_configs_load(name):
    load_config(packaged_config(name))


def test_file_merges_over_defaults_and_set_over_file(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 7\n  lr: 0.01\nmodel:\n  type: gru\n")
    config = load_config(path, ["train.epochs=9", "data.features=[log_return, range]", "data.start=2020-01-02"])
    assert config.train.epochs == 9  # --set wins over the file
    assert config.train.lr == 0.01  # the file wins over the defaults
    assert config.train.batch_size == 64  # untouched keys keep their defaults
    assert config.model.type == "gru"
    assert config.data.features == ["log_return", "range"]
    assert config.data.start == dt.date(2020, 1, 2)


def test_set_values_are_yaml_scalars():
    assert parse_override("train.lr=0.0001") == {"train": {"lr": 0.0001}}
    assert parse_override("model.type=gru") == {"model": {"type": "gru"}}
    assert parse_override("data.dir=null") == {"data": {"dir": None}}
    assert load_config(None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)


def test_error_names_file_key_expectation_and_value(tmp_path):
    path = write(tmp_path, "train:\n  epochs: ten\n")
    assert error_of(path) == f"{path}: train.epochs: expected an integer >= 1 and <= 100000, got 'ten'"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("window.lookback=0", "--set: window.lookback: expected an integer >= 1"),
        ("model.dropout=1.5", "--set: model.dropout: expected a number >= 0 and < 1, got 1.5"),
        ("train.lr=-1", "--set: train.lr: expected a number > 0 and <= 10, got -1"),
        ("model.type=transformer", "--set: model.type: expected one of lstm, gru, rnn, got 'transformer'"),
        ("data.features=[price]", "data.features: expected a list of values in log_return, volume_change"),
        ("train.device=tpu", "train.device: expected one of auto, cpu, cuda, mps"),
        ("train.epoch=3", "--set: train.epoch: unknown key (expected one of epochs,"),
        ("bogus.key=1", "--set: bogus: unknown key (expected one of data, split"),
        ("split.test_fraction=0.85", "split.val_fraction: expected val + test fractions < 0.9"),
        ("data.start=yesterday", "data.start: expected a date YYYY-MM-DD >= 1900-01-01 and <= 2200-12-31 (or null), "
                                 "got 'yesterday'"),
    ],
)
def test_override_errors(override, fragment):
    assert fragment in error_of(None, [override])


@pytest.mark.parametrize("override", ["train.epochs", "=3", "epochs=3", "a.b.c=1"])
def test_malformed_set_is_a_usage_error(override):
    assert "expected section.key=value" in error_of(None, [override])


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = write(tmp_path, "train:\n  epochz: 3\n")
    assert error_of(path).startswith(f"{path}: train.epochz: unknown key")


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "train:\n  epochs: [1, 2\n")
    message = error_of(path)
    assert message.startswith(f"{path}: invalid YAML at line")


def test_python_tags_are_refused(tmp_path):
    path = write(tmp_path, "train: !!python/object/apply:os.system ['echo hacked']\n")
    assert "refused YAML tag" in error_of(path)


def test_non_mapping_and_missing_file(tmp_path):
    assert "expected a mapping" in error_of(write(tmp_path, "- 1\n- 2\n"))
    assert "config file not found" in error_of(tmp_path / "nope.yaml")


def test_empty_file_means_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


# --- YAML that plain loaders accept but a config must refuse ------------------------------------------

BILLION_LAUGHS = "\n".join(
    [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
    + [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 9)]
) + "\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("model: {type: gru}\nmodel: {hidden_size: 8}\n", "line 2: duplicate key 'model'"),
        ("train:\n  epochs: 3\n  lr: 0.1\n  epochs: 4\n", "line 4: duplicate key 'epochs'"),
        ("train: {lr: &a 0.1, weight_decay: *a}\n", "line 1: YAML aliases (*a) are not allowed in a config"),
        (BILLION_LAUGHS, "line 2: YAML aliases (*a0) are not allowed in a config"),
        ("train: {lr: " + "[" * 100_000 + "]" * 100_000 + "}\n", "line 1: nested more than 32 levels deep"),
        ("train: {epochs: " + "1" * 5000 + "}\n", "line 1: a number of 5,000 characters"),
        ("train: {seed: " + ":".join(["59"] * 40) + "}\n", "a number of 119 characters"),  # YAML 1.1 base 60
        ("data: {start: 0000-01-01}\n", "line 1: invalid value '0000-01-01' (year 0 is out of range)"),
        ("data: {start: 1600-01-01}\n", "data.start: expected a date YYYY-MM-DD >= 1900-01-01 and <= 2200-12-31"),
        ("data: {end: 2300-01-01}\n", "got 2300-01-01"),
        ("train: {seed: 4294967296}\n", "train.seed: expected an integer >= 0 and <= 4294967295, got 4294967296"),
        ("train: {lr: 1.0e+308}\n", "train.lr: expected a number > 0 and <= 10, got 1e+308"),
        ("train: {grad_clip: .nan}\n", "train.grad_clip: expected a number >= 0 and <= 1000000.0, got nan"),
        ("train: {epochs: 1000000}\n", "train.epochs: expected an integer >= 1 and <= 100000"),
        ("train: {batch_size: 10000000}\n", "train.batch_size: expected an integer >= 1 and <= 65536"),
        ("train: {patience: 1000000}\n", "train.patience: expected an integer >= 1 and <= 100000"),
        ("train: {weight_decay: 100}\n", "train.weight_decay: expected a number >= 0 and <= 10, got 100"),
        ("evaluate: {cost_bps: 1.0e+300}\n", "evaluate.cost_bps: expected a number >= 0 and <= 10000"),
        ("data: {calendar: " + "X" * 5000 + "}\n", "data.calendar: expected a string of at most 32 characters"),
        ("train:\n  ? " + "e" * 100_000 + "\n  : 1\n", "train." + "e" * 33 + "…: unknown key"),
        ("model: {type: " + "x" * 1_000_000 + "}\n", "model.type: expected one of lstm, gru, rnn, got 'xxxx"),
    ],
    ids=["duplicate-section", "duplicate-key", "alias", "billion-laughs", "nested-100000", "5000-digits",
         "base-60", "year-0", "date-1600", "date-2300", "seed-2**32", "lr-1e308", "grad-clip-nan", "epochs-huge",
         "batch-huge", "patience-huge", "weight-decay-100", "cost-1e300", "long-calendar", "long-key", "long-value"],
)
def test_hostile_yaml_is_one_short_usage_error(tmp_path, text, fragment):
    path = write(tmp_path, text)
    message = error_of(path)
    assert fragment in message and message.startswith(f"{path}: ")
    assert len(message) < 200 + len(str(path))


def test_merge_keys_without_aliases_still_work(tmp_path):
    assert load_config(write(tmp_path, "train: {<<: {epochs: 3}}\n")).train.epochs == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=[&a 1, *a, *a]", "--set 'train.lr': YAML aliases (*a) are not allowed in a config"),
        ("train.epochs=" + "9" * 5000, "--set 'train.epochs': a number of 5,000 characters"),
        ("train.lr=" + "[" * 50_000, "--set 'train.lr': nested more than 32 levels deep"),
        ("data.start=1600-01-01", "--set: data.start: expected a date YYYY-MM-DD >= 1900-01-01 and <= 2200-12-31"),
        ("a.b.c" + "x" * 100_000 + "=1", "--set 'a.b.c" + "x" * 32 + "…': expected section.key=value"),
    ],
)
def test_hostile_set_values(override, message):
    text = error_of(None, [override])
    assert text.startswith(message) and len(text) < 200


def test_shortcut_options_are_named_in_errors():
    def error(**options):
        return error_of(None, [], {key: value for key, value in options.items()})

    assert error(**{"model.type": ("--model", "transformer")}) == (
        "--model (model.type): expected one of lstm, gru, rnn, got 'transformer'"
    )
    assert error(**{"train.epochs": ("--epochs", 0)}).startswith("--epochs (train.epochs): expected an integer >= 1")
    assert error(**{"train.seed": ("--seed", 2**32)}) == (
        "--seed (train.seed): expected an integer >= 0 and <= 4294967295, got 4294967296"
    )


def test_shortcut_options_win_over_set_and_none_means_not_given(tmp_path):
    path = write(tmp_path, "train: {epochs: 7}\nmodel: {type: rnn}\n")
    config = load_config(path, ["train.epochs=9"], {"train.epochs": ("--epochs", 11), "model.type": ("--model", None)})
    assert config.train.epochs == 11 and config.model.type == "rnn"


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_config_that_is_not_a_regular_file_is_refused_unread(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "c.yaml"
        os.mkfifo(path)
    assert error_of(path) == f"{path}: not a regular file; expected a config file"


def test_a_config_over_a_megabyte_is_refused(tmp_path):
    path = write(tmp_path, "# padding\n" * 120_000)
    assert "more than a config file can be (1,048,576 bytes at most)" in error_of(path)


def test_config_hash_covers_what_decides_the_weights_only():
    config = load_config(None, ["train.seed=3"])
    plain = config.model_dump(mode="json")
    del plain["data"]["dir"], plain["data"]["fetch_rate"], plain["runs"], plain["train"]["device"]
    del plain["train"]["threads"]
    del plain["evaluate"], plain["predict"]
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    assert config_hash(config) == hashlib.sha256(canonical.encode()).hexdigest()
    elsewhere = ["train.seed=3", "data.dir=/elsewhere", "runs.dir=r", "train.threads=2", "train.device=cpu",
                 "evaluate.folds=2", "predict.levels=[50]"]
    assert config_hash(load_config(None, elsewhere)) == config_hash(config)
    for change in ("train.seed=4", "model.hidden_size=8", "window.lookback=10", "data.features=[range]"):
        assert config_hash(load_config(None, [change])) != config_hash(config), change
