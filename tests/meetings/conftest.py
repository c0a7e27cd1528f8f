"""Fixtures of the meetings tests: a real meetings store (SQLite in a temporary directory)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.meetings.application.service import MeetingsService
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import Rules
from services.meetings.infrastructure.store import MeetingStore, migrate
from tests.bus.conftest import run_relay  # noqa: F401 - a fixture these tests use
from tests.meetings.feed import CaseFeed
from tests.support.clock import FixedClock


@pytest.fixture(scope="session")
def working_days() -> WorkingDays:
    return WorkingDays()


@pytest.fixture
def meetings_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'meetings.db'}"
    migrate(url)
    return url


@pytest.fixture
def meeting_store(meetings_url: str) -> Iterator[MeetingStore]:
    store = MeetingStore(meetings_url)
    yield store
    store.close()


@pytest.fixture
def meetings_clock() -> FixedClock:
    return FixedClock(datetime(2026, 1, 5, 8, 0, tzinfo=UTC))


@pytest.fixture
def meetings(
    meeting_store: MeetingStore, working_days: WorkingDays, meetings_clock: FixedClock
) -> MeetingsService:
    return MeetingsService(meeting_store, Rules(), working_days, meetings_clock)


@pytest.fixture
def feed(meetings: MeetingsService) -> CaseFeed:
    return CaseFeed(meetings)
