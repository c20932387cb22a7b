"""compare: RNN, GRU and LSTM trained on identical data and seed, one bundle each, one table beside the
naive forecast, the overlaid loss curves and compare.json in an atomically written compare folder."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from conftest import TICKER, TINY_OVERRIDES
from typer.testing import CliRunner

from lstm_forecast import compare, train
from lstm_forecast.bundle import list_runs, load_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import Interrupted, UsageError
from lstm_forecast.prices import prices_to_csv


@pytest.fixture
def prices(make_prices) -> pd.DataFrame:
    return make_prices(300, seed=5)


@pytest.fixture
def data_dir(tmp_path, prices) -> Path:
    """A price cache holding TICKER's prices."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{TICKER}.csv").write_bytes(prices_to_csv(prices))
    return tmp_path / "data"


def test_parse_models():
    assert compare.parse_models("rnn, GRU,lstm") == ["rnn", "gru", "lstm"]
    for bad in ("lstm,transformer", "lstm,lstm", " , "):
        with pytest.raises(UsageError, match="--models"):
            compare.parse_models(bad)


def test_compare_trains_each_model_on_identical_data(tmp_path, data_dir):
    config = load_config(None, TINY_OVERRIDES)
    runs_dir = tmp_path / "runs"
    comparison = compare.compare_models(config, TICKER, data_dir, runs_dir, ["rnn", "gru", "lstm"])
    report = comparison.report

    # One complete bundle per model, same rows, split and scaler; only the core differs.
    bundles = [load_bundle(run) for run in list_runs(runs_dir, TICKER)]
    assert sorted(bundle.shape.kind for bundle in bundles) == ["gru", "lstm", "rnn"]
    assert len({bundle.fingerprint["sha256"] for bundle in bundles}) == 1
    assert all(bundle.split == bundles[0].split and bundle.scaler == bundles[0].scaler for bundle in bundles)
    assert all(bundle.training["seed"] == config.train.seed for bundle in bundles)

    # compare.json: every model's test metrics beside the naive forecast of the same windows.
    folder = comparison.compare_dir
    assert folder.parent == runs_dir / TICKER and folder.name.startswith("compare-")
    assert json.loads((folder / compare.COMPARE_FILE).read_text()) == report
    assert [run["model"] for run in report["runs"]] == ["rnn", "gru", "lstm"]
    assert report["interrupted"] is False and report["compare_dir"] == str(folder)
    for run in report["runs"]:
        metrics_json = json.loads((Path(run["run_dir"]) / "metrics.json").read_text())
        assert run["test"] == metrics_json["test"]
        assert metrics_json["test"]["metrics"]["naive"] == report["runs"][0]["test"]["metrics"]["naive"]
        assert len(run["history"]["train_loss"]) == run["epochs_run"] == 2
        assert run["test"]["verdict"]
    assert report["runs"][0]["test"]["metrics"]["drift"]["all"]["rmse_ratio"] is not None

    curves = folder / compare.CURVES_FILE
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(curves).shape[:2]
    assert width >= 800 and height >= 400
    # Nothing half-written is left, and the compare folder is not mistaken for a run.
    assert not [path for path in (runs_dir / TICKER).iterdir() if path.name.startswith(".")]
    assert folder not in list_runs(runs_dir)


def test_ctrl_c_keeps_the_models_already_trained(tmp_path, data_dir, monkeypatch):
    real_train_run = train.train_run

    def stop_on_second_model(config, *args, **kwargs):
        if config.model.type == "lstm":
            raise Interrupted("interrupted before the first epoch finished; no bundle written")
        return real_train_run(config, *args, **kwargs)

    monkeypatch.setattr(train, "train_run", stop_on_second_model)
    comparison = compare.compare_models(load_config(None, TINY_OVERRIDES), TICKER, data_dir, tmp_path, ["gru", "lstm"])
    assert comparison.interrupted is True
    assert comparison.report["completed"] == ["gru"]
    assert (comparison.compare_dir / compare.COMPARE_FILE).is_file()


def test_cli_compare_json(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("LSTM_FORECAST_RUNS_DIR", raising=False)
    options = ["--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")]
    settings = [item for override in TINY_OVERRIDES if not override.startswith("train.epochs")
                for item in ("--set", override)]
    result = CliRunner().invoke(
        app, ["compare", "-t", TICKER, "--models", "rnn,lstm", "--epochs", "1", *settings, *options, "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [run["model"] for run in report["runs"]] == ["rnn", "lstm"]
    assert all(run["epochs_run"] == 1 for run in report["runs"])
    assert Path(report["compare_dir"], compare.CURVES_FILE).is_file()

    table = CliRunner().invoke(app, ["compare", "-t", TICKER, "--models", "gru", "--epochs", "1", *settings, *options])
    assert table.exit_code == 0, table.output
    assert "GRU is " in table.stdout and "naive" in table.stdout
    # Every path it wrote, one per line: the GRU bundle, compare.json and compare_curves.png.
    ticker_dir, earlier = tmp_path / "runs" / TICKER, {Path(run["run_dir"]).name for run in report["runs"]}
    gru_bundle = next(path for path in ticker_dir.iterdir()
                      if (path / "bundle.json").is_file() and path.name not in earlier)
    lines = table.stdout.splitlines()
    assert f"  GRU run bundle: {gru_bundle}" in lines
    newest = sorted(path for path in ticker_dir.iterdir() if path.name.startswith("compare-"))[-1]
    assert f"  {newest / compare.COMPARE_FILE}" in lines and f"  {newest / compare.CURVES_FILE}" in lines

    bad = CliRunner().invoke(app, ["compare", "-t", TICKER, "--models", "lstm,cnn", *options])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: --models 'lstm,cnn': unknown model type cnn")


def test_a_comparison_name_taken_between_choosing_and_renaming_is_chosen_again(tmp_path, name_taken_once):
    scores = {"metrics": {"model": {"all": {"rmse_ratio": 0.98}}}, "vs_naive": {"dm_all": {"pvalue": 0.5}}}
    run = {"model": "lstm", "test": scores}
    curves = {"LSTM": ([1, 2], [1.0, 0.9], [1.1, 1.0])}
    folder = compare.write_comparison(tmp_path, TICKER, {"ticker": TICKER, "runs": [run]}, curves, 1.0)
    theirs = name_taken_once[0]
    assert theirs.name.startswith("compare-") and folder.name == f"{theirs.name}-2"
    assert [path.name for path in theirs.iterdir()] == ["theirs.json"]  # the other process's folder is untouched
    written = json.loads((folder / compare.COMPARE_FILE).read_text())  # written again under the new name
    assert written["compare_dir"] == str(folder) and written["files"]["curves"] == str(folder / compare.CURVES_FILE)
    assert (folder / compare.CURVES_FILE).is_file()
    assert sorted(path.name for path in (tmp_path / TICKER).iterdir()) == [theirs.name, folder.name]
