"""compare --context on,off: the model with its context inputs against the same model without them, trained on
the very rows and split the first run recorded, scored on the test windows both have, with the Diebold–Mariano
test between the two and a verdict on what the covariates bought."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import build_prices
from typer.testing import CliRunner

from lstm_forecast import compare, context_effect
from lstm_forecast.bundle import load_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import UsageError
from lstm_forecast.prices import prices_to_csv

TARGET, INDEX = "TGT", "IDX"
ROWS = 500
# A tiny model that learns a linear map from one input in a few epochs (a larger learning rate than the default).
OVERRIDES = [
    "window.lookback=5", "window.horizon=1", "model.hidden_size=8", "model.num_layers=1", "model.dropout=0.0",
    "train.epochs=5", "train.batch_size=32", "train.lr=0.01", "train.device=cpu", "train.threads=1",
]
CONTEXT = f"data.context=[{{ticker: {INDEX}, feature: log_return}}]"


def series(returns: np.ndarray, seed: int) -> pd.DataFrame:
    """A canonical price frame (business days) whose close and adjusted close follow `returns` exactly."""
    prices = build_prices(len(returns), seed=seed)
    close = 100.0 * np.exp(np.cumsum(returns))
    prices["Close"] = prices["Adj Close"] = prices["Open"] = close
    prices["High"], prices["Low"] = close * 1.01, close * 0.99
    return prices


@pytest.fixture
def driven(tmp_path) -> Path:
    """A data dir where TGT's daily log return is 0.6 × IDX's return of the day before plus a little noise:
    IDX's series (read on the same day, both trading in New York) tells the next day's move."""
    rng = np.random.default_rng(1)
    index_returns = rng.normal(0.0, 0.01, ROWS)
    target_returns = np.concatenate([[0.0], 0.6 * index_returns[:-1]]) + rng.normal(0.0, 0.002, ROWS)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / f"{TARGET}.csv").write_bytes(prices_to_csv(series(target_returns, seed=2)))
    (folder / f"{INDEX}.csv").write_bytes(prices_to_csv(series(index_returns, seed=3)))
    return folder


def test_parse_context_runs():
    assert compare.parse_context_runs("on,off") == ["on", "off"]
    assert compare.parse_context_runs(" OFF, on") == ["off", "on"]
    for bad in ("on", "on,on", "yes,no", " , ", "on,off,on"):
        with pytest.raises(UsageError, match=r"^--context .*expected on,off"):
            compare.parse_context_runs(bad)


def test_a_context_that_drives_the_target_is_found_to_help(tmp_path, driven):
    config = load_config(None, [*OVERRIDES, CONTEXT])
    comparison = compare.compare_context(config, TARGET, driven, tmp_path / "runs")
    report, versus = comparison.report, comparison.report["with_vs_without"]

    assert versus["rmse_ratio_all"] < 0.8 and versus["dm_all"]["statistic"] < 0
    assert versus["dm_all"]["pvalue"] < 0.01
    assert versus["verdict"].startswith("the context helped (RMSE with/without")
    assert report["inputs"] == [f"{INDEX}:log_return"] and report["interrupted"] is False
    on, off = report["runs"]["on"], report["runs"]["off"]
    assert on["test"]["metrics"]["model"]["all"]["rmse"] < off["test"]["metrics"]["model"]["all"]["rmse"]

    # Two ordinary bundles on identical rows and split; only the context input differs.
    with_context, without = load_bundle(on["run_dir"]), load_bundle(off["run_dir"])
    assert with_context.fingerprint == without.fingerprint == report["data"]
    assert with_context.split == without.split == report["split"]
    assert [series.column for series in with_context.spec.context] == [f"{INDEX}:log_return"]
    assert without.spec.context == () and without.config.data.context == []
    assert without.spec.n_inputs == with_context.spec.n_inputs - 1
    # No gap here: every test window is compared, the same for both, beside one naive forecast.
    test = report["test"]
    assert test["windows"] == test["windows_with_context"] == test["windows_without_context"] > 50
    assert on["test"]["windows"] == off["test"]["windows"] == test["windows"]
    assert on["test"]["metrics"]["naive"] == off["test"]["metrics"]["naive"]
    assert on["test"]["metrics"] == json.loads((Path(on["run_dir"]) / "metrics.json").read_text())["test"]["metrics"]

    folder = comparison.compare_dir
    assert folder.parent == tmp_path / "runs" / TARGET and folder.name.startswith("compare-")
    assert json.loads((folder / compare.COMPARE_FILE).read_text()) == report
    assert (folder / compare.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [path for path in folder.parent.iterdir() if path.name.startswith(".")]


def test_both_runs_see_the_rows_the_context_covers_and_the_windows_it_has(tmp_path):
    """IDX starts 30 days late (the history is cut for both runs) and misses 6 sessions in the test period
    (windows reading them are dropped with context, and left out of the comparison for both)."""
    rng = np.random.default_rng(4)
    target = series(rng.normal(0.0, 0.01, ROWS), seed=5)
    index = series(rng.normal(0.0, 0.01, ROWS), seed=6).iloc[30:]
    index = index.drop(index.index[-40:-34])
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / f"{TARGET}.csv").write_bytes(prices_to_csv(target))
    (folder / f"{INDEX}.csv").write_bytes(prices_to_csv(index))

    config = load_config(None, [*OVERRIDES, "train.epochs=1", CONTEXT])
    report = compare.compare_context(config, TARGET, folder, tmp_path / "runs").report
    without = load_bundle(report["runs"]["off"]["run_dir"])
    assert without.fingerprint["rows"] == report["data"]["rows"] == ROWS - 30
    assert without.fingerprint["first_date"] == index.index[0].date().isoformat()
    assert any(note.startswith("history cut to") for note in report["notes"])

    test = report["test"]
    assert test["windows_with_context"] < test["windows_without_context"]
    assert test["windows"] == test["windows_with_context"]
    assert report["runs"]["on"]["test"]["windows"] == report["runs"]["off"]["test"]["windows"] == test["windows"]
    assert report["runs"]["on"]["test"]["metrics"]["naive"] == report["runs"]["off"]["test"]["metrics"]["naive"]


def test_context_verdict():
    assert context_effect.context_verdict(0.001, 0.9) == "the context helped (RMSE with/without 0.900, DM p = 0.001)"
    hurt = context_effect.context_verdict(0.0001, 1.2)
    assert hurt.startswith("the context hurt (RMSE with/without 1.200, DM p < 0.001")
    assert context_effect.context_verdict(0.41, 0.98).startswith("the context made no distinguishable difference (")
    assert "cannot be tested" in context_effect.context_verdict(None, 1.0)


def cli_options(tmp_path: Path) -> list[str]:
    settings = [item for override in OVERRIDES if not override.startswith("train.epochs")
                for item in ("--set", override)]
    return [*settings, "--epochs", "2", "--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")]


def test_cli_compare_context_json_and_table(tmp_path, driven):
    options = [*cli_options(tmp_path), "--set", CONTEXT]
    result = CliRunner().invoke(app, ["compare", "-t", TARGET, "--context", "on,off", *options, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"ticker", "model", "inputs", "data", "split", "test", "runs", "with_vs_without", "compare_dir",
            "files"} <= set(report)
    assert set(report["runs"]) == {"on", "off"} and report["runs"]["on"]["epochs_run"] == 2
    assert set(report["with_vs_without"]) == {"rmse_ratio_all", "rmse_ratio_h1", "dm_h1", "dm_all", "verdict"}
    assert Path(report["files"]["curves"]).is_file()

    table = CliRunner().invoke(app, ["compare", "-t", TARGET, "--context", "off,on", *options])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert any(line.startswith("Verdict: the context ") for line in lines)
    assert any(line.startswith("With vs without context: RMSE ratio ") and "Diebold–Mariano" in line for line in lines)
    assert all(name in table.stdout for name in ("with context", "without context", "naive"))


@pytest.mark.parametrize(("arguments", "message"), [
    (["--context", "maybe", "--set", CONTEXT], "Error: --context 'maybe': expected on,off"),
    (["--context", "on,off"], "Error: compare --context needs context inputs: set data.context"),
    (["--context", "on,off", "--scopes", "local,global", "--set", CONTEXT], "Error: --context and --scopes"),
    (["--context", "on,off", "--models", "gru", "--set", CONTEXT], "Error: --context compares one model type"),
])
def test_cli_compare_context_usage_errors(tmp_path, driven, arguments, message):
    result = CliRunner().invoke(app, ["compare", "-t", TARGET, *arguments, *cli_options(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith(message), result.output
    assert not (tmp_path / "runs").exists()  # refused before anything was trained
