"""The command line as a user and a script see it: exit codes, one-line `Error: ...` messages on stderr,
a fast `--help`, `fetch --from-csv`, and `train --json` printing one JSON object and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_CONFIG
from curl_cffi.requests.exceptions import DNSError
from typer.testing import CliRunner

from lstm_forecast import __version__, train
from lstm_forecast.cli import app
from lstm_forecast.data import prices_to_csv, read_prices_csv
from lstm_forecast.errors import Interrupted

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tiny_config(clean_workdir: Path) -> Path:
    path = clean_workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


@pytest.fixture
def cached(clean_workdir: Path, make_prices) -> Path:
    """A price cache with 260 rows of SYN in ./data."""
    folder = clean_workdir / "data"
    folder.mkdir()
    (folder / "SYN.csv").write_bytes(prices_to_csv(make_prices(260)))
    return folder


def only_error_line(result) -> str:
    """The run failed with exactly one `Error: ...` line on stderr and nothing on stdout."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert result.stdout == ""
    assert "Traceback" not in result.output
    return lines[0]


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, check=False)


def test_help_imports_no_heavy_library():
    snippet = (
        "import sys\n"
        "from lstm_forecast.cli import main\n"
        "sys.argv = ['lstm-forecast', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print('loaded', sorted(name for name in ('torch', 'pandas', 'yfinance') if name in sys.modules))\n"
    )
    done = run_python("-c", snippet)
    assert done.returncode == 0, done.stderr
    assert "exit 0" in done.stdout and "loaded []" in done.stdout
    assert "fetch" in done.stdout and "train" in done.stdout


def test_version_through_python_m():
    done = run_python("-m", "lstm_forecast", "--version")
    assert done.returncode == 0
    assert done.stdout == f"lstm-forecast {__version__}\n"


def test_missing_ticker_is_a_usage_error(runner, clean_workdir):
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2
    line = only_error_line(result)
    assert "Missing option '--ticker'" in line and "--help" in line


@pytest.mark.parametrize("command", ["fetch", "train"])
def test_a_path_as_ticker_is_refused(runner, clean_workdir, command):
    result = runner.invoke(app, [command, "-t", "../../etc/passwd", "--data-dir", "data"])
    assert result.exit_code == 2
    assert "invalid ticker '../../etc/passwd'" in only_error_line(result)
    assert list(clean_workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer >= 1 and <= 100000, got 'ten'"),
        ({"model": {"hiden_size": 8}}, "model.hiden_size: unknown key"),
    ],
)
def test_bad_config_value_names_the_file_and_key(runner, clean_workdir, content, expected):
    config = clean_workdir / "bad.yaml"
    config.write_text(yaml.safe_dump(content))
    result = runner.invoke(app, ["train", "-t", "SYN", "--config", str(config)])
    assert result.exit_code == 2
    line = only_error_line(result)
    assert line.startswith(f"Error: {config}: ") and expected in line


def test_bad_set_override_is_a_usage_error(runner, clean_workdir):
    result = runner.invoke(app, ["train", "-t", "SYN", "--set", "window.lookback=0"])
    assert result.exit_code == 2
    assert "--set: window.lookback: expected an integer >= 1" in only_error_line(result)


def test_fetch_without_network_says_could_not_reach(runner, clean_workdir, fake_yahoo):
    message = "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com."
    fake_yahoo.error = DNSError(message, 6, SimpleNamespace(status_code=0))
    result = runner.invoke(app, ["fetch", "-t", "TSLA", "--data-dir", "data"])
    assert result.exit_code == 1
    assert only_error_line(result).startswith("Error: could not reach Yahoo Finance for TSLA")
    assert not (clean_workdir / "data" / "TSLA.csv").exists()


def test_fetch_from_csv_writes_the_cache(runner, clean_workdir, make_prices):
    prices = make_prices(300)
    source = clean_workdir / "download.csv"
    source.write_bytes(prices_to_csv(prices))
    result = runner.invoke(app, ["fetch", "-t", "tsla", "--from-csv", str(source), "--data-dir", "data"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "TSLA: 300 rows, 2020-01-02 … 2021-02-24 (300 new, import) → data/TSLA.csv\n"
    cached, _ = read_prices_csv(clean_workdir / "data" / "TSLA.csv")
    pd.testing.assert_frame_equal(cached, prices)
    meta = json.loads((clean_workdir / "data" / "TSLA.meta.json").read_text())
    assert meta["source"] == "csv" and meta["rows"] == 300


def test_train_json_prints_one_object_and_progress_elsewhere(runner, clean_workdir, cached, tiny_config):
    result = runner.invoke(app, [
        "train", "-t", "SYN", "--config", str(tiny_config), "--data-dir", str(cached),
        "--runs-dir", "my-runs", "--model", "gru", "--epochs", "3", "--seed", "5", "--json",
    ])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(document, dict) and result.stdout.count("\n{") == 0
    run_dir = Path(document["run_dir"])
    assert run_dir.parent == Path("my-runs") / "SYN" and (clean_workdir / run_dir / "bundle.json").is_file()
    assert document["model"] == "gru" and document["epochs_run"] == 3
    assert document["test"]["naive"]["all"]["rmse_ratio"] == pytest.approx(1.0)
    recorded = json.loads((clean_workdir / run_dir / "metrics.json").read_text())
    assert document == recorded | {"run_dir": str(run_dir)}
    config = yaml.safe_load((clean_workdir / run_dir / "config.yaml").read_text())
    assert config["train"]["seed"] == 5 and config["window"]["lookback"] == 8
    assert "SYN GRU" in result.stderr  # the progress bar went to stderr


def test_train_prints_a_summary_beside_the_naive_forecast(runner, clean_workdir, cached, tiny_config, monkeypatch):
    monkeypatch.setenv("LSTM_FORECAST_RUNS_DIR", "env-runs")
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--set", "train.lr=0.005"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Trained LSTM on SYN: 2 epochs")
    sections = ["Validation", "Test (never seen in training)", "naive", "Verdict:", "Run bundle: env-runs"]
    assert all(section in result.stdout for section in sections), result.stdout
    assert len(list((clean_workdir / "env-runs" / "SYN").iterdir())) == 1


def test_train_without_cache_or_network_fails_cleanly(runner, clean_workdir, tiny_config, fake_yahoo):
    fake_yahoo.error = OSError("Network is unreachable")
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--runs-dir", "runs"])
    assert result.exit_code == 1
    assert "could not reach Yahoo Finance for SYN" in result.stderr.splitlines()[-1]
    assert result.stdout == ""
    assert not (clean_workdir / "runs").exists()


def test_debug_shows_the_traceback_only_when_asked(runner, clean_workdir, monkeypatch):
    quiet = runner.invoke(app, ["train", "-t", "../x"])
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output
    monkeypatch.setenv("LSTM_FORECAST_DEBUG", "1")
    loud = runner.invoke(app, ["train", "-t", "../x"])
    assert loud.exit_code == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.splitlines()[-1].startswith("Error: invalid ticker '../x'")


def test_a_bug_is_one_line_that_points_at_debug(runner, clean_workdir, cached, tiny_config, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("shapes do not match\nsecond line")

    monkeypatch.setattr(train, "train_run", broken)
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached)])
    assert result.exit_code == 1 and result.stdout == ""
    # The progress bar had started on stderr; the error is the last line, and the only one.
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [result.stderr.splitlines()[-1]]
    assert "unexpected ValueError: shapes do not match second line" in errors[0]
    assert "LSTM_FORECAST_DEBUG=1" in errors[0] and "Traceback" not in result.stderr


def test_ctrl_c_exits_130_without_a_traceback(runner, clean_workdir, cached, tiny_config, monkeypatch):
    def pressed_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "load_training_prices", pressed_ctrl_c)
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached)])
    assert result.exit_code == 130
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_interrupted_training_exits_130_saying_what_was_saved(runner, clean_workdir, cached, tiny_config,
                                                              monkeypatch):
    def interrupted(*args, **kwargs):
        raise Interrupted("training interrupted; the best epoch so far was saved to runs/SYN/x")

    monkeypatch.setattr(train, "train_run", interrupted)
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached)])
    assert result.exit_code == 130
    last_line = result.stderr.splitlines()[-1]
    assert last_line == "Error: training interrupted; the best epoch so far was saved to runs/SYN/x"


@pytest.mark.skipif(not (SHARED_DATA / "TSLA.csv").is_file(), reason="no shared TSLA.csv beside the repo")
def test_train_on_real_tsla_prices(runner, clean_workdir, tiny_config):
    config = clean_workdir / "tsla.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG | {"data": {"start": "2019-01-01"}}))
    result = runner.invoke(app, ["train", "-t", "TSLA", "-c", str(config), "--data-dir", str(SHARED_DATA),
                                 "--runs-dir", "runs", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ticker"] == "TSLA" and document["test"]["windows"] > 100
    assert 0.5 < document["test"]["model"]["all"]["rmse_ratio"] < 2.0
    assert not (SHARED_DATA / "runs").exists()
