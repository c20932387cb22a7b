"""Would a global run's seed members pay as executor jobs? The members one after another in this process (as
`train.train_members` trains them) against one member per worker process (`executors.run_in_workers`), on the
same pooled windows of the S&P 500 universe.

    python bench/members_speed.py [--tickers N] [--members 2] [--epochs 2] [--repeats 3] [--config PATH]
                                  [--set KEY=VALUE ...] [--json]

Sequential: `train_members` with `train.threads` = the machine's cores (every core on one member at a time).
Workers: `--members` spawned processes at `cores / members` threads each (never workers × threads > cores),
each building the dataset from the prices it is handed and training its member; the wall time includes the
process starts, the dataset each worker builds and the weights it sends back: what a run would pay. The sides
alternate, `--repeats` times each; medians and their ratio are reported beside the load averages (`uptime`)
before each side. Early stopping is off (patience = epochs), so both sides train the same number of epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

from lstm_forecast import data, tickers
from lstm_forecast.config import Config, load_config
from lstm_forecast.errors import ForecastError, StopRequest
from lstm_forecast.executors import PlainJob, run_in_workers
from lstm_forecast.train import train_members, train_model
from lstm_forecast.windows import build_dataset

ROOT = Path(__file__).resolve().parent.parent
SP500 = ROOT.parent / "shared" / "data" / "sp500"
QUICK = ROOT / "lstm_forecast" / "configs" / "quick.yaml"


class NeverStop:
    def is_set(self) -> bool:
        return False


def member_in_worker(prices: dict[str, Any], config: Config, stop: StopRequest) -> dict[str, Any]:
    """One member, as a worker would train it: its dataset built here, its weights returned."""
    dataset = build_dataset(prices, config)
    model, result = train_model(dataset, config, stop=stop)
    return {"epochs": result.epochs_run, "weights": {name: tensor for name, tensor in model.state_dict().items()}}


def sequential(prices: dict[str, Any], config: Config) -> float:
    started = time.perf_counter()
    members, _ = train_members(build_dataset(prices, config), config)
    assert len(members) == config.train.seeds
    return time.perf_counter() - started


def in_workers(prices: dict[str, Any], config: Config, threads: int) -> float:
    started = time.perf_counter()
    seeds = range(config.train.seed, config.train.seed + config.train.seeds)
    one = config.model_copy(update={"train": config.train.model_copy(update={"seeds": 1, "threads": threads})})
    waiting = deque(PlainJob(member_in_worker, (prices, one.model_copy(
        update={"train": one.train.model_copy(update={"seed": seed})})), threads) for seed in seeds)
    finished = list(run_in_workers(waiting, config.train.seeds, NeverStop()))
    assert len(finished) == config.train.seeds and not any(item.died for item in finished)
    return time.perf_counter() - started


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", type=Path, default=QUICK)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--data-dir", type=Path, default=SP500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    prices = {}
    for ticker in tickers.cached_tickers(args.data_dir)[:args.tickers]:
        try:
            prices[ticker] = data.load_prices(args.data_dir, ticker)
        except ForecastError:
            continue
    overrides = ["model.scope=global", "train.device=cpu", f"train.seeds={args.members}",
                 f"train.epochs={args.epochs}", f"train.patience={args.epochs}", *args.overrides]
    config = load_config(args.config, [*overrides, f"train.threads={cores}"])
    per_worker = max(1, cores // args.members)
    times: dict[str, list[float]] = {"sequential": [], "workers": []}
    loads: dict[str, list[str]] = {"sequential": [], "workers": []}
    for _ in range(args.repeats):
        loads["sequential"].append(load_average())
        times["sequential"].append(sequential(prices, config))
        loads["workers"].append(load_average())
        times["workers"].append(in_workers(prices, config, per_worker))
    medians = {side: statistics.median(values) for side, values in times.items()}
    report = {"tickers": len(prices), "members": args.members, "epochs": args.epochs, "cores": cores,
              "threads": {"sequential": cores, "per_worker": per_worker}, "seconds": times, "median_s": medians,
              "sequential_over_workers": medians["sequential"] / medians["workers"], "load_before": loads}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(prices)} tickers, {args.members} members x {args.epochs} epochs, {cores} cores")
    for side in times:
        print(f"  {side:<10} median {medians[side]:6.1f} s  runs {[round(t, 1) for t in times[side]]}  "
              f"load before {loads[side]}")
    print(f"  sequential / workers: {report['sequential_over_workers']:.2f} (above 1: the workers pay)")


if __name__ == "__main__":
    main()
