"""Trading sessions: forecast days skip weekends and each exchange's own holidays."""

from __future__ import annotations

from datetime import date

import pytest

from lstm_forecast.errors import UsageError
from lstm_forecast.sessions import TradingCalendar, calendar_for


def next_sessions(after: date, count: int, name: str = "XNYS") -> list[date]:
    """The `count` sessions of exchange `name` after `after`, through the calendar predict builds."""
    return calendar_for(name, after, count).next_sessions(after, count)


def days(*isos: str) -> list[date]:
    return [date.fromisoformat(iso) for iso in isos]


def test_after_a_friday_the_next_sessions_start_on_monday():
    assert next_sessions(date(2026, 3, 13), 5) == days(
        "2026-03-16", "2026-03-17", "2026-03-18", "2026-03-19", "2026-03-20"
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("2025-12-31", ["2026-01-02"]),  # New Year's Day
        ("2025-12-24", ["2025-12-26"]),  # Christmas
        ("2025-04-17", ["2025-04-21"]),  # Good Friday, then the weekend
        ("2026-04-02", ["2026-04-06"]),  # Good Friday 2026
        ("2025-06-18", ["2025-06-20"]),  # Juneteenth
    ],
)
def test_holidays_are_skipped(after, expected):
    assert next_sessions(date.fromisoformat(after), len(expected)) == days(*expected)


def test_a_forecast_across_the_year_end_skips_both_holidays():
    assert next_sessions(date(2025, 12, 23), 5) == days(
        "2025-12-24", "2025-12-26", "2025-12-29", "2025-12-30", "2025-12-31"
    )


def test_an_anchor_that_is_not_a_session_still_counts_from_the_next_one():
    assert next_sessions(date(2026, 3, 14), 1) == days("2026-03-16")  # a Saturday


def test_the_exchange_decides_the_holidays():
    # London closes on Christmas and Boxing Day; New York only on Christmas.
    assert next_sessions(date(2025, 12, 24), 1, "XLON") == days("2025-12-29")
    assert next_sessions(date(2025, 12, 24), 1, "XNYS") == days("2025-12-26")


def test_sessions_between_counts_only_the_days_strictly_inside():
    calendar = TradingCalendar("XNYS", date(2025, 12, 1), date(2026, 2, 1))
    # 22, 23, 24, 26, 29, 30, 31 December and 2 January.
    assert calendar.sessions_between(date(2025, 12, 19), date(2026, 1, 5)) == 8
    assert calendar.sessions_between(date(2025, 12, 19), date(2025, 12, 22)) == 0
    assert calendar.sessions_between(date(2026, 1, 5), date(2025, 12, 19)) == 0


def test_an_unknown_calendar_is_a_usage_error():
    with pytest.raises(UsageError, match=r"data\.calendar 'XNOPE': unknown exchange calendar"):
        next_sessions(date(2026, 3, 13), 1, "XNOPE")


def test_the_calendar_is_checked_by_name_before_training():
    from lstm_forecast.sessions import check_calendar

    check_calendar("XNYS")
    check_calendar("NYSE")  # an alias exchange-calendars knows
    with pytest.raises(UsageError, match=r"data\.calendar 'FOO': unknown exchange calendar"):
        check_calendar("FOO")


@pytest.mark.parametrize("name", ["XBEL", "ASEX"])
def test_a_calendar_listed_but_not_implemented_is_refused_by_name(name):
    # exchange-calendars lists these, but building one raises NotImplementedError.
    from lstm_forecast.sessions import check_calendar, exchange_calendar

    with pytest.raises(UsageError, match=rf"data\.calendar '{name}': exchange-calendars lists this calendar but "
                                         "cannot compute its sessions"):
        check_calendar(name)
    with pytest.raises(UsageError, match="cannot compute its sessions"):
        exchange_calendar(name, "2020-01-02", "2020-02-01")
