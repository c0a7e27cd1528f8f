"""Who can be told anything about a case, and whether the consent lets them be told.

The notifications service keeps, per case, what it needs to address people: the
coordinators, the resource group, the early warning plan's contacts, the current consent
(*samtycke*), the meetings and the open early warnings. It is folded from the case and
meeting events and stored as one JSON document per case.

The consent rule (:meth:`Audience.covered`), applied to every message:

- the client is always told (it is their case);
- an assigned coordinator is told while assigned: the person, (organisation, user id), not
  anyone else of a coordinating organisation (coordinators are how the case is run); an
  organisation's duty contact while the organisation coordinates the case;
- anyone else with an organisation only if the current consent covers it;
- a relative, or anyone without an organisation (a friend the plan names), only if the
  current consent covers relatives;
- with no consent in force (none given yet, withdrawn entirely, or past its ``valid_until``)
  nobody but the client and the coordinators.

The rule is :func:`services.shared.access.person_covered`, the one plan links open by too
(ADR 0016); which organisations the consent covers on a day is the shared access rule's
(:mod:`services.shared.access`), with the consent's own grants only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from services.shared.access import Grant, PersonKey, consent_in_force, kept_grants, person_covered
from services.shared.ics import CalendarEntry, identity_from_json, identity_to_json
from services.shared.invitees import invitee_from_json, invitee_json
from vss_contracts.meeting_events import Invitee
from vss_contracts.notification_events import Recipient

# Why a message decided earlier is cancelled instead of sent (the delivery record's reason).
NOT_COVERED = "the consent no longer covers the recipient"
MEMBER_LEFT = "the recipient left the resource group"
CASE_CLOSED = "the case was closed"

_STOCKHOLM = ZoneInfo("Europe/Stockholm")


def same_person(one: Person, other: Person) -> bool:
    """Whether two entries are one person: (organisation, user id), both known."""
    return (
        one.user_id is not None
        and one.organisation_id is not None
        and (one.organisation_id, one.user_id) == (other.organisation_id, other.user_id)
    )


def local_day(moment: datetime) -> date:
    """The day in Sweden at ``moment``: a consent's ``valid_until`` is a Swedish date."""
    return moment.astimezone(_STOCKHOLM).date()


class Role(StrEnum):
    CLIENT = "client"
    COORDINATOR = "coordinator"
    RELATIVE = "relative"
    PROFESSIONAL = "professional"
    PLAN_CONTACT = "plan_contact"
    DUTY = "duty"  # an organisation's duty contact (*jourhavande*), for escalations


@dataclass(frozen=True, slots=True)
class Person:
    """Someone a message can be addressed to, with the addresses the case knows."""

    key: str  # member:<id> | coordinator:<user id> | contact:<key> | duty:<organisation id>
    name: str
    role: Role
    organisation_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    phone: str | None = None
    relative: bool = False  # a private person: needs consent covering relatives

    def recipient(self) -> Recipient:
        return Recipient(
            recipient_id=self.key,
            name=self.name,
            role=self.role.value,
            organisation_id=self.organisation_id,
            user_id=self.user_id,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "role": self.role.value,
            "organisation_id": self.organisation_id,
            "user_id": self.user_id,
            "email": self.email,
            "phone": self.phone,
            "relative": self.relative,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Person:
        return cls(**{**value, "role": Role(value["role"])})

    @classmethod
    def from_invitee(cls, invitee: Invitee) -> Person:
        role = Role(invitee.role.value)
        return cls(
            key=invitee.invitee_id,
            name=invitee.name,
            role=role,
            organisation_id=invitee.organisation.id if invitee.organisation else None,
            user_id=invitee.user_id,
            email=str(invitee.email) if invitee.email else None,
            phone=invitee.phone,
            relative=role is Role.RELATIVE or (role is Role.PLAN_CONTACT and invitee.organisation is None),
        )


@dataclass
class MeetingCopy(CalendarEntry):
    """The notifications service's copy of one meeting (enough for its calendar entry). A
    proposed one is the schedule's suggestion: its invitees are told once it is confirmed."""

    def to_json(self) -> dict[str, Any]:
        return {
            **identity_to_json(self),
            "sequence": self.sequence,
            "invitees": [invitee_json(i) for i in self.invitees.values()],
            "location": self.location,
            "cancelled": self.is_cancelled,
            "agenda": list(self.agenda),
            "proposed": self.proposed,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> MeetingCopy:
        invitees = [invitee_from_json(i) for i in value["invitees"]]
        return cls(
            **identity_from_json(value),
            sequence=value["sequence"],
            invitees={i.invitee_id: i for i in invitees},
            location=value["location"],
            is_cancelled=value["cancelled"],
            agenda=list(value.get("agenda", [])),  # not kept before agendas
            proposed=value.get("proposed", False),
        )


@dataclass
class Audience:
    """What the service knows of one case's people (*brukare, samordnare, resursgrupp*)."""

    case_id: UUID
    opened_by: str | None = None  # the organisation that opened the case
    # The client's personal identity number: who, signed in as a client, may read the case's
    # record (never in a message). None in state stored before it was kept.
    client_pin: str | None = None
    coordinators: dict[PersonKey, Person] = field(default_factory=dict)  # by (organisation id, user id)
    members: dict[str, Person] = field(default_factory=dict)  # by member id
    plan_contacts: list[Person] = field(default_factory=list)
    consent_orgs: set[str] | None = None  # None: no consent in force
    consent_given: bool = False  # a consent was ever given (withdrawn or not)
    covers_relatives: bool = False
    consent_valid_until: date | None = None  # the consent's last day; None: open-ended
    meetings: dict[str, MeetingCopy] = field(default_factory=dict)  # by meeting id
    open_warnings: set[str] = field(default_factory=set)
    closed: bool = False
    # When (the event's recorded_at) each member left and the case closed: a message decided
    # before is not sent, one decided after (a meeting's cancellation) only by the consent.
    left: dict[str, datetime] = field(default_factory=dict)  # by member id
    closed_at: datetime | None = None

    @property
    def reference(self) -> str:
        """The short case reference messages carry instead of anything about the client."""
        return str(self.case_id)[:8]

    # ------------------------------------------------------------------------ consent
    def grants(self) -> list[Grant]:
        """Who may see the case (the shared rule's grants): the coordinators' organisations,
        those the consent in force covers until its ``valid_until``, and the opener's until a
        consent is given."""
        return kept_grants(self, (c.organisation_id for c in self.coordinators.values() if c.organisation_id))

    def consent_in_force(self, today: date) -> bool:
        return consent_in_force(self, today)

    def covered(self, person: Person, today: date) -> bool:
        """Whether the consent lets ``person`` be told on ``today``: the rule above, which is
        :func:`services.shared.access.person_covered` (plan links open by it too)."""
        if person.role is Role.DUTY:  # an organisation's duty contact: while it coordinates
            coordinator = person.organisation_id in {c.organisation_id for c in self.coordinators.values()}
        else:  # an assigned coordinator, the person (organisation, user id): the coordinators' key
            coordinator = person.role is Role.COORDINATOR and (
                (person.organisation_id or "", person.user_id or person.key) in self.coordinators
            )
        return person_covered(
            person.organisation_id,
            client=person.role is Role.CLIENT,
            coordinator=coordinator,
            relative=person.relative,
            consent_orgs=self.consent_orgs,
            consent_relatives=self.covers_relatives,
            consent_valid_until=self.consent_valid_until.isoformat() if self.consent_valid_until else None,
            today=today.isoformat(),
        )

    def why_not_told(self, person: Person, decided_at: datetime, today: date) -> str | None:
        """Why a message decided at ``decided_at`` must not go to ``person`` today; None if it may.

        The one rule for every look before a message leaves (a cancellation when the
        consent narrows, a member leaves or the case closes; the sender's claim, retry and
        recovery): a message decided before the member left or the case closed is not
        sent; one decided after (the meetings service's cancellation to a removed member
        or after the closure) only if the consent in force ``today`` covers them. State
        stored before these times were kept has none: left or closed before anything.
        """
        if self.closed and (self.closed_at is None or decided_at <= self.closed_at):
            return CASE_CLOSED
        member_id = person.key.removeprefix("member:")
        if member_id != person.key and member_id not in self.members:
            left_at = self.left.get(member_id)
            if left_at is None or decided_at <= left_at:
                return MEMBER_LEFT
        if not self.covered(person, today):
            return NOT_COVERED
        return None

    # ----------------------------------------------------------------------- who is who
    def client(self) -> list[Person]:
        return [m for m in self.members.values() if m.role is Role.CLIENT]

    def coordinator_people(self) -> list[Person]:
        """The coordinators, with the addresses their resource group membership may add.

        A member is the coordinator only if both the organisation and the user id match: a
        user id is unique within its organisation only (ADR 0008), and another
        organisation's anna.k must not receive the coordinator's messages.
        """
        people = []
        for coordinator in self.coordinators.values():
            member = next((m for m in self.members.values() if same_person(m, coordinator)), None)
            if member is not None and coordinator.email is None and member.email is not None:
                people.append(replace(coordinator, email=member.email))
            else:
                people.append(coordinator)
        return people

    def resource_group(self) -> list[Person]:
        """The members, coordinators among them with their coordinator addresses."""
        by_person = {(p.organisation_id, p.user_id): p for p in self.coordinator_people()}
        group = []
        for member in self.members.values():
            coordinator = by_person.get((member.organisation_id, member.user_id)) if member.user_id else None
            if coordinator is not None and member.email is None:
                group.append(replace(member, email=coordinator.email))
            else:
                group.append(member)
        return group

    # ------------------------------------------------------------------------ snapshot
    def people_and_consent(self) -> dict[str, Any]:
        """What the case events make of the audience (all but the meetings, which the meeting
        events keep): the state a meeting event is judged by, as of its case position."""
        return self._to_json(meetings=False)

    def to_json(self) -> dict[str, Any]:
        return self._to_json(meetings=True)

    def _to_json(self, *, meetings: bool) -> dict[str, Any]:
        # The meetings are most of the document (their invitees): left out, not dumped and
        # dropped, where they are not wanted.
        state = {
            "case_id": str(self.case_id),
            "opened_by": self.opened_by,
            "client_pin": self.client_pin,
            "coordinators": [p.to_json() for p in self.coordinators.values()],
            "members": [p.to_json() for p in self.members.values()],
            "plan_contacts": [p.to_json() for p in self.plan_contacts],
            "consent_orgs": sorted(self.consent_orgs) if self.consent_orgs is not None else None,
            "consent_given": self.consent_given,
            "covers_relatives": self.covers_relatives,
            "consent_valid_until": self.consent_valid_until.isoformat() if self.consent_valid_until else None,
            "meetings": [m.to_json() for m in self.meetings.values()] if meetings else None,
            "open_warnings": sorted(self.open_warnings),
            "closed": self.closed,
            "left": {member_id: at.isoformat() for member_id, at in self.left.items()},
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
        }
        if not meetings:
            del state["meetings"]
        return state

    @classmethod
    def from_json(cls, value: dict[str, Any], *, meetings: bool = True) -> Audience:
        """The audience :meth:`to_json` stored; ``meetings=False`` leaves out the meetings'
        copies (their invitees are pydantic models, the dearest part to read) for a look
        that reads none, such as :meth:`why_not_told` before each message leaves."""
        coordinators = [Person.from_json(p) for p in value["coordinators"]]
        members = [Person.from_json(p) for p in value["members"]]
        copies = [MeetingCopy.from_json(m) for m in value["meetings"]] if meetings else []
        return cls(
            case_id=UUID(value["case_id"]),
            # State stored before the opener was kept has none: no opener grant, as then.
            opened_by=value.get("opened_by"),
            client_pin=value.get("client_pin"),  # not kept before clients signed in: none reads it
            coordinators={(p.organisation_id or "", p.user_id or p.key): p for p in coordinators},
            members={p.key.removeprefix("member:"): p for p in members},
            plan_contacts=[Person.from_json(p) for p in value["plan_contacts"]],
            consent_orgs=set(value["consent_orgs"]) if value["consent_orgs"] is not None else None,
            consent_given=value.get("consent_given", True),
            covers_relatives=value["covers_relatives"],
            # State stored before the end date was kept has none: open-ended, as it was treated
            # then, until the next ConsentGiven brings its date.
            consent_valid_until=date.fromisoformat(until)
            if (until := value.get("consent_valid_until"))
            else None,
            meetings={str(m.meeting_id): m for m in copies},
            open_warnings=set(value["open_warnings"]),
            closed=value["closed"],
            # Stored before these times were kept: none (see why_not_told).
            left={member_id: datetime.fromisoformat(at) for member_id, at in value.get("left", {}).items()},
            closed_at=datetime.fromisoformat(at) if (at := value.get("closed_at")) else None,
        )
