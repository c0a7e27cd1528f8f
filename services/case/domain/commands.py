"""Commands: what a coordinator asks the case to record.

They reuse the contracts' value types, so the HTTP request bodies, the stored facts
and the published facts share one vocabulary. Ids a client may choose (goal, member,
action, meeting, warning) are optional: the aggregate makes one when none is given.
Fields the case decides itself (SIP version, plan version, consent id) are absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from services.case.domain.events import Actor
from vss_contracts.case_events import (
    CONTACT_MINUTES_MAX,
    CONTACT_MINUTES_MIN,
    CONTACT_OTHERS_MAX,
    ONE_RESPONSIBLE,
    ContactOther,
    CorrectedValue,
    OthersAction,
    OutsideParty,
    PersonRef,
    PlanContact,
    WarningSign,
)
from vss_contracts.types import (
    ChangeRating,
    ClientRef,
    ClosingReason,
    ContactDetails,
    ContactMode,
    ContactNote,
    ContactPeriod,
    Coordinator,
    CorrectionReason,
    DeviationReason,
    GoalKind,
    GoalStatus,
    LongText,
    MemberKind,
    Municipality,
    NetworkPerson,
    OrganisationId,
    OrganisationRef,
    Participant,
    Phase,
    Region,
    ShortText,
    UserId,
    Worksheet,
)

EventDate = Annotated[
    date,
    Field(
        description="Within a window around today: by default ten years back and five ahead"
        " (VSS_DATE_WINDOW_PAST_DAYS, VSS_DATE_WINDOW_FUTURE_DAYS); else 422, rule date_window"
    ),
]


# A command that may break a practice rule of the method (ADR 0017) takes a reason for doing so:
# with one, the case records the deviation (MethodDeviationRecorded) before the fact; without,
# it refuses the command, naming the rule. Where no practice rule is broken it records nothing.
DeviationReasonField = Annotated[
    DeviationReason | None,
    Field(
        description="Why a practice rule of the method is not followed here (1–500 characters); the"
        " case then records the deviation rather than refusing the command"
    ),
]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class CasePolicy:
    """Thresholds of the method that an organisation may configure."""

    follow_up_max_months: int = 3


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Everything a command needs besides its own fields: who, when, in which request."""

    actor: Actor
    now: datetime  # UTC; becomes the events' recorded-at
    today: date  # the local (Europe/Stockholm) date, for "not in the future"
    correlation_id: str
    causation_id: str | None = None
    policy: CasePolicy = CasePolicy()


class OpenCase(Command):
    case_id: UUID | None = None
    client: ClientRef
    municipality: Municipality
    region: Region
    opened_on: EventDate


class AssignCoordinator(Command):
    coordinator: Coordinator
    assigned_on: EventDate
    hands_over_from: PersonRef | None = Field(
        default=None,
        description="A handover (ADR 0021): the outgoing coordinator (organisation and user id),"
        " assigned and of the incoming one's organisation, who stays until unassigned; the case"
        " may then have three coordinators, one handover at a time",
    )


class UnassignCoordinator(Command):
    unassigned_on: EventDate
    reason: ShortText | None = None


class GiveConsent(Command):
    organisations: Annotated[list[OrganisationRef], Field(min_length=1)]
    covers_relatives: bool
    signed_on: EventDate
    valid_until: EventDate | None = None


class WithdrawConsent(Command):
    withdrawn_on: EventDate
    entire: bool = True
    organisation_ids: list[OrganisationId] = []
    relatives: bool = False
    reason: ShortText | None = None


class ConfirmSip(Command):
    """The client's own confirmation that they agree to the current SIP (from their token only)."""

    sip_version: Annotated[int, Field(ge=1, le=10_000)]
    confirmed_on: EventDate


class CompleteWorksheet(Command):
    worksheet: Worksheet
    completed_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    summary: LongText
    change_rating: ChangeRating | None = None
    network: list[NetworkPerson] | None = None
    qls_areas: list[ShortText] | None = None
    early_warning_signs: list[ShortText] | None = None
    deviation_reason: DeviationReasonField = None


class SummariseMapping(Command):
    summarised_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    wants_to_change: LongText
    obstacles: LongText
    summary: LongText | None = None
    deviation_reason: DeviationReasonField = None


class ChangePhase(Command):
    to_phase: Phase
    changed_on: EventDate
    reason: ShortText


class SetGoal(Command):
    goal_id: UUID | None = None
    kind: GoalKind
    description: LongText
    parent_goal_id: UUID | None = None
    life_area: ShortText | None = None
    target_date: EventDate | None = None
    set_on: EventDate
    deviation_reason: DeviationReasonField = None


class ChangeGoalStatus(Command):
    status: GoalStatus
    changed_on: EventDate
    comment: LongText | None = None


class AddMember(Command):
    member_id: UUID | None = None
    kind: MemberKind
    name: ShortText
    organisation: OrganisationRef | None = None
    role: ShortText | None = None
    user_id: UserId | None = None
    contact: ContactDetails = ContactDetails()
    added_on: EventDate


class RemoveMember(Command):
    removed_on: EventDate
    reason: ShortText | None = None


class UpdateEarlyWarningPlan(Command):
    signs: Annotated[list[WarningSign], Field(min_length=1)]
    client_actions: list[LongText]
    others_actions: list[OthersAction]
    contacts: list[PlanContact]
    updated_on: EventDate


class ProposedAction(Command):
    """One action: a resource group member's (``responsible_member_id``) or a party's outside
    the group (``responsible_party``, e.g. Försäkringskassan), exactly one of them."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=ONE_RESPONSIBLE)

    action_id: UUID | None = None
    what: LongText
    responsible_member_id: UUID | None = None
    responsible_party: OutsideParty | None = None
    due_on: EventDate
    how: LongText
    goal_id: UUID | None = None

    @model_validator(mode="after")
    def _one_responsible(self) -> Self:
        if (self.responsible_member_id is None) == (self.responsible_party is None):
            raise ValueError("name exactly one of responsible_member_id and responsible_party")
        return self


class DecideSip(Command):
    """A SIP version (SoL 2 kap. 7 §, HSL 16 kap. 4 §): ``overall_responsibility`` is the
    principal (*huvudman*: the region's or the municipality's organisation) with the overall
    responsibility for the plan. ``initial``: decided at an initial SIP meeting (*inledande
    SIP-möte*), before the mapping is summarised, where ``goal_ids`` may still be empty."""

    decided_on: EventDate
    initial: bool = False
    overall_responsibility: OrganisationRef
    goal_ids: list[UUID] = []
    actions: Annotated[list[ProposedAction], Field(min_length=1)]
    next_follow_up_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    client_agreed: bool
    deviation_reason: DeviationReasonField = None


class HoldResourceGroupMeeting(Command):
    meeting_id: UUID | None = None
    held_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    notes: LongText | None = None
    deviation_reason: DeviationReasonField = None


class CompleteAction(Command):
    completed_on: EventDate
    comment: LongText | None = None


class TriggerEarlyWarning(Command):
    warning_id: UUID | None = None
    sign_ids: list[str] = []
    other_sign: LongText | None = None
    observed_on: EventDate
    description: LongText | None = None
    deviation_reason: DeviationReasonField = None


class ResolveEarlyWarning(Command):
    resolved_on: EventDate
    outcome: LongText


class StaffRef(Command):
    """A member of staff who took part in a contact: their user id at their organisation."""

    organisation_id: OrganisationId
    user_id: UserId


class RecordClientContact(Command):
    """A contact with the client for the logbook (*Loggboken*), at any hour of any day."""

    contact_id: UUID | None = None
    mode: ContactMode
    occurred_at: Annotated[
        AwareDatetime,
        Field(
            description="When the contact began, with its UTC offset (e.g. 2026-03-14T21:30:00+01:00):"
            " not after now (five minutes' clock skew allowed), not before the case was opened;"
            " within the date window (rule date_window)"
        ),
    ]
    duration_minutes: Annotated[int, Field(ge=CONTACT_MINUTES_MIN, le=CONTACT_MINUTES_MAX)]
    staff: Annotated[
        list[StaffRef],
        Field(
            max_length=10,
            description="The members of staff who took part; empty: the one recording it alone",
        ),
    ] = []
    others: Annotated[list[ContactOther], Field(max_length=CONTACT_OTHERS_MAX)] = []
    note: ContactNote | None = None


class SetContactPeriod(Command):
    """The coordinators set the contact period, which sets the contact cadence (ADR 0019)."""

    period: ContactPeriod
    applies_from: EventDate
    reason: ShortText | None = None


class CloseCase(Command):
    closed_on: EventDate
    reason: ClosingReason
    comment: LongText | None = None


class CorrectEntry(Command):
    """Correct an earlier entry of the case (ADR 0018): ``value`` is how it should have read,
    of the entry's kind (``value.kind``). A later correction names the same entry again."""

    corrects_event_id: UUID = Field(description="The id of the entry's own event in this case")
    reason: CorrectionReason
    corrected_on: EventDate
    value: CorrectedValue


class RetractEntry(Command):
    """Retract an earlier entry of the case (ADR 0018): it should not have been recorded."""

    corrects_event_id: UUID = Field(description="The id of the entry's own event in this case")
    reason: CorrectionReason
    retracted_on: EventDate


__all__ = [
    "AddMember",
    "AssignCoordinator",
    "CasePolicy",
    "ChangeGoalStatus",
    "ChangePhase",
    "CloseCase",
    "Command",
    "CommandContext",
    "CompleteAction",
    "CompleteWorksheet",
    "CorrectEntry",
    "DecideSip",
    "GiveConsent",
    "HoldResourceGroupMeeting",
    "OpenCase",
    "ProposedAction",
    "RecordClientContact",
    "RemoveMember",
    "ResolveEarlyWarning",
    "RetractEntry",
    "SetContactPeriod",
    "SetGoal",
    "StaffRef",
    "SummariseMapping",
    "TriggerEarlyWarning",
    "UnassignCoordinator",
    "UpdateEarlyWarningPlan",
    "WithdrawConsent",
]
