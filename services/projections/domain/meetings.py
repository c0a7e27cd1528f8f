"""Each case's meetings, as the meetings service publishes its schedule (``VSS_MEETINGS``).

One row per meeting: what kind, when it starts and ends, where, its status (scheduled,
rescheduled, cancelled, held), its iCalendar ``sequence``, who is invited (names, roles
and organisations: no e-mail address or phone number, which only the notifier needs),
and which event of the case's schedule last changed it. The row is what a calendar entry
needs (:func:`calendar_entry`), so the projections can hand out the same entry the
meetings service does, under the same UID.

The handlers of :data:`MEETING_HANDLERS` turn a row and one event into the next row;
every meeting event type is handled or named as ignored. They work on the payload as
published (JSON values), the rebuild's decoding and the live consumer's alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from services.projections.domain.events import MeetingRecord
from services.shared.dispatch import EventHandlers
from services.shared.ics import CalendarEntry, meeting_uid, published_meeting
from vss_contracts import meeting_events as me
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.meeting_events import MeetingKind

# A meeting as its row holds it, keyed by COLUMNS (``invitees`` as a list of dicts).
Meeting = dict[str, Any]

# The columns of a meeting row, in the order :func:`row` gives them.
COLUMNS = (
    "case_id",
    "meeting_id",
    "kind",
    "status",
    "starts_at",  # ISO 8601 with the Stockholm offset of the day, as published
    "ends_at",
    "starts_utc",  # the start in UTC: the order of meetings across the daylight-saving change
    "location",
    "sequence",  # the iCalendar SEQUENCE: grows with every change the invitees are told of
    "reason",  # why it was put in the calendar (booked, sip_follow_up, early_warning …)
    "sip_version",
    "warning_id",
    "invitees",
    "previous_starts_at",  # before the last reschedule
    "change_reason",  # of the last reschedule or the cancellation
    "changed_by",  # the user who booked, moved, confirmed, cancelled or recorded it (None: the rules)
    "changed_by_organisation",  # their organisation: a user id names a person only with it (None: unknown)
    "held_on",
    "version",  # the event of the case's schedule that last changed the meeting
    "event_id",
    "updated_at",  # when the meetings service recorded that event
    "verified",  # every event that changed it continued the case's chain
    "place_kind",  # client_home | office | video | phone | other (None: not said)
    "agenda",  # the agenda's items, in order (JSON list)
    "proposed",  # 1: the schedule's suggestion, nobody invited until a coordinator confirms it
    "answers",  # invitee id -> {answer, via, sequence, at} (JSON): accepted, declined, tentative
)

SCHEDULED, RESCHEDULED, CANCELLED, HELD = "scheduled", "rescheduled", "cancelled", "held"

# (version, hash, verified) of the last event of a case's schedule applied here.
Head = tuple[int, str, bool]


def continues_chain(record: MeetingRecord, head: Head | None) -> bool:
    """Does this event follow the case's schedule so far (``head``: last version and hash)?"""
    version, previous = (head[0], head[1]) if head is not None else (0, GENESIS_HASH)
    return record.version == version + 1 and record.prev_hash == previous and record.hash_ok


def _utc(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).isoformat()


def _invitee(value: Mapping[str, Any]) -> dict[str, Any]:
    """What the read model keeps of an invitee: who, in which role and organisation."""
    organisation = value.get("organisation")
    return {
        "invitee_id": value["invitee_id"],
        "name": value["name"],
        "role": value["role"],
        "organisation": None
        if organisation is None
        else {"id": organisation["id"], "name": organisation["name"]},
        "user_id": value.get("user_id"),
    }


def _changed_by(record: MeetingRecord, person: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Who made the change, as a person (ADR 0023): the payload's ``organisation_id`` and
    ``user_id``. A payload upcast from a version that named the user id alone has a null
    organisation: then the envelope's (``actororg``, hashed with the payload) when it names
    that user (``actorid``); an envelope naming someone else gives no organisation rather
    than a wrong one. A change by the rules (no person) has neither.
    """
    if person is None:
        return {"changed_by": None, "changed_by_organisation": None}
    user_id = person["user_id"]
    organisation = person.get("organisation_id")
    if organisation is None and record.actor_id == user_id:
        organisation = record.actor_org
    return {"changed_by": user_id, "changed_by_organisation": organisation}


def _new(record: MeetingRecord, *, kind: str, reason: str, warning_id: str | None) -> Meeting:
    d = record.data
    return {
        "case_id": record.case_id,
        "meeting_id": str(d["meeting_id"]),
        "kind": kind,
        "status": SCHEDULED,
        "starts_at": d["starts_at"],
        "ends_at": d["ends_at"],
        "starts_utc": _utc(d["starts_at"]),
        "location": d.get("location"),
        "sequence": 0,
        "reason": reason,
        "sip_version": d.get("sip_version"),
        "warning_id": warning_id,
        "invitees": [_invitee(i) for i in d.get("invitees") or ()],
        "previous_starts_at": None,
        "change_reason": None,
        **_changed_by(record, d.get("booked_by")),
        "held_on": None,
        "place_kind": d.get("place_kind"),
        "agenda": list(d.get("agenda") or ()),
        "proposed": bool(d.get("proposed", False)),
        "answers": {},
    }


def _scheduled(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    return _new(record, kind=record.data["kind"], reason=record.data["reason"], warning_id=None)


def _crisis_scheduled(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    warning = record.data["warning_id"]
    return _new(record, kind=MeetingKind.CRISIS.value, reason="early_warning", warning_id=str(warning))


def _rescheduled(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    if current is None:
        return None
    d = record.data
    return {
        **current,
        "status": RESCHEDULED,
        "starts_at": d["starts_at"],
        "ends_at": d["ends_at"],
        "starts_utc": _utc(d["starts_at"]),
        "previous_starts_at": d["previous_starts_at"],
        "sequence": d["sequence"],
        "change_reason": d["reason"],
        **_changed_by(record, d.get("moved_by")),
        "answers": {},  # the answers were to the old time
    }


def _confirmed(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    if current is None:
        return None
    d = record.data
    return {
        **current,
        "starts_at": d["starts_at"],
        "ends_at": d["ends_at"],
        "starts_utc": _utc(d["starts_at"]),
        "location": d["location"],
        "place_kind": d["place_kind"],
        "sequence": d["sequence"],
        "proposed": False,
        **_changed_by(record, d.get("confirmed_by")),
        "answers": {} if d["starts_at"] != current["starts_at"] else current["answers"],
    }


def _answered(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    if current is None:
        return None
    d = record.data
    answer = {"answer": d["answer"], "via": d["via"], "sequence": d["sequence"], "at": d["answered_at"]}
    return {**current, "answers": {**current["answers"], d["invitee_id"]: answer}}


def _invitees_changed(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    if current is None:
        return None
    d = record.data
    invitees = {i["invitee_id"]: i for i in current["invitees"]}
    for removed in d.get("removed") or ():
        invitees.pop(removed["invitee_id"], None)
    for added in d.get("added") or ():  # new, or already invited with changed details: in place
        invitees[added["invitee_id"]] = _invitee(added)
    return {**current, "invitees": list(invitees.values()), "sequence": d["sequence"]}


def _cancelled(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    if current is None:
        return None
    d = record.data
    return {
        **current,
        "status": CANCELLED,
        "sequence": d["sequence"],
        "change_reason": d["reason"],
        **_changed_by(record, d.get("cancelled_by")),
    }


def _held(current: Meeting | None, record: MeetingRecord) -> Meeting | None:
    if current is None:
        return None
    d = record.data
    by = _changed_by(record, d.get("recorded_by"))
    return {**current, "status": HELD, "held_on": d["held_on"], **by}


MeetingHandler = Callable[[Meeting | None, MeetingRecord], Meeting | None]

MEETING_HANDLERS: EventHandlers[MeetingHandler] = EventHandlers.of(
    "projections: meetings",
    me.MEETING_EVENTS,
    {
        me.MeetingScheduled: _scheduled,
        me.CrisisMeetingScheduled: _crisis_scheduled,
        me.MeetingRescheduled: _rescheduled,
        me.MeetingInviteesChanged: _invitees_changed,
        me.MeetingCancelled: _cancelled,
        me.MeetingHeld: _held,
        me.MeetingConfirmed: _confirmed,
        me.MeetingAnswered: _answered,
    },
    # Reminders, change-rating requests and missed follow-ups or contacts change no
    # meeting: the notifications service tells people of them, the meeting stays as it is.
    ignored=(me.MeetingReminderDue, me.ChangeRatingRequested, me.FollowUpOverdue, me.ContactCadenceMissed),
)


def meeting_id_of(record: MeetingRecord) -> str | None:
    """The meeting an event changes (None for a type that changes none)."""
    if MEETING_HANDLERS.handler(record.type) is None:
        return None
    return str(record.data["meeting_id"])


def apply(current: Meeting | None, record: MeetingRecord, verified: bool) -> Meeting | None:
    """The meeting after ``record``; None if the event changes none (an ignored type, or a
    change of a meeting this read model never saw scheduled)."""
    handler = MEETING_HANDLERS.handler(record.type)
    if handler is None:
        return None
    changed = handler(current, record)
    if changed is None:
        return None
    return {
        **changed,
        "version": record.version,
        "event_id": record.event_id,
        "updated_at": record.time,
        "verified": verified and (current is None or bool(current["verified"])),
    }


def row(meeting: Meeting) -> tuple[Any, ...]:
    """The row of :data:`COLUMNS` for one meeting."""
    values = {
        **meeting,
        "invitees": orjson.dumps(meeting["invitees"]).decode(),
        "verified": 1 if meeting["verified"] else 0,
        "agenda": orjson.dumps(meeting["agenda"]).decode(),
        "proposed": 1 if meeting["proposed"] else 0,
        "answers": orjson.dumps(meeting["answers"]).decode(),
    }
    return tuple(values[c] for c in COLUMNS)


def from_row(values: tuple[Any, ...]) -> Meeting:
    """A meeting from its row (the inverse of :func:`row`)."""
    meeting = dict(zip(COLUMNS, values, strict=True))
    meeting["invitees"] = orjson.loads(meeting["invitees"])
    meeting["sequence"] = int(meeting["sequence"])
    meeting["version"] = int(meeting["version"])
    meeting["verified"] = bool(meeting["verified"])
    meeting["agenda"] = orjson.loads(meeting["agenda"])
    meeting["proposed"] = bool(meeting["proposed"])
    meeting["answers"] = orjson.loads(meeting["answers"])
    return meeting


def answer(meeting: Meeting) -> dict[str, Any]:
    """A meeting as the queries give it (JSON values): the row without its sort key, with
    its iCalendar UID (the one every calendar entry of the meeting carries)."""
    found = {c: meeting[c] for c in COLUMNS if c != "starts_utc"}
    found["uid"] = meeting_uid(UUID(str(meeting["meeting_id"])))
    return found


# ----------------------------------------------------------------------- the calendar entry
def calendar_entry(meeting: Mapping[str, Any]) -> CalendarEntry:
    """The calendar entry of a meeting as the read model gives it (a row, or a query's answer)."""
    # A published entry names nobody: no invitees.
    return CalendarEntry(
        meeting_id=UUID(str(meeting["meeting_id"])),
        case_id=UUID(str(meeting["case_id"])),
        kind=MeetingKind(meeting["kind"]),
        starts_at=datetime.fromisoformat(meeting["starts_at"]),
        ends_at=datetime.fromisoformat(meeting["ends_at"]),
        sequence=int(meeting["sequence"]),
        location=meeting["location"],
        is_cancelled=meeting["status"] == CANCELLED,
        agenda=list(meeting.get("agenda") or ()),
        proposed=bool(meeting.get("proposed", False)),
    )


def meeting_calendar(
    meeting: Mapping[str, Any], *, now: datetime, organizer: tuple[str, str] | None = None
) -> bytes:
    """The ``.ics`` of one meeting of the read model, to add to one's calendar.

    The same VEVENT as the meetings service's invitations and feeds (UID
    ``<meeting id>@vss.se``, SEQUENCE, local times with TZID, summary by kind, a short
    case reference), published (``METHOD:PUBLISH``, no attendees): a calendar that has
    the meeting already updates it rather than adding a second one, and one that
    imports it after a change sees the change. A cancelled meeting is ``STATUS:CANCELLED``.
    """
    return published_meeting(calendar_entry(meeting), now=now, organizer=organizer)
