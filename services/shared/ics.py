"""iCalendar (RFC 5545) for meetings: invitations and cancellations (iTIP, RFC 5546) and
calendar feeds (*kalenderprenumeration*).

A calendar entry is seen by whoever can see the invitee's calendar (colleagues,
assistants, a shared family calendar), so it names the kind of meeting and a short case
reference, never the client, the reason or anything about their health.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress

from vss_contracts.meeting_events import Invitee, MeetingKind

PRODID = "-//VSS//Meetings//SV"
TZID = "Europe/Stockholm"
STOCKHOLM = ZoneInfo(TZID)


class Meeting(Protocol):
    """What a calendar entry needs of a meeting (the meetings service's schedule and the
    notifications service's copy of it both have it)."""

    @property
    def meeting_id(self) -> UUID: ...
    @property
    def uid(self) -> str: ...
    @property
    def case_id(self) -> UUID: ...
    @property
    def kind(self) -> MeetingKind: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def sequence(self) -> int: ...
    @property
    def location(self) -> str | None: ...
    @property
    def invitees(self) -> Mapping[str, Invitee]: ...
    @property
    def is_cancelled(self) -> bool: ...
    @property
    def agenda(self) -> Sequence[str]: ...
    @property
    def proposed(self) -> bool:
        """The schedule's suggestion, not yet confirmed: a tentative entry."""
        ...

    @property
    def partstats(self) -> Mapping[str, str]:
        """The invitees' answers as PARTSTAT values (ACCEPTED, DECLINED, TENTATIVE) by invitee id."""
        ...


def meeting_uid(meeting_id: UUID) -> str:
    """The iCalendar UID of a meeting: stable for its whole life, the same in every copy."""
    return f"{meeting_id}@vss.se"


@dataclass
class CalendarEntry:
    """A copy of a meeting kept only for its calendar entry, outside the meetings service (the
    notifications service's copy, a meeting of the read model). It names nobody's answer:
    the answers are the meetings service's to show."""

    meeting_id: UUID
    case_id: UUID
    kind: MeetingKind
    starts_at: datetime
    ends_at: datetime
    sequence: int
    invitees: dict[str, Invitee] = field(default_factory=dict)  # by invitee id
    location: str | None = None
    is_cancelled: bool = False
    agenda: list[str] = field(default_factory=list)
    proposed: bool = False

    @property
    def uid(self) -> str:
        return meeting_uid(self.meeting_id)

    @property
    def partstats(self) -> dict[str, str]:
        return {}


def identity_to_json(meeting: Meeting) -> dict[str, Any]:
    """What every service's copy of a meeting keeps the same way: which meeting, when."""
    return {
        "meeting_id": str(meeting.meeting_id),
        "case_id": str(meeting.case_id),
        "kind": meeting.kind.value,
        "starts_at": meeting.starts_at.isoformat(),
        "ends_at": meeting.ends_at.isoformat(),
    }


def identity_from_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`identity_to_json` read back, as keyword arguments of a meeting's constructor."""
    return {
        "meeting_id": UUID(value["meeting_id"]),
        "case_id": UUID(value["case_id"]),
        "kind": MeetingKind(value["kind"]),
        "starts_at": datetime.fromisoformat(value["starts_at"]),
        "ends_at": datetime.fromisoformat(value["ends_at"]),
    }


SUMMARIES: dict[MeetingKind, str] = {
    MeetingKind.RESOURCE_GROUP: "Resursgruppsmöte",
    MeetingKind.CLIENT_CONTACT: "Samordningsmöte",
    MeetingKind.CRISIS: "Krismöte",
}


def case_reference(meeting: Meeting) -> str:
    """The short case reference a calendar entry carries: the case id's first 8 characters."""
    return str(meeting.case_id)[:8]


def meeting_ics(
    meeting: Meeting,
    *,
    method: Literal["REQUEST", "CANCEL"],
    organizer: tuple[str, str],
    now: datetime,
    attendees: Iterable[Invitee] | None = None,
) -> bytes:
    """An invitation (``REQUEST``: new or changed) or a cancellation (``CANCEL``) of one meeting.

    ``organizer`` is ``(name, email)``; ``attendees`` defaults to the meeting's invitees
    (pass the dropped ones with ``CANCEL`` to uninvite them). Invitees without an email
    address are left out: a calendar cannot reach them.
    """
    calendar = _calendar(method, [meeting], now)
    calendar.add_component(
        _vevent(
            meeting,
            now=now,
            organizer=organizer,
            attendees=meeting.invitees.values() if attendees is None else attendees,
            cancelled=method == "CANCEL" or meeting.is_cancelled,
        )
    )
    return _to_bytes(calendar)


def calendar_feed(
    meetings: Iterable[Meeting],
    *,
    name: str,
    now: datetime,
    organizer: tuple[str, str] | None = None,
) -> bytes:
    """A subscribable feed (``PUBLISH``) of meetings; cancelled ones stay in it as cancelled.

    RFC 5546 forbids attendees in a published event, which also keeps invitees' names and
    addresses out of a feed whose URL may travel further than intended. It wants an
    organizer: pass ``organizer`` (``(name, email)``) to include one.
    """
    meetings = list(meetings)
    calendar = _calendar("PUBLISH", meetings, now)
    calendar.add("X-WR-CALNAME", name)
    for meeting in meetings:
        calendar.add_component(
            _vevent(
                meeting,
                now=now,
                organizer=organizer,
                attendees=(),
                cancelled=meeting.is_cancelled,
            )
        )
    return _to_bytes(calendar)


def published_meeting(meeting: Meeting, *, now: datetime, organizer: tuple[str, str] | None = None) -> bytes:
    """One meeting to add to a calendar (``PUBLISH``), as a feed carries it: no attendees.

    The VEVENT is the one of :func:`meeting_ics` and :func:`calendar_feed` (same UID and
    SEQUENCE), so a calendar that has the meeting from an invitation or a feed updates it.
    """
    calendar = _calendar("PUBLISH", [meeting], now)
    calendar.add_component(
        _vevent(meeting, now=now, organizer=organizer, attendees=(), cancelled=meeting.is_cancelled)
    )
    return _to_bytes(calendar)


def _calendar(method: str, meetings: list[Meeting], now: datetime) -> Calendar:
    """The VCALENDAR with its one VTIMEZONE, covering the meetings' years (and this one)."""
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("METHOD", method)
    years = {_local(now).year}
    years.update(_local(m.starts_at).year for m in meetings)
    years.update(_local(m.ends_at).year for m in meetings)
    # Generated from zoneinfo, so it always matches the offsets used for DTSTART/DTEND;
    # limited to the years in use to stay short (one DAYLIGHT/STANDARD pair a year).
    calendar.add_component(
        Timezone.from_tzinfo(
            STOCKHOLM,
            tzid=TZID,
            first_date=date(min(years), 1, 1),
            last_date=date(max(years) + 1, 1, 1),
        )
    )
    return calendar


def _vevent(
    meeting: Meeting,
    *,
    now: datetime,
    organizer: tuple[str, str] | None,
    attendees: Iterable[Invitee],
    cancelled: bool,
) -> Event:
    """The one VEVENT of a meeting, shared by invitations, cancellations and feeds."""
    event = Event()
    event.add("UID", meeting.uid)
    event.add("SEQUENCE", meeting.sequence)
    event.add("DTSTAMP", _utc(now))
    # Local time with TZID, not UTC: a meeting at 10:00 stays at 10:00 in every client.
    event.add("DTSTART", _local(meeting.starts_at))
    event.add("DTEND", _local(meeting.ends_at))
    event.add("SUMMARY", SUMMARIES[meeting.kind])
    event.add("DESCRIPTION", description(meeting))
    if meeting.location:
        event.add("LOCATION", meeting.location)
    event.add("STATUS", "CANCELLED" if cancelled else "TENTATIVE" if meeting.proposed else "CONFIRMED")
    if organizer is not None:
        organizer_name, organizer_email = organizer
        event.add("ORGANIZER", _address(organizer_email, CN=organizer_name))
    seen: set[str] = set()
    answers = meeting.partstats
    for invitee in attendees:
        # One ATTENDEE per address: two invitees sharing one (a family's) get one invitation.
        if invitee.email is None or invitee.email.lower() in seen:
            continue
        seen.add(invitee.email.lower())
        event.add(
            "ATTENDEE",
            _address(
                invitee.email,
                CN=invitee.name,
                ROLE="REQ-PARTICIPANT",
                PARTSTAT=answers.get(invitee.invitee_id, "NEEDS-ACTION"),
                RSVP="TRUE",
            ),
        )
    return event


def description(meeting: Meeting) -> str:
    """The entry's text: the short case reference, then the agenda (*dagordning*), numbered.

    The agenda names the method's steps only, nothing about the client."""
    lines = [f"Ärende {case_reference(meeting)}"]
    if meeting.agenda:
        lines += ["", "Dagordning:", *(f"{n}. {item}" for n, item in enumerate(meeting.agenda, start=1))]
    return "\n".join(lines)


def _address(email: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    for key, value in params.items():
        address.params[key] = value
    return address


def _local(value: datetime) -> datetime:
    """``value`` in Europe/Stockholm as a zoneinfo time, so it is written with TZID.

    A meeting read back from JSON carries a fixed offset (``+02:00``), which icalendar
    would write without the zone; converting also pins the zone whatever it came with.
    """
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: meeting times must be aware")
    return value.astimezone(STOCKHOLM)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: now must be aware")
    return value.astimezone(UTC)


def _to_bytes(calendar: Calendar) -> bytes:
    data: bytes = calendar.to_ical()
    return data
