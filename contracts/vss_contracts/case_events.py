"""The facts of a case, as stored and as published.

Each class is one event type at one version. ``TYPE`` is its stable public name
(the CloudEvents ``type``, the stored topic and the schema id); it never depends on
module paths. A changed shape is a new class with a new ``TYPE`` and an upcaster from
the old one in :mod:`vss_contracts.registry`; old payloads are never rewritten.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar, Literal, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Discriminator,
    EmailStr,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from vss_contracts.types import (
    ChangeRating,
    ClientRef,
    ClosingReason,
    ContactDetails,
    ContactMode,
    ContactNote,
    ContactPeriod,
    ContractModel,
    Coordinator,
    CorrectionReason,
    DeviationReason,
    GoalKind,
    GoalStatus,
    LongText,
    MemberKind,
    Municipality,
    NamedCoordinator,
    NetworkPerson,
    OrganisationId,
    OrganisationRef,
    Participant,
    ParticipantV1,
    Person,
    Phase,
    PracticeRule,
    Principal,
    Region,
    ShortText,
    UserId,
    Worksheet,
)

TYPE_PREFIX = "se.vss.case."


class CaseEventData(ContractModel):
    """Base of every case event payload."""

    TYPE: ClassVar[str]

    @classmethod
    def event_name(cls) -> str:
        """The unversioned name, e.g. ``SipDecided`` (used in NATS subjects)."""
        return cls.TYPE.removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]

    @classmethod
    def event_version(cls) -> int:
        return int(cls.TYPE.rsplit(".v", 1)[1])


class CaseOpened(CaseEventData):
    """A *VSS-uppdrag* was given: the case exists."""

    TYPE: ClassVar[str] = "se.vss.case.CaseOpened.v1"
    client: ClientRef
    municipality: Municipality
    region: Region
    opened_on: date
    opened_by_organisation: OrganisationRef

    @model_validator(mode="after")
    def _municipality_in_region(self) -> Self:
        if not self.municipality.code.startswith(self.region.code):
            raise ValueError(
                f"municipality {self.municipality.code} does not lie in region {self.region.code}"
                " (a municipality code starts with its county code)"
            )
        return self


class CoordinatorAssignedV1(CaseEventData):
    """``CoordinatorAssigned`` as first published: kept for the payloads stored and published
    under it, read as the current version through the upcaster in :mod:`vss_contracts.registry`."""

    TYPE: ClassVar[str] = "se.vss.case.CoordinatorAssigned.v1"
    coordinator: Coordinator
    assigned_on: date


class PersonRef(ContractModel):
    """A person of an organisation: a user id means something only with its organisation."""

    organisation_id: OrganisationId
    user_id: UserId


class CoordinatorAssigned(CaseEventData):
    """A coordinator was assigned. ``hands_over_from`` names the outgoing coordinator of a
    handover (ADR 0021): the incoming one, of the same organisation, is assigned before the
    outgoing one leaves; the handover completes when the outgoing one is unassigned. None:
    an ordinary assignment (every version 1 payload, upcast)."""

    TYPE: ClassVar[str] = "se.vss.case.CoordinatorAssigned.v2"
    coordinator: Coordinator
    assigned_on: date
    hands_over_from: PersonRef | None = None

    @model_validator(mode="after")
    def _hands_over_within_the_organisation(self) -> Self:
        outgoing = self.hands_over_from
        if outgoing is None:
            return self
        if outgoing.user_id == self.coordinator.user_id:
            raise ValueError("a coordinator does not hand over to themself")
        if outgoing.organisation_id != self.coordinator.organisation.id:
            raise ValueError("a handover is within one organisation: the outgoing coordinator's")
        return self


class CoordinatorUnassignedV1(CaseEventData):
    """``CoordinatorUnassigned`` as first published, naming the coordinator by user id alone
    (a case then held at most one coordinator per user id): kept for the payloads stored and
    published under it, read as the current version through the upcaster in
    :mod:`vss_contracts.registry`."""

    TYPE: ClassVar[str] = "se.vss.case.CoordinatorUnassigned.v1"
    user_id: UserId
    unassigned_on: date
    reason: ShortText | None = None


class CoordinatorUnassigned(CaseEventData):
    """A coordinator left the case: the person (``organisation_id``, ``user_id``), ADR 0023.

    ``organisation_id`` is null only in a version 1 payload, upcast: version 1 named the user
    id alone, and a case then held at most one coordinator per user id, so it means *the
    coordinator assigned with that user id* at that point of the case. The organisation is
    not invented; a reader resolves it against the coordinators the case held then
    (:meth:`names`). Every version 2 payload the case service records names the organisation.
    """

    TYPE: ClassVar[str] = "se.vss.case.CoordinatorUnassigned.v2"
    organisation_id: OrganisationId | None
    user_id: UserId
    unassigned_on: date
    reason: ShortText | None = None

    def names(self, organisation_id: str | None, user_id: str) -> bool:
        """Whether the coordinator (``organisation_id``, ``user_id``) is the one unassigned.
        An upcast version 1 event (no organisation) names the coordinator with that user id,
        whose organisation the case knew then and the event did not record."""
        if user_id != self.user_id:
            return False
        return self.organisation_id is None or self.organisation_id == organisation_id


class ConsentGiven(CaseEventData):
    """*Samtycke*: the client consents to these organisations sharing information.

    A new consent replaces the previous one as a whole.
    """

    TYPE: ClassVar[str] = "se.vss.case.ConsentGiven.v1"
    consent_id: UUID
    organisations: Annotated[list[OrganisationRef], Field(min_length=1)]
    covers_relatives: bool
    signed_on: date
    valid_until: date | None = None

    @model_validator(mode="after")
    def _validity(self) -> Self:
        if self.valid_until is not None and self.valid_until < self.signed_on:
            raise ValueError("valid_until is before signed_on")
        ids = [org.id for org in self.organisations]
        if len(ids) != len(set(ids)):
            raise ValueError("an organisation is named twice")
        return self


class ConsentWithdrawn(CaseEventData):
    """The client withdrew consent: entirely, or for some organisations or relatives."""

    TYPE: ClassVar[str] = "se.vss.case.ConsentWithdrawn.v1"
    withdrawn_on: date
    entire: bool = True
    organisation_ids: list[OrganisationId] = Field(default_factory=list)
    relatives: bool = False
    reason: ShortText | None = None

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if self.entire and (self.organisation_ids or self.relatives):
            raise ValueError("an entire withdrawal names no organisations or relatives")
        if not self.entire and not (self.organisation_ids or self.relatives):
            raise ValueError("a partial withdrawal names organisations or relatives")
        return self


class ConsentRenewed(CaseEventData):
    """Every decided SIP is also a renewed consent (DOMAIN.md, step 2)."""

    TYPE: ClassVar[str] = "se.vss.case.ConsentRenewed.v1"
    consent_id: UUID
    renewed_on: date
    sip_version: int
    valid_until: date | None = None


class WorksheetCompletedV1(CaseEventData):
    """``WorksheetCompleted`` as first published (a coordinator participant by user id alone):
    kept for the payloads stored and published under it, read as the current version through
    the upcaster in :mod:`vss_contracts.registry`."""

    TYPE: ClassVar[str] = "se.vss.case.WorksheetCompleted.v1"
    worksheet: Worksheet
    completed_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    summary: LongText
    change_rating: ChangeRating | None = None
    network: list[NetworkPerson] | None = None
    qls_areas: Annotated[list[ShortText], Field(min_length=1)] | None = Field(
        default=None, description="QLS-100: the life areas the client is not satisfied with"
    )
    early_warning_signs: Annotated[list[ShortText], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _structured_data_matches_sheet(self) -> Self:
        owners = {
            "change_rating": Worksheet.CHANGE_RATING,
            "network": Worksheet.NETWORK_MAP,
            "qls_areas": Worksheet.QLS_100,
            "early_warning_signs": Worksheet.EARLY_WARNING_SIGNS,
        }
        for field, sheet in owners.items():
            present = getattr(self, field) is not None
            if present and self.worksheet is not sheet:
                raise ValueError(f"{field} belongs to the {sheet.value} worksheet")
            if not present and self.worksheet is sheet:
                raise ValueError(f"the {sheet.value} worksheet requires {field}")
        return self


class WorksheetCompleted(CaseEventData):
    """An *arbetsblad* was gone through; structured data where the sheet has it.

    Version 2 names a coordinator participant as a person (``organisation_id``, ``user_id``)."""

    TYPE: ClassVar[str] = "se.vss.case.WorksheetCompleted.v2"
    worksheet: Worksheet
    completed_on: date
    participants: Annotated[list[Participant], Field(min_length=1)]
    summary: LongText
    change_rating: ChangeRating | None = None
    network: list[NetworkPerson] | None = None
    qls_areas: Annotated[list[ShortText], Field(min_length=1)] | None = Field(
        default=None, description="QLS-100: the life areas the client is not satisfied with"
    )
    early_warning_signs: Annotated[list[ShortText], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _structured_data_matches_sheet(self) -> Self:
        owners = {
            "change_rating": Worksheet.CHANGE_RATING,
            "network": Worksheet.NETWORK_MAP,
            "qls_areas": Worksheet.QLS_100,
            "early_warning_signs": Worksheet.EARLY_WARNING_SIGNS,
        }
        for field, sheet in owners.items():
            present = getattr(self, field) is not None
            if present and self.worksheet is not sheet:
                raise ValueError(f"{field} belongs to the {sheet.value} worksheet")
            if not present and self.worksheet is sheet:
                raise ValueError(f"the {sheet.value} worksheet requires {field}")
        return self


class MappingSummarisedV1(CaseEventData):
    """``MappingSummarised`` as first published (a coordinator participant by user id alone):
    kept for the payloads stored and published under it, read as the current version."""

    TYPE: ClassVar[str] = "se.vss.case.MappingSummarised.v1"
    summarised_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    wants_to_change: LongText
    obstacles: LongText
    summary: LongText | None = None


class MappingSummarised(CaseEventData):
    """*Sammanfattning av kartläggning*: what the client wants to change and what stands in the way.

    Version 2 names a coordinator participant as a person (``organisation_id``, ``user_id``)."""

    TYPE: ClassVar[str] = "se.vss.case.MappingSummarised.v2"
    summarised_on: date
    participants: Annotated[list[Participant], Field(min_length=1)]
    wants_to_change: LongText
    obstacles: LongText
    summary: LongText | None = None


class PhaseChanged(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.PhaseChanged.v1"
    from_phase: Phase
    to_phase: Phase
    changed_on: date
    reason: ShortText


class GoalSet(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.GoalSet.v1"
    goal_id: UUID
    kind: GoalKind
    description: LongText
    parent_goal_id: UUID | None = None
    life_area: ShortText | None = None
    target_date: date | None = None
    set_on: date

    @model_validator(mode="after")
    def _parent(self) -> Self:
        if self.kind is GoalKind.LONG_TERM and self.parent_goal_id is not None:
            raise ValueError("a long-term goal has no parent goal")
        return self


class GoalStatusChanged(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.GoalStatusChanged.v1"
    goal_id: UUID
    status: GoalStatus
    changed_on: date
    comment: LongText | None = None


class ResourceGroupMember(ContractModel):
    """A member of the client's *resursgrupp*."""

    member_id: UUID
    kind: MemberKind
    name: ShortText
    organisation: OrganisationRef | None = None
    role: ShortText | None = Field(default=None, description="e.g. kurator, boendestödjare, mother")
    user_id: UserId | None = None
    contact: ContactDetails = ContactDetails()

    @property
    def principal(self) -> Principal | None:
        return self.organisation.principal if self.organisation else None

    @model_validator(mode="after")
    def _organisation(self) -> Self:
        needs_org = self.kind in (MemberKind.PROFESSIONAL, MemberKind.COORDINATOR)
        if needs_org and self.organisation is None:
            raise ValueError(f"a {self.kind.value} member needs an organisation")
        if self.kind is MemberKind.COORDINATOR and self.user_id is None:
            raise ValueError("a coordinator member needs the coordinator's user_id")
        return self


class ResourceGroupMemberAdded(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.ResourceGroupMemberAdded.v1"
    member: ResourceGroupMember
    added_on: date


class ResourceGroupMemberRemoved(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.ResourceGroupMemberRemoved.v1"
    member_id: UUID
    removed_on: date
    reason: ShortText | None = None


class WarningSign(ContractModel):
    sign_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    description: ShortText


class OthersAction(ContractModel):
    who: ShortText
    what: LongText


class PlanContact(ContractModel):
    name: ShortText
    relation: ShortText
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()-]{5,20}$")]
    email: EmailStr | None = None
    member_id: UUID | None = None


class EarlyWarningPlanUpdated(CaseEventData):
    """*Tidiga tecken med åtgärder*: the whole plan as it now stands."""

    TYPE: ClassVar[str] = "se.vss.case.EarlyWarningPlanUpdated.v1"
    plan_version: int
    signs: Annotated[list[WarningSign], Field(min_length=1)]
    client_actions: list[LongText]
    others_actions: list[OthersAction]
    contacts: list[PlanContact]
    updated_on: date

    @model_validator(mode="after")
    def _unique_signs(self) -> Self:
        ids = [sign.sign_id for sign in self.signs]
        if len(ids) != len(set(ids)):
            raise ValueError("sign_id values must be unique")
        return self


class SipActionV1(ContractModel):
    """One action of a SIP as ``SipDecided.v1`` recorded it: always a resource group member's."""

    action_id: UUID
    what: LongText
    responsible_member_id: UUID
    due_on: date
    how: LongText
    goal_id: UUID | None = None


class SipDecidedV1(CaseEventData):
    """``SipDecided`` as first published: kept for the payloads stored and published under
    it, read as the current version through the upcaster in :mod:`vss_contracts.registry`."""

    TYPE: ClassVar[str] = "se.vss.case.SipDecided.v1"
    sip_version: int
    decided_on: date
    goal_ids: Annotated[list[UUID], Field(min_length=1)]
    actions: Annotated[list[SipActionV1], Field(min_length=1)]
    next_follow_up_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    client_agreed: bool


class OutsideParty(ContractModel):
    """Who does an action without being in the resource group (e.g. Försäkringskassan or
    Arbetsförmedlingen): a SIP may name parties outside the group (SoL 2 kap. 7 §,
    HSL 16 kap. 4 §)."""

    organisation: OrganisationRef
    contact_name: ShortText | None = None


# "Exactly one of the two", as JSON Schema says it (the models' validators check it too).
ONE_RESPONSIBLE: dict[str, Any] = {
    "oneOf": [
        {"required": ["responsible_member_id"], "properties": {"responsible_member_id": {"type": "string"}}},
        {"required": ["responsible_party"], "properties": {"responsible_party": {"type": "object"}}},
    ]
}


class SipAction(ContractModel):
    """One action of a SIP: what, who, when, how. Who is a resource group member or a party
    outside the group, exactly one of them."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=ONE_RESPONSIBLE)

    action_id: UUID
    what: LongText
    responsible_member_id: UUID | None = None
    responsible_party: OutsideParty | None = None
    due_on: date
    how: LongText
    goal_id: UUID | None = None

    @model_validator(mode="after")
    def _one_responsible(self) -> Self:
        if (self.responsible_member_id is None) == (self.responsible_party is None):
            raise ValueError("an action names exactly one of responsible_member_id and responsible_party")
        return self


class SipDecidedV2(CaseEventData):
    """``SipDecided`` version 2 (a coordinator participant by user id alone): kept for the
    payloads stored and published under it, read as the current version through the upcaster.

    Version 2 records what the law requires of a SIP: the principal (*huvudman*) with the
    overall responsibility for the plan, actions by parties outside the resource group, and
    whether it was decided at an initial SIP meeting (*inledande SIP-möte*), before the
    mapping, where it may set no goals yet. ``overall_responsibility`` is None only in a
    SIP recorded as version 1 (upcast), which did not record it.
    """

    TYPE: ClassVar[str] = "se.vss.case.SipDecided.v2"
    sip_version: int
    decided_on: date
    initial: bool = False
    overall_responsibility: OrganisationRef | None
    goal_ids: list[UUID]
    actions: Annotated[list[SipAction], Field(min_length=1)]
    next_follow_up_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    client_agreed: bool

    @model_validator(mode="after")
    def _valid(self) -> Self:
        ids = [action.action_id for action in self.actions]
        if len(ids) != len(set(ids)):
            raise ValueError("action_id values must be unique")
        if not self.goal_ids and not self.initial:
            raise ValueError("goal_ids may be empty only in an initial SIP")
        responsible = self.overall_responsibility
        if responsible is not None and responsible.principal not in (
            Principal.REGION,
            Principal.MUNICIPALITY,
        ):
            raise ValueError("overall_responsibility is a principal: a region or a municipality")
        return self


class SipDecided(CaseEventData):
    """The resource group decided a *SIP* (samordnad individuell plan) version.

    Version 2 records what the law requires of a SIP: the principal (*huvudman*) with the
    overall responsibility for the plan, actions by parties outside the resource group, and
    whether it was decided at an initial SIP meeting (*inledande SIP-möte*), before the
    mapping, where it may set no goals yet. ``overall_responsibility`` is None only in a
    SIP recorded as version 1 (upcast), which did not record it. Version 3 names a
    coordinator participant as a person (``organisation_id``, ``user_id``).
    """

    TYPE: ClassVar[str] = "se.vss.case.SipDecided.v3"
    sip_version: int
    decided_on: date
    initial: bool = False
    overall_responsibility: OrganisationRef | None
    goal_ids: list[UUID]
    actions: Annotated[list[SipAction], Field(min_length=1)]
    next_follow_up_on: date
    participants: Annotated[list[Participant], Field(min_length=1)]
    client_agreed: bool

    @model_validator(mode="after")
    def _valid(self) -> Self:
        ids = [action.action_id for action in self.actions]
        if len(ids) != len(set(ids)):
            raise ValueError("action_id values must be unique")
        if not self.goal_ids and not self.initial:
            raise ValueError("goal_ids may be empty only in an initial SIP")
        responsible = self.overall_responsibility
        if responsible is not None and responsible.principal not in (
            Principal.REGION,
            Principal.MUNICIPALITY,
        ):
            raise ValueError("overall_responsibility is a principal: a region or a municipality")
        return self


class SipConfirmedByClient(CaseEventData):
    """The client, signed in with their own e-ID, confirmed that they agree to a SIP version.

    The SIP already records the client's agreement as the resource group heard it
    (``client_agreed``); this is the client's own word for it, in their own name (the event's
    actor is the client: ``actorprincipal`` ``client``). *Brukaren äger planen.*
    """

    TYPE: ClassVar[str] = "se.vss.case.SipConfirmedByClient.v1"
    sip_version: Annotated[int, Field(ge=1)]
    confirmed_on: date


class ResourceGroupMeetingHeldV1(CaseEventData):
    """``ResourceGroupMeetingHeld`` as first published (a coordinator participant by user id
    alone): kept for the payloads stored and published under it, read as the current version."""

    TYPE: ClassVar[str] = "se.vss.case.ResourceGroupMeetingHeld.v1"
    meeting_id: UUID
    held_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    notes: LongText | None = None


class ResourceGroupMeetingHeld(CaseEventData):
    """A resource group meeting was held. Version 2 names a coordinator participant as a
    person (``organisation_id``, ``user_id``)."""

    TYPE: ClassVar[str] = "se.vss.case.ResourceGroupMeetingHeld.v2"
    meeting_id: UUID
    held_on: date
    participants: Annotated[list[Participant], Field(min_length=1)]
    notes: LongText | None = None


class ActionCompleted(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.ActionCompleted.v1"
    sip_version: int
    action_id: UUID
    completed_on: date
    comment: LongText | None = None


class EarlyWarningTriggered(CaseEventData):
    """Signs from the plan were seen: the plan is activated (crisis coordination)."""

    TYPE: ClassVar[str] = "se.vss.case.EarlyWarningTriggered.v1"
    warning_id: UUID
    plan_version: int = Field(
        description="The version of the plan the signs are judged against; 0 when the case had no plan"
        " (a recorded deviation, MethodDeviationRecorded, precedes it)"
    )
    sign_ids: list[str] = Field(default_factory=list)
    other_sign: LongText | None = Field(
        default=None, description="An explicitly described sign that is not in the plan"
    )
    observed_on: date
    description: LongText | None = None

    @model_validator(mode="after")
    def _some_sign(self) -> Self:
        if not self.sign_ids and self.other_sign is None:
            raise ValueError("name at least one sign from the plan or describe another sign")
        return self


class EarlyWarningResolved(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.EarlyWarningResolved.v1"
    warning_id: UUID
    resolved_on: date
    outcome: LongText


# The rules whose deviation names the coordinators who were not there.
ATTENDANCE_RULES = frozenset(
    {PracticeRule.COORDINATORS_MUST_ATTEND, PracticeRule.MEETING_REQUIRES_COORDINATORS}
)


class MethodDeviationRecordedV1(CaseEventData):
    """``MethodDeviationRecorded`` as first published, naming the absent coordinators by user
    id alone: kept for the payloads stored and published under it, read as the current version
    through the upcaster in :mod:`vss_contracts.registry`."""

    TYPE: ClassVar[str] = "se.vss.case.MethodDeviationRecorded.v1"
    rule: PracticeRule
    reason: DeviationReason
    deviates: Annotated[
        str,
        StringConstraints(max_length=120, pattern=r"^se\.vss\.case\.[A-Za-z]+\.v[1-9][0-9]*$"),
        Field(description="The type of the event that deviates, e.g. se.vss.case.WorksheetCompleted.v1"),
    ]
    deviated_on: date
    absent_coordinators: list[UserId] = Field(default_factory=list)
    follow_up_due_by: date | None = None

    @model_validator(mode="after")
    def _figures_match_rule(self) -> Self:
        if (self.rule in ATTENDANCE_RULES) != bool(self.absent_coordinators):
            raise ValueError("absent_coordinators are named by, and only by, the attendance rules")
        if (self.rule is PracticeRule.SIP_FOLLOW_UP_INVALID) != (self.follow_up_due_by is not None):
            raise ValueError("follow_up_due_by is given by, and only by, sip_follow_up_invalid")
        if self.follow_up_due_by is not None and self.follow_up_due_by < self.deviated_on:
            raise ValueError("follow_up_due_by is before deviated_on")
        return self


class MethodDeviationRecorded(CaseEventData):
    """A rule of the method's practice was not followed, for a stated reason (ADR 0017).

    Recorded in the same commit as the fact that deviates, right before it: ``deviates`` is
    that fact's type and ``deviated_on`` its date. The figures that matter to the rule:
    ``absent_coordinators`` (the assigned coordinators who were not there, each a person: the
    attendance rules) and ``follow_up_due_by`` (the latest follow-up the rule allows:
    ``sip_follow_up_invalid``; the SIP's own ``next_follow_up_on`` is the later one chosen).
    """

    TYPE: ClassVar[str] = "se.vss.case.MethodDeviationRecorded.v2"
    rule: PracticeRule
    reason: DeviationReason
    deviates: Annotated[
        str,
        StringConstraints(max_length=120, pattern=r"^se\.vss\.case\.[A-Za-z]+\.v[1-9][0-9]*$"),
        Field(description="The type of the event that deviates, e.g. se.vss.case.WorksheetCompleted.v1"),
    ]
    deviated_on: date
    absent_coordinators: list[NamedCoordinator] = Field(default_factory=list)
    follow_up_due_by: date | None = None

    @model_validator(mode="after")
    def _figures_match_rule(self) -> Self:
        if (self.rule in ATTENDANCE_RULES) != bool(self.absent_coordinators):
            raise ValueError("absent_coordinators are named by, and only by, the attendance rules")
        if (self.rule is PracticeRule.SIP_FOLLOW_UP_INVALID) != (self.follow_up_due_by is not None):
            raise ValueError("follow_up_due_by is given by, and only by, sip_follow_up_invalid")
        if self.follow_up_due_by is not None and self.follow_up_due_by < self.deviated_on:
            raise ValueError("follow_up_due_by is before deviated_on")
        return self


# A contact lasts at least a minute and at most twelve hours (a long outreach day).
CONTACT_MINUTES_MIN = 1
CONTACT_MINUTES_MAX = 720
# The people other than staff a logbook entry names, at most.
CONTACT_OTHERS_MAX = 20


class ContactOther(ContractModel):
    """Someone else who took part in a contact, by role and optionally name (e.g. mother, a
    landlord): not a user of VSS."""

    role: ShortText
    name: ShortText | None = None


class ClientContactRecorded(CaseEventData):
    """A coordinator was in contact with the client (*Loggboken*): a visit, a call, a video
    call or outreach work, at any hour and on any day (evenings and weekends are normal).

    Counts toward the contact cadence of the period (``ContactPeriodSet``) on its day in
    Europe/Stockholm. ``staff`` are the members of staff who took part, as persons
    (organisation, user id, name); ``others`` anyone else, by role.
    """

    TYPE: ClassVar[str] = "se.vss.case.ClientContactRecorded.v1"
    contact_id: UUID
    mode: ContactMode
    occurred_at: AwareDatetime = Field(description="When the contact began, with its UTC offset")
    duration_minutes: Annotated[
        int,
        Field(ge=CONTACT_MINUTES_MIN, le=CONTACT_MINUTES_MAX, description="1–720 minutes (twelve hours)"),
    ]
    staff: Annotated[list[Person], Field(min_length=1, max_length=10)]
    others: Annotated[list[ContactOther], Field(max_length=CONTACT_OTHERS_MAX)] = Field(default_factory=list)
    note: ContactNote | None = None

    @model_validator(mode="after")
    def _each_person_once(self) -> Self:
        people = [(p.organisation.id, p.user_id) for p in self.staff]
        if len(people) != len(set(people)):
            raise ValueError("a member of staff is named twice")
        return self


class ContactPeriodSet(CaseEventData):
    """The coordinators set the period of their contacts with the client from ``applies_from``
    (*Loggboken*, 000_*.txt): assessment (*bedömningsfasen*, 1–2 times a week), orientation
    (*orienteringsfasen*, weekly), social recovery (*social återhämtning*, 1–2 times a
    fortnight) or re-orientation (*nyorientering*, monthly). It replaces the period that
    followed the phase, and any period set before."""

    TYPE: ClassVar[str] = "se.vss.case.ContactPeriodSet.v1"
    period: ContactPeriod
    applies_from: date
    set_by: Person
    reason: ShortText | None = None


# -- corrections of earlier entries (ADR 0018) -------------------------------------------
# The kinds of entry a coordinator may correct or retract, and the event type of each.
class CorrectedWorksheetV1(ContractModel):
    """In ``EntryCorrected.v1`` (a coordinator participant by user id alone). A worksheet's
    entry as it should have read. The sheet itself stays the original's:
    its structured data must still match it (the aggregate checks it as for the original)."""

    kind: Literal["worksheet"]
    completed_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    summary: LongText
    change_rating: ChangeRating | None = None
    network: list[NetworkPerson] | None = None
    qls_areas: Annotated[list[ShortText], Field(min_length=1)] | None = None
    early_warning_signs: Annotated[list[ShortText], Field(min_length=1)] | None = None


class CorrectedWorksheet(ContractModel):
    """A worksheet's entry as it should have read. The sheet itself stays the original's:
    its structured data must still match it (the aggregate checks it as for the original)."""

    kind: Literal["worksheet"]
    completed_on: date
    participants: Annotated[list[Participant], Field(min_length=1)]
    summary: LongText
    change_rating: ChangeRating | None = None
    network: list[NetworkPerson] | None = None
    qls_areas: Annotated[list[ShortText], Field(min_length=1)] | None = None
    early_warning_signs: Annotated[list[ShortText], Field(min_length=1)] | None = None


class CorrectedGoal(ContractModel):
    """A goal as it should have read; its id, kind and parent stay (retract it and set
    another goal to change those)."""

    kind: Literal["goal"]
    description: LongText
    life_area: ShortText | None = None
    target_date: date | None = None
    set_on: date


class CorrectedMeetingHeldV1(ContractModel):
    """In ``EntryCorrected.v1`` (a coordinator participant by user id alone). A resource group
    meeting held, as it should have read; its id stays."""

    kind: Literal["resource_group_meeting"]
    held_on: date
    participants: Annotated[list[ParticipantV1], Field(min_length=1)]
    notes: LongText | None = None


class CorrectedMeetingHeld(ContractModel):
    """A resource group meeting held, as it should have read; its id stays."""

    kind: Literal["resource_group_meeting"]
    held_on: date
    participants: Annotated[list[Participant], Field(min_length=1)]
    notes: LongText | None = None


class CorrectedActionCompletion(ContractModel):
    """A SIP action's completion as it should have read; the SIP version and action stay."""

    kind: Literal["sip_action"]
    completed_on: date
    comment: LongText | None = None


def _kind(value: Any) -> str | None:
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


# Told apart by ``kind``, with pydantic's errors naming only the kind given; the JSON Schema
# is a plain ``oneOf`` (each member's ``kind`` admits one value) that any validator reads.
CorrectedValueV1 = Annotated[
    Annotated[CorrectedWorksheetV1, Tag("worksheet")]
    | Annotated[CorrectedGoal, Tag("goal")]
    | Annotated[CorrectedMeetingHeldV1, Tag("resource_group_meeting")]
    | Annotated[CorrectedActionCompletion, Tag("sip_action")],
    Discriminator(
        _kind,
        custom_error_type="correction_kind",
        custom_error_message="kind is one of worksheet, goal, resource_group_meeting, sip_action",
    ),
    Field(description="The entry as it should have read; kind is the entry's kind"),
]

CorrectedValue = Annotated[
    Annotated[CorrectedWorksheet, Tag("worksheet")]
    | Annotated[CorrectedGoal, Tag("goal")]
    | Annotated[CorrectedMeetingHeld, Tag("resource_group_meeting")]
    | Annotated[CorrectedActionCompletion, Tag("sip_action")],
    Discriminator(
        _kind,
        custom_error_type="correction_kind",
        custom_error_message="kind is one of worksheet, goal, resource_group_meeting, sip_action",
    ),
    Field(description="The entry as it should have read; kind is the entry's kind"),
]

EventType = Annotated[
    str,
    StringConstraints(max_length=120, pattern=r"^se\.vss\.case\.[A-Za-z]+\.v[1-9][0-9]*$"),
]


class EntryCorrectedV1(CaseEventData):
    """``EntryCorrected`` as first published (a corrected worksheet or meeting names a
    coordinator participant by user id alone): read as the current version through the upcaster.

    The entry's own event stays as it was stored (the hash chain is untouched, and the law on
    patient records keeps what was written): readers show ``value`` as the current one and the
    original beside it. ``corrects_event_id`` is always the entry's own event (a later
    correction names it again, and the latest wins); ``corrects_type`` is that event's type
    and ``value.kind`` its kind.
    """

    TYPE: ClassVar[str] = "se.vss.case.EntryCorrected.v1"
    corrects_event_id: UUID
    corrects_type: EventType
    reason: CorrectionReason
    corrected_on: date
    value: CorrectedValueV1

    @model_validator(mode="after")
    def _kind_matches_type(self) -> Self:
        expected = CORRECTABLE_KINDS.get(self.corrects_type.rsplit(".", 1)[0])
        if expected != self.value.kind:
            raise ValueError(f"a {self.value.kind} correction does not correct a {self.corrects_type}")
        return self


class EntryCorrected(CaseEventData):
    """An earlier entry of the case corrected: ``value`` is how it should have read.

    The entry's own event stays as it was stored (the hash chain is untouched, and the law on
    patient records keeps what was written): readers show ``value`` as the current one and the
    original beside it. ``corrects_event_id`` is always the entry's own event (a later
    correction names it again, and the latest wins); ``corrects_type`` is that event's type
    and ``value.kind`` its kind. Version 2 names a coordinator participant of a corrected
    worksheet or meeting as a person (``organisation_id``, ``user_id``).
    """

    TYPE: ClassVar[str] = "se.vss.case.EntryCorrected.v2"
    corrects_event_id: UUID
    corrects_type: EventType
    reason: CorrectionReason
    corrected_on: date
    value: CorrectedValue

    @model_validator(mode="after")
    def _kind_matches_type(self) -> Self:
        expected = CORRECTABLE_KINDS.get(self.corrects_type.rsplit(".", 1)[0])
        if expected != self.value.kind:
            raise ValueError(f"a {self.value.kind} correction does not correct a {self.corrects_type}")
        return self


class EntryRetracted(CaseEventData):
    """An earlier entry of the case retracted: it should not have been recorded (e.g. it was
    entered in the wrong case, or the meeting never took place). The entry's own event stays;
    readers show it as retracted, never remove it, and count it no more."""

    TYPE: ClassVar[str] = "se.vss.case.EntryRetracted.v1"
    corrects_event_id: UUID
    corrects_type: EventType
    reason: CorrectionReason
    retracted_on: date

    @model_validator(mode="after")
    def _correctable_type(self) -> Self:
        if self.corrects_type.rsplit(".", 1)[0] not in CORRECTABLE_KINDS:
            raise ValueError(f"{self.corrects_type} is not an entry that can be retracted")
        return self


# The correctable entries: the unversioned type (any version) and its kind.
CORRECTABLE_KINDS: dict[str, str] = {
    "se.vss.case.WorksheetCompleted": "worksheet",
    "se.vss.case.GoalSet": "goal",
    "se.vss.case.ResourceGroupMeetingHeld": "resource_group_meeting",
    "se.vss.case.ActionCompleted": "sip_action",
}


class CaseClosed(CaseEventData):
    TYPE: ClassVar[str] = "se.vss.case.CaseClosed.v1"
    closed_on: date
    reason: ClosingReason
    comment: LongText | None = None


# Every current case event type, in the order of the case lifecycle.
# Earlier versions of current types: payloads stored and published under them are read
# through the upcasters in vss_contracts.registry; their schemas stay published.
LEGACY_CASE_EVENTS: tuple[type[CaseEventData], ...] = (
    SipDecidedV1,
    CoordinatorAssignedV1,
    CoordinatorUnassignedV1,
    WorksheetCompletedV1,
    MappingSummarisedV1,
    SipDecidedV2,
    ResourceGroupMeetingHeldV1,
    EntryCorrectedV1,
    MethodDeviationRecordedV1,
)

CASE_EVENTS: tuple[type[CaseEventData], ...] = (
    CaseOpened,
    CoordinatorAssigned,
    CoordinatorUnassigned,
    ConsentGiven,
    ConsentWithdrawn,
    ConsentRenewed,
    WorksheetCompleted,
    MappingSummarised,
    PhaseChanged,
    GoalSet,
    GoalStatusChanged,
    ResourceGroupMemberAdded,
    ResourceGroupMemberRemoved,
    EarlyWarningPlanUpdated,
    SipDecided,
    SipConfirmedByClient,
    ResourceGroupMeetingHeld,
    ActionCompleted,
    EarlyWarningTriggered,
    EarlyWarningResolved,
    MethodDeviationRecorded,
    ClientContactRecorded,
    ContactPeriodSet,
    EntryCorrected,
    EntryRetracted,
    CaseClosed,
)
