"""Seconds per epoch: the project's trainer against a minimal plain-PyTorch loop, on the same windows;
or, with --thread-table, the trainer under each CPU thread setting, on an idle machine and under load.

    python bench/train_speed.py [--epochs 20] [--repeats 3] [--threads 2]
    python bench/train_speed.py --thread-table [--load 1] [--epochs 5] [--repeats 3]

Data: log returns of TSLA's Adj Close from ../shared/data/TSLA.csv (a synthetic series of the same
length when that file is absent), standardised with the training part's mean and std, cut into
(lookback 60, 1) input windows with 5-day targets and split 70/10/20 in time; the test part is unused.

Both sides get the same hyper-parameters (an LSTM of 2 layers x 64 units with dropout 0.2 and a linear
head, batch 64, Adam at lr 1e-3, MSE, gradient norm clipped at 1.0) and do the same work each epoch: a
shuffled pass over the training windows and one validation pass. The plain loop is what one would write
by hand: tensors sliced into batches with a permutation, no DataLoader, no early stopping or records.
Early stopping is disabled in the trainer (patience = epochs) so both run every epoch. The two are run
alternately in one process, and each is timed from numpy windows to trained model. Goal: ratio <= 1.2.

The thread table times the trainer alone under each candidate: one thread; two threads; two threads with
OpenMP's passive wait policy (OMP_WAIT_POLICY=PASSIVE: an idle worker sleeps instead of spinning, which
matters when another process wants the core); and `auto`, the default `train.threads`, which counts the
cores other processes leave free when training starts. The wait policy is read once, when torch loads
OpenMP, so every measurement runs in a fresh child process. Each candidate is timed idle and then while
`--load N` busy processes (pure Python loops, one core each) compete for the CPU. Goals for `auto`:
loaded <= 1.5 x its idle time, idle <= 1.1 x the fastest candidate's idle time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lstm_forecast.config import TrainConfig
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.trainer import Samples, fit, seed_everything

REPO_ROOT = Path(__file__).resolve().parent.parent
TSLA_CSV = REPO_ROOT.parent / "shared" / "data" / "TSLA.csv"
TSLA_ROWS = 3951  # the length of the synthetic stand-in when the CSV is absent

LOOKBACK, HORIZON = 60, 5
HIDDEN_SIZE, NUM_LAYERS, DROPOUT = 64, 2, 0.2
BATCH_SIZE, LR, GRAD_CLIP = 64, 1e-3, 1.0
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
SEED = 0

Windows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train inputs, targets, val inputs, targets


def load_returns() -> tuple[np.ndarray, str]:
    """Daily log returns of TSLA's Adj Close, or synthetic ones of the same length."""
    if TSLA_CSV.exists():
        prices = pd.read_csv(TSLA_CSV)["Adj Close"].to_numpy(dtype=np.float64)
        return np.diff(np.log(prices)), str(TSLA_CSV)
    rng = np.random.default_rng(SEED)
    return rng.normal(0.0, 0.03, TSLA_ROWS - 1), f"synthetic returns ({TSLA_CSV} not found)"


def make_windows(returns: np.ndarray) -> Windows:
    """Standardised (lookback, 1) windows and horizon targets; a window belongs to the split of its last target."""
    train_end = int(len(returns) * (1 - VAL_FRACTION - TEST_FRACTION))
    val_end = int(len(returns) * (1 - TEST_FRACTION))
    train_part = returns[:train_end]
    scaled = ((returns - train_part.mean()) / train_part.std()).astype(np.float32)
    view = np.lib.stride_tricks.sliding_window_view(scaled, LOOKBACK + HORIZON)
    inputs, targets = view[:, :LOOKBACK, None], view[:, LOOKBACK:]
    last_target = np.arange(len(view)) + LOOKBACK + HORIZON - 1
    train = last_target < train_end
    val = (last_target >= train_end) & (last_target < val_end)
    return inputs[train], targets[train], inputs[val], targets[val]


class PlainLSTM(nn.Module):
    """The hand-written baseline model: nn.LSTM, then a linear head on the last step's output."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, HIDDEN_SIZE, NUM_LAYERS, dropout=DROPOUT, batch_first=True)
        self.head = nn.Linear(HIDDEN_SIZE, HORIZON)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(inputs)
        return self.head(outputs[:, -1])


def plain_loop_seconds_per_epoch(windows: Windows, epochs: int) -> float:
    started = time.perf_counter()
    train_x, train_y, val_x, val_y = (torch.from_numpy(np.ascontiguousarray(array)) for array in windows)
    torch.manual_seed(SEED)
    model = PlainLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for start in range(0, len(train_x), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = F.mse_loss(model(train_x[batch]), train_y[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            F.mse_loss(model(val_x), val_y).item()
    return (time.perf_counter() - started) / epochs


def trainer_seconds_per_epoch(windows: Windows, epochs: int, threads: int | str | None = None) -> float:
    """The trainer's seconds per epoch; `threads` None keeps torch's current thread count."""
    started = time.perf_counter()
    seed_everything(SEED)
    shape = ModelShape("lstm", n_features=1, hidden_size=HIDDEN_SIZE, num_layers=NUM_LAYERS,
                       dropout=DROPOUT, horizon=HORIZON)
    config = TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, lr=LR, patience=epochs, grad_clip=GRAD_CLIP,
                         seed=SEED, device="cpu", threads=threads or torch.get_num_threads())
    train_x, train_y, val_x, val_y = windows
    result = fit(Forecaster(shape), Samples(train_x, train_y), Samples(val_x, val_y), config)
    if result.epochs_run != epochs:
        raise RuntimeError(f"the trainer ran {result.epochs_run} of {epochs} epochs; the timing would mislead")
    return (time.perf_counter() - started) / epochs


# name -> (train.threads, environment): what each thread-table candidate changes.
CANDIDATES: dict[str, tuple[int | str, dict[str, str]]] = {
    "1 thread": (1, {}),
    "2 threads": (2, {}),
    "2 threads, passive wait": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "auto (default)": ("auto", {}),  # what `lstm-forecast train` runs with: the cores free at the start
}


def candidate_seconds_per_epoch(name: str, epochs: int) -> float:
    """One candidate timed in a fresh child process (see --candidate), so its environment takes effect."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    command = [sys.executable, __file__, "--candidate", name, "--epochs", str(epochs)]
    done = subprocess.run(command, env=env | CANDIDATES[name][1], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])["seconds_per_epoch"]


def run_candidate(name: str, epochs: int) -> None:
    """The child's side: time the trainer under candidate `name` and print one JSON line."""
    threads = CANDIDATES[name][0]
    windows = make_windows(load_returns()[0])
    trainer_seconds_per_epoch(windows, epochs=1, threads=threads)  # one-time costs, as in the ratio bench
    seconds = trainer_seconds_per_epoch(windows, epochs, threads)
    print(json.dumps({"candidate": name, "threads": torch.get_num_threads(), "seconds_per_epoch": seconds}))


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` CPU-bound processes running for the duration of the block."""
    children = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for child in children:
            child.kill()
            child.wait()


def thread_table(epochs: int, repeats: int, load: int) -> None:
    """Every candidate idle and under `load` busy processes; medians of `repeats` runs, as a table."""
    print(f"thread table: {epochs} epochs x {repeats} repeats per cell, {os.cpu_count()} CPUs, "
          f"load = {load} busy process(es)")
    conditions = {"idle": 0, f"load {load}": load}
    timings: dict[tuple[str, str], list[float]] = {}
    for repeat in range(repeats):
        for condition, count in conditions.items():
            with busy_processes(count):
                # Reverse the order every other repeat, so drift in the machine's load favours no candidate.
                names = list(CANDIDATES) if repeat % 2 == 0 else list(reversed(CANDIDATES))
                for name in names:
                    seconds = candidate_seconds_per_epoch(name, epochs)
                    timings.setdefault((name, condition), []).append(seconds)
                    print(f"  repeat {repeat + 1} {condition:<7} {name:<24} {seconds:.3f} s/epoch", flush=True)
    medians = {cell: statistics.median(values) for cell, values in timings.items()}
    fastest_idle = min(medians[name, "idle"] for name in CANDIDATES)
    loaded = f"load {load}"
    print(f"\n| candidate | idle s/epoch | {loaded} s/epoch | loaded / idle | idle / fastest idle |")
    print("|---|---|---|---|---|")
    for name in CANDIDATES:
        idle, busy = medians[name, "idle"], medians[name, loaded]
        print(f"| {name} | {idle:.3f} | {busy:.3f} | {busy / idle:.2f} | {idle / fastest_idle:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per timed run (default 20; 5 with --thread-table)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side, alternating (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--thread-table", action="store_true", help="time the thread candidates instead")
    parser.add_argument("--load", type=int, default=1, help="busy processes for the table's loaded column (default 1)")
    parser.add_argument("--candidate", choices=CANDIDATES, help=argparse.SUPPRESS)  # the table's child process
    args = parser.parse_args()
    if args.candidate is not None:
        run_candidate(args.candidate, args.epochs or 5)
        return
    if args.thread_table:
        thread_table(args.epochs or 5, args.repeats, args.load)
        return
    args.epochs = args.epochs or 20
    torch.set_num_threads(args.threads)

    returns, source = load_returns()
    windows = make_windows(returns)
    print(f"data: {source}: {len(windows[0])} train / {len(windows[2])} val windows "
          f"(lookback {LOOKBACK}, horizon {HORIZON}); {args.threads} threads, "
          f"{args.epochs} epochs x {args.repeats} repeats")

    # One untimed epoch of each side first pays the one-time costs (allocator growth, kernel setup per
    # batch shape), which would otherwise fall on whichever side runs first.
    plain_loop_seconds_per_epoch(windows, epochs=1)
    trainer_seconds_per_epoch(windows, epochs=1)

    sides = {"plain loop": plain_loop_seconds_per_epoch, "trainer": trainer_seconds_per_epoch}
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        # Swap who goes first each repeat, so drift in machine load does not favour one side.
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds = sides[name](windows, args.epochs)
            timings[name].append(seconds)
            print(f"  repeat {repeat + 1} {name:<10} {seconds:.3f} s/epoch")

    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, median in medians.items():
        print(f"{name:<10} median {median:.3f} s/epoch")
    print(f"ratio trainer / plain loop: {medians['trainer'] / medians['plain loop']:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
