"""The meetings service's facts: each case's meeting schedule, as stored and as published.

Published on stream ``VSS_MEETINGS``, subject ``vss.meetings.<case_id>.<EventName>``, as
the same structured CloudEvent as the case events (:class:`vss_contracts.CloudEvent`)
with ``source`` = ``/vss/meetings``, ``subject`` = the case id and ``caseversion`` = the
event's position in that case's *meeting schedule* stream (its own hash chain).
``CloudEvent.meeting_data()`` gives the typed payload.

Times are aware datetimes with the Europe/Stockholm offset of the day (so a meeting at
10:00 stays at 10:00 local across the daylight-saving change). Event ids are derived
from what caused the event (the case event, the timer, the request), so replaying the
case stream into an empty meetings service produces the same ids.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, EmailStr, Field, StringConstraints

from vss_contracts.registry import UnknownEventType, Upcaster, coordinators_by_person, upcast
from vss_contracts.types import (
    _NOT_ONLY_WHITESPACE,
    CONTACT_PERIOD_OF_PHASE,
    ActingPerson,
    ContactPeriod,
    ContractModel,
    NamedCoordinator,
    OrganisationRef,
    Phase,
    PhoneNumber,
    ShortText,
    UserId,
)

__all__ = [
    "LEGACY_MEETING_EVENTS",
    "MEETING_EVENTS",
    "MEETING_EVENT_SOURCE",
    "MEETING_EVENT_TYPES",
    "MEETING_STREAM",
    "MEETING_SUBJECTS",
    "MEETING_SUBJECT_PREFIX",
    "MEETING_UPCASTERS",
    "TYPE_PREFIX",
    "AgendaItem",
    "Answer",
    "AnswerVia",
    "CancelReason",
    "ChangeRatingRequested",
    "ContactCadenceMissed",
    "ContactCadenceMissedV1",
    "ContactCadenceMissedV2",
    "CrisisMeetingScheduled",
    "CrisisMeetingScheduledV1",
    "FollowUpOverdue",
    "FollowUpOverdueV1",
    "Invitee",
    "InviteeRole",
    "MeetingAnswered",
    "MeetingCancelled",
    "MeetingCancelledV1",
    "MeetingConfirmed",
    "MeetingConfirmedV1",
    "MeetingEventData",
    "MeetingHeld",
    "MeetingHeldV1",
    "MeetingInviteesChanged",
    "MeetingKind",
    "MeetingReminderDue",
    "MeetingRescheduled",
    "MeetingRescheduledV1",
    "MeetingScheduled",
    "MeetingScheduledV1",
    "MeetingScheduledV2",
    "PlaceKind",
    "decode_meeting_event",
    "meeting_subject",
]

MEETING_STREAM = "VSS_MEETINGS"
MEETING_SUBJECT_PREFIX = "vss.meetings"
MEETING_SUBJECTS = f"{MEETING_SUBJECT_PREFIX}.>"
MEETING_EVENT_SOURCE = "/vss/meetings"
TYPE_PREFIX = "se.vss.meetings."


def meeting_subject(case_id: UUID | str, event_name: str, *, prefix: str = MEETING_SUBJECT_PREFIX) -> str:
    return f"{prefix}.{case_id}.{event_name}"


class MeetingKind(StrEnum):
    RESOURCE_GROUP = "resource_group"  # *resursgruppsmöte*, at least every three months
    CLIENT_CONTACT = "client_contact"  # a coordinator's meeting with the client
    CRISIS = "crisis"  # when early warning signs appear (*tidiga tecken*)


class InviteeRole(StrEnum):
    CLIENT = "client"
    COORDINATOR = "coordinator"
    RELATIVE = "relative"
    PROFESSIONAL = "professional"
    PLAN_CONTACT = "plan_contact"  # a person the early warning plan names


class PlaceKind(StrEnum):
    """Where a meeting is held (*mötesplats*): the client's home is common in the method."""

    CLIENT_HOME = "client_home"  # *hemma hos brukaren*; the address stays out of the calendar
    OFFICE = "office"  # a unit's premises (*mottagning, kontor*)
    VIDEO = "video"  # a video meeting (*videomöte*): the text holds the link or room
    PHONE = "phone"
    OTHER = "other"


AgendaItem = ShortText
"""One item of a meeting's agenda (*dagordning*), in the order it is taken."""

CancelReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NOT_ONLY_WHITESPACE),
    Field(description="Why the meeting was cancelled: 1–200 characters"),
]
"""Why a meeting was cancelled: 1–200 characters, as in every ``MeetingCancelled.v1`` and v2 (a
longer reason would be a new version: a subscriber on an earlier package validates them at 200)."""


class Answer(StrEnum):
    """An invitee's answer to an invitation (iCalendar PARTSTAT, RFC 5545 3.2.12)."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"


class AnswerVia(StrEnum):
    LINK = "link"  # the signed answer link of the invitation
    ICALENDAR = "icalendar"  # an iTIP REPLY (RFC 5546) from the invitee's calendar


class Invitee(ContractModel):
    """Someone invited to a meeting, with what a notifier needs to reach them."""

    invitee_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=160,
            description="Stable within the case: member:<member id>, coordinator:<user id> or contact:<key>.",
        ),
    ]
    name: ShortText
    role: InviteeRole
    organisation: OrganisationRef | None = None
    user_id: UserId | None = None
    email: EmailStr | None = None
    phone: PhoneNumber | None = None


class MeetingEventData(ContractModel):
    """Base of every meeting event payload."""

    TYPE: ClassVar[str]

    @classmethod
    def event_name(cls) -> str:
        return cls.TYPE.removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]


class MeetingScheduledV1(MeetingEventData):
    """Version 1: no kind of place, no agenda, never proposed (upcast to v2, then v3)."""

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingScheduled.v1"
    meeting_id: UUID
    kind: MeetingKind
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    invitees: list[Invitee]
    reason: str
    sip_version: int | None = None
    booked_by: UserId | None = None
    location: ShortText | None = None


# As published (its schema frozen), naming who acted by user id alone: read as v3
# through :func:`meeting_scheduled_v2_to_v3` (ADR 0023).
class MeetingScheduledV2(MeetingEventData):
    """A meeting was put in the calendar (sequence 0 of its iCalendar entry).

    A ``proposed`` meeting (the first resource group meeting, *preliminär tid*) is the
    schedule's suggestion: nobody is invited until a coordinator confirms its time and place
    (:class:`MeetingConfirmed`).
    """

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingScheduled.v2"
    meeting_id: UUID
    kind: MeetingKind
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    invitees: list[Invitee]
    reason: Annotated[
        str, Field(description="mapping_summarised | sip_follow_up | booked | moved_from_holiday …")
    ]
    sip_version: int | None = None
    booked_by: UserId | None = None
    location: ShortText | None = Field(default=None, description="The place as the calendar names it")
    place_kind: PlaceKind | None = None
    agenda: list[AgendaItem] = Field(default_factory=list, max_length=20)
    proposed: bool = False


class MeetingScheduled(MeetingEventData):
    """A meeting was put in the calendar (sequence 0 of its iCalendar entry).

    A ``proposed`` meeting (the first resource group meeting, *preliminär tid*) is the
    schedule's suggestion: nobody is invited until a coordinator confirms its time and place
    (:class:`MeetingConfirmed`). ``booked_by``: the person who booked it (ADR 0023); null
    when the schedule put it in the calendar.
    """

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingScheduled.v3"
    meeting_id: UUID
    kind: MeetingKind
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    invitees: list[Invitee]
    reason: Annotated[
        str, Field(description="mapping_summarised | sip_follow_up | booked | moved_from_holiday …")
    ]
    sip_version: int | None = None
    booked_by: ActingPerson | None = None
    location: ShortText | None = Field(default=None, description="The place as the calendar names it")
    place_kind: PlaceKind | None = None
    agenda: list[AgendaItem] = Field(default_factory=list, max_length=20)
    proposed: bool = False


class CrisisMeetingScheduledV1(MeetingEventData):
    """Version 1: no place, no agenda (upcast to v2)."""

    TYPE: ClassVar[str] = "se.vss.meetings.CrisisMeetingScheduled.v1"
    meeting_id: UUID
    warning_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    invitees: list[Invitee]


class CrisisMeetingScheduled(MeetingEventData):
    """An early warning was triggered: a crisis meeting within two working days (*krismöte*)."""

    TYPE: ClassVar[str] = "se.vss.meetings.CrisisMeetingScheduled.v2"
    meeting_id: UUID
    warning_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    invitees: list[Invitee]
    location: ShortText | None = None
    place_kind: PlaceKind | None = None
    agenda: list[AgendaItem] = Field(default_factory=list, max_length=20)


# As published (its schema frozen), naming who acted by user id alone: read as v2
# through :func:`meeting_confirmed_v1_to_v2` (ADR 0023).
class MeetingConfirmedV1(MeetingEventData):
    """A coordinator confirmed a proposed meeting's time and place: the invitations go out."""

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingConfirmed.v1"
    meeting_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    place_kind: PlaceKind
    location: ShortText
    sequence: Annotated[int, Field(ge=1, description="The iCalendar SEQUENCE of the invitation.")]
    confirmed_by: UserId | None = None


class MeetingConfirmed(MeetingEventData):
    """A coordinator confirmed a proposed meeting's time and place: the invitations go out.

    ``confirmed_by``: that coordinator, as a person (ADR 0023).
    """

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingConfirmed.v2"
    meeting_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    place_kind: PlaceKind
    location: ShortText
    sequence: Annotated[int, Field(ge=1, description="The iCalendar SEQUENCE of the invitation.")]
    confirmed_by: ActingPerson | None = None


class MeetingAnswered(MeetingEventData):
    """An invitee accepted, declined or tentatively accepted (*OSA*) an invitation."""

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingAnswered.v1"
    meeting_id: UUID
    invitee_id: Annotated[str, Field(min_length=1, max_length=160)]
    answer: Answer
    via: AnswerVia
    sequence: Annotated[int, Field(ge=0, description="The meeting's SEQUENCE the answer is to.")]
    answered_at: AwareDatetime


# As published (its schema frozen), naming who acted by user id alone: read as v2
# through :func:`meeting_rescheduled_v1_to_v2` (ADR 0023).
class MeetingRescheduledV1(MeetingEventData):
    TYPE: ClassVar[str] = "se.vss.meetings.MeetingRescheduled.v1"
    meeting_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    previous_starts_at: AwareDatetime
    sequence: Annotated[int, Field(ge=1, description="The iCalendar SEQUENCE after the change.")]
    reason: ShortText
    moved_by: UserId | None = None


class MeetingRescheduled(MeetingEventData):
    """A meeting moved to another time (same UID, a higher SEQUENCE).

    ``moved_by``: the person who moved it (ADR 0023); null when the schedule did.
    """

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingRescheduled.v2"
    meeting_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    previous_starts_at: AwareDatetime
    sequence: Annotated[int, Field(ge=1, description="The iCalendar SEQUENCE after the change.")]
    reason: ShortText
    moved_by: ActingPerson | None = None


class MeetingInviteesChanged(MeetingEventData):
    """Members added to or dropped from a future meeting (a CANCEL for those dropped)."""

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingInviteesChanged.v1"
    meeting_id: UUID
    added: list[Invitee] = Field(
        default_factory=list,
        description="Invitees new to the meeting, or already invited with changed contact details"
        " (as they now are): each needs the invitation as it now stands",
    )
    removed: list[Invitee] = Field(default_factory=list)
    sequence: Annotated[int, Field(ge=1)]
    reason: Annotated[
        str,
        Field(
            description="member_added | member_removed | coordinator_assigned | coordinator_unassigned"
            " | consent_withdrawn | consent_given"
        ),
    ]


# As published (its schema frozen), naming who acted by user id alone: read as v2
# through :func:`meeting_cancelled_v1_to_v2` (ADR 0023).
class MeetingCancelledV1(MeetingEventData):
    TYPE: ClassVar[str] = "se.vss.meetings.MeetingCancelled.v1"
    meeting_id: UUID
    sequence: Annotated[int, Field(ge=1)]
    reason: CancelReason
    cancelled_by: UserId | None = None


class MeetingCancelled(MeetingEventData):
    """A meeting was cancelled: everyone invited gets a CANCEL (same UID, a higher SEQUENCE).

    ``cancelled_by``: the person who cancelled it (ADR 0023); null when the schedule did (the
    case closed, the early warning was resolved).
    """

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingCancelled.v2"
    meeting_id: UUID
    sequence: Annotated[int, Field(ge=1)]
    reason: CancelReason
    cancelled_by: ActingPerson | None = None


# As published (its schema frozen), naming who acted by user id alone: read as v2
# through :func:`meeting_held_v1_to_v2` (ADR 0023).
class MeetingHeldV1(MeetingEventData):
    TYPE: ClassVar[str] = "se.vss.meetings.MeetingHeld.v1"
    meeting_id: UUID
    kind: MeetingKind
    held_on: date
    recorded_by: UserId | None = None


class MeetingHeld(MeetingEventData):
    """A meeting took place on ``held_on``.

    ``recorded_by``: the person who recorded it (ADR 0023).
    """

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingHeld.v2"
    meeting_id: UUID
    kind: MeetingKind
    held_on: date
    recorded_by: ActingPerson | None = None


class MeetingReminderDue(MeetingEventData):
    """A resource group meeting is ``days_before`` days away: remind the invitees."""

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingReminderDue.v1"
    meeting_id: UUID
    starts_at: AwareDatetime
    days_before: Annotated[int, Field(ge=0)]
    sequence: Annotated[int, Field(ge=0, description="The meeting's SEQUENCE the reminder is for.")]


class ChangeRatingRequested(MeetingEventData):
    """No change rating (*förändringsskattning*) since the last meeting: ask the client for one."""

    TYPE: ClassVar[str] = "se.vss.meetings.ChangeRatingRequested.v1"
    meeting_id: UUID
    meeting_starts_at: AwareDatetime
    last_rating_on: date | None = None


class FollowUpOverdueV1(MeetingEventData):
    """``FollowUpOverdue`` as first published, naming the coordinators by user id alone: kept
    for the payloads stored and published under it, read as v2 through
    :func:`follow_up_overdue_v1_to_v2`."""

    TYPE: ClassVar[str] = "se.vss.meetings.FollowUpOverdue.v1"
    sip_version: int
    follow_up_on: date
    coordinators: list[UserId]


class FollowUpOverdue(MeetingEventData):
    """The SIP's follow-up date passed without a resource group meeting held. ``coordinators``:
    the case's coordinators then, each a person (ADR 0023)."""

    TYPE: ClassVar[str] = "se.vss.meetings.FollowUpOverdue.v2"
    sip_version: int
    follow_up_on: date
    coordinators: list[NamedCoordinator]


class ContactCadenceMissedV1(MeetingEventData):
    """No meeting with the client within the phase's period (*kontaktfrekvens*). Superseded by
    v2, which names the contact period; read through :func:`contact_cadence_missed_v1_to_v2`
    (and on to v3)."""

    TYPE: ClassVar[str] = "se.vss.meetings.ContactCadenceMissed.v1"
    phase: Phase
    period_days: Annotated[int, Field(ge=1)]
    period_start: date
    period_end: date
    last_contact_on: date | None = None
    coordinators: list[UserId]


class ContactCadenceMissedV2(MeetingEventData):
    """``ContactCadenceMissed`` v2, naming the coordinators by user id alone: kept for the
    payloads stored and published under it, read as v3 through
    :func:`contact_cadence_missed_v2_to_v3`."""

    TYPE: ClassVar[str] = "se.vss.meetings.ContactCadenceMissed.v2"
    period: ContactPeriod
    period_set: bool = Field(
        description="True: the coordinators set the period (ContactPeriodSet); false: it followed the phase"
    )
    period_days: Annotated[int, Field(ge=1)]
    period_start: date
    period_end: date
    last_contact_on: date | None = None
    coordinators: list[UserId]


class ContactCadenceMissed(MeetingEventData):
    """Neither a recorded contact nor a meeting with the client (booked in the period and not
    cancelled, or held) in the contact period's interval (*Loggboken*, ADR 0019): raised once
    the interval ``period_start``–``period_end`` has ended and its grace for recording has
    passed. ``period`` is the contact period that set the interval; ``period_set`` whether the
    coordinators set it (else it followed the phase). ``last_contact_on`` is the last day the
    client was met or contacted, as far as the schedule knows. ``coordinators``: the case's
    coordinators then, each a person (ADR 0023)."""

    TYPE: ClassVar[str] = "se.vss.meetings.ContactCadenceMissed.v3"
    period: ContactPeriod
    period_set: bool = Field(
        description="True: the coordinators set the period (ContactPeriodSet); false: it followed the phase"
    )
    period_days: Annotated[int, Field(ge=1)]
    period_start: date
    period_end: date
    last_contact_on: date | None = None
    coordinators: list[NamedCoordinator]


def contact_cadence_missed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 report's interval followed the phase: its period is the phase's (the v1 intervals
    were the periods' own: 7, 7, 14 and 30 days), not set by the coordinators; the figures
    stay as they were."""
    fields = {k: v for k, v in payload.items() if k != "phase"}
    return {
        **fields,
        "period": CONTACT_PERIOD_OF_PHASE[Phase(payload["phase"])].value,
        "period_set": False,
    }


MEETING_EVENTS: tuple[type[MeetingEventData], ...] = (
    MeetingScheduled,
    CrisisMeetingScheduled,
    MeetingRescheduled,
    MeetingInviteesChanged,
    MeetingCancelled,
    MeetingHeld,
    MeetingReminderDue,
    ChangeRatingRequested,
    FollowUpOverdue,
    ContactCadenceMissed,
    MeetingConfirmed,
    MeetingAnswered,
)
MEETING_EVENT_TYPES: dict[str, type[MeetingEventData]] = {cls.TYPE: cls for cls in MEETING_EVENTS}
# Earlier versions of current types: read through the upcasters; their schemas stay published.
LEGACY_MEETING_EVENTS: tuple[type[MeetingEventData], ...] = (
    ContactCadenceMissedV1,
    ContactCadenceMissedV2,
    FollowUpOverdueV1,
    MeetingScheduledV1,
    MeetingScheduledV2,
    CrisisMeetingScheduledV1,
    MeetingConfirmedV1,
    MeetingRescheduledV1,
    MeetingCancelledV1,
    MeetingHeldV1,
)


def follow_up_overdue_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 report named the coordinators by user id alone: their organisations are null."""
    return {**payload, "coordinators": coordinators_by_person(payload["coordinators"])}


def contact_cadence_missed_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    """A v2 report named the coordinators by user id alone: their organisations are null."""
    return {**payload, "coordinators": coordinators_by_person(payload["coordinators"])}


def meeting_scheduled_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 meeting was fixed, never proposed, and had no agenda; a location it named was a
    place of no recorded kind (*other*)."""
    return {
        **payload,
        "place_kind": PlaceKind.OTHER.value if payload.get("location") else None,
        "agenda": [],
        "proposed": False,
    }


def crisis_meeting_scheduled_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 crisis meeting named no place and no agenda."""
    return {**payload, "location": None, "place_kind": None, "agenda": []}


def acting_person_of(user_id: str | None) -> dict[str, Any] | None:
    """Who acted, as an earlier version named them (a user id alone, or null: the schedule
    acted), as the next version names them: a person whose organisation is null. The payload
    did not record it; it is never guessed (ADR 0023)."""
    return None if user_id is None else {"organisation_id": None, "user_id": user_id}


def meeting_scheduled_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    """A v2 meeting named who booked it by user id alone."""
    return {**payload, "booked_by": acting_person_of(payload.get("booked_by"))}


def meeting_confirmed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 confirmation named who confirmed it by user id alone."""
    return {**payload, "confirmed_by": acting_person_of(payload.get("confirmed_by"))}


def meeting_rescheduled_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 move named who moved the meeting by user id alone."""
    return {**payload, "moved_by": acting_person_of(payload.get("moved_by"))}


def meeting_cancelled_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 cancellation named who cancelled by user id alone."""
    return {**payload, "cancelled_by": acting_person_of(payload.get("cancelled_by"))}


def meeting_held_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """A v1 record of a meeting held named who recorded it by user id alone."""
    return {**payload, "recorded_by": acting_person_of(payload.get("recorded_by"))}


# old type name -> (next type name, upcaster), as for the case events
MEETING_UPCASTERS: dict[str, tuple[str, Upcaster]] = {
    ContactCadenceMissedV1.TYPE: (ContactCadenceMissedV2.TYPE, contact_cadence_missed_v1_to_v2),
    ContactCadenceMissedV2.TYPE: (ContactCadenceMissed.TYPE, contact_cadence_missed_v2_to_v3),
    FollowUpOverdueV1.TYPE: (FollowUpOverdue.TYPE, follow_up_overdue_v1_to_v2),
    MeetingScheduledV1.TYPE: (MeetingScheduledV2.TYPE, meeting_scheduled_v1_to_v2),
    MeetingScheduledV2.TYPE: (MeetingScheduled.TYPE, meeting_scheduled_v2_to_v3),
    CrisisMeetingScheduledV1.TYPE: (CrisisMeetingScheduled.TYPE, crisis_meeting_scheduled_v1_to_v2),
    MeetingConfirmedV1.TYPE: (MeetingConfirmed.TYPE, meeting_confirmed_v1_to_v2),
    MeetingRescheduledV1.TYPE: (MeetingRescheduled.TYPE, meeting_rescheduled_v1_to_v2),
    MeetingCancelledV1.TYPE: (MeetingCancelled.TYPE, meeting_cancelled_v1_to_v2),
    MeetingHeldV1.TYPE: (MeetingHeld.TYPE, meeting_held_v1_to_v2),
}


def decode_meeting_event(type_name: str, payload: dict[str, Any]) -> MeetingEventData:
    """Validate a payload of any known version into the current meeting event model."""
    current, payload = upcast(type_name, payload, MEETING_UPCASTERS)
    try:
        model = MEETING_EVENT_TYPES[current]
    except KeyError:
        raise UnknownEventType(type_name) from None
    return model.model_validate(payload)
