"""Commands: what a coordinator asks the case to record.

They reuse the contracts' value types, so the HTTP request bodies, the stored facts
and the published facts share one vocabulary. Ids a client may choose (goal, member,
action, meeting, warning) are optional: the aggregate makes one when none is given.
Fields the case decides itself (SIP version, plan version, consent id) are absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.case.domain.events import Actor
from vss_contracts.case_events import OthersAction, PlanContact, WarningSign
from vss_contracts.types import (
    ChangeRating,
    ClientRef,
    ClosingReason,
    ContactDetails,
    Coordinator,
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


class CompleteWorksheet(Command):
    worksheet: Worksheet
    completed_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    summary: LongText
    change_rating: ChangeRating | None = None
    network: list[NetworkPerson] | None = None
    qls_areas: list[ShortText] | None = None
    early_warning_signs: list[ShortText] | None = None


class SummariseMapping(Command):
    summarised_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    wants_to_change: LongText
    obstacles: LongText
    summary: LongText | None = None


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
    action_id: UUID | None = None
    what: LongText
    responsible_member_id: UUID
    due_on: EventDate
    how: LongText
    goal_id: UUID | None = None


class DecideSip(Command):
    decided_on: EventDate
    goal_ids: Annotated[list[UUID], Field(min_length=1)]
    actions: Annotated[list[ProposedAction], Field(min_length=1)]
    next_follow_up_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    client_agreed: bool


class HoldResourceGroupMeeting(Command):
    meeting_id: UUID | None = None
    held_on: EventDate
    participants: Annotated[list[Participant], Field(min_length=1)]
    notes: LongText | None = None


class CompleteAction(Command):
    completed_on: EventDate
    comment: LongText | None = None


class TriggerEarlyWarning(Command):
    warning_id: UUID | None = None
    sign_ids: list[str] = []
    other_sign: LongText | None = None
    observed_on: EventDate
    description: LongText | None = None


class ResolveEarlyWarning(Command):
    resolved_on: EventDate
    outcome: LongText


class CloseCase(Command):
    closed_on: EventDate
    reason: ClosingReason
    comment: LongText | None = None


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
    "DecideSip",
    "GiveConsent",
    "HoldResourceGroupMeeting",
    "OpenCase",
    "ProposedAction",
    "RemoveMember",
    "ResolveEarlyWarning",
    "SetGoal",
    "SummariseMapping",
    "TriggerEarlyWarning",
    "UnassignCoordinator",
    "UpdateEarlyWarningPlan",
    "WithdrawConsent",
]
