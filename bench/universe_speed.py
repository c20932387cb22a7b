"""Universe mode: what many tickers cost beyond their training, in one process, in a pool, on Ray.

    python bench/universe_speed.py [--tickers 40] [--loop 40] [--skip-ray] [--all]

Data: the first `--tickers` files of ../shared/data/sp500 (real S&P 500 stocks, 2012-12 … 2017-12) with
lstm_forecast/configs/quick.yaml, every run in a fresh temp runs dir. Four figures (issue 12):

1. The same tickers trained by one `train` process (`--jobs 1`) and by a loop of one `train` process per
   ticker (the first `--loop` of them): the per-ticker cost that is not training, i.e. wall time minus the
   training seconds each bundle records. Goals: <= 0.15 s in one process; the loop pays >= 2 s each.
2. `--jobs 2` against `--jobs 1` on those tickers: throughput (goal >= 1.7x on 2 cores).
3. `--executor ray` (a local instance, start-up included) against `--jobs 2`: wall time (goal <= 1.3x).
4. With `--all`: all 391 tickers with `--jobs 2`, in this process: wall time and this (the parent) process's
   peak RSS, sampled as tickers finish (goal <= 1.5 GB and flat in the number of tickers).

Runs 1-3 use the CLI in a child process, as a user would; run 4 calls `universe.train_universe` here so the
parent's memory is this process's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SP500 = ROOT.parent / "shared" / "data" / "sp500"
CONFIG = ROOT / "lstm_forecast" / "configs" / "quick.yaml"


def tickers(count: int) -> list[str]:
    return sorted(path.stem for path in SP500.glob("*.csv"))[:count]


def train(names: list[str], runs_dir: Path, *options: str) -> tuple[float, dict]:
    """Wall seconds of one `train` over `names`, and its --json document."""
    command = [sys.executable, "-m", "lstm_forecast", "train", "-t", ",".join(names), "--config", str(CONFIG),
               "--data-dir", str(SP500), "--runs-dir", str(runs_dir), "--json", *options]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode not in (0, 1):
        raise RuntimeError(f"train failed ({finished.returncode}): {finished.stderr[-500:]}")
    return seconds, json.loads(finished.stdout)


def training_seconds(run_dirs: list[str]) -> float:
    """The training time the bundles record (the trainer's own clock: fit only)."""
    return sum(json.loads((Path(run) / "bundle.json").read_text())["training"]["seconds"] for run in run_dirs)


def run_dirs(document: dict) -> list[str]:
    if "rows" in document:  # a universe
        return [row["run_dir"] for row in document["rows"] if row["run_dir"]]
    return [document["run_dir"]]


def memory_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=40)
    parser.add_argument("--loop", type=int, default=40, help="tickers trained one process each in figure 1")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--all", action="store_true", help="also figure 4: every ticker with --jobs 2")
    args = parser.parse_args()
    names = tickers(args.tickers)
    print(f"{len(names)} tickers from {SP500}, {CONFIG.name}")

    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        one_wall, one = train(names, scratch_dir / "one", "--jobs", "1")
        one_training = training_seconds(run_dirs(one))
        print(f"1. one process, --jobs 1: {one_wall:.1f} s wall, {one_training:.1f} s training; "
              f"{(one_wall - one_training) / len(names):.3f} s per ticker beyond training")
        loop_wall = loop_training = 0.0
        for name in names[: args.loop]:
            wall, document = train([name], scratch_dir / "loop")
            loop_wall += wall
            loop_training += training_seconds(run_dirs(document))
        looped = min(args.loop, len(names))
        print(f"   a loop of {looped} processes: {loop_wall:.1f} s wall, {loop_training:.1f} s training; "
              f"{(loop_wall - loop_training) / looped:.3f} s per ticker beyond training")

        two_wall, _ = train(names, scratch_dir / "two", "--jobs", "2")
        print(f"2. --jobs 2: {two_wall:.1f} s wall; throughput {one_wall / two_wall:.2f}x --jobs 1")
        if not args.skip_ray:
            ray_wall, _ = train(names, scratch_dir / "ray", "--executor", "ray", "--jobs", "2")
            print(f"3. --executor ray --jobs 2 (local instance, start-up included): {ray_wall:.1f} s wall; "
                  f"{ray_wall / two_wall:.2f}x --jobs 2")

        if args.all:
            from lstm_forecast.config import load_config
            from lstm_forecast.tickers import select_tickers
            from lstm_forecast.universe import train_universe

            every = select_tickers([], None, True, SP500).tickers
            samples: list[tuple[int, float]] = []

            def sample(row: dict) -> None:
                samples.append((len(samples) + 1, memory_mb()[0]))

            started = time.perf_counter()
            result = train_universe(load_config(CONFIG), every, SP500, scratch_dir / "all", jobs=2, on_row=sample)
            wall = time.perf_counter() - started
            marks = [samples[i - 1] for i in (50, 100, 200, 300, len(samples)) if i <= len(samples)]
            print(f"4. all {len(every)} tickers, --jobs 2: {wall:.0f} s wall, {result.report['trained']} trained, "
                  f"{len(result.report['failed'])} failed; parent peak RSS {memory_mb()[1]:.0f} MB; "
                  "RSS after n tickers: " + ", ".join(f"{n}: {mb:.0f} MB" for n, mb in marks))
            print(f"   verdict: {result.report['verdict']}")


if __name__ == "__main__":
    main()
