"""The command line as a user and a script see it: exit codes, one-line `Error: ...` messages on stderr,
a fast `--help`, `fetch --from-csv`, and `train --json` printing one JSON object and nothing else; options
given twice, bounded numbers, one-line warnings, and the stop request that signals turn into."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import typer
import yaml
from conftest import TINY_CONFIG, handling, signal_self
from curl_cffi.requests.exceptions import DNSError
from typer.core import TyperOption
from typer.testing import CliRunner

from lstm_forecast import __version__, cli, console, train
from lstm_forecast.cli import app
from lstm_forecast.errors import ForecastError, Interrupted
from lstm_forecast.prices import prices_to_csv, read_prices_csv

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


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
    assert document["test"]["metrics"]["naive"]["all"]["rmse_ratio"] == pytest.approx(1.0)
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

    monkeypatch.setattr(train, "load_checked_prices", pressed_ctrl_c)
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
    assert 0.5 < document["test"]["metrics"]["model"]["all"]["rmse_ratio"] < 2.0
    assert not (SHARED_DATA / "runs").exists()


# --- options given twice, messages, help, completion ----------------------------------------------


def one_value_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every command that takes one value, from the CLI itself."""
    group = typer.main.get_command(app)
    context = click_context(group)
    return [
        (name, max(param.opts, key=len))
        for name, command in group.commands.items()
        for param in command.get_params(context)
        if isinstance(param, TyperOption) and not (param.multiple or param.is_flag or param.count)
    ]


def click_context(group):
    return group.make_context("lstm-forecast", ["--help"], resilient_parsing=True)


@pytest.mark.parametrize(("command", "option"), one_value_options())
def test_an_option_that_takes_one_value_given_twice_is_a_usage_error(runner, clean_workdir, command, option):
    result = runner.invoke(app, [command, option, "1", option, "2"])
    assert result.exit_code == 2
    line = only_error_line(result)
    assert line.startswith(f"Error: {option} given twice; it takes one value. See '")
    assert line.endswith(f" {command} --help'.")
    assert list(clean_workdir.iterdir()) == []


def test_the_commands_one_value_options_include_the_examples():
    options = set(one_value_options())
    assert {("train", "--config"), ("evaluate", "--folds"), ("predict", "--days"), ("fetch", "--start")} <= options
    assert ("predict", "--level") not in options and ("train", "--set") not in options  # repeatable
    assert ("train", "--ticker") not in options  # a universe: -t TSLA -t AAPL


def test_a_config_given_three_times_under_both_names_is_refused(runner, clean_workdir):
    result = runner.invoke(app, ["train", "-t", "TSLA", "-c", "a.yaml", "--config", "b.yaml", "-cc.yaml"])
    assert result.exit_code == 2
    assert only_error_line(result).startswith("Error: --config given 3 times; it takes one value.")


def test_repeatable_options_and_repeated_flags_stay_allowed(runner, clean_workdir):
    result = runner.invoke(app, ["runs", "--json", "--json", "--runs-dir", "empty"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == []


def test_a_mistyped_command_gets_one_suggestion_sentence(runner):
    result = runner.invoke(app, ["tran"])
    assert result.exit_code == 2
    line = only_error_line(result)
    assert line.startswith("Error: No such command 'tran'. Did you mean 'train'? See '") and "?." not in line


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["runs"], ["fetch"], ["compare"]])
def test_help_shows_no_value_for_flags(runner, command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--help" in result.stdout and "<bool>" not in result.stdout


def test_shell_completion_is_offered(runner):
    assert "--install-completion" in runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    done = run_python("-m", "lstm_forecast", "--show-completion", "bash")
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stdout and "lstm" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(("command", "device"), [
    ("train", ["--device", "cuda"]), ("train", ["--set", "train.device=cuda"]),
    ("compare", ["-s", "train.device=cuda"]),
])
def test_an_unavailable_device_fails_before_any_progress_line(runner, clean_workdir, cached, tiny_config, command,
                                                              device):
    result = runner.invoke(app, [command, "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached), *device])
    assert result.exit_code == 1
    assert "'cuda' is not available" in only_error_line(result)
    assert not (clean_workdir / "runs").exists()


def test_runs_for_a_ticker_without_runs_names_it_in_the_hint(runner, clean_workdir):
    result = runner.invoke(app, ["runs", "-t", "nvda", "--runs-dir", "runs"])
    assert result.exit_code == 0
    assert "train one with `lstm-forecast train -t NVDA`" in " ".join(result.stderr.split())


# --- numbers bounded at the boundary, hostile input, library warnings -----------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["evaluate", "--folds", "1000000000"], "'--folds': Input should be less than or equal to 50"),
    (["evaluate", "--folds", str(10**20)], "'--folds': Input should be less than or equal to 50"),
    (["evaluate", "--folds", "51"], "'--folds'"),
    (["evaluate", "--folds", "-1"], "'--folds': Input should be greater than or equal to 0"),
    (["predict", "--days", "251"], "'--days': Input should be less than or equal to 250"),
    (["predict", "--days", "0"], "'--days'"),
    (["predict", "--level", "100"], "'--level': 100 is not a percentage between 0 and 100 (exclusive)"),
    (["predict", "--level", "0"], "'--level': 0 is not a percentage"),
    (["predict", "--level", "80", "--level", "nan"], "'--level': nan is not a percentage"),
    (["predict", "--level", "1e400"], "'--level': inf is not a percentage"),
    (["train", "-t", "SYN", "--seed", str(2**32)], "--seed (train.seed): expected an integer >= 0 and <= 4294967295"),
    (["train", "-t", "SYN", "--seed", "-1"], "--seed (train.seed): expected an integer >= 0"),
    (["train", "-t", "SYN", "--epochs", "0"], "--epochs (train.epochs): expected an integer >= 1"),
    (["train", "-t", "SYN", "--epochs", "1" + "0" * 5000], "'--epochs'"),
    (["compare", "-t", "SYN", "--epochs", "10000000000"], "--epochs (train.epochs): expected an integer >= 1 and <="),
])
def test_numeric_options_are_bounded_like_the_config(runner, clean_workdir, args, expected):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    line = only_error_line(result)
    assert expected in line and len(line) < 400


def test_the_cli_bounds_agree_with_the_config_schema():
    from lstm_forecast.config import EvaluateConfig, WindowConfig, load_config

    def upper_bound(model, key: str) -> int:
        return next(item.le for item in model.model_fields[key].metadata if getattr(item, "le", None) is not None)

    assert upper_bound(EvaluateConfig, "folds") == cli.MAX_FOLDS
    assert upper_bound(WindowConfig, "horizon") == cli.MAX_DAYS  # --days never exceeds a horizon
    for level in (0.0, 1e-9, 50.0, 99.999, 100.0):
        try:
            load_config(None, [f"predict.levels=[{level}]"])
            config_accepts = True
        except ForecastError:
            config_accepts = False
        try:
            cli._percent_levels([level])
            cli_accepts = True
        except typer.BadParameter:
            cli_accepts = False
        assert cli_accepts == config_accepts, level
    from lstm_forecast.config import MAX_SEED

    np.random.seed(MAX_SEED)  # the largest seed train.seed (and so --seed) allows is the largest numpy takes ...
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)  # ... and one more it refuses


@pytest.mark.parametrize(("error", "expected"), [
    (RecursionError("maximum recursion depth exceeded"), "Error: the input is nested too deeply to read"),
    (MemoryError(), "Error: out of memory: the input (or the model it describes) is too large"),
    (OverflowError("int too large to convert to float"), "Error: a number in the input is too large"),
])
def test_hostile_input_errors_are_one_clear_line(runner, clean_workdir, monkeypatch, error, expected):
    def hostile(*args, **kwargs):
        raise error

    monkeypatch.setattr(train, "load_checked_prices", hostile)
    (clean_workdir / "data").mkdir()  # a data dir given must exist
    result = runner.invoke(app, ["train", "-t", "SYN", "--data-dir", "data"])
    assert result.exit_code == 1
    assert only_error_line(result) == expected


WARNING_THEN_ERROR = """
import sys, warnings
import numpy as np
from lstm_forecast import train
from lstm_forecast.cli import main
from lstm_forecast.errors import ForecastError

def warning_then_error(*args, **kwargs):
    {warning}
    raise ForecastError("stopped")

train.load_checked_prices = warning_then_error
sys.argv = ["lstm-forecast", "train", "-t", "SYN", "--data-dir", "data"]
main()
"""


@pytest.mark.parametrize(("warning", "expected"), [
    # numpy's RuntimeWarning, with the source line Python would print under it: silenced.
    ("np.exp(np.array([1000.0]))", []),
    ("np.log(np.array([-1.0]))", []),
    # Any other warning: one line of our own, whatever the library's text looks like.
    ("warnings.warn('a notice\\nin two lines', UserWarning)", ["Warning: a notice in two lines"]),
])
def test_library_warnings_never_print_a_source_line(clean_workdir, warning, expected):
    (clean_workdir / "data").mkdir()  # a data dir given must exist
    done = run_python("-c", WARNING_THEN_ERROR.format(warning=warning))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [*expected, "Error: stopped"]


# --- the stop request the CLI gives training ------------------------------------------------------


@pytest.mark.parametrize(("number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_the_first_stop_signal_sets_the_request_and_an_interruption_takes_its_code(number, code):
    before = {name: signal.getsignal(name) for name in console.STOP_SIGNALS}
    with pytest.raises(Interrupted) as failure, console.stop_on_signals() as stop:
        assert not stop.is_set()
        signal_self(number)
        assert stop.is_set() and stop.exit_code == code
        raise Interrupted("saved")
    assert failure.value.exit_code == code
    assert {name: signal.getsignal(name) for name in console.STOP_SIGNALS} == before


def test_an_ignored_signal_stays_ignored_as_under_nohup():
    with handling(signal.SIGHUP, signal.SIG_IGN):
        with console.stop_on_signals() as stop:
            signal_self(signal.SIGHUP)  # the terminal closed: nohup keeps the training going
            assert not stop.is_set()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_a_second_ctrl_c_raises_at_once():
    with pytest.raises(KeyboardInterrupt), console.stop_on_signals() as stop:
        signal_self(signal.SIGINT)
        assert stop.is_set()
        signal_self(signal.SIGINT)
        pytest.fail("the second Ctrl-C did not stop the block")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_train_command_passes_its_stop_request_to_training(runner, clean_workdir, cached, tiny_config,
                                                              monkeypatch):
    real_train_run = train.train_run

    def train_run_with_ctrl_c(*args, stop, **kwargs):
        outcome = real_train_run(*args, stop=stop, **kwargs)
        signal_self(signal.SIGINT)  # after the bundle is in place: nothing is lost
        return outcome

    monkeypatch.setattr(train, "train_run", train_run_with_ctrl_c)
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached), "--json"])
    assert result.exit_code == 130
    run_dir = json.loads(result.stdout)["run_dir"]
    last = result.stderr.splitlines()[-1]
    assert last == f"Error: training interrupted; the best epoch so far was saved to {run_dir}"
    assert (clean_workdir / run_dir / "bundle.json").is_file()


def test_training_stopped_by_ctrl_c_says_so_in_its_report(runner, clean_workdir, cached, tiny_config, monkeypatch):
    real_train_run = train.train_run

    def ctrl_c_after_the_first_epoch(*args, on_epoch, **kwargs):
        def heard(record):
            signal_self(signal.SIGINT)  # the stop request: training ends after the current batch
            return on_epoch(record) if on_epoch is not None else None
        return real_train_run(*args, on_epoch=heard, **kwargs)

    monkeypatch.setattr(train, "train_run", ctrl_c_after_the_first_epoch)
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached)])
    assert result.exit_code == 130
    assert "(interrupted: the best epoch so far was kept)" in result.stdout.splitlines()[0]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_data_too_short_for_the_windows_is_the_only_line_on_stderr(runner, clean_workdir, cached, tiny_config,
                                                                  command):
    result = runner.invoke(app, [command, "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached),
                                 "--set", "window.lookback=500"])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: ")  # no empty bar above it


def test_paths_and_file_text_that_look_like_rich_markup_print_as_they_are(runner, clean_workdir, cached,
                                                                          tiny_config):
    runs = "runs [old]/r[/q]"
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached),
                                 "--runs-dir", runs])
    assert result.exit_code == 0, result.output
    assert f"Run bundle: {runs}/SYN/" in result.stdout
    csv = clean_workdir / "extra.csv"
    csv.write_text((cached / "SYN.csv").read_text().replace("Volume\n", "Volume,[/x]\n", 1))
    result = runner.invoke(app, ["fetch", "-t", "ABC", "--from-csv", str(csv), "--data-dir", "d [x]"])
    assert result.exit_code == 0, result.output
    assert "[/x]" in result.stderr and "→ d [x]/ABC.csv" in result.stdout


def test_train_refuses_an_unknown_calendar_before_training(runner, clean_workdir, cached, tiny_config):
    result = runner.invoke(app, ["train", "-t", "SYN", "-c", str(tiny_config), "--data-dir", str(cached),
                                 "--set", "data.calendar=FOO"])
    assert result.exit_code == 2 and "unknown exchange calendar" in result.stderr
    assert not (clean_workdir / "runs").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "-t", "SYN", "--set", "split.val_fraction=1e-300"], "split.val_fraction: expected a number >= 0.001"),
    (["predict", *[arg for _ in range(11) for arg in ("--level", "50")]], "at most 10 levels"),
])
def test_more_values_found_by_the_black_box_attack_are_usage_errors(runner, clean_workdir, args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and fragment in only_error_line(result)


def test_import_bounds_far_outside_the_file_select_by_date(runner, clean_workdir, cached):
    csv = str(cached / "SYN.csv")
    result = runner.invoke(app, ["fetch", "-t", "ABC", "--from-csv", csv, "--start", "1600-01-01",
                                 "--end", "9999-12-31", "--data-dir", "d"])
    assert result.exit_code == 0 and "260 rows" in result.stdout
