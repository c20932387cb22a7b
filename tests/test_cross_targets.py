"""Cross-sectional targets (data.target excess, rank) and selection by the validation rank IC (train.select): the
targets' arithmetic on training days only, forecasts back to prices, a global run of each through the CLI that
evaluate and predict read, and the usage errors of a local run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_OVERRIDES, error_line, write_caches
from test_global import GLOBAL, frame_of
from typer.testing import CliRunner

from lstm_forecast.bundle import load_global_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import TrainConfig, load_config
from lstm_forecast.errors import UsageError
from lstm_forecast.train import fingerprint, score_tickers, train_members, train_run, validation_rank_ic
from lstm_forecast.trainer import Samples, fit
from lstm_forecast.windows import WindowSpec, build_dataset, cross_section_moves, values_to_prices

SPLIT = ["split.val_start=2019-10-01", "split.test_start=2019-11-15"]


def market_universe(tickers: int = 6, days: int = 300, seed: int = 0, late: bool = False) -> dict[str, pd.DataFrame]:
    """Every ticker moves with one large common market return plus its own smaller noise; with `late`, the last
    ticker starts 40 days after the others, so the first days have one ticker fewer."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.001, 0.02, days)
    universe = {f"T{number}": frame_of(market + rng.normal(0, 0.01, days), level=10.0 + number)
                for number in range(tickers)}
    if late:
        universe[f"T{tickers - 1}"] = universe[f"T{tickers - 1}"].iloc[40:]
    return universe


def returns_of(universe: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Days x tickers log returns of Adj Close, NaN where a ticker has no day."""
    return pd.DataFrame({ticker: np.log(frame["Adj Close"]).diff().iloc[1:] for ticker, frame in universe.items()})


def panel(universe: dict[str, pd.DataFrame], target: str, *changes: str):
    return build_dataset(universe, load_config(None, [*GLOBAL, f"data.target={target}", *SPLIT, *changes]))


# --- the targets' arithmetic -----------------------------------------------------------------------------


def test_excess_sums_to_zero_each_day_and_ranks_are_the_days_places_in_range():
    universe = market_universe(late=True)
    rows = dict(universe)
    excess = cross_section_moves(rows, WindowSpec.from_config(load_config(None, [*GLOBAL, "data.target=excess"])))
    ranks = cross_section_moves(rows, WindowSpec.from_config(load_config(None, [*GLOBAL, "data.target=rank"])))
    returns = returns_of(universe)

    def frame(moves: dict, part: int) -> pd.DataFrame:
        return pd.DataFrame({t: pd.Series(moves[t][part], index=universe[t].index[1:]) for t in moves})

    assert np.allclose(frame(excess, 0).sum(axis=1), 0.0, atol=1e-15)  # over the tickers that have the day
    assert np.allclose(frame(excess, 0), returns.sub(returns.mean(axis=1), axis=0), equal_nan=True)
    score = frame(ranks, 1)
    assert score.min().min() > -0.5 and score.max().max() < 0.5
    for _, day in score.iterrows():  # five or six tickers a day: each place once, (k - 1/2) / n - 1/2
        present = day.dropna().sort_values().to_numpy()
        assert np.allclose(present, (np.arange(1, len(present) + 1) - 0.5) / len(present) - 0.5)
    assert (score.rank(axis=1) == returns.rank(axis=1)).where(returns.notna(), True).all().all()
    assert np.array_equal(frame(ranks, 0), frame(excess, 0), equal_nan=True)  # rank keeps the excess beside it


def test_an_excess_target_is_the_return_less_the_days_mean_plus_the_markets_training_mean():
    universe = market_universe(late=True)
    dataset = panel(universe, "excess")
    returns = returns_of(universe)
    market = returns.mean(axis=1)
    for days in dataset.tickers:
        own = returns[days.ticker].dropna()
        training = market.loc[own.index[: days.val_start]].mean()  # the market's mean over the ticker's training days
        assert np.allclose(days.target, own - market.loc[own.index] + training, atol=1e-15)
        # The scaler is a log_return run's: fitted on the raw training returns, so it maps a forecast back to a
        # return, and a ticker the run never saw gets the same one from its own prices.
        assert days.scaler == panel(universe, "log_return").tickers[days.index].scaler
        assert np.mean(days.target[: days.val_start]) == pytest.approx(days.scaler.target_mean, abs=1e-15)


def test_a_rank_target_is_read_in_the_tickers_excess_return_units_on_its_training_days():
    universe = market_universe()
    dataset, excess = panel(universe, "rank"), panel(universe, "excess")
    for days, excess_days in zip(dataset.tickers, excess.tickers, strict=True):
        train = slice(0, days.val_start)
        assert np.mean(days.target[train]) == pytest.approx(days.scaler.target_mean, abs=1e-15)
        assert np.std(days.target[train]) == pytest.approx(np.std(excess_days.target[train]), rel=1e-12)
    # A rank knows places, not sizes: a 30 % jump of one ticker moves the others' scores on that day only, and by
    # one place at most.
    shocked = {ticker: frame.copy() for ticker, frame in universe.items()}
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        shocked["T0"].loc[shocked["T0"].index[30]:, column] *= 1.3
    spec = WindowSpec.from_config(load_config(None, [*GLOBAL, "data.target=rank"]))
    before, after = cross_section_moves(universe, spec)["T1"][1], cross_section_moves(shocked, spec)["T1"][1]
    changed = np.flatnonzero(before != after)
    assert set(changed) <= {29} and np.all(np.abs(after - before) <= 1 / 6 + 1e-12)


def test_the_targets_statistics_come_from_training_days_only():
    universe = market_universe(late=True)
    future = {ticker: frame.copy() for ticker, frame in universe.items()}
    rng = np.random.default_rng(9)
    for frame in future.values():  # every price from the validation period on is different
        later = frame.index >= pd.Timestamp("2019-10-01")
        frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= rng.uniform(0.5, 2.0, later.sum())[:, None]
    for target in ("excess", "rank"):
        before, after = panel(universe, target), panel(future, target)
        for one, other in zip(before.tickers, after.tickers, strict=True):
            assert one.scaler == other.scaler
            assert np.array_equal(one.target[: one.val_start], other.target[: other.val_start])
        np.testing.assert_array_equal(before.train.targets, after.train.targets)


def test_forecasts_of_a_cross_sectional_target_compound_back_to_prices_like_returns():
    values = np.array([[0.01, -0.02, 0.005]])
    for target in ("excess", "rank"):
        np.testing.assert_array_equal(values_to_prices(values, np.array([50.0]), target),
                                      values_to_prices(values, np.array([50.0]), "log_return"))
    # The true scaled targets go back to the market-neutral path: each day's return less the day's mean plus the
    # market's training mean, compounded from the anchor price.
    universe = market_universe()
    dataset = panel(universe, "excess", "window.horizon=3")
    val = dataset.val
    prices = dataset.to_prices(val, val.targets)
    for days in dataset.tickers:
        rows = val.of(days.index)
        first = np.searchsorted(days.dates, val.target_dates[rows, 0])
        steps = np.log(prices[rows] / np.c_[val.anchor_prices[rows], prices[rows, :-1]])
        np.testing.assert_allclose(steps, days.target[first[:, None] + np.arange(3)], atol=1e-6)


# --- selection: the trainer's hook and the validation rank IC ----------------------------------------------


def test_a_selection_score_chooses_the_best_epoch_and_stops_early_on_it():
    rng = np.random.default_rng(0)
    train = Samples(rng.normal(size=(64, 4, 1)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32))
    val = Samples(rng.normal(size=(32, 4, 1)).astype(np.float32), rng.normal(size=(32, 1)).astype(np.float32))
    scores = iter([3.0, 1.0, 2.0, 2.5, 0.5])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1))
    config = TrainConfig(epochs=5, patience=2, device="cpu", threads=1)
    result = fit(model, train, val, config, val_score=lambda module: next(scores))
    assert result.best_epoch == 2 and result.best_val_score == 1.0  # the lowest score, whatever the losses did
    assert result.epochs_run == 4 and result.stopped_early  # two epochs without a better score
    assert [record.val_score for record in result.history] == [3.0, 1.0, 2.0, 2.5]
    assert result.best_val_loss == result.history[1].val_loss


def test_the_validation_rank_ic_ranks_the_validation_windows_and_never_the_test_period():
    universe = market_universe(tickers=6, days=300, seed=2)
    dataset = panel(universe, "excess", "window.horizon=1")
    score = validation_rank_ic(dataset)

    oracle = dataset.val.targets  # forecasts that know the validation period's answers (scaled), nothing else
    # The tickers share their training days, so their market-neutral returns rank as the returns: a perfect IC.
    assert score(oracle) == pytest.approx(-1.0)
    dataset.test.actual_prices[:] = np.nan  # the test period is never read
    assert math.isfinite(score(oracle))


# --- skill, or none --------------------------------------------------------------------------------------


def relative_universe(phi: float, seed: int, tickers: int = 12, days: int = 420) -> dict[str, pd.DataFrame]:
    """A common market move six times each ticker's own, which reverts (phi < 0) or is noise (phi = 0): the
    relative move is what ranks tomorrow's returns, and the market hides it from a squared error on raw returns."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0, 0.06, days)
    universe = {}
    for number in range(tickers):
        noise, own = rng.normal(0, 0.01, days), np.zeros(days)
        for t in range(1, days):
            own[t] = phi * own[t - 1] + noise[t]
        universe[f"T{number:02d}"] = frame_of(market + own, level=5 + 10 * number)
    return universe


def ic_of(universe: dict[str, pd.DataFrame], *changes: str) -> dict:
    config = load_config(None, [*GLOBAL, "window.lookback=5", "window.horizon=1", "model.hidden_size=8",
                                "train.epochs=4", "train.batch_size=64", *changes])
    dataset = build_dataset(universe, config)
    members, _ = train_members(dataset, config)
    report = score_tickers(dataset, members, config, "lstm", [fingerprint(t, universe[t]) for t in dataset.names])
    return report.report["cross_section"]["ic"]["model"]


@pytest.mark.parametrize("changes", [["data.target=excess"], ["data.target=rank", "train.select=rank_ic"]])
def test_a_relative_signal_under_a_large_market_move_is_found(changes):
    ic = ic_of(relative_universe(phi=-0.5, seed=0), *changes)
    assert ic["mean"] > 0.1 and ic["t"] > 3


def test_pure_relative_noise_under_a_market_move_claims_no_skill():
    # One noise panel in twenty ranks with |t| > 2 by luck alone: this one is fixed, and does not.
    ic = ic_of(relative_universe(phi=0.0, seed=3), "data.target=excess", "train.select=rank_ic")
    assert abs(ic["mean"]) < 0.05 and abs(ic["t"]) < 2.5


# --- a global run of each target, end to end ------------------------------------------------------------


@pytest.mark.parametrize(("target", "select"), [("excess", "rank_ic"), ("rank", "rank_ic"), ("rank", "loss")])
def test_a_global_run_with_a_cross_sectional_target_is_evaluated_and_predicted(target, select, tmp_path):
    data_dir = write_caches(tmp_path / "data", market_universe(seed=5))
    overrides = [part for item in [*TINY_OVERRIDES, f"data.target={target}", f"train.select={select}"]
                 for part in ("--set", item)]
    runs = ["--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, ["train", "--all", "--data-dir", str(data_dir), *runs, "--scope", "global",
                                      "--json", *overrides])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    run_dir = trained["run_dir"]
    bundle = load_global_bundle(run_dir)
    assert bundle.spec.target == target and bundle.config.train.select == select
    history = pd.read_csv(f"{run_dir}/history.csv")
    training = trained["training"][0]
    if select == "rank_ic":
        # The best epoch has the lowest score (minus the validation rank IC), recorded beside the loss.
        assert training["best_epoch"] == int(history["epoch"][history["val_score"].idxmin()])
        assert training["best_val_score"] == pytest.approx(history["val_score"].min())
    else:
        assert "val_score" not in history and training["best_val_score"] is None
    evaluated = CliRunner().invoke(app, ["evaluate", "--run", run_dir, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["pooled_ratio"] == trained["pooled_ratio"]
    predicted = CliRunner().invoke(app, ["predict", "--run", run_dir, "--data-dir", str(data_dir), "--format", "json"])
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)["rows"]
    assert len(rows) == 6 and all(math.isfinite(row["change_pct"]) for row in rows)
    # Tickers the run never saw are scaled from their own prices, as a log_return run's are.
    fresh = market_universe(seed=6).values()
    others = write_caches(tmp_path / "others", {f"N{i}": frame for i, frame in enumerate(fresh)})
    outside = CliRunner().invoke(app, ["evaluate", "--run", run_dir, "--data-dir", str(others), "--all", "--json"])
    assert outside.exit_code == 0, outside.output
    assert json.loads(outside.stdout)["scope"] == "out of universe"
    unseen = CliRunner().invoke(app, ["predict", "--run", run_dir, "--data-dir", str(others), "-t", "N0", "--format",
                                      "json"])
    assert unseen.exit_code == 0, unseen.output
    assert json.loads(unseen.stdout)["rows"][0]["status"] == "unseen"


# --- usage errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["-t", "AAA", "--set", "data.target=excess"], "data.target: expected log_return or price for a local model"),
        (["-t", "AAA,BBB", "--set", "data.target=rank"], "(rank compares tickers day by day: set model.scope global"),
        (["-t", "AAA", "--set", "train.select=rank_ic"], "train.select: expected loss for a local model"),
        (["-t", "AAA,BBB,CCC", "--scope", "global", "--set", "train.select=rank_ic"], "give at least 5"),
    ],
)
def test_a_cross_sectional_setting_without_a_global_model_is_a_usage_error(arguments, fragment, tmp_path):
    result = CliRunner().invoke(app, ["train", *arguments, "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert fragment in error_line(result)


def test_a_local_model_made_in_code_refuses_a_cross_sectional_target(tmp_path):
    config = load_config(None, [*GLOBAL, "data.target=excess"])
    local = config.model_copy(update={"model": config.model.model_copy(update={"scope": "local"})})
    with pytest.raises(UsageError, match=r"data\.target excess compares tickers day by day"):
        train_run(local, "T0", market_universe()["T0"], tmp_path)


def test_the_default_is_still_the_raw_return_chosen_by_the_loss():
    config = load_config(None, [])
    assert config.data.target == "log_return" and config.train.select == "loss"
    _, results = train_members(panel(market_universe(), "log_return"), load_config(None, [*GLOBAL, *SPLIT]))
    assert results[0].best_val_score is None and all(r.val_score is None for r in results[0].history)
