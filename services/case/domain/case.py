"""The Case aggregate (*VSS-uppdrag*): one client's coordination, as an event stream.

Command methods check the method's rules against the current state and trigger
events; ``evolve`` applies an event to the state and is the only place state changes.
Facts that follow from another fact (the phase after a mapping summary or the first
SIP, the consent renewed by a SIP) are triggered in the same command, so they are
stored in the same commit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from eventsourcing.domain import BaseAggregate
from pydantic import ValidationError

from services.case.domain import commands as cmd
from services.case.domain import errors
from services.case.domain.events import Actor, CaseEvent
from services.shared.dispatch import EventHandlers
from vss_contracts import case_events as ev
from vss_contracts.case_events import CaseEventData
from vss_contracts.chain import GENESIS_HASH
from vss_contracts.identity import birth_date
from vss_contracts.types import (
    ActorPrincipal,
    ClientRef,
    ContactPeriod,
    Coordinator,
    GoalKind,
    GoalStatus,
    MemberKind,
    Municipality,
    NamedCoordinator,
    OrganisationRef,
    Participant,
    Person,
    Phase,
    PracticeRule,
    Principal,
    Region,
    Worksheet,
)

F = TypeVar("F", bound=Callable[..., Any])

STOCKHOLM = ZoneInfo("Europe/Stockholm")  # a contact's day is its day here (ADR 0019)
# How far after the server's clock a contact's time may lie: the recording device's clock may be
# a little ahead (a contact "now" is never refused for it).
CONTACT_CLOCK_SKEW = timedelta(minutes=5)


# What a client may do in their own case: their say over the consent and the plan.
CLIENT_COMMANDS = frozenset({"withdraw_consent", "confirm_sip"})


def _command(method: F) -> F:
    """A command whose fields make an invalid fact raises InvalidCommand, naming the fields.

    The commands check their own fields; the facts check more (e.g. a change-rating
    worksheet needs its scores), and the facts' checks are the last word. A client (an
    actor with the principal ``client``) runs only the :data:`CLIENT_COMMANDS`, whatever
    else the case would allow.
    """
    by_client = method.__name__ in CLIENT_COMMANDS

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        context = args[0]._context if isinstance(args[0], Case) else None
        if not by_client and context is not None and context.actor.principal is ActorPrincipal.CLIENT:
            raise errors.ClientMayNotRecord(f"a client does not {method.__name__.replace('_', ' ')}")
        try:
            return method(*args, **kwargs)
        except ValidationError as error:
            raise errors.InvalidCommand(
                [
                    {
                        "field": ".".join(str(part) for part in e["loc"]) or "body",
                        "rule": e["type"],
                        "message": e["msg"],
                    }
                    for e in error.errors()
                ]
            ) from None

    return cast(F, checked)


# Worksheets that need every assigned coordinator present (manual p. 7, Checklista K).
JOINT_WORKSHEETS = frozenset({Worksheet.INTERVIEW, Worksheet.NETWORK_MAP})
MANUAL_PHASE_CHANGES = frozenset({(Phase.WORKING, Phase.FOLLOW_UP), (Phase.FOLLOW_UP, Phase.WORKING)})


@dataclass(frozen=True, slots=True)
class Deviation:
    """A practice rule a command breaks, with the figures the recorded deviation keeps."""

    rule: PracticeRule
    absent_coordinators: tuple[Coordinator, ...] = ()  # persons, as the event names them
    follow_up_due_by: date | None = None


def person_key(organisation_id: str, user_id: str) -> str:
    """A coordinator's key in :attr:`CaseState.coordinators`: the person, never the user id
    alone (ADR 0023). ``organisation/user``: an organisation id has no slash, so the key reads
    back unambiguously, and it stays a JSON object key in the case API's state."""
    return f"{organisation_id}/{user_id}"


def coordinator_key(coordinator: Coordinator) -> str:
    return person_key(coordinator.organisation.id, coordinator.user_id)


def _label(coordinator: Coordinator) -> str:
    return f"{coordinator.user_id} at {coordinator.organisation.id}"


@dataclass
class Consent:
    consent_id: UUID
    organisations: dict[str, OrganisationRef]
    covers_relatives: bool
    signed_on: date
    valid_until: date | None
    withdrawn_on: date | None = None
    renewed_on: date | None = None

    @property
    def period(self) -> timedelta | None:
        """How long the signed consent was valid for; a renewal counts it anew."""
        return None if self.original_valid_until is None else self.original_valid_until - self.signed_on

    original_valid_until: date | None = None

    def covers(self, organisation_id: str) -> bool:
        return organisation_id in self.organisations


@dataclass
class WorksheetRecord:
    worksheet: Worksheet
    completed_on: date
    participants: list[Participant]


@dataclass
class Goal:
    goal_id: UUID
    kind: GoalKind
    description: str
    parent_goal_id: UUID | None
    status: GoalStatus = GoalStatus.ACTIVE


@dataclass
class SipAction:
    action: ev.SipAction
    completed_on: date | None = None


@dataclass
class Sip:
    version: int
    decided_on: date
    goal_ids: list[UUID]
    actions: dict[UUID, SipAction]
    next_follow_up_on: date
    confirmed_by_client_on: date | None = None


@dataclass
class EarlyWarning:
    warning_id: UUID
    plan_version: int
    observed_on: date
    resolved_on: date | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry of the case that may be corrected or retracted (ADR 0018), as it now stands.

    ``earliest`` is the earliest date its value may take: the case's opening, or for a SIP
    action's completion the SIP's decision. What identifies it in the state: ``record`` (a
    worksheet), ``goal_id``, ``held_on`` (a meeting), ``sip_version`` and ``action_id``.
    """

    kind: str
    type: str
    earliest: date
    record: WorksheetRecord | None = None
    goal_id: UUID | None = None
    held_on: date | None = None
    sip_version: int | None = None
    action_id: UUID | None = None
    corrections: int = 0
    retracted_on: date | None = None


@dataclass
class CaseState:
    client: ClientRef
    municipality: Municipality
    region: Region
    opened_on: date
    opened_by: OrganisationRef
    phase: Phase = Phase.MAPPING
    closed_on: date | None = None
    coordinators: dict[str, Coordinator] = field(default_factory=dict)  # by person_key
    handover: tuple[str, str] | None = None  # (outgoing, incoming) person keys while one is in progress
    consent: Consent | None = None
    worksheets: list[WorksheetRecord] = field(default_factory=list)
    mapping_summarised_on: date | None = None
    goals: dict[UUID, Goal] = field(default_factory=dict)
    members: dict[UUID, ev.ResourceGroupMember] = field(default_factory=dict)
    early_warning_plan: ev.EarlyWarningPlanUpdated | None = None
    sip: Sip | None = None
    early_warnings: dict[UUID, EarlyWarning] = field(default_factory=dict)
    meetings_held: list[date] = field(default_factory=list)
    contacts: dict[UUID, date] = field(default_factory=dict)  # the logbook: contact id -> its day
    contact_period: ContactPeriod | None = None  # None: none set, the period follows the phase
    contact_period_from: date | None = None
    # Every event of the case by id (its type), and the correctable entries among them.
    event_types: dict[UUID, str] = field(default_factory=dict)
    entries: dict[UUID, Entry] = field(default_factory=dict)

    def clone(self) -> CaseState:
        """An independent copy, for the repository's cache (much cheaper than deepcopy).

        Contract models are frozen and shared; every container and every mutable record
        is copied. A new mutable field must be copied here too (tests/domain checks it).
        """
        copy = _shallow(self)
        copy.coordinators = dict(self.coordinators)
        if self.consent is not None:
            copy.consent = _shallow(self.consent)
            copy.consent.organisations = dict(self.consent.organisations)
        copy.worksheets = list(self.worksheets)
        copy.goals = {k: _shallow(g) for k, g in self.goals.items()}
        copy.members = dict(self.members)
        if self.sip is not None:
            copy.sip = _shallow(self.sip)
            copy.sip.actions = {k: _shallow(a) for k, a in self.sip.actions.items()}
        copy.early_warnings = {k: _shallow(w) for k, w in self.early_warnings.items()}
        copy.meetings_held = list(self.meetings_held)
        copy.contacts = dict(self.contacts)
        copy.event_types = dict(self.event_types)
        copy.entries = dict(self.entries)  # each Entry is frozen
        return copy


T = TypeVar("T")


def _shallow(record: T) -> T:
    """A new record with the same attribute values (dataclasses.replace without its checks)."""
    copy = object.__new__(type(record))
    copy.__dict__.update(record.__dict__)
    return copy


class Case(BaseAggregate[UUID]):
    """A client's case. Create with :meth:`open`; load from the store; never construct."""

    state: CaseState
    head_hash: str
    _context: cmd.CommandContext | None

    def __deepcopy__(self, memo: dict[int, Any]) -> Case:
        clone = Case.__new__(Case)
        clone.__dict__.update(self.__dict__)
        clone._pending_events = list(self._pending_events)
        clone.state = self.state.clone()
        clone._context = None
        return clone

    # ---------------------------------------------------------------- event application
    @classmethod
    def evolve(cls, case: Case | None, event: CaseEvent) -> Case:
        """Apply one event: the only way the state of a case changes."""
        data = event.data
        if case is None:
            if not isinstance(data, ev.CaseOpened):
                raise TypeError(f"a case stream starts with CaseOpened, not {data.TYPE}")
            case = cls.__new__(cls)
            case.__base_init__(event.originator_id, event.originator_version, event.timestamp)
            case.state = CaseState(
                client=data.client,
                municipality=data.municipality,
                region=data.region,
                opened_on=data.opened_on,
                opened_by=data.opened_by_organisation,
            )
            case._context = None
        else:
            if event.originator_version != case.version + 1:
                raise ValueError(f"event version {event.originator_version} does not follow {case.version}")
            transition = TRANSITIONS.handler(data.TYPE)
            assert transition is not None, "every case event changes the case"
            transition(case.state, data)
            case.version = event.originator_version
            case.modified_on = event.timestamp
        _remember(case.state, event.meta.event_id, data)
        case.head_hash = event.meta.hash
        return case

    # ------------------------------------------------------------------------- triggering
    def _trigger(self, data: CaseEventData) -> None:
        context = self._require_context()
        event = CaseEvent.new(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=context.now,
            data=data,
            event_id=uuid4(),
            actor=context.actor,
            correlation_id=context.correlation_id,
            causation_id=context.causation_id,
            prev_hash=self.head_hash,
        )
        # Pending first: a case that an event began to change is never taken for unchanged
        # (the store caches again a case taken for a command only if nothing is pending).
        self.pending_events.append(event)  # type: ignore[arg-type]
        Case.evolve(self, event)

    def _record(self, data: CaseEventData, on: date, deviations: list[Deviation], reason: str | None) -> None:
        """The fact, preceded by one MethodDeviationRecorded per practice rule it breaks (same
        commit; ADR 0017). Every event is made before any is triggered: a refused one leaves
        the case as it was."""
        recorded = [
            ev.MethodDeviationRecorded(
                rule=d.rule,
                reason=reason or "",  # never empty: a deviation is only found with a reason
                deviates=data.TYPE,
                deviated_on=on,
                absent_coordinators=[
                    NamedCoordinator(organisation_id=c.organisation.id, user_id=c.user_id)
                    for c in d.absent_coordinators
                ],
                follow_up_due_by=d.follow_up_due_by,
            )
            for d in deviations
        ]
        for deviation in recorded:
            self._trigger(deviation)
        self._trigger(data)

    def _require_context(self) -> cmd.CommandContext:
        if self._context is None:
            raise RuntimeError("command methods run inside Case.handling(context)")
        return self._context

    def handling(self, context: cmd.CommandContext) -> Case:
        """Bind the context (actor, clock, request) of the command about to run."""
        self._context = context
        return self

    # --------------------------------------------------------------------------- creation
    @classmethod
    @_command
    def open(cls, context: cmd.CommandContext, command: cmd.OpenCase) -> Case:
        _not_in_future(context, "opened_on", command.opened_on)
        born = birth_date(command.client.personal_identity_number)
        if born > context.today:
            raise errors.DateInFuture(f"client.personal_identity_number: born {born}, after today")
        actor = context.actor
        if actor.principal is ActorPrincipal.CLIENT:
            raise errors.ClientMayNotRecord("a case is opened by an organisation, not by its client")
        data = ev.CaseOpened(
            client=command.client,
            municipality=command.municipality,
            region=command.region,
            opened_on=command.opened_on,
            opened_by_organisation=OrganisationRef(
                id=actor.organisation_id,
                name=actor.organisation_name,
                principal=Principal(actor.principal.value),
            ),
        )
        event = CaseEvent.new(
            originator_id=command.case_id or uuid4(),
            originator_version=cls.INITIAL_VERSION,
            timestamp=context.now,
            data=data,
            event_id=uuid4(),
            actor=actor,
            correlation_id=context.correlation_id,
            causation_id=context.causation_id,
            prev_hash=GENESIS_HASH,
        )
        case = cls.evolve(None, event)
        case.pending_events.append(event)  # type: ignore[arg-type]
        case._context = context
        return case

    # ------------------------------------------------------------------------------ guards
    def ensure_actor_may_write(self, actor: Actor) -> None:
        """Only the opening organisation and the active coordinators' organisations write; and
        the client, in their own case (what they may do: :data:`CLIENT_COMMANDS`)."""
        if actor.principal is ActorPrincipal.CLIENT:
            if actor.user_id != self.state.client.personal_identity_number:
                raise errors.NotTheClient("this case is not yours: a client acts in their own case only")
            return
        allowed = {self.state.opened_by.id} | {c.organisation.id for c in self.state.coordinators.values()}
        if actor.organisation_id not in allowed:
            raise errors.ActorNotInvolved(
                f"organisation {actor.organisation_id} is neither the opening organisation nor"
                " that of an assigned coordinator"
            )

    def _open_case(self) -> None:
        if self.state.closed_on is not None:
            raise errors.CaseClosed(f"the case was closed on {self.state.closed_on}")

    def _consent_in_force(self) -> Consent:
        """The rule 'nothing about the client before consent, nor after it is withdrawn'."""
        self._open_case()
        consent = self.state.consent
        if consent is None:
            raise errors.ConsentRequired("no consent has been given in this case")
        if consent.withdrawn_on is not None:
            raise errors.ConsentWithdrawnRule(f"consent was withdrawn on {consent.withdrawn_on}")
        if not consent.organisations:
            raise errors.ConsentWithdrawnRule("consent was withdrawn for every organisation")
        today = self._require_context().today
        if consent.valid_until is not None and consent.valid_until < today:
            raise errors.ConsentExpired(f"consent was valid until {consent.valid_until}")
        return consent

    def _coordinators_attend(
        self, participants: list[Participant], what: str, reason: str | None
    ) -> list[Deviation]:
        """Every assigned coordinator takes part: a practice rule, so with a reason the absent
        ones are a deviation. A case without any coordinator assigned has nobody to coordinate
        it: that stays a refusal."""
        if not self.state.coordinators:
            raise errors.CoordinatorsMustAttend(f"{what} needs an assigned coordinator")
        missing = self._absent_coordinators(participants)
        if not missing:
            return []
        return [
            _practice(
                reason,
                errors.CoordinatorsMustAttend(
                    f"{what} needs every assigned coordinator; missing: "
                    + ", ".join(_label(c) for c in missing),
                    deviation_allowed=True,
                ),
                Deviation(PracticeRule.COORDINATORS_MUST_ATTEND, tuple(missing)),
            )
        ]

    def _persons(self, participants: list[Participant], field: str = "participants") -> list[Participant]:
        """The participants with every coordinator the case knows named as a person (ADR 0023).

        A coordinator participant without ``organisation_id`` gets the organisation of the
        assigned coordinator with its user id; when two assigned coordinators share the user
        id it is refused, naming ``<field>.<n>.organisation_id`` (``coordinator_ambiguous``),
        never guessed. One named with its organisation stays as named; a user id no assigned
        coordinator has stays without one (the case does not know the person)."""
        by_user: dict[str, list[Coordinator]] = {}
        for coordinator in self.state.coordinators.values():
            by_user.setdefault(coordinator.user_id, []).append(coordinator)
        persons: list[Participant] = []
        for index, participant in enumerate(participants):
            people = by_user.get(participant.user_id or "", [])
            if (
                participant.kind is not MemberKind.COORDINATOR
                or participant.organisation_id is not None
                or not people
            ):
                persons.append(participant)
            elif len(people) == 1:
                persons.append(participant.model_copy(update={"organisation_id": people[0].organisation.id}))
            else:
                raise errors.InvalidCommand(
                    [
                        {
                            "field": f"{field}.{index}.organisation_id",
                            "rule": "coordinator_ambiguous",
                            "message": f"{participant.user_id} is the user id of {len(people)} assigned"
                            " coordinators ("
                            + ", ".join(_label(c) for c in sorted(people, key=coordinator_key))
                            + "): name the organisation_id of the one who took part",
                        }
                    ]
                )
        return persons

    def _absent_coordinators(self, persons: list[Participant]) -> list[Coordinator]:
        """The assigned coordinators (persons) who are not among ``persons`` (participants as
        :meth:`_persons` names them): a namesake at another organisation is someone else."""
        return sorted(
            (
                c
                for c in self.state.coordinators.values()
                if not any(p.names(c.organisation.id, c.user_id) for p in persons)
            ),
            key=coordinator_key,
        )

    def _check_member_covered(self, consent: Consent, member: ev.ResourceGroupMember) -> None:
        if member.kind is MemberKind.RELATIVE and not consent.covers_relatives:
            raise errors.ConsentDoesNotCoverRelatives(
                f"{member.name} is a relative and the consent does not cover relatives"
            )
        organisation = member.organisation
        if organisation and member.kind is not MemberKind.CLIENT and not consent.covers(organisation.id):
            raise errors.ConsentDoesNotCoverOrganisation(
                f"the consent does not cover {organisation.id} ({member.name})"
            )

    def _counts_for_principal(self, consent: Consent, member: ev.ResourceGroupMember) -> bool:
        """A member represents a principal in the group if they act for an organisation the
        consent covers (and, for a coordinator, is still assigned)."""
        if (
            member.kind not in (MemberKind.PROFESSIONAL, MemberKind.COORDINATOR)
            or member.organisation is None
        ):
            return False
        if member.kind is MemberKind.COORDINATOR and not self._is_coordinator(member):
            return False
        return consent.covers(member.organisation.id)

    def _is_coordinator(self, member: ev.ResourceGroupMember) -> bool:
        """Whether a member is an assigned coordinator: the person (organisation, user id)."""
        org, user_id = member.organisation, member.user_id
        return (
            org is not None and user_id is not None and person_key(org.id, user_id) in self.state.coordinators
        )

    # -------------------------------------------------------------------------- coordinators
    @_command
    def assign_coordinator(self, command: cmd.AssignCoordinator) -> None:
        self._open_case()
        consent = self.state.consent
        if consent is not None and consent.withdrawn_on is not None:
            raise errors.ConsentWithdrawnRule(
                f"consent was withdrawn on {consent.withdrawn_on}; new consent comes first"
            )
        _not_in_future(self._require_context(), "assigned_on", command.assigned_on)
        if command.hands_over_from is not None:
            self._may_hand_over(command.coordinator, command.hands_over_from)
        if coordinator_key(command.coordinator) in self.state.coordinators:
            raise errors.CoordinatorAlreadyAssigned(f"{_label(command.coordinator)} is already assigned")
        if command.hands_over_from is None and len(self.state.coordinators) >= 2:
            raise errors.TooManyCoordinators(
                f"{len(self.state.coordinators)} coordinators are assigned: "
                + ", ".join(_label(c) for _, c in sorted(self.state.coordinators.items()))
                + "; unassign one first, or name the one the new coordinator takes over from"
                " (hands_over_from)"
            )
        self._trigger(
            ev.CoordinatorAssigned(
                coordinator=command.coordinator,
                assigned_on=command.assigned_on,
                hands_over_from=command.hands_over_from,
            )
        )

    def _may_hand_over(self, incoming: Coordinator, outgoing: ev.PersonRef) -> None:
        """A handover (ADR 0021): the incoming coordinator is assigned before the outgoing one,
        of the same organisation and assigned, leaves; one handover at a time."""
        if (outgoing.organisation_id, outgoing.user_id) == (incoming.organisation.id, incoming.user_id):
            raise errors.HandoverToSelf(f"{_label(incoming)} cannot take over from themself")
        if self.state.handover is not None:
            leaving, coming = (_label(self.state.coordinators[k]) for k in self.state.handover)
            raise errors.HandoverInProgress(
                f"{coming} is taking over from {leaving}: unassign {leaving} (or {coming}) first"
            )
        if person_key(outgoing.organisation_id, outgoing.user_id) not in self.state.coordinators:
            raise errors.CoordinatorNotAssigned(
                f"{outgoing.user_id} of {outgoing.organisation_id} is not an assigned coordinator"
                " to take over from"
            )
        if incoming.organisation.id != outgoing.organisation_id:
            raise errors.HandoverOutsideOrganisation(
                f"{incoming.user_id} is of {incoming.organisation.id}, the outgoing coordinator of"
                f" {outgoing.organisation_id}"
            )

    @_command
    def unassign_coordinator(
        self, user_id: str, command: cmd.UnassignCoordinator, organisation_id: str | None = None
    ) -> None:
        """Unassign the coordinator (``organisation_id``, ``user_id``). Without the organisation:
        the only assigned coordinator with that user id; when two share it, refused naming both
        (``coordinator_ambiguous``), never a guess (ADR 0023)."""
        self._open_case()
        _not_in_future(self._require_context(), "unassigned_on", command.unassigned_on)
        named = [
            c
            for c in self.state.coordinators.values()
            if c.user_id == user_id and organisation_id in (None, c.organisation.id)
        ]
        if not named:
            at = f" at {organisation_id}" if organisation_id is not None else ""
            raise errors.CoordinatorNotAssigned(f"{user_id}{at} is not an assigned coordinator")
        if len(named) > 1:
            raise errors.CoordinatorAmbiguous(
                f"{len(named)} assigned coordinators have the user id {user_id} ("
                + ", ".join(_label(c) for c in sorted(named, key=coordinator_key))
                + "): name the organisation too"
                " (POST /v1/cases/{case_id}/coordinators/{organisation_id}/{user_id}/unassignment)"
            )
        self._trigger(
            ev.CoordinatorUnassigned(
                organisation_id=named[0].organisation.id,
                user_id=user_id,
                unassigned_on=command.unassigned_on,
                reason=command.reason,
            )
        )

    # ------------------------------------------------------------------------------ consent
    @_command
    def give_consent(self, command: cmd.GiveConsent) -> UUID:
        self._open_case()
        _not_in_future(self._require_context(), "signed_on", command.signed_on)
        consent_id = uuid4()
        self._trigger(
            ev.ConsentGiven(
                consent_id=consent_id,
                organisations=command.organisations,
                covers_relatives=command.covers_relatives,
                signed_on=command.signed_on,
                valid_until=command.valid_until,
            )
        )
        return consent_id

    @_command
    def withdraw_consent(self, command: cmd.WithdrawConsent) -> None:
        # Also on a closed case: the organisations the consent covers go on seeing it after
        # the closing (ADR 0009), so the client must be able to take the consent back.
        _not_in_future(self._require_context(), "withdrawn_on", command.withdrawn_on)
        _client_today(self._require_context(), "withdrawn_on", command.withdrawn_on)
        consent = self.state.consent
        if consent is None or consent.withdrawn_on is not None:
            raise errors.NoConsentToWithdraw("there is no consent in force to withdraw")
        unknown = [org for org in command.organisation_ids if not consent.covers(org)]
        if unknown:
            raise errors.ConsentDoesNotCoverOrganisation(
                f"the consent does not cover {', '.join(unknown)}, so it cannot be withdrawn for them"
            )
        if command.relatives and not consent.covers_relatives:
            raise errors.ConsentDoesNotCoverRelatives("the consent does not cover relatives")
        self._trigger(
            ev.ConsentWithdrawn(
                withdrawn_on=command.withdrawn_on,
                entire=command.entire,
                organisation_ids=command.organisation_ids,
                relatives=command.relatives,
                reason=command.reason,
            )
        )

    @_command
    def confirm_sip(self, command: cmd.ConfirmSip) -> None:
        """The client's own confirmation of the SIP in force (only the client records it)."""
        self._open_case()
        context = self._require_context()
        _not_in_future(context, "confirmed_on", command.confirmed_on)
        _client_today(context, "confirmed_on", command.confirmed_on)
        if context.actor.principal is not ActorPrincipal.CLIENT:
            raise errors.OnlyTheClientConfirms(
                "the client confirms a SIP in their own name, signed in themself"
            )
        sip = self.state.sip
        if sip is None or sip.version != command.sip_version:
            current = "no SIP yet" if sip is None else f"the current SIP is version {sip.version}"
            raise errors.NoSipToConfirm(f"sip_version {command.sip_version}: {current}")
        if sip.confirmed_by_client_on is not None:
            raise errors.SipAlreadyConfirmed(
                f"SIP version {sip.version} was confirmed on {sip.confirmed_by_client_on}"
            )
        self._trigger(ev.SipConfirmedByClient(sip_version=sip.version, confirmed_on=command.confirmed_on))

    # ------------------------------------------------------------------------------ mapping
    @_command
    def complete_worksheet(self, command: cmd.CompleteWorksheet) -> None:
        self._consent_in_force()
        _not_in_future(self._require_context(), "completed_on", command.completed_on)
        reason = command.deviation_reason
        persons = self._persons(command.participants)
        deviations = (
            self._coordinators_attend(persons, f"the {command.worksheet.value} worksheet", reason)
            if command.worksheet in JOINT_WORKSHEETS
            else []
        )
        data = ev.WorksheetCompleted(
            **command.model_dump(exclude={"deviation_reason", "participants"}), participants=persons
        )
        self._record(data, command.completed_on, deviations, reason)

    @_command
    def summarise_mapping(self, command: cmd.SummariseMapping) -> None:
        self._consent_in_force()
        context = self._require_context()
        _not_in_future(context, "summarised_on", command.summarised_on)
        reason = command.deviation_reason
        persons = self._persons(command.participants)
        deviations = self._coordinators_attend(persons, "the mapping summary", reason)
        data = ev.MappingSummarised(
            **command.model_dump(exclude={"deviation_reason", "participants"}), participants=persons
        )
        self._record(data, command.summarised_on, deviations, reason)
        if self.state.phase is Phase.MAPPING:
            self._change_phase(Phase.PLANNING, command.summarised_on, "mapping_summarised")

    def _change_phase(self, to_phase: Phase, on: date, reason: str) -> None:
        self._trigger(
            ev.PhaseChanged(from_phase=self.state.phase, to_phase=to_phase, changed_on=on, reason=reason)
        )

    @_command
    def change_phase(self, command: cmd.ChangePhase) -> None:
        self._consent_in_force()
        _not_in_future(self._require_context(), "changed_on", command.changed_on)
        if (self.state.phase, command.to_phase) not in MANUAL_PHASE_CHANGES:
            raise errors.PhaseChangeNotAllowed(
                f"{self.state.phase.value} → {command.to_phase.value} is not a manual change;"
                " planning follows the mapping summary, working the first SIP, closed the closing"
            )
        self._change_phase(command.to_phase, command.changed_on, command.reason)

    # -------------------------------------------------------------------------------- goals
    @_command
    def set_goal(self, command: cmd.SetGoal) -> UUID:
        self._consent_in_force()
        _not_in_future(self._require_context(), "set_on", command.set_on)
        reason = command.deviation_reason
        deviations: list[Deviation] = []
        if self.state.mapping_summarised_on is None:
            # Practice: urgent goals may come before the mapping is done (ADR 0017).
            error = errors.MappingNotSummarised(
                "goals are set in planning, after the mapping summary", deviation_allowed=True
            )
            deviations.append(_practice(reason, error, Deviation(PracticeRule.MAPPING_NOT_SUMMARISED)))
        goal_id = command.goal_id or uuid4()
        if goal_id in self.state.goals:
            raise errors.GoalAlreadySet(f"goal {goal_id} exists")
        if command.kind is GoalKind.SUB_GOAL:
            parent = self.state.goals.get(command.parent_goal_id) if command.parent_goal_id else None
            if parent is None or parent.kind is not GoalKind.LONG_TERM:
                raise errors.GoalParentInvalid("a sub-goal names an existing long-term goal as parent")
        data = ev.GoalSet(**{**command.model_dump(exclude={"deviation_reason"}), "goal_id": goal_id})
        self._record(data, command.set_on, deviations, reason)
        return goal_id

    @_command
    def change_goal_status(self, goal_id: UUID, command: cmd.ChangeGoalStatus) -> None:
        self._consent_in_force()
        _not_in_future(self._require_context(), "changed_on", command.changed_on)
        if goal_id not in self.state.goals:
            raise errors.GoalNotFound(f"goal {goal_id} is not in this case")
        self._trigger(ev.GoalStatusChanged(goal_id=goal_id, **command.model_dump()))

    # ------------------------------------------------------------------------ resource group
    @_command
    def add_member(self, command: cmd.AddMember) -> UUID:
        consent = self._consent_in_force()
        _not_in_future(self._require_context(), "added_on", command.added_on)
        fields = command.model_dump(exclude={"added_on"})
        fields["member_id"] = command.member_id or uuid4()
        member = ev.ResourceGroupMember.model_validate(fields)
        members = self.state.members.values()
        if member.member_id in self.state.members:
            raise errors.MemberAlreadyInGroup(f"member {member.member_id} exists")
        if member.kind is MemberKind.CLIENT and any(m.kind is MemberKind.CLIENT for m in members):
            raise errors.MemberAlreadyInGroup("the client is already a member")
        if member.user_id is not None and any(_same_person(m, member) for m in members):
            org = member.organisation.id if member.organisation else "no organisation"
            raise errors.MemberAlreadyInGroup(f"{member.user_id} at {org} is already a member")
        if member.kind is MemberKind.COORDINATOR and not self._is_coordinator(member):
            org = member.organisation.id if member.organisation else "no organisation"
            raise errors.CoordinatorNotAssigned(f"{member.user_id} at {org} is not an assigned coordinator")
        self._check_member_covered(consent, member)
        self._trigger(ev.ResourceGroupMemberAdded(member=member, added_on=command.added_on))
        return member.member_id

    @_command
    def remove_member(self, member_id: UUID, command: cmd.RemoveMember) -> None:
        self._consent_in_force()
        _not_in_future(self._require_context(), "removed_on", command.removed_on)
        if member_id not in self.state.members:
            raise errors.MemberNotFound(f"member {member_id} is not in the resource group")
        self._trigger(ev.ResourceGroupMemberRemoved(member_id=member_id, **command.model_dump()))

    @_command
    def hold_resource_group_meeting(self, command: cmd.HoldResourceGroupMeeting) -> UUID:
        self._consent_in_force()
        _not_in_future(self._require_context(), "held_on", command.held_on)
        if not self.state.coordinators:  # nobody coordinates the case: not a deviation, a refusal
            raise errors.MeetingRequiresCoordinators(
                "a resource group meeting needs every assigned coordinator;"
                " missing: no coordinator is assigned"
            )
        persons = self._persons(command.participants)
        missing = self._absent_coordinators(persons)
        deviations: list[Deviation] = []
        if missing:
            error = errors.MeetingRequiresCoordinators(
                "a resource group meeting needs every assigned coordinator; missing: "
                + ", ".join(_label(c) for c in missing),
                deviation_allowed=True,
            )
            deviation = Deviation(PracticeRule.MEETING_REQUIRES_COORDINATORS, tuple(missing))
            deviations.append(_practice(command.deviation_reason, error, deviation))
        meeting_id = command.meeting_id or uuid4()
        data = ev.ResourceGroupMeetingHeld(
            meeting_id=meeting_id,
            held_on=command.held_on,
            participants=persons,
            notes=command.notes,
        )
        self._record(data, command.held_on, deviations, command.deviation_reason)
        return meeting_id

    # ------------------------------------------------------------------------ early warning
    @_command
    def update_early_warning_plan(self, command: cmd.UpdateEarlyWarningPlan) -> int:
        self._consent_in_force()
        _not_in_future(self._require_context(), "updated_on", command.updated_on)
        previous = self.state.early_warning_plan
        version = previous.plan_version + 1 if previous else 1
        self._trigger(ev.EarlyWarningPlanUpdated(plan_version=version, **command.model_dump()))
        return version

    @_command
    def trigger_early_warning(self, command: cmd.TriggerEarlyWarning) -> UUID:
        self._consent_in_force()
        _not_in_future(self._require_context(), "observed_on", command.observed_on)
        plan = self.state.early_warning_plan
        deviations: list[Deviation] = []
        if plan is None:
            # Practice: a crisis does not wait for the plan. Without one the sign is described
            # (other_sign) and the warning records plan version 0 (ADR 0017).
            error = errors.EarlyWarningRequiresPlan(
                "the case has no early warning plan", deviation_allowed=True
            )
            deviation = Deviation(PracticeRule.EARLY_WARNING_REQUIRES_PLAN)
            deviations.append(_practice(command.deviation_reason, error, deviation))
        if not command.sign_ids and command.other_sign is None:
            raise errors.EarlyWarningUnknownSign("name a sign from the plan or describe another sign")
        known = {sign.sign_id for sign in plan.signs} if plan else set()
        unknown = sorted(set(command.sign_ids) - known)
        if unknown:
            where = f"plan version {plan.plan_version}" if plan else "any plan (the case has none)"
            raise errors.EarlyWarningUnknownSign(
                f"not in {where}: {', '.join(unknown)}; describe a sign outside the plan as other_sign"
            )
        warning_id = command.warning_id or uuid4()
        if warning_id in self.state.early_warnings:
            raise errors.EarlyWarningAlreadyTriggered(f"early warning {warning_id} exists")
        data = ev.EarlyWarningTriggered(
            warning_id=warning_id,
            plan_version=plan.plan_version if plan else 0,
            sign_ids=command.sign_ids,
            other_sign=command.other_sign,
            observed_on=command.observed_on,
            description=command.description,
        )
        self._record(data, command.observed_on, deviations, command.deviation_reason)
        return warning_id

    @_command
    def resolve_early_warning(self, warning_id: UUID, command: cmd.ResolveEarlyWarning) -> None:
        self._consent_in_force()
        _not_in_future(self._require_context(), "resolved_on", command.resolved_on)
        warning = self.state.early_warnings.get(warning_id)
        if warning is None or warning.resolved_on is not None:
            raise errors.EarlyWarningNotOpen(f"early warning {warning_id} is not open")
        _not_before(command.resolved_on, "resolved_on", warning.observed_on, "the warning was observed")
        self._trigger(ev.EarlyWarningResolved(warning_id=warning_id, **command.model_dump()))

    # ---------------------------------------------------------------------------------- SIP
    @_command
    def decide_sip(self, command: cmd.DecideSip) -> int:
        consent = self._consent_in_force()
        context = self._require_context()
        _not_in_future(context, "decided_on", command.decided_on)
        state = self.state
        if command.initial and state.sip is not None:
            raise errors.InitialSipNotFirst(f"the case has SIP version {state.sip.version} already")
        if command.initial and state.mapping_summarised_on is not None:
            raise errors.InitialSipAfterMapping(
                f"the mapping was summarised on {state.mapping_summarised_on}: this SIP is not an initial one"
            )
        reason = command.deviation_reason
        deviations: list[Deviation] = []
        if state.mapping_summarised_on is None and not command.initial:
            error = errors.SipRequiresMappingSummary(
                "the mapping has not been summarised (a first SIP before it is an initial SIP: initial true)",
                deviation_allowed=True,
            )
            deviations.append(_practice(reason, error, Deviation(PracticeRule.SIP_REQUIRES_MAPPING_SUMMARY)))
        if not command.goal_ids and not command.initial:
            raise errors.SipRequiresGoal("goal_ids is empty (only an initial SIP may set no goals yet)")
        referenced = [*command.goal_ids, *(a.goal_id for a in command.actions if a.goal_id is not None)]
        unknown_goals = sorted({str(g) for g in referenced if g not in state.goals})
        if unknown_goals:
            raise errors.SipRequiresGoal(f"no such goal: {', '.join(unknown_goals)}")
        members = list(state.members.values())
        client = next((m for m in members if m.kind is MemberKind.CLIENT), None)
        if client is None:
            raise errors.SipRequiresClientInGroup("the client is not in the resource group")
        # Organisations as the case knows them (the coordinators', the consent's): a caller's
        # name or principal for a known id is not taken on trust.
        known = {c.organisation.id: c.organisation for c in state.coordinators.values()}
        known.update(consent.organisations)
        actions = []
        for action in command.actions:
            if action.responsible_party is not None:
                party = action.responsible_party.organisation
                covered = consent.organisations.get(party.id)
                if covered is None or covered.principal is not party.principal:
                    raise errors.SipPartyNotCovered(
                        f"the consent does not cover {party.id} ({party.name}, {party.principal.value}),"
                        f" responsible for '{action.what[:40]}'"
                    )
                party_as_known = action.responsible_party.model_copy(update={"organisation": covered})
                actions.append(action.model_copy(update={"responsible_party": party_as_known}))
                continue
            member_id = action.responsible_member_id
            responsible = state.members.get(member_id) if member_id is not None else None
            if responsible is None:
                raise errors.SipResponsibleNotMember(
                    f"{action.responsible_member_id} (responsible for '{action.what[:40]}')"
                    " is not a current member"
                )
            self._check_member_covered(consent, responsible)
            actions.append(action)
        principal = command.overall_responsibility
        if principal.principal not in (Principal.REGION, Principal.MUNICIPALITY):
            raise errors.SipResponsibilityNotAParty(
                f"overall_responsibility {principal.id} is a {principal.principal.value} organisation;"
                " the overall responsibility is a principal's: a region's or a municipality's"
            )
        responsible_principal = known.get(principal.id)
        if responsible_principal is None or responsible_principal.principal is not principal.principal:
            raise errors.SipResponsibilityNotAParty(
                f"overall_responsibility {principal.id} ({principal.principal.value}) is not an organisation"
                " that coordinates the case or that the consent covers, as such"
            )
        principals = {m.principal for m in members if self._counts_for_principal(consent, m)}
        if Principal.REGION not in principals:
            raise errors.SipRequiresRegionMember("no resource group member is from the region")
        if Principal.MUNICIPALITY not in principals:
            raise errors.SipRequiresMunicipalityMember("no resource group member is from the municipality")
        if not any(p.kind is MemberKind.CLIENT for p in command.participants):
            raise errors.SipRequiresClientParticipation("the client is not among the participants")
        if not command.client_agreed:
            raise errors.SipRequiresClientAgreement("the client has not agreed to the plan")
        latest = add_months(command.decided_on, context.policy.follow_up_max_months)
        follow_up_rule = (
            f"next_follow_up_on must be after {command.decided_on} and no later than {latest}"
            f" ({context.policy.follow_up_max_months} months)"
        )
        if command.next_follow_up_on <= command.decided_on:  # a follow-up before the plan: never
            raise errors.SipFollowUpInvalid(follow_up_rule)
        if command.next_follow_up_on > latest:  # a later follow-up: practice, with a reason
            late = errors.SipFollowUpInvalid(follow_up_rule, deviation_allowed=True)
            deviation = Deviation(PracticeRule.SIP_FOLLOW_UP_INVALID, follow_up_due_by=latest)
            deviations.append(_practice(reason, late, deviation))
        version = state.sip.version + 1 if state.sip else 1
        sip_actions = [
            ev.SipAction(**{**a.model_dump(), "action_id": a.action_id or uuid4()}) for a in actions
        ]
        data = ev.SipDecided(
            sip_version=version,
            decided_on=command.decided_on,
            initial=command.initial,
            overall_responsibility=responsible_principal,
            goal_ids=command.goal_ids,
            actions=sip_actions,
            next_follow_up_on=command.next_follow_up_on,
            participants=self._persons(command.participants),
            client_agreed=command.client_agreed,
        )
        self._record(data, command.decided_on, deviations, reason)
        self._trigger(
            ev.ConsentRenewed(
                consent_id=consent.consent_id,
                renewed_on=command.decided_on,
                sip_version=version,
                valid_until=_renewed_validity(consent, command.decided_on),
            )
        )
        # An initial SIP comes before the mapping, which goes on: the working phase starts with
        # the first SIP after it.
        if state.phase is not Phase.WORKING and not command.initial:
            self._change_phase(Phase.WORKING, command.decided_on, "sip_decided")
        return version

    @_command
    def complete_action(self, action_id: UUID, command: cmd.CompleteAction) -> None:
        self._consent_in_force()
        _not_in_future(self._require_context(), "completed_on", command.completed_on)
        sip = self.state.sip
        action = sip.actions.get(action_id) if sip else None
        if sip is None or action is None:
            raise errors.ActionNotFound(f"action {action_id} is not in the current SIP")
        _not_before(command.completed_on, "completed_on", sip.decided_on, f"SIP {sip.version} was decided")
        if action.completed_on is not None:
            raise errors.ActionAlreadyCompleted(f"action {action_id} was completed on {action.completed_on}")
        self._trigger(
            ev.ActionCompleted(sip_version=sip.version, action_id=action_id, **command.model_dump())
        )

    # ------------------------------------------------------------------- the contact logbook
    @_command
    def record_client_contact(self, command: cmd.RecordClientContact) -> UUID:
        """A contact for the logbook (*Loggboken*, ADR 0019). No consent is needed: the entry
        documents the coordinators' own work with the client and shares nothing; a withdrawn
        consent must not stop them from documenting it. A closed case accepts nothing."""
        self._open_case()
        context = self._require_context()
        if command.occurred_at > context.now + CONTACT_CLOCK_SKEW:
            raise errors.DateInFuture(f"occurred_at {command.occurred_at.isoformat()} is after now")
        day = command.occurred_at.astimezone(STOCKHOLM).date()
        _not_before(day, "occurred_at", self.state.opened_on, "the case was opened")
        contact_id = command.contact_id or uuid4()
        if contact_id in self.state.contacts:
            raise errors.ContactAlreadyRecorded(
                f"contact {contact_id} was recorded for {self.state.contacts[contact_id]}"
            )
        staff = command.staff or [
            cmd.StaffRef(organisation_id=context.actor.organisation_id, user_id=context.actor.user_id)
        ]
        data = ev.ClientContactRecorded(
            contact_id=contact_id,
            mode=command.mode,
            occurred_at=command.occurred_at,
            duration_minutes=command.duration_minutes,
            staff=[self._staff_person(s.organisation_id, s.user_id) for s in staff],
            others=command.others,
            note=command.note,
        )
        self._trigger(data)
        return contact_id

    @_command
    def set_contact_period(self, command: cmd.SetContactPeriod) -> None:
        """The coordinators' judgement of the client's period (*bedömningsfas* …, 000_*.txt),
        which sets the contact cadence. Like the logbook, it needs no consent (ADR 0019)."""
        self._open_case()
        context = self._require_context()
        _not_in_future(context, "applies_from", command.applies_from)
        _not_before(command.applies_from, "applies_from", self.state.opened_on, "the case was opened")
        since = self.state.contact_period_from
        if since is not None:
            _not_before(command.applies_from, "applies_from", since, "the current period was set to apply")
        if command.period is self.state.contact_period:
            raise errors.ContactPeriodUnchanged(f"the contact period is {command.period.value} since {since}")
        actor = context.actor
        self._trigger(
            ev.ContactPeriodSet(
                period=command.period,
                applies_from=command.applies_from,
                set_by=self._staff_person(actor.organisation_id, actor.user_id),
                reason=command.reason,
            )
        )

    def _staff_person(self, organisation_id: str, user_id: str) -> Person:
        """A member of staff as a person the case knows: an assigned coordinator, a member of
        the resource group with a login, or staff of an organisation that writes the case
        (the opener's, a coordinator's). A user id means a person only at their organisation."""
        state = self.state
        coordinator = state.coordinators.get(person_key(organisation_id, user_id))
        if coordinator is not None:
            return Person(organisation=coordinator.organisation, user_id=user_id, name=coordinator.name)
        for member in state.members.values():
            org = member.organisation
            if member.user_id == user_id and org is not None and org.id == organisation_id:
                return Person(organisation=org, user_id=user_id, name=member.name)
        writers = {state.opened_by.id: state.opened_by} | {
            c.organisation.id: c.organisation for c in state.coordinators.values()
        }
        if organisation_id in writers:
            return Person(organisation=writers[organisation_id], user_id=user_id)
        raise errors.ContactStaffNotInvolved(
            f"{user_id} at {organisation_id} is neither a coordinator nor a member of the case, nor"
            " staff of an organisation that writes it"
        )

    # ------------------------------------------------------------------------- corrections
    def _entry(self, event_id: UUID) -> Entry:
        """The correctable entry whose own event is ``event_id``, still standing."""
        entry = self.state.entries.get(event_id)
        if entry is None:
            kind = self.state.event_types.get(event_id)
            if kind is None:
                raise errors.EntryNotFound(f"corrects_event_id {event_id} is no event of this case")
            raise errors.EntryNotCorrectable(
                f"corrects_event_id {event_id} is a {kind}: only a worksheet, a goal, a resource group"
                " meeting held or a SIP action's completion is corrected or retracted (a correction"
                " names the entry's own event, also when it corrects it again)"
            )
        if entry.retracted_on is not None:
            raise errors.EntryRetracted(f"corrects_event_id {event_id} was retracted on {entry.retracted_on}")
        return entry

    @_command
    def correct_entry(self, command: cmd.CorrectEntry) -> None:
        """A new value for an earlier entry; the entry's own event stays as stored (ADR 0018)."""
        self._consent_in_force()  # a correction records something about the client
        context = self._require_context()
        _not_in_future(context, "corrected_on", command.corrected_on)
        _not_before(command.corrected_on, "corrected_on", self.state.opened_on, "the case was opened")
        entry = self._entry(command.corrects_event_id)
        value = command.value
        if value.kind != entry.kind:
            raise errors.CorrectionKindMismatch(
                f"value.kind {value.kind}: corrects_event_id {command.corrects_event_id} is a {entry.kind}"
            )
        # The value is checked as the original command checked the entry.
        match value:
            case ev.CorrectedWorksheet():
                assert entry.record is not None
                on, field_name = value.completed_on, "value.completed_on"
                _sheet_matches(entry.record.worksheet, value)
            case ev.CorrectedGoal():
                on, field_name = value.set_on, "value.set_on"
            case ev.CorrectedMeetingHeld():
                on, field_name = value.held_on, "value.held_on"
            case ev.CorrectedActionCompletion():
                on, field_name = value.completed_on, "value.completed_on"
        _not_in_future(context, field_name, on)
        if isinstance(value, ev.CorrectedWorksheet | ev.CorrectedMeetingHeld):
            value = value.model_copy(
                update={"participants": self._persons(value.participants, "value.participants")}
            )
        what = "the case was opened" if entry.kind != "sip_action" else "its SIP was decided"
        _not_before(on, field_name, entry.earliest, what)
        self._trigger(
            ev.EntryCorrected(
                corrects_event_id=command.corrects_event_id,
                corrects_type=entry.type,
                reason=command.reason,
                corrected_on=command.corrected_on,
                value=value,
            )
        )

    @_command
    def retract_entry(self, command: cmd.RetractEntry) -> None:
        """An earlier entry withdrawn as never valid; its own event stays as stored (ADR 0018).
        Retracting records nothing new about the client: it needs an open case, not consent."""
        self._open_case()
        context = self._require_context()
        _not_in_future(context, "retracted_on", command.retracted_on)
        _not_before(command.retracted_on, "retracted_on", self.state.opened_on, "the case was opened")
        entry = self._entry(command.corrects_event_id)
        self._trigger(
            ev.EntryRetracted(
                corrects_event_id=command.corrects_event_id,
                corrects_type=entry.type,
                reason=command.reason,
                retracted_on=command.retracted_on,
            )
        )

    # ------------------------------------------------------------------------------ closing
    @_command
    def close(self, command: cmd.CloseCase) -> None:
        self._open_case()
        _not_in_future(self._require_context(), "closed_on", command.closed_on)
        _not_before(command.closed_on, "closed_on", self.state.opened_on, "the case was opened")
        self._trigger(ev.CaseClosed(**command.model_dump()))
        self._change_phase(Phase.CLOSED, command.closed_on, f"case_closed:{command.reason.value}")


# ------------------------------------------------------------------------------- helpers
def _same_person(a: ev.ResourceGroupMember, b: ev.ResourceGroupMember) -> bool:
    """Whether two members with a login are one person: the same user id at the same
    organisation (a user id alone names nobody)."""
    org_a, org_b = (
        (a.organisation.id if a.organisation else None),
        (b.organisation.id if b.organisation else None),
    )
    return a.user_id is not None and (org_a, a.user_id) == (org_b, b.user_id)


def _practice(reason: str | None, error: errors.CaseRuleViolation, deviation: Deviation) -> Deviation:
    """A practice rule broken: a deviation to record when the command gives a reason, else the
    refusal (whose detail says that a reason may be given)."""
    if reason is None:
        raise error
    return deviation


def _sheet_matches(sheet: Worksheet, value: ev.CorrectedWorksheet) -> None:
    """A corrected worksheet's data, checked against its sheet as the original's was."""
    try:
        ev.WorksheetCompleted(worksheet=sheet, **value.model_dump(exclude={"kind"}))
    except ValidationError as error:
        raise errors.InvalidCommand(
            [
                {
                    "field": ".".join(("value", *(str(part) for part in e["loc"]))),
                    "rule": e["type"],
                    "message": f"{e['msg']} (a {sheet.value} worksheet)",
                }
                for e in error.errors()
            ]
        ) from None


def _not_in_future(context: cmd.CommandContext, field_name: str, value: date) -> None:
    if value > context.today:
        raise errors.DateInFuture(f"{field_name} {value} is after today ({context.today})")


def _client_today(context: cmd.CommandContext, field_name: str, value: date) -> None:
    """A staff member records what happened earlier; a client records what they do now."""
    if context.actor.principal is ActorPrincipal.CLIENT and value != context.today:
        raise errors.ClientDatesToday(f"{field_name} {value} is not today ({context.today})")


def _not_before(value: date, field_name: str, earliest: date, what: str) -> None:
    if value < earliest:
        raise errors.DateOutOfOrder(f"{field_name} {value} is before {earliest}, when {what}")


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (the month's last day where that day does not exist)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for last_day in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last_day))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _renewed_validity(consent: Consent, renewed_on: date) -> date | None:
    """A renewal keeps the consent's original period of validity, counted anew from the SIP."""
    if consent.valid_until is None or consent.period is None:
        return None
    return max(consent.valid_until, renewed_on + consent.period)


# --------------------------------------------------------------------- state transitions
def _coordinator_assigned(s: CaseState, e: ev.CoordinatorAssigned) -> None:
    s.coordinators[coordinator_key(e.coordinator)] = e.coordinator
    if e.hands_over_from is not None:
        outgoing = person_key(e.hands_over_from.organisation_id, e.hands_over_from.user_id)
        s.handover = (outgoing, coordinator_key(e.coordinator))


def _coordinator_unassigned(s: CaseState, e: ev.CoordinatorUnassigned) -> None:
    # A v2 event names the person; an upcast v1 one (no organisation) the only coordinator
    # the case then held with that user id (ADR 0023).
    for key in [k for k, c in s.coordinators.items() if e.names(c.organisation.id, c.user_id)]:
        del s.coordinators[key]
        if s.handover is not None and key in s.handover:
            s.handover = None  # completed (the outgoing left) or called off (the incoming did)


def _consent_given(s: CaseState, e: ev.ConsentGiven) -> None:
    s.consent = Consent(
        consent_id=e.consent_id,
        organisations={org.id: org for org in e.organisations},
        covers_relatives=e.covers_relatives,
        signed_on=e.signed_on,
        valid_until=e.valid_until,
        original_valid_until=e.valid_until,
    )


def _consent_withdrawn(s: CaseState, e: ev.ConsentWithdrawn) -> None:
    assert s.consent is not None
    if e.entire:
        s.consent.withdrawn_on = e.withdrawn_on
        return
    for org in e.organisation_ids:
        s.consent.organisations.pop(org, None)
    if e.relatives:
        s.consent.covers_relatives = False


def _consent_renewed(s: CaseState, e: ev.ConsentRenewed) -> None:
    assert s.consent is not None
    s.consent.renewed_on = e.renewed_on
    s.consent.valid_until = e.valid_until


def _worksheet_completed(s: CaseState, e: ev.WorksheetCompleted) -> None:
    s.worksheets.append(WorksheetRecord(e.worksheet, e.completed_on, list(e.participants)))


def _mapping_summarised(s: CaseState, e: ev.MappingSummarised) -> None:
    s.mapping_summarised_on = e.summarised_on


def _phase_changed(s: CaseState, e: ev.PhaseChanged) -> None:
    s.phase = e.to_phase


def _goal_set(s: CaseState, e: ev.GoalSet) -> None:
    s.goals[e.goal_id] = Goal(e.goal_id, e.kind, e.description, e.parent_goal_id)


def _goal_status_changed(s: CaseState, e: ev.GoalStatusChanged) -> None:
    s.goals[e.goal_id].status = e.status


def _member_added(s: CaseState, e: ev.ResourceGroupMemberAdded) -> None:
    s.members[e.member.member_id] = e.member


def _member_removed(s: CaseState, e: ev.ResourceGroupMemberRemoved) -> None:
    s.members.pop(e.member_id, None)


def _plan_updated(s: CaseState, e: ev.EarlyWarningPlanUpdated) -> None:
    s.early_warning_plan = e


def _sip_decided(s: CaseState, e: ev.SipDecided) -> None:
    s.sip = Sip(
        version=e.sip_version,
        decided_on=e.decided_on,
        goal_ids=list(e.goal_ids),
        actions={a.action_id: SipAction(a) for a in e.actions},
        next_follow_up_on=e.next_follow_up_on,
    )


def _sip_confirmed(s: CaseState, e: ev.SipConfirmedByClient) -> None:
    if s.sip is not None and s.sip.version == e.sip_version:
        s.sip.confirmed_by_client_on = e.confirmed_on


def _meeting_held(s: CaseState, e: ev.ResourceGroupMeetingHeld) -> None:
    s.meetings_held.append(e.held_on)


def _action_completed(s: CaseState, e: ev.ActionCompleted) -> None:
    if s.sip is not None and s.sip.version == e.sip_version and e.action_id in s.sip.actions:
        s.sip.actions[e.action_id].completed_on = e.completed_on


def _warning_triggered(s: CaseState, e: ev.EarlyWarningTriggered) -> None:
    s.early_warnings[e.warning_id] = EarlyWarning(e.warning_id, e.plan_version, e.observed_on)


def _warning_resolved(s: CaseState, e: ev.EarlyWarningResolved) -> None:
    s.early_warnings[e.warning_id].resolved_on = e.resolved_on


def _case_closed(s: CaseState, e: ev.CaseClosed) -> None:
    s.closed_on = e.closed_on


def _deviation_recorded(s: CaseState, e: ev.MethodDeviationRecorded) -> None:
    """Nothing to change: the deviation explains the fact that follows it, which changes the case."""


def _client_contact_recorded(s: CaseState, e: ev.ClientContactRecorded) -> None:
    s.contacts[e.contact_id] = e.occurred_at.astimezone(STOCKHOLM).date()


def _contact_period_set(s: CaseState, e: ev.ContactPeriodSet) -> None:
    s.contact_period, s.contact_period_from = e.period, e.applies_from


def _remember(s: CaseState, event_id: UUID, e: CaseEventData) -> None:
    """Every event's id and type; a correctable entry as the state now holds it (ADR 0018)."""
    s.event_types[event_id] = e.TYPE
    kind = ev.CORRECTABLE_KINDS.get(e.TYPE.rsplit(".", 1)[0])
    if kind is None:
        return
    # Each entry built once with what identifies it (replace() would build it twice, checked).
    match e:
        case ev.WorksheetCompleted():
            entry = Entry(kind=kind, type=e.TYPE, earliest=s.opened_on, record=s.worksheets[-1])
        case ev.GoalSet():
            entry = Entry(kind=kind, type=e.TYPE, earliest=s.opened_on, goal_id=e.goal_id)
        case ev.ResourceGroupMeetingHeld():
            entry = Entry(kind=kind, type=e.TYPE, earliest=s.opened_on, held_on=e.held_on)
        case ev.ActionCompleted():
            decided_on = s.sip.decided_on if s.sip is not None and s.sip.version == e.sip_version else None
            entry = Entry(
                kind=kind,
                type=e.TYPE,
                earliest=decided_on or s.opened_on,
                sip_version=e.sip_version,
                action_id=e.action_id,
            )
        case _:
            entry = Entry(kind=kind, type=e.TYPE, earliest=s.opened_on)
    s.entries[event_id] = entry


def _entry_action(s: CaseState, entry: Entry) -> SipAction | None:
    """The completed action of the SIP in force (an action of an earlier SIP changes nothing)."""
    if s.sip is None or s.sip.version != entry.sip_version or entry.action_id is None:
        return None
    return s.sip.actions.get(entry.action_id)


def _entry_corrected(s: CaseState, e: ev.EntryCorrected) -> None:
    entry = s.entries[e.corrects_event_id]
    value = e.value
    match value:
        case ev.CorrectedWorksheet():
            assert entry.record is not None
            record = WorksheetRecord(entry.record.worksheet, value.completed_on, list(value.participants))
            if entry.record in s.worksheets:  # equal records are interchangeable
                s.worksheets[s.worksheets.index(entry.record)] = record
            entry = dataclasses.replace(entry, record=record)
        case ev.CorrectedGoal():
            goal = s.goals.get(entry.goal_id) if entry.goal_id is not None else None
            if goal is not None:
                goal.description = value.description
        case ev.CorrectedMeetingHeld():
            if entry.held_on in s.meetings_held:
                s.meetings_held[s.meetings_held.index(entry.held_on)] = value.held_on
            entry = dataclasses.replace(entry, held_on=value.held_on)
        case ev.CorrectedActionCompletion():
            action = _entry_action(s, entry)
            if action is not None and action.completed_on is not None:
                action.completed_on = value.completed_on
    s.entries[e.corrects_event_id] = dataclasses.replace(entry, corrections=entry.corrections + 1)


def _entry_retracted(s: CaseState, e: ev.EntryRetracted) -> None:
    """A retracted entry counts no more: a worksheet or meeting is gone from the state, a goal
    may no longer be named (by a new SIP, a status change or a sub-goal), an action is open
    again. A SIP already decided with a retracted goal keeps it until the next SIP."""
    entry = s.entries[e.corrects_event_id]
    if entry.record is not None and entry.record in s.worksheets:
        s.worksheets.remove(entry.record)
    if entry.goal_id is not None:
        s.goals.pop(entry.goal_id, None)
    if entry.held_on is not None and entry.held_on in s.meetings_held:
        s.meetings_held.remove(entry.held_on)
    action = _entry_action(s, entry)
    if action is not None:
        action.completed_on = None
    s.entries[e.corrects_event_id] = dataclasses.replace(entry, retracted_on=e.retracted_on)


def _opened_again(s: CaseState, e: ev.CaseOpened) -> None:
    raise TypeError("a case stream has one CaseOpened, its first event")


# Each transition under the event type its signature takes.
TRANSITIONS: EventHandlers[Callable[[CaseState, Any], None]] = EventHandlers.of_signatures(
    "case: the aggregate",
    ev.CASE_EVENTS,
    [
        _opened_again,  # Case.evolve creates the case from it
        _coordinator_assigned,
        _coordinator_unassigned,
        _consent_given,
        _consent_withdrawn,
        _consent_renewed,
        _worksheet_completed,
        _mapping_summarised,
        _phase_changed,
        _goal_set,
        _goal_status_changed,
        _member_added,
        _member_removed,
        _plan_updated,
        _sip_decided,
        _sip_confirmed,
        _meeting_held,
        _action_completed,
        _warning_triggered,
        _warning_resolved,
        _deviation_recorded,
        _client_contact_recorded,
        _contact_period_set,
        _entry_corrected,
        _entry_retracted,
        _case_closed,
    ],
)
