"""The linear baseline: a ridge on the global model's own windows, fitted on training, its penalty chosen on
validation, in chunks that never hold the whole design matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_OVERRIDES
from rich.console import Console
from scipy.signal import lfilter

from lstm_forecast import linear
from lstm_forecast.config import Config, load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.report import global_report
from lstm_forecast.train import score_tickers, train_members
from lstm_forecast.windows import Dataset, GatheredWindows, build_dataset


def frame_of(returns: np.ndarray, level: float) -> pd.DataFrame:
    """A price frame whose Adj Close has exactly these daily log returns."""
    price = level * np.exp(np.cumsum(np.r_[0.0, returns]))
    dates = pd.bdate_range("2019-01-02", periods=len(price), name="Date").as_unit("ns")
    return pd.DataFrame({"Open": price, "High": price * 1.01, "Low": price * 0.99, "Close": price,
                         "Adj Close": price, "Volume": 1e6}, index=dates)


def ar_panel(tickers: int, days: int, phi: float, seed: int, lookback: int = 5) -> Dataset:
    """Every ticker's return follows r_t = phi r_{t-1} + noise: a linear relation on the windows' last day."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, (tickers, days))
    returns = lfilter([1.0], [1.0, -phi], noise, axis=1)
    config = load_config(None, [*TINY_OVERRIDES, "model.scope=global", f"window.lookback={lookback}",
                                "window.horizon=2"])
    return build_dataset({f"T{n:02d}": frame_of(row, 10.0 + 5 * n) for n, row in enumerate(returns)}, config)


@pytest.fixture(scope="module")
def panel() -> Dataset:
    return ar_panel(tickers=12, days=700, phi=0.3, seed=4)


def test_the_normal_equations_in_chunks_equal_the_whole_design_matrix(panel, monkeypatch):
    windows = panel.train.inputs
    assert isinstance(windows, GatheredWindows)  # a panel's windows are gathered, never materialised
    whole = np.column_stack([windows.materialise().reshape(len(windows), -1), np.ones(len(windows))])
    targets = panel.train.targets[:, 0].astype(np.float64)
    monkeypatch.setattr(linear, "CHUNK_BYTES", 8 * 6 * 97)  # 97 windows a chunk: many chunks, a ragged last one
    gram, moment = linear.normal_equations(windows, targets)
    np.testing.assert_allclose(gram, whole.T @ whole, rtol=1e-10)
    np.testing.assert_allclose(moment, whole.T @ targets, rtol=1e-10, atol=1e-9)
    # A materialised array of windows (a one-ticker dataset's) gives the same equations.
    same = linear.normal_equations(windows.materialise(), targets)
    np.testing.assert_allclose(same[0], gram, rtol=1e-10)


def test_the_ridge_recovers_a_known_linear_relation_and_never_shrinks_the_intercept(panel):
    gram, moment = linear.normal_equations(panel.train.inputs, panel.train.targets[:, 0])
    light, heavy = linear.solve(gram, moment, len(panel.train), (1e-6, 1e6)).T
    # Scaled inputs and target share the ticker's scaler, so the last day's weight is phi itself.
    assert light[-2] == pytest.approx(0.3, abs=0.04)
    assert np.abs(light[:-2]).max() < 0.05 and abs(light[-1]) < 0.03
    # A huge penalty leaves only the intercept, the training windows' mean target, unshrunk.
    assert np.abs(heavy[:-1]).max() < 1e-5
    assert heavy[-1] == pytest.approx(float(np.mean(panel.train.targets[:, 0])), abs=1e-4)


def test_the_penalty_is_chosen_by_the_validation_rank_ic_and_the_fit_forecasts_the_relation(panel):
    ridge = linear.fit_ridge(panel)
    table = ridge.validation
    assert [row["penalty"] for row in table] == list(linear.PENALTIES)
    assert ridge.chosen_by == "validation rank IC"
    assert ridge.penalty == max(table, key=lambda row: row["rank_ic"])["penalty"]
    assert max(row["rank_ic"] for row in table) > 0.1  # the relation ranks tomorrow's moves
    assert int(np.argmax(ridge.coefficients[:-1])) == ridge.coefficients.size - 2  # the last day matters most
    assert ridge.windows == len(panel.train) and ridge.coefficients.size == 5 + 1
    forecasts = ridge.predict(panel.test.inputs)
    realised = np.log(panel.test.actual_prices[:, 0] / panel.test.anchor_prices)
    returns = linear.day_one_returns(panel, panel.test, forecasts)
    assert forecasts.shape == (len(panel.test),) and np.corrcoef(returns, realised)[0, 1] > 0.15
    assert ridge.to_dict()["penalty"] == ridge.penalty


def test_too_few_tickers_to_rank_choose_the_penalty_by_validation_mse():
    ridge = linear.fit_ridge(ar_panel(tickers=3, days=500, phi=0.3, seed=5))
    assert ridge.chosen_by == "validation MSE"
    assert all(row["rank_ic"] is None for row in ridge.validation)
    assert ridge.penalty == min(ridge.validation, key=lambda row: row["mse"])["penalty"]


def test_an_absurd_panel_is_refused_in_one_line_before_anything_is_summed():
    with pytest.raises(ForecastError) as refused:
        linear.check_memory(2000 * 500 + 1)  # window.lookback 2000 × 500 inputs: terabytes of X'X
    message = str(refused.value)
    assert "\n" not in message and "1,000,001 coefficients" in message and "window.lookback" in message
    linear.check_memory(60 * 3 + 1)  # the 391-ticker panel's ridge: well within


# --- in the global run's report -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> tuple[Dataset, list, Config]:
    """A tiny two-seed global model on a panel whose only signal is linear (an AR(1) in every ticker)."""
    panel = ar_panel(tickers=12, days=460, phi=-0.4, seed=6)
    config = load_config(None, [*TINY_OVERRIDES, "model.scope=global", "window.lookback=5", "window.horizon=2",
                                "model.hidden_size=8", "train.epochs=3", "train.seeds=2"])
    members, _ = train_members(panel, config)
    return panel, members, config


def test_the_report_judges_the_model_beside_the_linear_baseline_and_does_not_call_it_better_without_reason(trained):
    panel, members, config = trained
    scores = score_tickers(panel, members, config, "lstm", [{"rows": 1, "sha256": ""}] * len(panel.names))
    section, about = scores.report["cross_section"], scores.report["linear_baseline"]
    assert about["fitted_on_tickers"] == 12 and about["training_windows"] == len(panel.train)
    assert about["chosen_by"] == "validation rank IC" and len(about["validation"]) == len(linear.PENALTIES)
    linear_ic = section["ic"]["linear"]
    assert linear_ic["mean"] > 0.15 and linear_ic["t"] > 3  # the ridge finds the linear signal
    assert "It adds to the linear baseline" not in section["verdict"]  # nothing beyond it to find
    assert {"linear", "model"} <= set(section["long_short"]["strategies"]) <= set(scores.section.equity.columns)
    assert section["long_short"]["hold"] == config.evaluate.long_short_hold == 5
    agreement = section["seed_agreement"]
    assert len(agreement["pairs"]) == 1 and -1.0 <= agreement["pairwise"] <= 1.0
    console = Console(record=True, width=120)
    for item in global_report({**scores.report, "scope": "in universe", "model": {"kind": "lstm"}}):
        console.print(item)
    text = " ".join(console.export_text().split())
    assert "linear (ridge)" in text and f"penalty {about['penalty']:g} of 7 chosen by validation rank IC" in text


def test_out_of_universe_the_runs_own_ridge_forecasts_the_unseen_tickers(trained):
    panel, members, config = trained
    unseen = ar_panel(tickers=6, days=460, phi=-0.4, seed=7)
    scores = score_tickers(unseen, members, config, "lstm", [{"rows": 1, "sha256": ""}] * 6, own=panel)
    about = scores.report["linear_baseline"]
    own = linear.fit_ridge(panel)
    assert about["fitted_on_tickers"] == 12 and about["penalty"] == own.penalty
    assert about["training_windows"] == len(panel.train) != len(unseen.train)
    assert scores.report["cross_section"]["ic"]["linear"]["mean"] > 0.1


def test_a_ridge_too_large_to_fit_leaves_the_report_whole_with_its_reason(trained, monkeypatch):
    panel, members, config = trained
    monkeypatch.setattr(linear, "memory_limit", lambda: 1024)
    scores = score_tickers(panel, members, config, "lstm", [{"rows": 1, "sha256": ""}] * len(panel.names))
    assert "the linear baseline's 6 coefficients" in scores.report["linear_baseline"]["absent"]
    assert "linear" not in scores.report["cross_section"]["ic"]
    assert scores.report["cross_section"]["ic"]["model"]["days"] > 0
