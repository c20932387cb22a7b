"""predict: the next sessions' prices with conformal intervals, from a bundle and cached prices, offline."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lstm_forecast import bundle as bundles
from lstm_forecast import data, predict, runs
from lstm_forecast.bundle import RunBundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import UsageError
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.predict import run_predict
from lstm_forecast.prices import prices_to_csv
from lstm_forecast.runs import run_summaries
from lstm_forecast.train import fingerprint
from lstm_forecast.windows import Scaler, WindowSpec

HORIZON, LOOKBACK = 3, 8
LAST_DAY = date(2025, 4, 17)  # a Thursday; Good Friday and a weekend follow
NEXT_SESSIONS = ["2025-04-21", "2025-04-22", "2025-04-23"]
OLD_RUN, NEW_RUN = "20250101-000000-000", "20250201-000000-000"


def save_run(runs_dir: Path, ticker: str, run_id: str, prices: pd.DataFrame, horizon: int = HORIZON) -> Path:
    """A small untrained bundle with hand-made validation residuals that grow with the horizon."""
    config = load_config(
        overrides=[f"window.horizon={horizon}", f"window.lookback={LOOKBACK}", "model.hidden_size=4",
                   "model.num_layers=1"]
    )
    torch.manual_seed(0)
    shape = ModelShape.from_config(config.model, n_features=1, horizon=horizon)
    rng = np.random.default_rng(1)
    residuals = rng.normal(0.0, 0.01, (horizon, 60)) * np.arange(1, horizon + 1)[:, None]
    bundle = RunBundle(
        run_id=run_id,
        ticker=ticker,
        config=config,
        shape=shape,
        spec=WindowSpec.from_config(config),
        scaler=Scaler(feature_mean=(0.0,), feature_std=(0.02,), target_mean=0.0005, target_std=0.02),
        fingerprint=fingerprint(ticker, prices),
        # Complete sections: a bundle missing any of them is refused as damaged.
        split={"val_start": prices.index[-30].date().isoformat(), "test_start": prices.index[-15].date().isoformat()},
        baselines={"train_mean_log_return": 0.0005, "train_naive_mae": 1.0},
        calibration={"method": "split-conformal", "space": "log_price", "source": "validation",
                     "residuals": residuals.tolist()},
        training={"epochs_run": 2, "best_epoch": 2, "best_val_loss": 0.5, "stopped_early": False,
                  "interrupted": False, "seconds": 0.1, "device": "cpu", "seed": 0},
        model=Forecaster(shape).eval(),
        created_at=f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T00:00:00+00:00",
    )
    metrics = {"test": {"model": {"all": {"rmse_ratio": 1.0123}}}}
    return bundles.save_run(bundle, runs_dir, {bundle.ticker: prices}, pd.DataFrame({"epoch": [1, 2]}), metrics)


@pytest.fixture
def prices_until(make_prices):
    """Synthetic daily prices on business days ending on a given day."""

    def build(last_day: date, rows: int = 60, seed: int = 0) -> pd.DataFrame:
        dates = pd.bdate_range(end=last_day, periods=rows, name="Date").as_unit("ns")
        return make_prices(rows, seed=seed).set_axis(dates, axis=0)

    return build


@pytest.fixture
def workspace(tmp_path: Path, prices_until) -> dict[str, Path]:
    """A runs dir with one ACME run and a data dir whose ACME cache ends on LAST_DAY."""
    runs_dir, data_dir = tmp_path / "runs", tmp_path / "data"
    data_dir.mkdir()
    prices = prices_until(LAST_DAY)
    run_dir = save_run(runs_dir, "ACME", NEW_RUN, prices.iloc[:-5])
    (data_dir / "ACME.csv").write_bytes(prices_to_csv(prices))
    return {"runs_dir": runs_dir, "data_dir": data_dir, "run_dir": run_dir, "out": tmp_path / "out"}


def predict_in(workspace: dict[str, Path], **options):
    options.setdefault("today", date(2025, 4, 18))
    return run_predict(runs_dir=workspace["runs_dir"], data_dir=workspace["data_dir"], **options)


def test_forecast_days_are_the_sessions_after_the_last_cached_day(workspace):
    forecast = predict_in(workspace).forecast
    assert forecast.last_date == LAST_DAY
    assert [day.isoformat() for day in forecast.dates] == NEXT_SESSIONS
    cached = data.read_cache(workspace["data_dir"], "ACME")
    assert forecast.last_price == cached["Adj Close"].iloc[-1]  # from the cache, not the bundle's older rows


def test_intervals_are_ordered_nested_and_widen_with_the_horizon(workspace):
    forecast = predict_in(workspace).forecast
    assert forecast.levels == [80.0, 95.0]
    low80, high80 = forecast.lower[80.0], forecast.upper[80.0]
    low95, high95 = forecast.lower[95.0], forecast.upper[95.0]
    assert np.all(low95 < low80) and np.all(low80 < forecast.prices)
    assert np.all(forecast.prices < high80) and np.all(high80 < high95)
    # The residuals grow with the horizon, so the relative width does too.
    assert np.all(np.diff(np.log(high80 / low80)) > 0)


def test_levels_may_be_chosen_and_repeated(workspace):
    forecast = predict_in(workspace, levels=[90, 50, 90]).forecast
    assert forecast.levels == [50.0, 90.0]
    with pytest.raises(UsageError, match="between 0 and 100"):
        predict_in(workspace, levels=[100])


def test_json_schema(workspace):
    outcome = predict_in(workspace, output_format="json")
    document = json.loads(outcome.text)
    assert list(document)[:8] == [
        "ticker", "run_id", "run_dir", "model", "last_date", "last_price", "levels", "forecasts"
    ]
    assert document["ticker"] == "ACME" and document["run_id"] == NEW_RUN and document["model"] == "lstm"
    assert document["run_dir"] == str(workspace["run_dir"])
    assert document["last_date"] == LAST_DAY.isoformat() and document["levels"] == [80, 95]
    steps = document["forecasts"]
    assert [step["date"] for step in steps] == NEXT_SESSIONS and [step["step"] for step in steps] == [1, 2, 3]
    first = steps[0]
    assert set(first) == {"date", "step", "price", "change_pct", "intervals"}
    assert set(first["intervals"]) == {"80", "95"} and set(first["intervals"]["80"]) == {"lower", "upper"}
    expected_change = (first["price"] / document["last_price"] - 1) * 100
    assert first["change_pct"] == pytest.approx(expected_change, abs=1e-3)


def test_csv_schema_matches_the_json(workspace):
    rows = list(csv.DictReader(io.StringIO(predict_in(workspace, output_format="csv").text)))
    steps = json.loads(predict_in(workspace, output_format="json").text)["forecasts"]
    bounds = ["lower_80", "upper_80", "lower_95", "upper_95"]
    assert list(rows[0]) == ["date", "step", "price", "change_pct", *bounds]
    assert len(rows) == HORIZON
    for row, step in zip(rows, steps, strict=True):
        assert row["date"] == step["date"] and float(row["price"]) == step["price"]
        assert float(row["lower_95"]) == step["intervals"]["95"]["lower"]


def test_the_same_bundle_and_cache_give_byte_identical_output(workspace):
    out = workspace["out"]
    out.mkdir()
    first = predict_in(workspace, output=out / "first.json")
    second = predict_in(workspace, output=out / "second.json")
    assert first.chart == out / "first.json.png" and second.chart == out / "second.json.png"
    assert (out / "first.json").read_bytes() == (out / "second.json").read_bytes()
    assert (out / "first.json.png").read_bytes() == (out / "second.json.png").read_bytes()
    assert (out / "first.json.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predict_in(workspace, output=out / "table.txt")
    predict_in(workspace, output=out / "again.txt")
    assert (out / "table.txt").read_text() == (out / "again.txt").read_text()


def test_the_chart_goes_into_the_bundle_without_an_output_file(workspace):
    outcome = predict_in(workspace)
    assert outcome.text is None and outcome.output is None
    assert outcome.chart == workspace["run_dir"] / "forecast.png" and outcome.chart.is_file()


def test_charts_of_outputs_sharing_a_stem_never_overwrite_one_another(workspace):
    out = workspace["out"]
    out.mkdir()
    (out / "x.png").write_bytes(b"a picture of the user's")
    for name in ("x.json", "x.csv", "x.txt"):
        assert predict_in(workspace, output=out / name).chart == out / f"{name}.png"
    assert sorted(path.name for path in out.iterdir()) == [
        "x.csv", "x.csv.png", "x.json", "x.json.png", "x.png", "x.txt", "x.txt.png"
    ]
    assert (out / "x.png").read_bytes() == b"a picture of the user's"
    for name in ("x.json", "x.csv", "x.txt"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_output_that_is_not_a_regular_file_sends_the_chart_into_the_bundle(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run_dir = tmp_path / "run"
    assert predict.chart_path(Path("/dev/null"), run_dir) == run_dir / "forecast.png"
    assert predict.chart_path(fifo, run_dir) == run_dir / "forecast.png"
    assert predict.chart_path(tmp_path / "new.json", run_dir) == tmp_path / "new.json.png"


def test_the_newest_run_is_used_unless_a_ticker_or_run_is_given(workspace, prices_until):
    runs_dir = workspace["runs_dir"]
    older = save_run(runs_dir, "ACME", OLD_RUN, prices_until(LAST_DAY, seed=1))
    save_run(runs_dir, "ZETA", "20250301-000000-000", prices_until(LAST_DAY, seed=2))
    (workspace["data_dir"] / "ZETA.csv").write_bytes(prices_to_csv(prices_until(LAST_DAY, seed=2)))
    assert predict_in(workspace).forecast.ticker == "ZETA"
    assert predict_in(workspace, ticker="acme").forecast.run_id == NEW_RUN
    assert predict_in(workspace, run=older).forecast.run_id == OLD_RUN
    with pytest.raises(UsageError, match="--run or --ticker, not both"):
        predict_in(workspace, run=older, ticker="ACME")


def test_fewer_days_are_the_first_steps_and_more_than_the_horizon_is_an_error(workspace):
    full = predict_in(workspace).forecast
    two = predict_in(workspace, days=2).forecast
    assert two.dates == full.dates[:2] and np.array_equal(two.prices, full.prices[:2])
    with pytest.raises(UsageError) as error:
        predict_in(workspace, days=7)
    message = str(error.value)
    assert "trained to forecast 3 days at once (direct multi-step)" in message
    assert "--set window.horizon=7" in message


def test_a_stale_cache_is_warned_about(workspace):
    # Sessions missing from a cache ending on Thursday 04-17: 21-25 April (Good Friday is a holiday).
    assert predict_in(workspace, today=date(2025, 4, 28)).warnings == []  # five sessions
    warnings = predict_in(workspace, today=date(2025, 4, 29)).warnings  # six: one more than allowed
    assert len(warnings) == 1
    assert "end on 2025-04-17, 6 trading sessions before today" in warnings[0] and "--refresh" in warnings[0]


def test_without_a_cache_the_bundle_prices_are_used_with_a_warning(workspace):
    (workspace["data_dir"] / "ACME.csv").unlink()
    outcome = predict_in(workspace)
    recorded_last = outcome.forecast.history.index[-1].date()
    assert outcome.forecast.last_date == recorded_last < LAST_DAY
    assert len(outcome.warnings) == 1 and "no cached prices for ACME" in outcome.warnings[0]


def test_refresh_updates_the_cache_before_forecasting(workspace, fake_yahoo, prices_until):
    fake_yahoo.prices = prices_until(date(2025, 4, 24), rows=70)
    outcome = predict_in(workspace, refresh=True, today=date(2025, 4, 25))
    assert fake_yahoo.calls and outcome.forecast.last_date == date(2025, 4, 24)
    assert data.read_cache(workspace["data_dir"], "ACME").index[-1].date() == date(2025, 4, 24)


def test_format_follows_the_output_suffix_unless_given(workspace):
    out = workspace["out"]
    out.mkdir()
    assert predict_in(workspace, output=out / "f.csv").format == "csv"
    assert predict_in(workspace, output=out / "f.csv", output_format="json").format == "json"
    with pytest.raises(UsageError, match="--format 'xml'"):
        predict_in(workspace, output_format="xml")


def test_runs_lists_every_bundle_oldest_first(workspace, prices_until):
    save_run(workspace["runs_dir"], "ACME", OLD_RUN, prices_until(LAST_DAY))
    _, rows = run_summaries(workspace["runs_dir"])
    assert [row["run_id"] for row in rows] == [OLD_RUN, NEW_RUN]
    assert rows[0] | {"path": None, "config": None} == {
        "run_id": OLD_RUN, "ticker": "ACME", "model": "lstm", "created": "2025-01-01T00:00:00+00:00",
        "epochs": 2, "test_rmse_ratio": 1.0123, "interrupted": False, "evaluated": False,
        "evaluation_interrupted": False, "damaged": False, "damage": None, "path": None, "config": None,
    }
    assert rows[0]["config"]["window.lookback"] == str(LOOKBACK)  # a key that differs from the defaults
    result = CliRunner().invoke(app, ["runs", "--runs-dir", str(workspace["runs_dir"]), "--json"])
    assert result.exit_code == 0
    assert [row["run_id"] for row in json.loads(result.stdout)["runs"]] == [OLD_RUN, NEW_RUN]


@pytest.mark.parametrize("damage", {
    "garbage": lambda run: (run / "bundle.json").write_bytes(b"\x00\xff binary garbage"),
    "deep": lambda run: (run / "bundle.json").write_text("[" * 100_000 + "]" * 100_000),
    "huge integer": lambda run: (run / "bundle.json").write_text('{"ticker": "X", "created_at": ' + "9" * 5000 + "}"),
    "too big": lambda run: os.truncate(run / "bundle.json", runs.BUNDLE_JSON_LIMIT + 1),  # sparse
    "markup": lambda run: (run / "bundle.json").write_text('{"ticker": "[/]", "model": {"kind": "[bold]"}}'),
    "files missing": lambda run: [(run / name).unlink() for name in ("metrics.json", "config.yaml")],
}.items(), ids=lambda item: item[0] if isinstance(item, tuple) else None)
def test_runs_lists_every_good_run_beside_a_damaged_one(workspace, prices_until, damage):
    save_run(workspace["runs_dir"], "ACME", OLD_RUN, prices_until(LAST_DAY))
    damage[1](workspace["runs_dir"] / "ACME" / OLD_RUN)
    _, rows = run_summaries(workspace["runs_dir"])
    assert [row["run_id"] for row in rows] == [OLD_RUN, NEW_RUN]
    assert rows[1]["damaged"] is False and rows[1]["ticker"] == "ACME" and rows[1]["config"]
    for arguments in ([], ["--json"]):
        result = CliRunner().invoke(app, ["runs", "--runs-dir", str(workspace["runs_dir"]), *arguments])
        assert result.exit_code == 0, result.output
        assert NEW_RUN in result.stdout and OLD_RUN in result.stdout
    table = CliRunner().invoke(app, ["runs", "--runs-dir", str(workspace["runs_dir"])]).stdout
    expected = {"files missing": "not evaluated", "markup": "[/]"}.get(damage[0], "damaged")  # markup shown as is
    assert expected in next(line for line in table.splitlines() if OLD_RUN in line)


def test_runs_shows_interrupted_evaluated_and_the_config_that_differs(workspace):
    run_dir = workspace["run_dir"]
    (run_dir / "evaluation.json").write_text("{}")
    document = json.loads((run_dir / "bundle.json").read_text())
    document["training"]["interrupted"] = True
    (run_dir / "bundle.json").write_text(json.dumps(document))
    table = CliRunner().invoke(app, ["runs", "--runs-dir", str(workspace["runs_dir"])]).stdout
    line = next(line for line in table.splitlines() if NEW_RUN in line)
    assert "interrupted, evaluated" in line and f"lookback={LOOKBACK}" in line


OFFLINE_CLI = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network disabled by the test")

socket.socket.connect = socket.getaddrinfo = socket.create_connection = refuse
from lstm_forecast.cli import main

try:
    main()
except SystemExit as exit:
    network_libraries = ("yfinance", "curl_cffi", "requests")
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in network_libraries)
    print(f"EXIT {exit.code} LOADED {loaded}", file=sys.stderr)
"""


@pytest.mark.slow
def test_cli_predict_is_offline_keeps_stdout_clean_and_never_imports_yfinance(workspace):
    command = [sys.executable, "-c", OFFLINE_CLI, "predict", "--format", "json",
               "--runs-dir", str(workspace["runs_dir"]), "--data-dir", str(workspace["data_dir"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.stderr.strip().endswith("EXIT 0 LOADED []"), result.stderr
    assert json.loads(result.stdout)["forecasts"][0]["date"] == NEXT_SESSIONS[0]  # nothing else on stdout
    assert f"Fan chart: {workspace['run_dir'] / 'forecast.png'}" in result.stderr


def test_every_interval_level_gets_a_band_of_its_own_shade(workspace, monkeypatch):
    from lstm_forecast import plots

    assert plots.band_alphas(1) == [plots.NARROWEST_ALPHA]
    shades = plots.band_alphas(3)
    assert shades[0] == plots.NARROWEST_ALPHA and shades[-1] == plots.WIDEST_ALPHA and shades == sorted(shades)[::-1]
    drawn = []
    real_fill = plots.plt.Axes.fill_between
    monkeypatch.setattr(plots.plt.Axes, "fill_between",
                        lambda self, *args, **kwargs: drawn.append(kwargs["label"]) or real_fill(self, *args, **kwargs))
    outcome = predict_in(workspace, levels=[95, 50, 80])  # in any order: the narrowest is the darkest
    assert outcome.chart.is_file() and drawn == ["50% interval", "80% interval", "95% interval"]
