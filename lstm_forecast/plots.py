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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled targets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return save(fig, path)


def save(fig: plt.Figure, path: Path) -> Path:
    """Save atomically and close; a fixed DPI and no timestamp metadata keep files reproducible."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
