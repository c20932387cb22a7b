"""Run bundles: an exact save/load round trip, one-line errors for damaged bundles, no unpickling ever,
atomic writes, finding the latest run, and where the runs dir is."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
import yaml
from conftest import TICKER, TINY_OVERRIDES

from lstm_forecast import bundle as bundles
from lstm_forecast import files, plots, train
from lstm_forecast.bundle import (
    find_run,
    list_runs,
    load_bundle,
    remove_stale_temp_dirs,
    resolve_runs_dir,
    save_run,
)
from lstm_forecast.config import config_hash, load_config
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.prices import COLUMNS, prices_sha256
from lstm_forecast.windows import build_dataset

# The tiny model 6 wide: the checks below quote its size (230 parameters, `hidden_size: 6` in config.yaml).
TINY = [*TINY_OVERRIDES, "model.hidden_size=6"]


def random_walk_prices(n: int = 260, seed: int = 3) -> pd.DataFrame:
    """A canonical price frame: business days, geometric random walk."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n)))
    volume = rng.integers(100_000, 900_000, n).astype(np.float64)
    dates = pd.bdate_range("2021-01-04", periods=n, name="Date").as_unit("ns")
    columns = [close, close * 1.01, close * 0.99, close, close, volume]
    return pd.DataFrame(dict(zip(COLUMNS, columns, strict=True)), index=dates)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> train.TrainOutcome:
    prices = random_walk_prices()
    return train.train_run(load_config(None, TINY), TICKER, prices, tmp_path_factory.mktemp("runs"))


@pytest.fixture
def run_dir(trained: train.TrainOutcome, tmp_path: Path) -> Path:
    """A private copy of the trained bundle that a test may damage."""
    copy = tmp_path / "runs" / TICKER / trained.run_dir.name
    shutil.copytree(trained.run_dir, copy)
    return copy


def edit_document(run_dir: Path, change) -> None:
    path = run_dir / "bundle.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def load_error(run_dir: Path) -> ForecastError:
    with pytest.raises(ForecastError) as failure:
        load_bundle(run_dir)
    message = str(failure.value)
    assert "\n" not in message and message.strip() == message
    return failure.value


def save_copy(trained: train.TrainOutcome, runs_dir: Path, run_id: str, write_extras=None) -> Path:
    bundle = dataclasses.replace(trained.bundle, run_id=run_id, run_dir=None)
    history = pd.read_csv(trained.run_dir / "history.csv")
    prices = trained.bundle.prices()[trained.bundle.ticker]
    return save_run(bundle, runs_dir, {bundle.ticker: prices}, history, trained.metrics, write_extras=write_extras)


def test_round_trip_predicts_exactly_the_same(trained, run_dir):
    loaded = load_bundle(run_dir)
    original = trained.bundle
    assert loaded.run_dir == run_dir
    assert (loaded.run_id, loaded.ticker) == (original.run_id, original.ticker)
    assert loaded.shape == original.shape and loaded.spec == original.spec
    assert loaded.scaler == original.scaler
    assert loaded.fingerprint == original.fingerprint
    assert loaded.split == original.split and loaded.baselines == original.baselines
    assert loaded.calibration == original.calibration and loaded.training == original.training
    assert loaded.config == original.config
    assert loaded.versions["torch"] == torch.__version__
    assert not loaded.model.training  # ready to forecast: eval mode

    prices = loaded.prices()[loaded.ticker]
    pd.testing.assert_frame_equal(prices, random_walk_prices())
    assert prices_sha256(prices) == loaded.fingerprint["sha256"]
    inputs = torch.from_numpy(build_dataset(prices, loaded.config).test.inputs)
    original.model.eval()
    with torch.inference_mode():
        assert torch.equal(loaded.model(inputs), original.model(inputs))


def test_truncated_weights_name_the_file(run_dir):
    weights = run_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    error = load_error(run_dir)
    assert str(weights) in str(error) and "corrupt" in str(error) and error.exit_code == 1


def test_missing_weights_name_the_file(run_dir):
    (run_dir / "model.safetensors").unlink()
    assert "model.safetensors: missing" in str(load_error(run_dir))


def test_weights_that_do_not_fit_bundle_json(run_dir):
    edit_document(run_dir, lambda document: document["model"].update(hidden_size=16))
    error = load_error(run_dir)
    assert "model.safetensors" in str(error) and "do not fit" in str(error)


def test_window_and_model_that_disagree(run_dir):
    edit_document(run_dir, lambda document: document["window"].update(horizon=5))
    assert "model.horizon is 2 but the window describes 5" in str(load_error(run_dir))


def test_future_format_asks_for_an_upgrade(run_dir):
    edit_document(run_dir, lambda document: document.update(format_version=2))
    error = load_error(run_dir)
    assert "bundle format 2 is not supported" in str(error) and "upgrade lstm-forecast" in str(error)


def test_unknown_old_format_asks_for_retraining(run_dir):
    edit_document(run_dir, lambda document: document.pop("format_version"))
    assert "retrain" in str(load_error(run_dir))


def test_missing_bundle_json(run_dir):
    (run_dir / "bundle.json").unlink()
    error = load_error(run_dir)
    assert "bundle.json: missing; not a run bundle" in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a bundle description"),
    ],
)
def test_bundle_json_that_is_not_a_description(run_dir, text, expected):
    path = run_dir / "bundle.json"
    path.write_bytes(text)
    error = load_error(run_dir)
    assert str(path) in str(error) and expected in str(error)


def test_missing_field_says_the_bundle_is_damaged(run_dir):
    edit_document(run_dir, lambda document: document.pop("scaler"))
    error = load_error(run_dir)
    assert "missing or invalid field 'scaler'" in str(error) and "damaged" in str(error)


def test_missing_config_yaml(run_dir):
    (run_dir / "config.yaml").unlink()
    assert "config.yaml: missing from the bundle" in str(load_error(run_dir))


def test_missing_prices_csv_is_reported_when_needed(run_dir):
    (run_dir / "prices.csv").unlink()
    loaded = load_bundle(run_dir)  # forecasting with the model still works
    with pytest.raises(ForecastError, match=r"prices\.csv: missing from the bundle"):
        loaded.prices()


def test_not_a_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such run directory"):
        load_bundle(tmp_path / "nowhere")


class CreatesMarker:
    """Unpickling this opens (creates) the marker file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_pickle_is_never_loaded(run_dir, tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    (run_dir / "model.pt").write_bytes(pickle.dumps(CreatesMarker(marker)))

    def refuse(*args, **kwargs):
        raise AssertionError("load_bundle must never unpickle")

    for target in ("load", "loads"):
        monkeypatch.setattr(pickle, target, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_bundle(run_dir).shape.kind == "lstm"
    assert not marker.exists()

    # A pickle disguised as the weights file is rejected as corrupt, still without unpickling.
    shutil.copy(run_dir / "model.pt", run_dir / "model.safetensors")
    assert "corrupt weights" in str(load_error(run_dir))
    assert not marker.exists()


def test_saved_files_are_plain_formats(trained):
    """Nothing in a bundle needs pickle: JSON, YAML, CSV, PNG and safetensors only."""
    run_dir = trained.run_dir
    json.loads((run_dir / "bundle.json").read_text())
    json.loads((run_dir / "metrics.json").read_text())
    yaml.safe_load((run_dir / "config.yaml").read_text())
    header_length = int.from_bytes((run_dir / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((run_dir / "model.safetensors").read_bytes()[8 : 8 + header_length])
    assert {"core.weight_ih_l0", "head.weight", "head.bias"} <= header.keys()


def test_new_run_ids_sort_by_time():
    early = bundles.new_run_id(datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    late = bundles.new_run_id(datetime(2024, 1, 2, 3, 4, 5, 7000, tzinfo=UTC))
    assert early == "20240102-030405-006" and early < late


def test_runs_in_the_same_millisecond_both_survive(trained, tmp_path):
    first = save_copy(trained, tmp_path, "20240102-030405-006")
    second = save_copy(trained, tmp_path, "20240102-030405-006")
    assert first.name == "20240102-030405-006" and second.name == "20240102-030405-006-2"
    assert load_bundle(second).run_id == second.name
    assert find_run(tmp_path) == second
    assert first.name < second.name < "20240102-030405-007"


def test_a_run_id_taken_between_choosing_and_renaming_is_chosen_again(trained, tmp_path, name_taken_once):
    saved = save_copy(trained, tmp_path, "20240102-030405-006")
    theirs = name_taken_once[0]
    assert (theirs.name, saved.name) == ("20240102-030405-006", "20240102-030405-006-2")
    assert [path.name for path in theirs.iterdir()] == ["theirs.json"]  # the other process's folder is untouched
    assert load_bundle(saved).run_id == saved.name  # the files were written again under the new name
    assert sorted(path.name for path in (tmp_path / TICKER).iterdir()) == [theirs.name, saved.name]


def test_the_config_hash_and_every_series_trained_on_are_recorded(trained, run_dir):
    document = json.loads((run_dir / "bundle.json").read_text())
    loaded = load_bundle(run_dir)
    assert document["config_hash"] == loaded.config_hash == trained.bundle.config_hash == config_hash(loaded.config)
    assert document["fingerprints"] == loaded.fingerprints == [loaded.fingerprint]


def test_a_bundle_from_before_the_config_hash_and_the_fingerprint_list_loads(run_dir):
    edit_document(run_dir, lambda document: [document.pop("config_hash"), document.pop("fingerprints")])
    loaded = load_bundle(run_dir)
    assert loaded.config_hash is None and loaded.fingerprints == [loaded.fingerprint]


def test_nothing_the_reader_would_refuse_is_written(trained, tmp_path):
    scaler = dataclasses.replace(trained.bundle.scaler, target_std=0.0)
    bundle = dataclasses.replace(trained.bundle, run_id="20240102-030405-006", run_dir=None, scaler=scaler)
    history = pd.read_csv(trained.run_dir / "history.csv")
    with pytest.raises(ForecastError, match=r"cannot save the run: .*scaler: expected finite means and positive"):
        save_run(bundle, tmp_path, trained.bundle.prices(), history, trained.metrics)
    assert list((tmp_path / TICKER).iterdir()) == []


@pytest.mark.parametrize(
    "failure", [RuntimeError("plot failed"), KeyboardInterrupt(), OSError(errno.ENOSPC, "No space")]
)
def test_a_failed_write_leaves_no_run_and_no_temp_dir(trained, tmp_path, failure):
    def write_half_then_fail(tmp_dir: Path) -> None:
        (tmp_dir / "loss_curve.png").write_bytes(b"\x89PNG half")
        raise failure

    expected = ForecastError if isinstance(failure, OSError) else type(failure)
    with pytest.raises(expected) as raised:
        save_copy(trained, tmp_path, "20240102-030405-006", write_extras=write_half_then_fail)
    if isinstance(failure, OSError):
        assert "cannot write the run bundle" in str(raised.value) and "No space" in str(raised.value)
    assert list((tmp_path / TICKER).iterdir()) == []


def test_train_run_that_fails_while_saving_leaves_nothing(tmp_path, monkeypatch):
    def broken_plot(*args, **kwargs):
        raise RuntimeError("matplotlib broke")

    monkeypatch.setattr(plots, "loss_curve", broken_plot)
    with pytest.raises(RuntimeError, match="matplotlib broke"):
        train.train_run(load_config(None, TINY), TICKER, random_walk_prices(), tmp_path)
    assert list((tmp_path / TICKER).iterdir()) == []


def make_run(runs_dir: Path, ticker: str, run_id: str, complete: bool = True) -> Path:
    path = runs_dir / ticker / run_id
    path.mkdir(parents=True)
    if complete:
        (path / "bundle.json").write_text("{}")
    return path


def test_find_run_picks_the_latest_across_tickers_and_per_ticker(tmp_path):
    oldest = make_run(tmp_path, "AAA", "20240101-000000-000")
    bbb = make_run(tmp_path, "BBB", "20240102-000000-000")
    latest = make_run(tmp_path, "AAA", "20240103-000000-000")
    gspc = make_run(tmp_path, "^GSPC", "20231231-000000-000")  # the caret is kept: GSPC is another symbol
    make_run(tmp_path, "BBB", "20240104-000000-000", complete=False)  # no bundle.json: not a run
    make_run(tmp_path, "BBB", ".tmp-abc123")
    make_run(tmp_path, "AAA", "compare-20240109-000000-000")
    make_run(tmp_path, "BBB", "20240105-000000-000-2", complete=False)

    assert list_runs(tmp_path) == [gspc, oldest, bbb, latest]
    assert find_run(tmp_path) == latest
    assert find_run(tmp_path, ticker="BBB") == bbb
    assert find_run(tmp_path, ticker="aaa") == latest
    assert find_run(tmp_path, ticker="^GSPC") == gspc
    with pytest.raises(ForecastError, match="no trained runs for GSPC"):
        find_run(tmp_path, ticker="GSPC")
    assert find_run(tmp_path, run=oldest) == oldest
    with pytest.raises(ForecastError, match=r"no trained runs for ZZZ in .*lstm-forecast train"):
        find_run(tmp_path, ticker="ZZZ")
    with pytest.raises(ForecastError, match="no trained runs in"):
        find_run(tmp_path / "missing")


def test_only_our_stale_temp_dirs_are_removed(tmp_path):
    two_hours_ago = time.time() - 7200
    stale = files.make_temp_dir(tmp_path / "AAA", "a run bundle")  # a process of ours that died
    (stale / "model.safetensors").write_bytes(b"half")
    in_progress = files.make_temp_dir(tmp_path / "AAA", "a run bundle")  # another process saving right now
    others = make_run(tmp_path, "AAA", ".tmp-dead")  # another program's, in a shared folder
    unmarked = make_run(tmp_path, "AAA", files.TEMP_PREFIX + "lookalike")  # our prefix but no marker
    for path in (stale, others, unmarked):
        os.utime(path, (two_hours_ago, two_hours_ago))
    run = make_run(tmp_path, "AAA", "20240101-000000-000")

    remove_stale_temp_dirs(tmp_path)
    assert not stale.exists()
    assert in_progress.exists() and others.exists() and unmarked.exists() and run.exists()
    remove_stale_temp_dirs(tmp_path / "missing")  # nothing to clean is not an error


def test_training_cleans_its_own_tickers_folder_and_a_folder_vanishing_meanwhile_is_no_error(tmp_path, monkeypatch):
    two_hours_ago = time.time() - 7200
    mine, theirs = (files.make_temp_dir(tmp_path / ticker, "a run bundle") for ticker in ("AAA", "BBB"))
    for path in (mine, theirs):
        os.utime(path, (two_hours_ago, two_hours_ago))
    remove_stale_temp_dirs(tmp_path, "AAA")
    assert not mine.exists() and theirs.exists()

    def glob_racing_an_rmdir(self, pattern):  # another universe job removed the empty folder it had just made
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "CCC"))

    monkeypatch.setattr(Path, "glob", glob_racing_an_rmdir)
    remove_stale_temp_dirs(tmp_path)


def test_resolve_runs_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("LSTM_FORECAST_RUNS_DIR", raising=False)
    assert resolve_runs_dir(None, None) == Path("runs")
    assert resolve_runs_dir(None, "from-config") == Path("from-config")
    monkeypatch.setenv("LSTM_FORECAST_RUNS_DIR", str(tmp_path / "from-env"))
    assert resolve_runs_dir(None, "from-config") == tmp_path / "from-env"
    assert resolve_runs_dir(tmp_path / "from-cli", "from-config") == tmp_path / "from-cli"
    monkeypatch.setenv("LSTM_FORECAST_RUNS_DIR", "")
    assert resolve_runs_dir(None, "from-config") == Path("from-config")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_runs_dir(None, "~/lstm-runs") == tmp_path / "lstm-runs"

    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        resolve_runs_dir(tmp_path / "a-file", None)


# --- hostile or damaged bundles: always exit 1, one line, nothing allocated on the bundle's say-so -------


def set_residual(value):
    return lambda document: document["calibration"]["residuals"][0].__setitem__(0, value)


def write_weights(tensors):
    def damage(run_dir: Path) -> None:
        (run_dir / "model.safetensors").write_bytes(safetensors.torch.save(tensors(run_dir)))

    return damage


def recast(dtype):
    return write_weights(lambda run_dir: {name: tensor.to(dtype) for name, tensor in load_weights(run_dir).items()})


def load_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load((run_dir / "model.safetensors").read_bytes())


def with_nan_weight(run_dir: Path) -> dict[str, torch.Tensor]:
    weights = load_weights(run_dir)
    weights["head.bias"][0] = float("nan")
    return weights


def replace_text(old: str, new: str):
    def damage(run_dir: Path) -> None:
        path = run_dir / "bundle.json"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return damage


def edit(change):
    return lambda run_dir: edit_document(run_dir, change)


def write_file(name: str, content: str):
    return lambda run_dir: (run_dir / name).write_text(content)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (edit(lambda d: d.update(ticker="../../../etc/passwd")), "invalid ticker '../../../etc/passwd'"),
        (edit(set_residual(float("nan"))), "calibration.residuals.0.0: input should be a finite number"),
        (edit(set_residual("0.01")), "calibration.residuals.0.0: input should be a valid number"),
        (edit(lambda d: d.update(calibration=[1, 2])), "missing or invalid field calibration:"),
        (edit(lambda d: d["calibration"]["residuals"].pop()), "calibration.residuals: expected 2 lists"),
        (edit(lambda d: d["calibration"]["residuals"][1].pop()), "calibration.residuals: expected 2 lists"),
        (edit(lambda d: d["scaler"].update(target_std=float("inf"))), "scaler.target_std: input should be a finite"),
        (edit(lambda d: d["model"].update(hidden_size=30000)), "model.hidden_size: input should be less than or"),
        (edit(lambda d: d["model"].update(hidden_size=8.0)), "model.hidden_size: input should be a valid integer"),
        (edit(lambda d: d["fingerprint"].update(first_date="1600-01-01")), "fingerprint.first_date: input should"),
        (edit(lambda d: d["fingerprint"].update(sha256="x")), "fingerprint.sha256: string should match"),
        (edit(lambda d: d.update(config_hash="x")), "config_hash: string should match"),
        (edit(lambda d: d.update(fingerprints=[])), "fingerprints: list should have at least 1 item"),
        (edit(lambda d: d["fingerprints"][0].update(rows=0)), "fingerprints.0.rows: input should be greater than"),
        (edit(lambda d: d["scaler"].update(feature_std=[-1.0])), "scaler: expected finite means and positive"),
        (edit(lambda d: d["scaler"].update(feature_mean=[0.0, 0.0])), "scaler.feature_mean is 2 but the window"),
        (edit(lambda d: d["split"].update(val_start="2030-01-01")), "split: expected first_date <= val_start"),
        (edit(lambda d: d["training"].update(seed=2**40)), "training.seed: input should be less than"),
        (edit(lambda d: d.update(run_id="../x")), "run_id: string should match"),
        (replace_text('"lookback": 8', '"lookback": 1e400'), "window.lookback: input should be a valid integer"),
        (replace_text('"lookback": 8', '"lookback": 1' + "0" * 5000), "not valid JSON (ValueError)"),
        (write_file("bundle.json", '{"a": ' * 100_000 + "1" + "}" * 100_000), "not valid JSON (RecursionError)"),
        (recast(torch.int8), "is torch.int8, expected float32"),
        (recast(torch.bool), "is torch.bool, expected float32"),
        (recast(torch.float64), "is torch.float64, expected float32"),
        (write_weights(with_nan_weight), "tensor head.bias holds NaN or infinite values"),
        (write_file("config.yaml", "train:\n  epochs: 3\n  epochs: 4\n"),
         "unreadable (line 3: duplicate key 'epochs')"),
        (write_file("config.yaml", "train: {epochs: 0}\n"), "train.epochs: expected an integer >= 1"),
        (write_file("config.yaml", "- 1\n"), "not a mapping of config sections"),
    ],
)
def test_damaged_bundles_are_run_time_errors(run_dir, damage, fragment):
    damage(run_dir)
    error = load_error(run_dir)
    assert type(error) is ForecastError and error.exit_code == 1  # damage, never "usage"
    assert fragment in str(error) and "damaged" in str(error) and len(str(error)) < 400 + len(str(run_dir))


def test_oversized_weights_are_refused_before_reading(run_dir):
    weights = run_dir / "model.safetensors"
    with weights.open("ab") as handle:
        handle.truncate(weights.stat().st_size + bundles.WEIGHTS_HEADER_LIMIT + 1)
    assert "more than the weights of the model bundle.json describes can be" in str(load_error(run_dir))


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(run_dir, monkeypatch):
    monkeypatch.setattr(bundles, "memory_limit", lambda: 100)
    monkeypatch.setattr(bundles, "Forecaster", None)  # building it would fail the test
    assert "describes a model of 230 parameters" in str(load_error(run_dir))


@pytest.mark.parametrize("name", ["bundle.json", "model.safetensors", "config.yaml"])
def test_special_files_in_a_bundle_are_never_read(run_dir, name):
    (run_dir / name).unlink()
    (run_dir / name).symlink_to("/dev/zero")
    assert "not a regular file" in str(load_error(run_dir))
    (run_dir / name).unlink()
    os.mkfifo(run_dir / name)  # no writer: a plain open would wait forever
    assert "not a regular file" in str(load_error(run_dir))


def test_find_run_names_the_ticker_in_its_advice(tmp_path):
    with pytest.raises(ForecastError, match="train one with `lstm-forecast train -t NVDA`"):
        find_run(tmp_path, ticker="NVDA")
    with pytest.raises(ForecastError, match="train one with `lstm-forecast train -t TICKER`"):
        find_run(tmp_path)


def test_many_writers_into_one_fresh_runs_dir_all_succeed(trained, tmp_path):
    """Eight saves at once, all asking for the same run id, into a runs dir that does not exist yet."""
    runs_dir = tmp_path / "fresh" / "runs"

    def save(_: int) -> Path:
        bundles.check_writable(runs_dir / TICKER)
        return save_copy(trained, runs_dir, "20240102-030405-006")

    with ThreadPoolExecutor(max_workers=8) as pool:
        saved = list(pool.map(save, range(8)))
    assert len(set(saved)) == 8
    assert sorted(saved) == list_runs(runs_dir)
    assert {load_bundle(path).run_id for path in saved} == {path.name for path in saved}
    assert sorted(path.name for path in (runs_dir / TICKER).iterdir()) == sorted(path.name for path in saved)


@pytest.mark.parametrize("edit", [("hidden_size: 6", "hidden_size: 8"), ("lookback: 8", "lookback: 9"),
                                  ("target: log_return", "target: price")])
def test_a_config_yaml_that_disagrees_with_bundle_json_is_damage(run_dir, edit):
    config = run_dir / "config.yaml"
    assert edit[0] in config.read_text()
    config.write_text(config.read_text().replace(*edit))
    error = load_error(run_dir)
    assert "does not describe the model and windows of bundle.json" in str(error) and error.exit_code == 1
