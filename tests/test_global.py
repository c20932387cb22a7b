"""The global model: one network over a universe, a common calendar split, per-ticker scalers, gathered
windows, the global bundle, and its per-ticker and cross-sectional evaluation."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_OVERRIDES, build_prices, error_line, run_cli_limited, write_caches
from typer.testing import CliRunner

from lstm_forecast.bundle import GLOBAL_FILE, PRICES_ARCHIVE, load_global_bundle
from lstm_forecast.cli import app
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.evaluate import evaluate
from lstm_forecast.prices import prices_to_csv
from lstm_forecast.report import scopes_report
from lstm_forecast.scoring import member_predictions, ticker_forecasts
from lstm_forecast.train import fingerprint, score_tickers, train_global, train_members
from lstm_forecast.windows import WindowSpec, build_dataset, compute_features


def fresh_copy(run_dir: Path, copy: Path) -> Path:
    """`copy` made anew from the run folder (a test damages each copy its own way)."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run_dir, copy)
    return copy


def price_entries(run_dir: Path) -> dict[str, bytes]:
    """Every entry of a run's prices.zip, by name."""
    with zipfile.ZipFile(run_dir / PRICES_ARCHIVE) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


GLOBAL = [*TINY_OVERRIDES, "model.scope=global"]


def error_line_of(stderr: str) -> str:
    """The last line a child process printed on stderr."""
    return (stderr.strip().splitlines() or [""])[-1]


def frame_of(returns: np.ndarray, start: str = "2019-01-02", level: float = 50.0) -> pd.DataFrame:
    """A price frame whose Adj Close has exactly these daily log returns."""
    price = level * np.exp(np.cumsum(np.r_[0.0, returns]))
    dates = pd.bdate_range(start, periods=len(price), name="Date").as_unit("ns")
    return pd.DataFrame({"Open": price, "High": price * 1.01, "Low": price * 0.99, "Close": price,
                         "Adj Close": price, "Volume": 1e6}, index=dates)


def ar_universe(tickers: int, days: int, phi: float, seed: int) -> dict[str, pd.DataFrame]:
    """Every ticker's return follows the same rule, r_t = phi * r_{t-1} + noise: a structure a pooled model can
    learn and that ranks tomorrow's moves across tickers (phi = 0: pure noise)."""
    rng = np.random.default_rng(seed)
    universe = {}
    for number in range(tickers):
        noise = rng.normal(0, 0.01, days)
        returns = np.zeros(days)
        for t in range(1, days):
            returns[t] = phi * returns[t - 1] + noise[t]
        universe[f"T{number:02d}"] = frame_of(returns, level=5 + 10 * number)
    return universe


# --- the panel -------------------------------------------------------------------------------------


def test_the_split_is_one_calendar_for_tickers_that_start_on_different_dates():
    universe = {"EARLY": build_prices(400, "2020-01-02", seed=1), "LATE": build_prices(250, "2020-07-01", seed=2),
                "MID": build_prices(320, "2020-04-01", seed=3)}
    config = load_config(None, [*GLOBAL, "window.lookback=10", "window.horizon=3"])
    panel = build_dataset(universe, config)
    val_start, test_start = panel.val_start.to_datetime64(), panel.test_start.to_datetime64()
    assert panel.names == ["EARLY", "LATE", "MID"]
    # No ticker's test day falls in any ticker's training period, nor its validation days.
    assert panel.train.target_dates.max() < val_start
    assert panel.val.target_dates.min() >= val_start and panel.val.target_dates.max() < test_start
    assert panel.test.target_dates.min() >= test_start
    for days in panel.tickers:  # the same two days split every ticker
        assert days.dates[days.val_start] >= val_start > days.dates[days.val_start - 1]
        assert days.dates[days.test_start] >= test_start > days.dates[days.test_start - 1]
    # The fractions apply to the union of the tickers' days: 400 + the days only LATE/MID have (none here).
    calendar = np.unique(np.concatenate([days.dates for days in panel.tickers]))
    assert test_start == calendar[len(calendar) - round(len(calendar) * 0.2)]


def test_configured_split_dates_hold_for_every_ticker_and_short_tickers_are_left_out_with_the_reason():
    universe = {"AAA": build_prices(300, seed=1), "BBB": build_prices(300, seed=2),
                "NEW": build_prices(40, "2021-01-04", seed=3)}
    config = load_config(None, [*GLOBAL, "split.val_start=2020-09-01", "split.test_start=2020-11-02"])
    panel = build_dataset(universe, config)
    assert panel.split == {"val_start": "2020-09-01", "test_start": "2020-11-02"}
    assert panel.names == ["AAA", "BBB"]
    assert "NEW" in panel.skipped and "before the validation period" in panel.skipped["NEW"]


def test_gathered_windows_equal_the_materialised_windows_of_the_local_pipeline():
    universe = {"AAA": build_prices(200, seed=1), "BBB": build_prices(170, "2020-02-03", seed=2)}
    config = load_config(None, [*GLOBAL, "window.lookback=7", "window.horizon=2", "data.features=[log_return,range]"])
    panel = build_dataset(universe, config)
    spec = WindowSpec.from_config(config)
    for days in panel.tickers:
        local = build_dataset(universe[days.ticker], config, split=panel.split)  # the local pipeline, one ticker
        assert local.scaler == days.scaler  # fitted on the ticker's own training days
        for name in ("train", "val", "test"):
            period, rows = getattr(panel, name), getattr(panel, name).of(days.index)
            expected = getattr(local, name)
            np.testing.assert_array_equal(period.inputs.materialise()[rows], expected.inputs)
            np.testing.assert_array_equal(period.targets[rows], expected.targets)
            np.testing.assert_array_equal(period.actual_prices[rows], expected.actual_prices)
            np.testing.assert_array_equal(period.anchor_dates[rows], expected.anchor_dates)
    # One array of days for all windows: memory grows with days x tickers, not x lookback.
    assert panel.values.shape == (sum(len(compute_features(f, spec)) for f in universe.values()), 2)
    assert panel.train.inputs.values is panel.values


def test_each_ticker_is_scaled_by_its_own_training_days():
    # BIG moves three times as much as SMALL, every day, and costs a hundred times more: scaled alike, the network
    # sees the same inputs, so BIG's forecast returns are exactly three times SMALL's (means are zero).
    rng = np.random.default_rng(4)
    returns = rng.normal(0, 0.01, 300)
    returns -= returns[:200].mean()
    universe = {"SMALL": frame_of(returns, level=5.0), "BIG": frame_of(3 * returns, level=500.0)}
    config = load_config(None, [*GLOBAL, "window.horizon=1", "split.val_start=2019-10-21",
                                "split.test_start=2019-11-18"])
    panel = build_dataset(universe, config)
    members, _ = train_members(panel, config)
    forecasts = ticker_forecasts(panel, panel.test, np.mean(member_predictions(members, panel.test), axis=0))
    small, big = (np.log(forecasts[t].model[:, 0] / forecasts[t].anchor_prices) for t in ("SMALL", "BIG"))
    np.testing.assert_allclose(big, 3 * small, rtol=1e-4, atol=1e-9)
    assert np.ptp(small) > 0


# --- skill, or none ---------------------------------------------------------------------------------


def scores_of(universe: dict[str, pd.DataFrame], *changes: str):
    config = load_config(None, [*GLOBAL, "window.lookback=5", "window.horizon=1", "model.hidden_size=8",
                                "train.epochs=6", "train.batch_size=64", *changes])
    panel = build_dataset(universe, config)
    members, _ = train_members(panel, config)
    return score_tickers(panel, members, config, "lstm", [fingerprint(t, universe[t]) for t in panel.names]).report


def test_a_shared_lagged_signal_gives_a_clearly_positive_ic_and_beats_naive():
    report = scores_of(ar_universe(16, 420, phi=-0.5, seed=0))
    ic = report["cross_section"]["ic"]["model"]
    assert ic["mean"] > 0.2 and ic["t"] > 5
    assert report["pooled_ratio"]["rmse_ratio_h1"] < 0.97
    pooled = report["per_ticker"]["pooled_dm"]
    assert pooled["pvalue"] < 0.01 and pooled["mean_differential"] < 0
    assert "better than the random walk" in report["per_ticker"]["verdict"]
    assert "ranks tomorrow's moves" in report["cross_section"]["verdict"]


def test_pure_noise_gives_an_ic_near_zero_and_no_distinguishable_skill():
    report = scores_of(ar_universe(16, 420, phi=0.0, seed=1))
    ic = report["cross_section"]["ic"]["model"]
    assert abs(ic["mean"]) < 0.05 and abs(ic["t"]) < 2.5
    assert "not distinguishable from zero" in report["cross_section"]["verdict"]
    assert 0.97 < report["pooled_ratio"]["rmse_ratio_all"] < 1.05


# --- the bundle, end to end through the CLI ------------------------------------------------------------


@pytest.fixture(scope="module")
def global_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A trained global run over five synthetic tickers, one of them broken and one too short."""
    root = tmp_path_factory.mktemp("global")
    universe = ar_universe(5, 260, phi=-0.3, seed=3)
    data_dir = write_caches(root / "data", universe)
    (data_dir / "SHORT.csv").write_bytes(prices_to_csv(build_prices(20, seed=9)))
    (data_dir / "BROKEN.csv").write_text("Date,Close\n2020-01-02,abc\n")
    overrides = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    result = CliRunner().invoke(app, ["train", "--all", "--data-dir", str(data_dir), "--runs-dir", str(root / "runs"),
                                      "--scope", "global", "--seeds", "2", "--json", *overrides])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return Path(report["run_dir"]), data_dir, report


def test_a_global_run_writes_one_bundle_and_lists_the_tickers_left_out(global_run):
    run_dir, _, report = global_run
    assert run_dir.parent.name == "_global"
    assert report["tickers"] == ["T00", "T01", "T02", "T03", "T04"]
    assert set(report["per_ticker"]["rows"][0]) >= {"ticker", "rmse_ratio_all", "dm_pvalue", "bh_qvalue"}
    assert [member["seed"] for member in report["training"]] == [0, 1]
    bundle = load_global_bundle(run_dir)
    assert bundle.names == report["tickers"] and bundle.seeds == [0, 1] and len(bundle.members) == 2
    assert set(bundle.skipped) == {"SHORT", "BROKEN"}
    assert "BROKEN" in bundle.skipped and "abc" in bundle.skipped["BROKEN"]
    with zipfile.ZipFile(run_dir / PRICES_ARCHIVE) as archive:
        assert sorted(archive.namelist()) == [f"{t}.csv" for t in report["tickers"]]


def test_evaluate_rebuilds_the_run_from_its_recorded_prices_and_gives_trainings_numbers(global_run, tmp_path):
    run_dir, data_dir, trained = global_run
    for path in data_dir.glob("T0*.csv"):  # the caches are revised after training; the bundle's rows are not
        path.write_bytes(prices_to_csv(build_prices(100, seed=7)))
    evaluation = evaluate(run_dir)
    report = evaluation.report
    assert report["scope"] == "in universe"
    assert report["cross_section"] == trained["cross_section"]
    assert report["pooled_ratio"] == trained["pooled_ratio"]
    assert [member["label"] for member in report["cross_section"]["members"]] == ["seed 0", "seed 1"]
    for name in ("evaluation.json", "ic.png", "long_short.png", "summary.csv", "universe.png"):
        assert (run_dir / name).stat().st_size > 0
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "Daily rank IC" in result.stdout and "Long–short diagnostic" in result.stdout
    assert "survivor bias" in result.stdout


def test_out_of_universe_tickers_are_scored_on_the_same_test_dates(global_run, tmp_path):
    run_dir, _, trained = global_run
    others = write_caches(tmp_path / "others", {f"N{i}": frame for i, frame in
                                               enumerate(ar_universe(6, 260, phi=-0.3, seed=11).values())})
    evaluation = evaluate(run_dir, others, tickers=["T00", "N0", "N1", "N2", "N3", "N4", "N5"])
    report = evaluation.report
    assert report["scope"] == "out of universe"
    assert [row["ticker"] for row in report["per_ticker"]["rows"]] == ["N0", "N1", "N2", "N3", "N4", "N5"]
    assert report["test"]["first_target_day"] == trained["test"]["first_target_day"]
    assert "T00" in evaluation.warnings[0]
    assert (run_dir / "out_of_universe" / "evaluation.json").is_file()


def test_a_damaged_global_bundle_is_one_error_naming_the_file(global_run, tmp_path):
    run_dir, _, _ = global_run
    copy = tmp_path / "copy"
    fresh_copy(run_dir, copy)
    document = json.loads((copy / GLOBAL_FILE).read_text())
    document["tickers"][1]["scaler"]["target_std"] = -1.0
    (copy / GLOBAL_FILE).write_text(json.dumps(document))
    with pytest.raises(ForecastError, match=r"global\.json.*damaged"):
        load_global_bundle(copy)

    fresh_copy(run_dir, copy)
    entries = price_entries(copy)
    entries["T01.csv"] = entries["T01.csv"].replace(b"\n2019-01-03,", b"\n2019-01-03,1", 1)
    with zipfile.ZipFile(copy / PRICES_ARCHIVE, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(ForecastError, match="T01's recorded prices do not match its fingerprint"):
        evaluate(copy)


def test_a_global_bundle_declaring_more_than_memory_allows_is_refused_before_it_is_read(global_run, tmp_path):
    run_dir, data_dir, _ = global_run
    copy = tmp_path / "big"
    fresh_copy(run_dir, copy)
    # global.json padded to 200 MB (whitespace is valid JSON): refused by its size before it is parsed.
    text = (copy / GLOBAL_FILE).read_text()
    with (copy / GLOBAL_FILE).open("w") as handle:
        handle.write(text[:-1])
        for _ in range(200):
            handle.write(" " * (1 << 20))
        handle.write(text[-1])
    result = run_cli_limited(["predict", "--run", str(copy), "--data-dir", str(data_dir)], tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_line_of(result.stderr).startswith(f"Error: {copy / GLOBAL_FILE}: ")
    assert "allowed here" in result.stderr and "Traceback" not in result.stderr

    # A fingerprint declaring more rows than days, which would size prices.zip's entries past any bound.
    fresh_copy(run_dir, copy)
    document = json.loads((copy / GLOBAL_FILE).read_text())
    document["tickers"][0]["fingerprint"]["rows"] = 9_000_000
    (copy / GLOBAL_FILE).write_text(json.dumps(document))
    with pytest.raises(ForecastError, match="at most one row a day"):
        load_global_bundle(copy)


def test_a_prices_archive_bomb_is_refused_without_inflating_it(global_run, tmp_path):
    run_dir, _, _ = global_run
    copy = tmp_path / "bomb"
    fresh_copy(run_dir, copy)
    entries = price_entries(copy)
    with zipfile.ZipFile(copy / PRICES_ARCHIVE, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            if name != "T01.csv":
                archive.writestr(name, content)
        # 300 MB of zeros deflate to about 300 KB: within the archive's own bound, far past the entry's.
        with archive.open("T01.csv", "w", force_zip64=True) as entry:
            for _ in range(300):
                entry.write(bytes(1 << 20))
    result = run_cli_limited(["evaluate", "--run", str(copy)], tmp_path)
    assert result.returncode == 1, result.stderr
    assert "T01's prices are missing or too large; the bundle is damaged" in error_line_of(result.stderr)


def test_a_ticker_embedding_is_learned_but_refuses_tickers_it_never_saw(tmp_path):
    universe = ar_universe(3, 200, phi=-0.3, seed=5)
    data_dir = write_caches(tmp_path / "data", universe)
    config = load_config(None, [*GLOBAL, "model.ticker_embedding=3"])
    result = train_global(config, list(universe), data_dir, tmp_path / "runs")
    bundle = load_global_bundle(result.run_dir)
    assert (bundle.shape.ticker_embedding, bundle.shape.n_tickers) == (3, 3)
    assert bundle.members[0].embedding.weight.shape == (3, 3)
    with pytest.raises(UsageError, match="ticker embedding and knows only its 3 tickers"):
        evaluate(result.run_dir, data_dir, tickers=["OTHER"])


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["-t", "AAA", "--scope", "global"], "give two or more"),
        (["-t", "AAA,BBB", "--scope", "global", "--jobs", "2"], "a global model trains in one process"),
        (["-t", "AAA,BBB", "--scope", "everywhere"], "model.scope"),
    ],
)
def test_global_usage_errors_are_one_line(arguments, fragment, tmp_path):
    result = CliRunner().invoke(app, ["train", *arguments, "--data-dir", str(tmp_path), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert fragment in error_line(result)


# --- predict and compare ------------------------------------------------------------------------------


def test_predict_ranks_every_ticker_of_the_run_under_its_skill_and_lists_one_that_ends_early(global_run, tmp_path):
    run_dir, _, trained = global_run
    cache = write_caches(tmp_path / "cache", ar_universe(5, 260, phi=-0.3, seed=3))
    short = cache / "T02.csv"
    frame = ar_universe(5, 260, phi=-0.3, seed=3)["T02"]
    short.write_bytes(prices_to_csv(frame.iloc[:-3]))
    result = CliRunner().invoke(app, ["predict", "--run", str(run_dir), "--data-dir", str(cache), "--format", "json"])
    assert result.exit_code == 1  # one ticker could not be forecast with the others
    document = json.loads(result.stdout)
    assert "mean rank IC" in document["skill"]
    ranked = [row for row in document["rows"] if row["rank"]]
    assert [row["ticker"] for row in ranked] != [] and "T02" not in [row["ticker"] for row in ranked]
    changes = [row["change_pct"] for row in ranked]
    assert changes == sorted(changes, reverse=True)
    assert {row["last_date"] for row in ranked} == {"2020-01-01"}  # business days: the holiday is a row here
    assert {row["session"] for row in ranked} == {"2020-01-02"}  # the next NYSE session
    behind = next(row for row in document["rows"] if row["ticker"] == "T02")
    assert behind["status"] == "failed" and "before the others'" in behind["note"]
    first = trained["per_ticker"]["rows"]
    assert {row["ticker"]: row["rmse_ratio_all"] for row in first}[ranked[0]["ticker"]] == ranked[0]["rmse_ratio"]


def test_predict_from_the_bundle_alone_is_deterministic(global_run, tmp_path):
    run_dir, _, _ = global_run
    arguments = ["predict", "--run", str(run_dir), "--data-dir", str(tmp_path / "empty"), "--format", "csv"]
    first, second = (CliRunner().invoke(app, arguments) for _ in range(2))
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout and first.stdout.count("\n") == 6  # header and the five tickers
    assert "stale" in first.stdout  # nothing cached: forecast from the recorded rows, flagged


def test_compare_scopes_trains_local_and_global_on_the_same_dates(tmp_path):
    data_dir = write_caches(tmp_path / "data", ar_universe(4, 220, phi=-0.3, seed=8))
    overrides = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    result = CliRunner().invoke(app, ["compare", "--scopes", "local,global", "--all", "--data-dir", str(data_dir),
                                      "--runs-dir", str(tmp_path / "runs"), "--json", *overrides])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report["scopes"]) == ["local", "global"]
    local, global_ = report["scopes"]["local"], report["scopes"]["global"]
    assert local["per_ticker"]["trained"] == global_["per_ticker"]["trained"] == 4
    # Identical test windows: the same number of cross-sectional days and of pooled windows.
    assert local["pooled_ratio"]["windows"] == global_["pooled_ratio"]["windows"]
    assert local["cross_section"]["days"] == global_["cross_section"]["days"]
    for bundle in (tmp_path / "runs").glob("T0*/*/bundle.json"):
        assert json.loads(bundle.read_text())["split"] == report["split"]
    assert Path(report["files"]["curves"]).stat().st_size > 0
    printed = "\n".join(str(item) for item in scopes_report(report))  # the table prints where the bundles went
    assert f"global run bundle: {global_['run_dir']}" in printed and local["universe_dir"] in printed


def test_compare_scopes_refuses_a_list_of_models(tmp_path):
    result = CliRunner().invoke(app, ["compare", "--scopes", "local,global", "--models", "gru", "-t", "A,B",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--scopes compares" in error_line(result)


def test_runs_lists_a_global_run_with_its_pooled_ratio(global_run):
    run_dir, _, trained = global_run
    result = CliRunner().invoke(app, ["runs", "--runs-dir", str(run_dir.parent.parent), "--json"])
    assert result.exit_code == 0, result.output
    row = next(row for row in json.loads(result.stdout)["runs"] if row["path"] == str(run_dir))
    assert row["ticker"] == "global (5 tickers)" and not row["damaged"]
    assert row["test_rmse_ratio"] == trained["pooled_ratio"]["rmse_ratio_all"]


def test_a_stop_during_the_first_member_keeps_it_and_trains_no_other(tmp_path):
    import threading

    universe = ar_universe(3, 200, phi=-0.3, seed=6)
    data_dir = write_caches(tmp_path / "data", universe)
    config = load_config(None, [*GLOBAL, "train.seeds=3", "train.epochs=5"])
    stop = threading.Event()

    def on_epoch(label, record):
        if record.epoch == 2:
            stop.set()  # as Ctrl-C would: the current batch ends, the best epoch so far is kept

    result = train_global(config, list(universe), data_dir, tmp_path / "runs", on_epoch=on_epoch, stop=stop)
    assert result.interrupted and [member["seed"] for member in result.training] == [0]
    assert result.training[0]["epochs_run"] == 2
    assert load_global_bundle(result.run_dir).seeds == [0]


def test_a_universe_of_broken_tickers_is_one_short_error_line(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for number in range(30):
        (data_dir / f"B{number:02d}.csv").write_text("Date,Close\n2020-01-02,abc\n")
    overrides = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    result = CliRunner().invoke(app, ["train", "--all", "--scope", "global", "--data-dir", str(data_dir),
                                      "--runs-dir", str(tmp_path / "runs"), *overrides])
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("Error: no ticker could be read: B00: ") and line.endswith("; and 28 more")
    assert len(line) < 400


SP500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500"


@pytest.mark.skipif(not SP500.is_dir(), reason="the shared S&P 500 folder is not beside the repository")
def test_the_real_universe_s_defects_are_left_out_or_handled_on_one_calendar():
    from lstm_forecast import data

    tickers = ["A", "AAPL", "BHF", "COH", "ESS", "FTV", "SYF"]  # an empty history, an early end, an empty row, late
    prices, refused = {}, {}
    for ticker in tickers:
        try:
            prices[ticker] = data.load_prices(SP500, ticker)
        except ForecastError as exc:  # the data-quality rules: penny quotes, 19 months of nothing, the real stock
            refused[ticker] = str(exc)
    assert list(refused) == ["BHF"] and "a level break" in refused["BHF"] and refused["BHF"].endswith("refused")
    panel = build_dataset(prices, load_config(None, ["model.scope=global"]))
    assert panel.split == {"val_start": "2016-06-09", "test_start": "2016-12-07"}
    assert {*panel.skipped, *refused} == {"BHF", "FTV"} and panel.names == ["A", "AAPL", "COH", "ESS", "SYF"]
    test_days = {name: len(panel.test.of(days.index)) for name, days in zip(panel.names, panel.tickers, strict=True)}
    assert test_days["COH"] < test_days["A"] == test_days["AAPL"] == test_days["SYF"]  # COH ends in October 2017
    assert panel.test.target_dates.min() >= np.datetime64("2016-12-07")


def test_evaluate_walks_a_global_run_forward_with_folds(global_run):
    # Once refused ("a global run has no walk-forward backtest"); the walk-forward is tests/test_global_walk.py's.
    run_dir, _, _ = global_run
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert "Walk-forward: 2 of 2 folds" in result.stdout and "Walk-forward backtest: 2 folds" in result.stderr


def test_a_recorded_price_entry_larger_than_its_rows_allow_is_never_inflated(global_run, tmp_path):
    run_dir, _, _ = global_run
    copy = tmp_path / "copy"
    fresh_copy(run_dir, copy)
    entries = price_entries(copy)
    entries["T03.csv"] += b"9" * 10_000_000  # compresses to kilobytes; its fingerprint declares 261 rows
    with zipfile.ZipFile(copy / PRICES_ARCHIVE, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(ForecastError, match="T03's prices are missing or too large; the bundle is damaged"):
        evaluate(copy)
