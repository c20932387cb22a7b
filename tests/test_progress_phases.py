"""Progress that moves: train and evaluate say which phase runs, a long epoch shows its batches, and stderr
redirected to a log gets plain lines (one per epoch and per phase), never a redrawn bar."""

from __future__ import annotations

import io
import math
import re
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TICKER, build_prices, write_caches
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

from lstm_forecast import progress, trainer
from lstm_forecast.cli import app
from lstm_forecast.commands.train import MemberBars
from lstm_forecast.config import TrainConfig
from lstm_forecast.console import ProgressConsole
from lstm_forecast.progress import EpochBars, FoldBar
from lstm_forecast.trainer import BatchProgress, Samples, fit

TINY = ["--set", "window.lookback=8", "--set", "window.horizon=2", "--set", "model.hidden_size=4",
        "--set", "model.num_layers=1", "--set", "model.dropout=0.0", "--set", "train.epochs=2",
        "--set", "train.device=cpu", "--set", "train.threads=1"]
EPOCH_LINE = re.compile(rf"^{TICKER} LSTM epoch (\d+)/2 train \d+\.\d{{4}} val \d+\.\d{{4}} \d+\.\d s$")
PHASE_LINE = re.compile(r"^\d\d:\d\d:\d\d (.+)…$")


@pytest.fixture
def every_phase_logged(monkeypatch):
    """Every phase gets its line at once (by default only a phase that lasts does)."""
    monkeypatch.setattr(progress, "PHASE_LINE_AFTER_S", 0.0)


@pytest.fixture
def cached(clean_workdir):
    return write_caches(clean_workdir / "data", {TICKER: build_prices(260)})


def train(*options: str):
    return CliRunner().invoke(app, ["train", "-t", TICKER, "--data-dir", "data", "--runs-dir", "runs", *TINY,
                                    *options])


def phases(stderr: str) -> list[str]:
    return [match[1] for line in stderr.splitlines() if (match := PHASE_LINE.match(line))]


def test_train_into_a_log_prints_a_line_per_epoch_and_per_phase(cached, every_phase_logged):
    result = train()
    assert result.exit_code == 0, result.output
    assert phases(result.stderr) == ["reading prices", "building windows", "training",
                                     "forecasting the validation period", "scoring the test period",
                                     "writing the bundle"]
    epochs = [int(match[1]) for line in result.stderr.splitlines() if (match := EPOCH_LINE.match(line))]
    assert epochs == [1, 2]
    assert len(result.stderr.splitlines()) == 8  # the phases and the epochs, nothing else
    assert "\x1b" not in result.stderr and "\r" not in result.stderr  # no colour, no redrawn bar
    assert result.stdout.startswith(f"Trained LSTM on {TICKER}: 2 epochs")  # the report alone on stdout
    assert "epoch 1/2" not in result.stdout and "training…" not in result.stdout


def test_force_color_does_not_turn_a_log_into_a_terminal(cached, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # many CI systems set it
    result = train()
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert sum(bool(EPOCH_LINE.match(line)) for line in result.stderr.splitlines()) == 2
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # a terminal declared so is still one
    assert ProgressConsole(file=io.StringIO()).is_terminal


def test_a_quick_phase_adds_no_line_so_an_early_error_stays_alone(cached):
    result = train("--set", "window.lookback=500")  # fails while the windows are built
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("Error: ")


def test_a_phase_that_lasts_gets_its_line_in_a_log(monkeypatch):
    monkeypatch.setattr(progress, "PHASE_LINE_AFTER_S", 0.05)
    screen = Console(file=io.StringIO(), width=120)
    with EpochBars(screen, ["SYN LSTM"], epochs=2) as bars:
        bars.phase("scoring the test period")
        for _ in range(200):  # wait for the line (the phase outlasts its delay), 10 s at most
            if screen.file.getvalue():
                break
            time.sleep(0.05)
    (line,) = screen.file.getvalue().splitlines()
    assert PHASE_LINE.match(line)[1] == "scoring the test period"


def test_a_long_epoch_reports_its_batches_in_order(monkeypatch):
    monkeypatch.setattr(trainer, "BATCH_REPORT_S", 0.0)  # every batch (the default: once a second at most)
    rng = np.random.default_rng(0)
    windows, targets = rng.normal(size=(50, 4, 1)).astype(np.float32), rng.normal(size=(50, 2)).astype(np.float32)
    model = LastDay()
    reports: list[BatchProgress] = []
    config = TrainConfig(epochs=2, batch_size=8, patience=5, device="cpu", threads=1)
    result = fit(model, Samples(windows, targets), Samples(windows[:10], targets[:10]), config,
                 on_batch=reports.append)
    batches = math.ceil(50 / 8)
    assert result.epochs_run == 2
    # Every batch but the last of each epoch: the epoch's own record follows that one.
    assert reports == [BatchProgress(epoch, batch, batches) for epoch in (1, 2) for batch in range(1, batches)]


class LastDay(nn.Module):
    """The smallest forecaster: a line through each window's last day."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 2)

    def forward(self, windows):
        return self.linear(windows[:, -1, :])


def test_a_long_epoch_moves_the_bar_and_logs_its_batches(cached, monkeypatch):
    monkeypatch.setattr(trainer, "BATCH_REPORT_S", 0.0)
    monkeypatch.setattr(progress, "BATCH_LINE_EVERY_S", 0.0)
    result = train("--set", "train.batch_size=8")  # many batches per epoch
    assert result.exit_code == 0, result.output
    batch_lines = [line for line in result.stderr.splitlines() if " batch " in line]
    assert batch_lines[0] == f"{TICKER} LSTM epoch 1/2: batch 1/{batches_of(batch_lines[0])}"
    assert any(line.startswith(f"{TICKER} LSTM epoch 2/2: batch ") for line in batch_lines)

    screen = Console(file=io.StringIO(), force_terminal=True, width=150)
    with EpochBars(screen, ["SYN LSTM"], epochs=4) as bars:
        bars.update_batch(BatchProgress(1, 3, 4))
        task = bars.progress.tasks[0]
        assert task.completed == 0.75 and "epoch 1: batch 3/4" in task.fields["detail"]
        bars.update(record(1))
        bars.update_batch(BatchProgress(2, 1, 4))
        assert task.completed == 1.25 and task.fields["detail"].startswith("train 0.5000 · val 0.6000")


def batches_of(line: str) -> int:
    return int(line.rsplit("/", 1)[1])


def record(epoch: int) -> SimpleNamespace:
    return SimpleNamespace(epoch=epoch, train_loss=0.5, val_loss=0.6, best_epoch=epoch, best_val_loss=0.6,
                           seconds=1.0)


def test_each_report_of_a_seed_ensemble_goes_to_its_member():
    seen: list[tuple[str, str]] = []
    bars = SimpleNamespace(update=lambda rec, label: seen.append((label, f"epoch {rec.epoch}")),
                           update_batch=lambda done, label: seen.append((label, f"batch {done.epoch}.{done.batch}")))
    members = MemberBars(bars, ["seed 0", "seed 1", "seed 2"])
    members.update_batch(BatchProgress(1, 1, 2))
    members.update(record(1))
    members.update_batch(BatchProgress(2, 1, 2))
    members.update(record(2))
    members.update_batch(BatchProgress(1, 1, 2))  # back to epoch 1: the next member
    members.update(record(1))
    members.update(record(1))  # a member that reported no batch (short epochs)
    assert seen == [("seed 0", "batch 1.1"), ("seed 0", "epoch 1"), ("seed 0", "batch 2.1"), ("seed 0", "epoch 2"),
                    ("seed 1", "batch 1.1"), ("seed 1", "epoch 1"), ("seed 2", "epoch 1")]


def test_on_a_terminal_the_phase_is_a_row_and_phases_alone_leave_no_trace():
    screen = Console(file=io.StringIO(), force_terminal=True, width=150)
    with EpochBars(screen, ["SYN LSTM"], epochs=2) as bars:
        bars.phase("reading prices")
        bars.phase("building windows")
        assert [task.description for task in bars.progress.tasks] == ["SYN LSTM", "building windows"]
    assert bars.progress.live.transient  # an error in the windows: the screen is left as it was
    assert [task.description for task in bars.progress.tasks] == ["SYN LSTM"]

    with EpochBars(screen, ["SYN LSTM"], epochs=2) as bars:
        bars.phase("training")
        bars.update(record(1))
        bars.phase("writing the bundle")
    assert not bars.progress.live.transient  # the bars stay on the screen, the finished phase does not
    assert [task.description for task in bars.progress.tasks] == ["SYN LSTM"]


def test_evaluate_into_a_log_prints_its_phases(tiny_run, clean_workdir, every_phase_logged):
    run_dir = shutil.copytree(tiny_run, clean_workdir / "runs" / TICKER / tiny_run.name)
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--folds", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert phases(result.stderr) == ["rebuilding the windows", "scoring the test period",
                                     "the walk-forward backtest", "writing the report and charts"]
    lines = result.stderr.splitlines()
    assert lines[3].startswith("Walk-forward backtest: 1 fold,") and lines[4].startswith("walk-forward fold 1/1")
    assert "\x1b" not in result.stderr and result.stdout.startswith("{")


def test_a_fold_bar_shows_the_phase_on_a_terminal():
    screen = Console(file=io.StringIO(), force_terminal=True, width=150)
    with FoldBar(screen) as bar:
        bar.phase("scoring the test period")
        assert [task.description for task in bar.progress.tasks] == ["scoring the test period"]
    assert "scoring the test period" in screen.file.getvalue()
