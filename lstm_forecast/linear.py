"""The linear baseline of a global run: ridge regression on exactly the windows the model sees.

Each window's inputs (lookback days × input columns, scaled as the model gets them) are flattened into one row,
an intercept is added, and the day-1 target in the same scaled units is regressed on them:

  * Fitted on the training windows in closed form, β = (X'X + α n D)⁻¹ X'y, with n the training windows and D
    the identity except for the intercept, which is never shrunk. X'X and X'y are summed chunk by chunk from the
    gathered windows, so no (windows × lookback·inputs) design matrix exists at once: memory grows with
    (lookback·inputs)², not with the windows (a 391-ticker panel of ~400k windows × 60 days holds 61² numbers).
  * The penalty α is per window on inputs of about unit variance (each ticker scaled by its own training days),
    so one grid, `PENALTIES`, suits every panel. It is chosen on the validation windows by the mean daily rank
    IC of the forecasts mapped back to returns, since ranking across tickers is what the baseline is compared
    on; where no validation day has enough tickers to rank, by the validation mean squared error.
  * Its forecasts go back to prices with each ticker's own scaler, like the model's (`Dataset.to_prices`).

A run's ridge is refitted from the bundle's recorded prices when the run is evaluated, so every bundle, old or
new, has one and the same one; out of universe, the run's own ridge forecasts the unseen tickers' windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.crosssection import rank_ic
from lstm_forecast.errors import ForecastError
from lstm_forecast.model import memory_limit
from lstm_forecast.windows import Dataset, GatheredWindows, Windows

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
CHUNK_BYTES = 32 * 1024**2  # one chunk of flattened windows in float64: ~32 MiB, whatever the panel
# X'X, the penalised copy and the solver's factor are each (d × d) float64; the chunk is gathered in float32
# and copied to float64 beside them.
SQUARE_COPIES = 3
CHUNK_COPIES = 2


@dataclass(frozen=True)
class Ridge:
    """A fitted ridge: the coefficients of the chosen penalty (the intercept last) and how it was chosen."""

    coefficients: np.ndarray  # float64 (lookback × inputs + 1,)
    penalty: float
    chosen_by: str  # "validation rank IC" or "validation MSE"
    validation: list[dict[str, Any]]  # per penalty in the grid: penalty, rank_ic (mean daily), mse
    windows: int  # training windows it was fitted on

    def predict(self, inputs: np.ndarray | GatheredWindows) -> np.ndarray:
        """Day-1 forecasts (n,) in the scaled target units of the windows' own tickers."""
        return predict(inputs, self.coefficients[:, None])[:, 0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what was fitted and how the penalty was chosen (not the coefficients)."""
        return {"model": "ridge on the flattened lookback inputs + intercept, day-1 target",
                "penalty": self.penalty, "chosen_by": self.chosen_by, "training_windows": self.windows,
                "coefficients": int(self.coefficients.size), "validation": [dict(row) for row in self.validation]}


def width(inputs: np.ndarray | GatheredWindows) -> int:
    """Columns of the design matrix: every input of every lookback day, and the intercept."""
    if isinstance(inputs, GatheredWindows):
        return inputs.lookback * inputs.values.shape[1] + 1
    return math.prod(inputs.shape[1:]) + 1


def chunk_rows(columns: int) -> int:
    """Windows per chunk, so that one chunk of the design matrix is about CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // (8 * columns))


def check_memory(columns: int, limit: int | None = None) -> None:
    """Refuse, in one line, a ridge whose normal equations would not fit in memory (`limit`: memory_limit())."""
    limit = memory_limit() if limit is None else limit
    needed = (SQUARE_COPIES * columns + CHUNK_COPIES * chunk_rows(columns)) * columns * 8
    if needed > limit:
        raise ForecastError(
            f"the linear baseline's {columns:,} coefficients (window.lookback × inputs + 1) need about "
            f"{needed / 1024**3:.1f} GiB, more than the {limit / 1024**3:.1f} GiB allowed here (half the memory); "
            "lower window.lookback or use fewer data.features"
        )


def design_chunks(inputs: np.ndarray | GatheredWindows) -> Iterator[tuple[slice, np.ndarray]]:
    """The design matrix chunk by chunk: (rows, float64 (m, width) with the intercept's 1 last)."""
    columns = width(inputs)
    step = chunk_rows(columns)
    for start in range(0, len(inputs), step):
        rows = slice(start, min(start + step, len(inputs)))
        if isinstance(inputs, GatheredWindows):
            windows = GatheredWindows(inputs.values, inputs.ends[rows], inputs.lookback).materialise()
        else:
            windows = inputs[rows]
        design = np.ones((len(windows), columns))
        design[:, :-1] = windows.reshape(len(windows), -1)
        yield rows, design


def normal_equations(inputs: np.ndarray | GatheredWindows, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X'X (d, d) and X'y (d,) summed over the windows, in float64."""
    columns = width(inputs)
    gram, moment = np.zeros((columns, columns)), np.zeros(columns)
    targets = np.asarray(targets, dtype=np.float64)
    for rows, design in design_chunks(inputs):
        gram += design.T @ design
        moment += design.T @ targets[rows]
    return gram, moment


def solve(gram: np.ndarray, moment: np.ndarray, windows: int, penalties: tuple[float, ...]) -> np.ndarray:
    """The ridge coefficients (d, P), one column per penalty: (X'X + α n D) β = X'y, the intercept unpenalised.

    X'X + α n D is positive definite for α > 0 and n ≥ 1 (the intercept's own diagonal is n), so it always solves."""
    shrunk = np.ones(len(moment))
    shrunk[-1] = 0.0
    return np.stack([np.linalg.solve(gram + np.diag(alpha * windows * shrunk), moment) for alpha in penalties],
                    axis=1)


def predict(inputs: np.ndarray | GatheredWindows, coefficients: np.ndarray) -> np.ndarray:
    """X β chunk by chunk: (n, P) for coefficients (d, P)."""
    out = np.empty((len(inputs), coefficients.shape[1]))
    for rows, design in design_chunks(inputs):
        out[rows] = design @ coefficients
    return out


def day_one_returns(dataset: Dataset, period: Windows, scaled: np.ndarray) -> np.ndarray:
    """Scaled day-1 forecasts (n,) of `period` as log returns over the anchor price, each ticker by its own scaler."""
    prices = dataset.to_prices(period, np.asarray(scaled, dtype=np.float64)[:, None])
    return np.log(prices[:, 0] / period.anchor_prices)


def panel(dataset: Dataset, period: Windows, values: np.ndarray) -> pd.DataFrame:
    """One value per window as a days × tickers frame (anchor days as rows)."""
    long = pd.DataFrame({"day": period.anchor_dates, "ticker": np.asarray(dataset.names)[period.ticker],
                         "value": values})
    return long.pivot(index="day", columns="ticker", values="value")


def fit_ridge(dataset: Dataset, penalties: tuple[float, ...] = PENALTIES) -> Ridge:
    """The ridge on `dataset`'s training windows, its penalty chosen on the validation windows (module doc)."""
    train, val = dataset.train, dataset.val
    check_memory(width(train.inputs))
    gram, moment = normal_equations(train.inputs, train.targets[:, 0])
    solutions = solve(gram, moment, len(train), penalties)
    forecasts = predict(val.inputs, solutions)
    mse = np.mean((forecasts - val.targets[:, :1].astype(np.float64)) ** 2, axis=0)
    realised = panel(dataset, val, np.log(val.actual_prices[:, 0] / val.anchor_prices))
    ics = np.array([rank_ic(panel(dataset, val, day_one_returns(dataset, val, column)), realised).mean()
                    for column in forecasts.T])
    by_ic = bool(np.isfinite(ics).any())
    best = int(np.nanargmax(ics)) if by_ic else int(np.argmin(mse))
    validation = [{"penalty": alpha, "rank_ic": float(ic) if np.isfinite(ic) else None, "mse": float(error)}
                  for alpha, ic, error in zip(penalties, ics, mse, strict=True)]
    return Ridge(coefficients=solutions[:, best], penalty=penalties[best],
                 chosen_by="validation rank IC" if by_ic else "validation MSE", validation=validation,
                 windows=len(train))
