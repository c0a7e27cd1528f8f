"""Each case's meetings in the projections: the meeting events' rows, the consumer's
idempotence, the order of the answer, and the calendar entry under the meetings service's UID."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
from icalendar import Calendar

from services.meetings.domain.meeting import Meeting as ScheduledMeeting
from services.meetings.domain.meeting import MeetingStatus
from services.projections.application.meetings import MEETINGS_CONSUMER, MeetingProjector
from services.projections.domain import meetings
from services.projections.domain.events import MeetingRecord
from services.projections.infrastructure.decoding import decode_meeting
from services.shared.ics import STOCKHOLM, meeting_ics, meeting_uid
from vss_contracts import meeting_events as me
from vss_contracts.chain import GENESIS_HASH, cloud_event_hash
from vss_contracts.types import ActingPerson, ContactPeriod, NamedCoordinator, OrganisationRef, Principal

from .fakes import InMemoryReadModels

CASE = "5b0f6a52-8a6e-4c53-9a7c-2f1d3e4b5a61"
OTHER_CASE = "0c3e9d7a-1f2b-4a5c-8d6e-7f8091a2b3c4"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REGION = OrganisationRef(id="region-vasterbotten", name="Region Västerbotten", principal=Principal.REGION)
MUNICIPALITY = OrganisationRef(id="umea-kommun", name="Umeå kommun", principal=Principal.MUNICIPALITY)
# Who acted on a meeting, as its payload names them: a person (ADR 0023).
ACTED_BY = ("booked_by", "moved_by", "confirmed_by", "cancelled_by", "recorded_by")


def person(organisation: OrganisationRef | None, user_id: str = "anna") -> ActingPerson:
    """Who acted, as the payload names them (no organisation: as upcast from a version that
    named the user id alone)."""
    return ActingPerson(organisation_id=None if organisation is None else organisation.id, user_id=user_id)


def held_on_the_10th(meeting_id: UUID, recorded_by: ActingPerson) -> me.MeetingHeld:
    return me.MeetingHeld(
        meeting_id=meeting_id,
        kind=me.MeetingKind.RESOURCE_GROUP,
        held_on=date(2026, 3, 10),
        recorded_by=recorded_by,
    )


CLIENT = me.Invitee(
    invitee_id="member:client",
    name="Tolvan Tolvansson",
    role=me.InviteeRole.CLIENT,
    email="tolvan@example.se",
)
ANNA = me.Invitee(
    invitee_id="coordinator:anna",
    name="Anna Lindqvist",
    role=me.InviteeRole.COORDINATOR,
    organisation=REGION,
    user_id="anna",
    email="anna@region.example.se",
    phone="+46701234567",
)
LEILA = me.Invitee(
    invitee_id="member:leila", name="Leila Haddad", role=me.InviteeRole.PROFESSIONAL, email="leila@example.se"
)


def at(day: int, hour: int, minute: int = 0, *, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=STOCKHOLM)


class Schedule:
    """Each case's meeting schedule as the meetings service publishes it: versions 1, 2, 3 …
    per case, each event chained to the one before, one stream sequence per event. As the
    service does, the envelope names who acted: the user the payload names with their
    organisation (``by``, default the region), else the service itself."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self.sequence = 0

    def record(
        self, payload: me.MeetingEventData, case_id: str = CASE, *, by: OrganisationRef = REGION
    ) -> MeetingRecord:
        version, previous = self.heads.get(case_id, (0, GENESIS_HASH))
        acted = next((p for p in (getattr(payload, f, None) for f in ACTED_BY) if p is not None), None)
        user = None if acted is None else acted.user_id
        actor_id, actor_org = (user, by.id) if user is not None else ("vss-meetings", "vss")
        event_hash = hashlib.sha256(f"{case_id}/{version + 1}/{previous}".encode()).hexdigest()
        self.heads[case_id] = (version + 1, event_hash)
        self.sequence += 1
        return MeetingRecord(
            case_id=case_id,
            version=version + 1,
            type=payload.TYPE,
            data=payload.model_dump(mode="json"),
            event_id=str(uuid4()),
            time=(NOW + timedelta(minutes=self.sequence)).isoformat(),
            stream_sequence=self.sequence,
            prev_hash=previous,
            event_hash=event_hash,
            hash_ok=True,
            actor_id=actor_id,
            actor_org=actor_org,
        )


def scheduled(meeting_id: UUID, starts_at: datetime, **extra: Any) -> me.MeetingScheduled:
    return me.MeetingScheduled(
        meeting_id=meeting_id,
        kind=extra.pop("kind", me.MeetingKind.RESOURCE_GROUP),
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
        invitees=extra.pop("invitees", [CLIENT, ANNA]),
        reason=extra.pop("reason", "booked"),
        **extra,
    )


def project(records: list[MeetingRecord], models: InMemoryReadModels | None = None) -> InMemoryReadModels:
    """Live: one event per transaction, the position moved to its sequence."""
    models = models or InMemoryReadModels()
    projector = MeetingProjector(models)
    for record in records:
        assert projector.apply([record], stream_sequence=record.stream_sequence, event_id=record.event_id)
    return models


def only(models: InMemoryReadModels, case_id: str = CASE) -> dict[str, Any]:
    found = models.meetings(case_id)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------------------ the rows
def test_a_booked_meeting_is_a_row_with_what_the_event_carries_and_no_contact_details() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    record = schedule.record(
        scheduled(
            meeting_id, at(10, 10), location="Vårdcentralen, rum 3", booked_by=person(REGION), sip_version=2
        )
    )
    row = only(project([record]))
    assert row == {
        "case_id": CASE,
        "meeting_id": str(meeting_id),
        "kind": "resource_group",
        "status": "scheduled",
        "starts_at": "2026-03-10T10:00:00+01:00",
        "ends_at": "2026-03-10T11:00:00+01:00",
        "location": "Vårdcentralen, rum 3",
        "sequence": 0,
        "reason": "booked",
        "sip_version": 2,
        "warning_id": None,
        "invitees": [
            {
                "invitee_id": "member:client",
                "name": "Tolvan Tolvansson",
                "role": "client",
                "organisation": None,
                "user_id": None,
            },
            {
                "invitee_id": "coordinator:anna",
                "name": "Anna Lindqvist",
                "role": "coordinator",
                "organisation": {"id": REGION.id, "name": REGION.name},
                "user_id": "anna",
            },
        ],
        "previous_starts_at": None,
        "change_reason": None,
        "changed_by": "anna",
        "changed_by_organisation": REGION.id,
        "held_on": None,
        "version": 1,
        "event_id": record.event_id,
        "updated_at": record.time,
        "verified": True,
        "place_kind": None,
        "agenda": [],
        "proposed": False,
        "answers": {},
        "uid": f"{meeting_id}@vss.se",
    }


AGENDA = ["Utvärdering sedan förra mötet", "Förändringsskattning", "Nästa möten"]


def test_a_proposed_meeting_confirmed_and_answered_shows_its_place_agenda_and_answers() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    proposed = scheduled(
        meeting_id,
        at(10, 10),
        location="Hemma hos brukaren",
        place_kind=me.PlaceKind.CLIENT_HOME,
        agenda=AGENDA,
        proposed=True,
        reason="mapping_summarised",
    )
    models = project([schedule.record(proposed)])
    row = only(models)
    assert (row["proposed"], row["place_kind"], row["agenda"]) == (True, "client_home", AGENDA)
    confirmed = me.MeetingConfirmed(
        meeting_id=meeting_id,
        starts_at=at(11, 13),
        ends_at=at(11, 14),
        place_kind=me.PlaceKind.OFFICE,
        location="Mottagningen",
        sequence=1,
        confirmed_by=person(REGION),
    )
    answered = me.MeetingAnswered(
        meeting_id=meeting_id,
        invitee_id="coordinator:anna",
        answer=me.Answer.DECLINED,
        via=me.AnswerVia.ICALENDAR,
        sequence=1,
        answered_at=NOW,
    )
    project([schedule.record(confirmed), schedule.record(answered)], models)
    row = only(models)
    assert (row["proposed"], row["place_kind"], row["location"], row["sequence"]) == (
        False,
        "office",
        "Mottagningen",
        1,
    )
    assert row["starts_at"] == "2026-03-11T13:00:00+01:00"
    assert row["changed_by"] == "anna"
    assert row["answers"] == {
        "coordinator:anna": {
            "answer": "declined",
            "via": "icalendar",
            "sequence": 1,
            "at": "2026-03-02T09:00:00Z",
        }
    }
    # Moved: the answers were to the old time.
    moved = me.MeetingRescheduled(
        meeting_id=meeting_id,
        starts_at=at(12, 13),
        ends_at=at(12, 14),
        previous_starts_at=at(11, 13),
        sequence=2,
        reason="x",
    )
    project([schedule.record(moved)], models)
    assert only(models)["answers"] == {}
    # The row's columns hold lists and maps as JSON and read back the same.
    assert meetings.from_row(meetings.row({**only(models), "starts_utc": "x"}))["agenda"] == AGENDA


def test_a_reschedule_moves_the_meeting_and_raises_its_sequence() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    records = [
        schedule.record(scheduled(meeting_id, at(10, 10))),
        schedule.record(
            me.MeetingRescheduled(
                meeting_id=meeting_id,
                starts_at=at(12, 13),
                ends_at=at(12, 14, 30),
                previous_starts_at=at(10, 10),
                sequence=1,
                reason="the client is ill",
                moved_by=person(REGION),
            )
        ),
    ]
    row = only(project(records))
    assert (row["status"], row["sequence"], row["starts_at"], row["ends_at"]) == (
        "rescheduled",
        1,
        "2026-03-12T13:00:00+01:00",
        "2026-03-12T14:30:00+01:00",
    )
    assert (row["previous_starts_at"], row["change_reason"], row["changed_by"]) == (
        "2026-03-10T10:00:00+01:00",
        "the client is ill",
        "anna",
    )
    assert row["version"] == 2
    assert row["event_id"] == records[1].event_id


def test_invitees_added_and_dropped_change_the_list_in_place() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    moved = ANNA.model_copy(update={"name": "Anna Lindqvist Berg"})
    records = [
        schedule.record(scheduled(meeting_id, at(10, 10))),
        schedule.record(
            me.MeetingInviteesChanged(
                meeting_id=meeting_id,
                added=[LEILA, moved],
                removed=[CLIENT],
                sequence=1,
                reason="member_added",
            )
        ),
    ]
    row = only(project(records))
    assert [(i["invitee_id"], i["name"]) for i in row["invitees"]] == [
        ("coordinator:anna", "Anna Lindqvist Berg"),
        ("member:leila", "Leila Haddad"),
    ]
    assert (row["status"], row["sequence"]) == ("scheduled", 1)


def test_a_cancelled_and_a_held_meeting_keep_their_rows_with_their_status() -> None:
    schedule, cancelled, held = Schedule(), uuid4(), uuid4()
    records = [
        schedule.record(scheduled(cancelled, at(10, 10))),
        schedule.record(scheduled(held, at(3, 9), kind=me.MeetingKind.CLIENT_CONTACT)),
        schedule.record(
            me.MeetingCancelled(meeting_id=cancelled, sequence=1, reason="case closed", cancelled_by=None)
        ),
        schedule.record(
            me.MeetingHeld(meeting_id=held, kind=me.MeetingKind.CLIENT_CONTACT, held_on=date(2026, 3, 3))
        ),
    ]
    first, second = project(records).meetings(CASE)
    assert (first["meeting_id"], first["status"], first["held_on"], first["sequence"]) == (
        str(held),
        "held",
        "2026-03-03",
        0,
    )
    assert (second["meeting_id"], second["status"], second["change_reason"], second["sequence"]) == (
        str(cancelled),
        "cancelled",
        "case closed",
        1,
    )


def test_two_users_named_anna_at_two_organisations_are_two_people_in_the_rows() -> None:
    # A user id is unique within its organisation only: the region's anna and the
    # municipality's anna book and cancel meetings of one case, and each row says which.
    schedule, region, municipality, rules = Schedule(), uuid4(), uuid4(), uuid4()
    records = [
        schedule.record(scheduled(region, at(10, 10), booked_by=person(REGION)), by=REGION),
        schedule.record(scheduled(municipality, at(11, 10), booked_by=person(MUNICIPALITY)), by=MUNICIPALITY),
        schedule.record(scheduled(rules, at(12, 10), reason="sip_follow_up", sip_version=1)),
        schedule.record(
            me.MeetingCancelled(
                meeting_id=municipality, sequence=1, reason="other", cancelled_by=person(MUNICIPALITY)
            ),
            by=MUNICIPALITY,
        ),
        schedule.record(
            me.MeetingRescheduled(
                meeting_id=rules,
                starts_at=at(13, 10),
                ends_at=at(13, 11),
                previous_starts_at=at(12, 10),
                sequence=1,
                reason="the client is ill",
                moved_by=person(REGION),
            ),
            by=REGION,
        ),
    ]
    models = project(records[:3])
    assert [
        (m["meeting_id"], m["changed_by"], m["changed_by_organisation"]) for m in models.meetings(CASE)
    ] == [
        (str(region), "anna", REGION.id),
        (str(municipality), "anna", MUNICIPALITY.id),
        (str(rules), None, None),  # the rules booked it: nobody did
    ]
    project(records[3:], models)
    assert [
        (m["meeting_id"], m["status"], m["changed_by"], m["changed_by_organisation"])
        for m in models.meetings(CASE)
    ] == [
        (str(region), "scheduled", "anna", REGION.id),
        (str(municipality), "cancelled", "anna", MUNICIPALITY.id),
        (str(rules), "rescheduled", "anna", REGION.id),
    ]


def test_the_payloads_organisation_names_who_acted_whatever_the_envelope_says() -> None:
    """A payload that names the person is the word on it: an envelope naming another
    organisation, or another user, changes nothing."""
    schedule, meeting_id = Schedule(), uuid4()
    booked = schedule.record(scheduled(meeting_id, at(10, 10), booked_by=person(MUNICIPALITY)), by=REGION)
    models = project([booked])
    assert (only(models)["changed_by"], only(models)["changed_by_organisation"]) == ("anna", MUNICIPALITY.id)
    held_by = held_on_the_10th(meeting_id, person(MUNICIPALITY))
    other = replace(schedule.record(held_by, by=REGION), actor_id="bo")
    held = only(project([other], models))
    assert (held["status"], held["changed_by"], held["changed_by_organisation"]) == (
        "held",
        "anna",
        MUNICIPALITY.id,
    )


def test_an_upcast_payload_takes_the_organisation_from_an_envelope_naming_the_same_user() -> None:
    """A payload upcast from a version that named the user id alone has no organisation: the
    envelope's, hashed with it, names the same user's; an envelope naming someone else gives
    none rather than a wrong one."""
    schedule, meeting_id = Schedule(), uuid4()
    booked = schedule.record(scheduled(meeting_id, at(10, 10), booked_by=person(None)), by=MUNICIPALITY)
    models = project([booked])
    assert (only(models)["changed_by"], only(models)["changed_by_organisation"]) == ("anna", MUNICIPALITY.id)
    held_by = held_on_the_10th(meeting_id, person(None))
    other = replace(schedule.record(held_by), actor_id="bo")
    held = only(project([other], models))
    assert (held["status"], held["changed_by"], held["changed_by_organisation"]) == ("held", "anna", None)


def test_a_crisis_meeting_names_its_early_warning() -> None:
    schedule, meeting_id, warning = Schedule(), uuid4(), uuid4()
    record = schedule.record(
        me.CrisisMeetingScheduled(
            meeting_id=meeting_id,
            warning_id=warning,
            starts_at=at(4, 13),
            ends_at=at(4, 14),
            invitees=[CLIENT, ANNA],
        )
    )
    row = only(project([record]))
    assert (row["kind"], row["reason"], row["warning_id"], row["location"]) == (
        "crisis",
        "early_warning",
        str(warning),
        None,
    )


def test_reminders_and_missed_contacts_change_no_meeting_but_move_the_schedule() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    first = schedule.record(scheduled(meeting_id, at(10, 10)))
    ignored = [
        schedule.record(
            me.MeetingReminderDue(meeting_id=meeting_id, starts_at=at(10, 10), days_before=7, sequence=0)
        ),
        schedule.record(me.ChangeRatingRequested(meeting_id=meeting_id, meeting_starts_at=at(10, 10))),
        schedule.record(
            me.FollowUpOverdue(
                sip_version=1,
                follow_up_on=date(2026, 3, 1),
                coordinators=[NamedCoordinator(organisation_id="vgr-psykiatri", user_id="anna")],
            )
        ),
        schedule.record(
            me.ContactCadenceMissed(
                period=ContactPeriod.SOCIAL_RECOVERY,
                period_set=False,
                period_days=14,
                period_start=date(2026, 2, 1),
                period_end=date(2026, 2, 14),
                coordinators=[NamedCoordinator(organisation_id="vgr-psykiatri", user_id="anna")],
            )
        ),
    ]
    models = project([first, *ignored])
    row = only(models)
    assert (row["version"], row["event_id"]) == (1, first.event_id)
    assert models.meeting_heads[CASE][0] == 5
    assert models.meetings_applied_through() == ignored[-1].stream_sequence
    assert all(meetings.meeting_id_of(r) is None for r in ignored)


def test_the_meetings_are_in_the_order_they_start_across_the_daylight_saving_change() -> None:
    schedule, early, late, next_day = Schedule(), uuid4(), uuid4(), uuid4()
    # 25 October 2026: 02:30 summer time (00:30 UTC) comes before 02:10 winter time (01:10 UTC).
    summer = datetime(2026, 10, 25, 0, 30, tzinfo=UTC).astimezone(STOCKHOLM)
    winter = datetime(2026, 10, 25, 1, 10, tzinfo=UTC).astimezone(STOCKHOLM)
    assert (summer.isoformat()[11:], winter.isoformat()[11:]) == ("02:30:00+02:00", "02:10:00+01:00")
    records = [
        schedule.record(scheduled(next_day, at(26, 9, month=10))),
        schedule.record(scheduled(late, winter)),
        schedule.record(scheduled(early, summer)),
    ]
    assert [m["meeting_id"] for m in project(records).meetings(CASE)] == [
        str(early),
        str(late),
        str(next_day),
    ]


def test_each_case_has_its_own_meetings() -> None:
    schedule = Schedule()
    mine, theirs = uuid4(), uuid4()
    models = project(
        [
            schedule.record(scheduled(mine, at(10, 10))),
            schedule.record(scheduled(theirs, at(9, 10)), OTHER_CASE),
        ]
    )
    assert [m["meeting_id"] for m in models.meetings(CASE)] == [str(mine)]
    assert [m["meeting_id"] for m in models.meetings(OTHER_CASE)] == [str(theirs)]
    assert models.meetings(str(uuid4())) == []


# ------------------------------------------------------------------------- the consumer
def test_a_redelivery_or_a_republished_copy_changes_nothing_but_the_position() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    booked = schedule.record(scheduled(meeting_id, at(10, 10)))
    moved = schedule.record(
        me.MeetingRescheduled(
            meeting_id=meeting_id,
            starts_at=at(11, 10),
            ends_at=at(11, 11),
            previous_starts_at=at(10, 10),
            sequence=1,
            reason="moved",
        )
    )
    models = project([booked, moved])
    projector = MeetingProjector(models)
    before = dict(models.meeting_rows)
    assert projector.apply([moved], stream_sequence=moved.stream_sequence, event_id=moved.event_id) is False
    # The relay republished the booking after its duplicate window: a new sequence, the same event.
    copy = replace(booked, stream_sequence=7)
    assert projector.apply([copy], stream_sequence=7, event_id=copy.event_id)
    assert projector.duplicates == 1
    assert models.meeting_rows == before
    assert only(models)["status"] == "rescheduled"
    assert models.positions.position(MEETINGS_CONSUMER) == 7


def test_a_batch_gives_the_rows_one_event_at_a_time_gives() -> None:
    schedule, a, b = Schedule(), uuid4(), uuid4()
    records = [
        schedule.record(scheduled(a, at(10, 10))),
        schedule.record(scheduled(b, at(9, 10)), OTHER_CASE),
        schedule.record(
            me.MeetingInviteesChanged(meeting_id=a, added=[LEILA], sequence=1, reason="member_added")
        ),
        schedule.record(
            me.MeetingRescheduled(
                meeting_id=a,
                starts_at=at(11, 10),
                ends_at=at(11, 11),
                previous_starts_at=at(10, 10),
                sequence=2,
                reason="moved",
            )
        ),
        schedule.record(me.MeetingCancelled(meeting_id=b, sequence=1, reason="case closed"), OTHER_CASE),
        schedule.record(
            me.MeetingHeld(meeting_id=a, kind=me.MeetingKind.RESOURCE_GROUP, held_on=date(2026, 3, 11))
        ),
    ]
    live = project(records)
    rebuilt = InMemoryReadModels()
    projector = MeetingProjector(rebuilt)
    for part in (records[:4], records[4:]):
        assert projector.apply(part, stream_sequence=part[-1].stream_sequence, event_id=part[-1].event_id)
    assert rebuilt.meeting_rows == live.meeting_rows
    assert rebuilt.meeting_heads == live.meeting_heads
    assert (
        rebuilt.meetings_applied_through() == live.meetings_applied_through() == records[-1].stream_sequence
    )
    assert projector.applied == len(records)


def test_a_gap_in_the_schedules_chain_marks_the_meetings_it_changed() -> None:
    schedule, kept, broken = Schedule(), uuid4(), uuid4()
    records = [schedule.record(scheduled(kept, at(10, 10))), schedule.record(scheduled(broken, at(11, 10)))]
    tampered = replace(
        schedule.record(me.MeetingCancelled(meeting_id=broken, sequence=1, reason="x")), hash_ok=False
    )
    models = project([*records, tampered])
    assert [(m["meeting_id"], m["verified"]) for m in models.meetings(CASE)] == [
        (str(kept), True),
        (str(broken), False),
    ]
    assert models.meeting_heads[CASE][2] is False


def test_a_change_of_a_meeting_never_scheduled_here_is_passed_over() -> None:
    schedule = Schedule()
    orphan = schedule.record(me.MeetingCancelled(meeting_id=uuid4(), sequence=1, reason="x"))
    models = InMemoryReadModels()
    projector = MeetingProjector(models)
    assert projector.apply([orphan], stream_sequence=orphan.stream_sequence, event_id=orphan.event_id)
    assert projector.orphans == 1
    assert models.meetings(CASE) == []
    assert models.meeting_heads[CASE][0] == 1


def test_a_dead_lettered_event_is_passed_over() -> None:
    models = InMemoryReadModels()
    MeetingProjector(models).pass_over(3, "dead")
    assert models.meetings_applied_through() == 3
    assert models.meeting_rows == {}


# ------------------------------------------------------------------------- the calendar
def _vevent(ics: bytes) -> Any:
    return next(c for c in Calendar.from_ical(ics).walk("VEVENT"))


def test_the_calendar_entry_is_the_meetings_services_under_the_same_uid() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    records = [
        schedule.record(scheduled(meeting_id, at(10, 10), location="Vårdcentralen")),
        schedule.record(
            me.MeetingRescheduled(
                meeting_id=meeting_id,
                starts_at=at(31, 10, month=3),  # after the change to summer time
                ends_at=at(31, 11, month=3),
                previous_starts_at=at(10, 10),
                sequence=1,
                reason="moved",
            )
        ),
    ]
    row = only(project(records))
    theirs = ScheduledMeeting(
        meeting_id=meeting_id,
        case_id=UUID(CASE),
        kind=me.MeetingKind.RESOURCE_GROUP,
        starts_at=at(31, 10, month=3),
        ends_at=at(31, 11, month=3),
        invitees={i.invitee_id: i for i in (CLIENT, ANNA)},
        reason="booked",
        sequence=1,
        location="Vårdcentralen",
    )
    organiser = ("VSS", "noreply@vss.example.se")
    ours = _vevent(meetings.meeting_calendar(row, now=NOW, organizer=organiser))
    invitation = _vevent(meeting_ics(theirs, method="REQUEST", organizer=organiser, now=NOW))
    assert str(ours["UID"]) == str(invitation["UID"]) == meeting_uid(meeting_id) == row["uid"]
    for field in ("SEQUENCE", "SUMMARY", "DESCRIPTION", "LOCATION", "STATUS", "ORGANIZER"):
        assert ours[field] == invitation[field], field
    for field in ("DTSTART", "DTEND"):
        assert ours[field].dt == invitation[field].dt, field
        assert ours[field].params["TZID"] == "Europe/Stockholm"
    assert "ATTENDEE" not in ours  # a published entry names nobody
    assert b"METHOD:PUBLISH" in meetings.meeting_calendar(row, now=NOW)


def test_a_cancelled_meetings_calendar_entry_says_so() -> None:
    schedule, meeting_id = Schedule(), uuid4()
    records = [
        schedule.record(scheduled(meeting_id, at(10, 10))),
        schedule.record(me.MeetingCancelled(meeting_id=meeting_id, sequence=1, reason="case closed")),
    ]
    row = only(project(records))
    theirs = ScheduledMeeting(
        meeting_id=meeting_id,
        case_id=UUID(CASE),
        kind=me.MeetingKind.RESOURCE_GROUP,
        starts_at=at(10, 10),
        ends_at=at(10, 11),
        invitees={},
        reason="booked",
        sequence=1,
        status=MeetingStatus.CANCELLED,
    )
    ours = _vevent(meetings.meeting_calendar(row, now=NOW))
    cancellation = _vevent(meeting_ics(theirs, method="CANCEL", organizer=("VSS", "x@example.se"), now=NOW))
    assert (str(ours["UID"]), ours["SEQUENCE"], str(ours["STATUS"])) == (
        str(cancellation["UID"]),
        cancellation["SEQUENCE"],
        "CANCELLED",
    )


def published(
    type_name: str, data: dict[str, Any], *, version: int, prev_hash: str, actor: tuple[str, str]
) -> MeetingRecord:
    """A meeting event as the meetings service published it, decoded as the projections do."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(UUID(int=version)),
        "source": "/vss/meetings",
        "type": type_name,
        "subject": CASE,
        "time": "2026-01-20T08:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
        "caseversion": version,
        "logposition": version,
        "correlationid": str(UUID(int=version)),
        "causationid": None,
        "actorid": actor[0],
        "actororg": actor[1],
        "actorprincipal": "municipality",
        "prevhash": prev_hash,
    }
    body["eventhash"] = cloud_event_hash(body, dumps=lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS))
    return decode_meeting(orjson.dumps(body), version)


def test_a_v1_meeting_as_published_upcasts_and_gives_the_row_it_gave() -> None:
    """A MeetingScheduled.v1 on the stream (before places and agendas) decodes, upcast, into the
    same row as before, with a place of no recorded kind and no agenda."""
    meeting_id = uuid4()
    v1 = me.MeetingScheduledV1(
        meeting_id=meeting_id,
        kind=me.MeetingKind.RESOURCE_GROUP,
        starts_at=at(10, 10),
        ends_at=at(10, 11),
        invitees=[CLIENT],
        reason="sip_follow_up",
        sip_version=1,
        location="Mottagningen, Storgatan 1",
    )
    record = published(
        v1.TYPE, v1.model_dump(mode="json"), version=1, prev_hash=GENESIS_HASH, actor=("vss-meetings", "vss")
    )
    assert record.type == me.MeetingScheduled.TYPE
    assert (record.actor_id, record.actor_org) == ("vss-meetings", "vss")  # the envelope's
    assert record.hash_ok  # the hash is of the payload as published, not as upcast
    row = only(project([record]))
    assert (row["location"], row["place_kind"], row["agenda"], row["proposed"]) == (
        "Mottagningen, Storgatan 1",
        "other",
        [],
        False,
    )
    assert row["sip_version"] == 1


def test_each_earlier_version_naming_a_user_id_alone_gives_the_envelopes_organisation() -> None:
    """MeetingScheduled.v2, MeetingConfirmed.v1, MeetingRescheduled.v1, MeetingCancelled.v1 and
    MeetingHeld.v1 as published: upcast, who acted has no organisation, and the row takes the
    envelope's where it names the same user, none where it names another."""
    meeting_id = uuid4()
    current = only(project([Schedule().record(scheduled(meeting_id, at(10, 10)))]))
    when = {"starts_at": "2026-03-11T10:00:00+01:00", "ends_at": "2026-03-11T11:00:00+01:00"}
    old: list[tuple[str, str, dict[str, Any]]] = [
        (me.MeetingScheduledV2.TYPE, "booked_by",
         {**when, "kind": "resource_group", "invitees": [], "reason": "booked"}),
        (me.MeetingConfirmedV1.TYPE, "confirmed_by",
         {**when, "place_kind": "office", "location": "Kontoret", "sequence": 1}),
        (me.MeetingRescheduledV1.TYPE, "moved_by",
         {**when, "previous_starts_at": "2026-03-10T10:00:00+01:00", "sequence": 1, "reason": "x"}),
        (me.MeetingCancelledV1.TYPE, "cancelled_by", {"sequence": 1, "reason": "Sjuk"}),
        (me.MeetingHeldV1.TYPE, "recorded_by", {"kind": "resource_group", "held_on": "2026-03-10"}),
    ]  # fmt: skip
    for version, (type_name, field, fields) in enumerate(old, start=1):
        data = {"meeting_id": str(meeting_id), **fields, field: "anna"}
        same = published(
            type_name, data, version=version, prev_hash=GENESIS_HASH, actor=("anna", MUNICIPALITY.id)
        )
        assert same.type != type_name  # upcast
        assert same.data[field] == {"organisation_id": None, "user_id": "anna"}  # nothing invented
        assert same.hash_ok  # the hash is of the payload as published
        handler = meetings.MEETING_HANDLERS.handler(same.type)
        assert handler is not None
        for record, organisation in ((same, MUNICIPALITY.id), (replace(same, actor_id="bo"), None)):
            row = handler(current, record)
            assert row is not None
            assert (row["changed_by"], row["changed_by_organisation"]) == ("anna", organisation), type_name
        by_the_rules = published(
            type_name,
            {**data, field: None},
            version=version,
            prev_hash=GENESIS_HASH,
            actor=("vss-meetings", "vss"),
        )
        row = handler(current, by_the_rules)
        assert row is not None
        assert (row["changed_by"], row["changed_by_organisation"]) == (None, None), type_name
