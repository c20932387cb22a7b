"""Data-quality rules: the defects in a price history that would fool a model and its judge, found and acted on.

A folder of daily prices can join two different securities into one series (a shell company's penny quotes,
a year and a half of nothing, then the real stock at a thousand times the price), or fill a halted stock's
days with its last price. Windows across such a seam teach the model a move no market made, and one such
series can decide a whole set's verdict. The rules, each with its threshold here and the action it takes:

* **long gap**: more than GAP_SESSIONS exchange sessions missing between two rows → the history is cut to the
  segment after it;
* **level break**: a move from one row to the next beyond BREAK_FACTOR either way, in Close or Adj Close →
  cut to the segment after it;
* **stale run**: STALE_GAP_CLOSES or more identical closes in a row, a gap filled in with the last price →
  cut to the segment after it; STALE_NOTE_CLOSES or more → a note;
* **empty rows**: rows without prices, dropped by the reader (prices.validate_prices) → counted in a note.

Only the segment after the last cut is kept; fewer than MIN_ROWS_AFTER_CUT rows left is a refusal, with the
reason. The functions are pure: the reader (`data.read_checked`) applies them to every history it returns, so
fetch, train, evaluate, predict and the context series all see the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from lstm_forecast.errors import ForecastError

# Two trading weeks. The exchange calendar already knows holidays and market-wide closures (a week of Lunar New
# Year, the four days after 9/11), so missing sessions are the series' own: a stock halted, or a vendor's hole.
# Up to two weeks the windows bridge it as an ordinary (larger) move; beyond, a 60-day window would mix two
# regimes, and across the longest such holes in real data (BHF: 395 sessions) the series is another security.
GAP_SESSIONS = 10

# A tripling or a fall to a third from one row to the next. Among 391 S&P 500 stocks over 2012–2017 no day moved
# that far except BHF's splice; real crashes of that size are rare enough that cutting the history before one
# (with a note) costs less than a model taught that prices jump ×1000.
BREAK_FACTOR = 3.0

# Identical closes in a row. Among the same 391 stocks the longest run is 4 (a quiet price on a tick grid); 5 is
# worth a note. Eleven identical closes are ten sessions without a trade-driven change: a gap filled in with the
# last price, treated as the long gap it is.
STALE_NOTE_CLOSES = 5
STALE_GAP_CLOSES = GAP_SESSIONS + 1

# After a cut, what is left must hold a training, a validation and a test period of any use: about a year of
# sessions. Fewer is a refusal naming the cut, never a model judged on a few weeks.
MIN_ROWS_AFTER_CUT = 250

CHECKED_COLUMNS = ("Close", "Adj Close")  # the prices a run may read (data.price_column)

GAP, BREAK, STALE, EMPTY = "long_gap", "level_break", "stale_run", "empty_rows"
CUT, NOTE = "cut", "note"


@dataclass(frozen=True)
class Finding:
    """One defect: its kind, the days it spans, what was done and why in words."""

    kind: str  # GAP, BREAK, STALE or EMPTY
    first: date  # the last good row before a gap or break; a stale run's or the empty rows' first day
    last: date  # the first row after it; a stale run's last day
    action: str  # CUT or NOTE
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "first": self.first.isoformat(), "last": self.last.isoformat(),
                "action": self.action, "detail": self.detail}


@dataclass(frozen=True)
class Checked:
    """A history after the rules: the rows kept and every finding, in date order."""

    rows: pd.DataFrame
    findings: list[Finding]

    @property
    def notes(self) -> list[str]:
        """What the rules did, in words, for a run's notes and fetch's warnings: the cut (the last defect that
        made it, and how many earlier ones the cut part held) and every note on the rows kept."""
        cuts = [finding for finding in self.findings if finding.action == CUT]
        notes = []
        if cuts:
            earlier = f" (the last of {len(cuts)} gaps, breaks and stale runs found)" if len(cuts) > 1 else ""
            kept_from = self.rows.index[0].date()
            notes.append(f"{cuts[-1].detail}; the history was cut to the rows from {kept_from} on{earlier}")
        notes += [finding.detail for finding in self.findings if finding.action == NOTE]
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The bundle's `data_quality` record: the rules' thresholds, the findings and the rows kept."""
        return {"rules": rules(), "findings": [finding.to_dict() for finding in self.findings],
                "first": self.rows.index[0].date().isoformat(), "rows": len(self.rows)}


def rules() -> dict[str, Any]:
    """The thresholds, as recorded beside the findings."""
    return {"gap_sessions": GAP_SESSIONS, "break_factor": BREAK_FACTOR, "stale_note_closes": STALE_NOTE_CLOSES,
            "stale_gap_closes": STALE_GAP_CLOSES, "min_rows_after_cut": MIN_ROWS_AFTER_CUT}


def check_prices(
    prices: pd.DataFrame, ticker: str, sessions: np.ndarray | None = None, empty_rows: int = 0,
    first_empty: date | None = None,
) -> Checked:
    """`prices` (the canonical frame, prices.validate_prices) after the rules: cut to the segment after the last
    long gap, level break or long stale run, with the findings. `sessions` are the exchange's sessions (sorted
    datetime64[D]) covering the rows, None to count weekdays; `empty_rows` the rows the reader dropped.
    ForecastError when too little is left after a cut."""
    days = prices.index.to_numpy().astype("datetime64[D]")
    findings = [*_gaps(days, sessions), *_breaks(prices, days), *_stale_runs(prices, days)]
    if empty_rows:
        day = first_empty or prices.index[0].date()
        findings.append(Finding(EMPTY, day, day, NOTE,
                                f"{empty_rows} empty row(s) without prices dropped (first {day})"))
    findings.sort(key=lambda finding: (finding.last, finding.first))
    cuts = [finding for finding in findings if finding.action == CUT]
    if not cuts:
        return Checked(prices, findings)
    kept = prices[prices.index >= pd.Timestamp(cuts[-1].last)]
    if cuts[-1].kind == STALE:  # its rows were filled in with one price: kept from the row after it
        kept = prices[prices.index > pd.Timestamp(cuts[-1].last)]
    if len(kept) < MIN_ROWS_AFTER_CUT:
        raise ForecastError(
            f"{ticker}: {cuts[-1].detail}; only {len(kept)} row(s) after it (at least {MIN_ROWS_AFTER_CUT} are "
            "needed after a cut): refused"
        )
    # Notes on the part cut away would describe rows no longer used.
    findings = [finding for finding in findings if finding.action == CUT or finding.last >= kept.index[0].date()
                or finding.kind == EMPTY]
    return Checked(kept, findings)


def missing_sessions(days: np.ndarray, sessions: np.ndarray | None) -> np.ndarray:
    """For each pair of consecutive rows, how many sessions lie strictly between them: the exchange's where
    `sessions` covers both days, weekdays elsewhere."""
    before, after = days[:-1], days[1:]
    weekdays = np.busday_count(before + 1, after)
    if sessions is None or not len(sessions):
        return weekdays
    counted = np.searchsorted(sessions, after, side="left") - np.searchsorted(sessions, before, side="right")
    covered = (before >= sessions[0]) & (after <= sessions[-1])
    return np.where(covered, counted, weekdays)


def _gaps(days: np.ndarray, sessions: np.ndarray | None) -> list[Finding]:
    missing = missing_sessions(days, sessions)
    return [Finding(GAP, _day(days[i]), _day(days[i + 1]), CUT,
                    f"a long gap: {missing[i]} sessions missing between {_day(days[i])} and {_day(days[i + 1])}")
            for i in np.flatnonzero(missing > GAP_SESSIONS)]


def _breaks(prices: pd.DataFrame, days: np.ndarray) -> list[Finding]:
    """Moves between consecutive rows beyond BREAK_FACTOR in any checked column, named by the largest."""
    columns = [column for column in CHECKED_COLUMNS if column in prices]
    ratios = np.column_stack([prices[column].to_numpy(dtype=np.float64) for column in columns])
    moves = np.abs(np.diff(np.log(ratios), axis=0))
    found = []
    for i in np.flatnonzero(moves.max(axis=1) > math.log(BREAK_FACTOR)):
        column = columns[int(np.argmax(moves[i]))]
        then, now = prices[column].iloc[i], prices[column].iloc[i + 1]
        found.append(Finding(BREAK, _day(days[i]), _day(days[i + 1]), CUT,
                             f"a level break: {column} {then:.4g} on {_day(days[i])} to {now:.4g} on "
                             f"{_day(days[i + 1])} (×{now / then:.3g}), a move no market explains"))
    return found


def _stale_runs(prices: pd.DataFrame, days: np.ndarray) -> list[Finding]:
    """Runs of at least STALE_NOTE_CLOSES identical closes; from STALE_GAP_CLOSES on, a cut."""
    close = prices["Close"].to_numpy(dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, close[1:] != close[:-1], True])  # where each run of equal closes starts
    lengths = np.diff(starts)
    found = []
    for run in np.flatnonzero(lengths >= STALE_NOTE_CLOSES):
        start, length = int(starts[run]), int(lengths[run])
        action = CUT if length >= STALE_GAP_CLOSES else NOTE
        first, last = _day(days[start]), _day(days[start + length - 1])
        found.append(Finding(STALE, first, last, action,
                             f"a stale run: {length} identical closes ({close[start]:.4g}) from {first} to {last}"))
    return found


def _day(value: np.datetime64) -> date:
    return value.astype("datetime64[D]").item()
