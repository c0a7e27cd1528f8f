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

from pydantic import AwareDatetime, EmailStr, Field

from vss_contracts.registry import UnknownEventType, Upcaster, upcast
from vss_contracts.types import (
    CONTACT_PERIOD_OF_PHASE,
    ContactPeriod,
    ContractModel,
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
    "TYPE_PREFIX",
    "ChangeRatingRequested",
    "ContactCadenceMissed",
    "ContactCadenceMissedV1",
    "CrisisMeetingScheduled",
    "FollowUpOverdue",
    "Invitee",
    "InviteeRole",
    "MeetingCancelled",
    "MeetingEventData",
    "MeetingHeld",
    "MeetingInviteesChanged",
    "MeetingKind",
    "MeetingReminderDue",
    "MeetingRescheduled",
    "MeetingScheduled",
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


class MeetingScheduled(MeetingEventData):
    """A meeting was put in the calendar (sequence 0 of its iCalendar entry)."""

    TYPE: ClassVar[str] = "se.vss.meetings.MeetingScheduled.v1"
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
    location: ShortText | None = None


class CrisisMeetingScheduled(MeetingEventData):
    """An early warning was triggered: a crisis meeting within two working days."""

    TYPE: ClassVar[str] = "se.vss.meetings.CrisisMeetingScheduled.v1"
    meeting_id: UUID
    warning_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    invitees: list[Invitee]


class MeetingRescheduled(MeetingEventData):
    TYPE: ClassVar[str] = "se.vss.meetings.MeetingRescheduled.v1"
    meeting_id: UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    previous_starts_at: AwareDatetime
    sequence: Annotated[int, Field(ge=1, description="The iCalendar SEQUENCE after the change.")]
    reason: ShortText
    moved_by: UserId | None = None


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


class MeetingCancelled(MeetingEventData):
    TYPE: ClassVar[str] = "se.vss.meetings.MeetingCancelled.v1"
    meeting_id: UUID
    sequence: Annotated[int, Field(ge=1)]
    reason: ShortText
    cancelled_by: UserId | None = None


class MeetingHeld(MeetingEventData):
    TYPE: ClassVar[str] = "se.vss.meetings.MeetingHeld.v1"
    meeting_id: UUID
    kind: MeetingKind
    held_on: date
    recorded_by: UserId | None = None


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


class FollowUpOverdue(MeetingEventData):
    """The SIP's follow-up date passed without a resource group meeting held."""

    TYPE: ClassVar[str] = "se.vss.meetings.FollowUpOverdue.v1"
    sip_version: int
    follow_up_on: date
    coordinators: list[UserId]


class ContactCadenceMissedV1(MeetingEventData):
    """No meeting with the client within the phase's period (*kontaktfrekvens*). Superseded by
    v2, which names the contact period; read through :func:`contact_cadence_missed_v1_to_v2`."""

    TYPE: ClassVar[str] = "se.vss.meetings.ContactCadenceMissed.v1"
    phase: Phase
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
    client was met or contacted, as far as the schedule knows."""

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
)
MEETING_EVENT_TYPES: dict[str, type[MeetingEventData]] = {cls.TYPE: cls for cls in MEETING_EVENTS}
# Earlier versions of current types: read through the upcasters; their schemas stay published.
LEGACY_MEETING_EVENTS: tuple[type[MeetingEventData], ...] = (ContactCadenceMissedV1,)
# old type name -> (next type name, upcaster), as for the case events
MEETING_UPCASTERS: dict[str, tuple[str, Upcaster]] = {
    ContactCadenceMissedV1.TYPE: (ContactCadenceMissed.TYPE, contact_cadence_missed_v1_to_v2),
}


def decode_meeting_event(type_name: str, payload: dict[str, Any]) -> MeetingEventData:
    """Validate a payload of any known version into the current meeting event model."""
    current, payload = upcast(type_name, payload, MEETING_UPCASTERS)
    try:
        model = MEETING_EVENT_TYPES[current]
    except KeyError:
        raise UnknownEventType(type_name) from None
    return model.model_validate(payload)
