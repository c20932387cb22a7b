"""One run concept across the commands: the newest run of either kind, report.html for every kind of run and set,
a global evaluation replaced as one set, predict --json, unseen tickers and a single ticker's seed ensemble."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES, build_prices, write_caches
from typer.testing import CliRunner

from lstm_forecast import plots
from lstm_forecast.bundle import GLOBAL_DIR, STALE_TEMP_AGE_S, load_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.evaluate import evaluate
from lstm_forecast.files import make_temp_dir
from lstm_forecast.model import Ensemble, members_of
from lstm_forecast.train import train_global, train_run
from lstm_forecast.trainer import predict
from lstm_forecast.windows import build_dataset

SETS = [part for override in TINY_OVERRIDES for part in ("--set", override)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tickers' caches, one local run of AAA and, made after it, a global run over all three."""
    root = tmp_path_factory.mktemp("one-run")
    data_dir = write_caches(root / "data", {name: build_prices(260, seed=seed)
                                            for seed, name in enumerate(["AAA", "BBB", "CCC"])})
    runs_dir = root / "runs"
    common = ["--data-dir", str(data_dir), "--runs-dir", str(runs_dir), "--json", *SETS]
    local = CliRunner().invoke(app, ["train", "-t", "AAA", *common])
    assert local.exit_code == 0, local.output
    global_ = CliRunner().invoke(app, ["train", "--all", "--scope", "global", *common])
    assert global_.exit_code == 0, global_.output
    return {"data": data_dir, "runs": runs_dir, "local": Path(json.loads(local.stdout)["run_dir"]),
            "global": Path(json.loads(global_.stdout)["run_dir"])}


def test_evaluate_without_a_run_takes_the_newest_run_of_either_kind(workspace):
    result = CliRunner().invoke(app, ["evaluate", "--runs-dir", str(workspace["runs"]), "--data-dir",
                                      str(workspace["data"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run_dir"] == str(workspace["global"]) and report["scope"] == "in universe"
    # A ticker's newest run is still that ticker's own.
    named = CliRunner().invoke(app, ["evaluate", "-t", "AAA", "--runs-dir", str(workspace["runs"]), "--data-dir",
                                     str(workspace["data"]), "--folds", "0", "--json"])
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["run_dir"] == str(workspace["local"])


def test_a_global_evaluation_writes_a_report_page_with_its_charts(workspace):
    evaluation = evaluate(workspace["global"])
    page = Path(evaluation.report["files"]["report"])
    assert page == workspace["global"] / "report.html"
    text = page.read_text()
    assert "Daily rank IC" in text and "data:image/png;base64," in text and "Config (resolved)" in text
    assert json.loads((workspace["global"] / "evaluation.json").read_text())["files"]["report"] == str(page)


def test_a_global_evaluation_that_fails_midway_leaves_the_earlier_one_whole(workspace, monkeypatch):
    evaluate(workspace["global"])
    names = ["evaluation.json", "summary.json", "summary.csv", "ic.png", "universe.png", "report.html"]
    for name in names:  # an earlier evaluation's files, told apart from what this one would write
        (workspace["global"] / name).write_bytes(f"earlier {name}".encode())
    before = {name: (workspace["global"] / name).read_bytes() for name in names}

    def broken(*args, **kwargs):
        raise ForecastError("the disk is full")

    monkeypatch.setattr(plots, "long_short_plot", broken)  # after the summary files and the IC chart are made
    with pytest.raises(ForecastError, match="the disk is full"):
        evaluate(workspace["global"])
    assert {name: (workspace["global"] / name).read_bytes() for name in names} == before
    leftovers = [path.name for path in workspace["global"].parent.iterdir() if path.name.startswith(".")]
    assert leftovers == []


def test_an_out_of_universe_evaluation_that_fails_midway_leaves_no_folder_or_the_earlier_one_whole(
        workspace, monkeypatch, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(workspace["global"], run_dir)
    write_caches(workspace["data"], {"NEW": build_prices(260, seed=11)})
    real = plots.long_short_plot

    def broken(*args, **kwargs):
        raise ForecastError("the disk is full")

    monkeypatch.setattr(plots, "long_short_plot", broken)
    with pytest.raises(ForecastError, match="the disk is full"):
        evaluate(run_dir, data_dir=workspace["data"], tickers=["NEW"])
    assert not (run_dir / "out_of_universe").exists()  # nothing half-made beside the run
    monkeypatch.setattr(plots, "long_short_plot", real)
    evaluate(run_dir, data_dir=workspace["data"], tickers=["NEW"])
    before = {path.name: path.read_bytes() for path in (run_dir / "out_of_universe").iterdir()}
    monkeypatch.setattr(plots, "long_short_plot", broken)
    with pytest.raises(ForecastError, match="the disk is full"):
        evaluate(run_dir, data_dir=workspace["data"], tickers=["NEW"])
    assert {path.name: path.read_bytes() for path in (run_dir / "out_of_universe").iterdir()} == before
    assert [path.name for path in run_dir.iterdir() if path.name.startswith(".")] == []  # nor a temp marker


def test_a_universe_writes_a_report_page_beside_its_summary(workspace, tmp_path):
    result = CliRunner().invoke(app, ["train", "-t", "AAA,BBB", "--data-dir", str(workspace["data"]), "--runs-dir",
                                      str(tmp_path / "runs"), "--json", *SETS])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    page = Path(report["files"]["report.html"])
    assert page.parent == Path(report["folder"]) and page.is_file()
    text = page.read_text()
    assert "Verdict on the set" in text and "AAA" in text and "data:image/png;base64," in text


def test_predict_without_a_run_takes_the_newest_run_of_either_kind(workspace):
    result = CliRunner().invoke(app, ["predict", "--runs-dir", str(workspace["runs"]), "--data-dir",
                                      str(workspace["data"]), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["run_dir"] == str(workspace["global"]) and document["skill"].startswith("Global run")
    assert sorted(row["ticker"] for row in document["rows"]) == ["AAA", "BBB", "CCC"]


def test_predict_json_is_format_json_and_refuses_another_format(workspace):
    arguments = ["predict", "--run", str(workspace["local"]), "--data-dir", str(workspace["data"])]
    as_json, as_format = (CliRunner().invoke(app, [*arguments, *extra]) for extra in (["--json"],
                                                                                    ["--format", "json"]))
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads(as_format.stdout)
    assert json.loads(as_json.stdout)["ticker"] == "AAA"
    clash = CliRunner().invoke(app, [*arguments, "--json", "--format", "csv"])
    assert clash.exit_code == 2 and "--json prints JSON" in clash.stderr


def test_a_global_model_forecasts_a_ticker_it_never_saw_flagged_unseen(workspace, tmp_path):
    data_dir = write_caches(tmp_path / "data", {"AAA": build_prices(260, seed=0), "NEW": build_prices(260, seed=7)})
    arguments = ["predict", "--run", str(workspace["global"]), "-t", "AAA,NEW", "--data-dir", str(data_dir), "--json"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    rows = {row["ticker"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["AAA"]["status"] == "ok" and rows["NEW"]["status"] == "unseen"
    assert rows["NEW"]["lower"] < rows["NEW"]["forecast"] < rows["NEW"]["upper"]
    assert rows["NEW"]["rmse_ratio"] is None and "evaluate --run RUN -t TICKER" in rows["NEW"]["note"]
    table = CliRunner().invoke(app, arguments[:-1]).stdout  # the table says why the row has no score
    assert "NEW (unseen): not trained on by this run; no test score yet" in table
    # Once scored out of universe, the row carries that score.
    evaluate(workspace["global"], data_dir, tickers=["NEW"])
    again = {row["ticker"]: row for row in json.loads(CliRunner().invoke(app, arguments).stdout)["rows"]}
    assert again["NEW"]["rmse_ratio"] is not None and "out-of-universe test score" in again["NEW"]["note"]
    assert again["NEW"]["forecast"] == rows["NEW"]["forecast"]  # the same forecast: only the score was added


def test_a_single_ticker_trains_a_seed_ensemble_that_predicts_and_evaluates(workspace, tmp_path):
    runs_dir = tmp_path / "runs"
    arguments = ["train", "-t", "AAA", "--seeds", "2", "--data-dir", str(workspace["data"]), "--runs-dir",
                 str(runs_dir), *SETS]
    printed = CliRunner().invoke(app, arguments)
    assert printed.exit_code == 0, printed.output
    assert "seed ensemble of 2 LSTM models" in printed.stdout
    assert "Seed 0:" in printed.stdout and "Seed 1:" in printed.stdout and "test RMSE / naive" in printed.stdout
    result = CliRunner().invoke(app, [*arguments, "--json"])
    metrics = json.loads(result.stdout)
    assert [member["seed"] for member in metrics["members"]] == [0, 1]
    assert all(member["test_rmse_ratio"] > 0 for member in metrics["members"])
    run_dir = Path(metrics["run_dir"])
    bundle = load_bundle(run_dir)
    assert isinstance(bundle.model, Ensemble) and bundle.seeds == [0, 1] and len(bundle.member_training) == 2
    # The ensemble's forecast is its members' mean, in scaled units: not either member's alone.
    forecasts = [CliRunner().invoke(app, ["predict", "--run", str(run_dir), "--data-dir", str(workspace["data"]),
                                          "--json"]) for _ in range(2)]
    assert forecasts[0].exit_code == 0, forecasts[0].output
    assert forecasts[0].stdout == forecasts[1].stdout
    evaluated = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--data-dir", str(workspace["data"]),
                                         "--folds", "2", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert {key: report["test"][key] for key in metrics["test"]} == metrics["test"]  # the same numbers again
    assert report["backtest"]["fold_results"][0]["model_source"] == "bundle"


def test_an_ensemble_forecasts_the_mean_of_its_members(workspace, tmp_path):
    config = load_config(None, [*TINY_OVERRIDES, "train.seeds=2"])
    outcome = train_run(config, "AAA", build_prices(260, seed=0), tmp_path / "runs")
    ensemble = outcome.bundle.model
    dataset = build_dataset({"AAA": build_prices(260, seed=0)}, config)
    inputs = dataset.test.model_inputs
    each = [predict(member, inputs) for member in members_of(ensemble)]
    np.testing.assert_allclose(predict(ensemble, inputs), (each[0] + each[1]) / 2, rtol=1e-6)
    assert not np.allclose(each[0], each[1])


def test_the_screener_takes_each_tickers_newest_run_of_either_kind(workspace, tmp_path):
    runs_dir = tmp_path / "runs"
    shutil.copytree(workspace["runs"], runs_dir)
    newer = CliRunner().invoke(app, ["train", "-t", "CCC", "--data-dir", str(workspace["data"]), "--runs-dir",
                                     str(runs_dir), "--json", *SETS])
    assert newer.exit_code == 0, newer.output
    result = CliRunner().invoke(app, ["predict", "-t", "AAA,BBB,CCC", "--runs-dir", str(runs_dir), "--data-dir",
                                      str(workspace["data"]), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["ticker"]: row for row in json.loads(result.stdout)["rows"]}
    global_run = str(runs_dir / "_global" / workspace["global"].name)
    # AAA's own run is older than the global run trained on it; CCC's own run is the newest.
    assert rows["AAA"]["run_dir"] == rows["BBB"]["run_dir"] == global_run
    assert rows["CCC"]["run_dir"] == json.loads(newer.stdout)["run_dir"]
    assert all(row["status"] in ("ok", "stale") and row["forecast"] > 0 for row in rows.values())
    # The global rows are the ones the global run's own screener gives.
    own = CliRunner().invoke(app, ["predict", "--run", global_run, "--data-dir", str(workspace["data"]), "--json"])
    global_rows = {row["ticker"]: row for row in json.loads(own.stdout)["rows"]}
    for ticker in ("AAA", "BBB"):
        assert rows[ticker]["forecast"] == global_rows[ticker]["forecast"]
        assert rows[ticker]["dm_pvalue"] == global_rows[ticker]["dm_pvalue"]


def test_damaged_scores_in_a_global_runs_metrics_read_as_unknown_not_as_a_crash(workspace, tmp_path):
    run_dir = tmp_path / "_global" / workspace["global"].name
    shutil.copytree(workspace["global"], run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["per_ticker"]["rows"][0]["rmse_ratio_all"] = "abc"  # not a number
    metrics["per_ticker"]["rows"][1]["dm_pvalue"] = 2.0  # not a probability
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    result = CliRunner().invoke(app, ["predict", "--run", str(run_dir), "--data-dir", str(workspace["data"]),
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["ticker"]: row for row in json.loads(result.stdout)["rows"]}
    first, second = (metrics["per_ticker"]["rows"][i]["ticker"] for i in (0, 1))
    assert rows[first]["rmse_ratio"] is None and rows[second]["dm_pvalue"] is None
    assert rows[second]["bh_qvalue"] is None and rows[second]["verdict"] == "not scored"


def test_a_stop_during_a_later_member_keeps_the_finished_members_and_marks_the_run_interrupted(tmp_path):
    config = load_config(None, [*TINY_OVERRIDES, "train.seeds=3", "train.epochs=4", "train.patience=4"])
    stop, starts = threading.Event(), []

    def on_epoch(record):
        starts.extend([record.epoch] if record.epoch == 1 else [])
        if len(starts) == 2 and record.epoch == 2:  # the second member's second epoch, as Ctrl-C would
            stop.set()

    outcome = train_run(config, "AAA", build_prices(260, seed=0), tmp_path / "runs", on_epoch=on_epoch, stop=stop)
    assert outcome.bundle.seeds == [0, 1] and outcome.interrupted
    assert outcome.metrics["interrupted"] and not outcome.metrics["members"][0]["interrupted"]
    assert load_bundle(outcome.run_dir).training["interrupted"]


def test_saving_a_global_run_removes_a_stale_staging_folder_a_killed_evaluate_left(tmp_path):
    data_dir = write_caches(tmp_path / "data", {name: build_prices(260, seed=seed)
                                                for seed, name in enumerate(["AAA", "BBB"])})
    runs_dir = tmp_path / "runs"
    stale, young = (make_temp_dir(runs_dir / GLOBAL_DIR, "an evaluation") for _ in range(2))
    an_hour_ago = time.time() - STALE_TEMP_AGE_S - 1
    os.utime(stale, (an_hour_ago, an_hour_ago))
    config = load_config(None, [*TINY_OVERRIDES, "model.scope=global"])
    result = train_global(config, ["AAA", "BBB"], data_dir, runs_dir)
    # The dead process's folder goes; a young one may be another process's evaluation being staged right now.
    assert sorted((runs_dir / GLOBAL_DIR).iterdir()) == sorted([young, result.run_dir])
