"""progress: the epoch bars' clocks keep running while their model trains and stop when it is done; the
backtest says what it will cost up front and prints plain lines when stderr is not a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from lstm_forecast.backtest import FoldProgress
from lstm_forecast.progress import EpochBars, FoldBar, duration


class Clock:
    """A hand-moved clock for rich (its Progress reads the console's clock)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(epoch: int) -> SimpleNamespace:
    return SimpleNamespace(epoch=epoch, train_loss=0.5, val_loss=0.6, best_epoch=epoch, best_val_loss=0.6, seconds=1.0)


def console(clock: Clock | None = None, terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), get_time=clock, force_terminal=terminal, width=120)


def test_the_epoch_clock_keeps_running_after_epoch_one():
    clock = Clock()
    with EpochBars(console(clock), ["SYN LSTM"], epochs=10) as bars:
        task = bars.progress.tasks[0]
        for epoch in range(1, 6):
            clock.now += 10.0
            bars.update(record(epoch))
            assert task.elapsed == 10.0 * epoch  # grew with every epoch, not frozen after the first
    assert task.elapsed == 50.0  # stopped when the bars close


def test_each_model_has_its_own_clock_frozen_when_the_next_starts():
    clock = Clock()
    with EpochBars(console(clock), ["RNN", "GRU", "LSTM"], epochs=3) as bars:
        tasks = bars.progress.tasks
        for number, label in enumerate(("RNN", "GRU", "LSTM")):
            for epoch in range(1, 4):
                clock.now += 1.0 + number  # each model's epochs take longer than the last one's
                bars.update(record(epoch), label)
        # Each clock runs from the previous model's last report to its own; LSTM's is still running.
        assert [task.elapsed for task in tasks] == [3.0, 6.0, 9.0]
        clock.now += 100.0
        assert [task.elapsed for task in tasks] == [3.0, 6.0, 109.0]
    clock.now += 1.0
    assert [task.elapsed for task in tasks] == [3.0, 6.0, 109.0]  # closing froze LSTM's and moved no other


def events(total: int = 3, estimate: float | None = 125.0) -> list[FoldProgress]:
    """A backtest's reports: start, fold 1 reused, then two epochs and the end of each retrained fold."""
    made = [FoldProgress(0, total, total - 1, estimate, None), FoldProgress(1, total, total - 1, estimate, None)]
    for fold in range(1, total):
        made += [FoldProgress(fold, total, total - 1, estimate, record(epoch)) for epoch in (1, 2)]
        made.append(FoldProgress(fold + 1, total, total - 1, estimate, None))
    return made


def test_the_backtest_says_its_cost_up_front_and_prints_plain_lines_off_a_terminal():
    screen = console()
    with FoldBar(screen) as bar:
        for event in events():
            bar.update(event)
    lines = screen.file.getvalue().splitlines()
    assert lines[0] == ("Walk-forward backtest: 3 folds, training 2 models, about 2 min 05 s at this run's own "
                        "training time (--folds 0 skips it).")
    assert [line.split(",")[0] for line in lines[1:]] == [f"walk-forward fold {n}/3 done" for n in (1, 2, 3)]
    assert all(line.endswith("elapsed") for line in lines[1:])


def test_the_backtest_without_a_recorded_training_time_gives_no_estimate():
    screen = console()
    with FoldBar(screen) as bar:
        bar.update(events(total=2, estimate=None)[0])
    assert screen.file.getvalue().splitlines() == [
        "Walk-forward backtest: 2 folds, training 1 model (--folds 0 skips it)."
    ]


def test_the_backtest_on_a_terminal_draws_a_bar():
    screen = console(terminal=True)
    with FoldBar(screen) as bar:
        for event in events():
            bar.update(event)
        assert bar.progress.tasks[0].completed == 3
    text = screen.file.getvalue()
    assert text.startswith("Walk-forward backtest: 3 folds") and "walk-forward folds" in text
    assert "fold 2/3 done" not in text  # the bar, not the log lines


def test_a_fold_bar_that_never_reported_prints_nothing():
    screen = console()
    with FoldBar(screen):
        pass
    assert screen.file.getvalue() == ""


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (4.4, 59.6, 65, 3725)] == ["4 s", "1 min 00 s", "1 min 05 s", "1 h 02 min"]


def test_the_backtest_plan_counts_in_words():
    from lstm_forecast.progress import plan_line

    one = FoldProgress(completed=0, total=1, trainings=0, estimate_seconds=None, record=None)
    assert plan_line(one).startswith("Walk-forward backtest: 1 fold, no model to train")
    three = FoldProgress(completed=0, total=3, trainings=2, estimate_seconds=None, record=None)
    assert plan_line(three).startswith("Walk-forward backtest: 3 folds, training 2 models")
