"""Figures a person reads at a glance; matplotlib with the Agg backend (no screen needed).

Each function draws one figure, writes it to `path` and closes it, so long runs never leak figures.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from lstm_forecast.files import atomic_write_bytes

FIGURE_DPI = 120


def loss_curve(
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    best_epoch: int,
    naive_val_loss: float | None,
    title: str,
    path: Path,
) -> Path:
    """Train and validation loss per epoch, the best epoch marked, the naive forecast as a reference."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    marker = "o" if len(epochs) <= 30 else None  # dots help read a short run
    ax.plot(epochs, train_loss, label="train loss", color="tab:blue", linewidth=1.6, marker=marker, markersize=3)
    ax.plot(epochs, val_loss, label="validation loss", color="tab:orange", linewidth=1.6, marker=marker, markersize=3)
    if naive_val_loss is not None:
        # The horizontal line answers the first question a reader has: is the model any better
        # than predicting "no change"? Below the line it is; above it, it is worse than naive.
        ax.axhline(naive_val_loss, color="tab:gray", linestyle="--", linewidth=1.2,
                   label=f"naive forecast (validation) {naive_val_loss:.4g}")
    if best_epoch in epochs:
        best_loss = val_loss[list(epochs).index(best_epoch)]
        ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1.2)
        ax.scatter([best_epoch], [best_loss], color="tab:green", zorder=5,
                   label=f"best epoch {best_epoch} ({best_loss:.4g})")
    _loss_axes(ax, title)
    return save(fig, path)


def _loss_axes(ax: plt.Axes, title: str, legend_columns: int = 1) -> None:
    """Labels, whole-number epoch ticks, grid and legend shared by the loss-curve figures."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled targets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9, ncol=legend_columns)


def save(fig: plt.Figure, path: Path) -> Path:
    """Save atomically and close; a fixed DPI and no timestamp metadata keep files reproducible."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def predictions_plot(
    dates: Sequence,
    actual: Sequence[float],
    model: Sequence[float],
    naive: Sequence[float],
    title: str,
    path: Path,
    zoom_days: int = 60,
) -> Path:
    """Day-1 forecasts against the actual price over a whole period, then its last `zoom_days` up close.

    Over years the three lines look alike; the zoom is where a forecast that trails the actual price
    by one day (the naive forecast in disguise) becomes visible.
    """
    fig, (whole, zoom) = plt.subplots(2, 1, figsize=(10, 8))
    start = max(len(dates) - zoom_days, 0)
    for ax, first, marker in ((whole, 0, None), (zoom, start, "o")):
        ax.plot(dates[first:], actual[first:], label="actual", color="black", linewidth=1.4, marker=marker,
                markersize=3)
        ax.plot(dates[first:], model[first:], label="model", color="tab:blue", linewidth=1.2, marker=marker,
                markersize=3)
        # On top: where the model hugs the naive forecast, the dashes show through its line.
        ax.plot(dates[first:], naive[first:], label="naive (last price)", color="tab:orange", linestyle="--",
                linewidth=1.1, zorder=3)
        ax.set_ylabel("price")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    whole.set_title(title)
    zoom.set_title(f"last {len(dates) - start} trading days (day-1 forecast plotted on the day it forecasts)",
                   fontsize=10)
    _date_axis(whole)
    _date_axis(zoom)
    return save(fig, path)


def equity_plot(
    dates: Sequence,
    strategy: Sequence[float],
    buy_and_hold: Sequence[float],
    cost_bps: float,
    title: str,
    path: Path,
) -> Path:
    """Equity of the long/flat diagnostic beside buy-and-hold, both starting at 1.0."""
    fig, ax = plt.subplots(figsize=(10, 4.8))
    # Buy-and-hold wide and pale underneath, so a strategy that never leaves the market stays visible.
    ax.plot(dates, buy_and_hold, label="buy and hold", color="tab:gray", linewidth=2.6, alpha=0.6)
    ax.plot(dates, strategy, label=f"long/flat on the model's calls ({cost_bps:g} bps per change)",
            color="tab:blue", linewidth=1.2)
    ax.axhline(1.0, color="black", linewidth=0.8, alpha=0.5)
    ax.set_ylabel("equity (start = 1)")
    # In the axis label, so tight_layout keeps the disclaimer on the figure whatever its size.
    ax.set_xlabel("Diagnostic only, not investment advice: past prices, flat costs, no slippage or taxes.",
                  fontsize=8, color="dimgray")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    _date_axis(ax)
    return save(fig, path)


def _date_axis(ax: plt.Axes) -> None:
    """Short, unrotated date labels that adapt to the span (years, months or days)."""
    locator = matplotlib.dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))


def compare_curves(
    curves: dict[str, tuple[Sequence[int], Sequence[float], Sequence[float]]],
    naive_val_loss: float | None,
    title: str,
    path: Path,
) -> Path:
    """Train (solid) and validation (dashed) loss per epoch of several models, one colour per model."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for number, (name, (epochs, train_loss, val_loss)) in enumerate(curves.items()):
        colour, marker = f"C{number}", "o" if len(epochs) <= 30 else None
        ax.plot(epochs, train_loss, color=colour, linewidth=1.6, marker=marker, markersize=3, label=f"{name} train")
        ax.plot(epochs, val_loss, color=colour, linewidth=1.6, linestyle="--", marker=marker, markersize=3,
                label=f"{name} validation")
    if naive_val_loss is not None:
        ax.axhline(naive_val_loss, color="tab:gray", linestyle=":", linewidth=1.2,
                   label=f"naive forecast (validation) {naive_val_loss:.4g}")
    _loss_axes(ax, title, legend_columns=2)
    return save(fig, path)


def fan_chart(
    history_dates: Sequence,
    history_prices: Sequence[float],
    forecast_dates: Sequence,
    forecast_prices: Sequence[float],
    bands: dict[str, tuple[Sequence[float], Sequence[float]]],
    price_label: str,
    title: str,
    path: Path,
) -> Path:
    """Recent prices, then the forecast path with one shaded interval band per level (narrowest first)."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(history_dates, history_prices, color="tab:blue", linewidth=1.4, label=price_label)
    # Forecast lines start at the last close, so the path and the bands visibly grow out of the history.
    last_date, last_price = history_dates[-1], history_prices[-1]
    path_dates = [last_date, *forecast_dates]
    # Widest band first: translucent bands overlap, so each narrower one shows darker on top.
    for label, (lower, upper) in reversed(bands.items()):
        ax.fill_between(path_dates, [last_price, *lower], [last_price, *upper], color="tab:orange",
                        alpha=0.2, linewidth=0, label=f"{label} interval")
    ax.plot(path_dates, [last_price, *forecast_prices], color="tab:orange", linewidth=1.6, marker="o",
            markersize=3, label="forecast")
    ax.axvline(last_date, color="tab:gray", linestyle=":", linewidth=1.0)
    ax.set_ylabel(price_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    fig.autofmt_xdate()
    return save(fig, path)
