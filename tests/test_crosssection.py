"""The cross-sectional evaluation of a global model: rank IC, its HAC t, the partial IC beyond the train mean,
the long–short diagnostic, the verdict, the plots and the report, on synthetic frames made here."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import stats

from lstm_forecast import crosssection as cs
from lstm_forecast.plots import ic_plot, long_short_plot
from lstm_forecast.report import cross_section_report

TICKERS = ["AAA", "BBB", "CCC", "DDD"]


def frame(rows: list[list[float]], columns: list[str] = TICKERS) -> pd.DataFrame:
    days = pd.bdate_range("2024-01-02", periods=len(rows))
    return pd.DataFrame(rows, index=days, columns=columns, dtype=float)


def universe(days: int, tickers: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Random next-day log returns (about 1 % a day) and a train mean per ticker, independent of each other."""
    rng = np.random.default_rng(seed)
    columns = [f"T{number:02d}" for number in range(tickers)]
    index = pd.bdate_range("2023-01-02", periods=days)
    realised = pd.DataFrame(rng.normal(0.0, 0.01, (days, tickers)), index=index, columns=columns)
    last_return = realised.shift(1).fillna(0.0)
    train_mean = pd.Series(rng.normal(0.0005, 0.0003, tickers), index=columns)
    return realised, last_return, train_mean


# --- rank IC ---------------------------------------------------------------------------------------


def test_rank_ic_equals_scipy_spearman_per_day_and_skips_thin_or_constant_days():
    nan = np.nan
    columns = ["A", "B", "C", "D", "E", "F"]
    scores = frame([
        [0.3, 0.1, -0.2, 0.5, 0.0, nan],      # 5 common tickers
        [1.0, 1.0, 2.0, -1.0, 3.0, 0.5],      # ties, 6 tickers
        [0.1, nan, 0.2, nan, 0.3, nan],       # 3 tickers: below min_tickers=4, skipped
        [2.0, 2.0, 2.0, 2.0, 2.0, 2.0],       # a constant score: no correlation, skipped
    ], columns)
    realised = frame([
        [0.01, -0.02, 0.00, 0.03, 0.02, 0.05],
        [0.02, 0.01, -0.01, -0.03, 0.04, nan],  # F has no realised return: 5 tickers
        [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
        [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
    ], columns)
    ic = cs.rank_ic(scores, realised, min_tickers=4)
    assert list(ic.index) == list(scores.index[:2])
    for day in ic.index:
        both = scores.loc[day].notna() & realised.loc[day].notna()
        expected = stats.spearmanr(scores.loc[day][both], realised.loc[day][both]).statistic
        assert ic[day] == pytest.approx(expected, abs=1e-12)
    assert cs.rank_ic(scores, realised, min_tickers=6).empty  # no day has 6 tickers with both values
    with pytest.raises(ValueError, match="at least 3"):
        cs.rank_ic(scores, realised, min_tickers=2)


# --- Newey–West and the IC summary -----------------------------------------------------------------


def test_newey_west_se_by_hand_and_without_lags():
    values = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    # mean 3.5; centred -2.5 -0.5 -1.5 1.5 0.5 2.5: γ0 = 17.5/6, γ1 = (1.25 + 0.75 - 2.25 + 0.75 + 1.25)/6 = 1.75/6;
    # lrv = γ0 + 2 (1 - 1/2) γ1 = 19.25/6, se = sqrt(lrv / 6).
    assert cs.newey_west_se(values, 1) == pytest.approx(math.sqrt(19.25 / 6 / 6), rel=1e-12)
    assert cs.newey_west_se(values, 0) == pytest.approx(np.std(values) / math.sqrt(6), rel=1e-12)
    # Negative autocorrelation shrinks the error: γ0 = 1, γ1 = -5/6, lrv = 1 - 5/6 = 1/6, se = sqrt(1/36).
    alternating = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    assert cs.newey_west_se(alternating, 1) == pytest.approx(1.0 / 6.0, rel=1e-12)
    assert cs.newey_west_se([1.0], 1) is None
    assert cs.newey_west_lags(100) == 4 and cs.newey_west_lags(250) == 4 and cs.newey_west_lags(6) == 2


def test_ic_summary_fields_and_degenerate_series():
    values = pd.Series([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    summary = cs.ic_summary(values, lags=1)
    se = math.sqrt(19.25 / 36)
    assert summary["days"] == 6 and summary["lags"] == 1
    assert summary["mean"] == pytest.approx(3.5)
    assert summary["std"] == pytest.approx(math.sqrt(3.5))  # 17.5 / 5
    assert summary["icir"] == pytest.approx(3.5 / math.sqrt(3.5))
    assert summary["positive_share"] == 1.0
    assert summary["hac_se"] == pytest.approx(se)
    assert summary["t"] == pytest.approx(3.5 / se)
    assert summary["pvalue"] == pytest.approx(2 * stats.t.sf(3.5 / se, df=5))
    assert cs.ic_summary(values)["lags"] == 2  # the Newey–West rule for 6 days

    constant = cs.ic_summary(pd.Series([0.1, 0.1, 0.1, 0.1]))
    assert constant["mean"] == pytest.approx(0.1) and constant["std"] == 0.0
    assert constant["t"] is None and constant["pvalue"] is None and constant["icir"] is None
    short = cs.ic_summary(pd.Series([0.2, -0.1]))
    assert short["days"] == 2 and short["positive_share"] == 0.5 and short["std"] is None and short["t"] is None
    empty = cs.ic_summary(pd.Series([], dtype=float))
    assert empty["days"] == 0 and empty["mean"] is None


# --- partial IC beyond the train mean --------------------------------------------------------------


def test_partial_ic_of_the_train_mean_itself_is_undefined_though_its_plain_ic_is_high():
    realised, last_return, train_mean = universe(120, 20, seed=3)
    realised = realised.add(30.0 * train_mean, axis=1)  # the train mean really ranks tomorrow's moves here
    predicted = pd.DataFrame(np.broadcast_to(train_mean.to_numpy(), realised.shape),
                             index=realised.index, columns=realised.columns)
    result = cs.cross_section(predicted, realised, last_return, train_mean, k=5)
    assert result.ic["model"]["mean"] > 0.4 and result.ic["model"]["t"] > 10
    assert result.ic["model"] == result.ic["train_mean"]
    assert result.daily_partial_ic.empty and result.ic["beyond_train_mean"]["t"] is None
    assert "cannot be told" in result.verdict
    json.dumps(result.to_dict(), allow_nan=False)  # None, never NaN, where nothing is defined


def test_partial_ic_by_the_formula_and_close_to_the_plain_ic_for_a_score_independent_of_the_train_mean():
    realised, _, train_mean = universe(150, 25, seed=4)
    rng = np.random.default_rng(5)
    predicted = realised + rng.normal(0.0, 0.01, realised.shape)  # signal, unrelated to the train mean
    control = pd.DataFrame(np.broadcast_to(train_mean.to_numpy(), realised.shape),
                           index=realised.index, columns=realised.columns)
    partial = cs.partial_rank_ic(predicted, realised, control)
    day = realised.index[7]
    r_xy = stats.spearmanr(predicted.loc[day], realised.loc[day]).statistic
    r_xz = stats.spearmanr(predicted.loc[day], control.loc[day]).statistic
    r_yz = stats.spearmanr(realised.loc[day], control.loc[day]).statistic
    expected = (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    assert partial[day] == pytest.approx(expected, abs=1e-12)
    plain = cs.rank_ic(predicted, realised)
    assert partial.mean() == pytest.approx(plain.mean(), abs=0.02) and plain.mean() > 0.6


# --- long–short --------------------------------------------------------------------------------------


def test_long_short_returns_turnover_and_cost_by_hand():
    nan = np.nan
    scores = frame([
        [0.3, 0.1, -0.2, 0.0],   # long AAA, short CCC
        [0.3, 0.5, -0.1, -0.4],  # long BBB, short DDD: both legs change, turnover 4
        [0.1, 0.2, nan, -0.3],   # CCC has no score; long BBB, short DDD again: turnover 0
    ])
    realised = frame([
        [math.log(1.02), 0.0, math.log(0.99), 0.0],
        [0.0, math.log(1.01), 0.0, math.log(1.03)],
        [0.0, math.log(0.98), 0.0, 0.0],
    ])
    daily = cs.long_short(scores, realised, k=1, cost_bps=5.0)
    assert daily["gross"].to_list() == pytest.approx([0.02 + 0.01, 0.01 - 0.03, -0.02 - 0.0])
    assert daily["turnover"].to_list() == pytest.approx([2.0, 4.0, 0.0])
    assert daily["cost"].to_list() == pytest.approx([0.001, 0.002, 0.0])
    assert daily["net"].to_list() == pytest.approx([0.029, -0.022, -0.02])
    # k=2: long AAA and BBB, short CCC and DDD on both full days; day 3 has 3 tickers, too few for 2 + 2.
    wide = cs.long_short(scores, realised, k=2, cost_bps=5.0)
    assert list(wide.index) == list(scores.index[:2])
    assert wide["gross"].to_list() == pytest.approx([0.02 / 2 + 0.01 / 2, 0.01 / 2 - 0.03 / 2])
    assert wide["turnover"].to_list() == pytest.approx([2.0, 0.0])

    stats_ = cs.strategy_stats(daily)
    equity = [1.029, 1.029 * 0.978, 1.029 * 0.978 * 0.98]
    assert stats_["days"] == 3 and stats_["mean_turnover"] == pytest.approx(2.0)
    assert stats_["mean_daily"] == pytest.approx((0.029 - 0.022 - 0.02) / 3)
    assert stats_["mean_daily_gross"] == pytest.approx((0.03 - 0.02 - 0.02) / 3)
    assert stats_["total_return"] == pytest.approx(equity[-1] - 1)
    assert stats_["max_drawdown"] == pytest.approx(equity[-1] / equity[0] - 1)


def test_long_short_ties_break_by_ticker_name_whatever_the_column_order():
    scores = frame([[1.0, 1.0, 1.0, 1.0]])
    realised = frame([[0.01, 0.02, 0.03, 0.04]])
    shuffled = cs.long_short(scores[TICKERS[::-1]], realised[TICKERS[::-1]], k=1, cost_bps=0.0)
    # Sorted by name, AAA ranks first (short) and DDD last (long).
    assert shuffled["gross"].iloc[0] == pytest.approx(math.expm1(0.04) - math.expm1(0.01))


def test_cross_section_reversal_ranks_by_minus_the_last_return_and_market_is_the_equal_weight_mean():
    realised = frame([
        [math.log(1.04), math.log(1.01), math.log(0.97), math.log(1.02)],
        [math.log(0.99), math.log(1.05), math.log(1.00), math.log(1.01)],
    ])
    last_return = frame([[-0.05, 0.01, 0.02, 0.03], [0.04, -0.02, 0.00, 0.01]])
    predicted = frame([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    train_mean = pd.Series({"AAA": 0.001, "BBB": 0.0, "CCC": -0.001, "DDD": 0.0005})
    result = cs.cross_section(predicted, realised, last_return, train_mean, k=1, cost_bps=10.0, min_tickers=3)
    reversal = result.daily["reversal"]
    # Day 1: AAA fell most (long), DDD rose most (short); day 2: BBB long, AAA short.
    assert reversal["gross"].to_list() == pytest.approx([0.04 - 0.02, 0.05 - (-0.01)])
    assert reversal["turnover"].to_list() == pytest.approx([2.0, 4.0])
    # Train mean: long AAA, short CCC on both days, so no turnover on day 2.
    assert result.daily["train_mean"]["gross"].to_list() == pytest.approx([0.04 + 0.03, -0.01 - 0.0])
    assert result.daily["train_mean"]["turnover"].to_list() == pytest.approx([2.0, 0.0])
    market = result.daily["market"]
    assert market["net"].to_list() == pytest.approx([(0.04 + 0.01 - 0.03 + 0.02) / 4, (-0.01 + 0.05 + 0.0 + 0.01) / 4])
    assert market["turnover"].to_list() == [0.0, 0.0]
    assert result.strategies["market"]["mean_turnover"] == 0.0
    assert list(result.equity.columns) == ["model", "reversal", "train_mean", "market"]
    assert result.equity["market"].to_list() == pytest.approx([1.01, 1.01 * 1.0125])


def test_sharpe_and_its_lo_standard_error_on_a_known_series():
    net = np.array([0.01, -0.005, 0.02, 0.0, 0.015])
    # mean 0.008; squared deviations 4, 169, 144, 64, 49 (×1e-6) sum to 430e-6, variance (ddof 1) 107.5e-6.
    daily = 0.008 / math.sqrt(107.5e-6)
    sharpe, se = cs.annualised_sharpe(net)
    assert sharpe == pytest.approx(daily * math.sqrt(252))
    assert se == pytest.approx(math.sqrt((1 + daily**2 / 2) / 5) * math.sqrt(252))
    assert cs.annualised_sharpe(np.array([0.01, 0.01, 0.01])) == (None, None)
    assert cs.annualised_sharpe(np.array([0.01])) == (None, None)


def test_max_drawdown_is_a_negative_fraction_and_the_start_counts_as_a_peak():
    assert cs.max_drawdown(np.array([1.1, 0.99, 1.2, 0.9, 1.0])) == pytest.approx(0.9 / 1.2 - 1)
    assert cs.max_drawdown(np.array([0.95, 1.0])) == pytest.approx(-0.05)
    assert cs.max_drawdown(np.array([1.01, 1.02, 1.03])) == 0.0
    assert cs.max_drawdown(np.array([])) is None


# --- the whole evaluation --------------------------------------------------------------------------


def test_a_forecast_close_to_the_realised_returns_gives_an_ic_near_one_and_a_large_t():
    realised, last_return, train_mean = universe(200, 30, seed=1)
    rng = np.random.default_rng(2)
    predicted = realised + rng.normal(0.0, 0.001, realised.shape)
    members = {"seed 0": predicted + rng.normal(0.0, 0.001, realised.shape), "seed 1": predicted}
    result = cs.cross_section(predicted, realised, last_return, train_mean, k=5, members=members)
    summary = result.to_dict()
    assert summary["days"] == 200
    assert summary["tickers_per_day"] == {"min": 30.0, "median": 30.0, "max": 30.0}
    model = summary["ic"]["model"]
    assert model["mean"] > 0.98 and model["t"] > 100 and model["pvalue"] < 1e-10 and model["days"] == 200
    assert [member["label"] for member in summary["members"]] == ["seed 0", "seed 1"]
    assert summary["members"][1]["mean"] == pytest.approx(model["mean"])
    assert summary["ic"]["beyond_train_mean"]["mean"] > 0.95
    assert summary["long_short"]["strategies"]["model"]["sharpe"] > 10
    assert "The model ranks tomorrow's moves" in summary["verdict"]
    assert "It adds to each ticker's train mean" in summary["verdict"]
    assert summary["notes"] == [cs.DIAGNOSTIC_NOTE, cs.SURVIVOR_NOTE]
    json.dumps(summary, allow_nan=False)


def test_pure_noise_is_not_distinguishable_from_zero():
    realised, last_return, train_mean = universe(250, 30, seed=11)
    predicted = pd.DataFrame(np.random.default_rng(14).normal(0.0, 0.01, realised.shape),
                             index=realised.index, columns=realised.columns)
    predicted.iloc[:5, :27] = np.nan  # three tickers a day on the first days: below min_tickers, skipped
    result = cs.cross_section(predicted, realised, last_return, train_mean, k=10)
    model = result.ic["model"]
    assert model["days"] == 245 and abs(model["mean"]) < 0.02 and abs(model["t"]) < 2
    assert result.tickers_per_day["min"] == 3.0
    assert result.verdict.startswith("The model's mean daily rank IC")
    assert "not distinguishable from zero at 5 %" in result.verdict
    assert "Beyond each ticker's train mean it adds nothing distinguishable from zero" in result.verdict
    assert result.strategies["model"]["days"] == 245  # 2k = 20 tickers needed, so the thin days are not traded
    # A random ranking turns most of the book over every day: the cost alone drags the net below the gross.
    model_ls = result.strategies["model"]
    daily_sharpe = model_ls["sharpe"] / math.sqrt(252)
    assert model_ls["sharpe_se"] == pytest.approx(math.sqrt((1 + daily_sharpe**2 / 2) / 245 * 252))
    assert model_ls["mean_turnover"] > 2.5
    assert model_ls["mean_daily"] == pytest.approx(model_ls["mean_daily_gross"] - 5e-4 * model_ls["mean_turnover"])


def test_a_held_book_is_the_mean_of_the_last_n_days_books_by_hand():
    scores = frame([[1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.5, 0.2], [1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.5, 0.2]])
    realised = frame([[math.log(1.02), math.log(0.99), 0.0, 0.0]] * 4)
    daily = cs.long_short(scores, realised, k=1, cost_bps=10.0)
    assert daily["turnover"].to_list() == pytest.approx([2.0, 4.0, 4.0, 4.0])  # the book flips every day
    held = cs.long_short(scores, realised, k=1, cost_bps=10.0, hold=2)
    # Day 1: half the capital long AAA / short BBB; from day 2 the two half books cancel: nothing held, no trades.
    assert held["turnover"].to_list() == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert held["gross"].to_list() == pytest.approx([(0.02 + 0.01) / 2, 0.0, 0.0, 0.0])
    assert held["cost"].to_list() == pytest.approx([0.001, 0.001, 0.0, 0.0])
    pd.testing.assert_frame_equal(cs.long_short(scores, realised, k=1, cost_bps=10.0, hold=1), daily)
    with pytest.raises(ValueError, match="hold"):
        cs.long_short(scores, realised, k=1, cost_bps=10.0, hold=0)


def test_holding_n_days_cuts_a_fast_books_turnover_about_n_fold_and_leaves_a_steady_one_alone():
    realised, last_return, train_mean = universe(400, 30, seed=8)
    fast = cs.long_short(-last_return, realised, k=5, cost_bps=5.0)
    for hold in (2, 5, 10):
        held = cs.long_short(-last_return, realised, k=5, cost_bps=5.0, hold=hold)
        assert held["turnover"].mean() == pytest.approx(fast["turnover"].mean() / hold, rel=0.15)
    steady = pd.DataFrame(np.broadcast_to(train_mean.to_numpy(), realised.shape), index=realised.index,
                          columns=realised.columns)
    held = cs.long_short(steady, realised, k=5, cost_bps=5.0, hold=5)
    # A book that never changes is built in 5 steps of 1/5 (turnover 2/5 a day), then never traded again.
    assert held["turnover"].to_list()[:6] == pytest.approx([0.4] * 5 + [0.0])
    assert held["gross"].iloc[10:].to_numpy() == pytest.approx(
        cs.long_short(steady, realised, k=5, cost_bps=5.0)["gross"].iloc[10:].to_numpy())


def test_the_cross_section_reports_the_held_rows_beside_the_daily_ones():
    realised, last_return, train_mean = universe(200, 20, seed=9)
    predicted = -last_return + np.random.default_rng(10).normal(0.0, 0.01, realised.shape)
    daily_only = cs.cross_section(predicted, realised, last_return, train_mean, k=4)
    held = cs.cross_section(predicted, realised, last_return, train_mean, k=4, hold=5)
    assert daily_only.held == {} and "Held" not in daily_only.verdict
    assert held.strategies == daily_only.strategies  # the daily rows do not move
    assert set(held.held) == {"model", "reversal", "train_mean"}
    assert held.held["model"]["mean_turnover"] < held.strategies["model"]["mean_turnover"] / 3
    assert "model_held" in held.equity.columns
    assert "Held 5 days instead of rebalanced daily" in held.verdict
    document = held.to_dict()["long_short"]
    assert document["hold"] == 5 and document["held"]["model"] == held.held["model"]


# --- the linear baseline and the seeds' agreement --------------------------------------------------------


def test_the_linear_baseline_has_its_ic_row_its_long_short_row_and_the_models_partial_ic_beyond_it():
    realised, last_return, train_mean = universe(250, 25, seed=11)
    rng = np.random.default_rng(12)
    linear = realised + rng.normal(0.0, 0.03, realised.shape)  # a baseline with skill (IC about 0.3)
    # The model is the baseline plus noise: everything it ranks, the baseline ranks; nothing beyond it.
    predicted = linear + rng.normal(0.0, 0.01, realised.shape)
    result = cs.cross_section(predicted, realised, last_return, train_mean, k=5, linear=linear)
    assert {"linear", "beyond_linear"} <= set(result.ic) and "linear" in result.strategies
    assert result.ic["linear"]["mean"] > 0.25 and result.ic["model"]["mean"] > 0.25
    assert abs(result.ic["beyond_linear"]["mean"]) < 0.02 and abs(result.ic["beyond_linear"]["t"]) < 2
    assert result.ic["beyond_train_mean"]["mean"] > 0.25  # ... while beyond the train mean it adds a lot
    assert "Beyond the linear baseline on the same windows it adds nothing distinguishable from zero" in result.verdict
    assert list(result.equity.columns)[:2] == ["model", "linear"]
    # A model that ranks like the baseline has no partial IC beyond it; without one, no rows at all.
    same = cs.cross_section(linear, realised, last_return, train_mean, k=5, linear=linear)
    assert same.ic["beyond_linear"]["t"] is None
    none = cs.cross_section(predicted, realised, last_return, train_mean, k=5)
    assert "linear" not in none.ic and "beyond_linear" not in none.ic and "linear" not in none.strategies
    json.dumps(same.to_dict(), allow_nan=False)


def test_seed_agreement_is_one_for_identical_members_and_a_rank_correlation_otherwise():
    realised, _, _ = universe(120, 15, seed=13)
    rng = np.random.default_rng(14)
    identical = cs.seed_agreement({"seed 0": realised, "seed 1": realised.copy()}, realised)
    assert identical["pairwise"] == pytest.approx(1.0) and identical["with_ensemble"] == pytest.approx(1.0)
    members = {f"seed {n}": realised + rng.normal(0.0, 0.01 * (n + 1), realised.shape) for n in range(3)}
    ensemble = sum(members.values()) / 3
    agreement = cs.seed_agreement(members, ensemble)
    assert [pair["members"] for pair in agreement["pairs"]] == [["seed 0", "seed 1"], ["seed 0", "seed 2"],
                                                                 ["seed 1", "seed 2"]]
    values = [row["mean"] for row in agreement["pairs"] + agreement["members"]]
    assert all(-1.0 <= value <= 1.0 for value in values)
    assert agreement["pairwise"] == pytest.approx(np.mean([pair["mean"] for pair in agreement["pairs"]]))
    assert agreement["with_ensemble"] > agreement["pairwise"] > 0.2  # each is closer to the mean than to another
    opposed = cs.seed_agreement({"a": realised, "b": -realised}, realised)
    assert opposed["pairwise"] == pytest.approx(-1.0) and agreement["pairs"][0]["days"] == 120


# --- plots and the report --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated() -> cs.CrossSection:
    realised, last_return, train_mean = universe(90, 12, seed=21)
    predicted = realised + np.random.default_rng(22).normal(0.0, 0.02, realised.shape)
    return cs.cross_section(predicted, realised, last_return, train_mean, k=3,
                            members={"seed 0": predicted, "[seed 1]": predicted * 0.5},
                            linear=realised + np.random.default_rng(23).normal(0.0, 0.02, realised.shape), hold=5)


def test_plots_write_png_files(evaluated, tmp_path):
    for path in (ic_plot(evaluated.daily_ic, 60, "rank IC", tmp_path / "ic.png"),
                 long_short_plot(evaluated.equity, "long-short", tmp_path / "long_short.png")):
        content = path.read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 10_000


def test_cross_section_report_renders_the_tables_the_verdict_and_the_notes(evaluated):
    console = Console(record=True, width=180)
    for item in cross_section_report(evaluated.to_dict()):
        console.print(item)
    text = console.export_text()
    for expected in ("Daily rank IC over 90 test days, 12 tickers a day", "beyond train mean (partial)", "train mean",
                     "reversal", "seed 0", "[seed 1]", "Long–short diagnostic", "top/bottom 3", "market (long only)",
                     "HAC t", "Sharpe ± SE", cs.DIAGNOSTIC_NOTE, cs.SURVIVOR_NOTE, "linear (ridge)",
                     "beyond linear (partial)", "rebalanced daily, then held 5 days", "model, 5-day hold",
                     "linear (ridge), 5-day hold",
                     "Seeds agree: mean daily rank correlation +1.000 between each pair of the 2 members"):
        assert expected in text
    assert " ".join(evaluated.verdict.split()) in " ".join(text.split())
