"""Trading sessions of an exchange: the dates a forecast's steps fall on, and how stale a cache is.

A forecast step is one trading session, so step 1 after Friday is Monday, and after Christmas Eve it
is the 26th. The exchange-calendars package knows each exchange's weekends and holidays (for XNYS:
Good Friday, Juneteenth, Thanksgiving, ...), so no holiday list is written by hand here.
"""

from __future__ import annotations

import functools
import warnings
from datetime import date, timedelta
from typing import Any

import numpy as np

from lstm_forecast.errors import ForecastError, UsageError, quote

# A week holds at most five sessions, so n sessions fit in 7n/5 calendar days; the margin covers the
# longest closures the calendars know (a week of Lunar New Year on XSHG) with room to spare.
DAYS_MARGIN = 31
PROBE_START = date(2020, 1, 2)  # a stretch every calendar exchange-calendars builds by default covers
CALENDAR_EXAMPLES = "XNYS (New York), XLON (London) or XHKG (Hong Kong)"


def check_calendar(name: str, key: str = "data.calendar") -> None:
    """UsageError (naming `key`) unless `name` is an exchange-calendars code whose sessions that library can
    compute: checked before training, since only `predict` builds the calendar, and a run trained for an exchange
    it cannot describe could never forecast."""
    if not known_calendar(name):
        raise unknown_calendar(name, key)
    # exchange-calendars lists a few calendars whose session rules are not implemented (ASEX, XBEL, XBSE and
    # XCYS in 4.x raise NotImplementedError when built): build a small one once to know it can answer.
    try:
        probe_calendar(name)
    except UsageError:
        raise unanswerable_calendar(name, key) from None


def known_calendar(name: str) -> bool:
    """Whether exchange-calendars knows `name` (a code or an alias)."""
    import exchange_calendars  # lazily: it pulls in pandas and its own holiday rules

    return name in exchange_calendars.get_calendar_names(include_aliases=True)


@functools.cache
def probe_calendar(name: str) -> None:
    """Build `name`'s calendar over a few weeks (cached: a calendar that answered once answers again)."""
    exchange_calendar(name, PROBE_START, PROBE_START + timedelta(days=DAYS_MARGIN))


def unknown_calendar(name: str, key: str = "data.calendar") -> UsageError:
    return UsageError(f"{key} {quote(name)}: unknown exchange calendar; expected an exchange-calendars code such "
                      f"as {CALENDAR_EXAMPLES}")


def unanswerable_calendar(name: str, key: str = "data.calendar") -> UsageError:
    return UsageError(f"{key} {quote(name)}: exchange-calendars lists this calendar but cannot compute its "
                      f"sessions; choose another, such as {CALENDAR_EXAMPLES}")


def exchange_calendar(name: str, start: date | str, end: date | str) -> Any:
    """exchange-calendars' calendar of `name` from `start` to `end`; an unknown name is a usage error."""
    import exchange_calendars  # lazily: it pulls in pandas and its own holiday rules

    try:
        with warnings.catch_warnings():
            # exchange-calendars 4.13 reads Series.values of tz-aware times, which pandas 3.1 deprecates.
            warnings.filterwarnings("ignore", "Series.values returning", DeprecationWarning)
            return exchange_calendars.get_calendar(name, start=start, end=end)
    except exchange_calendars.errors.InvalidCalendarName:
        raise unknown_calendar(name) from None
    except NotImplementedError:  # a listed calendar whose rules exchange-calendars has not written
        raise unanswerable_calendar(name) from None
    except (exchange_calendars.errors.CalendarError, ValueError) as exc:
        raise ForecastError(
            f"the {name} calendar cannot describe {start} to {end}: {' '.join(str(exc).split())}"
        ) from None


class TradingCalendar:
    """One exchange's sessions from `start` to `end`; building a calendar costs about 0.1 s, so
    build one covering every question and ask it several."""

    def __init__(self, name: str, start: date, end: date) -> None:
        calendar = exchange_calendar(name, start, end)
        self.name = name
        self.start, self.end = start, end
        self._sessions = np.asarray(calendar.sessions.values, dtype="datetime64[D]")

    @property
    def sessions(self) -> np.ndarray:
        """Every session from `start` to `end`, as sorted datetime64[D]."""
        return self._sessions

    def next_sessions(self, after: date, count: int) -> list[date]:
        """The first `count` sessions strictly after `after` (which need not be a session itself)."""
        first = int(np.searchsorted(self._sessions, np.datetime64(after, "D"), side="right"))
        chosen = self._sessions[first : first + count]
        if len(chosen) < count:
            raise ValueError(f"the calendar ends on {self.end}: too early for {count} sessions after {after}")
        return [day.item() for day in chosen]

    def sessions_between(self, after: date, before: date) -> int:
        """How many sessions lie strictly between `after` and `before` (0 when `before` is not later)."""
        low = np.searchsorted(self._sessions, np.datetime64(after, "D"), side="right")
        high = np.searchsorted(self._sessions, np.datetime64(before, "D"), side="left")
        return max(int(high - low), 0)


def calendar_for(name: str, anchor: date, steps: int, today: date | None = None) -> TradingCalendar:
    """A calendar spanning `anchor` to its next `steps` sessions, and to `today` when that is later."""
    latest = max(anchor, today or anchor)
    start = anchor - timedelta(days=DAYS_MARGIN)
    return TradingCalendar(name, start, latest + timedelta(days=2 * steps + DAYS_MARGIN))
