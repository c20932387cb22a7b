"""Training: fit a forecaster on the training windows, stop early on the validation windows.

The trainer is separate from the model: it takes any module mapping a batch of inputs to (batch, horizon)
forecasts, the training and validation `Samples`, and the `train` config section. It never sees the test
split, so neither the weights nor the choice of the best epoch can leak it. A sample's inputs may be several
arrays (the windows, and later a ticker index or covariates): the model is called with them in order.

Each epoch shuffles the training windows with a generator of its own, takes AdamW steps on mini-batches
(clipping the gradient norm, because recurrent nets are prone to exploding gradients), then measures the
loss on the whole validation split. The weights of the best validation epoch are kept and restored at the
end; training stops when `patience` epochs pass without a new best. Nothing is printed: the caller gets an
`EpochRecord` after every epoch through `on_epoch` and draws its own progress; by returning True, `on_epoch`
ends training there as early stopping would (a hyper-parameter search prunes a hopeless trial this way).
An epoch over a large universe can take minutes, so `on_batch` hears how far the current epoch has got, at
most once per `BATCH_REPORT_S` of wall time: a clock read per batch, nothing that syncs with the device.

Speed: both splits live on the device as tensors for the whole run, so a batch is a slice, not a
DataLoader round trip, and losses stay on the device until the end of the epoch (one host sync per epoch).

Stopping early on request: the caller may pass a `stop` object (a `threading.Event`, or anything with
`is_set()`), checked after every batch; once set, the best weights so far are restored and the result says
`interrupted=True`, so the caller can still save the run. The trainer installs no signal handler (only the
main thread may): the CLI switches Ctrl-C, SIGTERM and SIGHUP into such a request; a pool or Ray worker, whose
signals follow its executor's rules, passes its own request or none.

Threads: `train.threads` sets torch's CPU thread count for the run (restored afterwards). `auto` takes as
many threads as there are cores free (up to `AUTO_MAX_THREADS`) and looks again every `RETHINK_S` as training
goes (`ThreadPlan`): on an idle machine a second thread trains the default LSTM about 1.4x faster, but while
another process holds a core, OpenMP threads that spin-wait for a descheduled partner make each epoch several
times slower (the thread table in the README), and a process may start long after training did. Results
repeat bit for bit only at the same thread counts at the same steps, so the counts used are part of the
result (`TrainResult.threads`, and `thread_schedule` when `auto` changed it; both recorded in the bundle):
set `train.threads` to either to repeat a run exactly.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstm_forecast.config import TrainConfig
from lstm_forecast.errors import ForecastError, StopRequest, UsageError
from lstm_forecast.windows import GatheredWindows

# Targets are standardised, so Huber's switch from squared to absolute error sits at one standard
# deviation: ordinary days count as in MSE, the rare huge moves count linearly and pull the fit less.
HUBER_DELTA = 1.0
LOSSES: dict[str, Callable[..., Tensor]] = {
    "mse": F.mse_loss,
    "huber": partial(F.huber_loss, delta=HUBER_DELTA),
}

# On a plateau the learning rate halves after half the early-stopping patience, so a smaller step gets
# a few epochs to find a new best before early stopping gives up.
PLATEAU_FACTOR = 0.5

# Validation and prediction need no gradients, so large batches fit in memory and run fast.
EVAL_BATCH_SIZE = 4096

# `auto` threads: the cores free at the start, at most this many (an LSTM's per-step matrices are small).
AUTO_MAX_THREADS = 4
# How long `auto` watches the machine's CPU counters, when training starts, to see how many cores other
# processes keep busy.
LOAD_SAMPLE_S = 0.1
# Then `auto` looks again at the first batch boundary this long after its last look: often enough that a
# process starting mid-run costs about a second of spinning threads, rarely enough that the look (two small
# reads, no sleep: it compares the machine's busy time with this process's own CPU time) never shows.
RETHINK_S = 1.0

DEVICE_AVAILABLE: dict[str, Callable[[], bool]] = {
    "cuda": torch.cuda.is_available,
    "mps": torch.backends.mps.is_available,
    "cpu": lambda: True,
}


Input = np.ndarray | GatheredWindows
Inputs = Input | tuple[Input, ...]


@dataclass(frozen=True)
class Samples:
    """One split for the trainer; row i of every array is one sample.

    `inputs` is one array, (samples, lookback, n_features) windows, or a tuple of arrays the model takes as
    positional arguments in that order; `targets` is (samples, horizon). Any of the arrays may be
    `GatheredWindows`, cut batch by batch.
    """

    inputs: Inputs
    targets: np.ndarray

    @property
    def arrays(self) -> tuple[Input, ...]:
        return self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)


@dataclass
class EpochRecord:
    """What happened in one epoch; losses are mean per-window losses in the scaled target space."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    lr: float  # the learning rate used during this epoch
    seconds: float
    best_epoch: int
    best_val_loss: float  # the validation loss of the best epoch so far
    val_score: float | None = None  # the caller's selection score (`fit`'s val_score), None without one


EpochCallback = Callable[[EpochRecord], bool | None]  # a true value: stop training after this epoch

# How often, at most, `on_batch` hears of an epoch's progress: often enough for a bar to move, rarely enough
# that the report never shows beside a batch's own cost.
BATCH_REPORT_S = 1.0


@dataclass(frozen=True)
class BatchProgress:
    """How far an epoch has got: `batch` of its `batches` mini-batches done (never all: the epoch's
    `EpochRecord` follows those)."""

    epoch: int  # 1-based
    batch: int
    batches: int


BatchCallback = Callable[[BatchProgress], None]


@dataclass
class TrainResult:
    """The outcome of `fit`; the model passed in now holds the weights of `best_epoch`."""

    history: list[EpochRecord]
    best_epoch: int  # 0 when no epoch completed
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    interrupted: bool
    seconds: float
    device: str
    threads: int  # torch's CPU threads at the start: bit-for-bit repeats need the same counts
    best_val_score: float | None = None  # the best epoch's selection score, when `fit` was given one
    thread_schedule: list[tuple[int, int]] = field(default_factory=list)  # (first step, threads) as run

    def summary(self) -> dict[str, Any]:
        """Plain JSON values for bundles and reports (the per-epoch history is stored separately)."""
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "device": self.device,
            "threads": self.threads,
            "best_val_score": self.best_val_score,
            # Only when `auto` changed the count: a steady run records `threads` alone.
            **({"thread_schedule": [list(pair) for pair in self.thread_schedule]}
               if len(self.thread_schedule) > 1 else {}),
        }


def resolve_device(requested: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    if requested == "auto":
        return torch.device(next(name for name, available in DEVICE_AVAILABLE.items() if available()))
    if requested not in DEVICE_AVAILABLE:
        raise UsageError(f"device {requested!r}: expected one of auto, {', '.join(DEVICE_AVAILABLE)}")
    if not DEVICE_AVAILABLE[requested]():
        raise ForecastError(
            f"device {requested!r} is not available on this machine or in this PyTorch build; "
            "use --device cpu or --device auto"
        )
    return torch.device(requested)


def training_threads(requested: int | str | list[list[int]]) -> int:
    """The CPU thread count training starts with: `requested` (a schedule's first count), or for `auto` the
    cores other processes leave free (or OMP_NUM_THREADS, when the user set it: an explicit choice made
    outside the config is kept)."""
    if isinstance(requested, list | tuple):
        return int(requested[0][1])
    if requested != "auto":
        return int(requested)
    cores = usable_cores()
    return user_threads() or auto_count(cores, free_cores(cores))


def auto_count(cores: int, free: int) -> int:
    """`auto`'s thread count: one per free core, at least one, at most AUTO_MAX_THREADS."""
    return max(1, min(AUTO_MAX_THREADS, cores, free))


def free_of(cores: int, busy: float) -> int:
    """The cores left beside `busy` cores of other work; a core counts as free when at least three quarters of
    it is."""
    return int(cores - busy + 0.25)


def user_threads() -> int | None:
    """OMP_NUM_THREADS when the user set it to a count, else None."""
    environment = os.environ.get("OMP_NUM_THREADS", "")
    return int(environment) if environment.isdigit() and int(environment) >= 1 else None


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask, capped by a container's quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, cpu_quota() or cores)


def cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """The cores a container's cgroup (v2) quota allows, rounded up; None without a quota. A container limited
    to 2 CPUs on a 64-core host sees all 64 in its affinity mask, and threads beyond its quota collapse."""
    try:
        with open(path, encoding="ascii") as quota_file:
            quota, period = quota_file.read(64).split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def free_cores(cores: int) -> int:
    """Cores not kept busy by other processes right now (this one sleeps while it looks).

    Linux: the machine's busy share from /proc/stat over `LOAD_SAMPLE_S`; elsewhere the 1-minute load
    average (slower to follow a change); `cores` when neither is available (see `free_of`).
    """
    try:
        first = _cpu_counters()
        time.sleep(LOAD_SAMPLE_S)
        second = _cpu_counters()
        total, idle = (after - before for before, after in zip(first, second, strict=True))
        busy = (os.cpu_count() or cores) * (1 - idle / total) if total > 0 else 0.0
    except (OSError, ValueError, IndexError):
        try:
            busy = os.getloadavg()[0]
        except (OSError, AttributeError):
            return cores
    return free_of(cores, busy)


@dataclass(frozen=True)
class CpuLook:
    """One look at the CPU counters: wall clock, this process's CPU seconds, the machine's (all, idle) jiffies."""

    wall: float
    own: float
    total: int
    idle: int

    @classmethod
    def now(cls) -> CpuLook:
        total, idle = _cpu_counters()
        return cls(time.perf_counter(), time.process_time(), total, idle)

    def others_busy_since(self, before: CpuLook) -> float:
        """Cores other processes kept busy since `before`: the machine's busy share less this process's own CPU
        time (its threads' spinning included, so training never counts itself as load)."""
        total, wall = self.total - before.total, self.wall - before.wall
        if total <= 0 or wall <= 0:
            return 0.0
        machine = (os.cpu_count() or 1) * (1 - (self.idle - before.idle) / total)
        return max(0.0, machine - (self.own - before.own) / wall)


class ThreadPlan:
    """torch's CPU threads at each training step (one mini-batch; steps are counted from 0 over the run).

    A count is kept throughout; a recorded schedule is replayed step for step, so the run repeats bit for bit;
    `auto` starts with the cores other processes leave free and, at the first batch boundary `RETHINK_S` after
    its last look, looks again: the cores free now (see `CpuLook.others_busy_since`), one thread each. A
    process started mid-run so costs training about a second of spinning threads instead of every epoch after
    it, and once that process ends the threads come back. Every count taken is in `schedule`.
    """

    def __init__(self, requested: int | str | list[list[int]]) -> None:
        self.replay = [tuple(pair) for pair in requested] if isinstance(requested, list | tuple) else []
        self.schedule: list[tuple[int, int]] = [(0, training_threads(requested))]
        self.cores = usable_cores()
        self.last_look = self._look() if requested == "auto" and user_threads() is None else None
        self.step = 0

    @property
    def first(self) -> int:
        return self.schedule[0][1]

    def before_step(self) -> None:
        """Called before every training step: set the count this step trains with."""
        if len(self.replay) > 1 and self.replay[1][0] <= self.step:
            self.replay.pop(0)
            self._use(self.replay[0][1])
        elif self.last_look is not None and time.perf_counter() - self.last_look.wall >= RETHINK_S:
            look = self._look()
            if look is not None:
                self._use(auto_count(self.cores, free_of(self.cores, look.others_busy_since(self.last_look))))
            self.last_look = look
        self.step += 1

    def _use(self, count: int) -> None:
        if count != self.schedule[-1][1]:
            torch.set_num_threads(count)
            self.schedule.append((self.step, count))

    @staticmethod
    def _look() -> CpuLook | None:
        """A look at the counters; None where /proc/stat cannot be read (then `auto` keeps its first count)."""
        try:
            return CpuLook.now()
        except (OSError, ValueError, IndexError):
            return None


def _cpu_counters() -> tuple[int, int]:
    """(all, idle) jiffies of all CPUs since boot: the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat_file:
        fields = [int(value) for value in stat_file.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]), idle  # user … steal: guest time is already counted in user


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """torch uses `count` CPU threads inside the block, its previous count again afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and GPUs) and numpy; call before building the model so its initial weights repeat."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def fit(
    model: nn.Module,
    train: Samples,
    val: Samples,
    config: TrainConfig,
    device: torch.device | None = None,
    on_epoch: EpochCallback | None = None,
    stop: StopRequest | None = None,
    on_batch: BatchCallback | None = None,
    val_score: Callable[[np.ndarray], float] | None = None,
) -> TrainResult:
    """Train `model` in place (moved to `device`) and leave it holding the best validation epoch's weights.

    The best epoch is the one with the lowest validation loss, or with the lowest `val_score(forecasts)` when
    given: the caller's selection rule on the model's (windows, horizon) forecasts of the validation windows, in
    the scaled target space and the order `val` has them, lower is better (e.g. minus a rank IC); the same score
    drives early stopping and the plateau schedule. The forecasts are the validation loss's own pass, kept.

    Reproducible: with the same seed, data and config, a CPU run repeats bit for bit when torch's intra-op
    thread count is the same (`train.threads`, or the count `auto` chose, reported as `TrainResult.threads`);
    the seeds themselves come from `config.seed` alone. Training ends early, keeping the best epoch so far,
    once `stop.is_set()` (checked after every batch), or after an epoch for which `on_epoch` returns True.
    `on_batch` hears the progress within an epoch (see BATCH_REPORT_S).
    """
    stop_requested = stop or threading.Event()
    threads = ThreadPlan(config.threads)
    with cpu_threads(threads.first):
        started = time.perf_counter()
        device = device or resolve_device(config.device)
        train_x, train_y = _to_device(train, "training", device)
        val_x, val_y = _to_device(val, "validation", device)
        model.to(device)

        # Two independent streams from one seed: the global one drives dropout (re-seeded here so a run
        # repeats whatever ran before it), a private generator drives the order of the batches.
        dropout_seed, shuffle_seed = (int(seed) for seed in np.random.SeedSequence(config.seed).generate_state(2))
        torch.manual_seed(dropout_seed)
        shuffle_generator = torch.Generator().manual_seed(shuffle_seed)

        # AdamW always: with weight_decay 0 it takes exactly Adam's steps, and with decay it shrinks the
        # weights directly instead of through the gradient, where Adam's scaling would weaken it unevenly.
        parameters = list(model.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=PLATEAU_FACTOR, patience=config.patience // 2
            )
            if config.lr_schedule == "plateau"
            else None
        )
        loss_fn = LOSSES[config.loss]

        history: list[EpochRecord] = []
        best_state: dict[str, Tensor] | None = None
        best_epoch, best_val_loss, best_score = 0, math.inf, math.inf
        stopped_early = False
        for epoch in range(1, config.epochs + 1):
            if stop_requested.is_set():
                break
            epoch_started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss = _train_one_epoch(
                model, parameters, train_x, train_y, optimizer, loss_fn, config, shuffle_generator, stop_requested,
                epoch, on_batch, threads,
            )
            if train_loss is None:  # interrupted mid-epoch: a partial epoch is neither scored nor kept
                break
            val_loss, forecasts = _validate(model, val_x, val_y, loss_fn, keep=val_score is not None)
            score = None if val_score is None else val_score(forecasts)
            selected = val_loss if score is None else score  # NaN (no score) is never the best
            if math.isfinite(val_loss) and selected < best_score:
                best_epoch, best_val_loss, best_score = epoch, val_loss, selected
                # Cloned on the device: no host transfer, and cheap beside an epoch of training.
                best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
            seconds = time.perf_counter() - epoch_started
            record = EpochRecord(epoch, train_loss, val_loss, lr, seconds, best_epoch, best_val_loss, score)
            history.append(record)
            asked_to_stop = on_epoch is not None and bool(on_epoch(record))
            diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
            if asked_to_stop or diverged or epoch - best_epoch >= config.patience:
                stopped_early = epoch < config.epochs
                break
            if scheduler is not None:
                scheduler.step(selected)

        if best_state is not None:
            model.load_state_dict(best_state)
        elif history:  # epochs ran, yet none gave a finite validation loss
            raise ForecastError(
                f"training diverged: the loss was not finite in epoch {len(history)}; "
                "lower the learning rate, e.g. --set train.lr=1e-4"
            )
        return TrainResult(
            history=history,
            best_epoch=best_epoch,
            best_val_loss=best_val_loss,
            epochs_run=len(history),
            stopped_early=stopped_early,
            interrupted=stop_requested.is_set(),
            seconds=time.perf_counter() - started,
            device=str(device),
            threads=threads.first,
            best_val_score=None if val_score is None or best_state is None else best_score,
            thread_schedule=threads.schedule,
        )


def predict(
    model: nn.Module,
    inputs: Inputs,
    device: torch.device | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> np.ndarray:
    """Forecasts (windows, horizon) in the scaled target space, in eval mode (no dropout). `inputs` is what
    `Samples.inputs` is: one array, or a tuple the model takes positionally.

    The model runs where its weights are unless `device` says otherwise (then it is moved there).
    """
    if device is None:
        device = next(model.parameters()).device
    model.to(device).eval()
    arrays = inputs if isinstance(inputs, tuple) else (inputs,)
    tensors = tuple(_tensor(array, torch.device("cpu")) for array in arrays)
    with torch.inference_mode():
        outputs = [model(*(tensor.to(device) for tensor in batch)) for batch in _batches(tensors, batch_size)]
    return torch.cat(outputs).cpu().numpy()


def _train_one_epoch(
    model: nn.Module,
    parameters: list[nn.Parameter],
    inputs: tuple[Tensor, ...],
    targets: Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor],
    config: TrainConfig,
    shuffle_generator: torch.Generator,
    stop_requested: StopRequest,
    epoch: int,
    on_batch: BatchCallback | None,
    threads: ThreadPlan,
) -> float | None:
    """One pass over shuffled mini-batches; the mean training loss, or None if stopped part-way. `on_batch`
    hears how far the pass has got, at most once per BATCH_REPORT_S; `threads` sets each step's CPU threads."""
    model.train()
    # The permutation is drawn on the CPU so the batch order is the same on every device; one gather
    # per epoch makes every batch below a view instead of an indexing copy.
    order = torch.randperm(len(targets), generator=shuffle_generator).to(targets.device)
    # Batch losses weighted by batch size and kept on the device: one host sync per epoch, not per batch.
    weighted_losses = []
    batches = math.ceil(len(targets) / config.batch_size)
    next_report = time.perf_counter() + BATCH_REPORT_S
    for batch, (*batch_inputs, batch_targets) in enumerate(_batches((*inputs, targets), config.batch_size, order), 1):
        threads.before_step()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(*batch_inputs), batch_targets)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        weighted_losses.append(loss.detach() * len(batch_targets))
        if stop_requested.is_set():
            return None
        if on_batch is not None and batch < batches and time.perf_counter() >= next_report:
            on_batch(BatchProgress(epoch, batch, batches))
            next_report = time.perf_counter() + BATCH_REPORT_S
    return torch.stack(weighted_losses).sum().item() / len(targets)


def _batches(tensors: tuple[Tensor, ...], size: int, order: Tensor | None = None) -> Iterator[tuple[Tensor, ...]]:
    """Consecutive batches of `size` rows of every tensor at once, after one gather by `order` when given."""
    if order is not None:
        tensors = tuple(tensor[order] for tensor in tensors)
    return zip(*(tensor.split(size) for tensor in tensors), strict=True)


def _validate(
    model: nn.Module, inputs: tuple[Tensor, ...], targets: Tensor, loss_fn: Callable[..., Tensor], keep: bool
) -> tuple[float, np.ndarray | None]:
    """Mean per-window loss over a whole split, without dropout or gradients; with `keep`, the forecasts too
    (one host copy), so a selection score never runs the split through the model a second time."""
    model.eval()
    summed, outputs = [], []
    with torch.inference_mode():
        for *batch_inputs, batch_targets in _batches((*inputs, targets), EVAL_BATCH_SIZE):
            forecast = model(*batch_inputs)
            summed.append(loss_fn(forecast, batch_targets, reduction="sum"))
            if keep:
                outputs.append(forecast)
        # Summing per element and dividing by the element count averages the per-window means,
        # the same quantity as the training loss (every window has `horizon` targets).
        loss = torch.stack(summed).sum().item() / targets.numel()
    return loss, torch.cat(outputs).cpu().numpy() if keep else None


def _to_device(samples: Samples, split: str, device: torch.device) -> tuple[tuple[Tensor, ...], Tensor]:
    """The inputs and targets as tensors on the device, after checking the samples line up."""
    arrays, targets = samples.arrays, samples.targets
    if len(targets) == 0:
        raise ForecastError(
            f"no {split} windows: the {split} split is shorter than lookback + horizon days; "
            "use a longer history or a smaller window.lookback"
        )
    if targets.ndim != 2 or any(len(array) != len(targets) for array in arrays):
        raise ValueError(
            f"{split} samples: expected inputs of one row per target row and targets (samples, horizon), "
            f"got {[array.shape for array in arrays]} and {targets.shape}"
        )
    return tuple(_tensor(array, device) for array in arrays), _tensor(targets, device)


class _DeviceWindows:
    """`GatheredWindows` on a device. Indexing by a permutation reorders the anchors only; `split` gathers each
    batch's windows as it is reached, so an epoch never holds more than one batch of windows."""

    def __init__(self, values: Tensor, ends: Tensor, lookback: int) -> None:
        self.values, self.ends, self.lookback = values, ends, lookback
        self.offsets = torch.arange(1 - lookback, 1, device=ends.device)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, order: Tensor) -> _DeviceWindows:
        return _DeviceWindows(self.values, self.ends[order], self.lookback)

    def to(self, device: torch.device) -> _DeviceWindows:
        return _DeviceWindows(self.values.to(device), self.ends.to(device), self.lookback)

    def split(self, size: int) -> Iterator[Tensor]:
        return (self.values[chunk[:, None] + self.offsets] for chunk in self.ends.split(size))


def _tensor(array: Input, device: torch.device) -> Tensor | _DeviceWindows:
    """float32 for real values (the windows, targets), int64 for integers (an index into an embedding)."""
    if isinstance(array, GatheredWindows):
        return _DeviceWindows(_tensor(array.values, device), _tensor(array.ends, device), array.lookback)
    dtype = np.int64 if np.issubdtype(np.asarray(array).dtype, np.integer) else np.float32
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(device)
