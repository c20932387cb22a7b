"""tune: the search space, trials scored on validation only, pruning, resume after a kill, --jobs sharing one
journal study, determinism, the honest test figure, and bad input as one `Error:` line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from conftest import TINY_OVERRIDES, error_line
from typer.testing import CliRunner

from lstm_forecast import scoring, train, tune
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.model import Ensemble
from lstm_forecast.prices import prices_to_csv
from lstm_forecast.search_space import load_space
from lstm_forecast.train import train_members
from lstm_forecast.windows import build_dataset

TICKER = "ARX"
# Tiny models on a short series: a trial takes a fraction of a second. Five epochs leave room to prune.
OVERRIDES = [*TINY_OVERRIDES, "train.epochs=5", "train.patience=5"]
SPACE = ("window.lookback: {int: [4, 12], log: true}\n"
         "model.hidden_size: {int: [2, 8]}\n"
         "train.lr: {float: [3.0e-3, 3.0e-2], log: true}\n")


def ar_prices(days: int = 500, phi: float = -0.5, seed: int = 0) -> pd.DataFrame:
    """Adj Close whose daily log returns follow r_t = phi * r_{t-1} + noise: tomorrow is partly predictable."""
    rng = np.random.default_rng(seed)
    noise, returns = rng.normal(0, 0.01, days), np.zeros(days)
    for t in range(1, days):
        returns[t] = phi * returns[t - 1] + noise[t]
    price = 50 * np.exp(np.cumsum(np.r_[0.0, returns]))
    dates = pd.bdate_range("2019-01-02", periods=len(price), name="Date").as_unit("ns")
    return pd.DataFrame({"Open": price, "High": price * 1.01, "Low": price * 0.99, "Close": price,
                         "Adj Close": price, "Volume": 1e6}, index=dates)


@pytest.fixture
def workdir(clean_workdir: Path) -> Path:
    """./data/ARX.csv (an AR(1) series), ./space.yaml (SPACE) and ./tiny.yaml (OVERRIDES)."""
    (clean_workdir / "data").mkdir()
    (clean_workdir / "data" / f"{TICKER}.csv").write_bytes(prices_to_csv(ar_prices()))
    (clean_workdir / "space.yaml").write_text(SPACE)
    tiny = {}
    for item in OVERRIDES:
        key, _, value = item.partition("=")
        section, name = key.split(".")
        tiny.setdefault(section, {})[name] = yaml.safe_load(value)
    (clean_workdir / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    return clean_workdir


def setup_for(workdir: Path, study: str = "s", runs: str = "runs", **options) -> tune.TuneSetup:
    return tune.plan_tune(load_config(None, OVERRIDES), [TICKER], workdir / "data", workdir / runs,
                          workdir / "space.yaml", study, **options)


def tune_args(*extra: str) -> list[str]:
    return ["tune", "-t", TICKER, "--data-dir", "data", "--runs-dir", "runs", "--config", "tiny.yaml",
            "--space", "space.yaml", *extra]


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


# --- the search and its honest number ------------------------------------------------------------


def test_a_tiny_space_on_an_ar_series_beats_naive_on_validation_and_reports_the_test_figure(workdir):
    result = run_cli(*tune_args("--trials", "6", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    folder = workdir / "runs" / "tune" / TICKER
    assert report["trials"]["counted"] == 6 and report["trials"]["this_run"] == 6
    best = report["best"]
    assert best["value"] < 0.95  # phi = -0.5: a fifth of tomorrow's move is predictable
    complete = [row["value"] for row in report["trial_rows"] if row["state"] == "complete"]
    assert best["value"] == min(complete)
    # The retrained best config repeats the best trial's validation score exactly (same seed, same threads) …
    run = report["test"]["runs"][0]
    assert run["val"]["metrics"]["model"]["h1"]["rmse_ratio"] == pytest.approx(best["value"], abs=1e-12)
    # … and the test figure is its own, beside naive with the DM test, the optimism stated.
    test_ratio = run["test"]["metrics"]["model"]["h1"]["rmse_ratio"]
    assert report["test"]["test_ratio"] == test_ratio and "pvalue" in run["test"]["vs_naive"]["dm_h1"]
    assert report["optimism"] == (f"best validation ratio {best['value']:.4f} among 6 trials; its test ratio "
                                  f"{test_ratio:.4f}; chosen on validation, the test figure is the only unbiased one")
    assert {path.name for path in folder.iterdir()} >= {"study.db", "trials.csv", "best.yaml", "tune.png"}
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["number"]) == list(range(6)) and {"window.lookback", "train.lr", "state"} <= set(trials)
    # best.yaml is a config file train reads, holding the best values.
    config = load_config(folder / "best.yaml")
    assert config.window.lookback == best["values"]["window.lookback"]
    assert config.train.lr == best["values"]["train.lr"]
    trained = run_cli("train", "-t", TICKER, "--data-dir", "data", "--runs-dir", "runs2", "--config",
                      str(folder / "best.yaml"), "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["test"]["metrics"]["model"]["h1"]["rmse_ratio"] == pytest.approx(test_ratio)


def test_the_same_study_again_resumes_and_a_different_space_is_refused(workdir):
    assert run_cli(*tune_args("--trials", "2", "--study", "r")).exit_code == 0
    again = run_cli(*tune_args("--trials", "3", "--study", "r", "--json"))
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)["trials"]
    assert (counts["counted"], counts["this_run"]) == (3, 1)
    (workdir / "space.yaml").write_text("window.lookback: {int: [4, 12]}\n")
    refused = run_cli(*tune_args("--trials", "4", "--study", "r"))
    assert refused.exit_code == 2
    assert "study 'r' was created with a different search space; start a new study with --study" in error_line(refused)


def test_tune_again_on_a_finished_study_reuses_its_best_run_until_the_cache_changes(workdir, monkeypatch):
    first = run_cli(*tune_args("--trials", "3", "--json"))
    assert first.exit_code == 0, first.output
    trained = json.loads(first.stdout)["test"]
    assert trained["reused"] is False and trained["runs"][0]["reused"] is False
    real_train_run = tune.train_run

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(tune, "train_run", no_training)
    again = run_cli(*tune_args("--trials", "3", "--json"))
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["trials"]["this_run"] == 0 and report["test"]["reused"] is True
    run, before = report["test"]["runs"][0], trained["runs"][0]
    assert run["reused"] is True and run["run_dir"] == before["run_dir"] and "Reused run" in again.stderr
    assert run["test"] == before["test"] and report["test"]["test_ratio"] == trained["test_ratio"]
    assert run["val"]["metrics"]["model"]["h1"]["rmse_ratio"] == pytest.approx(
        before["val"]["metrics"]["model"]["h1"]["rmse_ratio"], rel=1e-9)
    assert len(list((workdir / "runs" / TICKER).iterdir())) == 1
    # A revised price in the cache: the run no longer matches today's rows, so the best config is trained again.
    prices = ar_prices()
    prices.iloc[100, prices.columns.get_loc("Adj Close")] *= 1.001
    (workdir / "data" / f"{TICKER}.csv").write_bytes(prices_to_csv(prices))
    monkeypatch.setattr(tune, "train_run", real_train_run)
    revised = run_cli(*tune_args("--trials", "3", "--json"))
    assert revised.exit_code == 0, revised.output
    retrained = json.loads(revised.stdout)["test"]
    assert retrained["reused"] is False and retrained["runs"][0]["run_dir"] != before["run_dir"]
    assert len(list((workdir / "runs" / TICKER).iterdir())) == 2



def test_a_damaged_best_run_is_trained_again_not_reused(workdir):
    first = run_cli(*tune_args("--trials", "3", "--json"))
    assert first.exit_code == 0, first.output
    run_dir = Path(json.loads(first.stdout)["test"]["runs"][0]["run_dir"])
    document = json.loads((run_dir / "bundle.json").read_text())
    document["training"]["epochs_run"] = -1  # its config hash and fingerprints still match: only the schema tells
    (run_dir / "bundle.json").write_text(json.dumps(document))
    again = run_cli(*tune_args("--trials", "3", "--json"))
    assert again.exit_code == 0, again.output
    assert "Traceback" not in again.output and "Reused run" not in again.stderr
    retrained = json.loads(again.stdout)["test"]
    assert retrained["reused"] is False and retrained["runs"][0]["run_dir"] != str(run_dir)
    assert len(list((workdir / "runs" / TICKER).iterdir())) == 2

def test_two_fresh_studies_with_the_same_seed_repeat_exactly(workdir):
    results = [tune.search(setup_for(workdir, name, seed=7), trials=3, timeout=None) for name in ("a", "b")]
    first, second = ([(trial.params, trial.value, trial.state) for trial in result.trials] for result in results)
    assert first == second and len(first) == 3


def test_a_resumed_study_draws_new_points_and_the_same_history_draws_the_same_ones(workdir):
    """Stopped after three trials and resumed to six: the resumed trials are not the first ones again (a sampler
    seeded alike restarts its sequence), and two resumes of copies of one study propose the same points."""
    tune.search(setup_for(workdir, seed=7), trials=3, timeout=None)
    for copy in ("runs_a", "runs_b"):
        shutil.copytree(workdir / "runs", workdir / copy)
    resumed = [tune.search(setup_for(workdir, runs=copy, seed=7), trials=6, timeout=None).trials
               for copy in ("runs_a", "runs_b")]
    earlier = [trial.params for trial in resumed[0][:3]]
    new_points = [[(trial.params, trial.value) for trial in trials[3:]] for trials in resumed]
    assert len(new_points[0]) == 3 and not any(params in earlier for params, _ in new_points[0])
    assert new_points[0] == new_points[1]


def test_the_samplers_seed_moves_with_the_history_and_the_worker_and_repeats_for_the_same_ones():
    seeds = {tune.sampler_seed(7, index, history) for index in range(3) for history in range(20)}
    assert len(seeds) == 60 and tune.sampler_seed(7, 1, 5) == tune.sampler_seed(7, 1, 5)


def test_no_trial_ever_scores_a_test_window(workdir, monkeypatch):
    scored = []
    real = scoring.period_forecasts

    def spy(model, windows, dataset):
        scored.append(windows.target_dates.max())
        return real(model, windows, dataset)

    monkeypatch.setattr(scoring, "period_forecasts", spy)
    test_start = build_dataset(ar_prices(), load_config(None, OVERRIDES)).test_start
    for name, folds in (("val", 0), ("cv", 3)):
        scored.clear()
        tune.search(setup_for(workdir, name, cv_folds=folds), trials=2, timeout=None)
        assert scored and max(scored) < test_start.to_datetime64()


def test_a_trial_of_a_seed_ensemble_scores_its_members_mean_as_train_would():
    config = load_config(None, [*OVERRIDES, "train.seeds=2"])
    heard = []
    ratios = tune.validation_ratios(config, {TICKER: ar_prices()},
                                    on_epoch=lambda unit, record: heard.append(unit) and False)
    assert sorted(set(heard)) == [0, 1]  # each member is a unit of its own
    dataset = build_dataset({TICKER: ar_prices()}, config)
    members, _ = train_members(dataset, config)
    forecasts = scoring.period_forecasts(Ensemble(members), dataset.val, dataset)
    expected = scoring.score_forecasts(forecasts, "lstm")["metrics"]["model"]["all"]["rmse_ratio"]
    assert ratios["all"] == pytest.approx(expected, rel=1e-12)


def test_a_hopeless_trial_is_pruned(workdir, monkeypatch):
    monkeypatch.setattr(tune, "PRUNE_AFTER_TRIALS", 2)
    (workdir / "space.yaml").write_text("train.lr: {float: [1.0e-7, 3.0e-2], log: true}\n")
    setup = setup_for(workdir)
    study = tune.open_study(setup)
    for lr in (1e-2, 2e-2, 1e-7):  # two that learn, then one that cannot move its weights
        study.enqueue_trial({"train.lr": lr})
    result = tune.search(setup, trials=3, timeout=None)
    assert [tune._state(trial) for trial in result.trials] == ["complete", "complete", "pruned"]
    assert result.trials[2].user_attrs["epochs"] == tune.PRUNE_WARMUP_EPOCHS + 1  # stopped at the first chance


def test_a_diverging_trial_is_recorded_as_failed_and_the_search_goes_on(workdir, monkeypatch):
    real = train.train_model

    def diverging(dataset, config, *args, **kwargs):
        if config.train.lr > 0.01:
            raise ForecastError("training diverged: the loss was not finite in epoch 1")
        return real(dataset, config, *args, **kwargs)

    monkeypatch.setattr(train, "train_model", diverging)  # each member of a trial is trained by it
    result = tune.search(setup_for(workdir, seed=1), trials=5, timeout=None)
    states = [tune._state(trial) for trial in result.trials]
    assert len(states) == 5 and "failed" in states and "complete" in states
    failed = next(trial for trial in result.trials if tune._state(trial) == "failed")
    assert failed.user_attrs["error"].startswith("training diverged") and failed.params["train.lr"] > 0.01


def test_ctrl_c_mid_trial_keeps_the_finished_trials_and_counts_not_the_one_in_flight(workdir):
    class StopMidTrial:
        """Set a few batches into the trial after the second finished one: as Ctrl-C during training."""

        def __init__(self) -> None:
            self.armed, self.calls = False, 0

        def arm(self, trials) -> None:
            self.armed = self.armed or len(tune.counted(trials)) >= 2

        def is_set(self) -> bool:
            self.calls += self.armed
            return self.calls > 3

    stop = StopMidTrial()
    setup = setup_for(workdir)
    outcome = tune.tune(setup, workdir / "runs", trials=5, stop=stop, on_update=stop.arm)
    assert outcome.interrupted and outcome.report["test"] is None  # no retrain after Ctrl-C
    assert [row["state"] for row in outcome.report["trial_rows"]] == ["complete", "complete", "interrupted"]
    assert len(pd.read_csv(setup.folder / "trials.csv")) == 3
    resumed = tune.search(setup, trials=3, timeout=None)  # one more counted trial completes the study
    assert [tune._state(trial) for trial in resumed.trials][-1] != "interrupted" and resumed.run_here == 1


# --- processes --------------------------------------------------------------------------------------


def trial_states(database: Path) -> list[str]:
    """The states of a SQLite study's trials in order, read without Optuna (cheap enough to poll)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.Error:  # not created yet
        return []


def test_a_study_resumes_after_its_process_is_killed_mid_trial(workdir):
    """SIGKILL while a trial runs: its finished trials are kept, the one it ran is marked abandoned and not
    counted, and the same command finishes the study."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    slow = ["--set", "train.epochs=15", "--set", "train.patience=15"]  # half a second a trial: time to kill one
    child = subprocess.Popen([sys.executable, "-m", "lstm_forecast", *tune_args("--trials", "2", "--study", "k"),
                              *slow], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = workdir / "runs" / "tune" / "k" / "study.db"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
            if trial_states(database)[:2] == ["COMPLETE", "RUNNING"]:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert trial_states(database) == ["COMPLETE", "RUNNING"], "the child was not caught in its second trial"
    storage = f"sqlite:///{database}"
    before = optuna.load_study(study_name="k", storage=storage).get_trials()
    kept = [(t.number, t.value) for t in before if t.state.name == "COMPLETE"]
    assert kept and before[-1].state.name == "RUNNING"
    resumed = run_cli(*tune_args("--trials", "2", "--study", "k", "--json", *slow))
    assert resumed.exit_code == 0, resumed.output
    rows = json.loads(resumed.stdout)["trial_rows"]
    assert [(row["number"], row["value"]) for row in rows if row["number"] in dict(kept)] == kept
    assert rows[before[-1].number]["state"] == "abandoned"
    assert sum(row["state"] in ("complete", "pruned", "failed") for row in rows) == 2 and len(rows) == 3


def test_two_worker_processes_share_one_journal_study_without_running_a_trial_twice(workdir):
    result = run_cli(*tune_args("--trials", "4", "--jobs", "2", "--study", "j", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["storage"].endswith("journal.log") and report["threads_per_trial"] == 1
    numbers = [row["number"] for row in report["trial_rows"]]
    assert sorted(numbers) == list(range(4)) and report["trials"]["counted"] == 4
    # Two samplers seeded apart: the workers did not propose the same first values.
    first = [tuple(row[key] for key in report["space"]) for row in report["trial_rows"][:2]]
    assert first[0] != first[1]
    # Resumed with two workers again: their samplers move on with the study's history, so no value repeats.
    resumed = run_cli(*tune_args("--trials", "6", "--jobs", "2", "--study", "j", "--json"))
    assert resumed.exit_code == 0, resumed.output
    rows = json.loads(resumed.stdout)["trial_rows"]
    points = [tuple(row[key] for key in report["space"]) for row in sorted(rows, key=lambda row: row["number"])]
    assert len(points) == 6 and not set(points[4:]) & set(points[:4])


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("space", "message"), [
    ("", "the search space is empty"),
    ("window.lookbak: [4, 8]\n", "window.lookbak: unknown key (expected one of lookback, horizon)"),
    ("model.type: {int: [1, 3]}\n", "model.type: a range needs a numeric key"),
    ("train.lr: {float: [0.1, 0.01]}\n", "train.lr: expected low < high, got [0.1, 0.01]"),
    ("train.lr: {float: [0.0, 0.1], log: true}\n", "train.lr: a log scale needs low > 0"),
    ("window.lookback: {int: [4, 3000]}\n", "window.lookback: expected an integer >= 1 and <= 2000, got 3000"),
    ("train.seed: [1, 2]\n", "train.seed: not searchable"),
    ("data.features: [[log_return], [log_return, log_return]]\n", "data.features: expected each feature at most once"),
    ("model.type: []\n", "model.type: an empty list of choices"),
])
def test_a_bad_space_is_a_usage_error_before_any_trial(workdir, space, message):
    (workdir / "space.yaml").write_text(space)
    result = run_cli(*tune_args("--trials", "2"))
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: space.yaml: {message}")
    assert not (workdir / "runs" / "tune").exists()


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--trials", "0"], 2, "Invalid value for '--trials'"),
    (["--storage", "notaurl"], 2, "--storage 'notaurl': not a database URL"),
    (["--storage", "sqlite:////nonexistent/folder/x.db"], 1, "cannot open the study storage"),
    (["--objective", "h9"], 2, "Invalid value for '--objective'"),
    (["--study", "../up"], 2, "--study '../up': expected a name"),
    (["--cv-folds", "40"], 2, "--cv-folds 40: ARX has"),
])
def test_bad_options_are_one_error_line(workdir, extra, code, message):
    result = run_cli(*tune_args(*extra))
    assert result.exit_code == code, result.output
    assert message in error_line(result)


def test_the_default_space_is_valid_and_spans_what_it_documents():
    space = load_space(tune.DEFAULT_SPACE, load_config())
    assert space.keys == ["window.lookback", "model.hidden_size", "model.num_layers", "model.dropout", "train.lr",
                          "model.type", "data.features"]
    assert [d.log for d in space.dimensions[:5]] == [True, True, False, False, True]
    assert space.dimensions[-1].choices[1] == ("log_return", "volume_change")


def test_the_board_counts_the_trials_left_of_a_resumed_study_and_logs_each_finished_one_once():
    import io

    from rich.console import Console

    from lstm_forecast.progress import TrialBoard

    distribution = optuna.distributions.IntDistribution(10, 60)
    done = [optuna.trial.create_trial(value=1.0 - n / 100, params={"window.lookback": 10 + n},
                                      distributions={"window.lookback": distribution}) for n in range(3)]
    for number, trial in enumerate(done):
        trial.number = number
    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    with TrialBoard(console, ["window.lookback"], 10, None) as board:
        board.update(done[:2])  # a study resumed with two trials done: eight to go
        assert board.progress.tasks[0].total == 8
        board.update(done)
        board.update(done)
    lines = console.file.getvalue().splitlines()
    assert lines == ["trial 2 complete: 0.9800 (window.lookback=12); best #2 0.9800"]
