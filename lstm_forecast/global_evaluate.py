"""`evaluate` on a global run: per ticker, across the cross-section, and on tickers it never saw.

In universe, the run's windows are rebuilt from the prices recorded in the bundle (each ticker's rows and
each context series' rows, checked against their fingerprints) on the run's own split; every ticker's scaler
must come back as recorded, or the bundle is damaged. Out of universe (`-t`/`--tickers-file` with `--run`),
tickers the model never trained on are read from the data dir (their context series too, or the recorded rows
where none is cached) and windowed on the same split, each scaled by its own training-period days, and scored
by the same function; their files go to the run's `out_of_universe/` folder. A model with
a ticker embedding knows only its own tickers and refuses.

Files (written into the run, or its out_of_universe/ folder): evaluation.json (the whole report),
summary.csv / summary.json / universe.png (per ticker, as universe mode writes them), ic.png (daily rank IC
with its rolling 60-day mean) and long_short.png (equity curves of the long–short diagnostic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstm_forecast import data, plots
from lstm_forecast.backtest import same_scaler
from lstm_forecast.errors import ForecastError, UsageError
from lstm_forecast.files import atomic_write_text, json_text
from lstm_forecast.global_bundle import GlobalBundle, load_global_bundle
from lstm_forecast.sets import write_summary
from lstm_forecast.train import score_tickers
from lstm_forecast.windows import build_dataset, reasons

EVALUATION_FILE = "evaluation.json"
IC_PLOT = "ic.png"
LONG_SHORT_PLOT = "long_short.png"
OUT_OF_UNIVERSE_DIR = "out_of_universe"
ROLLING_IC_DAYS = 60


@dataclass
class GlobalEvaluation:
    report: dict[str, Any]  # evaluation.json's content
    warnings: list[str]


def evaluate_global(run_dir: Path, tickers: list[str] | None = None, data_dir: Path | None = None) -> GlobalEvaluation:
    """Score the global run in `run_dir` on its own tickers, or on `tickers` it never trained on."""
    from lstm_forecast.train import fingerprint

    bundle = load_global_bundle(run_dir)
    config, warnings = bundle.config, []
    if tickers:
        unseen, warnings = unseen_tickers(bundle, tickers)
        folder = data.resolve_data_dir(data_dir, config.data.dir)
        prices, skipped = {}, {}
        for ticker in unseen:
            try:
                prices[ticker] = data.load_prices(folder, ticker, config.data.start, config.data.end)
            except ForecastError as exc:
                skipped[ticker] = str(exc)
        if not prices:
            raise ForecastError(f"no ticker could be read: {reasons(skipped)}")
        panel = build_dataset(prices, config, split=bundle.split, context_prices=bundle.cached_context(folder))
        skipped |= panel.skipped
        fingerprints = [fingerprint(name, panel.prices[name]) for name in panel.names]
        out, scope = bundle.run_dir / OUT_OF_UNIVERSE_DIR, "out of universe"
    else:
        prices, context_prices = bundle.recorded()
        panel = build_dataset(prices, config, split=bundle.split, context_prices=context_prices)
        check_rebuilt(bundle, panel)
        skipped, fingerprints = dict(bundle.skipped), [record.fingerprint for record in bundle.tickers]
        out, scope = bundle.run_dir, "in universe"
    scores = score_tickers(panel, bundle.members, config, bundle.shape.kind, fingerprints)
    report = {
        "run_dir": str(bundle.run_dir), "run_id": bundle.run_id, "scope": scope, "model": bundle.shape.to_dict(),
        "seeds": bundle.seeds, "training": bundle.training, "trained_on": len(bundle.tickers),
        "skipped": skipped, **scores.report,
    }
    write_outputs(out, report, scores.section)
    return GlobalEvaluation(report=report, warnings=warnings)


def unseen_tickers(bundle: GlobalBundle, tickers: list[str]) -> tuple[list[str], list[str]]:
    """The tickers the run did not train on, and a warning naming those it did (they are left out)."""
    if bundle.shape.ticker_embedding:
        raise UsageError(
            f"{bundle.run_dir}: this global model has a ticker embedding and knows only its "
            f"{len(bundle.tickers)} tickers; train one with model.ticker_embedding 0 to forecast others"
        )
    known = set(bundle.names)
    unseen = [ticker for ticker in tickers if ticker not in known]
    if not unseen:
        raise UsageError("every ticker given was in the run's training universe; evaluate --run alone scores them")
    seen = [ticker for ticker in tickers if ticker in known]
    return unseen, ([f"left out, trained on by this run: {', '.join(seen)}"] if seen else [])


def check_rebuilt(bundle: GlobalBundle, panel: Any) -> None:
    """The rebuilt panel must give back the run's tickers and every one of their scalers."""
    if panel.names != bundle.names or not all(
        same_scaler(days.scaler, record.scaler) for days, record in zip(panel.tickers, bundle.tickers, strict=True)
    ):
        raise ForecastError(
            f"{bundle.run_dir}: rebuilding the run's windows from its recorded prices does not give back its tickers "
            "and scalers; the bundle is damaged or from another version, retrain the model"
        )


def write_outputs(folder: Path, report: dict[str, Any], section: Any) -> None:
    """The per-ticker summary files, the two cross-section charts, then evaluation.json (last: it lists them)."""
    folder.mkdir(exist_ok=True)
    per_ticker = report["per_ticker"]
    write_summary(folder, per_ticker["rows"], per_ticker)
    title = f"{report['scope']} · {report['test']['tickers']} tickers · run {report['run_id']}"
    plots.ic_plot(section.daily_ic, ROLLING_IC_DAYS, f"Daily rank IC · {title}", folder / IC_PLOT)
    plots.long_short_plot(section.equity, f"Long–short diagnostic · {title}", folder / LONG_SHORT_PLOT)
    report["files"] = {**per_ticker.pop("files"), "evaluation": str(folder / EVALUATION_FILE),
                       "ic_plot": str(folder / IC_PLOT), "long_short_plot": str(folder / LONG_SHORT_PLOT)}
    atomic_write_text(folder / EVALUATION_FILE, json_text(report))
