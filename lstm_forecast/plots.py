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
import numpy as np
import pandas as pd
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
    # Training loss often falls far more than validation loss moves (a global model's first epochs): on one axis
    # the validation curve is then a flat line. It gets an axis of its own, its naive line and best epoch with it.
    val_ax = ax.twinx() if own_axis_for(val_loss, train_loss) else ax
    val_ax.plot(epochs, val_loss, label="validation loss" + (" (right axis)" if val_ax is not ax else ""),
                color="tab:orange", linewidth=1.6, marker=marker, markersize=3)
    if naive_val_loss is not None:
        # The horizontal line answers the first question a reader has: is the model any better
        # than predicting "no change"? Below the line it is; above it, it is worse than naive.
        val_ax.axhline(naive_val_loss, color="tab:gray", linestyle="--", linewidth=1.2,
                       label=f"naive forecast (validation) {naive_val_loss:.4g}")
    if best_epoch in epochs:
        best_loss = val_loss[list(epochs).index(best_epoch)]
        ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1.2)
        val_ax.scatter([best_epoch], [best_loss], color="tab:green", zorder=5,
                       label=f"best epoch {best_epoch} ({best_loss:.4g})")
    _loss_axes(ax, title, epochs=epochs, also=val_ax)
    if val_ax is not ax:
        val_ax.set_ylabel("validation loss (scaled targets)", color="tab:orange")
    # Fixed margins instead of tight_layout's second drawing pass: a universe draws one curve per ticker.
    fig.subplots_adjust(left=0.09, right=0.91 if val_ax is not ax else 0.98, top=0.92, bottom=0.12)
    return save(fig, path, tight=False)


def own_axis_for(val_loss: Sequence[float], train_loss: Sequence[float], share: float = 0.2) -> bool:
    """Whether the validation curve needs its own axis: it moves over less than `share` of the span both
    curves cover together, so on a shared axis its changes would not show."""
    values = np.asarray([*val_loss, *train_loss], dtype=float)
    values = values[np.isfinite(values)]
    val = np.asarray(val_loss, dtype=float)
    val = val[np.isfinite(val)]
    if len(val) < 2 or values.size == 0 or np.ptp(values) == 0:
        return False
    return bool(np.ptp(val) < share * np.ptp(values))


def _loss_axes(ax: plt.Axes, title: str, legend_columns: int = 1, epochs: Sequence[int] = (),
               also: plt.Axes | None = None) -> None:
    """Labels, whole-number epoch ticks (each epoch of a short run its own tick, never 0.95 … 1.05 around a
    single one), grid and legend shared by the loss-curve figures; `also`: a twin axis whose curves the legend
    lists too."""
    if 0 < len(set(epochs)) <= 10:
        ax.set_xticks(sorted(set(epochs)))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled targets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if also is not None and also is not ax:
        more_handles, more_labels = also.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="best", fontsize=9, ncol=legend_columns)


def save(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    """Save atomically and close; a fixed DPI and no timestamp metadata keep files reproducible. `tight`: fit
    the margins to the labels first (a figure that sets its own margins, or a constrained layout, needs not)."""
    buffer = io.BytesIO()
    if tight and fig.get_layout_engine() is None:  # figures with a suptitle use the constrained layout
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


# Interval bands: the widest level palest, each narrower one clearly darker, so no two levels look alike.
NARROWEST_ALPHA, WIDEST_ALPHA = 0.38, 0.12


def band_alphas(count: int) -> list[float]:
    """One shade per interval level, narrowest level first."""
    return [NARROWEST_ALPHA] if count == 1 else list(np.linspace(NARROWEST_ALPHA, WIDEST_ALPHA, count))
RECENT_DAYS = 120  # target days shown per horizon step: a readable half year, not years of overlapping lines


def steps_to_show(horizon: int) -> list[int]:
    """Horizon steps (1-based) that get a panel: all of them up to 5, else 1, 2, the middle one and the last."""
    return list(range(1, horizon + 1)) if horizon <= 5 else sorted({1, 2, (horizon + 1) // 2, horizon})


def predictions_plot(
    target_dates: np.ndarray,
    actual: np.ndarray,
    model: np.ndarray,
    naive: np.ndarray,
    half_widths: dict[str, np.ndarray],
    title: str,
    path: Path,
    zoom_days: int = 60,
) -> Path:
    """The test period's forecasts, one panel per horizon step, then a day-1 close-up beside naive.

    Arrays are (windows, horizon), each forecast drawn on the day it forecasts; `half_widths` maps an
    interval label ("80%") to its conformal half-widths per step (log-price units), narrowest first.
    Each step panel shows the last RECENT_DAYS days: the forecast, its bands and the actual price. The
    close-up is where a forecast that trails the actual price by one day (naive in disguise) shows.
    """
    steps = steps_to_show(actual.shape[1])
    fig, axes = plt.subplots(len(steps) + 1, 1, figsize=(10, 2.6 * len(steps) + 3.4), squeeze=False,
                             layout="constrained")
    recent = slice(max(len(actual) - RECENT_DAYS, 0), None)
    for ax, step in zip(axes[:-1, 0], steps, strict=False):
        column = step - 1
        dates = target_dates[recent, column]
        by_width = sorted(half_widths.items(), key=lambda item: float(np.mean(item[1])))  # levels in any order
        for alpha, (label, widths) in zip(band_alphas(len(by_width)), by_width, strict=True):
            factor = np.exp(widths[column])
            ax.fill_between(dates, model[recent, column] / factor, model[recent, column] * factor, color="tab:blue",
                            alpha=alpha, linewidth=0, label=f"{label} interval")
        ax.plot(dates, actual[recent, column], color="black", linewidth=1.3, label="actual")
        ax.plot(dates, model[recent, column], color="tab:blue", linewidth=1.2, label="forecast")
        ax.set_title(f"day {step} ahead" + (" (forecast made the session before)" if step == 1 else
                                             f" (forecast made {step} sessions before)"), fontsize=10)
        ax.set_ylabel("price")
        ax.grid(alpha=0.3)
        _date_axis(ax)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=4)

    zoom = axes[-1, 0]
    first = max(len(actual) - zoom_days, 0)
    dates = target_dates[first:, 0]
    zoom.plot(dates, actual[first:, 0], label="actual", color="black", linewidth=1.4, marker="o", markersize=3)
    zoom.plot(dates, model[first:, 0], label="forecast", color="tab:blue", linewidth=1.2, marker="o", markersize=3)
    # On top: where the model hugs the naive forecast, the dashes show through its line.
    zoom.plot(dates, naive[first:, 0], label="naive (last price)", color="tab:orange", linestyle="--",
              linewidth=1.1, zorder=3)
    zoom.set_title(f"close-up, last {len(dates)} days, day 1: a forecast that trails the actual price by one day "
                   "is naive in disguise", fontsize=10)
    zoom.set_ylabel("price")
    zoom.grid(alpha=0.3)
    zoom.legend(loc="upper left", fontsize=8, ncol=3)
    _date_axis(zoom)
    fig.suptitle(title)
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
    # A line exactly on another reads as a missing line: say why there is one.
    note = None
    if np.allclose(strategy, buy_and_hold, rtol=1e-9, atol=1e-12):
        note = "The strategy equals buy and hold here (in the market every day): one line covers the other."
    elif np.allclose(strategy, 1.0, rtol=0, atol=1e-12):
        note = "The strategy stayed in cash throughout: its line lies on 1.0."
    if note is not None:
        ax.text(0.5, 0.94, note, transform=ax.transAxes, ha="center", va="top", fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "tab:gray"})
    ax.set_ylabel("equity (start = 1)")
    # In the axis label, so tight_layout keeps the disclaimer on the figure whatever its size.
    ax.set_xlabel("Diagnostic only, not investment advice: past prices, flat costs, no slippage or taxes.",
                  fontsize=8, color="dimgray")
    return _finish_dated(fig, ax, title, path, "lower left")


def _finish_dated(fig: plt.Figure, ax: plt.Axes, title: str, path: Path, legend: str) -> Path:
    """A dated chart's end: its title, grid, legend and date labels; saved to `path`."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend, fontsize=9)
    _date_axis(ax)
    return save(fig, path)


def _date_axis(ax: plt.Axes) -> None:
    """Short, unrotated date labels that adapt to the span (years, months or days)."""
    locator = matplotlib.dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    # Month ticks carry their year (a lone "Mar" leaves the reader guessing which March).
    ax.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(
        locator, formats=["%Y", "%b %Y", "%d %b", "%H:%M", "%H:%M", "%S.%f"],
        zero_formats=["", "%Y", "%b %Y", "%d %b", "%H:%M", "%H:%M"]))


def compare_curves(
    curves: dict[str, tuple[Sequence[int], Sequence[float], Sequence[float]]],
    naive_val_loss: float | None,
    test_scores: dict[str, tuple[float | None, str]],
    title: str,
    path: Path,
) -> Path:
    """Training loss and validation loss per epoch in panels of their own (each on its own scale, so the
    validation curves are not a flat band under the training ones), then each model's test RMSE ratio
    with its Diebold-Mariano p-value (`test_scores`: model -> (ratio, p-value text))."""
    fig, (train_ax, val_ax, ratio_ax) = plt.subplots(
        1, 3, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1, 1, 0.7]}, layout="constrained"
    )
    for number, (name, (epochs, train_loss, val_loss)) in enumerate(curves.items()):
        colour, marker = f"C{number}", "o" if len(epochs) <= 30 else None
        train_ax.plot(epochs, train_loss, color=colour, linewidth=1.6, marker=marker, markersize=3, label=name)
        val_ax.plot(epochs, val_loss, color=colour, linewidth=1.6, marker=marker, markersize=3, label=name)
    if naive_val_loss is not None:
        val_ax.axhline(naive_val_loss, color="tab:gray", linestyle=":", linewidth=1.2,
                       label=f"naive {naive_val_loss:.4g}")
    every_epoch = [epoch for epochs, _, _ in curves.values() for epoch in epochs]
    _loss_axes(train_ax, "training loss", epochs=every_epoch)
    _loss_axes(val_ax, "validation loss", epochs=every_epoch)

    names = list(test_scores)
    ratios = [test_scores[name][0] for name in names]
    # Each bar runs from the naive line at 1.0 to the ratio: its length is how far the model is from naive, and
    # its side says which way (the axis is zoomed, so a bar from the axis edge would mean nothing).
    bars = ratio_ax.barh(names, [0.0 if ratio is None else ratio - 1.0 for ratio in ratios], left=1.0,
                         color=[f"C{number}" for number in range(len(names))])
    ratio_ax.axvline(1.0, color="tab:gray", linestyle="--", linewidth=1.2)
    for bar, ratio, name in zip(bars, ratios, names, strict=True):
        text = "n/a" if ratio is None else f"{ratio:.3f}"
        middle = bar.get_y() + bar.get_height() / 2
        ratio_ax.annotate(f" {text}, DM p {test_scores[name][1]}", (max(1.0, ratio or 1.0), middle), va="center",
                          fontsize=9)
    finite = [ratio for ratio in ratios if ratio is not None]
    # Ratios of recurrent nets sit close to 1: zoom in around 1 so a 2 % difference is visible.
    spread = max([abs(ratio - 1.0) for ratio in finite] + [0.02])
    ratio_ax.set_xlim(max(0.0, 1.0 - 1.5 * spread), 1.0 + 3.5 * spread)
    ratio_ax.invert_yaxis()
    ratio_ax.set_xlabel("test RMSE / naive (below 1 beats naive)")
    ratio_ax.set_title("test period")
    ratio_ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    return save(fig, path)


def fan_chart(
    history_dates: Sequence,
    history_prices: Sequence[float],
    forecast_dates: Sequence,
    forecast_prices: Sequence[float],
    bands: dict[str, tuple[Sequence[float], Sequence[float]]],
    price_label: str,
    title: str,
    note: str,
    path: Path,
    close_sessions: int = 15,
) -> Path:
    """The recent history for context, then a close-up of its last `close_sessions` and the forecast path
    with one shaded interval band per level (narrowest first), wide enough to read; `note` under the title."""
    fig, (context, close) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 2.2]},
                                      layout="constrained")
    context.plot(history_dates, history_prices, color="tab:blue", linewidth=1.2)
    context.set_title(f"last {len(history_dates)} sessions", fontsize=10)
    context.set_ylabel(price_label)
    context.grid(alpha=0.3)
    _date_axis(context)

    last_date, last_price = history_dates[-1], history_prices[-1]
    close.plot(history_dates[-close_sessions:], history_prices[-close_sessions:], color="tab:blue", linewidth=1.4,
               marker="o", markersize=3, label=price_label)
    # Forecast lines start at the last close, so the path and the bands visibly grow out of the history.
    path_dates = [last_date, *forecast_dates]
    by_width = sorted(bands.items(), key=lambda item: float(np.mean(np.subtract(item[1][1], item[1][0]))))
    for alpha, (label, (lower, upper)) in zip(band_alphas(len(by_width)), by_width, strict=True):
        close.fill_between(path_dates, [last_price, *lower], [last_price, *upper], color="tab:orange",
                           alpha=alpha, linewidth=0, label=f"{label} interval")
    close.plot(path_dates, [last_price, *forecast_prices], color="tab:orange", linewidth=1.8, marker="o",
               markersize=4, label="forecast")
    close.axvline(last_date, color="tab:gray", linestyle=":", linewidth=1.0)
    context.axvspan(history_dates[-close_sessions], history_dates[-1], color="tab:gray", alpha=0.12)
    close.set_title(note, fontsize=10)
    close.grid(alpha=0.3)
    close.legend(loc="upper left", fontsize=8)
    _date_axis(close)
    fig.suptitle(title)
    return save(fig, path)


def universe_plot(
    tickers: Sequence[str], ratios: Sequence[float], qvalues: Sequence[float | None], q_threshold: float,
    title: str, path: Path,
) -> Path:
    """Left: how the tickers' test RMSE ratios to naive are spread (1.0 marked). Right: each ticker's ratio
    against -log10 of its Benjamini–Hochberg q-value, the q threshold marked: skill stands out above the line
    on the left of 1.0, luck stays below it."""
    fig, (spread, volcano) = plt.subplots(1, 2, figsize=(11, 4.5))
    values = np.asarray(ratios, dtype=float)
    if values.size:
        spread.hist(values, bins=bins_around_one(values, min(40, max(5, values.size // 5))), color="tab:blue",
                    alpha=0.8)
    spread.axvline(1.0, color="tab:gray", linestyle="--", linewidth=1.2, label="naive (ratio 1.0)")
    spread.set_xlabel("test RMSE / naive (all horizon days)")
    spread.set_ylabel("tickers")
    spread.legend(loc="best", fontsize=9)
    # A ticker without a DM p-value (an untestable difference) sits on the bottom edge.
    heights = np.array([-np.log10(max(q, 1e-300)) if q is not None else 0.0 for q in qvalues])
    volcano.scatter(values, heights, s=12, color="tab:orange", alpha=0.8)
    volcano.axhline(-np.log10(q_threshold), color="tab:red", linestyle=":", linewidth=1.2,
                    label=f"q = {q_threshold:g}")
    volcano.axvline(1.0, color="tab:gray", linestyle="--", linewidth=1.2)
    for ticker, ratio, height in zip(tickers, values, heights, strict=True):
        if height > -np.log10(q_threshold):
            volcano.annotate(ticker, (ratio, height), fontsize=7, xytext=(3, 3), textcoords="offset points")
    volcano.set_xlabel("test RMSE / naive")
    volcano.set_ylabel("-log10 q (Benjamini–Hochberg)")
    volcano.legend(loc="best", fontsize=9)
    for ax in (spread, volcano):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)


def bins_around_one(values: np.ndarray, count: int) -> np.ndarray:
    """About `count` equal histogram bins over `values` with 1.0 (naive's ratio) on a bin edge, so no bin
    mixes tickers that beat naive with tickers that did not."""
    low, high = float(np.min(values)), float(np.max(values))
    width = (max(high, 1.0) - min(low, 1.0)) / count or 0.01
    return 1.0 + width * np.arange(np.floor((low - 1.0) / width), np.ceil((high - 1.0) / width) + 1)


def ic_plot(daily_ic: pd.Series, window: int, title: str, path: Path) -> Path:
    """The daily rank IC as thin pale bars, its rolling `window`-day mean bold on top (drawn from half a
    window on), zero marked: a skill that comes and goes shows as a wandering bold line."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(daily_ic.index, daily_ic.to_numpy(dtype=float), width=1.0, color="tab:blue", alpha=0.35, linewidth=0,
           label=f"daily rank IC (mean {daily_ic.mean():+.4f}, {daily_ic.size} days)")
    rolling = daily_ic.rolling(window, min_periods=max(1, window // 2)).mean()
    ax.plot(rolling.index, rolling.to_numpy(dtype=float), color="tab:blue", linewidth=2.2,
            label=f"{window}-day rolling mean")
    ax.axhline(0.0, color="black", linewidth=0.8, alpha=0.6)
    ax.set_ylabel("Spearman rank IC")
    return _finish_dated(fig, ax, title, path, "upper left")


def long_short_plot(equity: pd.DataFrame, title: str, path: Path) -> Path:
    """Growth of 1 per strategy (one column each), the model's line bold, the baselines thin beside it."""
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for number, name in enumerate(equity.columns):
        model = name == "model"  # on top (zorder), so the baselines never hide it, and first in the legend
        ax.plot(equity.index, equity[name].to_numpy(dtype=float), color="C0" if model else f"C{number + 1}",
                linewidth=2.2 if model else 1.1, alpha=1.0 if model else 0.85, zorder=3 if model else 2,
                label=name.replace("_", " "))
    ax.axhline(1.0, color="black", linewidth=0.8, alpha=0.5)
    ax.set_ylabel("growth of 1")
    ax.set_xlabel("Diagnostic only, not investment advice: equal weights, cost on turnover only, no borrow costs.",
                  fontsize=8, color="dimgray")
    return _finish_dated(fig, ax, title, path, "upper left")


def tune_plot(
    numbers: Sequence[int], values: Sequence[float | None], states: Sequence[str],
    importances: dict[str, float] | None, title: str, path: Path,
) -> Path:
    """Left: each trial's objective (validation RMSE / naive) in trial order with the running best, pruned and
    failed trials as ticks on the bottom edge, naive's 1.0 marked. Right: the parameter importances, when
    there are enough complete trials to judge them."""
    fig, (trials_ax, importance_ax) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.6, 1]},
                                                   layout="constrained")
    complete = [(n, v) for n, v, s in zip(numbers, values, states, strict=True) if s == "complete" and v is not None]
    if complete:
        xs, ys = zip(*complete, strict=True)
        trials_ax.scatter(xs, ys, s=18, color="tab:blue", zorder=3, label="complete trial")
        trials_ax.step(xs, np.minimum.accumulate(ys), where="post", color="tab:orange", linewidth=1.8,
                       label=f"best so far ({min(ys):.4f})")
    trials_ax.axhline(1.0, color="tab:gray", linestyle="--", linewidth=1.1, label="naive (1.0)")
    for state, colour in (("pruned", "tab:gray"), ("failed", "tab:red")):
        marked = [n for n, s in zip(numbers, states, strict=True) if s == state]
        if marked:  # no value to place them by: ticks on the bottom edge, counted in the legend
            trials_ax.plot(marked, [0.0] * len(marked), "|", color=colour, markersize=12, clip_on=False,
                           transform=trials_ax.get_xaxis_transform(), label=f"{state} ({len(marked)})")
    trials_ax.set_xlabel("trial")
    trials_ax.set_ylabel("validation RMSE / naive (below 1 beats naive)")
    trials_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    trials_ax.grid(alpha=0.3)
    trials_ax.legend(loc="upper right", fontsize=8)
    if importances:
        names = list(importances)[::-1]  # the most important on top
        importance_ax.barh(names, [importances[name] for name in names], color="tab:blue")
        importance_ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
        importance_ax.grid(alpha=0.3, axis="x")
    else:
        importance_ax.text(0.5, 0.5, "parameter importances need\nat least two complete trials", ha="center",
                           va="center", transform=importance_ax.transAxes, color="dimgray")
        importance_ax.set_axis_off()
    importance_ax.set_title("which settings mattered", fontsize=10)
    fig.suptitle(title)
    return save(fig, path)
