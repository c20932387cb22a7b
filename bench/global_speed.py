"""A global model on the pooled S&P 500 universe: training throughput against a plain PyTorch loop, peak
memory of a whole run, the seconds of one small epoch, and one global run against a model per ticker.

    python bench/global_speed.py [--tickers N] [--epochs 1] [--repeats 2] [--threads 2] [--local-tickers N]
                                 [--skip-local] [--profile] [--cross-section-only] [--rss-set K=V]... [--json]

Data: the first `--tickers` tickers (default all 391) cached in `--data-dir` (../shared/data/sp500); a
ticker that cannot be read is skipped, as a global run skips it. Every figure runs on the CPU with
`--threads` torch threads (default 2), and the machine's load averages are recorded before each one.

1. Peak RSS of a global run (default config, train.epochs=1) in a child process: `lstm-forecast train
   --scope global` when the CLI has that option, else `global_run.train_global` through `python -c`; the
   child runs under a small wrapper whose only child it is, so RUSAGE_CHILDREN's ru_maxrss is its own.
   Goal: <= 1 GB over all 391 tickers.
2. Throughput (the default config: lookback 60, LSTM 2 x 64, batch 64, AdamW, MSE, gradient norm clipped at
   1.0): the trainer on the panel's pooled windows exactly as `global_run.train_members` hands them over
   (`GatheredWindows` anchors plus the ticker index, cut batch by batch), against the textbook loop over the
   same windows materialised as one (n, lookback, features) float32 tensor: the same `Forecaster`, seed and
   batch size, a `torch.randperm` order each epoch, one validation pass per epoch on both sides (the trainer
   always makes one). Early stopping is off (patience = epochs). Windows per second = epochs x training
   windows / seconds, from model creation to the last validation pass; the plain loop's materialisation is
   timed apart and left out (in its favour). The sides alternate, each `--repeats` times after an untimed
   warm-up on a few batches; the best of each is compared. Goal: ours / plain >= 0.9. With `--profile` (and
   whenever the goal is missed) a per-batch breakdown follows: the gather of a batch of windows, the plain
   loop's index copy, and forward + backward + step.
3. One epoch of lstm_forecast/configs/quick.yaml over the universe (`train_members` with train.epochs=1): the trainer's
   seconds for it (training pass + validation pass) and the wall time around it.
4. One global run (`train_global`) against a local run per ticker (`train.train_ticker`, one after another in
   this process), both with lstm_forecast/configs/quick.yaml and bundles written to a temp dir: total wall
   times, reading and scoring included, beside the training seconds the runs record, after an untimed global run on two
   tickers pays the one-time costs both share. `--local-tickers N` times the first N local runs and
   extrapolates per ticker.

Issue 24's cross-sectional options (figures 5-7; `--cross-section-only` runs these alone, on the default config
with train.epochs=1 and train.seeds=1; the sides alternate, who goes first swapping each repeat, and the median
of `--repeats` is compared):
5. What the cross-sectional targets and selection cost. (a) Building the dataset (`build_dataset`: features,
   split, scalers, windows and targets, the per-day panel work of `excess` and `rank` included) with each
   `data.target`: log_return, excess, rank. (b) One global epoch, the trainer's seconds for it (training pass +
   validation pass + the selection score: `train.select rank_ic`'s validation forecast and mean daily rank IC run
   inside the epoch), through `train_members` as a run takes it, for today's `log_return + loss` against
   `rank + rank_ic`, `excess + rank_ic`, `rank + loss` and `excess + loss` on the same tickers; the rank IC score
   alone (`train.validation_rank_ic` on the trained model) is timed apart. Goal: new / today's <= 1.10.
6. The linear baseline (`linear.fit_ridge`: the normal equations over the training windows, every penalty of the
   grid solved, each one's validation rank IC, the choice) on each target's panel, and its test forecasts back
   in prices (`Dataset.to_prices` of `Ridge.predict` on the test windows, as `train.panel_forecasts` makes them).
   Goal: seconds on the 391-ticker panel.
7. Peak RSS, as figure 1 measures it, of a global run with the issue-24 options (`--rss-set`, repeatable;
   default data.target=rank and train.select=rank_ic) beside today's default (figure 1's, measured again under
   `--cross-section-only`). Goal: <= 1 GB over all 391 tickers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lstm_forecast import data, tickers
from lstm_forecast.config import Config, load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.linear import fit_ridge
from lstm_forecast.model import Forecaster, ModelShape
from lstm_forecast.train import train_global, train_members, train_ticker, validation_rank_ic
from lstm_forecast.trainer import EVAL_BATCH_SIZE, Samples, fit, predict, seed_everything
from lstm_forecast.windows import Dataset, GatheredWindows, build_dataset

ROOT = Path(__file__).resolve().parent.parent
SP500 = ROOT.parent / "shared" / "data" / "sp500"
QUICK = ROOT / "lstm_forecast" / "configs" / "quick.yaml"
GOAL_RATIO, GOAL_RSS_MB, GOAL_CROSS_SECTION_RATIO = 0.9, 1024, 1.10
TARGETS = ("log_return", "excess", "rank")
# (data.target, train.select): today's first, the one every other is compared with.
CROSS_SECTION_VARIANTS = (("log_return", "loss"), ("rank", "rank_ic"), ("excess", "rank_ic"), ("rank", "loss"),
                          ("excess", "loss"))
CROSS_SECTION_RSS = ("data.target=rank", "train.select=rank_ic")
WARMUP_WINDOWS = 4096  # the untimed warm-up: enough batches to pay allocator growth and kernel setup
PROFILE_BATCHES = 200
WARMUP_TICKERS = 8  # figure 5's untimed warm-up epoch: enough tickers to rank (crosssection.MIN_TICKERS)

# A child's peak RSS alone: the wrapper's only child is the command, so RUSAGE_CHILDREN is that command's.
RSS_WRAPPER = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True); "
               "sys.stderr.buffer.write(done.stderr[-2000:]); "
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
# train_global in a child, for a checkout whose CLI has no --scope yet: tickers, data dir, runs dir, overrides.
GLOBAL_CHILD = ("import sys; from pathlib import Path; from lstm_forecast.config import load_config; "
                "from lstm_forecast.train import train_global; "
                "train_global(load_config(None, sys.argv[4:]), sys.argv[1].split(','), Path(sys.argv[2]), "
                "Path(sys.argv[3]))")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def settings(threads: int, *overrides: str, scope: str = "global") -> list[str]:
    """`--set` overrides every measured run shares: the scope, CPU, the thread count."""
    return [f"model.scope={scope}", "train.device=cpu", f"train.threads={threads}", *overrides]


def config_of(threads: int, *overrides: str, path: Path | None = None, scope: str = "global") -> Config:
    return load_config(path, settings(threads, *overrides, scope=scope))


def read_universe(data_dir: Path, count: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The prices of the first `count` cached tickers (all: None), and why any could not be read."""
    prices, unreadable = {}, {}
    for ticker in tickers.cached_tickers(data_dir)[:count]:
        try:
            prices[ticker] = data.load_prices(data_dir, ticker)
        except ForecastError as exc:
            unreadable[ticker] = str(exc)
    return prices, unreadable


# --- 1. throughput --------------------------------------------------------------------------------


def pooled(panel: Dataset, count: int | None = None) -> tuple[Samples, Samples]:
    """The training and validation samples as train_members builds them (the first `count` of each: None, all)."""
    def samples(period: Any) -> Samples:
        inputs = period.inputs
        windows = GatheredWindows(inputs.values, inputs.ends[:count], inputs.lookback)
        return Samples((windows, period.ticker[:count]), period.targets[:count])
    return samples(panel.train), samples(panel.val)


def ours_seconds(shape: ModelShape, train: Samples, val: Samples, config: Config, epochs: int) -> float:
    started = time.perf_counter()
    seed_everything(config.train.seed)
    train_config = config.train.model_copy(update={"epochs": epochs, "patience": epochs})
    result = fit(Forecaster(shape), train, val, train_config)
    if result.epochs_run != epochs:
        raise RuntimeError(f"the trainer ran {result.epochs_run} of {epochs} epochs; the timing would mislead")
    return time.perf_counter() - started


def plain_seconds(shape: ModelShape, tensors: tuple[torch.Tensor, ...], config: Config, epochs: int) -> float:
    """The textbook loop over materialised windows."""
    train_x, train_y, val_x, val_y = tensors
    started = time.perf_counter()
    torch.manual_seed(config.train.seed)
    model = Forecaster(shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    size = config.train.batch_size
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for start in range(0, len(train_x), size):
            batch = order[start : start + size]
            optimizer.zero_grad()
            loss = F.mse_loss(model(train_x[batch]), train_y[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            sum(F.mse_loss(model(x), y, reduction="sum") for x, y in
                zip(val_x.split(EVAL_BATCH_SIZE), val_y.split(EVAL_BATCH_SIZE), strict=True)).item()
    return time.perf_counter() - started


def materialise(panel: Dataset) -> tuple[tuple[torch.Tensor, ...], float]:
    """The pooled training and validation windows and targets as tensors, and the seconds it took."""
    started = time.perf_counter()
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) for array in (
        panel.train.inputs.materialise(), panel.train.targets, panel.val.inputs.materialise(), panel.val.targets))
    return tensors, time.perf_counter() - started


def throughput(panel: Dataset, config: Config, epochs: int, repeats: int) -> dict[str, Any]:
    shape = ModelShape.from_config(config.model, n_features=panel.spec.n_inputs, horizon=panel.spec.horizon,
                                   n_tickers=len(panel.tickers))
    tensors, materialise_s = materialise(panel)
    train, val = pooled(panel)
    n = len(panel.train)
    print(f"2. throughput: {n} training / {len(panel.val)} validation windows of {len(panel.tickers)} tickers "
          f"(lookback {panel.spec.lookback}, {shape.kind} {shape.num_layers} x {shape.hidden_size}, batch "
          f"{config.train.batch_size}), {epochs} epoch(s) x {repeats} repeat(s); materialising the windows "
          f"for the plain loop took {materialise_s:.2f} s (not counted)", flush=True)
    warm_train, warm_val = pooled(panel, WARMUP_WINDOWS)
    ours_seconds(shape, warm_train, warm_val, config, 1)
    plain_seconds(shape, tuple(tensor[:WARMUP_WINDOWS] for tensor in tensors), config, 1)

    sides = {"ours": lambda: ours_seconds(shape, train, val, config, epochs),
             "plain": lambda: plain_seconds(shape, tensors, config, epochs)}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    loads = []
    for repeat in range(repeats):
        # Who goes first swaps each repeat, so drift in the machine's load favours neither side.
        for name in (list(sides) if repeat % 2 == 0 else list(reversed(sides))):
            load = load_average()
            seconds = sides[name]()
            rates[name].append(epochs * n / seconds)
            loads.append(load)
            print(f"   repeat {repeat + 1} {name:<5} {seconds:7.1f} s  {rates[name][-1]:8.0f} windows/s  "
                  f"(load before: {load})", flush=True)
    best = {name: max(values) for name, values in rates.items()}
    ratio = best["ours"] / best["plain"]
    print(f"   best: ours {best['ours']:.0f} windows/s, plain {best['plain']:.0f} windows/s; "
          f"median: ours {statistics.median(rates['ours']):.0f}, plain {statistics.median(rates['plain']):.0f}; "
          f"ratio ours / plain {ratio:.3f} (goal >= {GOAL_RATIO})", flush=True)
    return {"train_windows": n, "val_windows": len(panel.val), "tickers": len(panel.tickers), "epochs": epochs,
            "windows_per_s": rates, "best_windows_per_s": best, "ratio": ratio,
            "materialise_s": materialise_s, "loads": loads}


def profile(panel: Dataset, config: Config) -> dict[str, float]:
    """Milliseconds per batch of the gather, the plain loop's index copy, and forward + backward + step."""
    shape = ModelShape.from_config(config.model, n_features=panel.spec.n_inputs, horizon=panel.spec.horizon)
    size = config.train.batch_size
    values = torch.from_numpy(panel.values)
    ends = torch.from_numpy(panel.train.inputs.ends)
    offsets = torch.arange(1 - panel.spec.lookback, 1)
    windows = values[ends[:, None] + offsets]
    targets = torch.from_numpy(panel.train.targets)
    chunks = torch.randperm(len(ends))[: PROFILE_BATCHES * size].split(size)
    model = Forecaster(shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)

    def step(batch: torch.Tensor) -> None:
        optimizer.zero_grad()
        F.mse_loss(model(windows[batch]), targets[batch]).backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()

    timings = {}
    for name, work in (("gather (ours)", lambda batch: values[ends[batch][:, None] + offsets]),
                       ("index copy (plain)", lambda batch: windows[batch]),
                       ("forward+backward+step", step)):
        started = time.perf_counter()
        for batch in chunks:
            work(batch)
        timings[name] = (time.perf_counter() - started) / len(chunks) * 1000
    print("   per batch: " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in timings.items()), flush=True)
    return timings


# --- 2. peak RSS ----------------------------------------------------------------------------------


def cli_has_scope() -> bool:
    done = subprocess.run([sys.executable, "-m", "lstm_forecast", "train", "--help"], capture_output=True,
                          text=True, check=True, env=os.environ | {"COLUMNS": "200"})
    return "--scope" in done.stdout


def peak_rss(data_dir: Path, tickers: list[str], every: bool, threads: int, extra: tuple[str, ...] = (),
             label: str = "1. peak RSS of a global run") -> dict[str, Any]:
    overrides = settings(threads, "train.epochs=1", *extra)
    with tempfile.TemporaryDirectory() as runs:
        if cli_has_scope():
            chosen = ["--all"] if every else ["-t", ",".join(tickers)]
            command = [sys.executable, "-m", "lstm_forecast", "train", "--data-dir", str(data_dir), *chosen,
                       "--scope", "global", "--runs-dir", runs, "--json",
                       *(part for override in overrides if not override.startswith("model.scope")
                         for part in ("--set", override))]
            how = "lstm-forecast train --scope global"
        else:
            command = [sys.executable, "-c", GLOBAL_CHILD, ",".join(tickers), str(data_dir), runs, *overrides]
            how = "train_global via python -c (the CLI has no --scope)"
        load = load_average()
        print(f"{label} over {len(tickers)} tickers, {', '.join(('train.epochs=1', *extra))}, {how} "
              f"(load before: {load})", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *command], capture_output=True, text=True,
                              check=True)
        seconds = time.perf_counter() - started
    returncode, max_rss_kb = (int(value) for value in done.stdout.split())
    if returncode != 0:
        raise RuntimeError(f"the global run failed ({returncode}): {done.stderr}")
    megabytes = max_rss_kb / 1024  # Linux reports ru_maxrss in KiB
    print(f"   peak RSS {megabytes:.0f} MB (goal <= {GOAL_RSS_MB} MB), {seconds:.0f} s wall", flush=True)
    return {"how": how, "tickers": len(tickers), "overrides": list(extra), "peak_rss_mb": megabytes,
            "wall_s": seconds, "load": load}


# --- 3. one quick epoch, 4. global vs local -------------------------------------------------------------


def quick_epoch(prices: dict[str, Any], threads: int) -> dict[str, Any]:
    config = config_of(threads, "train.epochs=1", path=QUICK)
    panel = build_dataset(prices, config)
    load = load_average()
    started = time.perf_counter()
    _, results = train_members(panel, config)
    wall = time.perf_counter() - started
    epoch = results[0].history[0].seconds
    print(f"3. one epoch of {QUICK.name} over {len(panel.tickers)} tickers ({len(panel.train)} training windows), "
          f"{threads} threads: {epoch:.1f} s (training + validation pass; {wall:.1f} s with setup) "
          f"(load before: {load})", flush=True)
    return {"epoch_s": epoch, "wall_s": wall, "train_windows": len(panel.train), "load": load}


def global_vs_local(data_dir: Path, tickers: list[str], threads: int, local_count: int | None,
                    skip_local: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as runs:
        # Untimed: the one-time costs both sides share (lazy imports, the exchange calendar, plotting) would
        # otherwise all fall on the global run, which goes first.
        train_global(config_of(threads, "train.epochs=1", path=QUICK), tickers[:2], data_dir, Path(runs) / "warm")
        load = load_average()
        started = time.perf_counter()
        run = train_global(config_of(threads, path=QUICK), tickers, data_dir, Path(runs) / "global")
        wall = time.perf_counter() - started
        epochs, training = run.training[0]["epochs_run"], run.training[0]["seconds"]
        print(f"4. {QUICK.name}: one global run over {len(run.tickers)} tickers ({len(run.skipped)} skipped), "
              f"{epochs} epochs: {wall:.1f} s wall, {training:.1f} s of it training (load before: {load})",
              flush=True)
        result["global"] = {"wall_s": wall, "training_s": training, "tickers": len(run.tickers),
                            "epochs_run": epochs, "load": load}
        if skip_local:
            return result

        local = config_of(threads, path=QUICK, scope="local")
        chosen = tickers[:local_count]
        load = load_average()
        failed = []
        training = 0.0
        started = time.perf_counter()
        for ticker in chosen:
            try:
                training += train_ticker(local, ticker, data_dir, Path(runs) / "local").training["seconds"]
            except ForecastError:  # a broken series costs its read, as in a universe run
                failed.append(ticker)
        local_wall = time.perf_counter() - started
    per_ticker = local_wall / len(chosen)
    total, training = per_ticker * len(tickers), training / len(chosen) * len(tickers)
    measured = "measured" if len(chosen) == len(tickers) else (
        f"extrapolated from the first {len(chosen)} at {per_ticker:.2f} s per ticker")
    print(f"   {len(tickers)} local runs ({len(failed)} failed: {', '.join(failed) or 'none'}): {total:.1f} s wall, "
          f"{training:.1f} s of it training, {measured} (load before: {load})", flush=True)
    print(f"   local / global wall time: {total / wall:.1f}x", flush=True)
    result["local"] = {"wall_s": total, "training_s": training, "measured_tickers": len(chosen),
                       "per_ticker_s": per_ticker, "extrapolated": len(chosen) != len(tickers),
                       "failed": failed, "load": load}
    return result


# --- 5.-7. issue 24's cross-sectional options --------------------------------------------------------


def alternating(sides: dict[str, Any], repeats: int) -> tuple[dict[str, list[float]], list[str]]:
    """Seconds of each side (a function returning its seconds), `repeats` times each, who goes first swapping each
    repeat so drift in the machine's load favours none; and the load averages before each."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    loads = []
    width = max(len(name) for name in sides)
    for repeat in range(repeats):
        for name in (list(sides) if repeat % 2 == 0 else list(reversed(sides))):
            load = load_average()
            seconds[name].append(sides[name]())
            loads.append(load)
            print(f"   repeat {repeat + 1} {name:<{width}} {seconds[name][-1]:8.2f} s  (load before: {load})",
                  flush=True)
    return seconds, loads


def medians_against(seconds: dict[str, list[float]], today: str) -> dict[str, dict[str, float]]:
    """Per side: the median seconds and its ratio to today's median."""
    base = statistics.median(seconds[today])
    return {name: {"median_s": statistics.median(values), "ratio": statistics.median(values) / base}
            for name, values in seconds.items()}


def target_config(threads: int, target: str, select: str = "loss") -> Config:
    return config_of(threads, "train.epochs=1", "train.seeds=1", f"data.target={target}", f"train.select={select}")


def build_seconds(prices: dict[str, Any], config: Config, built: dict[str, Dataset]) -> float:
    built.pop(config.data.target, None)  # one dataset per target held at once, not two
    started = time.perf_counter()
    built[config.data.target] = build_dataset(prices, config)
    return time.perf_counter() - started


def epoch_seconds(panel: Dataset, config: Config, scores: list[float]) -> float:
    """The trainer's seconds for one epoch through train_members (the path a run takes); with train.select
    rank_ic, the seconds of the selection score alone go to `scores`."""
    models, results = train_members(panel, config)
    if results[0].epochs_run != 1:
        raise RuntimeError(f"the trainer ran {results[0].epochs_run} epochs, not 1; the timing would mislead")
    if config.train.select == "rank_ic":
        score = validation_rank_ic(panel)
        forecasts = predict(models[0], panel.val.model_inputs)  # the validation pass made them; not timed here
        started = time.perf_counter()
        score(forecasts)
        scores.append(time.perf_counter() - started)
    return results[0].history[0].seconds


def cross_section_cost(prices: dict[str, Any], threads: int, repeats: int) -> tuple[dict[str, Any], dict[str, Dataset]]:
    """Figure 5: building the dataset with each target, and one epoch with each (target, selection); the datasets
    built last, by target, for figure 6."""
    built: dict[str, Dataset] = {}
    configs = {target: target_config(threads, target) for target in TARGETS}
    print(f"5. the cross-sectional options over {len(prices)} tickers, {threads} threads, {repeats} repeat(s) "
          "each, medians compared with today's (log_return + loss)", flush=True)
    print("   (a) building the dataset with each data.target", flush=True)
    build, build_loads = alternating({target: (lambda config=config: build_seconds(prices, config, built))
                                      for target, config in configs.items()}, repeats)
    build_medians = medians_against(build, "log_return")
    print("   median: " + ", ".join(f"{target} {value['median_s']:.2f} s ({value['ratio']:.2f}x)"
                                   for target, value in build_medians.items()), flush=True)

    panel = built["log_return"]
    print(f"   (b) one global epoch (training + validation pass + selection score): {len(panel.train)} training / "
          f"{len(panel.val)} validation windows of {len(panel.tickers)} tickers", flush=True)
    # Untimed, on a few tickers: the first epoch in a process pays one-time costs (allocator growth, kernel
    # setup), and the first rank IC score its own.
    few = dict(list(prices.items())[:WARMUP_TICKERS])
    warm = target_config(threads, "rank", "rank_ic")
    train_members(build_dataset(few, warm), warm)
    scores: dict[str, list[float]] = {}
    sides = {}
    for target, select in CROSS_SECTION_VARIANTS:
        name = f"{target} + {select}"
        scores[name] = []
        sides[name] = (lambda target=target, select=select, name=name:
                       epoch_seconds(built[target], target_config(threads, target, select), scores[name]))
    epochs, epoch_loads = alternating(sides, repeats)
    epoch_medians = medians_against(epochs, "log_return + loss")
    for name, value in epoch_medians.items():
        if scores[name]:
            value["rank_ic_score_s"] = statistics.median(scores[name])
    today = epoch_medians["log_return + loss"]["median_s"]
    print(f"   median epoch: today's (log_return + loss) {today:.2f} s; "
          + "; ".join(f"{name} {value['median_s']:.2f} s, ratio {value['ratio']:.3f}"
                      + (f" (rank IC score {value['rank_ic_score_s']:.2f} s of it)" if "rank_ic_score_s" in value
                         else "")
                      for name, value in epoch_medians.items() if name != "log_return + loss")
          + f" (goal <= {GOAL_CROSS_SECTION_RATIO})", flush=True)
    worst = max(value["ratio"] for name, value in epoch_medians.items() if name != "log_return + loss")
    return {"tickers": len(panel.tickers), "train_windows": len(panel.train), "val_windows": len(panel.val),
            "build_s": build, "build": build_medians, "build_loads": build_loads,
            "epoch_s": epochs, "epoch": epoch_medians, "epoch_loads": epoch_loads,
            "worst_epoch_ratio": worst}, built


def ridge_seconds(panel: Dataset, timings: dict[str, list[float]]) -> float:
    started = time.perf_counter()
    ridge = fit_ridge(panel)
    fitted = time.perf_counter()
    panel.to_prices(panel.test, ridge.predict(panel.test.inputs)[:, None])
    done = time.perf_counter()
    timings["fit"].append(fitted - started)
    timings["forecast"].append(done - fitted)
    return done - started


def linear_baseline(built: dict[str, Dataset], repeats: int) -> dict[str, Any]:
    """Figure 6: fit_ridge (all penalties, the validation choice) and its test forecasts, on each target's panel."""
    panel = next(iter(built.values()))
    print(f"6. the linear baseline on {len(panel.tickers)} tickers ({len(panel.train)} training, {len(panel.val)} "
          f"validation, {len(panel.test)} test windows): fit_ridge + its test forecasts in prices", flush=True)
    timings = {target: {"fit": [], "forecast": []} for target in built}
    seconds, loads = alternating({target: (lambda panel=panel, target=target: ridge_seconds(panel, timings[target]))
                                  for target, panel in built.items()}, repeats)
    result = {}
    for target, parts in timings.items():
        result[target] = {part: statistics.median(values) for part, values in parts.items()}
        print(f"   median {target}: fit {result[target]['fit']:.2f} s, test forecast "
              f"{result[target]['forecast']:.2f} s", flush=True)
    return {"tickers": len(panel.tickers), "train_windows": len(panel.train), "test_windows": len(panel.test),
            "seconds": seconds, "timings": timings, "median": result, "loads": loads}


def cross_section_rss(data_dir: Path, tickers: list[str], every: bool, threads: int, extra: tuple[str, ...],
                      today: dict[str, Any] | None) -> dict[str, Any]:
    """Figure 7: peak RSS of a global run with `extra` beside today's default (`today`: figure 1's, else measured)."""
    if today is None:
        today = peak_rss(data_dir, tickers, every, threads, label="7. peak RSS of today's default global run")
    variant = peak_rss(data_dir, tickers, every, threads, extra, label="7. peak RSS of a global run with the "
                       "issue-24 options")
    print(f"   peak RSS: {variant['peak_rss_mb']:.0f} MB with {', '.join(extra)} against {today['peak_rss_mb']:.0f} "
          f"MB today ({variant['peak_rss_mb'] / today['peak_rss_mb']:.2f}x; goal <= {GOAL_RSS_MB} MB)", flush=True)
    return {"today": today, "variant": variant}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SP500, help=f"price cache (default {SP500})")
    parser.add_argument("--tickers", type=int, default=None, help="only the first N tickers (default all)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed throughput run (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="timed throughput runs of each side (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads everywhere (default 2)")
    parser.add_argument("--local-tickers", type=int, default=None,
                        help="time only the first N local runs and extrapolate (default all)")
    parser.add_argument("--skip-local", action="store_true", help="leave out the local runs of figure 4")
    parser.add_argument("--profile", action="store_true", help="the per-batch breakdown even when the goal is met")
    parser.add_argument("--cross-section-only", action="store_true",
                        help="only figures 5-7, issue 24's cross-sectional options (the others are slow)")
    parser.add_argument("--rss-set", action="append", metavar="K=V", default=None,
                        help="an override of figure 7's variant run, repeatable (default: "
                             f"{' '.join(CROSS_SECTION_RSS)})")
    parser.add_argument("--json", action="store_true", help="also print every result as one JSON object, last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    prices, unreadable = read_universe(args.data_dir, args.tickers)
    tickers = list(prices) + list(unreadable)  # a run is given them all and skips what it cannot read
    every = args.tickers is None
    print(f"{len(tickers)} tickers from {args.data_dir} ({len(unreadable)} unreadable: "
          f"{', '.join(unreadable) or 'none'}); {args.threads} threads, {os.cpu_count()} CPUs; "
          f"load averages now: {load_average()}", flush=True)

    report: dict[str, Any] = {"tickers": len(tickers), "threads": args.threads, "unreadable": unreadable}
    if not args.cross_section_only:
        report["peak_rss"] = peak_rss(args.data_dir, sorted(tickers), every, args.threads)
        config = config_of(args.threads)
        panel = build_dataset(prices, config)
        report["throughput"] = throughput(panel, config, args.epochs, args.repeats)
        if args.profile or report["throughput"]["ratio"] < GOAL_RATIO:
            report["profile_ms_per_batch"] = profile(panel, config)
        del panel
        report["quick_epoch"] = quick_epoch(prices, args.threads)
        report["global_vs_local"] = global_vs_local(args.data_dir, sorted(tickers), args.threads,
                                                    args.local_tickers, args.skip_local)
    report["cross_section"], built = cross_section_cost(prices, args.threads, args.repeats)
    report["linear_baseline"] = linear_baseline(built, args.repeats)
    del built
    report["cross_section_rss"] = cross_section_rss(args.data_dir, sorted(tickers), every, args.threads,
                                                    tuple(args.rss_set or CROSS_SECTION_RSS),
                                                    report.get("peak_rss"))
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
