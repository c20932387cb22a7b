"""Universe mode for `train`: choosing tickers, running them here, in a pool or on Ray with the same weights,
failures and a killed worker that stop nothing else, Ctrl-C, --resume, and the set's honest statistics."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES, build_prices, same_weights
from rich.console import Console
from scipy import stats
from typer.testing import CliRunner

from lstm_forecast import executors, sets, tickers, universe
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.prices import prices_to_csv
from lstm_forecast.report import universe_report
from lstm_forecast.sets import scored_record, set_report, write_summary

TICKERS = ["AAA", "BBB", "CCC"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A cache of three synthetic tickers and SHORT, whose 12 rows are too few for one training window."""
    folder = tmp_path / "data"
    folder.mkdir()
    for seed, ticker in enumerate(TICKERS):
        (folder / f"{ticker}.csv").write_bytes(prices_to_csv(build_prices(260, seed=seed)))
    (folder / "SHORT.csv").write_bytes(prices_to_csv(build_prices(12, seed=9)))
    return folder


def tiny_config(*changes: str):
    return load_config(None, [*TINY_OVERRIDES, *changes])


# --- choosing tickers ------------------------------------------------------------------------------


def test_tickers_come_from_options_files_and_the_cache_in_order_each_once(tmp_path, data_dir):
    listing = tmp_path / "list.txt"
    listing.write_text("# my watchlist\nccc\n\nBBB  # again\nDDD\n")
    selection = tickers.select_tickers(["aaa,BBB", " CCC "], listing, True, data_dir)
    assert selection.tickers == ["AAA", "BBB", "CCC", "DDD", "SHORT"]
    assert selection.warnings == ["dropped repeated tickers: AAA, BBB, CCC"]


def test_a_csv_tickers_file_is_read_by_its_symbol_column(tmp_path):
    listing = tmp_path / "index.csv"
    listing.write_text("Symbol,Name\nMSFT,Microsoft\nBRK-B,Berkshire\n")
    assert tickers.select_tickers([], listing, False, None).tickers == ["MSFT", "BRK-B"]
    listing.write_text("Name,Sector\nMicrosoft,Tech\n")
    with pytest.raises(UsageError, match="a CSV needs a `ticker` or `symbol` column"):
        tickers.select_tickers([], listing, False, None)


def test_a_csv_tickers_file_with_ragged_rows_is_read_by_position(tmp_path):
    listing = tmp_path / "index.csv"
    listing.write_text("Symbol,Name\nMSFT,Microsoft,Tech,extra\nBRK-B\n,empty symbol\nKO,Coca-Cola\n")
    assert tickers.select_tickers([], listing, False, None).tickers == ["MSFT", "BRK-B", "KO"]


def test_a_tickers_list_is_bounded_and_read_in_linear_time(tmp_path):
    names = [f"T{number}" for number in range(tickers.MAX_SELECTED)]
    listing = tmp_path / "many.txt"
    listing.write_text("\n".join([*names, *names[:10]]))  # repeats are counted, not searched for one by one
    selection = tickers.select_tickers([], listing, False, None)
    assert len(selection.tickers) == tickers.MAX_SELECTED and selection.warnings[0].startswith("dropped repeated")
    listing.write_text("\n".join([*names, "ONEMORE"]))
    with pytest.raises(UsageError, match=r"^10,001 tickers: at most 10,000 in one command"):
        tickers.select_tickers([], listing, False, None)


def test_every_invalid_ticker_is_named_in_one_error_before_anything_runs():
    names = ["TSLA", "../x", "a b", "AAPL", "$$$", "%", "^^", "~", "?"]
    with pytest.raises(UsageError) as caught:
        tickers.select_tickers([",".join(names)], None, False, None)
    message = str(caught.value)
    assert message.startswith("7 invalid tickers: '../x', 'a b', '$$$', '%', '^^' and 2 more;")
    with pytest.raises(UsageError, match=r"^invalid ticker '\.\./x': expected a Yahoo Finance symbol"):
        tickers.select_tickers(["TSLA", "../x"], None, False, None)  # one bad name: the single-ticker message


def test_no_ticker_at_all_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no tickers"):
        tickers.select_tickers([" , "], None, False, None)
    with pytest.raises(UsageError, match="--all: no cached prices"):
        tickers.select_tickers([], None, True, tmp_path)


# --- running them ----------------------------------------------------------------------------------


def test_a_universe_trains_every_ticker_and_a_failing_one_stops_nothing(tmp_path, data_dir):
    rows_seen: list[dict] = []
    result = universe.train_universe(tiny_config(), [*TICKERS, "SHORT"], data_dir, tmp_path / "runs",
                                     on_row=rows_seen.append)

    assert [row["ticker"] for row in result.rows] == [*TICKERS, "SHORT"]  # the order given
    assert [row["status"] for row in result.rows] == ["ok", "ok", "ok", "failed"]
    assert "too few" in result.rows[3]["error"] and result.report["failed"][0]["ticker"] == "SHORT"
    assert sorted(row["ticker"] for row in rows_seen) == sorted([*TICKERS, "SHORT"])
    for row in result.rows[:3]:
        assert (Path(row["run_dir"]) / "bundle.json").is_file() and row["rmse_ratio_all"] > 0
        assert 0 <= row["dm_pvalue"] <= 1 and row["dm_pvalue"] <= row["bh_qvalue"] <= 1
    folder = result.folder
    assert folder.parent == tmp_path / "runs" / "_universe"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["rows"] == result.rows and summary["trained"] == 3 and not summary["interrupted"]
    assert (folder / "summary.csv").read_text().splitlines()[0].startswith("ticker,status,run_dir,rows,")
    assert (folder / "universe.png").read_bytes().startswith(b"\x89PNG")
    assert len((folder / "results.jsonl").read_text().splitlines()) == 4
    assert summary["verdict"].startswith("0 of 3 tickers beat the random walk at q < 0.05")


def test_here_in_a_pool_and_on_ray_give_the_same_weights(tmp_path, data_dir):
    config = tiny_config("train.threads=1")
    here = universe.train_universe(config, TICKERS[:2], data_dir, tmp_path / "here")
    pool = universe.train_universe(config, TICKERS[:2], data_dir, tmp_path / "pool", jobs=2)
    for first, second in zip(here.rows, pool.rows, strict=True):
        assert same_weights(Path(first["run_dir"]), Path(second["run_dir"]))
        assert first["rmse_ratio_all"] == second["rmse_ratio_all"]
    pytest.importorskip("ray")
    on_ray = universe.train_universe(config, TICKERS[:2], data_dir, tmp_path / "ray", executor="ray")
    for first, second in zip(here.rows, on_ray.rows, strict=False):
        assert same_weights(Path(first["run_dir"]), Path(second["run_dir"]))


def test_a_killed_worker_fails_its_ticker_only(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(executors, "POOL_ATTEMPTS", 1)  # no second try: the killed job must fail
    config = tiny_config("train.threads=1")
    jobs = [executors.Job(config, ticker, data_dir, tmp_path, 1) for ticker in TICKERS]

    def kill_the_first_worker() -> None:
        deadline = time.monotonic() + 60
        while not multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.01)
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_first_worker)
    killer.start()
    outcomes = {outcome.ticker: outcome for outcome in executors.run_in_pool(jobs, 1, threading.Event())}
    killer.join()
    assert outcomes["AAA"].result is None and "worker process died" in outcomes["AAA"].error
    assert outcomes["BBB"].result is not None and outcomes["CCC"].result is not None


def test_ctrl_c_stops_handing_out_tickers_and_keeps_what_finished(tmp_path, data_dir):
    stop = threading.Event()
    result = universe.train_universe(tiny_config(), TICKERS, data_dir, tmp_path / "runs",
                                     on_row=lambda row: stop.set(), stop=stop)
    assert result.interrupted and result.report["interrupted"]
    assert [row["ticker"] for row in result.rows] == ["AAA"] and result.report["not_run"] == ["BBB", "CCC"]
    assert (result.folder / "summary.json").is_file()


def test_resume_skips_tickers_trained_alike_on_the_same_data(tmp_path, data_dir, monkeypatch):
    config = tiny_config()
    first = universe.train_universe(config, TICKERS, data_dir, tmp_path / "runs")
    # BBB's cache gains a day: its fingerprint changes, so it alone is trained again.
    (data_dir / "BBB.csv").write_bytes(prices_to_csv(build_prices(261, seed=1)))
    trained: list[str] = []
    real_run_job = executors.run_job
    monkeypatch.setattr(executors, "run_job", lambda job, *args: trained.append(job.ticker) or real_run_job(job, *args))

    again = universe.train_universe(config, TICKERS, data_dir, tmp_path / "runs", resume=first.folder)
    assert trained == ["BBB"] and again.folder == first.folder
    assert [row["run_dir"] for row in again.rows][::2] == [row["run_dir"] for row in first.rows][::2]
    assert again.rows[1]["run_dir"] != first.rows[1]["run_dir"]

    assert again.report["resumed"] == {"reused": 2, "trained_again": 1, "damaged_lines": 0}
    # Another config would mix two configs in one set: refused before anything is trained or written.
    results = (first.folder / "results.jsonl").read_bytes()
    with pytest.raises(UsageError, match=r"its tickers were trained with another config"):
        universe.train_universe(tiny_config("train.seed=1"), TICKERS, data_dir, tmp_path / "runs",
                                resume=first.folder)
    assert trained == ["BBB"] and (first.folder / "results.jsonl").read_bytes() == results


def test_resume_without_tickers_takes_the_folders_and_says_what_it_reused(tmp_path, data_dir):
    sets = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    folders = ["--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs"), *sets]
    first = CliRunner().invoke(app, ["train", "-t", "AAA,BBB", "--json", *folders])
    assert first.exit_code == 0, first.output
    folder = json.loads(first.stdout)["folder"]
    again = CliRunner().invoke(app, ["train", "--resume", folder, *folders])
    assert again.exit_code == 0, again.output
    assert f"Resumed {folder}: 2 tickers reused (same config and data), 0 trained." in again.stdout


# --- the statistics ----------------------------------------------------------------------------------


def test_q_values_are_benjamini_hochberg():
    pvalues = [0.01, 0.04, 0.03, 0.5]
    records = [{"row": dict.fromkeys(sets.SUMMARY_COLUMNS) | {"ticker": f"T{i}", "status": "ok",
                                                                  "dm_pvalue": p, "rmse_ratio_all": 0.9},
                "anchors": [], "differential": [], "horizon": 1} for i, p in enumerate(pvalues)]
    rows, report = sets.set_report(records, [f"T{i}" for i in range(4)])
    # By hand: sorted p 0.01, 0.03, 0.04, 0.5 -> p * 4 / rank = 0.04, 0.06, 0.0533, 0.5 -> monotone 0.04, 0.0533...
    assert [row["bh_qvalue"] for row in rows] == pytest.approx([0.04, 0.05333333, 0.05333333, 0.5])
    assert report["better_at_q05"] == 1 and report["worse_at_q05"] == 0


def test_the_pooled_test_averages_the_tickers_day_by_day():
    rng = np.random.default_rng(0)
    days = [day.date().isoformat() for day in build_prices(200).index]

    def record(differential):
        return {"row": {"status": "ok"}, "anchors": days, "differential": list(differential), "horizon": 1}

    # Each ticker alone is noise around a small gain; averaged over 20 tickers the gain is plain.
    better = [record(rng.normal(-0.3, 3.0, 200)) for _ in range(20)]
    pooled = sets.pooled_dm(better)
    assert pooled["days"] == 200 and pooled["mean_differential"] < 0 and pooled["pvalue"] < 0.01
    expected = stats.ttest_1samp(np.mean([r["differential"] for r in better], axis=0), 0.0).pvalue
    assert pooled["pvalue"] == pytest.approx(expected, rel=1e-6)  # horizon 1: DM is the t-test
    no_skill = [record(rng.normal(0.0, 3.0, 200)) for _ in range(20)]
    assert sets.pooled_dm(no_skill)["pvalue"] > 0.05


# --- the command -----------------------------------------------------------------------------------


def test_the_train_command_over_a_universe(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ["--data-dir", str(data_dir), "--runs-dir", "runs", *[f"--set={item}" for item in TINY_OVERRIDES]]
    ok = CliRunner().invoke(app, ["train", "-t", "AAA,BBB", *options])
    assert ok.exit_code == 0, ok.output
    assert "2 tickers on their test periods" in ok.stdout and "Verdict on the set:" in ok.stdout

    failing = CliRunner().invoke(app, ["train", "-t", "AAA", "-t", "SHORT", *options, "--json"])
    assert failing.exit_code == 1
    document = json.loads(failing.stdout)
    assert document["failed"][0]["ticker"] == "SHORT"
    assert failing.stderr.splitlines()[-1].startswith("Error: 1 of 2 tickers could not be trained;")


def test_evaluate_over_a_universe_judges_each_newest_run_and_the_set(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = universe.train_universe(tiny_config(), TICKERS[:2], data_dir, tmp_path / "runs")
    options = ["--data-dir", str(data_dir), "--runs-dir", "runs", "--folds", "0"]
    result = CliRunner().invoke(app, ["evaluate", "-t", "AAA,BBB", "-t", "NOPE", *options, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [row["status"] for row in report["rows"]] == ["ok", "ok", "failed"]
    assert "no trained runs for NOPE" in report["rows"][2]["error"]
    for evaluated, row in zip(report["rows"][:2], trained.rows, strict=True):
        assert evaluated["rmse_ratio_all"] == pytest.approx(row["rmse_ratio_all"], rel=1e-9)  # the same test period
        assert (Path(evaluated["run_dir"]) / "evaluation.json").is_file()
    assert report["pooled_dm"]["pvalue"] == pytest.approx(trained.report["pooled_dm"]["pvalue"], rel=1e-9)
    both = CliRunner().invoke(app, ["evaluate", "--run", trained.rows[0]["run_dir"], "-t", "AAA,BBB", *options])
    assert both.exit_code == 2 and "give --run or --ticker, not both" in both.stderr


def test_runs_and_compare_take_ticker_sets_too(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    universe.train_universe(tiny_config(), TICKERS, data_dir, tmp_path / "runs")
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", "runs", "-t", "CCC,AAA", "--json"])
    assert listed.exit_code == 0
    assert sorted(run["ticker"] for run in json.loads(listed.stdout)["runs"]) == ["AAA", "CCC"]

    options = ["--data-dir", str(data_dir), "--runs-dir", "runs", "--models", "rnn,gru",
               *[f"--set={item}" for item in TINY_OVERRIDES]]
    compared = CliRunner().invoke(app, ["compare", "-t", "AAA,SHORT", *options, "--json"])
    assert compared.exit_code == 1
    document = json.loads(compared.stdout)
    assert [report["ticker"] for report in document["comparisons"]] == ["AAA"]
    assert document["failed"][0]["ticker"] == "SHORT"
    assert compared.stderr.splitlines()[-1] == "Error: 1 of 2 tickers could not be compared"


def test_ray_missing_or_a_runs_dir_a_worker_cannot_see_is_one_clear_line(tmp_path, data_dir, monkeypatch):
    jobs = [executors.Job(tiny_config(), "AAA", data_dir, tmp_path / "not-shared", 1)]
    outcome = executors.run_job(jobs[0])
    assert outcome.result is None and "the runs dir" in outcome.error and "shared paths" in outcome.error
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(UsageError, match=r"--executor ray needs Ray: pip install 'lstm-forecast\[ray\]'"):
        list(executors.run_on_ray(jobs, None, threading.Event()))


def test_a_stop_request_reaches_ray_tasks(tmp_path, data_dir):
    pytest.importorskip("ray")
    stop = threading.Event()
    stop.set()  # Ctrl-C before any task trained: each one ends before its first epoch, nothing written
    jobs = [executors.Job(tiny_config("train.epochs=50"), ticker, data_dir, tmp_path, 1) for ticker in TICKERS[:2]]
    outcomes = list(executors.run_on_ray(jobs, None, stop))
    assert sorted(outcome.ticker for outcome in outcomes) == TICKERS[:2]
    assert all(outcome.interrupted and outcome.result is None for outcome in outcomes)
    assert not list(tmp_path.glob("*/*/bundle.json"))


def test_a_damaged_results_file_only_costs_retraining(tmp_path, data_dir):
    first = universe.train_universe(tiny_config(), TICKERS[:2], data_dir, tmp_path / "runs")
    lines = (first.folder / "results.jsonl").read_text().splitlines()
    damaged = json.loads(lines[0])
    damaged["row"]["rmse_ratio_all"] = "0.5"  # a hand edit: a string where a number belongs
    hostile = [json.dumps(damaged), "[" * 100_000, "\xff not json", '{"row": 1}', lines[1]]
    (first.folder / "results.jsonl").write_text("\n".join(hostile) + "\n", encoding="utf-8")
    again = universe.train_universe(tiny_config(), TICKERS[:2], data_dir, tmp_path / "runs", resume=first.folder)
    assert again.rows[0]["run_dir"] != first.rows[0]["run_dir"]  # AAA trained again
    assert again.rows[1]["run_dir"] == first.rows[1]["run_dir"]  # BBB's line was whole: kept


def test_every_damaged_results_line_is_retrained_never_trusted(tmp_path, data_dir):
    first = universe.train_universe(tiny_config(), TICKERS[:2], data_dir, tmp_path / "runs")
    path = first.folder / "results.jsonl"
    good = [json.loads(line) for line in path.read_text().splitlines()]

    def edited(change) -> str:
        record = json.loads(json.dumps(good[0]))
        change(record)
        return json.dumps(record)

    hostile = [
        edited(lambda r: r["row"].update(dm_pvalue=2.0)),
        edited(lambda r: r.update(horizon=-3)),
        edited(lambda r: r.update(anchors=["not a day"] * len(r["anchors"]))),
        edited(lambda r: r.update(anchors=[r["anchors"][0]] * len(r["anchors"]))),  # all one day
        edited(lambda r: r["row"].update(rmse_ratio_all=1e308)),
        edited(lambda r: r["row"].update(extra_column=1)),
        edited(lambda r: r.update(differential=[1e308] * len(r["differential"]))),
        "x" * (universe.RESULT_LINE_LIMIT + 10),  # one line longer than a ticker's can be: skipped unread
    ]
    path.write_text("\n".join([*hostile, json.dumps(good[1])]) + "\n")
    records, damaged = universe.trusted_records(path)
    assert list(records) == [TICKERS[1]] and damaged == len(hostile)
    again = universe.train_universe(tiny_config(), TICKERS[:2], data_dir, tmp_path / "runs", resume=first.folder)
    assert again.rows[0]["run_dir"] != first.rows[0]["run_dir"]  # trained again
    assert again.rows[1]["run_dir"] == first.rows[1]["run_dir"]


def test_a_results_file_that_is_a_link_to_a_foreign_file_is_never_written(tmp_path, data_dir):
    first = universe.train_universe(tiny_config(), TICKERS[:1], data_dir, tmp_path / "runs")
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("not ours\n")
    (first.folder / "results.jsonl").unlink()
    (first.folder / "results.jsonl").symlink_to(foreign)
    with pytest.raises(ForecastError, match=r"results\.jsonl: cannot append to a universe's results \(damaged "
                                            r"universe folder\): a symbolic link"):
        universe.append_result(first.folder, {"row": {"ticker": "AAA"}})
    assert foreign.read_text() == "not ours\n"


def test_an_unreachable_ray_address_is_one_line_at_once(monkeypatch):
    def refused(address, timeout):
        assert address == ("10.0.0.9", 6379) and timeout == executors.RAY_CONNECT_TIMEOUT_S
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(executors.socket, "create_connection", refused)
    with pytest.raises(executors.ForecastError, match=r"^cannot reach the Ray cluster at 'ray://10\.0\.0\.9:6379': "
                                                      r"Connection refused; check --ray-address"):
        executors.check_reachable("ray://10.0.0.9:6379")
    executors.check_reachable("auto")  # Ray's own discovery: not probed


def test_the_set_table_gives_each_tickers_verdict_and_windows_and_names_the_interrupted(tmp_path):
    good = scored_record("AAA", "ok", 1.0, None, run_dir=tmp_path, rows=300, test={
        "windows": 57, "metrics": {"model": {"h1": {"rmse_ratio": 0.9}, "all": {"rmse_ratio": 0.8}}},
        "vs_naive": {"dm_all": {"pvalue": 0.001}, "direction_h1": {"accuracy": 0.6, "binomial_pvalue": 0.1}}},
        echoes=False)
    stopped = scored_record("BBB", "interrupted", 0.5, None)
    rows, report = set_report([good, stopped], ["AAA", "BBB", "CCC"])
    text = "\n".join(str(item) for item in universe_report({**report, "rows": rows, "folder": str(tmp_path)})[1:])
    table = Console(width=160, record=True)
    table.print(universe_report({**report, "rows": rows, "folder": str(tmp_path)})[0])
    line = next(line for line in table.export_text().splitlines() if "AAA" in line)
    assert "57" in line and "better" in line
    assert "Interrupted before an epoch finished: BBB." in text and "Interrupted before 1 tickers started." in text
    # Nothing scored (every ticker stopped before an epoch): no empty chart, and the summary does not list one.
    rows, report = set_report([stopped], ["BBB"])
    write_summary(tmp_path, rows, report)
    assert not (tmp_path / "universe.png").exists() and "universe.png" not in report["files"]



def test_jobs_in_this_process_keep_auto_threads_and_workers_get_a_count():
    """`--jobs 1` trains in this process, where `auto` follows the load ticker by ticker and step by step
    (a count fixed once for the universe collapsed when other work started after it); workers get a count."""
    cores = len(os.sched_getaffinity(0))
    assert universe.threads_per_job(tiny_config("train.threads=auto"), 1, "local") == "auto"
    assert universe.threads_per_job(tiny_config("train.threads=auto"), 2, "local") == max(1, cores // 2)
    assert universe.threads_per_job(tiny_config("train.threads=auto"), 1, "ray") == 1
    assert universe.threads_per_job(tiny_config("train.threads=3"), 2, "local") == 3
    schedule = tiny_config("train.threads=[[0, 2], [10, 1]]")
    assert universe.threads_per_job(schedule, 1, "local") == [[0, 2], [10, 1]]
    assert universe.threads_per_job(schedule, 2, "local") == 2  # a worker's OpenMP pool: the largest count
