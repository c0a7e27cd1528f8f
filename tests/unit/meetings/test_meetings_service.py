"""``MeetingsService`` over an in-memory schedule store: case events, timers, requests.

The schedule's decisions reach the store through the service: what is stored, in which
order, with which position, and what a redelivery or a concurrent writer changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from services.meetings.application.ports import AdoptedRequest
from services.meetings.application.service import (
    SERVICE_ACTOR,
    CaseEventIn,
    CaseUnknown,
    MeetingsService,
    ReplayInProgress,
    Requester,
)
from services.meetings.domain.calendar import STOCKHOLM, WorkingDays
from services.meetings.domain.meeting import Meeting
from services.meetings.domain.schedule import (
    Decided,
    MeetingSchedule,
    Rules,
    ScheduleError,
    ScheduleState,
    restore,
    settle,
    snapshot,
)
from tests.meetings.feed import CLIENT, COORDINATOR, HOUSING, SOCIAL, CaseFeed
from tests.support.clock import FixedClock
from vss_contracts import case_events as ce
from vss_contracts import meeting_events as me
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.meeting_events import MeetingKind, decode_meeting_event
from vss_contracts.types import (
    ActingPerson,
    ContactMode,
    ContactPeriod,
    GoalKind,
    MemberKind,
    OrganisationRef,
    Person,
    Principal,
    Worksheet,
)

from .fakes import InMemoryScheduleStore

WORKING_DAYS = WorkingDays()
MONDAY = date(2026, 1, 5)
SARA = Requester(user_id="sara", organisation_id=SOCIAL.id, principal=Principal.MUNICIPALITY)
START = datetime(2026, 1, 5, 8, tzinfo=UTC)


def meetings_service(store: InMemoryScheduleStore, clock: FixedClock | None = None) -> MeetingsService:
    return MeetingsService(store, Rules(), WORKING_DAYS, clock or FixedClock(START))


def started(
    store: InMemoryScheduleStore, clock: FixedClock | None = None
) -> tuple[MeetingsService, CaseFeed]:
    service = meetings_service(store, clock)
    feed = CaseFeed(service)
    feed.open(MONDAY)
    feed.assign(MONDAY)
    feed.consent(MONDAY)
    return service, feed


def names(store: InMemoryScheduleStore, feed: CaseFeed) -> list[str]:
    """The case's meeting events, without the contact-cadence reports."""
    return [e.name for e in store.events(feed.case_id) if e.name != "ContactCadenceMissed"]


def test_a_mapping_summary_schedules_the_first_meeting_and_stores_it_with_the_position() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    feed.summarise(date(2026, 1, 20))
    [meeting] = service.meetings(feed.case_id)
    assert meeting.kind is MeetingKind.RESOURCE_GROUP
    assert meeting.starts_at == datetime(2026, 2, 10, 10, 0, tzinfo=STOCKHOLM)  # within three weeks
    assert names(store, feed) == ["MeetingScheduled"]
    assert service.applied_through() == feed.sequence[0] == 4
    assert store.cases_of_coordinator("sara") == [feed.case_id]


def test_the_stored_events_form_a_hash_chain_and_name_the_service_as_their_actor() -> None:
    store = InMemoryScheduleStore()
    _, feed = started(store)
    feed.summarise(date(2026, 1, 20))
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    events = store.events(feed.case_id)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert events[0].state["prev_hash"] == GENESIS_HASH
    assert [e.state["prev_hash"] for e in events[1:]] == [e.state["hash"] for e in events[:-1]]
    assert {e.state["actor_id"] for e in events} == {"vss-meetings"}


def test_a_redelivered_case_event_changes_nothing() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    summary = ce.MappingSummarised(
        summarised_on=date(2026, 1, 20),
        participants=[CLIENT, COORDINATOR],
        wants_to_change="x",
        obstacles="y",
    )
    first = service.apply_case_event(
        case_id=feed.case_id,
        event_id="0b0e1a52-8f3c-4e7e-9d0c-1f6c2a9b0001",
        recorded_at=datetime(2026, 1, 20, 9, tzinfo=STOCKHOLM),
        data=summary,
        stream_sequence=10,
    )
    before = (list(store.log), store.snapshot(feed.case_id))
    again = service.apply_case_event(
        case_id=feed.case_id,
        event_id="0b0e1a52-8f3c-4e7e-9d0c-1f6c2a9b0001",
        recorded_at=datetime(2026, 1, 20, 9, tzinfo=STOCKHOLM),
        data=summary,
        stream_sequence=10,
    )
    assert (first, again) == (True, False)
    assert (list(store.log), store.snapshot(feed.case_id)) == before


def test_the_case_log_position_applied_moves_with_each_case_event_and_never_back() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    assert service.applied_log_position() == 3  # the feed's three events, at log positions 1–3
    summary = ce.MappingSummarised(
        summarised_on=date(2026, 1, 20),
        participants=[CLIENT, COORDINATOR],
        wants_to_change="x",
        obstacles="y",
    )
    at = datetime(2026, 1, 20, 9, tzinfo=STOCKHOLM)
    event_id = "0b0e1a52-8f3c-4e7e-9d0c-1f6c2a9b0002"
    applied = service.apply_case_event(
        case_id=feed.case_id,
        event_id=event_id,
        recorded_at=at,
        data=summary,
        stream_sequence=4,
        log_position=40,
    )
    assert applied
    assert service.applied_log_position() == 40
    # A redelivery changes nothing, whatever position it names.
    again = service.apply_case_event(
        case_id=feed.case_id,
        event_id=event_id,
        recorded_at=at,
        data=summary,
        stream_sequence=4,
        log_position=99,
    )
    assert not again
    assert service.applied_log_position() == 40
    # An event without a position (a message without the relay's header) leaves it where it is.
    feed.sequence[0] = 4
    service.apply_case_event(
        case_id=feed.case_id, event_id=str(feed.case_id), recorded_at=at, data=summary, stream_sequence=5
    )
    assert (service.applied_through(), service.applied_log_position()) == (5, 40)


def test_a_sip_sets_the_next_meeting_on_its_follow_up_date_the_next_working_day_after_a_holiday() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    feed.sip(date(2026, 3, 20), 1, follow_up=date(2026, 6, 19))  # Midsummer Eve
    [meeting] = service.meetings(feed.case_id)
    assert meeting.starts_at == datetime(2026, 6, 22, 10, 0, tzinfo=STOCKHOLM)
    assert meeting.sip_version == 1
    feed.sip(date(2026, 6, 22), 2, follow_up=date(2026, 9, 21))
    meetings = service.meetings(feed.case_id)
    assert [m.starts_at.date() for m in meetings] == [date(2026, 6, 22), date(2026, 9, 21)]


def test_timers_fire_when_due_reminders_first_then_the_rating_request() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    service.fire_due(datetime(2026, 4, 27, 9, 59, tzinfo=STOCKHOLM))
    assert "MeetingReminderDue" not in names(store, feed)
    service.fire_due(datetime(2026, 4, 27, 10, 0, tzinfo=STOCKHOLM))
    assert names(store, feed)[-2:] == ["MeetingReminderDue", "ChangeRatingRequested"]
    service.fire_due(datetime(2026, 5, 3, 10, 0, tzinfo=STOCKHOLM))
    reminders = [
        e.state["data"]["days_before"] for e in store.events(feed.case_id) if e.name == "MeetingReminderDue"
    ]
    assert reminders == [7, 1]
    assert service.fire_due(datetime(2026, 5, 3, 10, 0, tzinfo=STOCKHOLM)) == 0  # nothing fires twice


def test_a_follow_up_date_passing_without_a_meeting_held_is_reported_overdue() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    service.fire_due(datetime(2026, 5, 4, 23, 59, tzinfo=STOCKHOLM))
    assert "FollowUpOverdue" not in names(store, feed)
    service.fire_due(datetime(2026, 5, 5, 0, 0, tzinfo=STOCKHOLM))
    [overdue] = [e for e in store.events(feed.case_id) if e.name == "FollowUpOverdue"]
    assert overdue.state["data"]["follow_up_on"] == "2026-05-04"
    assert overdue.state["data"]["coordinators"] == [{"organisation_id": SOCIAL.id, "user_id": "sara"}]


def test_a_coordinator_books_a_client_meeting_on_a_working_day_and_is_named_its_actor() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    decided, meeting = service.request(
        feed.case_id,
        SARA,
        lambda schedule: schedule.book(
            "req-1",
            starts_at=datetime(2026, 1, 7, 14, 0, tzinfo=STOCKHOLM),
            minutes=45,
            user_id="sara",
            location="Mottagningen",
            organisation_id=SOCIAL.id,
        ),
    )
    assert meeting.kind is MeetingKind.CLIENT_CONTACT
    assert set(meeting.invitees) == {"client", "coordinator:sara"}
    [stored] = [e for e in store.events(feed.case_id) if e.name == "MeetingScheduled"]
    assert (stored.state["actor_id"], stored.state["actor_organisation"]) == ("sara", SOCIAL.id)
    assert stored.state["principal"] == Principal.MUNICIPALITY.value
    assert stored.state["event_id"] == str(decided.event_id)
    # The payload names the same person (ADR 0023), not the user id alone.
    assert decided.data.booked_by == ActingPerson(organisation_id=SOCIAL.id, user_id="sara")  # type: ignore[attr-defined]


def test_a_request_the_schedule_refuses_stores_nothing() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    before = list(store.log)
    with pytest.raises(ScheduleError) as refused:
        service.request(
            feed.case_id,
            SARA,
            lambda schedule: schedule.book(
                "req-2",
                starts_at=datetime(2026, 1, 6, 10, 0, tzinfo=STOCKHOLM),
                minutes=30,
                user_id="sara",
                organisation_id=SOCIAL.id,
                location=None,
            ),
        )
    assert refused.value.rule == "working_day"  # Epiphany
    assert store.log == before


def test_a_request_on_a_case_never_seen_is_unknown() -> None:
    service = meetings_service(InMemoryScheduleStore())
    with pytest.raises(CaseUnknown):
        service.meetings(CaseFeed(service).case_id)


def test_timers_due_by_a_request_fire_before_it() -> None:
    store = InMemoryScheduleStore()
    clock = FixedClock(START)
    service, feed = started(store, clock)
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    clock.advance(datetime(2026, 4, 28, 8, tzinfo=UTC) - clock.now())
    service.request(
        feed.case_id,
        SARA,
        lambda schedule: schedule.book(
            "req-3",
            starts_at=datetime(2026, 4, 29, 9, 0, tzinfo=STOCKHOLM),
            minutes=30,
            user_id="sara",
            organisation_id=SOCIAL.id,
            location=None,
        ),
    )
    assert names(store, feed)[-3:] == ["MeetingReminderDue", "ChangeRatingRequested", "MeetingScheduled"]


def test_a_concurrent_writer_is_caught_by_the_revision_and_the_request_retried_on_its_result() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    other = meetings_service(store)

    def other_books_first() -> None:
        other.request(
            feed.case_id,
            SARA,
            lambda schedule: schedule.book(
                "req-other",
                starts_at=datetime(2026, 1, 8, 9, 0, tzinfo=STOCKHOLM),
                minutes=30,
                user_id="sara",
                organisation_id=SOCIAL.id,
                location=None,
            ),
        )

    store.interfere = other_books_first
    service.request(
        feed.case_id,
        SARA,
        lambda schedule: schedule.book(
            "req-mine",
            starts_at=datetime(2026, 1, 9, 9, 0, tzinfo=STOCKHOLM),
            minutes=30,
            user_id="sara",
            organisation_id=SOCIAL.id,
            location=None,
        ),
    )
    booked = sorted(m.starts_at for m in service.meetings(feed.case_id))
    assert [b.date() for b in booked] == [date(2026, 1, 8), date(2026, 1, 9)]
    events = store.events(feed.case_id)
    assert [e.version for e in events] == list(range(1, len(events) + 1))


def test_the_meetings_of_a_coordinator_are_those_of_the_person_at_their_organisation() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    feed.summarise(date(2026, 1, 20))
    elsewhere = CaseFeed(service, sequence=feed.sequence)
    other_org = OrganisationRef(id="annan-kommun", name="Annan kommun", principal=Principal.MUNICIPALITY)
    elsewhere.open(MONDAY)
    elsewhere.assign(MONDAY, "sara", other_org)  # the same user id, another organisation: another person
    elsewhere.consent(MONDAY)
    elsewhere.summarise(date(2026, 1, 20))
    mine = service.meetings_of_coordinator("sara", SOCIAL.id)
    assert [m.case_id for m in mine] == [feed.case_id]
    assert [m.case_id for m in service.meetings_of_coordinator("sara", other_org.id)] == [elsewhere.case_id]


def test_a_member_the_consent_does_not_cover_is_not_invited() -> None:
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    feed = CaseFeed(service)
    feed.open(MONDAY)
    feed.assign(MONDAY)
    feed.consent(MONDAY, SOCIAL)  # the housing firm is not named
    housing = feed.add_member(MONDAY, "Bo Boendestöd", MemberKind.PROFESSIONAL, HOUSING)
    feed.summarise(date(2026, 1, 20))
    [meeting] = service.meetings(feed.case_id)
    assert f"member:{housing}" not in meeting.invitees
    assert {"client", "coordinator:sara"} <= set(meeting.invitees)


# ------------------------------------------------------------------ replay gives what live gave
class RecordingService:
    """The case events a service applied, with their ids and positions, to replay them exactly."""

    def __init__(self, service: MeetingsService) -> None:
        self.service = service
        self.applied: list[dict[str, Any]] = []

    def apply_case_event(self, **event: Any) -> bool:
        self.applied.append(event)
        return self.service.apply_case_event(**event)


def adopted_from(store: InMemoryScheduleStore) -> list[AdoptedRequest]:
    """What ``adopt_stream`` takes over from the meetings stream: the coordinators' requests."""
    return [
        AdoptedRequest(
            sequence=e.position,
            case_id=UUID(e.case_id),
            case_position=e.state["case_position"],
            recorded_at=datetime.fromisoformat(e.state["recorded_at"]),
            principal=Principal(e.state["principal"]),
            decided=Decided(
                UUID(e.state["event_id"]),
                decode_meeting_event(e.type, e.state["data"]),
                actor_id=e.state["actor_id"],
                actor_org=e.state["actor_organisation"],
                causation_id=e.state["causation_id"],
            ),
        )
        for e in store.log
        if e.state["actor_id"] != SERVICE_ACTOR
    ]


def test_a_replay_applies_the_coordinators_requests_where_they_stood_in_history() -> None:
    """Bookings, a reschedule, a cancel and a held meeting, between case events and after the
    last: replaying the case events into an empty store that took the requests over gives the
    live schedule, event for event (same ids, same order)."""
    clock = FixedClock(START)
    live_store = InMemoryScheduleStore()
    live = RecordingService(meetings_service(live_store, clock))
    feed = CaseFeed(live)  # type: ignore[arg-type]
    feed.open(MONDAY)
    feed.assign(MONDAY)
    feed.consent(MONDAY)
    feed.summarise(date(2026, 1, 20))  # a resource group meeting within three weeks

    def request(at: datetime, decide: Any) -> None:
        clock.advance(at - clock.now())
        live.service.request(feed.case_id, SARA, decide)

    [rg] = live.service.meetings(feed.case_id)
    request(
        datetime(2026, 1, 21, 9, tzinfo=UTC),
        lambda s: s.book("b1", starts_at=datetime(2026, 1, 28, 13, tzinfo=STOCKHOLM), minutes=60,
                         user_id="sara", location="Hemma", organisation_id=SOCIAL.id),
    )  # fmt: skip
    request(
        datetime(2026, 1, 22, 9, tzinfo=UTC),
        lambda s: s.reschedule("r1", rg.meeting_id, starts_at=datetime(2026, 2, 6, 10, tzinfo=STOCKHOLM),
                               user_id="sara", organisation_id=SOCIAL.id, reason="Semester"),
    )  # fmt: skip
    feed.worksheet(date(2026, 1, 23))
    booked = next(m for m in live.service.meetings(feed.case_id) if m.kind is MeetingKind.CLIENT_CONTACT)
    request(
        datetime(2026, 1, 26, 9, tzinfo=UTC),
        lambda s: s.cancel("c1", booked.meeting_id, user_id="sara", organisation_id=SOCIAL.id, reason="Sjuk"),
    )
    feed.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))  # moves the resource group meeting again
    request(
        datetime(2026, 2, 3, 9, tzinfo=UTC),
        lambda s: s.book("b2", starts_at=datetime(2026, 2, 4, 13, tzinfo=STOCKHOLM), minutes=30,
                         user_id="sara", location=None, organisation_id=SOCIAL.id),
    )  # fmt: skip
    second = next(
        m
        for m in live.service.meetings(feed.case_id)
        if m.location is None and m.kind.value == "client_contact"
    )
    request(
        datetime(2026, 2, 5, 9, tzinfo=UTC),
        lambda s: s.mark_held(
            "h1", second.meeting_id, held_on=date(2026, 2, 4), user_id="sara", organisation_id=SOCIAL.id
        ),
    )  # the last: after every case event
    live.service.fire_due(clock.now())

    replayed_store = InMemoryScheduleStore()
    replayed_store.requests = adopted_from(live_store)
    assert len(replayed_store.requests) == 5
    replay = meetings_service(replayed_store, clock)
    for event in live.applied:
        replay.apply_case_event(**event)
    replay.fire_due(clock.now())  # once caught up: the requests left, then the timers

    assert replayed_store.requests == []
    assert [m.to_json() for m in replay.meetings(feed.case_id)] == [
        m.to_json() for m in live.service.meetings(feed.case_id)
    ]
    assert [(e.type, e.state) for e in replayed_store.events(feed.case_id)] == [
        (e.type, e.state) for e in live_store.events(feed.case_id)
    ]


def _booking(meeting_id: int, day: int) -> me.MeetingScheduled:
    return me.MeetingScheduled(
        meeting_id=UUID(int=meeting_id),
        kind=MeetingKind.CLIENT_CONTACT,
        starts_at=datetime(2026, 1, day, 13, tzinfo=STOCKHOLM),
        ends_at=datetime(2026, 1, day, 14, tzinfo=STOCKHOLM),
        invitees=[],
        reason="booked",
        booked_by=ActingPerson(organisation_id=SOCIAL.id, user_id="sara"),
    )


def adopted(case_id: UUID, sequence: int, position: int | None, data: Any) -> AdoptedRequest:
    """A coordinator's request taken over from the meetings stream (as ``adopt_stream`` keeps it)."""
    decided = Decided(UUID(int=100 + sequence), data, actor_id="sara", actor_org=SOCIAL.id, causation_id="k")
    return AdoptedRequest(sequence, case_id, position, START, Principal.MUNICIPALITY, decided)


def test_an_adopted_request_that_no_longer_fits_is_dropped_and_the_case_stream_goes_on() -> None:
    """A reschedule of a meeting the replay does not hold cannot stop the case events after it;
    a request published without a case position waits until the case stream is applied."""
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    feed = CaseFeed(service)
    feed.open(MONDAY)  # position 1
    moved = me.MeetingRescheduled(
        meeting_id=UUID(int=7),  # no such meeting
        starts_at=datetime(2026, 1, 14, 10, tzinfo=STOCKHOLM),
        ends_at=datetime(2026, 1, 14, 11, tzinfo=STOCKHOLM),
        previous_starts_at=datetime(2026, 1, 13, 10, tzinfo=STOCKHOLM),
        sequence=1,
        reason="Semester",
        moved_by=ActingPerson(organisation_id=SOCIAL.id, user_id="sara"),
    )
    store.requests = [adopted(feed.case_id, 1, 1, moved), adopted(feed.case_id, 2, None, _booking(8, 15))]
    feed.assign(MONDAY)  # position 2: the unfit request at 1 goes first, and is dropped
    assert [r.sequence for r in store.requests] == [2]
    assert service.applied_through() == 2  # the case event was applied all the same
    feed.consent(MONDAY)
    assert [m.meeting_id for m in service.meetings(feed.case_id)] == []  # unplaced: not yet
    service.fire_due(START)  # caught up
    assert store.requests == []
    assert [m.meeting_id for m in service.meetings(feed.case_id)] == [UUID(int=8)]


def test_a_request_made_before_any_case_position_is_known_has_no_place() -> None:
    """A store migrated since its last case event knows no position yet: a request then is
    published without one (applied last in a replay), never at position 0 (first)."""
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    feed = CaseFeed(service)
    for send in (feed.open, feed.assign, feed.consent):
        send(MONDAY)
    store.positions.log_positions.clear()  # as after `vss migrate` added the column
    service.request(
        feed.case_id,
        SARA,
        lambda s: s.book("b", starts_at=datetime(2026, 1, 8, 9, tzinfo=STOCKHOLM), minutes=30,
                         user_id="sara", organisation_id=SOCIAL.id, location=None),
    )  # fmt: skip
    assert store.events(feed.case_id)[-1].state["case_position"] is None


def test_within_a_case_adopted_requests_keep_the_order_they_were_made_in() -> None:
    """A booking published without a place, then a move of it with one: the move waits for the
    booking (applied once the case stream is), so the replay ends where live ended."""
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    feed = CaseFeed(service)
    feed.open(MONDAY)
    booked = _booking(9, 14)
    moved = me.MeetingRescheduled(
        meeting_id=UUID(int=9),
        starts_at=datetime(2026, 1, 21, 10, tzinfo=STOCKHOLM),
        ends_at=datetime(2026, 1, 21, 11, tzinfo=STOCKHOLM),
        previous_starts_at=booked.starts_at,
        sequence=1,
        reason="Semester",
        moved_by=ActingPerson(organisation_id=SOCIAL.id, user_id="sara"),
    )

    store.requests = [adopted(feed.case_id, 1, None, booked), adopted(feed.case_id, 2, 2, moved)]
    feed.assign(MONDAY)  # position 2
    feed.consent(MONDAY)  # position 3: the move is placed before it, but waits for the booking
    assert [r.sequence for r in store.requests] == [1, 2]
    with pytest.raises(ReplayInProgress):  # no new request while history is being applied
        service.request(
            feed.case_id,
            SARA,
            lambda s: s.cancel("c", UUID(int=9), user_id="sara", organisation_id=SOCIAL.id, reason="x"),
        )
    service.fire_due(START)  # caught up: the booking, then the move
    assert store.requests == []
    [meeting] = service.meetings(feed.case_id)
    assert (meeting.starts_at, meeting.sequence) == (moved.starts_at, 1)


def test_a_store_error_while_applying_an_adopted_request_keeps_it_for_the_retry() -> None:
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    feed = CaseFeed(service)
    feed.open(MONDAY)
    store.requests = [adopted(feed.case_id, 1, 1, _booking(10, 15))]

    def store_away() -> None:
        raise OSError("disk I/O error")

    store.interfere = store_away
    with pytest.raises(OSError, match="disk"):
        feed.assign(MONDAY)  # the consumer retries the case event
    assert [r.sequence for r in store.requests] == [1]  # not dropped
    feed.sequence[0] -= 1
    feed.assign(MONDAY)
    assert store.requests == []


# --------------------------------------------------------------------- the contact logbook
def test_a_saturday_evenings_contact_written_up_on_monday_is_no_false_missed_contact() -> None:
    """The service, its store and the ticker looking on Sunday, Monday and Tuesday."""
    store = InMemoryScheduleStore()
    service, feed = started(store)  # Monday 5 January: the interval is 5–11 January
    sara = Person(organisation=SOCIAL, user_id="sara", name="Sara Samordnare")
    contact = ce.ClientContactRecorded(
        contact_id=uuid4(),
        mode=ContactMode.OUTREACH,
        occurred_at=datetime(2026, 1, 10, 21, 30, tzinfo=STOCKHOLM),  # Saturday evening
        duration_minutes=60,
        staff=[sara],
    )
    service.fire_due(datetime(2026, 1, 11, 12, 0, tzinfo=STOCKHOLM))
    service.fire_due(datetime(2026, 1, 12, 8, 0, tzinfo=STOCKHOLM))
    feed.send(date(2026, 1, 12), contact, at=time(8, 30))  # recorded on Monday morning
    service.fire_due(datetime(2026, 1, 13, 6, 0, tzinfo=STOCKHOLM))

    assert [e for e in store.events(feed.case_id) if e.type == me.ContactCadenceMissed.TYPE] == []
    # Without the contact, the same looks report the interval once.
    other_store = InMemoryScheduleStore()
    other, other_feed = started(other_store)
    for at in (datetime(2026, 1, 12, 8, 0, tzinfo=STOCKHOLM), datetime(2026, 1, 13, 6, 0, tzinfo=STOCKHOLM)):
        other.fire_due(at)
    [missed] = [e for e in other_store.events(other_feed.case_id) if e.type == me.ContactCadenceMissed.TYPE]
    report = decode_meeting_event(missed.type, missed.state["data"])
    assert isinstance(report, me.ContactCadenceMissed)
    assert (report.period, report.period_end) == (ContactPeriod.ASSESSMENT, date(2026, 1, 11))


# ----------------------------------------------------------------- batches of case events
def _history(feed: CaseFeed, other: CaseFeed) -> None:
    """Two cases' events interleaved, with events that change nothing while timers are and are
    not due (a completed action, a worksheet without the client) and meetings decided."""
    feed.open(MONDAY)
    other.open(MONDAY)
    feed.assign(MONDAY)
    feed.consent(MONDAY)
    other.assign(MONDAY)
    feed.summarise(date(2026, 1, 20))  # a resource group meeting, with reminders and a rating
    feed.send(
        date(2026, 1, 21),
        ce.ActionCompleted(sip_version=1, action_id=uuid4(), completed_on=date(2026, 1, 21)),
    )
    other.send(
        date(2026, 2, 2), ce.ActionCompleted(sip_version=1, action_id=uuid4(), completed_on=date(2026, 2, 2))
    )
    feed.send(  # after reminders fell due: the timers fire at it, as one by one
        date(2026, 2, 9),
        ce.WorksheetCompleted(
            worksheet=Worksheet.INTERVIEW,
            completed_on=date(2026, 2, 9),
            participants=[COORDINATOR],
            summary="Samtal utan klienten",
        ),
    )
    feed.worksheet(date(2026, 2, 9), rating=True)
    feed.sip(date(2026, 2, 10), 1, follow_up=date(2026, 5, 4))
    other.summarise(date(2026, 2, 11))
    feed.send(date(2026, 2, 12), ce.SipConfirmedByClient(sip_version=1, confirmed_on=date(2026, 2, 12)))
    feed.rg_held(date(2026, 2, 16))
    other.send(
        date(2026, 6, 1), ce.ActionCompleted(sip_version=1, action_id=uuid4(), completed_on=date(2026, 6, 1))
    )


def _applied_one_by_one() -> tuple[InMemoryScheduleStore, list[dict[str, Any]], list[UUID]]:
    store = InMemoryScheduleStore()
    recording = RecordingService(meetings_service(store))
    feed = CaseFeed(recording)  # type: ignore[arg-type]
    other = CaseFeed(recording, sequence=feed.sequence)  # type: ignore[arg-type]
    _history(feed, other)
    return store, recording.applied, [feed.case_id, other.case_id]


def _stored(store: InMemoryScheduleStore, case_ids: list[UUID]) -> list[Any]:
    snapshots = [dict(store.snapshot(c) or {}, revision=None) for c in case_ids]  # revisions count writes
    return [[(e.version, e.type, e.state) for e in store.events(c)] for c in case_ids] + snapshots


@pytest.mark.parametrize("size", [2, 3, 5, 100])
def test_a_batch_of_case_events_stores_what_they_store_one_by_one(size: int) -> None:
    one_by_one, applied, case_ids = _applied_one_by_one()
    assert len(one_by_one.log) > 5  # meetings scheduled, reminders and rating requests fired
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    events = [CaseEventIn(**event) for event in applied]
    for start in range(0, len(events), size):
        assert service.apply_case_events(events[start : start + size]) == len(events[start : start + size])
    assert _stored(store, case_ids) == _stored(one_by_one, case_ids)
    assert (service.applied_through(), service.applied_log_position()) == (len(events), len(events))


def test_a_batch_moves_the_position_once_and_a_redelivered_part_is_skipped() -> None:
    one_by_one, applied, case_ids = _applied_one_by_one()
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    events = [CaseEventIn(**event) for event in applied]
    writes: list[int] = []
    write_batch = store.write_batch

    def counted(*args: Any) -> list[int]:
        writes.append(1)
        return write_batch(*args)

    store.write_batch = counted  # type: ignore[method-assign,assignment]
    assert service.apply_case_events(events[:6]) == 6
    assert service.apply_case_events(events[:6]) == 0  # all redelivered: nothing written
    assert service.apply_case_events(events[3:]) == len(events) - 6  # the first three again
    assert writes == [1, 1]
    assert _stored(store, case_ids) == _stored(one_by_one, case_ids)


def _counting_loads(service: MeetingsService) -> list[UUID]:
    """The case ids of the schedules ``service`` loads from here on, in order."""
    loads: list[UUID] = []
    load = service.load

    def counted(case_id: UUID) -> MeetingSchedule | None:
        loads.append(case_id)
        return load(case_id)

    service.load = counted  # type: ignore[method-assign]
    return loads


def test_an_event_that_changes_nothing_while_no_timer_is_due_loads_no_schedule() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    loads = _counting_loads(service)
    before = store.snapshot(feed.case_id)
    at = datetime(2026, 1, 6, 9, tzinfo=STOCKHOLM)  # the first contact interval still runs
    goal = ce.GoalSet(goal_id=uuid4(), kind=GoalKind.LONG_TERM, description="Eget boende", set_on=at.date())
    without_client = ce.WorksheetCompleted(
        worksheet=Worksheet.INTERVIEW, completed_on=at.date(), participants=[COORDINATOR], summary="Samtal"
    )
    batch = [
        CaseEventIn(feed.case_id, str(uuid4()), at, data, 4 + n, 10 + n)
        for n, data in enumerate([goal, without_client])
    ]
    assert service.apply_case_events(batch) == 2
    assert loads == []
    assert store.snapshot(feed.case_id) == before
    assert (service.applied_through(), service.applied_log_position()) == (5, 11)
    # A worksheet with the client counts as a contact: it is applied.
    with_client = without_client.model_copy(update={"participants": [CLIENT, COORDINATOR]})
    assert service.apply_case_events([CaseEventIn(feed.case_id, str(uuid4()), at, with_client, 6, 12)]) == 1
    assert loads == [feed.case_id]
    assert store.snapshot(feed.case_id) != before


def test_a_batch_that_meets_a_concurrent_writer_is_applied_again_on_its_result() -> None:
    store = InMemoryScheduleStore()
    service, feed = started(store)
    other = meetings_service(store)
    at = datetime(2026, 1, 20, 9, tzinfo=STOCKHOLM)
    summary = ce.MappingSummarised(
        summarised_on=at.date(), participants=[CLIENT, COORDINATOR], wants_to_change="x", obstacles="y"
    )
    # Another writer (the HTTP API) books a meeting between the batch's load and its write.
    store.interfere = lambda: other.request(
        feed.case_id,
        SARA,
        lambda s: s.book("b1", starts_at=datetime(2026, 1, 28, 13, tzinfo=STOCKHOLM), minutes=60,
                         user_id="sara", location="Hemma", organisation_id=SOCIAL.id),
    )  # fmt: skip
    assert service.apply_case_events([CaseEventIn(feed.case_id, str(uuid4()), at, summary, 4, 4)]) == 1
    kinds = sorted(m.kind.value for m in service.meetings(feed.case_id))
    assert kinds == ["client_contact", "resource_group"]  # neither write lost
    assert service.applied_through() == 4


def test_a_schedule_kept_in_memory_and_settled_is_the_one_its_snapshot_restores() -> None:
    """What a batch relies on between two events of a case: the same order of what it holds and
    the same times, so the same decisions, as if it were written and loaded again."""
    _, applied, _ = _applied_one_by_one()
    first_case = applied[0]["case_id"]
    kept = MeetingSchedule(ScheduleState(case_id=first_case), Rules(), WORKING_DAYS)
    for event in applied:
        if event["case_id"] != first_case:
            continue
        kept.on_case_event(UUID(event["event_id"]), event["recorded_at"], event["data"])
        settle(kept)
        restored = restore(
            orjson.loads(orjson.dumps(snapshot(kept), option=orjson.OPT_SORT_KEYS)), Rules(), WORKING_DAYS
        )
        assert orjson.dumps(snapshot(kept)) == orjson.dumps(snapshot(restored))  # key order too
        assert kept.state == restored.state
        assert [(m.starts_at.tzinfo, m.ends_at.tzinfo) for m in kept.state.meetings.values()] == [
            (m.starts_at.tzinfo, m.ends_at.tzinfo) for m in restored.state.meetings.values()
        ]
    assert len(kept.state.meetings) >= 1


def test_a_settled_schedule_keeps_the_meetings_that_are_over_as_their_stored_json() -> None:
    """A long-lived case's schedule holds every meeting it ever had: loading and saving it
    decodes and encodes only those still to come, and one that is over is decoded when asked
    for, as the snapshot restores it."""
    _, applied, _ = _applied_one_by_one()
    first_case = applied[0]["case_id"]
    kept = MeetingSchedule(ScheduleState(case_id=first_case), Rules(), WORKING_DAYS)
    for event in applied:
        if event["case_id"] == first_case:
            kept.on_case_event(UUID(event["event_id"]), event["recorded_at"], event["data"])
    settle(kept)
    stored = orjson.loads(orjson.dumps(snapshot(kept), option=orjson.OPT_SORT_KEYS))
    over = sorted(k for k, m in stored["meetings"].items() if m["status"] != "scheduled")
    assert over  # held or cancelled ...
    assert len(over) < len(stored["meetings"])  # ... and some to come
    for schedule in (kept, restore(stored, Rules(), WORKING_DAYS)):
        book = schedule.state.meetings
        assert sorted(k for k, e in book._entries.items() if isinstance(e, dict)) == over
        schedule.timers()  # the upcoming meetings' timers need no meeting that is over ...
        days = schedule._booked_client_days(date.min, date.max)  # ... nor the contact cadence,
        schedule._usual_place()  # ... the place of the next resource group meeting ...
        assert schedule.state == kept.state  # ... or a comparison
        assert sorted(k for k, e in book._entries.items() if isinstance(e, dict)) == over
        assert days  # the client was met, or is to be
        assert days == sorted(
            m.starts_at.astimezone(STOCKHOLM).date()
            for m in map(Meeting.from_json, stored["meetings"].values())
            if "client" in m.invitees and not m.is_cancelled
        )
        assert snapshot(schedule)["meetings"] == stored["meetings"]
    restored = restore(stored, Rules(), WORKING_DAYS)
    asked = restored.state.meetings[over[0]]  # decoded now, and kept decoded until settled
    assert asked == Meeting.from_json(stored["meetings"][over[0]])
    assert not asked.is_upcoming
    assert restored.state == kept.state
    settle(restored)
    assert isinstance(restored.state.meetings._entries[over[0]], dict)


def test_a_schedule_kept_from_an_earlier_batch_gives_way_to_another_writers_change() -> None:
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    recording = RecordingService(meetings_service(InMemoryScheduleStore()))
    feed = CaseFeed(recording)  # type: ignore[arg-type]
    feed.open(MONDAY)
    feed.assign(MONDAY)
    feed.consent(MONDAY)
    feed.summarise(date(2026, 1, 20))
    events = [CaseEventIn(**event) for event in recording.applied]
    assert service.apply_case_events(events[:3]) == 3  # the schedule is kept after this batch
    # The HTTP API (another service object, the same store) books a meeting meanwhile.
    meetings_service(store).request(
        feed.case_id,
        SARA,
        lambda s: s.book("b1", starts_at=datetime(2026, 1, 28, 13, tzinfo=STOCKHOLM), minutes=60,
                         user_id="sara", location="Hemma", organisation_id=SOCIAL.id),
    )  # fmt: skip
    assert service.apply_case_events(events[3:]) == 1
    kinds = sorted(m.kind.value for m in service.meetings(feed.case_id))
    assert kinds == ["client_contact", "resource_group"]  # the booking is not lost
    versions = [e.version for e in store.events(feed.case_id)]
    assert versions == list(range(1, len(versions) + 1))  # one chain, nothing overwritten


def test_unassigning_one_of_two_coordinators_sharing_a_user_id_keeps_the_other_invited() -> None:
    # "sara" of the social services and "sara" of another municipality's: two people (ADR 0023).
    store = InMemoryScheduleStore()
    service, feed = started(store)
    other_org = OrganisationRef(id="annan-kommun", name="Annan kommun", principal=Principal.MUNICIPALITY)
    feed.assign(MONDAY, "sara", other_org)
    feed.summarise(date(2026, 1, 20))
    [meeting] = service.meetings(feed.case_id)
    coordinators = {
        i.invitee_id: i.organisation.id for i in meeting.invitees.values() if i.organisation and i.user_id
    }
    assert coordinators == {"coordinator:sara": SOCIAL.id, f"coordinator:{other_org.id}/sara": other_org.id}

    feed.unassign(date(2026, 1, 21), "sara", SOCIAL)

    [meeting] = service.meetings(feed.case_id)
    assert [
        i.organisation.id for i in meeting.invitees.values() if i.user_id == "sara" and i.organisation
    ] == [other_org.id]
    assert [m.meeting_id for m in service.meetings_of_coordinator("sara", other_org.id)] == [
        meeting.meeting_id
    ]
    assert service.meetings_of_coordinator("sara", SOCIAL.id) == []
    assert store.cases_of_coordinator("sara") == [feed.case_id]  # the feed's row, for the one left


@pytest.mark.parametrize("kept", [0, 1, 1_000])
def test_schedules_not_kept_in_memory_are_loaded_again_and_decide_the_same(kept: int) -> None:
    """VSS_MEETINGS_KEPT_SCHEDULES: how many schedules stay in memory between batches. Fewer
    kept means more snapshots loaded, never other decisions."""
    one_by_one, applied, case_ids = _applied_one_by_one()
    store = InMemoryScheduleStore()
    service = meetings_service(store)
    service.kept_schedules = kept
    loads = _counting_loads(service)
    events = [CaseEventIn(**event) for event in applied]
    for start in range(0, len(events), 2):
        service.apply_case_events(events[start : start + 2])

    assert _stored(store, case_ids) == _stored(one_by_one, case_ids)
    touched = len({(i // 2, e.case_id) for i, e in enumerate(events)})  # (batch, case) pairs
    if kept == 1_000:  # both kept: each loaded (or created) once
        assert len(loads) == len(case_ids)
    elif kept == 1:  # the other case's schedule pushed out: loaded again, not every time
        assert len(case_ids) < len(loads) < touched
    else:  # none kept: loaded in every batch that needs it
        assert len(loads) >= touched - 1
