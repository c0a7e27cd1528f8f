"""Given-events / when-command / then-events-or-error specs for the Case aggregate.

A *step* is a function that runs one command on a case (inside ``case.handling(ctx)``).
``given(*steps)`` opens a case in Göteborg (1480, Västra Götaland) for the test client
and runs the steps with a fixed :class:`CommandContext`; ``when(case, step)`` runs one
more command and returns what it produced: the new pending events' payloads, or the
named error it raised. When a command is refused, ``when`` also checks that it left the
case exactly as it was (no pending event, no state change).

Every date is fixed: ``TODAY`` is Friday 14 March 2025, so the specs are deterministic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from services.case.domain import commands as cmd
from services.case.domain.case import Case
from services.case.domain.errors import CaseRuleViolation, InvalidCommand
from services.case.domain.events import Actor
from vss_contracts import case_events as ev
from vss_contracts.case_events import CaseEventData, OthersAction, PersonRef, PlanContact, WarningSign
from vss_contracts.types import (
    ActorPrincipal,
    ChangeRating,
    ClientRef,
    ClosingReason,
    ContactDetails,
    ContactMode,
    ContactPeriod,
    Coordinator,
    GoalKind,
    GoalStatus,
    MemberKind,
    Municipality,
    OrganisationRef,
    Participant,
    Phase,
    Principal,
    Region,
    Worksheet,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")

# ------------------------------------------------------------------------------ the clock
NOW = datetime(2025, 3, 14, 8, 45, tzinfo=UTC)
TODAY = date(2025, 3, 14)
TOMORROW = date(2025, 3, 15)

OPENED_ON = date(2025, 1, 13)
ASSIGNED_ON = date(2025, 1, 13)
CONSENT_ON = date(2025, 1, 20)
WORKSHEET_ON = date(2025, 1, 27)
SUMMARISED_ON = date(2025, 2, 17)
PLANNED_ON = date(2025, 2, 24)
SIP_ON = date(2025, 3, 3)
FOLLOW_UP_ON = date(2025, 6, 2)
ACTION_DUE_ON = date(2025, 4, 30)

CASE_ID = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f01")

# ------------------------------------------------------------------------ organisations
REGION_ORG = OrganisationRef(
    id="vgr-psykiatri-nordost",
    name="Psykiatri Nordost, Västra Götalandsregionen",
    principal=Principal.REGION,
)
MUNICIPALITY_ORG = OrganisationRef(
    id="goteborg-sdf-nordost",
    name="Göteborgs Stad, socialförvaltningen Nordost",
    principal=Principal.MUNICIPALITY,
)
OTHER_ORG = OrganisationRef(id="arbetsformedlingen", name="Arbetsförmedlingen", principal=Principal.OTHER)
UNRELATED_ORG = OrganisationRef(
    id="boras-stad-socialtjanst", name="Borås Stad, socialtjänsten", principal=Principal.MUNICIPALITY
)

GOTEBORG = Municipality(code="1480", name="Göteborg")
VASTRA_GOTALAND = Region(code="14", name="Västra Götalandsregionen")
CLIENT = ClientRef(personal_identity_number="19121212-1212", name="Tolvan Tolvansson")

# --------------------------------------------------------------------------- coordinators
ANNA = Coordinator(
    user_id="anna.lindqvist",
    name="Anna Lindqvist",
    organisation=REGION_ORG,
    contact=ContactDetails(email="anna.lindqvist@vgregion.se", phone="010-441 20 00"),
)
ERIK = Coordinator(
    user_id="erik.johansson",
    name="Erik Johansson",
    organisation=MUNICIPALITY_ORG,
    contact=ContactDetails(email="erik.johansson@socialtjanst.goteborg.se", phone="031-365 00 00"),
)
SARA = Coordinator(user_id="sara.holm", name="Sara Holm", organisation=REGION_ORG)

ACTOR = Actor(
    user_id=ANNA.user_id,
    organisation_id=REGION_ORG.id,
    organisation_name=REGION_ORG.name,
    principal=Principal.REGION,
    roles=frozenset({"coordinator"}),
)


# The client themself, signed in with their e-ID: their personal identity number, no organisation.
CLIENT_ACTOR = Actor(
    user_id="191212121212",
    organisation_id="",
    organisation_name="",
    principal=ActorPrincipal.CLIENT,
    roles=frozenset({"client"}),
)
SOMEONE_ELSE = Actor("198112189876", "", "", ActorPrincipal.CLIENT, frozenset({"client"}))


def context(
    *, today: date = TODAY, policy: cmd.CasePolicy | None = None, actor: Actor = ACTOR
) -> cmd.CommandContext:
    return cmd.CommandContext(
        actor=actor,
        now=NOW,
        today=today,
        correlation_id="req-2025-03-14-0001",
        causation_id=None,
        policy=policy or cmd.CasePolicy(),
    )


CONTEXT = context()
AS_CLIENT = context(actor=CLIENT_ACTOR)

# -------------------------------------------------------------------------------- members
CLIENT_MEMBER = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0001")
ANNA_MEMBER = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0002")
ERIK_MEMBER = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0003")
PSYCHIATRIST = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0004")  # region
HOUSING_SUPPORT = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0005")  # municipality
MOTHER = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0006")
EMPLOYMENT_OFFICER = UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0007")  # other

LONG_TERM_GOAL = UUID("a9b3e0f2-5c61-4d8e-b1a7-2f9c4e6d0001")
SUB_GOAL = UUID("a9b3e0f2-5c61-4d8e-b1a7-2f9c4e6d0002")
ACTION_1 = UUID("c4e8d2a1-7f3b-4c9e-8d6a-5b1e3f7a0001")
ACTION_2 = UUID("c4e8d2a1-7f3b-4c9e-8d6a-5b1e3f7a0002")
WARNING_1 = UUID("e2f7a9c3-4b8d-4e1f-9a6c-3d5b7e9f0001")

P_ANNA = Participant(kind=MemberKind.COORDINATOR, name=ANNA.name, user_id=ANNA.user_id)
P_ERIK = Participant(kind=MemberKind.COORDINATOR, name=ERIK.name, user_id=ERIK.user_id)
P_SARA = Participant(kind=MemberKind.COORDINATOR, name=SARA.name, user_id=SARA.user_id)
P_CLIENT = Participant(kind=MemberKind.CLIENT, name=CLIENT.name, member_id=CLIENT_MEMBER)
P_PSYCHIATRIST = Participant(kind=MemberKind.PROFESSIONAL, name="Leila Haddad", member_id=PSYCHIATRIST)
P_HOUSING = Participant(kind=MemberKind.PROFESSIONAL, name="Mikael Berg", member_id=HOUSING_SUPPORT)

BOTH_COORDINATORS = (P_ANNA, P_ERIK, P_CLIENT)

# ---------------------------------------------------------------------------------- steps
Step = Callable[[Case], Any]


def open_case(*, on: date = OPENED_ON, case_id: UUID = CASE_ID) -> cmd.OpenCase:
    return cmd.OpenCase(
        case_id=case_id, client=CLIENT, municipality=GOTEBORG, region=VASTRA_GOTALAND, opened_on=on
    )


def assign(coordinator: Coordinator = ANNA, *, on: date = ASSIGNED_ON) -> Step:
    command = cmd.AssignCoordinator(coordinator=coordinator, assigned_on=on)
    return lambda case: case.assign_coordinator(command)


def hand_over(incoming: Coordinator, outgoing: Coordinator, *, on: date = ASSIGNED_ON) -> Step:
    """Assign ``incoming`` to take over from ``outgoing`` (ADR 0021)."""
    command = cmd.AssignCoordinator(
        coordinator=incoming,
        assigned_on=on,
        hands_over_from=PersonRef(organisation_id=outgoing.organisation.id, user_id=outgoing.user_id),
    )
    return lambda case: case.assign_coordinator(command)


def unassign(user_id: str = ERIK.user_id, *, on: date = SIP_ON) -> Step:
    command = cmd.UnassignCoordinator(unassigned_on=on, reason="Föräldraledig från april")
    return lambda case: case.unassign_coordinator(user_id, command)


def unassign_person(coordinator: Coordinator, *, on: date = ASSIGNED_ON) -> Step:
    """Unassign the person (organisation and user id), as the person route does (ADR 0023)."""
    command = cmd.UnassignCoordinator(unassigned_on=on)
    return lambda case: case.unassign_coordinator(coordinator.user_id, command, coordinator.organisation.id)


def consent(
    *organisations: OrganisationRef,
    relatives: bool = True,
    on: date = CONSENT_ON,
    valid_until: date | None = None,
) -> Step:
    command = cmd.GiveConsent(
        organisations=list(organisations or (REGION_ORG, MUNICIPALITY_ORG)),
        covers_relatives=relatives,
        signed_on=on,
        valid_until=valid_until,
    )
    return lambda case: case.give_consent(command)


def withdraw(
    *organisation_ids: str, relatives: bool = False, entire: bool | None = None, on: date = PLANNED_ON
) -> Step:
    entire = entire if entire is not None else not (organisation_ids or relatives)
    command = cmd.WithdrawConsent(
        withdrawn_on=on,
        entire=entire,
        organisation_ids=list(organisation_ids),
        relatives=relatives,
        reason="Brukaren vill inte att uppgifter delas",
    )
    return lambda case: case.withdraw_consent(command)


def confirm(version: int = 1, *, on: date = TODAY) -> Step:
    command = cmd.ConfirmSip(sip_version=version, confirmed_on=on)
    return lambda case: case.confirm_sip(command)


def worksheet(
    sheet: Worksheet = Worksheet.ORDINARY_DAY,
    *participants: Participant,
    on: date = WORKSHEET_ON,
    reason: str | None = None,
) -> Step:
    extra: dict[str, Any] = {}
    if sheet is Worksheet.CHANGE_RATING:
        extra["change_rating"] = ChangeRating(individually=3, interpersonally=5, socially=2, overall=4)
    elif sheet is Worksheet.NETWORK_MAP:
        extra["network"] = [
            {"name": "Birgitta Tolvansson", "relation": "mamma", "kind": "relative", "is_resource": True},
            {
                "name": "Leila Haddad",
                "relation": "psykiater",
                "kind": "professional",
                "organisation": "Psykiatri Nordost",
            },
        ]
    elif sheet is Worksheet.QLS_100:
        extra["qls_areas"] = ["boende", "sysselsättning", "ekonomi"]
    elif sheet is Worksheet.EARLY_WARNING_SIGNS:
        extra["early_warning_signs"] = ["sover dåligt", "drar sig undan"]
    command = cmd.CompleteWorksheet(
        worksheet=sheet,
        completed_on=on,
        participants=list(participants or BOTH_COORDINATORS),
        summary=f"Arbetsbladet {sheet.value} genomgånget tillsammans med Tolvan.",
        deviation_reason=reason,
        **extra,
    )
    return lambda case: case.complete_worksheet(command)


def summarise(*participants: Participant, on: date = SUMMARISED_ON, reason: str | None = None) -> Step:
    command = cmd.SummariseMapping(
        summarised_on=on,
        participants=list(participants or BOTH_COORDINATORS),
        wants_to_change="Vill ha en egen lägenhet och komma tillbaka till arbete.",
        obstacles="Sömnproblem, skulder och ångest i sociala situationer.",
        deviation_reason=reason,
    )
    return lambda case: case.summarise_mapping(command)


def change_phase(to_phase: Phase, *, on: date = TODAY) -> Step:
    command = cmd.ChangePhase(to_phase=to_phase, changed_on=on, reason="Överenskommet på resursgruppsmöte")
    return lambda case: case.change_phase(command)


def set_goal(
    goal_id: UUID | None = LONG_TERM_GOAL,
    *,
    kind: GoalKind = GoalKind.LONG_TERM,
    parent: UUID | None = None,
    on: date = PLANNED_ON,
    reason: str | None = None,
) -> Step:
    command = cmd.SetGoal(
        goal_id=goal_id,
        kind=kind,
        parent_goal_id=parent,
        description="Ha ett eget boende" if kind is GoalKind.LONG_TERM else "Söka tre lägenheter i maj",
        life_area="boende",
        target_date=date(2026, 1, 31),
        set_on=on,
        deviation_reason=reason,
    )
    return lambda case: case.set_goal(command)


def sub_goal(
    goal_id: UUID = SUB_GOAL, *, parent: UUID | None = LONG_TERM_GOAL, on: date = PLANNED_ON
) -> Step:
    return set_goal(goal_id, kind=GoalKind.SUB_GOAL, parent=parent, on=on)


def goal_status(
    goal_id: UUID = LONG_TERM_GOAL, status: GoalStatus = GoalStatus.ACHIEVED, *, on: date = TODAY
) -> Step:
    command = cmd.ChangeGoalStatus(status=status, changed_on=on, comment="Utvärderat med brukaren")
    return lambda case: case.change_goal_status(goal_id, command)


def add_member(
    member_id: UUID,
    kind: MemberKind,
    name: str,
    *,
    organisation: OrganisationRef | None = None,
    user_id: str | None = None,
    role: str | None = None,
    on: date = PLANNED_ON,
) -> Step:
    command = cmd.AddMember(
        member_id=member_id,
        kind=kind,
        name=name,
        organisation=organisation,
        role=role,
        user_id=user_id,
        added_on=on,
    )
    return lambda case: case.add_member(command)


def client_member(member_id: UUID = CLIENT_MEMBER) -> Step:
    return add_member(member_id, MemberKind.CLIENT, CLIENT.name)


def psychiatrist(organisation: OrganisationRef = REGION_ORG) -> Step:
    return add_member(
        PSYCHIATRIST, MemberKind.PROFESSIONAL, "Leila Haddad", organisation=organisation, role="psykiater"
    )


def housing_support(organisation: OrganisationRef = MUNICIPALITY_ORG) -> Step:
    return add_member(
        HOUSING_SUPPORT,
        MemberKind.PROFESSIONAL,
        "Mikael Berg",
        organisation=organisation,
        role="boendestödjare",
    )


def employment_officer() -> Step:
    return add_member(
        EMPLOYMENT_OFFICER,
        MemberKind.PROFESSIONAL,
        "Jonas Ek",
        organisation=OTHER_ORG,
        role="arbetsförmedlare",
    )


def mother() -> Step:
    return add_member(MOTHER, MemberKind.RELATIVE, "Birgitta Tolvansson", role="mamma")


def coordinator_member(coordinator: Coordinator = ANNA, member_id: UUID = ANNA_MEMBER) -> Step:
    return add_member(
        member_id,
        MemberKind.COORDINATOR,
        coordinator.name,
        organisation=coordinator.organisation,
        user_id=coordinator.user_id,
    )


def remove_member(member_id: UUID = HOUSING_SUPPORT, *, on: date = TODAY) -> Step:
    command = cmd.RemoveMember(removed_on=on, reason="Insatsen avslutad")
    return lambda case: case.remove_member(member_id, command)


def meeting(*participants: Participant, on: date = TODAY, reason: str | None = None) -> Step:
    command = cmd.HoldResourceGroupMeeting(
        held_on=on,
        participants=list(participants or (P_ANNA, P_ERIK, P_CLIENT, P_PSYCHIATRIST)),
        notes="Genomgång av tidiga tecken och nästa SIP.",
        deviation_reason=reason,
    )
    return lambda case: case.hold_resource_group_meeting(command)


def early_warning_plan(*sign_ids: str, on: date = PLANNED_ON) -> Step:
    descriptions = {
        "somnproblem": "Sover mindre än fem timmar",
        "isolering": "Slutar svara i telefon",
        "rostprat": "Hör röster som kommenterar",
    }
    command = cmd.UpdateEarlyWarningPlan(
        signs=[
            WarningSign(sign_id=s, description=descriptions.get(s, s))
            for s in (sign_ids or ("somnproblem", "isolering"))
        ],
        client_actions=["Ringa Anna", "Ta vid behovs-medicin enligt ordination"],
        others_actions=[OthersAction(who="Mamma", what="Ringa samordnaren om Tolvan inte svarar")],
        contacts=[PlanContact(name="Anna Lindqvist", relation="samordnare", phone="010-441 20 00")],
        updated_on=on,
    )
    return lambda case: case.update_early_warning_plan(command)


def trigger_warning(
    *sign_ids: str,
    other_sign: str | None = None,
    warning_id: UUID | None = WARNING_1,
    on: date = TODAY,
    reason: str | None = None,
) -> Step:
    command = cmd.TriggerEarlyWarning(
        warning_id=warning_id,
        sign_ids=list(sign_ids),
        other_sign=other_sign,
        observed_on=on,
        description="Mamma hörde av sig",
        deviation_reason=reason,
    )
    return lambda case: case.trigger_early_warning(command)


def resolve_warning(warning_id: UUID = WARNING_1, *, on: date = TODAY) -> Step:
    command = cmd.ResolveEarlyWarning(resolved_on=on, outcome="Extra besök hos psykiatrin, läget stabilt")
    return lambda case: case.resolve_early_warning(warning_id, command)


def sip_action(
    action_id: UUID = ACTION_1, responsible: UUID = PSYCHIATRIST, goal_id: UUID | None = LONG_TERM_GOAL
) -> cmd.ProposedAction:
    return cmd.ProposedAction(
        action_id=action_id,
        what="Läkemedelsgenomgång",
        responsible_member_id=responsible,
        due_on=ACTION_DUE_ON,
        how="Besök på mottagningen tillsammans med Anna",
        goal_id=goal_id,
    )


def decide_sip(
    *,
    on: date = SIP_ON,
    follow_up: date | None = None,
    goal_ids: Iterable[UUID] = (LONG_TERM_GOAL,),
    actions: Iterable[cmd.ProposedAction] | None = None,
    participants: Iterable[Participant] = (P_ANNA, P_ERIK, P_CLIENT, P_PSYCHIATRIST, P_HOUSING),
    client_agreed: bool = True,
    overall_responsibility: OrganisationRef = MUNICIPALITY_ORG,
    initial: bool = False,
    reason: str | None = None,
) -> Step:
    command = cmd.DecideSip(
        decided_on=on,
        initial=initial,
        overall_responsibility=overall_responsibility,
        goal_ids=list(goal_ids),
        actions=list(
            actions
            if actions is not None
            else (sip_action(ACTION_1, PSYCHIATRIST), sip_action(ACTION_2, HOUSING_SUPPORT))
        ),
        next_follow_up_on=follow_up or FOLLOW_UP_ON,
        participants=list(participants),
        client_agreed=client_agreed,
        deviation_reason=reason,
    )
    return lambda case: case.decide_sip(command)


def complete_action(action_id: UUID = ACTION_1, *, on: date = TODAY) -> Step:
    command = cmd.CompleteAction(completed_on=on, comment="Genomförd")
    return lambda case: case.complete_action(action_id, command)


def close(reason: ClosingReason = ClosingReason.GOALS_ACHIEVED, *, on: date = TODAY) -> Step:
    command = cmd.CloseCase(closed_on=on, reason=reason, comment="Avslutas i samförstånd")
    return lambda case: case.close(command)


# Saturday 8 March 2025, 21:30 in Stockholm (CET): an evening's outreach work.
SATURDAY_EVENING = datetime(2025, 3, 8, 21, 30, tzinfo=STOCKHOLM)


def record_contact(
    *,
    at: datetime = SATURDAY_EVENING,
    mode: ContactMode = ContactMode.OUTREACH,
    minutes: int = 45,
    staff: list[cmd.StaffRef] | None = None,
    contact_id: UUID | None = None,
    others: list[ev.ContactOther] | None = None,
) -> Step:
    command = cmd.RecordClientContact(
        contact_id=contact_id,
        mode=mode,
        occurred_at=at,
        duration_minutes=minutes,
        staff=staff or [],
        others=others or [],
        note="Träffade Tolvan vid Nordstan; vi bokade ett besök på tisdag.",
    )
    return lambda case: case.record_client_contact(command)


def set_contact_period(period: ContactPeriod = ContactPeriod.ORIENTATION, *, on: date = TODAY) -> Step:
    command = cmd.SetContactPeriod(period=period, applies_from=on, reason="Behandlingen har kommit igång")
    return lambda case: case.set_contact_period(command)


# ------------------------------------------------------------ corrections (ADR 0018)
CORRECTION_REASON = "Fel uppgift infördes; rättad efter kontroll med Tolvan."
MEETING_ON = date(2025, 3, 10)
RATING = ChangeRating(individually=3, interpersonally=5, socially=4, overall=4)


def entry_id(case: Case, data_type: type[ev.CaseEventData], index: int = -1) -> UUID:
    """The id of the case's event of ``data_type`` (the last one by default), as the case knows it."""
    ids = [event_id for event_id, type_name in case.state.event_types.items() if type_name == data_type.TYPE]
    return ids[index]


def correct(
    data_type: type[ev.CaseEventData], value: Any, *, on: date = TODAY, event_id: UUID | None = None
) -> Step:
    """Correct the latest entry of ``data_type`` (or the event ``event_id``)."""

    def step(case: Case) -> None:
        command = cmd.CorrectEntry(
            corrects_event_id=event_id or entry_id(case, data_type),
            reason=CORRECTION_REASON,
            corrected_on=on,
            value=value,
        )
        case.correct_entry(command)

    return step


def retract(data_type: type[ev.CaseEventData], *, on: date = TODAY, event_id: UUID | None = None) -> Step:
    def step(case: Case) -> None:
        command = cmd.RetractEntry(
            corrects_event_id=event_id or entry_id(case, data_type), reason=CORRECTION_REASON, retracted_on=on
        )
        case.retract_entry(command)

    return step


def rating_value(on: date = WORKSHEET_ON, rating: ChangeRating | None = RATING) -> ev.CorrectedWorksheet:
    return ev.CorrectedWorksheet(
        kind="worksheet",
        completed_on=on,
        participants=[P_CLIENT],
        summary="Tolvan skattade själv; socialt 4, inte 2.",
        change_rating=rating,
    )


def goal_value(on: date = date(2025, 2, 24)) -> ev.CorrectedGoal:
    return ev.CorrectedGoal(
        kind="goal", description="Ha ett eget boende med stöd inom ett år", target_date=None, set_on=on
    )


def meeting_value(on: date = MEETING_ON) -> ev.CorrectedMeetingHeld:
    return ev.CorrectedMeetingHeld(
        kind="resource_group_meeting",
        held_on=on,
        participants=[P_ANNA, P_ERIK, P_CLIENT],
        notes="Rättade anteckningar.",
    )


def action_value(on: date = date(2025, 3, 12)) -> ev.CorrectedActionCompletion:
    return ev.CorrectedActionCompletion(
        kind="sip_action", completed_on=on, comment="Genomförd dagen före, enligt mottagningen."
    )


# ---------------------------------------------------------------------- story fragments
COORDINATED = (assign(ANNA), assign(ERIK))
# Anna of the region and another Anna, of the municipality, with the same user id: two people.
ANNA_OF_MUNICIPALITY = Coordinator(user_id=ANNA.user_id, name="Anna Berg", organisation=MUNICIPALITY_ORG)
TWO_ANNAS = (assign(ANNA), assign(ANNA_OF_MUNICIPALITY))
CONSENTED = (*COORDINATED, consent())
MAPPED = (*CONSENTED, worksheet(Worksheet.INTERVIEW), worksheet(Worksheet.NETWORK_MAP), summarise())
GROUP = (client_member(), psychiatrist(), housing_support())
PLANNED = (*MAPPED, set_goal(), sub_goal(), *GROUP)
WORKING = (*PLANNED, decide_sip())


def planned_with(consent_step: Step) -> tuple[Step, ...]:
    """``PLANNED``, with another consent than the default one."""
    return (*COORDINATED, consent_step, *PLANNED[len(CONSENTED) :])


# ------------------------------------------------------------------------- given / when
def given(*steps: Step, ctx: cmd.CommandContext = CONTEXT, opened_on: date = OPENED_ON) -> Case:
    """A case opened on ``opened_on``, with ``steps`` run on it; pending events collected."""
    case = Case.open(ctx, open_case(on=opened_on))
    for step in steps:
        step(case.handling(ctx))
    return case


@dataclass
class Outcome:
    """What one command did: the payloads of its new events, or the error it raised."""

    events: list[CaseEventData] = field(default_factory=list)
    error: Exception | None = None
    result: Any = None

    @property
    def types(self) -> list[type[CaseEventData]]:
        return [type(e) for e in self.events]


def snapshot(case: Case) -> tuple[Any, ...]:
    """Everything a refused command must leave as it was."""
    return (
        copy.deepcopy(case.state),
        case.version,
        case.head_hash,
        [event.meta.event_id for event in case.pending_events],  # type: ignore[attr-defined]
    )


def when(case: Case, step: Step, *, ctx: cmd.CommandContext = CONTEXT) -> Outcome:
    before = snapshot(case)
    seen = len(case.pending_events)
    try:
        result = step(case.handling(ctx))
    except (CaseRuleViolation, InvalidCommand, ValidationError) as error:
        assert snapshot(case) == before, "a refused command changed the case"
        return Outcome(error=error)
    new = case.pending_events[seen:]
    assert [e.originator_version for e in new] == list(range(before[1] + 1, before[1] + 1 + len(new)))
    return Outcome(events=[e.data for e in new], result=result)  # type: ignore[attr-defined]


def then_events(outcome: Outcome, *expected: type[CaseEventData]) -> list[Any]:
    assert outcome.error is None, f"expected {[t.__name__ for t in expected]}, got {outcome.error!r}"
    assert outcome.types == list(expected)
    return outcome.events


def then_error(outcome: Outcome, error: type[CaseRuleViolation], rule: str) -> CaseRuleViolation:
    assert outcome.error is not None, f"expected {error.__name__}, got events {outcome.types}"
    assert type(outcome.error) is error, f"expected {error.__name__}, got {outcome.error!r}"
    assert isinstance(outcome.error, CaseRuleViolation)
    assert outcome.error.rule == rule
    assert str(outcome.error).startswith(f"{rule}: ")
    return outcome.error


def phase_change(event: Any) -> tuple[Phase, Phase]:
    assert isinstance(event, ev.PhaseChanged)
    return event.from_phase, event.to_phase
