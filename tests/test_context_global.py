"""Context inputs with the global model and in universe mode: one context series shared by every ticker,
cut, scaled, windowed and recorded as a local run does it, and read once."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_OVERRIDES, write_caches

from lstm_forecast import data
from lstm_forecast.bundle import GLOBAL_FILE, PRICES_ARCHIVE, load_global_bundle
from lstm_forecast.config import load_config
from lstm_forecast.errors import ForecastError
from lstm_forecast.evaluate import evaluate
from lstm_forecast.predict import run_predict
from lstm_forecast.prices import COLUMNS, parse_prices_csv, prices_sha256, prices_to_csv
from lstm_forecast.train import train_global
from lstm_forecast.universe import train_universe
from lstm_forecast.windows import build_dataset

CONTEXT = ["data.context=[{ticker: CTX, feature: log_return}]", "data.calendar_features=[day_of_week]"]
GLOBAL = [*TINY_OVERRIDES, "model.scope=global", *CONTEXT]
DAYS = 300
CONTEXT_START = 20  # CTX starts on this business day; EARLY's history starts on day 0
TODAY = date(2021, 6, 1)  # after the synthetic data's last day (2021-02-26)


def frame_of(returns: np.ndarray, dates: pd.DatetimeIndex, level: float) -> pd.DataFrame:
    price = level * np.exp(np.cumsum(returns))
    columns = [price, price * 1.01, price * 0.99, price, price, np.full(len(price), 1e6)]
    return pd.DataFrame(dict(zip(COLUMNS, columns, strict=True)), index=dates.rename("Date"))


def market(seed: int = 0) -> dict[str, pd.DataFrame]:
    """CTX and four tickers whose return is 0.5 × CTX's return of the day before plus noise; EARLY starts
    CONTEXT_START days before CTX, the others on CTX's first day."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-02", periods=DAYS).as_unit("ns")
    driver = rng.normal(0, 0.01, DAYS)
    frames = {"CTX": frame_of(driver, dates, 3000.0).iloc[CONTEXT_START:]}
    for number, name in enumerate(["EARLY", "T01", "T02", "T03"]):
        returns = np.r_[0.0, 0.5 * driver[:-1]] + rng.normal(0, 0.004, DAYS)
        frame = frame_of(returns, dates, 10.0 + 20 * number)
        frames[name] = frame if name == "EARLY" else frame.iloc[CONTEXT_START:]
    return frames


@pytest.fixture(scope="module")
def context_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("global-context")
    data_dir = write_caches(root / "data", market())
    result = train_global(load_config(None, GLOBAL), ["EARLY", "T01", "T02", "T03"], data_dir, root / "runs")
    return {"result": result, "data_dir": data_dir, "run_dir": result.run_dir}


def copy_cache(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# --- the panel -------------------------------------------------------------------------------------


def test_a_missing_context_day_drops_the_windows_reading_it_and_scalers_use_complete_days():
    frames = market()
    gappy = frames["CTX"].drop(frames["CTX"].index[100:105])  # five sessions: two beyond the three filled
    tickers = {name: frames[name] for name in ("T01", "T02")}
    panel = build_dataset(tickers, load_config(None, GLOBAL), context_prices={"CTX": gappy})
    assert panel.names == ["T01", "T02"]
    # Three days without a value (two past the gap's fill, and the return across it): 3 + lookback 8 - 1 windows.
    for name in panel.names:
        assert "10 windows dropped (10 training)" in panel.notes[name][0]
    # The same windows a local run drops on the same split.
    days = panel.tickers[0]
    local = build_dataset(tickers["T01"], load_config(None, GLOBAL), split=panel.split, context_prices={"CTX": gappy})
    assert local.dropped == {"training": 10, "validation": 0, "test": 0}
    rows = panel.train.of(days.index)
    np.testing.assert_array_equal(panel.train.anchor_dates[rows], local.train.anchor_dates)
    np.testing.assert_array_equal(panel.train.inputs.materialise()[rows], local.train.inputs)
    # No window reads a day without its context value; NaN days stay in the values, unread.
    assert np.isfinite(panel.train.inputs.materialise()).all()
    assert np.isnan(panel.values).any()
    complete = np.isfinite(panel.values[days.offset : days.offset + days.val_start]).all(axis=1)
    scaled_mean = panel.values[days.offset : days.offset + days.val_start][complete].mean(axis=0)
    np.testing.assert_allclose(scaled_mean, 0.0, atol=1e-5)  # fitted on the complete training days only


# --- a global run ----------------------------------------------------------------------------------


def test_a_global_run_reads_the_context_and_records_it(context_run):
    result, run_dir, data_dir = context_run["result"], context_run["run_dir"], context_run["data_dir"]
    assert result.tickers == ["EARLY", "T01", "T02", "T03"]
    bundle = load_global_bundle(run_dir)
    assert bundle.spec.n_inputs == 4 and bundle.shape.n_features == 4  # return, CTX's return, day-of-week sin/cos
    recorded = bundle.context_fingerprints
    assert [item["ticker"] for item in recorded] == ["CTX"]
    cached = data.load_prices(data_dir, "CTX")
    assert recorded[0]["first_date"] == cached.index[0].date().isoformat() and recorded[0]["rows"] == len(cached)
    prices, context_prices = bundle.recorded()
    assert prices_sha256(context_prices["CTX"]) == recorded[0]["sha256"]
    with zipfile.ZipFile(run_dir / PRICES_ARCHIVE) as archive:
        assert "context/CTX.csv" in archive.namelist()
    # EARLY's history began before CTX: it is cut to CTX's days, and the run says so.
    early = next(record.fingerprint for record in bundle.tickers if record.ticker == "EARLY")
    assert early["first_date"] == recorded[0]["first_date"] and early["rows"] == DAYS - CONTEXT_START
    assert len(prices["EARLY"]) == early["rows"]
    assert list(result.notes) == ["EARLY"]
    assert "history cut to" in result.notes["EARLY"][0] and "CTX starts" in result.notes["EARLY"][0]
    assert result.report["per_ticker"]["notes"] == result.notes
    assert json.loads((run_dir / GLOBAL_FILE).read_text())["context_fingerprints"] == recorded


def test_evaluate_rebuilds_the_run_from_the_recorded_context(context_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(context_run["run_dir"], run_dir)
    evaluation = evaluate(run_dir)  # the data dir is never read: everything comes from the bundle
    trained = context_run["result"].report
    assert evaluation.report["pooled_ratio"] == trained["pooled_ratio"]
    assert evaluation.report["cross_section"] == trained["cross_section"]


def test_out_of_universe_tickers_read_the_recorded_context_when_none_is_cached(context_run, tmp_path):
    frames = market(seed=5)
    others = write_caches(tmp_path / "others", {"N1": frames["T01"], "N2": frames["T02"]})  # no CTX cached here
    run_dir = tmp_path / "run"
    shutil.copytree(context_run["run_dir"], run_dir)
    evaluation = evaluate(run_dir, others, tickers=["N1", "N2"])
    assert [row["ticker"] for row in evaluation.report["per_ticker"]["rows"]] == ["N1", "N2"]
    assert evaluation.report["test"]["first_target_day"] == context_run["result"].report["test"]["first_target_day"]


def test_an_edited_recorded_context_is_refused_as_damage(context_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(context_run["run_dir"], run_dir)
    with zipfile.ZipFile(run_dir / PRICES_ARCHIVE) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    frame, _ = parse_prices_csv(entries["context/CTX.csv"], "CTX")
    frame.iloc[50, frame.columns.get_loc("Adj Close")] *= 1.01
    entries["context/CTX.csv"] = prices_to_csv(frame)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    (run_dir / PRICES_ARCHIVE).write_bytes(buffer.getvalue())
    with pytest.raises(ForecastError, match="CTX's recorded context prices do not match its fingerprint") as caught:
        evaluate(run_dir)
    assert "damaged" in str(caught.value) and "\n" not in str(caught.value)


def test_predict_ranks_every_ticker_with_the_cached_context(context_run, tmp_path):
    screener = run_predict(context_run["run_dir"], data_dir=context_run["data_dir"], output_format="json",
                           today=TODAY)
    rows = {row["ticker"]: row for row in screener.rows}
    assert set(rows) == {"EARLY", "T01", "T02", "T03"}
    assert all(row["status"] == "ok" and row["forecast"] is not None for row in rows.values())
    last = data.load_prices(context_run["data_dir"], "CTX").index[-1].date().isoformat()
    assert {row["last_date"] for row in rows.values()} == {last}


def test_predict_with_a_stale_context_cache_is_one_line_naming_the_series(context_run, tmp_path):
    cache = copy_cache(context_run["data_dir"], tmp_path / "data")
    stale = data.load_prices(cache, "CTX").iloc[:-3]
    (cache / "CTX.csv").write_bytes(prices_to_csv(stale))
    with pytest.raises(ForecastError) as caught:
        run_predict(context_run["run_dir"], data_dir=cache, output_format="json", today=TODAY)
    message = str(caught.value)
    assert "\n" not in message and "the context series CTX ends" in message
    assert "lstm-forecast fetch -t CTX" in message


def test_predict_refresh_updates_the_context_cache_too(context_run, tmp_path, monkeypatch):
    cache = copy_cache(context_run["data_dir"], tmp_path / "data")
    updated = []
    monkeypatch.setattr(data, "update_cache", lambda folder, ticker, **kwargs: updated.append(ticker))
    run_predict(context_run["run_dir"], data_dir=cache, output_format="json", refresh=True, today=TODAY)
    assert sorted(updated) == ["CTX", "EARLY", "T01", "T02", "T03"]


# --- universe mode ---------------------------------------------------------------------------------


def test_a_universe_with_context_reads_the_series_once_and_notes_each_cut(tmp_path, monkeypatch):
    frames = market(seed=1)
    data_dir = write_caches(tmp_path / "data", {name: frames[name] for name in ("CTX", "EARLY", "T01")})
    reads = []
    real = data.read_checked  # the one reader every history goes through
    monkeypatch.setattr(data, "read_checked", lambda *args, **kwargs: reads.append(args[1]) or real(*args, **kwargs))
    config = load_config(None, [*TINY_OVERRIDES, *CONTEXT])
    universe = train_universe(config, ["EARLY", "T01"], data_dir, tmp_path / "runs")
    assert [row["status"] for row in universe.rows] == ["ok", "ok"]
    assert reads.count("CTX") == 1 and reads.count("EARLY") == 1 and reads.count("T01") == 1
    assert list(universe.report["notes"]) == ["EARLY"] and "CTX starts" in universe.report["notes"]["EARLY"][0]


def test_a_universe_with_context_resumes_without_training_a_cut_ticker_again_until_the_context_changes(tmp_path):
    frames = market(seed=3)
    data_dir = write_caches(tmp_path / "data", {name: frames[name] for name in ("CTX", "EARLY", "T01")})
    config = load_config(None, [*TINY_OVERRIDES, *CONTEXT])
    first = train_universe(config, ["EARLY", "T01"], data_dir, tmp_path / "runs")
    again = train_universe(config, ["EARLY", "T01"], data_dir, tmp_path / "runs", resume=first.folder)
    assert [row["run_dir"] for row in again.rows] == [row["run_dir"] for row in first.rows]  # nothing retrained
    revised = frames["CTX"].copy()
    revised.iloc[-1, revised.columns.get_loc("Adj Close")] *= 1.02
    (data_dir / "CTX.csv").write_bytes(prices_to_csv(revised))
    changed = train_universe(config, ["EARLY", "T01"], data_dir, tmp_path / "runs", resume=first.folder)
    assert all(new["run_dir"] != old["run_dir"] for new, old in zip(changed.rows, first.rows, strict=True))


def test_a_universe_whose_context_cannot_be_fetched_fails_once_before_any_job(tmp_path, monkeypatch):
    frames = market(seed=2)
    data_dir = write_caches(tmp_path / "data", {name: frames[name] for name in ("EARLY", "T01")})
    fetches = []

    def unreachable(folder: Path, ticker: str, *args: object, **kwargs: object) -> None:
        fetches.append(ticker)
        raise ForecastError(f"cannot download {ticker}: no network")

    monkeypatch.setattr(data, "update_cache", unreachable)
    config = load_config(None, [*TINY_OVERRIDES, *CONTEXT])
    with pytest.raises(ForecastError, match="cannot download CTX"):
        train_universe(config, ["EARLY", "T01"], data_dir, tmp_path / "runs")
    assert fetches == ["CTX"]
    assert not (tmp_path / "runs").exists()  # no universe folder, no job started
