"""Issue 24's protocol: choose a global run's cross-sectional options on validation, then judge them on the test
period once, out of universe.

    python bench/global_protocol.py --runs-dir /tmp/protocol [--universe 50] [--held-out 30] [--seed 24]

The split of tickers is our own, made from ../shared/data/sp500 by a seeded shuffle: `--universe` tickers train
the global model, the next `--held-out` are never trained on. Every variant is `lstm_forecast/configs/global.yaml`
(a three-seed ensemble) with one `data.target` (log_return, excess, rank) and one `train.select` (loss, rank_ic),
trained by the CLI as a user would (a variant already trained into --runs-dir is reused, so a stopped protocol
resumes).

1. **Validation** (the choice): for every variant, on its own tickers' validation windows — the ensemble's
   mean daily rank IC and HAC t, each seed's t, the IC beyond each ticker's train mean, and the long–short
   diagnostic's net Sharpe for each holding period in HOLDS. The default is the variant with the highest
   validation ensemble IC, and the holding period with the best validation net Sharpe of that variant. These are
   printed before any test figure is computed.
2. **Test** (once, for every variant, so a reader sees the selection): `evaluate --run G -t <held-out>` — the
   held-out tickers' test period: the ensemble's IC and t, each seed's t, the IC beyond the train mean and beyond
   the linear baseline, and the linear baseline's own IC.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_forecast.bundle import load_run
from lstm_forecast.crosssection import MIN_TICKERS, ic_summary, long_short, partial_rank_ic, rank_ic, strategy_stats
from lstm_forecast.evaluate import rebuild_dataset
from lstm_forecast.scoring import member_predictions
from lstm_forecast.windows import Dataset

ROOT = Path(__file__).resolve().parent.parent
SP500 = ROOT.parent / "shared" / "data" / "sp500"
VARIANTS = [(target, select) for target in ("log_return", "excess", "rank") for select in ("loss", "rank_ic")]
HOLDS = (1, 5, 10, 20)


def ticker_split(universe: int, held_out: int, seed: int) -> tuple[list[str], list[str]]:
    names = sorted(path.stem for path in SP500.glob("*.csv"))
    order = np.random.default_rng(seed).permutation(len(names))
    chosen = [names[i] for i in order[:universe + held_out]]
    return sorted(chosen[:universe]), sorted(chosen[universe:])


def cli(*arguments: str) -> dict:
    finished = subprocess.run([sys.executable, "-m", "lstm_forecast", *arguments, "--json"], capture_output=True,
                              text=True, check=False, cwd=ROOT)
    if finished.returncode != 0:
        raise RuntimeError(f"{arguments[0]} exited {finished.returncode}: {finished.stderr[-600:]}")
    return json.loads(finished.stdout)


def trained(runs_dir: Path, tickers: list[str], target: str, select: str, overrides: list[str]) -> Path:
    """The variant's run directory, trained now unless an earlier call of this protocol trained it."""
    folder = runs_dir / f"{target}-{select}"
    marker = folder / "run_dir.txt"
    if marker.is_file():
        return Path(marker.read_text().strip())
    folder.mkdir(parents=True, exist_ok=True)
    document = cli("train", "-t", ",".join(tickers), "--config", "global", "--data-dir", str(SP500),
                   "--runs-dir", str(folder), "--set", f"data.target={target}", "--set", f"train.select={select}",
                   *(part for override in overrides for part in ("--set", override)))
    run_dir = Path(document["run_dir"])
    marker.write_text(str(run_dir))
    return run_dir


def grid(dataset: Dataset, values: np.ndarray) -> pd.DataFrame:
    """Day-1 values of the validation windows as days x tickers."""
    val = dataset.val
    days, day = np.unique(val.anchor_dates, return_inverse=True)
    table = np.full((len(days), len(dataset.tickers)), np.nan)
    table[day, val.ticker] = values
    return pd.DataFrame(table, index=pd.DatetimeIndex(days), columns=dataset.names)


def number(value: float | None, form: str = "+.4f") -> str:
    return "-" if value is None else format(value, form)


def validation_figures(run_dir: Path, k: int, cost_bps: float) -> dict:
    bundle = load_run(run_dir)
    dataset = rebuild_dataset(bundle, *bundle.recorded())
    k = max(1, min(k, len(dataset.tickers) // 2))  # as the tool sizes the book of a small universe
    val = dataset.val
    predictions = member_predictions(bundle.members, val)

    def day_one(scaled: np.ndarray) -> pd.DataFrame:
        return grid(dataset, np.log(dataset.to_prices(val, scaled)[:, 0] / val.anchor_prices))

    ensemble = day_one(np.mean(predictions, axis=0))
    realised = grid(dataset, np.log(val.actual_prices[:, 0] / val.anchor_prices))
    means = pd.Series({days.ticker: days.train_mean_log_return for days in dataset.tickers})
    train_mean = pd.DataFrame(np.broadcast_to(means.reindex(ensemble.columns).to_numpy(), ensemble.shape),
                              index=ensemble.index, columns=ensemble.columns)
    summary = ic_summary(rank_ic(ensemble, realised))
    return {
        "ic": summary["mean"], "t": summary["t"], "days": summary["days"],
        "seed_t": [ic_summary(rank_ic(day_one(one), realised))["t"] for one in predictions],
        "beyond_train_mean": ic_summary(partial_rank_ic(ensemble, realised, train_mean))["mean"],
        "sharpe_by_hold": {hold: strategy_stats(long_short(ensemble, realised, k, cost_bps, hold))["sharpe"]
                           for hold in HOLDS},
    }


def test_figures(run_dir: Path, held_out: list[str]) -> dict:
    document = cli("evaluate", "--run", str(run_dir), "-t", ",".join(held_out), "--data-dir", str(SP500))
    section = document["cross_section"]
    ic = section["ic"]
    return {
        "ic": ic["model"]["mean"], "t": ic["model"]["t"], "days": ic["model"]["days"],
        "seed_t": [member["t"] for member in section["members"]],
        "beyond_train_mean": (ic["beyond_train_mean"]["mean"], ic["beyond_train_mean"]["t"]),
        "linear": (ic.get("linear", {}).get("mean"), ic.get("linear", {}).get("t")),
        "beyond_linear": (ic.get("beyond_linear", {}).get("mean"), ic.get("beyond_linear", {}).get("t")),
        "seed_agreement": (section.get("seed_agreement") or {}).get("pairwise"),
        "long_short": {name: result["sharpe"] for name, result in section["long_short"]["strategies"].items()},
        "held": {name: result["sharpe"] for name, result in section["long_short"]["held"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--universe", type=int, default=50)
    parser.add_argument("--held-out", type=int, default=30)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--k", type=int, default=10, help="long-short book size on validation (global.yaml's)")
    parser.add_argument("--cost-bps", type=float, default=5.0)
    parser.add_argument("--set", action="append", default=[], help="a config override for every variant (smoke runs)")
    args = parser.parse_args()
    universe, held_out = ticker_split(args.universe, args.held_out, args.seed)
    print(f"universe ({len(universe)}): {','.join(universe)}\nheld out ({len(held_out)}): {','.join(held_out)}")
    runs = {variant: trained(args.runs_dir, universe, *variant, args.set) for variant in VARIANTS}

    print("\n1. validation (the variant's own tickers, validation period; min tickers a day "
          f"{MIN_TICKERS}): ensemble IC, HAC t, seeds' t, IC beyond train mean, net Sharpe by hold")
    validation = {variant: validation_figures(run, args.k, args.cost_bps) for variant, run in runs.items()}
    for (target, select), figures in validation.items():
        print(f"  {target:10} {select:7} IC {number(figures['ic'])} t {number(figures['t'], '5.2f')}  seeds t "
              + " ".join(number(t, "5.2f") for t in figures["seed_t"])
              + f"  beyond mean {number(figures['beyond_train_mean'])}  Sharpe by hold "
              + " ".join(f"{hold}:{number(sharpe, '+.2f')}" for hold, sharpe in figures["sharpe_by_hold"].items()))
    chosen = max(VARIANTS, key=lambda variant: validation[variant]["ic"])
    by_hold = validation[chosen]["sharpe_by_hold"]
    hold = max(HOLDS, key=lambda h: by_hold[h] if by_hold[h] is not None else -np.inf)
    print(f"  chosen on validation: data.target={chosen[0]} train.select={chosen[1]}, long_short_hold={hold}")
    (args.runs_dir / "choice.json").write_text(json.dumps({"target": chosen[0], "select": chosen[1], "hold": hold,
                                                           "validation": {f"{t}-{s}": v for (t, s), v in
                                                                          validation.items()}}, indent=1))

    print("\n2. test, out of universe (held-out tickers' test period), every variant:")
    for variant, run in runs.items():
        figures = test_figures(run, held_out)
        mark = "  <- chosen" if variant == chosen else ""
        print(f"  {variant[0]:10} {variant[1]:7} {json.dumps(figures)}{mark}")


if __name__ == "__main__":
    main()
