"""A clock the test controls: it stands still until told to move."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
# A Monday morning in Stockholm (09:30 CET), far enough from any DST change.
DEFAULT_START = datetime(2025, 3, 3, 8, 30, tzinfo=UTC)


class FixedClock:
    """Implements the ``Clock`` port; ``advance`` moves it forward (thread-safe)."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's time is timezone-aware")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or ``timedelta(**kwargs)``; the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("the clock does not run backwards")
        with self._lock:
            self._now += step
            return self._now

    def today(self) -> date:
        """The local (Stockholm) date, as the service computes it."""
        return self.now().astimezone(STOCKHOLM).date()
