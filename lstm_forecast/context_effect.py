"""What a run's context inputs bought: the same model with and without them, on the same rows and windows.

`evaluate --without-context` (`retrained_without_context`) and `compare --context on,off` both train the model
again without its context inputs and calendar features (`without_context`: the same rows, split, model and
seed, so only the covariates differ), cut both runs' test forecasts to the windows they share (a context gap
may have cost the run with context some) and judge the two by RMSE ratio and the Diebold–Mariano test between
them (`with_vs_without`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.bundle import RunBundle
from lstm_forecast.config import Config
from lstm_forecast.errors import ForecastError, StopRequest
from lstm_forecast.metrics import FORECASTS, diebold_mariano, judgement, p_phrase, rmse_ratio
from lstm_forecast.scoring import PeriodForecasts, period_forecasts, score_forecasts
from lstm_forecast.train import train_as_run
from lstm_forecast.windows import build_dataset

CONTEXT_RUNS = ("on", "off")
CONTEXT_LABELS = {"on": "with context", "off": "without context"}


def without_context(config: Config, split: dict[str, str]) -> Config:
    """`config` without its context inputs and calendar features, split on the dates a run with them recorded:
    the same rows, split, model and seed, so only the covariates differ."""
    return config.model_copy(update={
        "data": config.data.model_copy(update={"context": [], "calendar_features": []}),
        "split": config.split.model_copy(update={"val_start": date.fromisoformat(split["val_start"]),
                                                 "test_start": date.fromisoformat(split["test_start"])}),
    })


def common_windows(on: PeriodForecasts, off: PeriodForecasts) -> tuple[PeriodForecasts, PeriodForecasts]:
    """Both periods cut to the test windows they share: the run with context may have dropped some for a gap."""
    common = np.intersect1d(on.anchor_dates, off.anchor_dates)
    if len(common) == 0:
        raise ForecastError("the runs with and without context share no test window; nothing to compare")
    return windows_at(on, common), windows_at(off, common)


def windows_at(period: PeriodForecasts, anchors: np.ndarray) -> PeriodForecasts:
    """The period's windows anchored on `anchors`."""
    keep = np.isin(period.anchor_dates, anchors)
    names = ("anchor_dates", "target_dates", "anchor_prices", "actual", *FORECASTS)
    return PeriodForecasts(**{name: getattr(period, name)[keep] for name in names})


def with_vs_without(on: PeriodForecasts, off: PeriodForecasts, horizon: int, alpha: float = 0.05) -> dict[str, Any]:
    """The run with context against the one without on the same windows: RMSE ratios (below 1: the context
    helped) and the Diebold–Mariano tests on their squared price errors, as against naive (metrics.py)."""
    squared_on, squared_off = (on.model - on.actual) ** 2, (off.model - off.actual) ** 2
    dm_h1 = diebold_mariano(squared_on[:, 0], squared_off[:, 0], horizon=1)
    dm_all = diebold_mariano(squared_on.mean(axis=1), squared_off.mean(axis=1), horizon=horizon)
    ratio_all = rmse_ratio(on.actual, on.model, off.model)
    return {
        "rmse_ratio_all": ratio_all,
        "rmse_ratio_h1": rmse_ratio(on.actual[:, 0], on.model[:, 0], off.model[:, 0]),
        "dm_h1": {"statistic": dm_h1[0], "pvalue": dm_h1[1]},
        "dm_all": {"statistic": dm_all[0], "pvalue": dm_all[1], "hac_lags": horizon - 1},
        "verdict": context_verdict(dm_all[1], ratio_all, alpha),
    }


def context_verdict(dm_pvalue: float | None, ratio: float | None, alpha: float = 0.05) -> str:
    """A plain sentence: helped or hurt only when the DM p-value is below `alpha` (metrics.judgement)."""
    found = judgement(dm_pvalue, ratio, alpha)
    if found is None:
        return "the context's effect cannot be tested (the Diebold–Mariano test is undefined on these errors)"
    phrase = {"better": "helped", "worse": "hurt", "same": "made no distinguishable difference"}[found]
    return f"the context {phrase} (RMSE with/without {ratio:.3f}, DM {p_phrase(dm_pvalue)})"


def retrained_without_context(
    bundle: RunBundle, config: Config, prices: pd.DataFrame, test: PeriodForecasts, stop: StopRequest | None = None,
) -> dict[str, Any] | None:
    """The run beside the same model trained again without its context inputs, on the same rows, split, config
    and seed (`without_context`; no bundle is written for it), on the test windows both have: RMSE
    ratios with/without, the Diebold–Mariano test between the two and a verdict. None when `stop` ended it."""
    plain = without_context(config, bundle.split)
    dataset = build_dataset(prices, plain)
    trained = train_as_run(dataset, plain, stop=stop)
    if trained is None:
        return None
    model, result = trained
    with_part, without_part = common_windows(test, period_forecasts(model, dataset.test, dataset))
    return {
        "windows": len(with_part),
        "training": {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch},
        "without": score_forecasts(without_part, bundle.shape.kind),
        **with_vs_without(with_part, without_part, dataset.spec.horizon),
    }
