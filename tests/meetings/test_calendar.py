"""Swedish working days and local meeting times (``services.meetings.domain.calendar``)."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.meetings.domain.calendar import STOCKHOLM, WorkingDays, local_datetime

WORKING_DAYS = WorkingDays()

any_date = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2026, 6, 19), "Midsommarafton"),  # de facto holiday, a Friday
        (date(2026, 6, 20), "Midsommardagen"),  # a Saturday anyway
        (date(2026, 12, 24), "Julafton"),
        (date(2026, 12, 31), "Nyårsafton"),
        (date(2026, 5, 14), "Kristi himmelsfärdsdag"),
        (date(2026, 4, 6), "Annandag påsk"),
        (date(2026, 4, 3), "Långfredagen"),
        (date(2027, 1, 6), "Trettondedag jul"),
    ],
)
def test_holidays_are_not_working_days(day: date, name: str) -> None:
    assert not WORKING_DAYS.is_working_day(day)
    assert WORKING_DAYS.holiday_name(day) == name


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 4, 2),  # Maundy Thursday (skärtorsdagen) is a working day
        date(2026, 6, 18),
        date(2026, 12, 23),
        date(2026, 12, 30),
        date(2027, 1, 4),
    ],
)
def test_ordinary_weekdays_are_working_days(day: date) -> None:
    assert WORKING_DAYS.is_working_day(day)
    assert WORKING_DAYS.holiday_name(day) is None


def test_weekends_are_not_working_days_but_have_no_holiday_name() -> None:
    assert not WORKING_DAYS.is_working_day(date(2026, 11, 7))  # Saturday
    assert not WORKING_DAYS.is_working_day(date(2026, 11, 8))  # Sunday
    assert WORKING_DAYS.holiday_name(date(2026, 11, 8)) is None


def test_any_year_is_loaded_on_demand() -> None:
    assert WORKING_DAYS.holiday_name(date(2087, 12, 24)) == "Julafton"
    assert WORKING_DAYS.holiday_name(date(1995, 6, 23)) == "Midsommarafton"


def test_on_or_after() -> None:
    assert WORKING_DAYS.on_or_after(date(2026, 12, 24)) == date(2026, 12, 28)
    assert WORKING_DAYS.on_or_after(date(2026, 6, 19)) == date(2026, 6, 22)
    assert WORKING_DAYS.on_or_after(date(2026, 12, 22)) == date(2026, 12, 22)


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2026, 4, 2), 1, date(2026, 4, 7)),  # over Good Friday, the weekend, Easter Monday
        (date(2026, 4, 1), 3, date(2026, 4, 8)),
        (date(2026, 4, 4), 1, date(2026, 4, 7)),  # from a non-working day
        (date(2026, 12, 23), 1, date(2026, 12, 28)),
        (date(2026, 12, 23), 4, date(2027, 1, 4)),  # over New Year's Eve and Day
        (date(2026, 12, 23), 6, date(2027, 1, 7)),  # and Epiphany
        (date(2026, 11, 2), 10, date(2026, 11, 16)),
    ],
)
def test_add_working_days(start: date, n: int, expected: date) -> None:
    assert WORKING_DAYS.add_working_days(start, n) == expected


@pytest.mark.parametrize("n", [0, -1])
def test_add_working_days_needs_at_least_one(n: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WORKING_DAYS.add_working_days(date(2026, 1, 5), n)


@given(any_date)
def test_on_or_after_is_the_first_working_day_from_d(d: date) -> None:
    result = WORKING_DAYS.on_or_after(d)
    assert result >= d
    assert WORKING_DAYS.is_working_day(result)
    day = d
    while day < result:
        assert not WORKING_DAYS.is_working_day(day)
        day += timedelta(days=1)


@given(any_date, st.integers(min_value=1, max_value=30))
def test_add_working_days_counts_working_days_only(d: date, n: int) -> None:
    result = WORKING_DAYS.add_working_days(d, n)
    assert WORKING_DAYS.is_working_day(result)
    between = [d + timedelta(days=i) for i in range(1, (result - d).days + 1)]
    assert sum(WORKING_DAYS.is_working_day(day) for day in between) == n


@pytest.mark.parametrize(
    ("day", "offset_hours"),
    [
        (date(2026, 3, 28), 1),  # the day before summer time
        (date(2026, 3, 29), 2),  # summer time began at 02:00 that morning
        (date(2026, 3, 30), 2),
        (date(2026, 10, 24), 2),
        (date(2026, 10, 25), 1),  # summer time ended at 03:00 that morning
        (date(2026, 10, 26), 1),
    ],
)
def test_local_datetime_keeps_the_wall_clock_across_dst(day: date, offset_hours: int) -> None:
    at = local_datetime(day, time(10))
    assert at.tzinfo is STOCKHOLM
    assert (at.date(), at.hour, at.minute) == (day, 10, 0)
    assert at.utcoffset() == timedelta(hours=offset_hours)


def test_local_datetime_moves_a_nonexistent_time_forward() -> None:
    at = local_datetime(date(2026, 3, 29), time(2, 30))
    assert (at.hour, at.minute) == (3, 30)
    assert at.utcoffset() == timedelta(hours=2)


def test_local_datetime_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        local_datetime(date(2026, 1, 5), time(10, tzinfo=STOCKHOLM))
