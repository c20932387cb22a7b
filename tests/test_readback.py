"""Files the tool wrote earlier, read back: each goes through its schema and a size bound (runs.read_record,
universe.trusted_records) before use, so a damaged or hostile one is one line, a row marked damaged, or a ticker
trained again; never a traceback, a hang or all of memory. Real files and real CLI processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES, build_prices, run_limited, write_caches
from test_q_family import SCORES, cli, rows_of
from test_q_family import global_run as global_run  # the fixtures: a tiny global run, six tickers' own runs
from test_q_family import runs_dir as runs_dir
from typer.testing import CliRunner

from lstm_forecast import runs, universe
from lstm_forecast.cli import app
from lstm_forecast.errors import ForecastError

# The CLI in a child under the address-space limit, reporting its peak resident memory on the way out.
PEAK_REPORTER = ("import atexit, resource, sys; atexit.register(lambda: print('peak-kib', resource.getrusage("
                 "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); sys.argv = ['lstm-forecast', *sys.argv[1:]]; "
                 "from lstm_forecast.cli import main; main()")
HUGE_LINE = 250 * 10**6


def peak_mib(stderr: str) -> float:
    return int(stderr.rsplit("peak-kib", 1)[1].split()[0]) / 1024


def test_a_250_mb_results_line_is_skipped_unread_and_its_ticker_trained_again(tmp_path):
    data_dir = write_caches(tmp_path / "data", {"AAA": build_prices(260, seed=0)})
    folder = tmp_path / "runs" / universe.UNIVERSE_DIR / "20260101T000000Z"
    folder.mkdir(parents=True)
    (folder / universe.UNIVERSE_FILE).write_text(json.dumps({"tickers": ["AAA"], "config_hash": None}))
    with (folder / universe.RESULTS_FILE).open("wb") as results:
        results.truncate(HUGE_LINE)  # one line of 250 MB (sparse: no disk needed), no newline in it
    sets = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    result = run_limited([sys.executable, "-c", PEAK_REPORTER, "train", "--resume", str(folder), "--data-dir",
                          str(data_dir), "--runs-dir", str(tmp_path / "runs"), *sets], tmp_path,
                         env={"PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "0 tickers reused (same config and data), 1 trained" in result.stdout
    assert "1 damaged line" in result.stdout
    assert peak_mib(result.stderr) < 1024  # the line is never held: far below the 2 GiB limit and the 250 MB
    (record,) = [json.loads(line) for line in (folder / universe.RESULTS_FILE).read_bytes()[HUGE_LINE:].splitlines()
                 if line.strip()]
    assert record["row"]["ticker"] == "AAA" and record["row"]["status"] == "ok"


# --- metrics.json, evaluation.json, bundle heads: `runs` and the screener go on past damage ------------------

HOSTILE_METRICS = {
    "a p-value of 2": json.dumps({"test": {"vs_naive": {"dm_all": {"pvalue": 2.0}}}}),
    "a ratio of 1e308": json.dumps({"test": {"metrics": {"model": {"all": {"rmse_ratio": 1e308}}}}}),
    "a string for a number": json.dumps({"test": {"vs_naive": {"dm_all": {"pvalue": "0.01"}}}}),
    "a list for the document": "[]",
    "deep nesting": "[" * 100_000,
    "not UTF-8": "\xff",
}




@pytest.mark.parametrize("damage", HOSTILE_METRICS)
def test_a_damaged_metrics_file_marks_its_run_and_leaves_the_listing_whole(runs_dir, damage):
    target = next((runs_dir["runs_dir"] / "A").iterdir())
    (target / "metrics.json").write_bytes(HOSTILE_METRICS[damage].encode("utf-8", "surrogateescape"))
    result = CliRunner().invoke(app, ["runs", "--runs-dir", str(runs_dir["runs_dir"]), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["ticker"]: row for row in json.loads(result.stdout)["runs"]}
    assert rows["A"]["damaged"] and rows["A"]["test_rmse_ratio"] is None
    assert rows["A"]["damage"].startswith(f"{target / 'metrics.json'}: ")
    assert not any(rows[ticker]["damaged"] for ticker in SCORES if ticker != "A")
    # The screener forecasts A and says why it has no q-value; the family counts only what could be read.
    screened = rows_of(cli(runs_dir, "-t", "A,B", "--json"))
    assert screened["A"]["bh_qvalue"] is None and "its test scores cannot be read" in screened["A"]["note"]
    assert screened["B"]["family_size"] == len(SCORES) - 1


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "directory", "oversized"])
def test_a_special_or_huge_file_in_a_run_is_damage_at_once(runs_dir, kind):
    target = next((runs_dir["runs_dir"] / "B").iterdir())
    for name in ("metrics.json", "evaluation.json"):
        path = target / name
        path.unlink(missing_ok=True)
        if kind == "fifo":
            os.mkfifo(path)  # nobody writes: a blocking read would hang the listing
        elif kind == "link to /dev/zero":
            path.symlink_to("/dev/zero")
        elif kind == "directory":
            path.mkdir()
        else:
            with path.open("wb") as handle:
                handle.truncate(runs.READBACK_LIMIT + 1)
    (row,) = [row for row in runs.run_summaries(runs_dir["runs_dir"], "B")[1]]
    assert row["damaged"] and str(target / "metrics.json") in row["damage"]
    with pytest.raises(ForecastError, match=r"metrics\.json"):
        runs.read_record(target / "metrics.json", runs.RunMetrics)


def test_a_damaged_bundle_head_lists_damaged_and_leaves_the_family(runs_dir):
    target = next((runs_dir["runs_dir"] / "C").iterdir())
    document = json.loads((target / "bundle.json").read_text())
    document["training"]["epochs_run"] = -1  # out of range
    (target / "bundle.json").write_text(json.dumps(document))
    (row,) = runs.run_summaries(runs_dir["runs_dir"], "C")[1]
    assert row["damaged"] and "epochs_run" in row["damage"]
    scores, damaged = runs.newest_local_scores(runs_dir["runs_dir"])
    assert "C" not in scores and not damaged


def test_extra_keys_from_a_newer_writer_are_read_past(runs_dir):
    target = next((runs_dir["runs_dir"] / "D").iterdir())
    metrics = json.loads((target / "metrics.json").read_text())
    (target / "metrics.json").write_text(json.dumps({**metrics, "written_by_a_newer_version": [1, 2, 3]}))
    assert runs.checked_record(target / "metrics.json", runs.RunMetrics)[0].test_scores() == SCORES["D"]


def test_a_global_runs_damaged_scores_are_named_in_the_screener_which_still_forecasts(global_run, tmp_path):
    run_dir = global_run["run"]
    unseen = run_dir / "out_of_universe"
    unseen.mkdir(exist_ok=True)
    summary = {"rows": [{"ticker": "NEW", "status": "ok", "bh_qvalue": 0.01, "extra_column": 1}]}
    (unseen / "summary.json").write_text(json.dumps(summary))  # a row this tool never writes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["per_ticker"]["rows"][0]["dm_pvalue"] = 2.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    data_dir = write_caches(tmp_path / "data", {"AAA": build_prices(260, seed=0), "NEW": build_prices(260, seed=7)})
    result = CliRunner().invoke(app, ["predict", "--run", str(run_dir), "-t", "AAA,NEW", "--data-dir",
                                      str(data_dir), "--json"])
    rows = rows_of(result)
    assert rows["AAA"]["status"] == "ok" and rows["AAA"]["forecast"] is not None and rows["AAA"]["bh_qvalue"] is None
    assert f"its test scores cannot be read: {run_dir / 'metrics.json'}: damaged" in rows["AAA"]["note"]
    assert rows["NEW"]["status"] == "unseen" and rows["NEW"]["bh_qvalue"] is None
    assert "its out-of-universe test scores cannot be read" in rows["NEW"]["note"]
    assert json.loads(result.stdout)["skill"].startswith(f"Global run {run_dir.name}: its test scores cannot be read")


@pytest.mark.parametrize("text", ["epoch,train_loss,val_loss\n1,abc,0.5\n", "epoch,train_loss,val_loss\n1,inf,0.5\n",
                                  "epoch,train_loss\n1,0.5\n", "epoch,train_loss,val_loss\n0,0.5,0.5\n",
                                  "epoch,train_loss,val_loss\n", "\xff\n", "fifo",
                                  "epoch,train_loss,val_loss\n1," + "9" * 400 + ",0.5\n",
                                  "epoch,train_loss,val_loss\n" + "9" * 30 + ",0.5,0.5\n",
                                  "epoch,train_loss,val_loss\n1.5,0.5,0.5\n"])
def test_a_damaged_loss_history_is_one_line_naming_the_run(tmp_path, text):
    path = tmp_path / "history.csv"
    if text == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ForecastError, match=rf"^damaged run {tmp_path}: "):
        runs.read_history(tmp_path)


def test_a_written_loss_history_reads_back_with_its_extra_columns(tmp_path):
    (tmp_path / "history.csv").write_text("seed,epoch,train_loss,val_loss,lr\n0,1,1.0,1.1,0.001\n0,2,0.9,1.0,0.001\n")
    assert runs.read_history(tmp_path)["val_loss"].tolist() == [1.1, 1.0]


# --- the universe folder: what --resume cannot trust is one line, before any training ---------------------------


def universe_folder(root: Path, description: str) -> Path:
    folder = root / "runs" / universe.UNIVERSE_DIR / "20260101-000000-000"
    folder.mkdir(parents=True)
    (folder / universe.UNIVERSE_FILE).write_text(description)
    (folder / universe.RESULTS_FILE).touch()
    return folder


@pytest.mark.parametrize("description", ['{"tickers": 5}', '{"tickers": ["AAA"], "config_hash": "no"}', "[]",
                                         '{"tickers": ["AAA"]' + ", " * 10 + "}", "fifo", "link to /dev/zero"])
def test_a_damaged_universe_description_is_one_line_naming_the_folder(tmp_path, description):
    folder = universe_folder(tmp_path, "{}")
    path = folder / universe.UNIVERSE_FILE
    path.unlink()
    if description == "fifo":
        os.mkfifo(path)
    elif description == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text(description)
    result = CliRunner().invoke(app, ["train", "--resume", str(folder), "--data-dir", str(tmp_path / "data"),
                                      "--runs-dir", str(tmp_path / "runs"), "--set", "train.epochs=1"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: {folder}") or line.startswith(f"Error: --resume {folder}")
    assert "damaged universe folder" in line or "not a regular file" in line


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "directory"])
def test_a_results_file_that_is_not_a_regular_file_is_one_line_at_once(tmp_path, kind):
    folder = universe_folder(tmp_path, json.dumps({"tickers": ["AAA"], "config_hash": None}))
    path = folder / universe.RESULTS_FILE
    path.unlink()
    {"fifo": os.mkfifo, "directory": Path.mkdir}.get(kind, lambda where: where.symlink_to("/dev/zero"))(path)
    data_dir = write_caches(tmp_path / "data", {"AAA": build_prices(260)})
    result = CliRunner().invoke(app, ["train", "--resume", str(folder), "--data-dir", str(data_dir),
                                      "--runs-dir", str(tmp_path / "runs"), "--set", "train.epochs=1"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: {path}: ") and f"--resume {folder}" in line
    assert "not a regular file" in line or "cannot read" in line
