"""Drive a case through the method with the real commands, as a coordinator would.

``CaseScenario(service, clock).to_first_sip()`` opens a case and takes it to its first
SIP: open, assign two coordinators, consent, the interview worksheet, the mapping
summary, a goal, the resource group and the SIP (14 events in 11 commands, two of them
storing several events in one commit). Each step moves the clock a day and dates the
command with the clock's (Stockholm) date, so every command is valid when it runs.

The command builders are plain functions too, for tests that run a command themselves
(``service.execute(request, case_id, lambda case: case.complete_worksheet(command))``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

from services.case.application.service import CaseService, CommandResult, Request
from services.case.domain import commands as cmd
from services.case.domain.case import Case
from services.case.domain.events import Actor
from tests.support.actors import (
    ACTORS,
    NAMES,
    STOCKHOLM_MUNICIPALITY,
    STOCKHOLM_REGION,
    Actors,
    coordinator_for,
    organisation_of,
)
from tests.support.clock import FixedClock
from vss_contracts import case_events as ev
from vss_contracts.types import ClientRef, GoalKind, MemberKind, Participant, Worksheet

# The Swedish Tax Agency's well-known test person.
CLIENT = ClientRef(personal_identity_number="19121212-1212", name="Tolvan Tolvansson")

# The stored event types of CaseScenario.to_first_sip(), in order.
FIRST_SIP_EVENT_TYPES: tuple[str, ...] = (
    ev.CaseOpened.TYPE,
    ev.CoordinatorAssigned.TYPE,
    ev.CoordinatorAssigned.TYPE,
    ev.ConsentGiven.TYPE,
    ev.WorksheetCompleted.TYPE,
    ev.MappingSummarised.TYPE,  # + the phase change, in one commit
    ev.PhaseChanged.TYPE,
    ev.GoalSet.TYPE,
    ev.ResourceGroupMemberAdded.TYPE,  # the client
    ev.ResourceGroupMemberAdded.TYPE,  # the region's coordinator
    ev.ResourceGroupMemberAdded.TYPE,  # the municipality's coordinator
    ev.SipDecided.TYPE,  # + the renewed consent and the phase change, in one commit
    ev.ConsentRenewed.TYPE,
    ev.PhaseChanged.TYPE,
)

Action = Callable[[Case], object]


def new_request(
    actor: Actor,
    *,
    expected_version: int | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Request:
    """A request as the HTTP layer makes one (a fresh correlation id unless given)."""
    return Request(
        actor=actor,
        correlation_id=correlation_id or f"corr-{uuid4().hex[:16]}",
        causation_id=causation_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )


# ----------------------------------------------------------------------- command builders
def coordinator_participant(actor: Actor) -> Participant:
    return Participant(
        kind=MemberKind.COORDINATOR, name=NAMES.get(actor.user_id, actor.user_id), user_id=actor.user_id
    )


def open_case_command(
    today: date, *, case_id: UUID | None = None, client: ClientRef = CLIENT
) -> cmd.OpenCase:
    return cmd.OpenCase(
        case_id=case_id,
        client=client,
        municipality=STOCKHOLM_MUNICIPALITY,
        region=STOCKHOLM_REGION,
        opened_on=today,
    )


def consent_command(today: date, actors: Actors = ACTORS) -> cmd.GiveConsent:
    return cmd.GiveConsent(
        organisations=[organisation_of(a) for a in actors.coordinators],
        covers_relatives=True,
        signed_on=today,
        valid_until=today + timedelta(days=365),
    )


def worksheet_command(
    today: date, actors: Actors = ACTORS, worksheet: Worksheet = Worksheet.INTERVIEW
) -> cmd.CompleteWorksheet:
    """A worksheet without structured data (interview, ordinary day, …), both coordinators present."""
    return cmd.CompleteWorksheet(
        worksheet=worksheet,
        completed_on=today,
        participants=[
            Participant(kind=MemberKind.CLIENT, name=CLIENT.name),
            *(coordinator_participant(a) for a in actors.coordinators),
        ],
        summary=f"Gick igenom arbetsbladet {worksheet.value} tillsammans med Tolvan.",
    )


def summarise_mapping_command(today: date, actors: Actors = ACTORS) -> cmd.SummariseMapping:
    return cmd.SummariseMapping(
        summarised_on=today,
        participants=[
            Participant(kind=MemberKind.CLIENT, name=CLIENT.name),
            *(coordinator_participant(a) for a in actors.coordinators),
        ],
        wants_to_change="Vill ha en egen lägenhet och komma tillbaka till arbete.",
        obstacles="Sömnsvårigheter och oro i sociala situationer.",
        summary="Kartläggningen är klar; fokus på boende och sysselsättning.",
    )


def long_term_goal_command(today: date) -> cmd.SetGoal:
    return cmd.SetGoal(
        kind=GoalKind.LONG_TERM,
        description="Bo i en egen lägenhet inom ett år.",
        life_area="Boende",
        target_date=today + timedelta(days=365),
        set_on=today,
    )


def client_member_command(today: date) -> cmd.AddMember:
    return cmd.AddMember(kind=MemberKind.CLIENT, name=CLIENT.name, added_on=today)


def coordinator_member_command(today: date, actor: Actor) -> cmd.AddMember:
    return cmd.AddMember(
        kind=MemberKind.COORDINATOR,
        name=NAMES.get(actor.user_id, actor.user_id),
        organisation=organisation_of(actor),
        role="vård- och stödsamordnare",
        user_id=actor.user_id,
        added_on=today,
    )


def sip_command(
    today: date,
    *,
    goal_id: UUID,
    client_member_id: UUID,
    responsible_member_id: UUID,
    actors: Actors = ACTORS,
) -> cmd.DecideSip:
    return cmd.DecideSip(
        decided_on=today,
        overall_responsibility=organisation_of(actors.municipality),
        goal_ids=[goal_id],
        actions=[
            cmd.ProposedAction(
                what="Ansöka om boendestöd.",
                responsible_member_id=responsible_member_id,
                due_on=today + timedelta(days=30),
                how="Tolvan och samordnaren fyller i ansökan tillsammans.",
                goal_id=goal_id,
            )
        ],
        next_follow_up_on=today + timedelta(days=60),
        participants=[
            Participant(kind=MemberKind.CLIENT, name=CLIENT.name, member_id=client_member_id),
            *(coordinator_participant(a) for a in actors.coordinators),
        ],
        client_agreed=True,
    )


def meeting_command(today: date, actors: Actors = ACTORS) -> cmd.HoldResourceGroupMeeting:
    return cmd.HoldResourceGroupMeeting(
        held_on=today,
        participants=[coordinator_participant(a) for a in actors.coordinators],
        notes="Resursgruppsmöte: genomgång av planen.",
    )


# ---------------------------------------------------------------------------- the scenario
@dataclass
class CaseScenario:
    """One case driven step by step; keeps the ids the later steps need."""

    service: CaseService
    clock: FixedClock
    actors: Actors = ACTORS
    step: timedelta = timedelta(days=1)
    case_id: UUID | None = None
    results: list[CommandResult] = field(default_factory=list)
    goal_ids: list[UUID] = field(default_factory=list)
    member_ids: dict[str, UUID] = field(default_factory=dict)  # "client", "region", "municipality"

    @property
    def today(self) -> date:
        return self.clock.today()

    @property
    def version(self) -> int:
        return self.results[-1].version if self.results else 0

    def _tick(self) -> None:
        self.clock.advance(self.step)

    def run(self, action: Action, actor: Actor | None = None, **request: Any) -> CommandResult:
        """Run one command method on the case (after moving the clock on a step)."""
        if self.case_id is None:
            raise RuntimeError("open the case first")
        self._tick()
        result = self.service.execute(
            new_request(actor or self.actors.region, **request), self.case_id, action
        )
        self.results.append(result)
        return result

    # ------------------------------------------------------------------------------ steps
    def open(
        self, actor: Actor | None = None, *, case_id: UUID | None = None, **request: Any
    ) -> CommandResult:
        result = self.service.open_case(
            new_request(actor or self.actors.region, **request),
            open_case_command(self.today, case_id=case_id),
        )
        self.case_id = result.case_id
        self.results.append(result)
        return result

    def assign_coordinator(self, coordinator: Actor) -> CommandResult:
        """Assign ``coordinator`` (as the region's coordinator, who opened the case)."""
        return self.run(
            lambda c: c.assign_coordinator(
                cmd.AssignCoordinator(coordinator=coordinator_for(coordinator), assigned_on=self.today)
            )
        )

    def assign_coordinators(self) -> list[CommandResult]:
        return [self.assign_coordinator(a) for a in self.actors.coordinators]

    def give_consent(self) -> CommandResult:
        return self.run(
            lambda c: c.give_consent(consent_command(self.today, self.actors)), self.actors.municipality
        )

    def complete_worksheet(self, worksheet: Worksheet = Worksheet.INTERVIEW) -> CommandResult:
        return self.run(lambda c: c.complete_worksheet(worksheet_command(self.today, self.actors, worksheet)))

    def summarise_mapping(self) -> CommandResult:
        return self.run(lambda c: c.summarise_mapping(summarise_mapping_command(self.today, self.actors)))

    def set_goal(self) -> CommandResult:
        result = self.run(lambda c: c.set_goal(long_term_goal_command(self.today)))
        assert result.created_id is not None
        self.goal_ids.append(UUID(result.created_id))
        return result

    def add_member(self, key: str, build: Callable[[date], cmd.AddMember]) -> CommandResult:
        """Add the member ``build(today)`` makes; its id is kept as ``member_ids[key]``."""
        result = self.run(lambda c: c.add_member(build(self.today)))
        assert result.created_id is not None
        self.member_ids[key] = UUID(result.created_id)
        return result

    def add_members(self) -> list[CommandResult]:
        """The client and both coordinators: a member from the region and one from the municipality."""
        return [
            self.add_member("client", client_member_command),
            self.add_member("region", lambda day: coordinator_member_command(day, self.actors.region)),
            self.add_member(
                "municipality", lambda day: coordinator_member_command(day, self.actors.municipality)
            ),
        ]

    def decide_sip(self) -> CommandResult:
        def decide(case: Case) -> object:
            return case.decide_sip(
                sip_command(
                    self.today,
                    goal_id=self.goal_ids[0],
                    client_member_id=self.member_ids["client"],
                    responsible_member_id=self.member_ids["municipality"],
                    actors=self.actors,
                )
            )

        return self.run(decide, self.actors.municipality)

    def hold_meeting(self) -> CommandResult:
        return self.run(lambda c: c.hold_resource_group_meeting(meeting_command(self.today, self.actors)))

    def to_first_sip(self) -> list[CommandResult]:
        """Open the case (unless open) and take it to its first SIP; this run's results."""
        first = len(self.results)
        if self.case_id is None:
            self.open()
        self.assign_coordinators()
        self.give_consent()
        self.complete_worksheet()
        self.summarise_mapping()
        self.set_goal()
        self.add_members()
        self.decide_sip()
        return self.results[first:]


def drive_to_first_sip(service: CaseService, clock: FixedClock, actors: Actors = ACTORS) -> CaseScenario:
    """A new case at its first SIP (see :data:`FIRST_SIP_EVENT_TYPES`)."""
    scenario = CaseScenario(service, clock, actors)
    scenario.to_first_sip()
    return scenario
