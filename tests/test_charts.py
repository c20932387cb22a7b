"""Charts that say what they mean: whole epochs on a short run's axis, a validation curve that stays visible
beside a falling training loss, ratio bars measured from the naive line, histogram bins split at 1.0, and a
year on month ticks."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lstm_forecast import plots


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open instead of saved."""
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path, tight=True: figures.append(fig) or Path(path))
    yield figures
    plt.close("all")


def test_a_one_epoch_loss_curve_has_one_whole_epoch_tick(drawn, tmp_path):
    plots.loss_curve([1], [1.02], [0.99], 1, 1.0, "one epoch", tmp_path / "x.png")
    (ax, *_) = drawn[0].axes
    assert list(ax.get_xticks()) == [1]


def test_a_validation_curve_that_barely_moves_gets_its_own_axis(drawn, tmp_path):
    epochs = list(range(1, 11))
    falling = list(np.linspace(2.0, 0.9, 10))
    flat = list(0.985 - 0.003 * np.sin(np.arange(10)))
    plots.loss_curve(epochs, falling, flat, 4, 0.99, "global", tmp_path / "x.png")
    axes = drawn[0].axes
    assert len(axes) == 2  # the validation loss, its naive line and best epoch on a twin axis
    low, high = axes[1].get_ylim()
    assert high - low < 0.05  # zoomed on validation's own range, where its changes show
    labels = axes[0].get_legend().get_texts()
    assert any("validation loss (right axis)" in text.get_text() for text in labels)
    # Curves of one scale share one axis, as before.
    plots.loss_curve(epochs, falling, list(np.linspace(1.9, 1.0, 10)), 4, 0.99, "local", tmp_path / "y.png")
    assert len(drawn[1].axes) == 1


def test_ratio_bars_start_at_the_naive_line(drawn, tmp_path):
    curves = {"LSTM": ([1, 2], [1.0, 0.9], [0.99, 0.98])}
    plots.compare_curves(curves, 0.99, {"LSTM": (0.97, "0.03")}, "compare", tmp_path / "x.png")
    ratio_ax = drawn[0].axes[-1]
    (bar,) = ratio_ax.patches
    assert bar.get_x() == pytest.approx(1.0) and bar.get_x() + bar.get_width() == pytest.approx(0.97)


@pytest.mark.parametrize("values", [np.array([0.95, 0.99, 1.001, 1.04]), np.array([1.0] * 3),
                                    np.array([2.0, 14.1]), np.array([0.5, 0.7])])
def test_histogram_bins_never_straddle_a_ratio_of_one(values):
    edges = plots.bins_around_one(values, 7)
    assert not any(low < 1.0 - 1e-12 and high > 1.0 + 1e-12 for low, high in pairwise(edges))
    assert edges[0] <= values.min() and edges[-1] >= values.max()


def test_month_ticks_carry_their_year(drawn, tmp_path):
    days = pd.bdate_range("2017-01-02", periods=200)
    plots.ic_plot(pd.Series(np.linspace(-0.1, 0.1, 200), index=days), 20, "ic", tmp_path / "x.png")
    figure = drawn[0]
    figure.canvas.draw()
    labels = [label.get_text() for label in figure.axes[0].get_xticklabels() if label.get_text()]
    months = [label for label in labels if label[:3].isalpha() and label[:3] != "201"]
    assert months and all(label.endswith("2017") for label in months)
