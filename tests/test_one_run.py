"""One run concept across the commands: the newest run of either kind, report.html for every kind of run and set,
and a global evaluation replaced as one set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, build_prices, write_caches
from typer.testing import CliRunner

from lstm_forecast import plots
from lstm_forecast.cli import app
from lstm_forecast.errors import ForecastError
from lstm_forecast.evaluate import evaluate

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


def test_a_universe_writes_a_report_page_beside_its_summary(workspace, tmp_path):
    result = CliRunner().invoke(app, ["train", "-t", "AAA,BBB", "--data-dir", str(workspace["data"]), "--runs-dir",
                                      str(tmp_path / "runs"), "--json", *SETS])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    page = Path(report["files"]["report.html"])
    assert page.parent == Path(report["folder"]) and page.is_file()
    text = page.read_text()
    assert "Verdict on the set" in text and "AAA" in text and "data:image/png;base64," in text
