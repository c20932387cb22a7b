"""The multiple-testing family: a screener row's q-value is over every test of its kind (the runs dir's newest own
runs, a global run's own tickers), stated with its size, and listing fewer tickers cannot lower it."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_OVERRIDES, build_prices, write_caches
from test_predict import LAST_DAY, OLD_RUN, save_run
from test_screener import add_ticker, prices_until
from typer.testing import CliRunner

from lstm_forecast import predict
from lstm_forecast.cli import app
from lstm_forecast.compare import Comparison, context_set
from lstm_forecast.config import load_config
from lstm_forecast.evaluate import evaluate
from lstm_forecast.sets import adjusted_family, bh_qvalues, recorded_family
from lstm_forecast.train import train_run

# ticker -> (test RMSE ratio, DM p-value). Over all six, A's q is 0.02 * 6 / 1 = 0.12: no skill shown. Over A and
# B alone it would be 0.02 * 2 / 1 = 0.04, "beats naive": the family a user could shrink to by listing two.
SCORES = {"A": (0.90, 0.02), "B": (0.95, 0.30), "C": (1.01, 0.50), "D": (1.02, 0.60), "E": (0.99, 0.70),
          "F": (1.03, 0.90)}
FULL_Q_OF_A = 0.12


@pytest.fixture
def runs_dir(tmp_path: Path, clean_workdir: Path) -> dict[str, Path]:
    """Six tickers' own runs scored as SCORES says, each with a cache ending on LAST_DAY."""
    folders = {"runs_dir": tmp_path / "runs", "data_dir": tmp_path / "data"}
    folders["data_dir"].mkdir()
    for seed, (ticker, scores) in enumerate(SCORES.items()):
        add_ticker(folders, ticker, seed, scores=scores)
    return folders


def cli(folders: dict[str, Path], *arguments: str):
    return CliRunner().invoke(app, ["predict", *arguments, "--runs-dir", str(folders["runs_dir"]), "--data-dir",
                                    str(folders["data_dir"])])


def rows_of(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    return {row["ticker"]: row for row in json.loads(result.stdout)["rows"]}


def test_listing_fewer_tickers_keeps_each_q_value_of_the_whole_runs_dir(runs_dir):
    full = rows_of(cli(runs_dir, "-t", ",".join(SCORES), "--json"))
    pair = rows_of(cli(runs_dir, "-t", "A,B", "--json"))
    assert pair["A"]["bh_qvalue"] == pytest.approx(FULL_Q_OF_A, abs=1e-12)
    for ticker in ("A", "B"):
        assert pair[ticker]["bh_qvalue"] == full[ticker]["bh_qvalue"]
        assert pair[ticker]["verdict"] == full[ticker]["verdict"]
        assert (pair[ticker]["family"], pair[ticker]["family_size"]) == ("runs dir (6 tests)", 6)
    assert pair["A"]["verdict"] == "no skill shown"  # 0.04 over the two listed would have said "beats naive"


def test_the_family_is_each_tickers_newest_readable_run_cached_or_not(runs_dir):
    (runs_dir["data_dir"] / "F.csv").unlink()  # a run whose prices are gone is still a test that was made
    older = save_run(runs_dir["runs_dir"], "A", OLD_RUN, prices_until(LAST_DAY, seed=0).iloc[:-5])
    (older / "metrics.json").write_text(json.dumps({"test": {"vs_naive": {"dm_all": {"pvalue": 1e-9}}}}))
    damaged = add_ticker(runs_dir, "G", seed=9, scores=(0.5, 1e-6))
    (damaged / "bundle.json").write_text("{")  # no run predict can use: not a test in the family
    pair = rows_of(cli(runs_dir, "-t", "A,B", "--json"))
    assert pair["A"]["bh_qvalue"] == pytest.approx(FULL_Q_OF_A, abs=1e-12) and pair["A"]["family_size"] == 6


def test_the_table_csv_and_json_state_the_family_and_its_size(runs_dir):
    table = cli(runs_dir, "-t", "A,B")
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if "ticker" in line)
    assert "q family" in header
    assert sum("runs dir (6 tests)" in line for line in table.stdout.splitlines()) >= 3  # two rows and the advice
    advice = table.stdout.splitlines()[-1]
    assert "(Benjamini–Hochberg over the 6 tested)" in advice
    assert advice.endswith("however few tickers are listed: runs dir (6 tests).")
    document = json.loads(cli(runs_dir, "-t", "A,B", "--format", "json").stdout)
    assert document["families"] == {"runs dir (6 tests)": 6} and document["tested"] == 2
    rows = list(csv.DictReader(io.StringIO(cli(runs_dir, "-t", "A,B", "--format", "csv").stdout)))
    assert {(row["family"], row["family_size"]) for row in rows} == {("runs dir (6 tests)", "6")}


def test_a_row_without_a_test_has_no_family():
    rows = [predict.screener_row("X", "failed", "no run")]
    assert rows[0]["family"] is None and predict.families(rows) == {}
    assert "over the 0 tested" in predict.advice_line(rows)


def test_families_are_adjusted_over_every_p_value_or_read_as_recorded():
    family = adjusted_family("runs dir", {ticker: scores for ticker, scores in SCORES.items()} | {"U": (1.0, None)})
    assert family.size == 6 and family.label == "runs dir (6 tests)"
    assert family.test_of("A").qvalue == pytest.approx(FULL_Q_OF_A) and family.test_of("U").qvalue is None
    assert family.test_of("absent") == (None, None, None)
    recorded = recorded_family("global run X", {"A": (0.9, 0.02, 0.06), "B": (1.1, None, 0.5), "C": (1.0, 0.6, 0.6)})
    assert recorded.size == 3 and recorded.label == "global run X (3 tests)"
    assert recorded.test_of("A").qvalue == 0.06 and recorded.test_of("B").qvalue is None  # a q without its p
    assert adjusted_family("one", {"A": (0.9, 0.02)}).label == "one (1 test)"


# --- a global run: its own tickers are the family, whichever are listed ---------------------------------------


@pytest.fixture(scope="module")
def global_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny global run over AAA, BBB and CCC whose recorded per-ticker tests are set by hand: AAA's p 0.02 has q
    0.06 over the three (0.04 over AAA and BBB alone)."""
    root = tmp_path_factory.mktemp("global-family")
    data_dir = write_caches(root / "data", {name: build_prices(260, seed=seed)
                                            for seed, name in enumerate(["AAA", "BBB", "CCC"])})
    runs_dir = root / "runs"
    sets = [part for override in TINY_OVERRIDES for part in ("--set", override)]
    result = CliRunner().invoke(app, ["train", "--all", "--scope", "global", "--data-dir", str(data_dir),
                                      "--runs-dir", str(runs_dir), "--json", *sets])
    assert result.exit_code == 0, result.output
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recorded = {"AAA": (0.9, 0.02, 0.06), "BBB": (1.1, 0.5, 0.6), "CCC": (1.0, 0.6, 0.6)}
    for row in metrics["per_ticker"]["rows"]:
        row["rmse_ratio_all"], row["dm_pvalue"], row["bh_qvalue"] = recorded[row["ticker"]]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return {"data_dir": data_dir, "runs_dir": runs_dir, "run": run_dir}


def test_a_global_runs_subset_keeps_the_q_values_of_its_own_tickers(global_run):
    family = f"global run {global_run['run'].name} (3 tests)"
    for arguments in (["--run", str(global_run["run"])], ["--run", str(global_run["run"]), "-t", "AAA,BBB"],
                      ["-t", "AAA,BBB"]):  # the last: each ticker's newest run, here the global one
        rows = rows_of(CliRunner().invoke(app, ["predict", *arguments, "--runs-dir", str(global_run["runs_dir"]),
                                                "--data-dir", str(global_run["data_dir"]), "--json"]))
        assert rows["AAA"]["bh_qvalue"] == 0.06 and rows["AAA"]["verdict"] == "no skill shown"
        assert rows["BBB"]["bh_qvalue"] == 0.6
        assert {row["family"] for row in rows.values()} == {family}


def test_an_unseen_tickers_q_value_is_its_out_of_universe_evaluations(global_run, tmp_path):
    data_dir = write_caches(tmp_path / "data", {"AAA": build_prices(260, seed=0), "NEW": build_prices(260, seed=7)})
    evaluate(global_run["run"], data_dir, tickers=["NEW"])
    result = CliRunner().invoke(app, ["predict", "--run", str(global_run["run"]), "-t", "AAA,NEW", "--data-dir",
                                      str(data_dir), "--json"])
    rows = rows_of(result)
    summary = json.loads((global_run["run"] / "out_of_universe" / "summary.json").read_text())
    assert rows["NEW"]["bh_qvalue"] == summary["rows"][0]["bh_qvalue"] is not None
    assert rows["NEW"]["family"] == f"out-of-universe evaluation of global run {global_run['run'].name} (1 test)"
    assert rows["AAA"]["family"] == f"global run {global_run['run'].name} (3 tests)"
    assert json.loads(result.stdout)["families"] == {rows["AAA"]["family"]: 3, rows["NEW"]["family"]: 1}
    assert "(Benjamini–Hochberg within each row's family)" in json.loads(result.stdout)["advice"]



@pytest.fixture
def unseen(global_run, tmp_path: Path) -> dict[str, Any]:
    """A copy of the global run (its id still the run's), never evaluated out of universe, and a data dir of three
    tickers it never saw."""
    run = tmp_path / "run"
    shutil.copytree(global_run["run"], run, ignore=shutil.ignore_patterns("out_of_universe"))
    data_dir = write_caches(tmp_path / "data", {name: build_prices(260, seed=seed)
                                                for seed, name in enumerate(["NX", "NY", "NZ"], start=20)})
    return {"run": run, "data_dir": data_dir, "run_id": global_run["run"].name}


def evaluate_unseen(folders: dict[str, Any], tickers: str):
    return CliRunner().invoke(app, ["evaluate", "--run", str(folders["run"]), "-t", tickers, "--data-dir",
                                    str(folders["data_dir"]), "--json"])


def test_evaluating_fewer_unseen_tickers_keeps_every_one_evaluated_before_in_the_family(unseen):
    three = evaluate_unseen(unseen, "NX,NY,NZ")
    assert three.exit_code == 0, three.output
    earlier = {row["ticker"]: row for row in json.loads(three.stdout)["per_ticker"]["rows"]}
    one = evaluate_unseen(unseen, "NX")
    assert one.exit_code == 0, one.output
    report = json.loads(one.stdout)
    per_ticker = report["per_ticker"]
    kind = f"out-of-universe evaluation of global run {unseen['run_id']}"
    assert per_ticker["family"] == {"kind": kind, "size": 3} and per_ticker["earlier"] == ["NY", "NZ"]
    assert report["test"]["tickers"] == 1  # the cross-section: the panel scored now
    assert f"(Benjamini–Hochberg over the {kind} (3 tests))" in per_ticker["verdict"]
    assert "pooled over the 1 ticker evaluated now" in per_ticker["verdict"]
    rows = {row["ticker"]: row for row in per_ticker["rows"]}
    # NX's new evaluation replaces its own earlier row; NY and NZ keep theirs, and all three are one family.
    pvalues = [rows["NX"]["dm_pvalue"], earlier["NY"]["dm_pvalue"], earlier["NZ"]["dm_pvalue"]]
    assert rows["NX"]["bh_qvalue"] == pytest.approx(bh_qvalues(pvalues)[0], abs=1e-12)
    assert rows["NY"]["dm_pvalue"] == earlier["NY"]["dm_pvalue"]
    summary = json.loads((unseen["run"] / "out_of_universe" / "summary.json").read_text())
    assert [row["ticker"] for row in summary["rows"]] == ["NX", "NY", "NZ"] and summary["family"]["size"] == 3
    screened = CliRunner().invoke(app, ["predict", "--run", str(unseen["run"]), "-t", "NX", "--data-dir",
                                        str(unseen["data_dir"]), "--json"])
    row = rows_of(screened)["NX"]
    assert row["bh_qvalue"] == rows["NX"]["bh_qvalue"] and (row["family"], row["family_size"]) == (
        f"{kind} (3 tests)", 3)


def test_a_damaged_earlier_out_of_universe_summary_is_named_and_not_trusted(unseen):
    assert evaluate_unseen(unseen, "NX,NY,NZ").exit_code == 0
    summary = unseen["run"] / "out_of_universe" / "summary.json"
    document = json.loads(summary.read_text())
    document["rows"][1]["dm_pvalue"] = 2.0  # no p-value: the whole summary is damaged
    summary.write_text(json.dumps(document))
    result = evaluate_unseen(unseen, "NX")
    assert result.exit_code == 0, result.output
    assert "earlier out-of-universe evaluations cannot be read" in result.stderr and str(summary) in result.stderr
    assert "Traceback" not in result.output
    per_ticker = json.loads(result.stdout)["per_ticker"]
    assert per_ticker["family"]["size"] == 1 and list(per_ticker["family"]["unreadable"]) == [str(summary)]
    assert [row["ticker"] for row in per_ticker["rows"]] == ["NX"] and per_ticker["earlier"] == []
    assert [row["ticker"] for row in json.loads(summary.read_text())["rows"]] == ["NX"]

# --- evaluate -t A,B and compare --context: separate runs, judged in the runs dir's family -----------------------


def test_evaluating_two_tickers_judges_them_among_every_tickers_newest_run(tmp_path, clean_workdir):
    folders = {"runs_dir": tmp_path / "runs", "data_dir": write_caches(tmp_path / "data", {})}
    for seed, ticker in enumerate("BCDEF"):
        add_ticker(folders, ticker, seed, scores=SCORES[ticker])
    # A real tiny run, which evaluate scores again; B's hand-made run cannot be evaluated (its row fails, exit 1),
    # and its recorded test still counts. Over the two listed alone, A's q would be its own p.
    train_run(load_config(None, TINY_OVERRIDES), "A", build_prices(260), folders["runs_dir"])
    result = CliRunner().invoke(app, ["evaluate", "-t", "A,B", "--folds", "0", "--runs-dir", str(folders["runs_dir"]),
                                      "--data-dir", str(folders["data_dir"]), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["family"] == {"kind": "runs dir", "size": len(SCORES)}
    assert "(Benjamini–Hochberg over the runs dir (6 tests))" in report["verdict"]
    row, failed = report["rows"]
    assert failed["status"] == "failed"
    # The evaluation stands for A's recorded scores; B…F count as their metrics.json records them.
    expected = bh_qvalues([row["dm_pvalue"], *(SCORES[ticker][1] for ticker in "BCDEF")])[0]
    assert row["bh_qvalue"] == pytest.approx(expected, abs=1e-12) and expected > row["dm_pvalue"]


def recorded_comparison(runs_dir: Path, ticker: str, run_id: str, pvalue: float | None, ratio: float = 1.0) -> Path:
    folder = runs_dir / ticker / f"compare-{run_id}"
    folder.mkdir(parents=True)
    versus = None if pvalue is None else {"rmse_ratio_all": ratio, "dm_all": {"pvalue": pvalue}}
    (folder / "compare.json").write_text(json.dumps({"ticker": ticker, "with_vs_without": versus}))
    return folder


def test_a_context_comparison_is_judged_among_every_tickers_newest_in_the_runs_dir(tmp_path):
    runs = tmp_path / "runs"
    for number in range(8):  # eight tickers compared earlier, no effect found
        recorded_comparison(runs, f"N{number}", "20260101T000000000Z", 0.9)
    recorded_comparison(runs, "N0", "20250101T000000000Z", 1e-9, 0.5)  # N0's older comparison: not counted
    recorded_comparison(runs, "M", "20260101T000000000Z", None)  # a model-type comparison: no such test
    (recorded_comparison(runs, "BAD", "20260101T000000000Z", 0.9) / "compare.json").write_text('{"ticker": 1}')
    folder = recorded_comparison(runs, "A", "20260301T000000000Z", 0.01, 0.9)  # the one this command made
    report = {"ticker": "A", "with_vs_without": {"rmse_ratio_all": 0.9, "dm_all": {"pvalue": 0.01}}}
    verdict = context_set([Comparison(folder, report, False, None)])
    # 0.01 alone would be "helped" (q = 0.01); among nine comparisons q = 0.01 * 9 = 0.09.
    assert verdict["tickers"][0]["qvalue"] == pytest.approx(0.09) and verdict["helped"] == 0
    assert verdict["family"]["kind"] == "context comparisons in the runs dir" and verdict["family"]["size"] == 9
    assert list(verdict["family"]["unreadable"]) == [str(runs / "BAD" / "compare-20260101T000000000Z")]
    assert "over the context comparisons in the runs dir (9 tests)" in verdict["verdict"]
