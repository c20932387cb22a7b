"""Latency of `lstm-forecast predict`, end to end, and of the model's forward pass alone.

    python bench/predict_latency.py [--run RUN_DIR | --runs-dir DIR] [--data-dir DIR] [--repeats 5]
                                    [--cores 2]

End to end: each repeat starts a fresh `python -m lstm_forecast predict` process, pinned to `--cores` CPUs
where the OS allows it, and times it from start to exit, so it pays what a user pays: the interpreter,
the imports (torch included), loading the bundle, reading the cache, the exchange calendar, the forward
pass, the JSON and the fan chart. The output and the chart go to a temporary folder, so the bundle is left
as it was. One untimed run first warms the file cache. Then, in this process, the forward pass alone is
timed on the same input, on one thread as `predict` runs it. Goals: median <= 2.5 s; forward < 50 ms.

The bundle is the newest run in the runs dir unless `--run` names one; the data dir defaults to
../shared/data beside the repository when it exists. Train a bundle of the default size with e.g.
`lstm-forecast train -t TSLA --epochs 1 --data-dir ../shared/data`: the forward time depends on its size.
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

from lstm_forecast import data
from lstm_forecast.bundle import find_run, load_bundle, resolve_runs_dir
from lstm_forecast.errors import ForecastError
from lstm_forecast.trainer import cpu_threads, predict
from lstm_forecast.windows import inference_inputs

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
END_TO_END_GOAL_S = 2.5
FORWARD_GOAL_MS = 50.0
FORWARD_REPEATS = 50


def pin_to(cores: int) -> list[int] | None:
    """The first `cores` CPUs this process may use, or None where affinity cannot be set (macOS, Windows)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))[:cores]


def time_command(command: list[str], cpus: list[int] | None) -> float:
    """Wall seconds from starting `command` to its exit; a failure stops the benchmark with its stderr."""
    started = time.perf_counter()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{result.stderr}")
    return seconds


def forward_milliseconds(run_dir: Path, data_dir: Path) -> tuple[float, float]:
    """The first forward pass and the median of FORWARD_REPEATS more, in ms, on the command's input."""
    bundle = load_bundle(run_dir)
    prices = data.read_cache(data_dir, bundle.ticker)
    prices = bundle.prices() if prices is None else prices
    inputs, _, _ = inference_inputs(prices.iloc[-(bundle.spec.lookback + 1) :], bundle.spec, bundle.scaler)
    timings = []
    with cpu_threads(1):
        for _ in range(FORWARD_REPEATS + 1):
            started = time.perf_counter()
            predict(bundle.model, inputs)
            timings.append((time.perf_counter() - started) * 1000)
    return timings[0], statistics.median(timings[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run bundle (default: the newest in --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, help="runs dir (default: $LSTM_FORECAST_RUNS_DIR or ./runs)")
    parser.add_argument("--data-dir", type=Path, help="price cache (default: ../shared/data if present)")
    parser.add_argument("--repeats", type=int, default=5, help="timed end-to-end runs (default 5)")
    parser.add_argument("--cores", type=int, default=2, help="CPUs the command may use (default 2)")
    args = parser.parse_args()

    try:
        run_dir = find_run(resolve_runs_dir(args.runs_dir, None), args.run)
    except ForecastError as exc:  # no run yet: say how to make one
        sys.exit(f"{exc}")
    data_dir = args.data_dir or (SHARED_DATA if SHARED_DATA.is_dir() else data.resolve_data_dir(None, None))
    shape = load_bundle(run_dir).shape
    cpus = pin_to(args.cores)
    print(f"run {run_dir}: {shape.kind.upper()} {shape.num_layers}x{shape.hidden_size}, "
          f"horizon {shape.horizon}")
    # Other processes on the same cores slow every figure down: the load average says how busy they were.
    load = f"; load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"prices from {data_dir}; CPUs {cpus or 'not pinned'}{load}")

    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "lstm_forecast", "predict", "--run", str(run_dir),
                   "--data-dir", str(data_dir), "--output", str(Path(folder) / "forecast.json")]
        time_command(command, cpus)  # warm the file cache; not counted
        seconds = [time_command(command, cpus) for _ in range(args.repeats)]

    first_ms, median_ms = forward_milliseconds(run_dir, data_dir)
    print(f"predict end to end, {args.repeats} runs: median {statistics.median(seconds):.2f} s, "
          f"min {min(seconds):.2f} s, max {max(seconds):.2f} s (goal <= {END_TO_END_GOAL_S} s)")
    print(f"forward pass: first {first_ms:.2f} ms, then median {median_ms:.2f} ms over {FORWARD_REPEATS} "
          f"(goal < {FORWARD_GOAL_MS:g} ms)")


if __name__ == "__main__":
    main()
