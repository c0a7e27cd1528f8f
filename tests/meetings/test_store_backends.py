"""The meetings store on both backends: decisions are stored, a redelivery changes nothing,
timers fire. (On PostgreSQL eventsourcing writes in a psycopg pipeline, where rowcount
is -1: the position and revision checks must not depend on it.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.meetings.application.service import CaseEventIn, MeetingsService, Requester
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import Rules
from services.meetings.infrastructure.store import MeetingStore, StoreNotMigrated, migrate
from tests.meetings.feed import CLIENT, COORDINATOR, REGION_PSYCH, SOCIAL, CaseFeed
from tests.support.clock import FixedClock
from vss_contracts import case_events as ce
from vss_contracts.meeting_events import TYPE_PREFIX
from vss_contracts.types import Principal


@pytest.fixture
def service(store_url: str, working_days: WorkingDays) -> Iterator[MeetingsService]:
    migrate(store_url)
    store = MeetingStore(store_url)
    yield MeetingsService(store, Rules(), working_days, FixedClock(datetime(2026, 1, 5, 8, 0, tzinfo=UTC)))
    store.close()


def test_decisions_are_stored_once_and_timers_fire(service: MeetingsService) -> None:
    feed = CaseFeed(service)
    day = date(2026, 1, 5)
    feed.open(day)
    feed.assign(day)
    feed.consent(day)
    feed.summarise(day)
    types = [e.type.removeprefix(TYPE_PREFIX) for e in service.store.events(feed.case_id)]
    assert types == ["MeetingScheduled.v3"]
    # The same sequence again (a redelivery) is refused and stores nothing.
    assert service.applied_through() == feed.sequence[0]
    assert not service.apply_case_event(
        case_id=feed.case_id,
        event_id=feed.event_ids[-1],
        recorded_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        data=ce.MappingSummarised(
            summarised_on=day, participants=[CLIENT, COORDINATOR], wants_to_change="x", obstacles="y"
        ),
        stream_sequence=feed.sequence[0],
    )
    assert len(service.store.events(feed.case_id)) == 1
    # Three weeks on, the reminders and the change-rating request are due and fire once.
    fired = service.fire_due(datetime(2026, 2, 1, tzinfo=UTC))
    assert fired >= 2
    assert service.fire_due(datetime(2026, 2, 1, tzinfo=UTC)) == 0


class _Recorded:
    """Takes the case events a feed sends, to apply them in batches."""

    def __init__(self) -> None:
        self.events: list[CaseEventIn] = []

    def apply_case_event(self, **event: object) -> bool:
        self.events.append(CaseEventIn(**event))  # type: ignore[arg-type]
        return True


def test_a_batch_of_two_cases_events_is_one_transaction_all_or_nothing(
    service: MeetingsService, store_url: str, working_days: WorkingDays
) -> None:
    recorded = _Recorded()
    first, second = CaseFeed(recorded), CaseFeed(recorded)  # type: ignore[arg-type]
    second.sequence = first.sequence
    day = date(2026, 1, 5)
    for feed in (first, second):
        feed.open(day)
        feed.assign(day)
        feed.consent(day)
    first.summarise(day)
    second.summarise(day)
    events = recorded.events
    assert service.apply_case_events(events[:4]) == 4
    # Another process books a meeting in the second case between the batch's loads and its
    # write: the write fails as a whole (the first case's meeting too, else its retry would
    # find the version taken) and the batch is applied again on the booking.
    store = service.store
    assert isinstance(store, MeetingStore)
    other_store = MeetingStore(store_url)
    other = MeetingsService(other_store, Rules(), working_days, service.clock)
    write_batch = store.write_batch
    tries: list[int] = []

    def interfered(*args: Any) -> list[int]:
        if not tries:
            other.request(
                second.case_id,
                Requester("sara", SOCIAL.id, Principal.MUNICIPALITY),
                lambda s: s.book("b1", starts_at=datetime(2026, 1, 28, 12, tzinfo=UTC), minutes=60,
                                 user_id="sara", location="Hemma", organisation_id=SOCIAL.id),
            )  # fmt: skip
        tries.append(1)
        return write_batch(*args)

    store.write_batch = interfered  # type: ignore[method-assign,assignment]
    try:
        assert service.apply_case_events(events[2:]) == len(events) - 4  # the first two: redelivered
    finally:
        other_store.close()
    assert len(tries) == 2
    assert (service.applied_through(), service.applied_log_position()) == (len(events), len(events))
    assert [m.kind for m in service.meetings(first.case_id)] == ["resource_group"]
    assert sorted(m.kind.value for m in service.meetings(second.case_id)) == [
        "client_contact",
        "resource_group",
    ]
    assert store.cases_of_coordinator("sara") == sorted([first.case_id, second.case_id])


def test_the_coordinators_rows_follow_assignments(service: MeetingsService) -> None:
    """The feed finds a case through rows written only when the coordinators change."""
    feed = CaseFeed(service)
    day = date(2026, 1, 5)
    feed.open(day)
    feed.assign(day, "sara")
    feed.consent(day)
    feed.summarise(day)  # writes that leave the coordinators as they were
    assert service.store.cases_of_coordinator("sara") == [feed.case_id]
    feed.assign(day, "per")
    assert service.store.cases_of_coordinator("per") == [feed.case_id]
    feed.unassign(day, "sara")
    feed.worksheet(day)
    assert service.store.cases_of_coordinator("sara") == []
    assert service.store.cases_of_coordinator("per") == [feed.case_id]
    assert [m.kind for m in service.meetings_of_coordinator("per", SOCIAL.id)] == ["resource_group"]
    assert service.meetings_of_coordinator("per", REGION_PSYCH.id) == []  # another person


def test_the_log_position_is_stored_with_each_case_event_and_an_older_store_is_migrated(
    store_url: str, working_days: WorkingDays
) -> None:
    migrate(store_url)
    store = MeetingStore(store_url)
    try:
        service = MeetingsService(
            store, Rules(), working_days, FixedClock(datetime(2026, 1, 5, 8, tzinfo=UTC))
        )
        feed = CaseFeed(service)
        feed.open(date(2026, 1, 5))
        assert service.applied_log_position() == 1
        # A store made before the column existed: refused until `vss migrate` adds it.
        store.recorder.execute("ALTER TABLE consumer_positions DROP COLUMN log_position")
        with pytest.raises(StoreNotMigrated, match="vss migrate"):
            store.check_migrated()
    finally:
        store.close()
    migrate(store_url)
    store = MeetingStore(store_url)
    try:
        store.check_migrated()
        service = MeetingsService(
            store, Rules(), working_days, FixedClock(datetime(2026, 1, 5, 8, tzinfo=UTC))
        )
        assert (service.applied_through(), service.applied_log_position()) == (1, 0)  # not known yet
        CaseFeed(service, sequence=[1]).open(date(2026, 1, 6))
        assert service.applied_log_position() == 2
    finally:
        store.close()


def test_an_adoption_cut_short_is_taken_again_from_the_start(store_url: str) -> None:
    """Stopped after adopting the meetings stream, before its first schedule: the next start
    adopts again, and must not fail on what the first adoption wrote."""
    migrate(store_url)
    store = MeetingStore(store_url)
    try:
        store.adopt_stream(7, ["e1", "e2"], [(2, "00000000-0000-0000-0000-000000000001", 3, b"{}")])
        assert store.is_empty()
        store.adopt_stream(9, ["e1", "e2", "e3"], [])
        assert store.log_offset() == 9
        rows = store.recorder.query("SELECT COUNT(*) AS n FROM adopted_requests")
        assert rows[0]["n"] == 0
        assert len(store.recorder.query("SELECT event_id FROM already_published")) == 3
    finally:
        store.close()
