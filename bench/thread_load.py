"""Training while other work starts mid-run: `auto` threads that follow the load against a count fixed at the start.

    python bench/thread_load.py --baseline /path/to/older/checkout [--mode train|universe|both] [--repeats 3]

Each side is a checkout of this project, run as a user runs it: `python -m lstm_forecast train …` in a child
process with that checkout on PYTHONPATH (this checkout, and `--baseline`, e.g. a `git worktree` of the commit
before the change). Two workloads, both with the default config (`train.threads: auto`) and a fixed number of
epochs (patience = epochs, so early stopping cannot make one side's run shorter):

* `train`: one ticker, TSLA from ../shared/data (`--epochs`, default 15);
* `universe`: the first `--tickers` (default 10) stocks of ../shared/data/sp500 in one process (`--jobs 1`, the
  default), `--universe-epochs` (default 5) each.

Each is timed idle, and with one CPU-bound competitor (a pure Python loop, one core) that starts `--delay`
seconds after training does (default: a quarter of that side's first idle time, so it starts well after
`auto` made its first choice) and is killed when training ends. Sides and conditions alternate in every
repeat (and their order flips every other repeat), so drift in the machine's speed favours neither. Printed:
the median wall seconds of every cell and the two ratios the issue sets goals for (issue 22, item 8):
loaded / idle <= 1.6 for this checkout, and this checkout's idle time <= 1.1 x the baseline's.
Run it on an otherwise idle machine (`uptime`): other work is a second, uncontrolled competitor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SP500 = DATA / "sp500"


def command(mode: str, runs_dir: Path, args: argparse.Namespace) -> list[str]:
    if mode == "train":
        tickers, data_dir, epochs = "TSLA", DATA, args.epochs
    else:
        tickers = ",".join(sorted(path.stem for path in SP500.glob("*.csv"))[:args.tickers])
        data_dir, epochs = SP500, args.universe_epochs
    return [sys.executable, "-m", "lstm_forecast", "train", "-t", tickers, "--data-dir", str(data_dir),
            "--runs-dir", str(runs_dir), "--set", f"train.epochs={epochs}", "--set", f"train.patience={epochs}"]


def timed_run(tree: Path, mode: str, args: argparse.Namespace, delay: float | None) -> float:
    """Wall seconds of one training process from `tree`; with `delay`, a competitor starts that long after it."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    environment.pop("OMP_NUM_THREADS", None)  # `auto` must decide, as for a user who set nothing
    with tempfile.TemporaryDirectory() as runs_dir:
        started = time.perf_counter()
        child = subprocess.Popen(command(mode, Path(runs_dir), args), env=environment, cwd=tree,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        competitor = None
        try:
            if delay is not None:
                try:
                    child.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            _, errors = child.communicate()
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
        seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{tree}: train exited {child.returncode}: {errors[-400:]}")
    return seconds


def measure(mode: str, sides: dict[str, Path], args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    """Every side idle and with a competitor mid-run, `args.repeats` times, alternating."""
    delays = {name: (args.delay if args.delay is not None else timed_run(tree, mode, args, None) / 4)
              for name, tree in sides.items()}  # the first idle run also warms the file cache
    cells: dict[tuple[str, str], list[float]] = {}
    order = [(name, condition) for name in sides for condition in ("idle", "competitor")]
    for repeat in range(args.repeats):
        for name, condition in order if repeat % 2 == 0 else order[::-1]:
            delay = delays[name] if condition == "competitor" else None
            seconds = timed_run(sides[name], mode, args, delay)
            cells.setdefault((name, condition), []).append(seconds)
            print(f"  {mode} {name:8} {condition:10} {seconds:7.1f} s", file=sys.stderr, flush=True)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="a checkout to compare with (e.g. the commit before)")
    parser.add_argument("--mode", choices=["train", "universe", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the single-ticker run")
    parser.add_argument("--tickers", type=int, default=10, help="tickers in the universe run")
    parser.add_argument("--universe-epochs", type=int, default=5, help="epochs per ticker in the universe run")
    parser.add_argument("--delay", type=float, default=None, help="seconds before the competitor starts")
    args = parser.parse_args()
    sides = {"this": ROOT, "baseline": args.baseline.resolve()}
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average at start {load:.2f}; medians of {args.repeats} runs")
    for mode in (["train", "universe"] if args.mode == "both" else [args.mode]):
        cells = measure(mode, sides, args)
        median = {key: statistics.median(values) for key, values in cells.items()}
        print(f"\n{mode}: wall seconds (median; min-max)")
        for (name, condition), values in sorted(cells.items()):
            print(f"  {name:8} {condition:10} {median[name, condition]:7.1f}  ({min(values):.1f}-{max(values):.1f})")
        for name in sides:
            print(f"  {name:8} competitor / idle: {median[name, 'competitor'] / median[name, 'idle']:.2f}"
                  + ("  (goal <= 1.6)" if name == "this" else ""))
        print(f"  idle, this / baseline: {median['this', 'idle'] / median['baseline', 'idle']:.2f}  (goal <= 1.1)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
