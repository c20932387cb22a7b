"""`predict --all` forecasts every ticker with a trained run, not every cached one."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import error_line
from test_predict import LAST_DAY
from test_screener import add_ticker, prices_until
from typer.testing import CliRunner

from lstm_forecast.cli import app
from lstm_forecast.prices import prices_to_csv


def test_predict_all_means_every_ticker_with_a_run(tmp_path: Path, clean_workdir: Path):
    folders = {"runs_dir": tmp_path / "runs", "data_dir": tmp_path / "data"}
    folders["data_dir"].mkdir()
    for seed, ticker in enumerate(["AAA", "BBB"]):
        add_ticker(folders, ticker, seed)
    for seed, ticker in enumerate(["UNTRAINED", "ZZZ"], start=5):  # cached, never trained
        (folders["data_dir"] / f"{ticker}.csv").write_bytes(prices_to_csv(prices_until(LAST_DAY, seed)))
    result = CliRunner().invoke(app, ["predict", "--all", "--format", "json", "--runs-dir", str(folders["runs_dir"]),
                                      "--data-dir", str(folders["data_dir"])])
    assert result.exit_code == 0, result.output
    assert sorted(row["ticker"] for row in json.loads(result.stdout)["rows"]) == ["AAA", "BBB"]


def test_predict_all_without_any_run_is_one_usage_error(tmp_path: Path, clean_workdir: Path):
    result = CliRunner().invoke(app, ["predict", "--all", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: --all: no trained runs in")
