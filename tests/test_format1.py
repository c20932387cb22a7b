"""Bundles written by earlier releases keep working: a format-1 bundle made by the code of commit 488f38f.

`tests/fixtures/format1-488f38f/bundle` is a tiny SYN run (260 synthetic business days, lookback 8,
horizon 2, LSTM of width 4) exactly as that code wrote it; `predict.json` is what its `predict --format
json` printed (without `run_dir`). Hardening the bundle reader, the cache naming or the metrics must not
make it unreadable or change its forecast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TICKER
from typer.testing import CliRunner

from lstm_forecast.bundle import load_bundle
from lstm_forecast.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "format1-488f38f"


@pytest.fixture
def old_run(clean_workdir: Path) -> Path:
    """The fixture bundle under ./runs/SYN/ and its prices as the ./data cache, in an empty folder."""
    document = json.loads((FIXTURE / "bundle" / "bundle.json").read_text())
    run_dir = clean_workdir / "runs" / TICKER / document["run_id"]
    shutil.copytree(FIXTURE / "bundle", run_dir)
    (clean_workdir / "data").mkdir()
    shutil.copy(run_dir / "prices.csv", clean_workdir / "data" / f"{TICKER}.csv")
    return run_dir


def test_a_format_1_bundle_loads(old_run: Path) -> None:
    bundle = load_bundle(old_run)
    assert (bundle.ticker, bundle.shape.kind, bundle.spec.lookback, bundle.spec.horizon) == (TICKER, "lstm", 8, 2)


def test_a_format_1_bundle_predicts_what_it_predicted_when_written(old_run: Path) -> None:
    result = CliRunner().invoke(
        app, ["predict", "--run", str(old_run), "--data-dir", "data", "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    printed.pop("run_dir")
    assert printed == json.loads((FIXTURE / "predict.json").read_text())


def test_a_format_1_bundle_can_be_evaluated(old_run: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--run", str(old_run), "--data-dir", "data", "--folds", "0",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["test"]["windows"] > 0


def test_predict_onto_dev_stdout_appends_to_the_redirected_file_and_keeps_the_chart_in_the_bundle(old_run: Path):
    log = old_run.parents[2] / "all.jsonl"
    log.write_text('{"earlier": 1}\n')
    command = [sys.executable, "-m", "lstm_forecast", "predict", "--run", str(old_run), "--data-dir", "data",
               "--format", "json", "-o", "/dev/stdout"]
    with log.open("ab") as appended:  # as `>> all.jsonl` in a shell
        done = subprocess.run(command, stdout=appended, stderr=subprocess.PIPE, text=True, timeout=120,
                              check=False, cwd=old_run.parents[2])
    assert done.returncode == 0, done.stderr
    earlier, forecast = log.read_text().split("\n", 1)
    assert earlier == '{"earlier": 1}' and json.loads(forecast)["ticker"] == TICKER
    assert (old_run / "forecast.png").is_file() and f"Fan chart: {old_run / 'forecast.png'}" in done.stderr


def test_predict_onto_dev_stdout_into_a_pipe(old_run: Path):
    command = [sys.executable, "-m", "lstm_forecast", "predict", "--run", str(old_run), "--data-dir", "data",
               "--format", "json", "-o", "/dev/stdout"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=old_run.parents[2])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ticker"] == TICKER  # the forecast alone: the notes went to stderr


def test_a_bundle_naming_an_unknown_calendar_is_damaged_not_a_usage_error(old_run: Path):
    config = old_run / "config.yaml"
    config.write_text(config.read_text().replace("calendar: XNYS", "calendar: FOO"))
    result = CliRunner().invoke(app, ["predict", "--run", str(old_run), "--data-dir", "data"])
    assert result.exit_code == 1
    assert "unknown exchange calendar" in result.stderr and "the bundle is damaged" in result.stderr


def test_absurd_calibration_residuals_are_damage(old_run: Path):
    document = json.loads((old_run / "bundle.json").read_text())
    document["calibration"]["residuals"] = [[1e308] * len(step) for step in document["calibration"]["residuals"]]
    (old_run / "bundle.json").write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["predict", "--run", str(old_run), "--data-dir", "data", "--format", "json"])
    assert result.exit_code == 1 and "calibration" in result.stderr and "damaged" in result.stderr


@pytest.mark.parametrize("target", ["data/SYN.csv", "data/SYN.meta.json", "bundle.json", "model.safetensors",
                                    "other.json"])
def test_predict_never_writes_over_the_tools_own_files(old_run: Path, target: str):
    output = str(old_run / target) if "/" not in target else target
    before = {path: path.read_bytes() for path in old_run.parents[2].rglob("*") if path.is_file()}
    result = CliRunner().invoke(app, ["predict", "--run", str(old_run), "--data-dir", "data", "-o", output])
    assert result.exit_code == 2 and "write the forecast elsewhere" in result.stderr
    assert {path: path.read_bytes() for path in old_run.parents[2].rglob("*") if path.is_file()} == before
