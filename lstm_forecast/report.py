"""Rich tables for the terminal: the model's numbers always printed beside the naive forecast's."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from lstm_forecast.context_effect import CONTEXT_LABELS, CONTEXT_RUNS
from lstm_forecast.metrics import FORECASTS, format_pvalue, judgement, p_phrase
from lstm_forecast.tables import FitTable

METRIC_ROWS = (
    ("rmse", "RMSE", "{:.3f}"),
    ("mae", "MAE", "{:.3f}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("mase", "MASE", "{:.3f}"),
    ("directional_accuracy", "direction", "{:.1%}"),
    ("rmse_ratio", "RMSE/naive", "{:.3f}"),
)


def fmt(value: Any, pattern: str = "{:.3f}") -> str:
    """A number for a table cell; None (undefined, e.g. naive's direction) shows as a dash, and a value that rounds
    to zero never as "-0.000" (the sign of a rounded zero says nothing)."""
    if value is None:
        return "—"
    text = pattern.format(value)
    return pattern.format(0.0) if text.lstrip("-+").strip("0.%,") == "" else text


def tickers_a_day(per_day: dict[str, Any]) -> str:
    """How many tickers each test day had: "30 tickers", or "28–30 tickers" when it varied."""
    low, high = fmt(per_day["min"], "{:.0f}"), fmt(per_day["max"], "{:.0f}")
    return f"{high} tickers" if low == high else f"{low}–{high} tickers"


def report_table(title: str, first: str, numbers: Iterable[str], first_no_wrap: bool = False,
                 optional: Iterable[str] = ()) -> FitTable:
    """A table as the reports print one: its title on the left, bold headers, a first column of labels and then
    columns of numbers, right-aligned and never cut (tables.FitTable); `optional` names the number columns a
    narrow terminal may leave out, first to go first."""
    table = FitTable(title=title, optional=tuple(optional))
    table.add_column(first, no_wrap=first_no_wrap)
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True)
    return table


# --- evaluate and compare -----------------------------------------------------------------------

def scores_table(title: str, scores: dict[str, Any], horizon: int, kind: str) -> Table:
    """The model beside naive and drift × RMSE, MAE, MAPE, MASE, direction and RMSE ratio,
    over all `horizon` days and on day 1."""
    table = report_table(title, "forecast", [label for _, label, _ in METRIC_ROWS], first_no_wrap=True,
                         optional=("MAPE %",))
    days = f"days 1–{horizon}" if horizon > 1 else "day 1"
    steps = [("all", days), ("h1", "day 1")] if horizon > 1 else [("all", days)]
    for step, step_label in steps:
        for name in FORECASTS:
            label = kind.upper() if name == "model" else name
            row = scores[name][step]
            table.add_row(f"{label}, {step_label}", *(fmt(row[key], pattern) for key, _, pattern in METRIC_ROWS))
        table.add_section()
    return table


def tests_line(vs_naive: dict[str, Any]) -> str:
    """The Diebold–Mariano p-values and the binomial test of the day-1 direction."""
    direction = vs_naive["direction_h1"]
    dm_all, dm_h1 = (p_phrase(vs_naive[key]["pvalue"]) for key in ("dm_all", "dm_h1"))
    parts = [f"DM vs naive: {dm_all} (all days), {dm_h1} (day 1)"]
    if direction["accuracy"] is None:
        parts.append("direction: the model never calls a move")
    else:
        parts.append(
            f"day-1 direction {direction['hits']}/{direction['trials']} right, binomial "
            f"{p_phrase(direction['binomial_pvalue'])} (always saying up: {fmt(direction['up_share'], '{:.1%}')})"
        )
    return " · ".join(parts)


def coverage_table(coverage: list[dict[str, Any]], horizon: int) -> Table:
    """Share of test prices inside the bundle's conformal intervals, per level and per day."""
    table = report_table("Prediction intervals on the test period (calibrated on validation)", "interval",
                         [f"covered, days 1–{horizon}" if horizon > 1 else "covered",
                          *(f"day {day}" for day in range(1, horizon + 1))],
                         first_no_wrap=True, optional=[f"day {day}" for day in range(horizon, 1, -1)])
    for row in coverage:
        per_step = row["per_step"] or [None] * horizon
        table.add_row(f"{row['level']:g}%", fmt(row["all"], "{:.1%}"), *(fmt(value, "{:.1%}") for value in per_step))
    return table


def backtest_table(backtest: dict[str, Any]) -> Table:
    """One row per walk-forward fold and the pooled row: RMSE beside naive's, their ratio, direction, DM p.

    Drift's numbers per fold are in backtest.csv and evaluation.json; at 80 columns the anchors wrap after
    their first date and the model column (refit or reused) is left out.
    """
    table = FitTable(
        title=f"Walk-forward backtest: {backtest['completed']} of {backtest['folds']} folds, expanding window",
        optional=("model",),
    )
    table.add_column("fold", no_wrap=True)
    table.add_column("test anchors", min_width=len("2020-01-02 …"))  # wraps after the first date, never inside it
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("model")
    for column in ("RMSE", "naive", "ratio", "dir.", "DM p"):
        table.add_column(column, justify="right", no_wrap=True)
    rows = [(str(fold["fold"]), fold) for fold in backtest["fold_results"]]
    if backtest["pooled"] is not None:
        rows.append(("pooled", backtest["pooled"]))
    for number, (label, row) in enumerate(rows):
        if label == "pooled":
            table.add_section()
        scores = {name: row["metrics"][name]["all"] for name in ("model", "naive")}
        source = row.get("model_source", "")
        if source == "retrained":
            source = f"refit, {row['epochs_run']} ep."
        table.add_row(
            label,
            f"{row['first_anchor']} … {row['last_anchor']}",
            str(row["windows"]),
            source if number < len(backtest["fold_results"]) else "",
            fmt(scores["model"]["rmse"]),
            fmt(scores["naive"]["rmse"]),
            fmt(scores["model"]["rmse_ratio"]),
            fmt(scores["model"]["directional_accuracy"], "{:.1%}"),
            format_pvalue(row["vs_naive"]["dm_all"]["pvalue"]),
        )
    return table


def trading_table(trading: dict[str, Any]) -> Table:
    """The long/flat diagnostic beside buy-and-hold."""
    table = report_table(
        f"Trading diagnostic, not advice: long/flat on day-1 calls, {trading['cost_bps']:g} bps per change, "
        f"{trading['days']} days", "strategy", ("return", "Sharpe (ann.)", "max drawdown", "trades", "days in market"),
    )
    for label, key in (("long/flat on the model", "strategy"), ("buy and hold", "buy_and_hold")):
        result = trading[key]
        table.add_row(
            label,
            fmt(result["cumulative_return"], "{:+.1%}"),
            fmt(result["annualised_sharpe"], "{:.2f}"),
            fmt(-abs(result["max_drawdown"]), "{:.1%}"),  # a fall: negative, as in the long–short table
            str(result["trades"]),
            str(result["days_in_market"]),
        )
    return table


def inputs_lines(inputs: dict[str, Any] | None) -> list[str]:
    """The context and calendar inputs of a run, when it has any (nothing for a run on its own prices)."""
    if not inputs or not (inputs["context"] or inputs["calendar_features"]):
        return []
    parts = [", ".join(inputs["features"])]
    if inputs["context"]:
        align = {"same_day": "same day", "previous_session": "previous session"}
        parts.append("context " + ", ".join(f"{item['ticker']} {item['feature']} ({align[item['align']]})"
                                            for item in inputs["context"]))
    if inputs["calendar_features"]:
        parts.append("calendar " + ", ".join(inputs["calendar_features"]))
    lines = [escape("Inputs: " + "; ".join(parts) + ".")]
    if inputs["context_data"]:
        recorded = ", ".join(f"{item['ticker']} {item['first_date']} … {item['last_date']} ({item['rows']} rows)"
                             for item in inputs["context_data"])
        dropped = sum(inputs["dropped_windows"].values())
        lines.append(escape(f"Context rows recorded in the bundle: {recorded}; gaps filled for at most "
                            f"{inputs['context_max_gap']} sessions, {dropped} windows dropped for longer ones."))
    return lines


def with_vs_without_lines(effect: dict[str, Any] | None, horizon: int) -> list[str]:
    """evaluate --without-context: the run against the same model trained without its context inputs."""
    if not effect:
        return []
    return [
        f"{with_vs_without_line(effect, horizon)} ({effect['windows']} common test windows; the same rows, split, "
        f"config and seed retrained without the context inputs, {effect['training']['epochs_run']} epochs).",
        f"Without context: {escape(effect['without']['verdict'])}.",
        f"[bold]With vs without: {escape(effect['verdict'])}.[/]",
    ]


def with_vs_without_line(versus: dict[str, Any], horizon: int) -> str:
    """The RMSE ratios with/without context and the Diebold–Mariano tests between the two runs."""
    days = f"days 1–{horizon}" if horizon > 1 else "day 1"
    ratios = f"{fmt(versus['rmse_ratio_all'])} ({days})"
    tests = f"{p_phrase(versus['dm_all']['pvalue'])} ({days})"
    if horizon > 1:
        ratios += f", {fmt(versus['rmse_ratio_h1'])} (day 1)"
        tests += f", {p_phrase(versus['dm_h1']['pvalue'])} (day 1)"
    return f"With vs without context: RMSE ratio {ratios}; Diebold–Mariano {tests}"


def evaluation_report(report: dict[str, Any]) -> list[Table | str]:
    """Everything `evaluate` prints, in reading order (rich tables and markup strings)."""
    test, data, scaler = report["test"], report["data"], report["scaler"]
    kind, horizon = report["model"]["kind"], test["horizon"]
    cache = {
        "matches": "the price cache still matches them",
        "revised": "[yellow]the price cache was revised since training[/]",
        "missing": "[yellow]the price cache is missing[/]",
        "unreadable": "[yellow]the price cache could not be read[/]",
    }[data["cache"]]
    where = "recorded in the bundle" if data["source"] == "bundle" else "from the cache (the bundle has no prices.csv)"
    items: list[Table | str] = [
        f"[bold]{report['ticker']} · {kind.upper()} · run {report['run_id']}[/]",
        f"Data: {data['rows']} rows {where}, {data['first_date']} … {data['last_date']}; {cache}"
        + (f" ({escape(data['note'])})" if data["note"] else ""),  # a note may quote a file's text
        f"Scaler: fitted on the {scaler['days']} training days only ({scaler['first_day']} … {scaler['last_day']}); "
        f"the test period starts {test['first_target_day']}.",
        *inputs_lines(report.get("inputs")),
        scores_table(
            f"Test period (never seen in training): anchors {test['first_anchor']} … {test['last_anchor']}, "
            f"{test['windows']} windows",
            test["metrics"], horizon, kind,
        ),
        tests_line(test["vs_naive"]),
        f"[bold]Verdict: {test['verdict']}.[/]",
    ]
    items += with_vs_without_lines(report.get("with_vs_without"), horizon)
    lag_copy = report["lag_copy"]
    style = "bold red" if lag_copy["echoes_yesterday"] else "bold"
    label = "YES" if lag_copy["echoes_yesterday"] else "no"
    items.append(f"[{style}]Lag copy: {label}[/] — {lag_copy['verdict']}.")
    items.append(coverage_table(report["coverage"], horizon))
    backtest = report["backtest"]
    if backtest is None:
        items.append("Walk-forward backtest: skipped (--folds 0).")
    else:
        items.append(backtest_table(backtest))
        if backtest["pooled"] is not None:
            items.append(f"Walk-forward, pooled: {backtest['pooled']['verdict']}.")
        if backtest["interrupted"]:
            items.append("[yellow]The backtest was interrupted; the folds above are the ones that finished.[/]")
    trading = report["trading"]
    items.append(trading_table(trading))
    in_market = trading["strategy"]["days_in_market"]
    if in_market in (0, trading["days"]):
        action = "a rise every day, so the strategy is buy-and-hold" if in_market else "no rise, so it stayed in cash"
        items.append(f"The model called {action}.")
    items.append(f"[dim]{trading['disclaimer']}[/]")
    names = ", ".join(sorted(path.rsplit("/", 1)[-1] for path in report["files"].values()))
    items.append(f"Wrote {names} to {escape(report['run_dir'])}")
    return items


def compare_report(report: dict[str, Any]) -> list[Table | str]:
    """Everything `compare` prints: one table of each model's test metrics beside naive and drift."""
    test, horizon = report["test"], report["test"]["horizon"]
    days = f"days 1–{horizon}" if horizon > 1 else "day 1"
    table = report_table(
        f"{report['ticker']} test period, {days}: anchors {test['first_anchor']} … {test['last_anchor']}, "
        f"{test['windows']} windows (same data, windows and seed {report['seed']})", "model",
        [*(label for _, label, _ in METRIC_ROWS), "DM p", "epochs (best)"], optional=("MAPE %", "MASE"),
    )
    for run in report["runs"]:
        scores = run["test"]["metrics"]["model"]["all"]
        table.add_row(
            run["model"].upper(),
            *(fmt(scores[key], pattern) for key, _, pattern in METRIC_ROWS),
            format_pvalue(run["test"]["vs_naive"]["dm_all"]["pvalue"]),
            f"{run['epochs_run']} ({run['best_epoch']})",
        )
    table.add_section()
    for name in ("naive", "drift"):  # the same windows for every model: the first run's baselines are theirs
        scores = report["runs"][0]["test"]["metrics"][name]["all"]
        table.add_row(name, *(fmt(scores[key], pattern) for key, _, pattern in METRIC_ROWS), "", "")
    items: list[Table | str] = [table]
    items += [f"{run['test']['verdict']}." for run in report["runs"]]
    if report["interrupted"]:
        items.append(f"[yellow]Interrupted: compared {', '.join(report['completed'])} only.[/]")
    items.append("Wrote:")
    items += [f"  {run['model'].upper()} run bundle: {escape(run['run_dir'])}" for run in report["runs"]]
    items += [f"  {escape(report['files']['compare'])}", f"  {escape(report['files']['curves'])}"]
    return items


def context_report(report: dict[str, Any]) -> list[Table | str]:
    """What `compare --context on,off` prints: the run with context, the one without and naive on the same test
    windows, the Diebold–Mariano test between the two runs and the verdict."""
    test, horizon, runs = report["test"], report["test"]["horizon"], report["runs"]
    days = f"days 1–{horizon}" if horizon > 1 else "day 1"
    # The scores the two runs differ in, to fit 100 columns; compare.json holds every metric.
    shown = [row for row in METRIC_ROWS if row[0] in ("rmse", "mae", "directional_accuracy", "rmse_ratio")]
    if horizon > 1:
        shown.insert(1, ("rmse_h1", "RMSE day 1", "{:.3f}"))
    table = report_table(
        f"{report['ticker']} {report['model'].upper()} with vs without context, test period {days}: anchors "
        f"{test['first_anchor']} … {test['last_anchor']}, {test['windows']} windows (same rows, split and "
        f"seed {report['seed']})", "forecast", [*(label for _, label, _ in shown), "DM p vs naive", "epochs (best)"],
        first_no_wrap=True,
    )

    def cells(scores: dict[str, Any]) -> list[str]:
        row = scores["all"] | {"rmse_h1": scores["h1"]["rmse"]}
        return [fmt(row[key], pattern) for key, _, pattern in shown]

    for name in CONTEXT_RUNS:
        run = runs[name]
        table.add_row(CONTEXT_LABELS[name], *cells(run["test"]["metrics"]["model"]),
                      format_pvalue(run["test"]["vs_naive"]["dm_all"]["pvalue"]),
                      f"{run['epochs_run']} ({run['best_epoch']})")
    table.add_section()
    table.add_row("naive", *cells(runs["on"]["test"]["metrics"]["naive"]), "", "")  # the same windows for both

    versus = report["with_vs_without"]
    items: list[Table | str] = [
        f"Inputs the run without context leaves out: {escape(', '.join(report['inputs']))}",
        table,
        with_vs_without_line(versus, horizon),
        f"[bold]Verdict: {versus['verdict']}.[/]",
    ]
    items += [f"{CONTEXT_LABELS[name]}: {runs[name]['test']['verdict']}." for name in CONTEXT_RUNS]
    dropped = test["windows_without_context"] - test["windows_with_context"]
    if dropped > 0:
        items.append(f"Compared on the {test['windows']} test windows both runs have: the run with context dropped "
                     f"{dropped} for a context gap (data.context_max_gap).")
    items += [f"[dim]{escape(note)}[/]" for note in report["notes"]]
    if report["interrupted"]:
        items.append("[yellow]Interrupted: a run stopped early and was scored at its best epoch so far.[/]")
    items.append("Wrote:")
    items += [f"  run bundle {CONTEXT_LABELS[name]}: {escape(runs[name]['run_dir'])}" for name in CONTEXT_RUNS]
    items += [f"  {escape(report['files']['compare'])}", f"  {escape(report['files']['curves'])}"]
    return items


# --- a universe -------------------------------------------------------------------------------------

SHOWN_ROWS = 30  # a longer universe prints its best and worst tickers; the files hold every row
SHOWN_EACH_END = 10
SHOWN_FAILURES = 10


def universe_report(report: dict[str, Any]) -> list[Table | str]:
    """Everything `train` prints over two or more tickers: the best and worst tickers, the failures, the verdict."""
    scored = sorted((row for row in report["rows"] if row["status"] != "failed" and row["rmse_ratio_all"] is not None),
                    key=lambda row: row["rmse_ratio_all"])
    shown = scored if len(scored) <= SHOWN_ROWS else [*scored[:SHOWN_EACH_END], None, *scored[-SHOWN_EACH_END:]]
    table = FitTable(title=f"{len(scored)} tickers on their test periods, best first; n: test windows, ratio: test "
                           "RMSE / naive's, q: Benjamini–Hochberg, vs naive: at q < 0.05, dir.: day-1 direction right",
                     # Narrow: what the verdict and q already say, or summary.csv has, goes first.
                     optional=("lag copy", "dir.", "ratio d1", "DM p", "n"), whole="summary.csv")
    for column in ("ticker", "n", "ratio d1", "ratio all", "DM p", "q", "vs naive", "dir.", "lag copy", "status"):
        table.add_column(column, justify="left" if column in ("ticker", "vs naive", "status") else "right",
                         no_wrap=True)
    for row in shown:
        if row is None:
            table.add_row(f"… {len(scored) - 2 * SHOWN_EACH_END} more", *[""] * 9)
            continue
        table.add_row(
            escape(row["ticker"]), fmt(row.get("test_windows"), "{:,}"), fmt(row["rmse_ratio_h1"]),
            fmt(row["rmse_ratio_all"]), format_pvalue(row["dm_pvalue"]), format_pvalue(row["bh_qvalue"]),
            judgement(row["bh_qvalue"], row["rmse_ratio_all"]) or "—",
            fmt(row["direction_accuracy"], "{:.1%}"), row["lag_copy"] or "—", row["status"],
        )
    items: list[Table | str] = [table]
    failed = report["failed"]
    if failed:
        items.append(f"[yellow]Not trained: {len(failed)} of {report['tickers']} tickers[/]")
        items += [f"  {escape(item['ticker'])}: {escape(item['error'] or '')}" for item in failed[:SHOWN_FAILURES]]
        if len(failed) > SHOWN_FAILURES:
            items.append(f"  … and {len(failed) - SHOWN_FAILURES} more (summary.csv lists every reason)")
    stopped = [row["ticker"] for row in report["rows"]
               if row["status"] == "interrupted" and row["rmse_ratio_all"] is None]
    if stopped:  # Ctrl-C during their first epoch: nothing of theirs to score
        items.append(f"[yellow]Interrupted before an epoch finished: {escape(', '.join(stopped[:SHOWN_FAILURES]))}"
                     f"{f' and {len(stopped) - SHOWN_FAILURES} more' if len(stopped) > SHOWN_FAILURES else ''}.[/]")
    if report["not_run"]:
        items.append(f"[yellow]Interrupted before {len(report['not_run'])} tickers started.[/]")
    median = report["median_rmse_ratio"]
    items.append(f"Median test RMSE ratio to naive: {fmt(median)}.")
    items.append(f"[bold]Verdict on the set: {escape(report['verdict'])}.[/]")
    if drivers := (report.get("drivers") or {}).get("line"):  # which tickers decide it (older summaries: none)
        items.append(f"[yellow]{escape(drivers)}.[/]" if report["drivers"]["flips"] else f"{escape(drivers)}.")
    written = ", ".join(name for name in report.get("files", {}) if name != "results.jsonl")
    items.append(f"Wrote {written or 'summary.csv, summary.json, universe.png'} to {escape(report['folder'])}")
    return items


# --- fetch over several tickers ---------------------------------------------------------------------


def fetch_table(report: dict[str, Any]) -> list[Table | str]:
    """What `fetch` prints over two or more tickers: each ticker's cache (or why it failed), then the totals."""
    table = FitTable()
    for column in ("ticker", "rows", "first … last", "new", "mode"):  # "mode" holds a failure's reason: it wraps
        table.add_column(column, justify="right" if column in ("rows", "new") else "left",
                         no_wrap=column not in ("first … last", "mode"))
    for row in report["rows"]:
        if row["status"] == "failed":
            table.add_row(escape(row["ticker"]), "—", "—", "—", f"[red]failed:[/] {escape(row['error'])}")
        else:
            table.add_row(escape(row["ticker"]), str(row["rows"]), f"{row['first']} … {row['last']}",
                          str(row["new_rows"]), row["mode"])
    counts = f"{report['new_rows']} new rows"
    if report["failed"]:
        counts += f"; {len(report['failed'])} failed"
    if report["not_fetched"]:
        counts += f"; interrupted before {len(report['not_fetched'])}"
    return [table, f"Fetched {report['fetched']} of {report['tickers']} tickers into {escape(report['data_dir'])}: "
                   f"{counts}."]


# --- the cross-section of a global model ------------------------------------------------------------

# Rows in this order where the report has them (a set of local runs has no linear baseline).
IC_ROWS = (("model", "model"), ("beyond_train_mean", "beyond train mean (partial)"),
           ("beyond_linear", "beyond linear (partial)"), ("linear", "linear (ridge)"), ("train_mean", "train mean"),
           ("reversal", "reversal"))
LONG_SHORT_ROWS = (("model", "model"), ("linear", "linear (ridge)"), ("reversal", "reversal"),
                   ("train_mean", "train mean"), ("market", "market (long only)"))


def _ic_cells(summary: dict[str, Any]) -> list[str]:
    return [
        fmt(summary["mean"], "{:+.4f}"), fmt(summary["std"], "{:.4f}"), fmt(summary["icir"], "{:+.3f}"),
        fmt(summary["positive_share"], "{:.1%}"), fmt(summary["t"], "{:+.2f}"), format_pvalue(summary["pvalue"]),
        str(summary["days"]),
    ]


def _seed_agreement_line(agreement: dict[str, Any]) -> str:
    return (f"Seeds agree: mean daily rank correlation {fmt(agreement['pairwise'], '{:+.3f}')} between each pair of "
            f"the {len(agreement['members'])} members, {fmt(agreement['with_ensemble'], '{:+.3f}')} between each "
            "member and the ensemble (1: they rank alike).")


def _long_short_row(table: Table, label: str, result: dict[str, Any]) -> None:
    sharpe = "—" if result["sharpe"] is None else f"{result['sharpe']:+.2f} ± {result['sharpe_se']:.2f}"
    table.add_row(label, fmt(result["mean_daily"], "{:+.3%}"), sharpe, fmt(result["max_drawdown"], "{:.1%}"),
                  fmt(result["mean_turnover"], "{:.2f}"), str(result["days"]))


def cross_section_report(report: dict[str, Any]) -> list[Table | str]:
    """What the cross-sectional evaluation prints (`CrossSection.to_dict()`): the daily rank IC of the model,
    its partial IC beyond the train mean and the linear baseline, the baselines and each member, and how alike the
    members rank; the long–short diagnostic rebalanced daily and, below it, held N days; the verdict."""
    per_day = report["tickers_per_day"]
    ic_table = report_table(
        f"Daily rank IC over {report['days']} test days, {tickers_a_day(per_day)} a day (t and p: Newey–West)",
        "score",
        ("mean IC", "std", "ICIR", "positive days", "HAC t", "p", "days"),
    )
    for key, label in IC_ROWS:
        if key in report["ic"]:
            ic_table.add_row(label, *_ic_cells(report["ic"][key]))
    if report["members"]:
        ic_table.add_section()
    for member in report["members"]:
        ic_table.add_row(escape(member["label"]), *_ic_cells(member))

    long_short = report["long_short"]
    strategies, held, hold = long_short["strategies"], long_short.get("held") or {}, long_short.get("hold", 1)
    ls_table = report_table(
        f"Long–short diagnostic, not advice: top/bottom {long_short['k']} equal weight, "
        f"{long_short['cost_bps']:g} bps on turnover; rebalanced daily"
        + (f", then held {hold} days (a 1/{hold} book a day)" if held else "") + "; Sharpe annualised", "strategy",
        ("net/day", "Sharpe ± SE", "max DD", "turnover", "days"),
    )
    for key, label in LONG_SHORT_ROWS:
        if key in strategies:
            _long_short_row(ls_table, label, strategies[key])
    if held:
        ls_table.add_section()
    for key, label in LONG_SHORT_ROWS:
        if key in held:
            _long_short_row(ls_table, f"{label}, {hold}-day hold", held[key])
    items: list[Table | str] = [ic_table]
    if agreement := report.get("seed_agreement"):
        items.append(_seed_agreement_line(agreement))
    items += [ls_table, f"[bold]{escape(report['verdict'])}[/]"]
    items += [f"[dim]{escape(note)}[/]" for note in report["notes"]]
    return items


# --- a global run -----------------------------------------------------------------------------------


def linear_baseline_line(about: dict[str, Any]) -> str:
    """What the linear baseline is and how its penalty was chosen, or why there is none."""
    if "absent" in about:
        return f"[yellow]No linear baseline: {escape(about['absent'])}[/]"
    if "folds" in about:  # a walk-forward's: each fold's own ridge
        return (f"[dim]Linear baseline: a ridge on the model's own windows ({about['coefficients']} coefficients), "
                f"refit {about['refit']}; penalties {', '.join(f'{penalty:g}' for penalty in about['penalties'])} "
                f"(folds 1–{len(about['penalties'])}), each chosen on its fold's validation windows.[/]")
    return (f"[dim]Linear baseline: a ridge on the model's own windows ({about['coefficients']} coefficients), "
            f"fitted on {about['training_windows']:,} training windows of the run's {about['fitted_on_tickers']} "
            f"tickers; penalty {about['penalty']:g} of {len(about['validation'])} chosen by "
            f"{about['chosen_by']}.[/]")


def global_report(report: dict[str, Any]) -> list[Table | str]:
    """What `train --scope global` and `evaluate` on a global run print: the per-ticker table and the set's
    verdict, the pooled ratio, then the cross-section (rank IC, long–short) and its verdict."""
    test, pooled = report["test"], report["pooled_ratio"]
    items: list[Table | str] = [
        f"[bold]Global {report['model']['kind'].upper()}, {report['scope']}: {test['tickers']} tickers, "
        f"test {test['first_target_day']} … {test['last_target_day']} ({test['windows']:,} windows)[/]"
    ]
    per_ticker = dict(report["per_ticker"])
    if "folder" not in per_ticker:  # training prints before evaluate writes the files
        per_ticker["folder"] = report.get("run_dir", "")
    items += [item for item in universe_report(per_ticker) if not str(item).startswith("Wrote ")]
    items.append(f"Pooled RMSE ratio to naive on log prices, every ticker's test windows: "
                 f"{fmt(pooled['rmse_ratio_h1'])} (day 1), {fmt(pooled['rmse_ratio_all'])} (all days).")
    skipped = report.get("skipped") or {}
    if skipped:
        items.append(f"[yellow]Left out: {len(skipped)} tickers[/]")
        items += [f"  {escape(ticker)}: {escape(why)}" for ticker, why in list(skipped.items())[:SHOWN_FAILURES]]
        if len(skipped) > SHOWN_FAILURES:
            items.append(f"  … and {len(skipped) - SHOWN_FAILURES} more (evaluation.json lists every reason)")
    items += cross_section_report(report["cross_section"])
    if about := report.get("linear_baseline"):  # reports written before the baseline existed have none
        items.append(linear_baseline_line(about))
    if "walk_forward" in report:
        items += walk_forward_items(report["walk_forward"], report)
    files = report.get("files")
    if files:
        items.append(f"Wrote {', '.join(Path(path).name for path in files.values())} to "
                     f"{escape(str(Path(files['evaluation']).parent))}")
    return items


def walk_forward_items(walk: dict[str, Any], pooled: dict[str, Any]) -> list[Table | str]:
    """A global run's walk-forward folds, one row each, beside the pooled figures printed above them: the test
    block, the model (the run's own or refit), the pooled RMSE ratio, the rank IC and the long–short Sharpe."""
    table = FitTable(title=f"Walk-forward: {walk['completed']} of {walk['folds']} folds, expanding window, the "
                           "model refit before each block; ratio: day-1 RMSE to naive's", optional=("model", "days"))
    table.add_column("fold", no_wrap=True)
    table.add_column("test from … to", min_width=len("2020-01-02 …"))
    table.add_column("model")
    for column in ("ratio", "mean IC", "HAC t", "beyond TM", "L/S Sharpe", "days"):
        table.add_column(column, justify="right", no_wrap=True)
    folds = [(str(fold["fold"]), fold) for fold in walk["fold_results"]]
    for label, row in [*folds, ("pooled", pooled)]:
        if label == "pooled":
            table.add_section()
        section, source = row["cross_section"], row.get("model_source", "")
        ic, beyond = section["ic"]["model"], section["ic"]["beyond_train_mean"]
        days = (f"{row['test_first_day']} … {row['test_last_day']}" if "test_first_day" in row
                else f"{row['test']['first_target_day']} … {row['test']['last_target_day']}")
        table.add_row(label, days, f"refit, {row['epochs_run']} ep." if source == "retrained" else source,
                      fmt(row["pooled_ratio"]["rmse_ratio_h1"]), fmt(ic["mean"], "{:+.4f}"), fmt(ic["t"], "{:+.2f}"),
                      fmt(beyond["mean"], "{:+.4f}"), _sharpe(section["long_short"]["strategies"]["model"]),
                      str(section["days"]))
    items: list[Table | str] = [table]
    if walk["interrupted"]:
        items.append("[yellow]The walk-forward was interrupted; the folds above are the ones that finished, and "
                     "the pooled figures pool them.[/]")
    return items


def scopes_report(report: dict[str, Any]) -> list[Table | str]:
    """What `compare --scopes local,global` prints: both scopes side by side on the same test windows."""
    scopes = report["scopes"]
    table = report_table(f"Local vs global {report['model'].upper()} on {len(report['tickers'])} tickers, same dates "
                         f"(test from {report['split']['test_start']}) and seed {report['seed']}", "", scopes)

    def ic(section: dict[str, Any], key: str) -> str:
        summary = section["ic"][key]
        return f"{fmt(summary['mean'], '{:+.4f}')} (t {fmt(summary['t'], '{:.2f}')})"

    def strategy(scope: dict[str, Any], name: str) -> dict[str, Any]:
        return scope["cross_section"]["long_short"]["strategies"][name]

    rows = {
        "pooled RMSE/naive, day 1": lambda scope: fmt(scope["pooled_ratio"]["rmse_ratio_h1"]),
        "pooled RMSE/naive, all days": lambda scope: fmt(scope["pooled_ratio"]["rmse_ratio_all"]),
        "pooled DM p": lambda scope: format_pvalue(scope["per_ticker"]["pooled_dm"]["pvalue"]),
        "tickers better / worse (q < .05)": lambda scope: (f"{scope['per_ticker']['better_at_q05']} / "
                                                           f"{scope['per_ticker']['worse_at_q05']}"),
        "mean rank IC (HAC t)": lambda scope: ic(scope["cross_section"], "model"),
        "beyond train mean (partial IC)": lambda scope: ic(scope["cross_section"], "beyond_train_mean"),
        "long–short Sharpe ± SE (net)": lambda scope: _sharpe(strategy(scope, "model")),
        "reversal baseline Sharpe": lambda scope: _sharpe(strategy(scope, "reversal")),
    }
    for label, cell in rows.items():
        table.add_row(label, *(cell(scope) for scope in scopes.values()))
    items: list[Table | str] = [table]
    for name, scope in scopes.items():
        items.append(f"{name}: {escape(scope['per_ticker']['verdict'])}.")
        items.append(f"{name}: {escape(scope['cross_section']['verdict'])}")
    if report["left_out"]:
        items.append(f"[yellow]Left out of both: {escape(', '.join(report['left_out']))} (compare.json says why)[/]")
    if report["interrupted"]:
        items.append("[yellow]Interrupted: the local side covers the tickers finished before the stop.[/]")
    items.append("Wrote:")
    items.append(f"  global run bundle: {escape(scopes['global']['run_dir'])}")
    items.append(f"  local run bundles: their tickers' folders, listed in {escape(scopes['local']['universe_dir'])}")
    items += [f"  {escape(report['files']['compare'])}", f"  {escape(report['files']['curves'])}"]
    return items


def _sharpe(result: dict[str, Any]) -> str:
    return "—" if result["sharpe"] is None else f"{result['sharpe']:+.2f} ± {result['sharpe_se']:.2f}"


# --- tune ------------------------------------------------------------------------------------------

TUNE_SHOWN = 10  # trials in tune's closing table (all of them are in trials.csv)
TUNE_KEPT = ("train.lr", "data.features")  # parameters the trials table shows at any width


def trials_table(rows: list[dict[str, Any]], keys: list[str], title: str) -> Table:
    """Trials: number, the values tried, the objective, the state and the seconds it took.

    A parameter's header is its key with spaces (`hidden size`), so it wraps over its numbers; a parameter whose
    values are not numbers (features) wraps; a narrow terminal leaves out the seconds, the state, then the
    parameters from the last up, but never lr or features.
    """
    headers = [key.partition(".")[2].replace("_", " ") for key in keys]
    droppable = [header for key, header in zip(keys, headers, strict=True) if key not in TUNE_KEPT]
    table = FitTable(title=title, optional=("s", "state", *reversed(droppable)), whole="trials.csv")
    table.add_column("#", justify="right", no_wrap=True)
    for key, header in zip(keys, headers, strict=True):
        numeric = all(isinstance(row[key], int | float) or row[key] is None for row in rows)
        table.add_column(header, justify="right" if numeric else "left", no_wrap=numeric)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    for row in rows:
        cells = [_tune_cell(row[key]) for key in keys]
        table.add_row(str(row["number"]), *cells, fmt(row["value"], "{:.4f}"), row["state"],
                      fmt(row["seconds"], "{:.1f}"))
    return table


def _tune_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str):  # a list choice's label, `log_return+range`, may wrap between its names
        return escape(value.replace("+", " + "))
    return escape(str(value)) if value is not None else "—"


def tune_report(report: dict[str, Any]) -> list[Any]:
    """tune's closing report: the counts, the best trials, then the test figure of the retrained best config
    beside naive (DM test), the optimism stated in words, and the files."""
    keys = list(report["space"])
    counts = report["trials"]
    others = ", ".join(f"{counts[state]} {state}" for state in ("pruned", "failed", "abandoned", "interrupted")
                       if counts[state])
    objective = "day 1" if report["objective"] == "h1" else "all horizon days"
    folds = f", mean of {report['cv_folds']} walk-forward folds" if report["cv_folds"] else ""
    items: list[Any] = [
        f"Study {escape(report['study'])}: {counts['total']} trials ({counts['complete']} complete"
        f"{', ' + others if others else ''}; {counts['this_run']} run now) on {', '.join(report['tickers'])}; "
        f"objective: validation RMSE / naive, {objective}{folds}. Storage: {escape(report['storage'])}"]
    ranked = sorted((row for row in report["trial_rows"] if row["value"] is not None),
                    key=lambda row: (row["value"], row["number"]))
    if ranked:
        items.append(trials_table(ranked[:TUNE_SHOWN], keys, f"Best {min(TUNE_SHOWN, len(ranked))} trials "
                                  "(validation RMSE / naive; below 1 beats naive)"))
    test = report["test"]
    if test is not None:
        best = report["best"]
        for run in test["runs"]:
            scores = run["test"]
            period = f"{scores['first_anchor']} … {scores['last_anchor']}, {scores['windows']} windows"
            made = "its run reused" if run.get("reused") else "retrained"  # a finished study trains it once
            items.append(scores_table(f"{run['ticker']}, best config (trial {best['number']}) {made}, test: "
                                      f"{period}", scores["metrics"], test["horizon"], test["kind"]))
            items.append(tests_line(scores["vs_naive"]))
            items.append(f"Verdict: {scores['verdict']}. Run bundle: {escape(run['run_dir'])}")
        if test["pooled"] is not None:
            pooled = test["pooled"]
            items.append(f"Pooled test RMSE / naive over {len(test['runs'])} tickers: {pooled['rmse_ratio_h1']:.4f} "
                         f"(day 1), {pooled['rmse_ratio_all']:.4f} (all days), {pooled['windows']} windows")
        items.append(f"[bold]Honesty:[/] {escape(report['optimism'])}.")
    for name, label in (("trials_csv", "Trials"), ("best_yaml", "Best config"), ("tune_png", "Chart")):
        if name in report["files"]:
            items.append(f"{label}: {escape(report['files'][name])}")
    return items
