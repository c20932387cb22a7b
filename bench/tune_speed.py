"""tune's throughput: trials per minute with --jobs 1 and --jobs 2, the share pruned, and the optimism.

    python bench/tune_speed.py [--trials 16] [--data-dir ../shared/data] [--ticker TSLA]

Data: TSLA from ../shared/data with lstm_forecast/configs/quick.yaml's epochs (3, patience 2) and model, searched over a
small space (lookback 10 … 60 log, hidden size 8 … 32 log, lr 1e-3 … 1e-2 log), the sampler seeded alike.
Each run is the real CLI in a child process (`tune --json`), in a fresh runs dir. Trials per minute count the
search alone (the report's `search_seconds`: the worker processes' start-up included, the retrain of the best
config not). Goal (issue 14): --jobs 2 >= 1.7x.

Printed per run: wall seconds, trials per minute, pruned share, the best validation ratio and its test ratio
(the honest figure). Run on an otherwise idle machine; `uptime` is printed before and after.
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
SPACE = ("window.lookback: {int: [10, 60], log: true}\n"
         "model.hidden_size: {int: [8, 32], log: true}\n"
         "train.lr: {float: [1.0e-3, 1.0e-2], log: true}\n")


def run(jobs: int, trials: int, ticker: str, data_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        space = Path(folder) / "space.yaml"
        space.write_text(SPACE)
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "lstm_forecast", "tune", "-t", ticker, "--data-dir", str(data_dir),
             "--runs-dir", str(Path(folder) / "runs"), "--config", "quick",
             "--space", str(space), "--trials", str(trials), "--jobs", str(jobs), "--seed", "0", "--json"],
            capture_output=True, text=True, check=False, cwd=ROOT)
        wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"--jobs {jobs} failed: {completed.stderr.strip().splitlines()[-1]}")
    report = json.loads(completed.stdout)
    counts = report["trials"]
    return {"jobs": jobs, "wall_s": round(wall, 1), "search_s": report["search_seconds"], "trials": counts["counted"],
            "trials_per_min": round(60 * counts["counted"] / report["search_seconds"], 2),
            "pruned_share": round(counts["pruned"] / counts["counted"], 3),
            "best_val_ratio": round(report["best"]["value"], 4), "test_ratio": round(report["test"]["test_ratio"], 4),
            "optimism": report["optimism"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--ticker", default="TSLA")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    results = [run(jobs, args.trials, args.ticker, args.data_dir) for jobs in (1, 2)]
    for result in results:
        print(json.dumps(result))
    print(f"--jobs 2 / --jobs 1 throughput: {results[1]['trials_per_min'] / results[0]['trials_per_min']:.2f}x")
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
