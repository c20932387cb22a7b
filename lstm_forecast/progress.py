"""Rich progress bars on stderr (stdout stays clean for tables and `--json`).

The trainer and the backtest report progress through plain callbacks; these classes draw them.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOSS_FIELDS = "train {task.fields[train]} · val {task.fields[val]} · best {task.fields[best]}"


class _Bars:
    """A rich Progress used as a context manager, drawn from the first report on: an error while the work is
    prepared (too few rows, a bad split date) is then the only line on stderr, not an empty bar above it."""

    def __init__(self, console: Console, *columns: Any) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *columns,
            TimeElapsedColumn(), console=console,
        )
        self.shown = False

    def __enter__(self) -> Any:
        return self

    def _show(self) -> None:
        if not self.shown:
            self.shown = True
            self.progress.start()

    def __exit__(self, *exc: object) -> None:
        if not self.shown:
            return  # rich's stop() prints a newline even for a bar never drawn
        for task in self.progress.tasks:  # freeze every running clock; a stopped one keeps its end
            if task.started and task.stop_time is None:
                self.progress.stop_task(task.id)
        self.progress.stop()


class EpochBars(_Bars):
    """One bar per model over epochs: train and validation loss, best epoch, elapsed time."""

    def __init__(self, console: Console, labels: list[str], epochs: int) -> None:
        super().__init__(console, TextColumn(LOSS_FIELDS))
        # Bars after the first start when their model starts, so each one's clock is its own.
        self.tasks = {
            label: self.progress.add_task(label, total=epochs, start=index == 0, train="—", val="—", best="—")
            for index, label in enumerate(labels)
        }
        self.running = next(iter(self.tasks.values()), None)
        self.last_report = console.get_time()

    def update(self, record: Any, label: str | None = None) -> None:
        self._show()
        task = self.tasks[label] if label is not None else next(iter(self.tasks.values()))
        if task != self.running:
            # The previous model is done (perhaps stopped early) since its last report: its clock stops there,
            # and this one's starts there, so the two never overlap; a clock is stopped once only.
            self.progress.start_task(task)
            for each in self.progress.tasks:
                if each.id == self.running:
                    each.stop_time = self.last_report
                elif each.id == task:
                    each.start_time = self.last_report
            self.running = task
        self.last_report = self.progress.get_time()
        self.progress.update(
            task,
            completed=record.epoch,
            train=f"{record.train_loss:.4f}",
            val=f"{record.val_loss:.4f}",
            best=f"{record.best_epoch} ({record.best_val_loss:.4f})",
        )


class FoldBar(_Bars):
    """Progress of the walk-forward backtest: a line up front saying what it will cost, then a bar over folds
    showing the epoch of the fold being trained, or one plain line per finished fold when stderr is not a
    terminal (a log file gets lines it can keep, not a redrawn bar)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, TextColumn("{task.fields[detail]}"))
        self.console = console
        self.task: Any = None  # added on the first report, when the number of folds is known
        self.started = 0.0

    def update(self, event: Any) -> None:
        """Draw one `backtest.FoldProgress` event."""
        if self.task is None:
            self.started = time.monotonic()
            self.console.print(plan_line(event), markup=False, highlight=False, soft_wrap=True)
            self.task = self.progress.add_task("walk-forward folds", total=event.total, detail="")
            if self.console.is_terminal:  # off a terminal: plain lines, below
                self._show()
        if not self.console.is_terminal:
            if event.record is None and event.completed > 0:
                elapsed = duration(time.monotonic() - self.started)
                self.console.print(f"walk-forward fold {event.completed}/{event.total} done, {elapsed} elapsed",
                                   markup=False, highlight=False, soft_wrap=True)
            return
        record, fold = event.record, event.completed + 1
        detail = "" if record is None else f"fold {fold}: epoch {record.epoch}, val {record.val_loss:.4f}"
        self.progress.update(self.task, completed=event.completed, detail=detail)


def plan_line(event: Any) -> str:
    """What the backtest will cost, said before it starts: minutes of silence look like a hang."""
    models = "1 model" if event.trainings == 1 else f"{event.trainings} models"
    line = f"Walk-forward backtest: {event.total} folds, training {models}"
    if event.estimate_seconds is not None:
        line += f", about {duration(event.estimate_seconds)} at this run's own training time"
    return line + " (--folds 0 skips it)."


def duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min: a length of time for a person."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class TickerBar(_Bars):
    """A universe's progress: one bar over tickers (done, failed, elapsed, time left) and, for a job running in
    this process, its epoch; drawn from the first report on, like the others."""

    def __init__(self, console: Console, total: int) -> None:
        super().__init__(console, TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(),
                         TextColumn("{task.fields[detail]}"))
        self.task = self.progress.add_task("tickers", total=total, failed=0, detail="")
        self.failed = 0

    def update_row(self, row: dict[str, Any]) -> None:
        """One ticker finished (a summary row of universe.py)."""
        self._show()
        self.failed += row["status"] == "failed"
        self.progress.update(self.task, advance=1, failed=self.failed, detail=f"{row['ticker']} {row['status']}")

    def update_epoch(self, ticker: str, record: Any) -> None:
        self._show()
        self.progress.update(self.task, detail=f"{ticker}: epoch {record.epoch}, val {record.val_loss:.4f}")


TRIALS_SHOWN = 8  # the latest trials in tune's live table


class TrialBoard:
    """tune's live view on stderr: the latest trials (number, the values tried, value, state, seconds), the
    best so far, and a bar over the trials to run (or the timeout). Off a terminal, one plain line per
    finished trial instead (a log gets lines it can keep). `update` takes the study's trials each time."""

    def __init__(self, console: Console, keys: list[str], trials: int | None, timeout: float | None) -> None:
        from rich.live import Live

        self.console, self.keys = console, keys
        self.trials, self.timeout = trials, timeout
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[best]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("trials" if trials else "seconds", total=trials or timeout, best="")
        self.live = Live(console=console, refresh_per_second=4, redirect_stdout=False, redirect_stderr=False)
        self.started = time.monotonic()
        self.seen: set[int] = set()
        self.before: int | None = None  # trials the study had counted before this run

    def __enter__(self) -> TrialBoard:
        if self.console.is_terminal:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live.is_started:
            self.live.stop()

    def update(self, trials: list[Any]) -> None:
        from lstm_forecast.report import trials_table
        from lstm_forecast.tune import best_trial, counted, trial_rows

        done = len(counted(trials))
        if self.before is None:
            self.before = done
            self.seen = {trial.number for trial in trials if trial.state.is_finished()}
            if self.trials:  # --trials is the study's total: a resumed study runs only the missing ones
                self.progress.update(self.task, total=max(0, self.trials - done))
        best = best_trial(trials)
        best_text = f"best #{best.number} {best.value:.4f}" if best is not None else ""
        elapsed = time.monotonic() - self.started
        completed = done - self.before if self.trials else min(elapsed, self.timeout or elapsed)
        self.progress.update(self.task, completed=completed, best=best_text)
        rows = trial_rows(self.keys, trials)
        if not self.console.is_terminal:
            for row in rows:
                if row["number"] not in self.seen and row["state"] != "running":
                    self.seen.add(row["number"])
                    value = "—" if row["value"] is None else f"{row['value']:.4f}"
                    tried = ", ".join(f"{key}={row[key]}" for key in self.keys)
                    self.console.print(f"trial {row['number']} {row['state']}: {value} ({tried}); {best_text}",
                                       markup=False, highlight=False, soft_wrap=True)
            return
        from rich.console import Group

        self.live.update(Group(trials_table(rows[-TRIALS_SHOWN:], self.keys, "Latest trials"), self.progress))
