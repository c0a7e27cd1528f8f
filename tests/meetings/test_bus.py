"""The meetings service on a real nats-server: case stream in, VSS_MEETINGS out, timers, restarts, replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.meetings.application.service import Requester
from services.meetings.bootstrap import MeetingsParts, bootstrap_meetings
from services.meetings.domain.calendar import STOCKHOLM, WorkingDays
from services.meetings.domain.schedule import MeetingSchedule
from services.meetings.infrastructure.bus import meeting_bus_names
from services.meetings.infrastructure.store import migrate as migrate_meetings
from services.meetings.settings import MeetingsSettings
from services.shared.bus.names import BusNames
from tests.bus.conftest import PartsThread
from tests.support.actors import ACTORS
from tests.support.bus import StreamMessage, read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario, drive_to_first_sip
from vss_contracts import meeting_events as me

MeetingsThread = PartsThread[MeetingsParts]


@pytest.fixture
def case_store(sqlite_url: str) -> Iterator[CaseEventStore]:
    migrate(StoreConfig(sqlite_url))
    store = CaseEventStore(StoreConfig(sqlite_url))
    yield store
    store.close()


@pytest.fixture
def meeting_names(bus_names: BusNames) -> BusNames:
    return meeting_bus_names(bus_names.stream.split("_")[0] + "_", bus_names)


@pytest.fixture
def start_meetings(
    tmp_path: Path, nats_url: str, bus_names: BusNames, meeting_names: BusNames, clock: FixedClock
) -> Callable[..., MeetingsThread]:
    def start(name: str = "meetings.sqlite", timer_interval: float = 0.1) -> MeetingsThread:
        url = f"sqlite:///{tmp_path / name}"
        migrate_meetings(url)
        # The first meeting fixed at once, as before proposals (ADR 0020): these tests follow its
        # reminders and replays across restarts; a proposal has no reminders until confirmed.
        settings = MeetingsSettings(
            meetings_store_url=url,
            nats_url=nats_url,
            data_dir=tmp_path,
            timer_interval=timer_interval,
            propose_first_meeting=False,
        )
        parts = bootstrap_meetings(
            settings, clock=clock, with_api=False, case_names=bus_names, meeting_names=meeting_names
        )
        parts.relay.settings = type(parts.relay.settings)(names=meeting_names, lease_ttl=1.0, ack_timeout=2.0)
        return MeetingsThread(parts)

    return start


def meeting_stream(nats_url: str, names: BusNames) -> list[StreamMessage]:
    return asyncio.run(read_stream(nats_url, names.stream, names.subjects))


def names_of(messages: list[StreamMessage]) -> list[str]:
    return [m.event.type.split(".")[-2] for m in messages]


def published(nats_url: str, names: BusNames, event_name: str) -> int:
    """How many events of ``event_name`` the meetings stream holds."""
    return names_of(meeting_stream(nats_url, names)).count(event_name)


def test_the_first_sip_books_a_resource_group_meeting_published_on_the_meetings_stream(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    bus_names: BusNames,
    meeting_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[..., MeetingsThread],
) -> None:
    scenario = drive_to_first_sip(CaseService(case_store, clock), clock)
    with run_relay(case_store), start_meetings():
        assert wait_until(
            lambda: "MeetingRescheduled" in names_of(meeting_stream(nats_url, meeting_names)), 20
        )
    messages = meeting_stream(nats_url, meeting_names)
    # Mapping summarised books the first meeting; the SIP moves it to its follow-up date.
    assert names_of(messages)[:2] == ["MeetingScheduled", "MeetingRescheduled"]
    booked, moved = (m.event.meeting_data() for m in messages[:2])
    assert isinstance(booked, me.MeetingScheduled)
    assert isinstance(moved, me.MeetingRescheduled)
    assert booked.kind is me.MeetingKind.RESOURCE_GROUP
    assert moved.meeting_id == booked.meeting_id
    assert moved.sequence == 1
    follow_up = clock.now().astimezone(STOCKHOLM).date() + timedelta(days=60)
    assert follow_up <= moved.starts_at.astimezone(STOCKHOLM).date() <= follow_up + timedelta(days=4)
    assert moved.starts_at.astimezone(STOCKHOLM).hour == 10
    assert all(m.event.subject == str(scenario.case_id) for m in messages)
    assert [m.position for m in messages] == sorted(m.position for m in messages)


def test_a_restart_with_reminders_due_fires_each_exactly_once(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    meeting_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[..., MeetingsThread],
) -> None:
    drive_to_first_sip(CaseService(case_store, clock), clock)
    with run_relay(case_store):
        with start_meetings():
            assert wait_until(
                lambda: "MeetingRescheduled" in names_of(meeting_stream(nats_url, meeting_names)), 20
            )
        scheduled = meeting_stream(nats_url, meeting_names)[-1].event.meeting_data()
        assert isinstance(scheduled, me.MeetingRescheduled)
        # While the service is down, the day before the meeting comes (both reminders are due).
        clock.advance(scheduled.starts_at - timedelta(hours=20) - clock.now())
        for _ in range(2):  # two restarts: the second finds nothing left to fire
            with start_meetings():
                assert wait_until(
                    lambda: (
                        names_of(meeting_stream(nats_url, meeting_names)).count("MeetingReminderDue") >= 2
                    ),
                    20,
                )
    reminders = [
        m.event.meeting_data()
        for m in meeting_stream(nats_url, meeting_names)
        if m.event.type == me.MeetingReminderDue.TYPE
    ]
    assert sorted(r.days_before for r in reminders if isinstance(r, me.MeetingReminderDue)) == [1, 7]
    assert Counter(m.event.id for m in meeting_stream(nats_url, meeting_names)).most_common(1)[0][1] == 1


def test_replaying_the_case_stream_into_an_empty_service_gives_the_same_schedule_and_no_duplicates(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    meeting_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[..., MeetingsThread],
) -> None:
    service = CaseService(case_store, clock)
    case_ids = [drive_to_first_sip(service, clock).case_id for _ in range(3)]
    clock.advance(days=55)  # reminders and rating requests of the first meetings are due
    with run_relay(case_store):
        original = start_meetings("original.sqlite")
        with original:
            assert wait_until(lambda: published(nats_url, meeting_names, "MeetingReminderDue") >= 3, 20)
            store = original.parts.store  # the relay has published all it stored:
            assert wait_until(
                lambda: len(meeting_stream(nats_url, meeting_names)) == len(store.read_log(0, 10**6)), 20
            )
            kept = original.parts.service
            expected = {c: [m.to_json() for m in kept.meetings(c)] for c in case_ids if c is not None}
        before = meeting_stream(nats_url, meeting_names)
        replay = start_meetings("replayed.sqlite")
        with replay:
            assert wait_until(
                lambda: replay.parts.service.applied_through() >= len(case_store.read_log(0, 10_000)), 20
            )
            replay.parts.service.fire_due()
            # what the original holds, the replay holds, meeting for meeting
            assert len(expected) == 3
            for case_id, meetings in expected.items():
                assert [m.to_json() for m in replay.parts.service.meetings(case_id)] == meetings
            asyncio.run(asyncio.sleep(1.5))  # the replay's relay would have published by now
        after = meeting_stream(nats_url, meeting_names)
    assert [m.event.id for m in after] == [m.event.id for m in before]  # nothing published again
    assert len({m.event.id for m in after}) == len(after)


def working(moment: datetime) -> datetime:
    """The same time on the first Swedish working day on or after ``moment``'s day."""
    local = moment.astimezone(STOCKHOLM)
    return local + timedelta(days=(WorkingDays().on_or_after(local.date()) - local.date()).days)


def test_a_rebuilt_service_holds_the_coordinators_requests_where_live_made_them(
    case_store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    meeting_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    start_meetings: Callable[..., MeetingsThread],
) -> None:
    """Bookings and reschedules made through the meetings service between case events are on
    VSS_MEETINGS; a store rebuilt from the case stream takes them over and applies each after
    the case event it followed live: the same meetings, row by row, and the same events."""
    service = CaseService(case_store, clock)
    coordinator = Requester(ACTORS.region.user_id, ACTORS.region.organisation_id, ACTORS.region.principal)
    cases = [CaseScenario(service, clock) for _ in range(2)]
    # Timers fire where the test says (fire_due), live and rebuilt alike: the live timer loop
    # fires by the clock once the case stream is applied, and a case event committed but not
    # yet published by the relay cannot hold it, so where it lands between case events would
    # depend on the relay's latency (ADR 0006, consequences).
    with run_relay(case_store):
        original = start_meetings("original.sqlite", timer_interval=3600)
        with original:
            live = original.parts.service

            def applied() -> bool:
                return live.applied_log_position() >= len(case_store.read_log(0, 10**6))

            for case in cases:
                case.open()
                case.assign_coordinators()
                case.give_consent()
                case.complete_worksheet()
                case.summarise_mapping()  # the first resource group meeting
            assert wait_until(applied, 20)
            for n, case in enumerate(cases):
                assert case.case_id is not None
                [rg] = live.meetings(case.case_id)
                move = partial(
                    MeetingSchedule.reschedule,
                    request_id=f"move-{n}",
                    meeting_id=rg.meeting_id,
                    starts_at=working(rg.starts_at + timedelta(days=1)),
                    user_id=coordinator.user_id,
                    organisation_id=coordinator.organisation_id,
                    reason="Semester",
                )
                book = partial(
                    MeetingSchedule.book,
                    request_id=f"book-{n}",
                    starts_at=working(rg.starts_at - timedelta(days=7)).replace(hour=14),
                    minutes=45,
                    user_id=coordinator.user_id,
                    location="Mottagningen",
                    organisation_id=coordinator.organisation_id,
                )
                live.request(case.case_id, coordinator, move)
                live.request(case.case_id, coordinator, book)
            for case in cases:  # the SIP moves the resource group meeting again, by the rules
                case.set_goal()
                case.add_members()
                case.decide_sip()
            assert wait_until(applied, 20)
            [booked] = [m for m in live.meetings(cases[0].case_id) if m.kind is me.MeetingKind.CLIENT_CONTACT]
            live.request(
                cases[0].case_id,
                coordinator,
                lambda s: s.cancel(
                    "cancel-0",
                    booked.meeting_id,
                    user_id=coordinator.user_id,
                    organisation_id=coordinator.organisation_id,
                    reason="Sjuk",
                ),
            )  # after every case event
            live.fire_due()
            store = original.parts.store
            assert wait_until(
                lambda: len(meeting_stream(nats_url, meeting_names)) == len(store.read_log(0, 10**6)), 20
            )
            expected = {
                c.case_id: [m.to_json() for m in live.meetings(c.case_id)] for c in cases if c.case_id
            }
            events = {c.case_id: [e.state for e in store.events(c.case_id)] for c in cases if c.case_id}
        before = meeting_stream(nats_url, meeting_names)
        assert sum(m.event.actorid == coordinator.user_id for m in before) == 5
        replay = start_meetings("replayed.sqlite", timer_interval=3600)
        with replay:
            rebuilt = replay.parts.service
            assert wait_until(
                lambda: rebuilt.applied_log_position() >= len(case_store.read_log(0, 10**6)), 20
            )
            rebuilt.fire_due()  # caught up: the requests after the last case event, then timers
            for case_id, meetings in expected.items():
                assert [m.to_json() for m in rebuilt.meetings(case_id)] == meetings
                assert [e.state for e in replay.parts.store.events(case_id)] == events[case_id]
            asyncio.run(asyncio.sleep(1.5))  # the replay's relay would have published by now
        after = meeting_stream(nats_url, meeting_names)
    assert [m.event.id for m in after] == [m.event.id for m in before]  # nothing published again
