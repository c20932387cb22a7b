"""Every table the tool prints fits 80 and 120 columns without cutting a number (tables.FitTable).

Each table is built from a small report dict made here, with numbers as wide as real ones get, and rendered as
the commands print it (soft wrap on, as `console.stdout` does); no training."""

from __future__ import annotations

import io
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from lstm_forecast.metrics import FORECASTS, format_pvalue
from lstm_forecast.predict import render_screener, screener_report
from lstm_forecast.report import (
    METRIC_ROWS,
    backtest_table,
    compare_report,
    coverage_table,
    cross_section_report,
    fetch_table,
    fmt,
    scores_table,
    trading_table,
    trials_table,
    universe_report,
)
from lstm_forecast.runs import runs_table
from lstm_forecast.tables import FitTable

WIDTHS = (80, 120)
CUT = re.compile(r"[^\s│┃]…")  # rich's ellipsis right after a character: a cell cut short


def render(item: Any, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None, soft_wrap=True,
                      highlight=False)
    console.print(item)
    return console.export_text()


def assert_fits(item: Table, width: int, numbers: list[str]) -> str:
    """The rendered table: no line wider than `width` or ending in a space, no cell cut, every number whole."""
    text = render(item, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, text
    assert not [line for line in lines if line.endswith(" ")], text
    assert not CUT.search(text), text
    missing = [number for number in numbers if not re.search(rf"(?<![\d.]){re.escape(number)}(?![\d.%])", text)]
    assert not missing, f"{missing} not whole in\n{text}"
    return text


def metric_row(scale: float) -> dict[str, Any]:
    return {"rmse": 1234.5678 * scale, "mae": 987.654 * scale, "mape": 12.3456 * scale, "mase": 1.23456 * scale,
            "directional_accuracy": 0.5123 * scale, "rmse_ratio": 1.0234 * scale}


def metric_cells(row: dict[str, Any]) -> list[str]:
    return [fmt(row[key], pattern) for key, _, pattern in METRIC_ROWS]


SCORES = {name: {"all": metric_row(1 + index / 10), "h1": metric_row(1 - index / 10)}
          for index, name in enumerate(FORECASTS)}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_test_period_scores_keep_every_number(width):
    numbers = [cell for name in FORECASTS for step in ("all", "h1") for cell in metric_cells(SCORES[name][step])
               if width == 120 or cell != fmt(SCORES[name][step]["mape"], "{:.2f}")]  # MAPE % goes at 80
    assert_fits(scores_table("Test period: anchors 2016-01-04 … 2017-12-29, 488 windows", SCORES, 5, "lstm"),
                width, numbers)


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_keeps_every_models_numbers(width):
    test = {"horizon": 5, "first_anchor": "2016-01-04", "last_anchor": "2017-12-29", "windows": 488, "metrics": SCORES,
            "vs_naive": {"dm_all": {"pvalue": 0.0123}}, "verdict": "not distinguishable from the random walk"}
    runs = [{"model": kind, "test": test, "epochs_run": 123, "best_epoch": 99, "run_dir": f"runs/TSLA/{kind}"}
            for kind in ("rnn", "gru", "lstm")]
    report = {"ticker": "TSLA", "seed": 0, "test": test, "runs": runs, "interrupted": False, "completed": [],
              "files": {"compare": "compare.json", "curves": "curves.png"}}
    kept = [index for index, (key, _, _) in enumerate(METRIC_ROWS) if key not in ("mape", "mase")]
    numbers = [metric_cells(SCORES[name]["all"])[index] for name in FORECASTS for index in kept]
    text = assert_fits(compare_report(report)[0], width, [*numbers, "0.012", "123 (99)"])
    assert ("MAPE" in text.partition("Not shown")[0]) == (width == 120)  # MAPE % goes first at 80


@pytest.mark.parametrize("width", WIDTHS)
def test_fetch_wraps_a_failures_reason_and_keeps_the_counts(width):
    rows = [{"ticker": "AAPL", "status": "ok", "rows": 1234, "first": "2012-12-03", "last": "2017-12-29",
             "new_rows": 12, "mode": "incremental"},
            {"ticker": "BRK.B", "status": "failed", "error": "Yahoo Finance has no data for BRK.B: it may be "
             "delisted, or the symbol is spelled differently (BRK-B?)"}]
    report = {"rows": rows, "new_rows": 12, "failed": [rows[1]], "not_fetched": [], "fetched": 1, "tickers": 2,
              "data_dir": "data"}
    text = assert_fits(fetch_table(report)[0], width, ["1234", "2012-12-03", "2017-12-29", "12"])
    assert "(BRK-B?)" in text


def fold(number: int, source: str) -> dict[str, Any]:
    model, naive = metric_row(1 + number / 7), metric_row(1)
    return {
        "fold": number, "first_anchor": "2016-01-04", "last_anchor": "2016-06-30", "windows": 1234,
        "model_source": source, "epochs_run": 123, "verdict": "no better than naive",
        "metrics": {"model": {"all": model}, "naive": {"all": naive}},
        "vs_naive": {"dm_all": {"pvalue": 0.0123 * number}},
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_the_walk_forward_backtest_keeps_every_number_and_its_window_counts(width):
    folds = [fold(1, "bundle"), *(fold(number, "retrained") for number in range(2, 6))]
    backtest = {"completed": 5, "folds": 5, "fold_results": folds, "pooled": fold(9, ""), "interrupted": False}
    numbers = ["1234", "2016-01-04", "2016-06-30"]
    for row in [*folds, backtest["pooled"]]:
        model, naive = row["metrics"]["model"]["all"], row["metrics"]["naive"]["all"]
        numbers += [fmt(model["rmse"]), fmt(naive["rmse"]), fmt(model["rmse_ratio"]),
                    fmt(model["directional_accuracy"], "{:.1%}"), format_pvalue(row["vs_naive"]["dm_all"]["pvalue"])]
    text = assert_fits(backtest_table(backtest), width, numbers)
    assert re.search(r"│\s+1234 │", text)  # the window count `n` keeps its width (it shrank to nothing)
    assert ("refit, 123 ep." in text) == (width == 120)  # the model column goes first on a narrow terminal
    assert ("Not shown at 80 columns: model" in text) == (width == 80)


def test_coverage_leaves_out_the_later_days_before_cutting_one():
    coverage = [{"level": level, "all": 0.8123, "per_step": [0.8 + step / 100 for step in range(20)]}
                for level in (80.0, 95.0)]
    left_out = {}
    for width in WIDTHS:
        text = assert_fits(coverage_table(coverage, 20), width, ["81.2%", "80.0%", "81.0%", "82.0%"])
        note = re.search(r"Not shown at \d+ columns: day 20, …, day (\d+) \((\d+)\)", " ".join(text.split()))
        assert note, text
        left_out[width] = int(note[2])
        assert int(note[1]) == 21 - left_out[width]  # the latest days go, from day 20 down
    assert left_out[80] > left_out[120]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_trading_diagnostic_keeps_every_number(width):
    result = {"cumulative_return": -0.12345, "annualised_sharpe": -1.2345, "max_drawdown": 0.3456, "trades": 123,
              "days_in_market": 4567}
    trading = {"cost_bps": 5.0, "days": 4567, "strategy": result, "buy_and_hold": result | {"trades": 1}}
    assert_fits(trading_table(trading), width, ["-12.3%", "-1.23", "34.6%", "123", "4567"])


def universe_rows(count: int) -> list[dict[str, Any]]:
    return [{"ticker": f"TICK{index}", "status": "trained", "rmse_ratio_all": 0.9123 + index / 1000,
             "rmse_ratio_h1": 1.0456 + index / 1000, "dm_pvalue": 0.0345, "bh_qvalue": 0.000_5 + index / 100,
             "direction_accuracy": 0.5123, "lag_copy": "no"} for index in range(count)]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_universe_table_keeps_every_ratio_and_q_value(width):
    rows = universe_rows(35)
    report = {"rows": rows, "failed": [], "tickers": 35, "not_run": [], "median_rmse_ratio": 0.93,
              "verdict": "no better than naive", "folder": "runs/_universe/x", "files": {}}
    table = universe_report(report)[0]
    shown = rows[:10] + rows[-10:]
    numbers = [fmt(row[key]) for row in shown for key in ("rmse_ratio_all", "rmse_ratio_h1")]
    numbers += [format_pvalue(row["bh_qvalue"]) for row in shown] + ["51.2%", "0.035"]
    assert_fits(table, width, numbers)


def ic_summary(sign: float) -> dict[str, Any]:
    return {"mean": 0.01234 * sign, "std": 0.12345, "icir": 0.1234 * sign, "positive_share": 0.5234, "t": 12.345 * sign,
            "pvalue": 0.0456, "days": 1234}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_rank_ic_and_long_short_tables_keep_every_number(width):
    strategy = {"mean_daily": -0.001234, "sharpe": -1.2345, "sharpe_se": 0.6789, "max_drawdown": 0.4567,
                "mean_turnover": 1.2345, "days": 1234}
    report = {
        "days": 1234, "tickers_per_day": {"min": 391, "max": 391},
        "ic": {name: ic_summary(-1.0 if name == "reversal" else 1.0)
               for name in ("model", "beyond_train_mean", "train_mean", "reversal")},
        "members": [ic_summary(1.0) | {"label": f"seed {seed}"} for seed in range(3)],
        "long_short": {"k": 39, "cost_bps": 5.0, "strategies": dict.fromkeys(("model", "reversal", "train_mean",
                                                                            "market"), strategy)},
        "verdict": "The model's rank IC is indistinguishable from zero.", "notes": [],
    }
    ic_table, long_short_table = cross_section_report(report)[:2]
    assert_fits(ic_table, width, ["+0.0123", "-0.0123", "0.1235", "+0.123", "52.3%", "+12.35", "-12.35", "0.046",
                                  "1234"])
    assert_fits(long_short_table, width, ["-0.123%", "-1.23 ± 0.68", "45.7%", "1.23", "1234"])


@pytest.mark.parametrize("width", WIDTHS)
def test_the_tune_table_shows_lr_and_features_whole(width):
    # configs/search.yaml's keys, in its order, and two more
    keys = ["window.lookback", "model.hidden_size", "model.num_layers", "model.dropout", "train.lr", "model.type",
            "data.features", "train.weight_decay", "train.batch_size"]
    rows = [{"number": number, "window.lookback": 120, "model.hidden_size": 128, "model.num_layers": 3,
             "model.dropout": 0.25, "train.lr": 0.000123 * (number + 1), "model.type": "lstm",
             "data.features": "log_return+volume_change+range", "train.weight_decay": 1.5e-05,
             "train.batch_size": 256, "value": 1.0123 + number / 1000, "state": "complete", "seconds": 1234.5}
            for number in range(10)]
    numbers = [f"{0.000123 * (number + 1):.3g}" for number in range(10)] + [f"{1.0123 + n / 1000:.4f}" for n in
                                                                            range(10)]
    text = assert_fits(trials_table(rows, keys, "Best 10 trials (validation RMSE / naive; below 1 beats naive)"),
                       width, numbers)
    assert all(name in text for name in ("log_return +", "volume_change", "range"))  # wrapped between names
    # What does not fit is left out from the last parameter up, and said: never lr or features.
    table_text = text.partition("Not shown")[0]
    shown = [number for number in ("120", "128", "0.25", "lstm", "1.5e-05", "256") if number in table_text]
    assert shown == ["120", "128", "0.25", "lstm", "1.5e-05", "256"][:len(shown)]
    assert len(shown) >= (5 if width == 120 else 3)
    assert "Not shown" in text and ("state" in table_text) == (width == 120)


def runs_row(index: int) -> dict[str, Any]:
    return {"run_id": f"20261205-101500-{index:04d}", "ticker": "BRK-B", "model": "lstm",
            "created": "2026-12-05T10:15:00+00:00", "epochs": 123, "test_rmse_ratio": 1.0234 + index / 1000,
            "interrupted": index == 1, "evaluated": index % 2 == 0, "evaluation_interrupted": False,
            "config": {"model.hidden_size": "128", "train.epochs": "300", "data.features": '["log_return"]'},
            "damaged": False, "path": f"/home/someone/projects/forecasts/runs/BRK-B/20261205-101500-{index:04d}"}


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_fit_the_terminal_and_keep_every_id_and_ratio(width):
    rows = [runs_row(index) for index in range(3)]
    numbers = [row["run_id"] for row in rows] + ["1.023", "1.024", "1.025"]
    text = assert_fits(runs_table(rows), width, numbers)
    note = " ".join(text.partition("Not shown")[2].split())
    assert (rows[0]["path"] in text) != note.endswith(", path (5) (--json has every column).")  # whole, or said
    # Given the runs dir, the title names it and a path starts there: short enough for 120 columns.
    text = assert_fits(runs_table(rows, Path("/home/someone/projects/forecasts/runs")), width, numbers)
    assert "in /home/someone/projects/forecasts/runs," in " ".join(text.split())
    assert ("BRK-B/20261205-101500-0002" in text) == (width == 120)
    assert "/home/someone/projects/forecasts/runs/" not in text


def screener_rows() -> list[dict[str, Any]]:
    rows = []
    for rank in range(1, 6):
        rows.append({
            "rank": rank, "ticker": f"TICKER{rank}", "status": "ok", "last_date": "2026-12-04",
            "last_price": 12345.67, "session": "2026-12-07", "forecast": 12400.12, "change_pct": 2.4412 - rank,
            "level": 90.0, "lower": 11987.65, "upper": 12876.54, "rmse_ratio": 0.9876, "dm_pvalue": 0.0123,
            "bh_qvalue": 0.0456, "verdict": "beats naive (q < 0.05)", "run_dir": "runs/X/1", "note": "",
            "family": "runs dir (312 tests)", "family_size": 312,
        })
    rows.append({key: None for key in rows[0]} | {"ticker": "BROKE", "status": "failed", "note": "no run bundle"})
    return rows


@pytest.mark.parametrize("width", WIDTHS)
def test_the_screener_fits_the_terminal_and_keeps_every_price(width):
    rows = screener_rows()
    table = screener_report(rows)[0]
    text = assert_fits(table, width, ["12,400.12", "11,987.65 – 12,876.54", "+1.44", "-2.56", "0.046", "TICKER5"])
    # The columns other columns or the lines below stand in for go first, and the table says which went.
    assert ("12,345.67" in text and "0.988" in text) == (width == 120)
    assert "2026-12-07" not in text and "Not shown at" in text


def test_piped_the_screener_and_runs_keep_their_natural_width_without_padding():
    wide = render(screener_report(screener_rows())[0], 10_000)
    assert "Not shown" not in wide and "2026-12-07" in wide  # every column at full width
    assert max(len(line) for line in wide.splitlines()) < 200
    assert not [line for line in wide.splitlines() if line.endswith(" ")]
    written = render_screener(screener_rows(), "table")
    assert "2026-12-07" in written and not [line for line in written.splitlines() if line.endswith(" ")]
    runs = render(runs_table([runs_row(0)]), 10_000)
    assert "hidden_size=128" in runs and runs_row(0)["path"] in runs and "Not shown" not in runs
    assert not [line for line in runs.splitlines() if line.endswith(" ")]


def test_a_table_too_narrow_for_its_optional_columns_says_which_it_left_out():
    table = FitTable(title="t", optional=("drift",))
    for header in ("ticker", "model", "drift"):
        table.add_column(header, no_wrap=True)
    table.add_row("AAA", "1234567.891", "7654321.123")
    narrow = " ".join(render(table, 28).split())
    assert "1234567.891" in narrow and "7654321.123" not in narrow and "Not shown at 28 columns: drift" in narrow
    assert "7654321.123" in render(table, 80)


# --- --help ----------------------------------------------------------------------------------------

COMMANDS = ("fetch", "train", "predict", "runs", "evaluate", "compare", "tune")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_has_plain_metavars_clean_wrapping_and_ends_with_examples(command):
    from typer.testing import CliRunner

    from lstm_forecast.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    for typer_metavar in ("<str>", "<int", "<float", "<file>", "<path>", "<%Y", "<=x<="):
        assert typer_metavar not in text, typer_metavar
    assert not re.search(r"\S…", text), text  # no help text cut short (`train.seed … +N-1` is an ellipsis of ours)
    # A paragraph of the description flows to the width: no line of it ends far short of the next one's room.
    description = text.split("╭")[0].splitlines()
    ragged = [line for line, after in pairwise(description)
              if line.strip() and after.strip() and len(line.rstrip()) + len(after.split()[0]) + 1 < 78]
    assert not ragged, ragged
    tail = text.split("╯")[-1].split()
    assert tail[0] == "Examples:" and tail.count("lstm-forecast") in (1, 2, 3)
    assert f"lstm-forecast {command}" in " ".join(tail)


def test_a_table_that_cannot_fit_grows_wider_rather_than_cut_a_number():
    table = FitTable(title="t")
    for header in ("a", "b", "c"):
        table.add_column(header, no_wrap=True)
    table.add_row("1234567.891", "2345678.912", "3456789.123")
    text = render(table, 20)
    assert all(number in text for number in ("1234567.891", "2345678.912", "3456789.123"))
    assert not CUT.search(text) and "Not shown" not in text


def test_words_and_signs_read_right():
    from lstm_forecast.report import fmt, tickers_a_day

    assert fmt(-0.0000001, "{:+.3%}") == "+0.000%" and fmt(-0.00004, "{:.3f}") == "0.000"
    assert fmt(-0.5, "{:+.1%}") == "-50.0%" and fmt(None) == "—"
    assert tickers_a_day({"min": 30, "max": 30}) == "30 tickers"
    assert tickers_a_day({"min": 28, "max": 30}) == "28–30 tickers"
