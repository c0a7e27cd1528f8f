"""Swedish working days (*arbetsdagar*) and local wall-clock times for meeting dates.

Pure computation: the holiday rules come from the ``holidays`` package, the time zone
rules from the zoneinfo database (``tzdata`` where the system has none).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from holidays.countries.sweden import Sweden

STOCKHOLM = ZoneInfo("Europe/Stockholm")

_SATURDAY = 5


class WorkingDays:
    """Monday to Friday, except public holidays (*allmänna helgdagar*) and the de facto
    holidays midsummer, Christmas and New Year's eves (*midsommarafton, julafton,
    nyårsafton*), which are days off in practice though not in law.

    Holiday names are Swedish (``"Midsommarafton"``), whatever the process locale.
    """

    def __init__(self) -> None:
        # Built without years: the object fills in a year the first time a date in it is
        # looked up, so any year works. ``language`` is pinned because the names would
        # otherwise follow the process's gettext locale.
        self._holidays = Sweden(categories=("public", "de_facto"), include_sundays=False, language="sv")
        # That lazy fill-in mutates the object; sync handlers may share it across threads.
        self._lock = threading.Lock()
        # Each date decided once: the rules never change, and a schedule's timers ask again
        # and again (a dict's get and set are atomic, so threads may share it).
        self._working: dict[date, bool] = {}

    def holiday_name(self, d: date) -> str | None:
        """The holiday's Swedish name, or None on an ordinary day (weekends included)."""
        with self._lock:
            name: str | None = self._holidays.get(d)
        return name

    def is_working_day(self, d: date) -> bool:
        """Monday to Friday and not a (de facto) holiday."""
        known = self._working.get(d)
        if known is None:
            known = self._working[d] = d.weekday() < _SATURDAY and self.holiday_name(d) is None
        return known

    def on_or_after(self, d: date) -> date:
        """``d`` if it is a working day, else the next working day."""
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def add_working_days(self, d: date, n: int) -> date:
        """The ``n``-th working day after ``d`` (``d`` itself never counts); ``n >= 1``."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        for _ in range(n):
            d = self.on_or_after(d + timedelta(days=1))
        return d


@lru_cache(maxsize=65_536)  # pure, and asked for the same timers again at every case event
def local_datetime(d: date, at: time, tz: ZoneInfo = STOCKHOLM) -> datetime:
    """The aware datetime of wall-clock time ``at`` on ``d`` in ``tz``.

    10:00 stays 10:00 local whatever the season (+01:00 in winter, +02:00 in summer).
    A time in the spring-forward gap (02:30 on the last Sunday of March) moves forward
    by the gap to a time that exists; an ambiguous one in the autumn takes the first,
    summer-time occurrence.
    """
    if at.tzinfo is not None:
        raise ValueError("at must be a naive wall-clock time")
    wall = datetime.combine(d, at.replace(fold=0), tzinfo=tz)  # fold=0: the first (cached alike)
    # The round trip through UTC normalises a nonexistent wall time; it leaves the rest as is.
    return wall.astimezone(UTC).astimezone(tz)
