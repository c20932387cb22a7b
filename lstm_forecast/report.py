"""Rich tables for the terminal: the model's numbers always printed beside the naive forecast's."""

from __future__ import annotations

from typing import Any

from rich.table import Table

METRIC_ROWS = (
    ("rmse", "RMSE", "{:.3f}"),
    ("mae", "MAE", "{:.3f}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("mase", "MASE", "{:.3f}"),
    ("directional_accuracy", "direction", "{:.1%}"),
    ("rmse_ratio", "RMSE / naive", "{:.3f}"),
)


def fmt(value: Any, pattern: str = "{:.3f}") -> str:
    """A number for a table cell; None (undefined, e.g. naive's direction) shows as a dash."""
    return "—" if value is None else pattern.format(value)


def split_table(title: str, scores: dict[str, Any], horizon: int) -> Table:
    """One split's metrics: model and naive, on the first forecast day (d1) and over all `horizon` days."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("metric")
    days = f"days 1–{horizon}" if horizon > 1 else "day 1"
    for label in ("model, day 1", "naive, day 1", f"model, {days}", f"naive, {days}"):
        table.add_column(label, justify="right")
    for key, label, pattern in METRIC_ROWS:
        table.add_row(
            label,
            *(fmt(scores[who][step][key], pattern) for step in ("h1", "all") for who in ("model", "naive")),
        )
    return table


def significance_line(scores: dict[str, Any]) -> str:
    """DM p-value, the binomial test of direction, and the plain verdict, for one split."""
    vs = scores["vs_naive"]
    direction = vs["direction_h1"]
    parts = [f"DM p (all days) = {fmt(vs['dm_all']['pvalue'])}", f"DM p (day 1) = {fmt(vs['dm_h1']['pvalue'])}"]
    if direction["accuracy"] is not None:
        parts.append(
            f"direction {direction['hits']}/{direction['trials']} right, binomial p = "
            f"{fmt(direction['binomial_pvalue'])} (up days {fmt(direction['up_share'], '{:.1%}')})"
        )
    return " · ".join(parts) + f"\nVerdict: the model is {scores['verdict']}."
