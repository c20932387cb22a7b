"""Progress on stderr (stdout stays clean for tables and `--json`): rich bars on a terminal, plain lines in a
log (stderr redirected: nohup, CI), never a redrawn bar there.

The trainer and the backtest report progress through plain callbacks, and the work announces its phases
(reading prices, building windows, training, scoring, writing) through `phase`; these classes show them. On a
terminal the phase is a row of the display, with its own clock; in a log it is a timestamped line once the
phase has lasted PHASE_LINE_AFTER_S, so a quick step adds no line, and an error in the first moments of the
work stays the only line on stderr.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# In a log: a phase that has lasted this long gets a line (minutes of silence look like a hang) …
PHASE_LINE_AFTER_S = 5.0
# … and a long epoch a line of its progress at most this often (a log keeps every line it gets).
BATCH_LINE_EVERY_S = 30.0


class StepColumn(MofNCompleteColumn):
    """Done / total, or nothing for a phase row (which has no steps to count)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


class _Bars:
    """A rich Progress used as a context manager, drawn from the first report or phase on: an error while the
    work is prepared (too few rows, a bad split date) is then the only line on stderr. A display that showed
    phases only is erased when it closes, so such an error still stands alone on the screen."""

    def __init__(self, console: Console, *columns: Any) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), StepColumn(), *columns,
            TimeElapsedColumn(), console=console,
        )
        self.shown = False
        self.reported = False  # a report, not just a phase, was drawn
        self.phase_row: Any = None  # the terminal's phase row, once a phase was announced
        self.pending_line: threading.Timer | None = None  # a log's phase line, due once the phase lasts

    def __enter__(self) -> Any:
        return self

    def _show(self) -> None:
        self.reported = True
        self._start()

    def _start(self) -> None:
        if not self.shown:
            self.shown = True
            self.progress.start()

    def phase(self, text: str) -> None:
        """A phase of the work starts now (the `on_phase` callback of train and evaluate)."""
        if self.console.is_terminal:
            self._start()
            if self.phase_row is not None:
                self.progress.remove_task(self.phase_row)  # a row of its own: its clock starts with the phase
            self.phase_row = self.progress.add_task(text, total=None, **self.blank_fields())
            return
        self._cancel_line()
        line = f"{datetime.now():%H:%M:%S} {text}…"
        if PHASE_LINE_AFTER_S <= 0:
            self._print(line)
        else:
            self.pending_line = threading.Timer(PHASE_LINE_AFTER_S, self._print, [line])
            self.pending_line.daemon = True
            self.pending_line.start()

    def blank_fields(self) -> dict[str, Any]:
        """The fields the extra columns read, empty (a phase row has none to show)."""
        return {"detail": ""}

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _cancel_line(self) -> None:
        if self.pending_line is not None:
            self.pending_line.cancel()
            self.pending_line = None

    def __exit__(self, *exc: object) -> None:
        self._cancel_line()
        if self.phase_row is not None:  # a finished phase is no news
            self.progress.remove_task(self.phase_row)
        for task in self.progress.tasks:  # freeze every running clock; a stopped one keeps its end
            if task.started and task.stop_time is None:
                self.progress.stop_task(task.id)
        if not self.shown:
            return  # rich's stop() prints a newline even for a bar never drawn
        if not self.reported:
            self.progress.live.transient = True  # phases alone: leave the screen as it was
        self.progress.stop()


class EpochBars(_Bars):
    """One bar per model over epochs: train and validation loss, best epoch, elapsed time; within a long epoch
    the bar moves with the batches. In a log: a line per epoch, and one per BATCH_LINE_EVERY_S of a long one."""

    def __init__(self, console: Console, labels: list[str], epochs: int) -> None:
        super().__init__(console, TextColumn("{task.fields[detail]}"))
        self.epochs = epochs
        # Bars after the first start when their model starts, so each one's clock is its own.
        self.tasks = {
            label: self.progress.add_task(label, total=epochs, start=index == 0, detail="")
            for index, label in enumerate(labels)
        }
        self.losses = dict.fromkeys(labels, "")  # each model's last epoch, still shown while the next one runs
        self.running = next(iter(self.tasks.values()), None)
        self.last_report = console.get_time()
        self.last_line = time.monotonic()

    def update(self, record: Any, label: str | None = None) -> None:
        """One epoch finished (a `trainer.EpochRecord`)."""
        label = self._report(label)
        self.losses[label] = (f"train {record.train_loss:.4f} · val {record.val_loss:.4f} · "
                              f"best {record.best_epoch} ({record.best_val_loss:.4f})")
        self.progress.update(self.tasks[label], completed=record.epoch, detail=self.losses[label])
        if not self.console.is_terminal:
            self._log(f"{label} epoch {record.epoch}/{self.epochs} train {record.train_loss:.4f} "
                      f"val {record.val_loss:.4f} {record.seconds:.1f} s")

    def update_batch(self, progress: Any, label: str | None = None) -> None:
        """How far an epoch has got (a `trainer.BatchProgress`): the bar moves within the epoch."""
        label = self._report(label)
        within = f"epoch {progress.epoch}: batch {progress.batch}/{progress.batches}"
        self.progress.update(self.tasks[label], completed=progress.epoch - 1 + progress.batch / progress.batches,
                             detail=" · ".join(part for part in (self.losses[label], within) if part))
        if not self.console.is_terminal and time.monotonic() - self.last_line >= BATCH_LINE_EVERY_S:
            self._log(f"{label} epoch {progress.epoch}/{self.epochs}: batch {progress.batch}/{progress.batches}")

    def _report(self, label: str | None) -> str:
        """Start drawing (on a terminal) and make `label`'s bar the running one; the label reported on."""
        if self.console.is_terminal:
            self._show()
        label = label if label is not None else next(iter(self.tasks))
        task = self.tasks[label]
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
        return label

    def _log(self, line: str) -> None:
        self._print(line)
        self.last_line = time.monotonic()


class FoldBar(_Bars):
    """Progress of the walk-forward backtest: a line up front saying what it will cost, then a bar over folds
    showing the epoch of the fold being trained, or one plain line per finished fold when stderr is not a
    terminal (a log file gets lines it can keep, not a redrawn bar)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, TextColumn("{task.fields[detail]}"))
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
    folds = "1 fold" if event.total == 1 else f"{event.total} folds"
    training = ("no model to train (the run's own model is its fold)" if event.trainings == 0
                else "training 1 model" if event.trainings == 1 else f"training {event.trainings} models")
    line = f"Walk-forward backtest: {folds}, {training}"
    if event.estimate_seconds is not None and event.trainings:
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
                    tried = ", ".join(f"{key}={row[key]:.4g}" if isinstance(row[key], float) else f"{key}={row[key]}"
                                      for key in self.keys)  # a sampled float's 17 digits say nothing more
                    self.console.print(f"trial {row['number']} {row['state']}: {value} ({tried}); {best_text}",
                                       markup=False, highlight=False, soft_wrap=True)
            return
        from rich.console import Group

        self.live.update(Group(trials_table(rows[-TRIALS_SHOWN:], self.keys, "Latest trials"), self.progress))
