"""iCalendar output for meetings (``services.shared.ics``), parsed back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, Component, Timezone, vCalAddress, vDDDTypes

from services.meetings.domain.meeting import Meeting, MeetingStatus
from services.shared.ics import calendar_feed, meeting_ics
from vss_contracts.meeting_events import Invitee, InviteeRole, MeetingKind

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 9, 1, 8, 30, tzinfo=UTC)
ORGANIZER = ("Kim Koordinator", "kim.koordinator@kommun.example.se")

ANNA = Invitee(
    invitee_id="member:anna", name="Anna Andersson", role=InviteeRole.CLIENT, email="anna@example.se"
)
BO = Invitee(invitee_id="contact:bo", name="Bo Berg", role=InviteeRole.RELATIVE, email="bo.berg@example.se")
CILLA = Invitee(  # reachable by phone only: no ATTENDEE
    invitee_id="contact:cilla", name="Cilla Ceder", role=InviteeRole.PROFESSIONAL, phone="+46701234567"
)


def make_meeting(
    starts_at: datetime = datetime(2026, 10, 23, 10, tzinfo=STOCKHOLM), **changes: Any
) -> Meeting:
    values: dict[str, Any] = {
        "meeting_id": uuid4(),
        "case_id": uuid4(),
        "kind": MeetingKind.RESOURCE_GROUP,
        "starts_at": starts_at,
        "ends_at": starts_at + timedelta(hours=1, minutes=30),
        "invitees": {i.invitee_id: i for i in (ANNA, BO, CILLA)},
        "reason": "Psykiatrisk öppenvård och missbruksbehandling",
    }
    values.update(changes)
    return Meeting(**values)


def parse(data: bytes) -> tuple[Calendar, list[Component]]:
    calendar = Calendar.from_ical(data)
    return calendar, calendar.walk("VEVENT")


def only_event(data: bytes) -> Component:
    _, events = parse(data)
    assert len(events) == 1
    return events[0]


def when(event: Component, name: str) -> datetime:
    """A DTSTART/DTEND/DTSTAMP as the aware datetime icalendar parsed it to."""
    value = event[name]
    assert isinstance(value, vDDDTypes)
    assert isinstance(value.dt, datetime)
    return value.dt


def tzid(event: Component, name: str) -> str | None:
    value = event[name]
    assert isinstance(value, vDDDTypes)
    found: str | None = value.params.get("TZID")
    return found


def addresses(event: Component, name: str) -> list[vCalAddress]:
    """ORGANIZER or ATTENDEE values (icalendar gives one value, or a list when repeated)."""
    value = event.get(name, [])
    values = value if isinstance(value, list) else [value]
    result = [v for v in values if isinstance(v, vCalAddress)]
    assert len(result) == len(values)
    return result


def request(meeting: Meeting) -> bytes:
    return meeting_ics(meeting, method="REQUEST", organizer=ORGANIZER, now=NOW)


def test_request_carries_identity_times_and_people() -> None:
    meeting = make_meeting(location="Socialkontoret, Storgatan 1")
    calendar, events = parse(request(meeting))

    assert str(calendar["PRODID"]) == "-//VSS//Meetings//SV"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar["CALSCALE"]) == "GREGORIAN"
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Stockholm"]

    [event] = events
    assert str(event["UID"]) == f"{meeting.meeting_id}@vss.se" == meeting.uid
    assert event["SEQUENCE"] == 0
    assert when(event, "DTSTAMP") == NOW
    for prop, expected in (("DTSTART", meeting.starts_at), ("DTEND", meeting.ends_at)):
        assert tzid(event, prop) == "Europe/Stockholm"
        assert when(event, prop).tzinfo == ZoneInfo("Europe/Stockholm")
        assert when(event, prop) == expected
    assert str(event["SUMMARY"]) == "Resursgruppsmöte"
    assert str(event["DESCRIPTION"]) == f"Ärende {str(meeting.case_id)[:8]}"
    assert str(event["LOCATION"]) == "Socialkontoret, Storgatan 1"
    assert str(event["STATUS"]) == "CONFIRMED"

    [organizer] = addresses(event, "ORGANIZER")
    assert str(organizer) == f"mailto:{ORGANIZER[1]}"
    assert organizer.params["CN"] == ORGANIZER[0]
    attendees = addresses(event, "ATTENDEE")
    assert [str(a) for a in attendees] == ["mailto:anna@example.se", "mailto:bo.berg@example.se"]
    assert [a.params["CN"] for a in attendees] == ["Anna Andersson", "Bo Berg"]
    for attendee in attendees:
        assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert attendee.params["RSVP"] == "TRUE"


@pytest.mark.parametrize(
    ("kind", "summary"),
    [
        (MeetingKind.RESOURCE_GROUP, "Resursgruppsmöte"),
        (MeetingKind.CLIENT_CONTACT, "Samordningsmöte"),
        (MeetingKind.CRISIS, "Krismöte"),
    ],
)
def test_summary_names_only_the_kind_of_meeting(kind: MeetingKind, summary: str) -> None:
    meeting = make_meeting(kind=kind)
    data = request(meeting)
    event = only_event(data)
    assert str(event["SUMMARY"]) == summary
    text = f"{event['SUMMARY']} {event['DESCRIPTION']}"
    for invitee in (ANNA, BO, CILLA):
        assert invitee.name not in text
    assert str(meeting.case_id) not in data.decode()
    assert "Psykiatrisk" not in data.decode()
    assert "LOCATION" not in event


def test_reschedule_keeps_the_uid_and_raises_the_sequence() -> None:
    meeting = make_meeting()
    moved = dataclasses.replace(
        meeting,
        sequence=1,
        starts_at=datetime(2026, 11, 3, 13, tzinfo=STOCKHOLM),
        ends_at=datetime(2026, 11, 3, 14, tzinfo=STOCKHOLM),
    )
    before, after = only_event(request(meeting)), only_event(request(moved))
    assert str(after["UID"]) == str(before["UID"]) == meeting.uid
    assert (before["SEQUENCE"], after["SEQUENCE"]) == (0, 1)
    assert when(after, "DTSTART") == datetime(2026, 11, 3, 13, tzinfo=STOCKHOLM)


def test_cancel() -> None:
    meeting = make_meeting(sequence=2)
    calendar, [event] = parse(meeting_ics(meeting, method="CANCEL", organizer=ORGANIZER, now=NOW))
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == meeting.uid
    assert event["SEQUENCE"] == 2


def test_cancel_to_dropped_invitees_only() -> None:
    meeting = make_meeting(invitees={ANNA.invitee_id: ANNA}, dropped={BO.invitee_id: BO})
    data = meeting_ics(
        meeting, method="CANCEL", organizer=ORGANIZER, now=NOW, attendees=meeting.dropped.values()
    )
    [attendee] = addresses(only_event(data), "ATTENDEE")
    assert str(attendee) == "mailto:bo.berg@example.se"


def test_request_for_a_cancelled_meeting_says_cancelled() -> None:
    event = only_event(request(make_meeting(status=MeetingStatus.CANCELLED)))
    assert str(event["STATUS"]) == "CANCELLED"


def test_one_attendee_per_address() -> None:
    shared = Invitee(
        invitee_id="contact:family",
        name="Familjen Berg",
        role=InviteeRole.RELATIVE,
        email="BO.BERG@example.se",
    )
    meeting = make_meeting(invitees={i.invitee_id: i for i in (BO, shared)})
    [attendee] = addresses(only_event(request(meeting)), "ATTENDEE")
    assert str(attendee) == "mailto:bo.berg@example.se"


@pytest.mark.parametrize(
    ("starts_at", "offset_hours"),
    [
        (datetime(2026, 10, 23, 10, tzinfo=STOCKHOLM), 2),  # summer time
        (datetime(2026, 10, 26, 10, tzinfo=STOCKHOLM), 1),  # the Monday after it ended
        (datetime(2027, 3, 29, 10, tzinfo=STOCKHOLM), 2),  # the Monday after it began
    ],
)
def test_dtstart_offset_follows_dst(starts_at: datetime, offset_hours: int) -> None:
    calendar, [event] = parse(request(make_meeting(starts_at)))
    start = when(event, "DTSTART")
    assert (start.hour, start.utcoffset()) == (10, timedelta(hours=offset_hours))
    # The VTIMEZONE we sent gives the same offset on its own (lookup_tzid=False ignores zoneinfo).
    [vtimezone] = calendar.walk("VTIMEZONE")
    assert isinstance(vtimezone, Timezone)
    own_zone = vtimezone.to_tz(lookup_tzid=False)
    assert start.replace(tzinfo=own_zone).utcoffset() == timedelta(hours=offset_hours)


def test_times_from_json_are_written_in_stockholm_time() -> None:
    # from_json gives fixed offsets (+01:00), which must still be written with TZID.
    meeting = Meeting.from_json(make_meeting(datetime(2026, 12, 7, 9, tzinfo=STOCKHOLM)).to_json())
    event = only_event(request(meeting))
    assert tzid(event, "DTSTART") == "Europe/Stockholm"
    assert when(event, "DTSTART") == datetime(2026, 12, 7, 9, tzinfo=STOCKHOLM)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        request(make_meeting(datetime(2026, 10, 23, 10)))
    with pytest.raises(ValueError, match="naive"):
        meeting_ics(make_meeting(), method="REQUEST", organizer=ORGANIZER, now=datetime(2026, 9, 1))


def test_feed() -> None:
    meetings = [
        make_meeting(datetime(2026, 10, 23, 10, tzinfo=STOCKHOLM)),
        make_meeting(datetime(2026, 12, 7, 9, tzinfo=STOCKHOLM), kind=MeetingKind.CLIENT_CONTACT),
        make_meeting(datetime(2027, 2, 1, 13, tzinfo=STOCKHOLM), status=MeetingStatus.CANCELLED),
    ]
    calendar, events = parse(calendar_feed(meetings, name="Mina VSS-möten", now=NOW))
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert str(calendar["X-WR-CALNAME"]) == "Mina VSS-möten"
    assert len(calendar.walk("VTIMEZONE")) == 1
    assert [str(e["UID"]) for e in events] == [m.uid for m in meetings]
    assert [str(e["STATUS"]) for e in events] == ["CONFIRMED", "CONFIRMED", "CANCELLED"]
    assert [when(e, "DTSTART") for e in events] == [m.starts_at for m in meetings]
    for event, meeting in zip(events, meetings, strict=True):
        assert tzid(event, "DTSTART") == "Europe/Stockholm"
        assert event["SEQUENCE"] == meeting.sequence
        assert str(event["DESCRIPTION"]) == f"Ärende {str(meeting.case_id)[:8]}"
        # RFC 5546: a published event has no attendees (and a feed names no one).
        assert "ATTENDEE" not in event
        assert "ORGANIZER" not in event


def test_feed_with_organizer() -> None:
    [event] = parse(calendar_feed([make_meeting()], name="x", now=NOW, organizer=ORGANIZER))[1]
    assert [str(a) for a in addresses(event, "ORGANIZER")] == [f"mailto:{ORGANIZER[1]}"]


def test_empty_feed() -> None:
    calendar, events = parse(calendar_feed([], name="Inga möten", now=NOW))
    assert events == []
    assert len(calendar.walk("VTIMEZONE")) == 1
