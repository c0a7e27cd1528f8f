"""Value types shared by the case events.

Every model is frozen and forbids unknown fields: a payload either is the fact as
published, or it is rejected. Adding a field is a new event version.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from vss_contracts.identity import normalise_personal_identity_number

__all__ = [
    "CONTACT_PERIOD_DAYS",
    "CONTACT_PERIOD_OF_PHASE",
    "ActingPerson",
    "ActorPrincipal",
    "ChangeRating",
    "ClientRef",
    "ClosingReason",
    "ContactDetails",
    "ContactMode",
    "ContactNote",
    "ContactPeriod",
    "Coordinator",
    "CorrectionReason",
    "DeviationReason",
    "GoalKind",
    "GoalStatus",
    "LongText",
    "MemberKind",
    "Municipality",
    "NamedCoordinator",
    "NetworkPerson",
    "OrganisationId",
    "OrganisationRef",
    "Participant",
    "ParticipantKind",
    "ParticipantV1",
    "Person",
    "PersonalIdentityNumber",
    "Phase",
    "PracticeRule",
    "Principal",
    "Region",
    "Score",
    "ShortText",
    "UserId",
    "Worksheet",
]


class ContractModel(BaseModel):
    """Base of every contract model: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        # Frozen values are never mutated in place, so a deep copy may share them.
        return self


# Text is stripped of whitespace (Unicode White_Space) before its length is checked, so it needs
# one character that is not whitespace. The pattern states that in the JSON Schema, spelled out
# because regex dialects disagree on \s; it refuses nothing the strip and minimum length did not.
_NOT_ONLY_WHITESPACE = "[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NOT_ONLY_WHITESPACE),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000, pattern=_NOT_ONLY_WHITESPACE),
]
DeviationReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=_NOT_ONLY_WHITESPACE),
    Field(description="Why the method's practice was adapted here: 1–500 characters"),
]
CorrectionReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=_NOT_ONLY_WHITESPACE),
    Field(description="Why an earlier entry is corrected or retracted: 1–500 characters"),
]
# No whitespace at all: Unicode White_Space spelled out, which is what the model's regex engine
# (pydantic's, Rust's \s) refuses, so that a JSON Schema validator (ECMA-262's \s differs:
# no \x85, but \ufeff) refuses exactly what the model does.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
UserId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=120, pattern=f"^[^{_WHITESPACE}]+$"),
]
OrganisationId = Annotated[
    str,
    StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$"),
    Field(description="Stable organisation identifier, e.g. an HSA id in lower case or a slug."),
]
Score = Annotated[int, Field(ge=0, le=10)]
PersonalIdentityNumber = Annotated[
    str,
    AfterValidator(normalise_personal_identity_number),
    Field(
        description="Swedish personnummer or samordningsnummer; stored as YYYYMMDDNNNC.",
        examples=["19121212-1212"],
    ),
]
PhoneNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{5,20}$")]


class Principal(StrEnum):
    """*Huvudman*: who is responsible for the organisation's part of the care."""

    REGION = "region"
    MUNICIPALITY = "municipality"
    OTHER = "other"  # Arbetsförmedlingen, Försäkringskassan, frivård, private providers


class ActorPrincipal(StrEnum):
    """Whom the actor of a fact acts for: an organisation's principal, or themself as the client.

    ``client`` is the person the case is about (*brukaren*), signed in with a citizen e-ID;
    such an actor's id is their personal identity number and their organisation is ``""``.
    """

    REGION = "region"
    MUNICIPALITY = "municipality"
    OTHER = "other"
    CLIENT = "client"


class Phase(StrEnum):
    MAPPING = "mapping"  # kartläggning
    PLANNING = "planning"  # planeringsfas
    WORKING = "working"  # arbetsfas
    FOLLOW_UP = "follow_up"  # uppföljning
    CLOSED = "closed"


class ContactPeriod(StrEnum):
    """The period of the coordinator's contacts with the client (*Loggboken*, 000_*.txt), which
    sets how often they meet. The coordinators set it (``ContactPeriodSet``); until they do, it
    follows the phase (:data:`CONTACT_PERIOD_OF_PHASE`)."""

    ASSESSMENT = "assessment"  # bedömningsfasen: the first contacts, 1–2 times a week
    ORIENTATION = "orientation"  # orienteringsfasen: regular treatment starts, weekly
    SOCIAL_RECOVERY = "social_recovery"  # social återhämtning: 1–2 times a fortnight
    RE_ORIENTATION = "re_orientation"  # nyorientering: monthly


# The method's interval per period: at least one contact within this many days (000_*.txt:
# 1–2 times a week, weekly, 1–2 times a fortnight, monthly taken as 30 days). The meetings
# service's settings may change them (VSS_MEETINGS cadence_*_days); these are its defaults.
CONTACT_PERIOD_DAYS: Mapping[ContactPeriod, int] = MappingProxyType(
    {
        ContactPeriod.ASSESSMENT: 7,
        ContactPeriod.ORIENTATION: 7,
        ContactPeriod.SOCIAL_RECOVERY: 14,
        ContactPeriod.RE_ORIENTATION: 30,
    }
)

# The period before the coordinators set one, from the case's phase (ADR 0019): the first
# contacts are the mapping's, regular work starts with planning, the working phase is the
# social recovery, the follow-up the re-orientation. (Closed cases have no cadence; a closed
# phase maps to the least frequent period only so that every phase has one.)
CONTACT_PERIOD_OF_PHASE: Mapping[Phase, ContactPeriod] = MappingProxyType(
    {
        Phase.MAPPING: ContactPeriod.ASSESSMENT,
        Phase.PLANNING: ContactPeriod.ORIENTATION,
        Phase.WORKING: ContactPeriod.SOCIAL_RECOVERY,
        Phase.FOLLOW_UP: ContactPeriod.RE_ORIENTATION,
        Phase.CLOSED: ContactPeriod.RE_ORIENTATION,
    }
)


class ContactMode(StrEnum):
    """How a coordinator was in contact with the client (a *Loggboken* entry)."""

    VISIT = "visit"  # a meeting in person: a home visit, at the office, in town
    PHONE = "phone"
    VIDEO = "video"
    OUTREACH = "outreach"  # uppsökande arbete: finding the client where they are


ContactNote = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=_NOT_ONLY_WHITESPACE),
    Field(description="A short note on the contact: 1–500 characters"),
]


class PracticeRule(StrEnum):
    """A rule of the method about practice, which a case may deviate from for a stated reason
    (ADR 0017). Each value is the ``rule`` the case API names when it refuses the command."""

    COORDINATORS_MUST_ATTEND = "coordinators_must_attend"  # interview, network map, mapping summary
    MAPPING_NOT_SUMMARISED = "mapping_not_summarised"  # goals follow the mapping summary
    MEETING_REQUIRES_COORDINATORS = "meeting_requires_coordinators"  # resource group meetings
    SIP_REQUIRES_MAPPING_SUMMARY = "sip_requires_mapping_summary"  # unless an initial SIP
    SIP_FOLLOW_UP_INVALID = "sip_follow_up_invalid"  # only its half "no later than the interval"
    EARLY_WARNING_REQUIRES_PLAN = "early_warning_requires_plan"


class Worksheet(StrEnum):
    """*Arbetsblad* of the mapping phase (see DOMAIN.md)."""

    CONTACT_DETAILS = "contact_details"  # Kontaktuppgifter
    ORDINARY_DAY = "ordinary_day"  # En vanlig dag
    CHANGE_RATING = "change_rating"  # Skattning av förändring (ORS)
    EVERYDAY_FUNCTIONING = "everyday_functioning"  # Hur fungerar vardagen
    NETWORK_MAP = "network_map"  # Nätverkskarta
    INTERVIEW = "interview"  # Intervju
    QLS_100 = "qls_100"  # QLS-100
    LIFESTYLE_AND_HEALTH = "lifestyle_and_health"  # Livsstil och hälsa
    RELATIVE_INTERVIEW = "relative_interview"  # Närståendeintervju
    RELATIVE_RATING = "relative_rating"  # Närståendeskattning
    EARLY_WARNING_SIGNS = "early_warning_signs"  # Tidiga varningstecken


class MemberKind(StrEnum):
    CLIENT = "client"  # brukaren
    COORDINATOR = "coordinator"  # vård- och stödsamordnare
    RELATIVE = "relative"  # närstående
    PROFESSIONAL = "professional"


ParticipantKind = MemberKind


class GoalKind(StrEnum):
    LONG_TERM = "long_term"  # långsiktigt mål
    SUB_GOAL = "sub_goal"  # delmål


class GoalStatus(StrEnum):
    ACTIVE = "active"
    ACHIEVED = "achieved"
    PARTIALLY_ACHIEVED = "partially_achieved"
    NOT_ACHIEVED = "not_achieved"
    ABANDONED = "abandoned"


class ClosingReason(StrEnum):
    GOALS_ACHIEVED = "goals_achieved"
    CLIENT_DECLINED = "client_declined"
    CLIENT_MOVED = "client_moved"
    CLIENT_DECEASED = "client_deceased"
    TRANSFERRED = "transferred"
    OTHER = "other"


class Municipality(ContractModel):
    """*Kommun*, by its four-digit municipality code (kommunkod)."""

    code: Annotated[str, StringConstraints(pattern=r"^\d{4}$")]
    name: ShortText


class Region(ContractModel):
    """*Region*, by its two-digit county code (länskod)."""

    code: Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
    name: ShortText


class ClientRef(ContractModel):
    """*Brukaren*: the person the case is about."""

    personal_identity_number: PersonalIdentityNumber
    name: ShortText


class OrganisationRef(ContractModel):
    id: OrganisationId
    name: ShortText
    principal: Principal


class ContactDetails(ContractModel):
    email: EmailStr | None = None
    phone: PhoneNumber | None = None


class Coordinator(ContractModel):
    """A *vård- och stödsamordnare*, identified by the user id of their login."""

    user_id: UserId
    name: ShortText
    organisation: OrganisationRef
    contact: ContactDetails = ContactDetails()


class Person(ContractModel):
    """A member of staff as a person: their user id at their organisation (a user id alone
    names nobody: the same id at another organisation is someone else)."""

    organisation: OrganisationRef
    user_id: UserId
    name: ShortText | None = Field(default=None, description="As the case knows them; null if it does not")


class NamedCoordinator(ContractModel):
    """A coordinator an event names: the person (``organisation_id``, ``user_id``), ADR 0023.

    ``organisation_id`` is null only in a payload upcast from a version that named the user id
    alone: it then means the coordinator the case held with that user id at the time (a case
    then held at most one per user id). The organisation is never guessed.
    """

    organisation_id: OrganisationId | None
    user_id: UserId

    def names(self, organisation_id: str, user_id: str) -> bool:
        """Whether this is the coordinator (``organisation_id``, ``user_id``); a null organisation
        (an upcast earlier version) names the coordinator with the user id."""
        return self.user_id == user_id and self.organisation_id in (None, organisation_id)


class ActingPerson(ContractModel):
    """A member of staff an event names as the one who acted (booked, moved, confirmed,
    cancelled, recorded): the person (``organisation_id``, ``user_id``), ADR 0023.

    ``organisation_id`` is null only in a payload upcast from a version that named the user id
    alone. The null is not an organisation and none is invented: that payload did not record
    it. (The event's envelope, hashed with the payload, names who made the request: its
    ``actororg`` is this person's organisation where its ``actorid`` is this user id.)
    """

    organisation_id: OrganisationId | None
    user_id: UserId


class ParticipantV1(ContractModel):
    """A participant as the first versions of the participant-carrying events recorded it:
    a coordinator by ``user_id`` alone, which stands for every assigned coordinator with that
    user id (ADR 0023). Kept for the payloads stored and published under those versions."""

    kind: ParticipantKind
    name: ShortText
    user_id: UserId | None = None
    member_id: UUID | None = None


# What the validator of Participant checks, as JSON Schema says it: an organisation only on a
# coordinator, and only with a user id.
ORGANISATION_ONLY_OF_A_COORDINATOR: dict[str, Any] = {
    "allOf": [
        {
            "anyOf": [
                {"required": ["kind"], "properties": {"kind": {"const": "coordinator"}}},
                {"properties": {"organisation_id": {"type": "null"}}},
            ]
        },
        {
            "anyOf": [
                {"properties": {"organisation_id": {"type": "null"}}},
                {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}},
            ]
        },
    ]
}


class Participant(ContractModel):
    """Someone present at a meeting or worksheet session.

    A coordinator is a person: ``organisation_id`` and ``user_id`` (ADR 0023). The organisation
    is null only in a participant of an earlier version, upcast: it then stands for every
    coordinator the case held with that user id. Resource group members are matched by
    ``member_id``; only a coordinator carries an ``organisation_id``.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_extra=ORGANISATION_ONLY_OF_A_COORDINATOR
    )

    kind: ParticipantKind
    name: ShortText
    organisation_id: OrganisationId | None = None
    user_id: UserId | None = None
    member_id: UUID | None = None

    @model_validator(mode="after")
    def _organisation_of_a_coordinator(self) -> Self:
        if self.organisation_id is not None and self.kind is not MemberKind.COORDINATOR:
            raise ValueError("only a coordinator participant carries an organisation_id")
        if self.organisation_id is not None and self.user_id is None:
            raise ValueError("a coordinator named by organisation_id needs its user_id")
        return self

    def names(self, organisation_id: str, user_id: str) -> bool:
        """Whether this participant is the coordinator (``organisation_id``, ``user_id``): a
        null organisation (an upcast earlier version) names every coordinator with the user id."""
        return (
            self.kind is MemberKind.COORDINATOR
            and self.user_id == user_id
            and self.organisation_id in (None, organisation_id)
        )


class ChangeRating(ContractModel):
    """*Skattning av förändring*: the client's own four 0–10 ratings (ORS)."""

    individually: Score  # personligt välbefinnande
    interpersonally: Score  # familj, nära relationer
    socially: Score  # arbete, skola, vänner
    overall: Score  # allmänt välbefinnande


class NetworkPerson(ContractModel):
    """A person on the *nätverkskarta*."""

    name: ShortText
    relation: ShortText
    kind: Annotated[MemberKind, Field(description="relative or professional (client/coordinator not used)")]
    organisation: ShortText | None = None
    is_resource: bool = False
