"""The set statistics: many tickers' tests judged honestly as one family.

Among 391 tickers about 20 beat the random walk at p < 0.05 by luck alone, so each ticker's Diebold–Mariano
p-value gets a Benjamini–Hochberg q-value (`bh_qvalues`), and the set as a whole is tested by one pooled
Diebold–Mariano test on the day-by-day cross-sectional mean of the tickers' loss differentials (`pooled_dm`):
the tickers share their days, so they are never counted as independent trials. `set_report` gives the rows
and the verdict, `write_summary` the files a set keeps (summary.csv, summary.json, universe.png). A universe
of local runs, a global run's tickers, the screener and the with-vs-without comparisons all judge here.

A q-value is only as honest as its family: a `Family` is every test of one kind that was made (a global run's
own tickers; every ticker a global run was evaluated on out of universe; every ticker's newest own run in a runs
dir), never the tickers a command happens to list, so listing fewer tickers cannot lower a q-value
(`widened_set` judges a new set among the earlier tests of its kind).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import false_discovery_control

from lstm_forecast import plots
from lstm_forecast.bundle import MAX_TICKERS
from lstm_forecast.files import atomic_write_text, json_text
from lstm_forecast.metrics import diebold_mariano, p_phrase

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
UNIVERSE_PLOT = "universe.png"
REPORT_FILE = "report.html"
Q_THRESHOLD = 0.05
# The tickers whose leave-one-out pooled test is shown beside the verdict: the largest shares of the pooled
# differential (any ticker whose removal changes the verdict is shown too, however many).
SHOWN_DRIVERS = 3
SUMMARY_COLUMNS = (
    "ticker", "status", "run_dir", "rows", "test_windows", "rmse_ratio_h1", "rmse_ratio_all", "dm_pvalue", "bh_qvalue",
    "direction_accuracy", "binomial_pvalue", "lag_copy", "seconds", "error",
)
Ratio = Annotated[float, Field(ge=0, le=1e6)] | None  # an RMSE ratio; beyond a million-fold is damage
Probability = Annotated[float, Field(ge=0, le=1)] | None


class SummaryRow(BaseModel):
    """A summary row (SUMMARY_COLUMNS) as this code writes it: in results.jsonl, summary.json and a global run's
    metrics.json `per_ticker`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    ticker: Annotated[str, Field(max_length=64)]
    status: Literal["ok", "failed", "interrupted"]
    run_dir: Annotated[str, Field(max_length=4096)] | None
    rows: Annotated[int, Field(ge=1, le=10_000_000)] | None
    test_windows: Annotated[int, Field(ge=1, le=10_000_000)] | None = None  # absent in rows written before it
    rmse_ratio_h1: Ratio
    rmse_ratio_all: Ratio
    dm_pvalue: Probability
    bh_qvalue: Probability
    direction_accuracy: Probability
    binomial_pvalue: Probability
    lag_copy: Literal["yes", "no"] | None
    seconds: Annotated[float, Field(ge=0, le=1e9)]
    error: Annotated[str, Field(max_length=4000)] | None


class SetSummary(BaseModel):
    """What a set report (`set_report`) is read back for: its rows, each ticker once. summary.json is one; so is
    a global run's metrics.json `per_ticker`. The verdict and counts are shown as written, never recomputed."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=True)
    rows: Annotated[list[SummaryRow], Field(max_length=MAX_TICKERS)]

    @model_validator(mode="after")
    def _check(self) -> SetSummary:
        if len({row.ticker for row in self.rows}) != len(self.rows):
            raise ValueError("expected each ticker's row once")
        return self

    def tests(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        """Each ticker's test RMSE ratio, DM p-value and q-value as the report judged them."""
        return {row.ticker: (row.rmse_ratio_all, row.dm_pvalue, row.bh_qvalue) for row in self.rows}


def bh_qvalues(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg q-values of `pvalues`, in their order (none for none)."""
    if not pvalues:
        return []
    return [float(value) for value in false_discovery_control(list(pvalues), method="bh")]


class TickerTest(NamedTuple):
    """A ticker's test against the random walk: its RMSE ratio, DM p-value and q-value in its family (None: unread
    or untested)."""

    rmse_ratio: float | None
    pvalue: float | None
    qvalue: float | None


UNTESTED = TickerTest(None, None, None)


@dataclass(frozen=True)
class Family:
    """The tests Benjamini–Hochberg judged together: what they are (`kind`, e.g. "runs dir"), each ticker's test,
    and how many tests carry a p-value (the n of the correction)."""

    kind: str
    tests: dict[str, TickerTest]
    size: int
    damaged: Mapping[str, str] = field(default_factory=dict)  # ticker -> why its recorded test cannot be read

    @property
    def label(self) -> str:
        """"runs dir (312 tests)": the family as the screener states it."""
        return f"{self.kind} ({self.size} test{'' if self.size == 1 else 's'})"

    def test_of(self, ticker: str) -> TickerTest:
        return self.tests.get(ticker, UNTESTED)


def adjusted_family(kind: str, scores: Mapping[str, tuple[float | None, float | None]],
                    damaged: Mapping[str, str] | None = None) -> Family:
    """The family of `scores` (ticker -> test RMSE ratio, DM p-value), each p-value given its Benjamini–Hochberg
    q-value over every p-value there; `damaged` names the tickers whose scores could not be read, and why."""
    tested = [ticker for ticker, (_, pvalue) in scores.items() if pvalue is not None]
    qvalues = dict(zip(tested, bh_qvalues([scores[ticker][1] for ticker in tested]), strict=True))
    tests = {ticker: TickerTest(ratio, pvalue, qvalues.get(ticker)) for ticker, (ratio, pvalue) in scores.items()}
    return Family(kind, tests, len(tested), dict(damaged or {}))


def recorded_family(kind: str, tests: Mapping[str, tuple[float | None, float | None, float | None]],
                    damaged: Mapping[str, str] | None = None) -> Family:
    """The family a set report recorded (ticker -> test RMSE ratio, DM p-value, q-value, as written over the run's
    own tickers): its q-values as they are; a q-value without its p-value reads as none, though it counts."""
    return Family(kind, {ticker: TickerTest(ratio, pvalue, qvalue if pvalue is not None else None)
                         for ticker, (ratio, pvalue, qvalue) in tests.items()},
                  sum(qvalue is not None for _, _, qvalue in tests.values()), dict(damaged or {}))


def scored_record(
    ticker: str, status: str, seconds: float, error: str | None, run_dir: Path | None = None,
    rows: int | None = None, test: dict[str, Any] | None = None, echoes: bool | None = None,
    anchors: list[str] | None = None, differential: list[float] | None = None, horizon: int | None = None,
    fingerprint: str | None = None, notes: list[str] | None = None,
) -> dict[str, Any]:
    """A ticker's summary row (SUMMARY_COLUMNS) from its test scores block, with what the pooled test needs
    and the notes on what its data cost (history cut to the context's range, windows dropped)."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(ticker=ticker, status=status, seconds=round(seconds, 2), error=error)
    if test is not None:
        scores, vs_naive = test["metrics"]["model"], test["vs_naive"]
        row.update(
            run_dir=str(run_dir), rows=rows, test_windows=test["windows"],
            rmse_ratio_h1=scores["h1"]["rmse_ratio"], rmse_ratio_all=scores["all"]["rmse_ratio"],
            dm_pvalue=vs_naive["dm_all"]["pvalue"], direction_accuracy=vs_naive["direction_h1"]["accuracy"],
            binomial_pvalue=vs_naive["direction_h1"]["binomial_pvalue"], lag_copy="yes" if echoes else "no",
        )
    return {"row": row, "anchors": anchors or [], "differential": differential or [], "horizon": horizon,
            "fingerprint": fingerprint, "notes": notes or []}


def set_report(
    records: list[dict[str, Any]], tickers: list[str], family: Family | None = None
) -> tuple[list[dict[str, Any]], dict]:
    """The summary rows (`scored_record`s) with their Benjamini–Hochberg q-values, and the set's verdict with the
    pooled test. The family is every ticker of `records` that was tested (a set made together: a universe, a
    global run), or `family` when given: tickers' separate runs, each q-value its ticker's in that family (the
    runs dir's), which the tickers listed cannot shrink."""
    scored = [record for record in records if record["row"]["status"] == "ok"]
    pooled = pooled_dm(scored)
    joint = {
        "pooled_dm": pooled,
        "drivers": verdict_drivers(scored, pooled),
        # Per ticker, what its data cost (results.jsonl lines written before notes have none).
        "notes": {record["row"]["ticker"]: record["notes"] for record in records if record.get("notes")},
        "method": "per-ticker DM p-values (test period, all horizon days) adjusted by Benjamini-Hochberg; pooled "
                  "DM on the daily cross-sectional mean of the tickers' squared log-price error differentials "
                  "(model minus naive), HAC over the horizon, since the tickers share their days",
    }
    rows = [dict(record["row"]) for record in records]
    return rows, judged_set(rows, tickers, joint, family)


def widened_set(
    report: dict[str, Any], earlier: Sequence[dict[str, Any]], family: Family, pooled_over: str,
) -> dict[str, Any]:
    """A set report (`set_report`) widened to rows of the same kind of test made before (`earlier`, none of its
    tickers among the report's): every row's q-value, the counts and the verdict over `family`, which holds them
    all; the pooled test and its drivers stay the report's own (`pooled_over` says whose: the earlier rows keep
    no loss differentials)."""
    rows = [*report["rows"], *(dict(row) for row in earlier)]
    return judged_set(rows, [row["ticker"] for row in rows], report, family, pooled_over)


def judged_set(
    rows: list[dict[str, Any]], tickers: list[str], joint: dict[str, Any], family: Family | None = None,
    pooled_over: str = "the set",
) -> dict[str, Any]:
    """The set report of `rows`, given their q-values here (in place), and of `joint`, what the set's records
    give as one (its pooled test, drivers, notes and method): the counts, the verdict and the family, over the
    rows' own tests or `family`."""
    tested = [row for row in rows if row["status"] == "ok" and row["dm_pvalue"] is not None]
    qvalues = (bh_qvalues([row["dm_pvalue"] for row in tested]) if family is None
               else [family.test_of(row["ticker"]).qvalue for row in tested])
    for row, qvalue in zip(tested, qvalues, strict=True):
        row["bh_qvalue"] = qvalue
    tested = [row for row in tested if row["bh_qvalue"] is not None]
    ratios = sorted(row["rmse_ratio_all"] for row in rows if row["status"] == "ok" and row["rmse_ratio_all"])
    better = [row for row in tested if row["bh_qvalue"] < Q_THRESHOLD and row["rmse_ratio_all"] < 1]
    worse = [row for row in tested if row["bh_qvalue"] < Q_THRESHOLD and row["rmse_ratio_all"] > 1]
    pooled = joint["pooled_dm"]
    return {
        "tickers": len(tickers),
        "trained": sum(row["status"] == "ok" for row in rows),
        "failed": [{"ticker": row["ticker"], "error": row["error"]} for row in rows if row["status"] == "failed"],
        "not_run": [ticker for ticker in tickers if ticker not in {row["ticker"] for row in rows}],
        "better_at_q05": len(better),
        "worse_at_q05": len(worse),
        "median_rmse_ratio": _median(ratios),
        "pooled_dm": pooled,
        "verdict": set_verdict(len(tested), len(better), len(worse), pooled, family.label if family else None,
                               pooled_over),
        # The tests each q-value was corrected among: this set's, or the family given, with its size (and the
        # earlier tests that could not be read, left out of it).
        "family": {"kind": family.kind if family else "this set", "size": family.size if family else len(tested),
                   **({"unreadable": dict(family.damaged)} if family and family.damaged else {})},
        "drivers": joint["drivers"],
        "notes": joint["notes"],
        "method": joint["method"],
        "rows": rows,
    }


def pooled_dm(records: list[dict[str, Any]]) -> dict[str, Any]:
    """DM test of the day-by-day mean (across tickers) of model-minus-naive loss differentials against zero."""
    series = [pd.Series(record["differential"], index=pd.to_datetime(record["anchors"]))
              for record in records if record["differential"]]
    if not series:
        return {"days": 0, "mean_differential": None, "statistic": None, "pvalue": None}
    daily = pd.concat(series, axis=1, sort=True).mean(axis=1, skipna=True).to_numpy()
    horizon = max(record["horizon"] or 1 for record in records)
    statistic, pvalue = diebold_mariano(daily, np.zeros_like(daily), horizon=horizon)
    return {"days": int(daily.size), "mean_differential": float(daily.mean()), "statistic": statistic,
            "pvalue": pvalue}


def pooled_side(pooled: dict[str, Any]) -> str:
    """The pooled test's answer in one word: "better" or "worse" than the random walk at p < Q_THRESHOLD, else
    "indistinguishable" (also when it could not be computed)."""
    pvalue, mean = pooled["pvalue"], pooled["mean_differential"]
    if pvalue is None or pvalue >= Q_THRESHOLD:
        return "indistinguishable"
    return "better" if mean < 0 else "worse"


def verdict_drivers(records: list[dict[str, Any]], pooled: dict[str, Any] | None = None) -> dict[str, Any]:
    """Which tickers drive the pooled test, so that one broken series cannot decide a set unseen: each ticker's
    share of the pooled mean loss differential (the shares sum to 1; a negative share pulls the other way) and
    the pooled test without it (leave-one-out), for the SHOWN_DRIVERS largest shares and every ticker whose
    removal changes the verdict ("flips"); `line` says it in words. `pooled`: the set's `pooled_dm`, when made."""
    series = {record["row"]["ticker"]: pd.Series(record["differential"], index=pd.to_datetime(record["anchors"]))
              for record in records if record["differential"]}
    if len(series) < 2:
        return {"side": None, "drivers": [], "flips": [], "line": None}
    table = pd.concat(series, axis=1, sort=True)  # days × tickers, NaN where a ticker has no window that day
    values, present = table.to_numpy(), table.notna().to_numpy()
    per_day, day_sums = present.sum(axis=1), np.nansum(values, axis=1)
    daily = day_sums / per_day
    # The pooled mean is the mean over days of the daily means: a ticker's part of it is its differential over
    # that day's count of tickers, summed over the days and divided by their number.
    contributions = np.nansum(values / per_day[:, None], axis=0) / len(daily)
    horizon = max(record["horizon"] or 1 for record in records)
    total = float(daily.mean())
    side = pooled_side(pooled or pooled_dm(records))
    entries = []
    for column in np.argsort(-np.abs(contributions), kind="stable"):  # the largest shares first
        others = per_day - present[:, column]
        kept = others > 0  # the days some other ticker has
        without = (day_sums - np.nan_to_num(values[:, column]))[kept] / others[kept]
        statistic, pvalue = diebold_mariano(without, np.zeros_like(without), horizon=horizon) if kept.any() else (
            None, None)
        mean = float(without.mean()) if kept.any() else None
        entries.append({"ticker": str(table.columns[column]),
                        "share": float(contributions[column] / total) if total else None,
                        "without": {"side": pooled_side({"pvalue": pvalue, "mean_differential": mean}),
                                    "pvalue": pvalue, "statistic": statistic, "mean_differential": mean}})
    flips = [entry["ticker"] for entry in entries if entry["without"]["side"] != side]
    shown = [entry for rank, entry in enumerate(entries) if rank < SHOWN_DRIVERS or entry["ticker"] in flips]
    return {"side": side, "drivers": shown, "flips": flips, "line": _drivers_line(shown, flips)}


def _drivers_line(shown: list[dict[str, Any]], flips: list[str]) -> str:
    """"Driven by: BHF (without it: better, p = 0.03)", or the largest share when no one ticker decides."""
    def without(entry: dict[str, Any]) -> str:
        share = "" if entry["share"] is None else f"{entry['share']:.0%} of the pooled differential; "
        return f"{share}without it: {entry['without']['side']}, {p_phrase(entry['without']['pvalue'])}"

    if flips:
        named = [entry for entry in shown if entry["ticker"] in flips]
        return "Driven by: " + "; ".join(f"{entry['ticker']} ({without(entry)})" for entry in named)
    top = shown[0]
    return f"No single ticker decides the verdict; the largest share is {top['ticker']}'s ({without(top)})"


def set_verdict(tested: int, better: int, worse: int, pooled: dict[str, Any], family: str | None = None,
                pooled_over: str = "the set") -> str:
    """The set in plain words; `family` names the tests the q-values were corrected among when not the set's own,
    `pooled_over` the tickers the pooled test was made on."""
    among = f" over the {family}" if family else ""
    counts = (f"{better} of {tested} tickers beat the random walk at q < {Q_THRESHOLD:g} (Benjamini–Hochberg"
              f"{among}), {worse} did worse")
    pvalue = pooled["pvalue"]
    if pvalue is None:
        return f"{counts}; the pooled test could not be computed"
    if pvalue < Q_THRESHOLD:
        return (f"{counts}; pooled over {pooled_over} the model is {pooled_side(pooled)} than the random walk "
                f"({p_phrase(pvalue)})")
    return (f"{counts}; pooled over {pooled_over} the model is not distinguishable from the random walk "
            f"({p_phrase(pvalue)})")


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def write_summary(
    folder: Path, rows: list[dict[str, Any]], report: dict[str, Any], kept: Sequence[str] = (),
    shown_in: Path | None = None, page: Callable[[dict[str, Any]], str] | None = None,
) -> None:
    """summary.csv, universe.png, report.html (`page(report)`, when given) and summary.json, each written
    atomically (JSON last: it says the set is whole); summary.json lists them and the files named in `kept` that
    the folder holds (a universe's results.jsonl), under `shown_in` when the files are staged for it."""
    listed = shown_in or folder
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / SUMMARY_CSV, buffer.getvalue())
    scored = [row for row in rows if row["rmse_ratio_all"] is not None and math.isfinite(row["rmse_ratio_all"])]
    if scored:  # nothing scored (every ticker failed, or Ctrl-C before any finished): no empty chart
        plots.universe_plot(
            [row["ticker"] for row in scored], [row["rmse_ratio_all"] for row in scored],
            [row["bh_qvalue"] for row in scored], Q_THRESHOLD, f"{len(scored)} tickers · test RMSE / naive",
            folder / UNIVERSE_PLOT,
        )
    names = (SUMMARY_CSV, SUMMARY_JSON, *([UNIVERSE_PLOT] if scored else []),
             *([REPORT_FILE] if page is not None else []),
             *(name for name in kept if (folder / name).exists()))
    report["files"] = {name: str(listed / name) for name in names}
    report["folder"] = str(listed)
    if page is not None:
        atomic_write_text(folder / REPORT_FILE, page(report))
    atomic_write_text(folder / SUMMARY_JSON, json_text(report))
