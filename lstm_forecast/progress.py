"""Rich progress bars on stderr (stdout stays clean for tables and `--json`).

The trainer and the backtest report progress through plain callbacks; these classes draw them.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LOSS_FIELDS = "train {task.fields[train]} · val {task.fields[val]} · best {task.fields[best]}"


class _Bars:
    """A started/stopped rich Progress, usable as a context manager."""

    def __init__(self, console: Console, *columns: Any) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *columns,
            TimeElapsedColumn(), console=console,
        )

    def __enter__(self) -> Any:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.progress.task_ids:  # freeze every clock, early-stopped bars included
            self.progress.stop_task(task)
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

    def update(self, record: Any, label: str | None = None) -> None:
        task = self.tasks[label] if label is not None else next(iter(self.tasks.values()))
        if record.epoch == 1:
            for other in self.tasks.values():  # the previous model is done, perhaps stopped early
                self.progress.stop_task(other)
            self.progress.start_task(task)
        self.progress.update(
            task,
            completed=record.epoch,
            train=f"{record.train_loss:.4f}",
            val=f"{record.val_loss:.4f}",
            best=f"{record.best_epoch} ({record.best_val_loss:.4f})",
        )


class FoldBar(_Bars):
    """One bar over walk-forward folds, showing the epoch of the fold being trained."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, TextColumn("{task.fields[detail]}"))
        self.task: Any = None  # added on the first report, when the number of folds is known

    def __enter__(self) -> FoldBar:
        # Drawn from the first report on: a run that fails to load must leave its one error line alone,
        # not after an empty bar's blank line.
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:  # rich's stop() prints a newline off a terminal, even for a bar never drawn
            super().__exit__(*exc)

    def update(self, completed: int, total: int, record: Any) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("walk-forward folds", total=total, detail="")
        detail = "" if record is None else f"fold {completed + 1}: epoch {record.epoch}, val {record.val_loss:.4f}"
        self.progress.update(self.task, completed=completed, detail=detail)
