"""The real clock (UTC), shared by the services' composition roots. Tests inject their own."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Implements every service's ``Clock`` port."""

    def now(self) -> datetime:
        return datetime.now(UTC)
