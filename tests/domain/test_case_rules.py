"""The rules of the Case aggregate, as given-events / when-command / then-events-or-error specs.

Every class of ``services/case/domain/errors.py`` is raised here with its ``rule``, and
every command method of ``Case`` is shown producing its events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC as UTC_
from datetime import date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from services.case.domain import commands as cmd
from services.case.domain import errors
from services.case.domain.case import Case, coordinator_key
from services.case.domain.commands import CasePolicy
from services.case.domain.events import GENESIS_HASH, Actor, CaseEvent
from vss_contracts import case_events as ev
from vss_contracts.case_events import OutsideParty
from vss_contracts.registry import decode_event
from vss_contracts.types import (
    ActorPrincipal,
    ClosingReason,
    ContactMode,
    ContactPeriod,
    Coordinator,
    GoalKind,
    GoalStatus,
    MemberKind,
    Participant,
    Phase,
    PracticeRule,
    Principal,
    Worksheet,
)

from .specs import (
    ACTION_1,
    ACTION_2,
    ACTOR,
    ANNA,
    ANNA_OF_MUNICIPALITY,
    AS_CLIENT,
    ASSIGNED_ON,
    BOTH_COORDINATORS,
    CASE_ID,
    CLIENT,
    CLIENT_ACTOR,
    CLIENT_MEMBER,
    CONSENT_ON,
    CONSENTED,
    CONTEXT,
    COORDINATED,
    ERIK,
    FOLLOW_UP_ON,
    GROUP,
    HOUSING_SUPPORT,
    LONG_TERM_GOAL,
    MAPPED,
    MOTHER,
    MUNICIPALITY_ORG,
    NOW,
    OTHER_ORG,
    P_ANNA,
    P_CLIENT,
    P_ERIK,
    P_HOUSING,
    P_PSYCHIATRIST,
    P_SARA,
    PLANNED,
    PLANNED_ON,
    PSYCHIATRIST,
    REGION_ORG,
    SARA,
    SATURDAY_EVENING,
    SIP_ON,
    SOMEONE_ELSE,
    SUB_GOAL,
    SUMMARISED_ON,
    TODAY,
    TOMORROW,
    TWO_ANNAS,
    UNRELATED_ORG,
    WARNING_1,
    WORKING,
    WORKSHEET_ON,
    Step,
    add_member,
    assign,
    change_phase,
    client_member,
    close,
    complete_action,
    confirm,
    consent,
    context,
    coordinator_member,
    correct,
    decide_sip,
    early_warning_plan,
    employment_officer,
    given,
    goal_status,
    hand_over,
    housing_support,
    meeting,
    mother,
    open_case,
    phase_change,
    planned_with,
    psychiatrist,
    record_contact,
    remove_member,
    resolve_warning,
    set_contact_period,
    set_goal,
    sip_action,
    sub_goal,
    summarise,
    then_error,
    then_events,
    trigger_warning,
    unassign,
    unassign_person,
    when,
    withdraw,
    worksheet,
)
from .specs import NOW as SPEC_NOW

# ====================================================================== opening and closing


def test_opening_a_case_records_case_opened_by_the_actors_organisation() -> None:
    case = Case.open(CONTEXT, open_case())

    [event] = case.pending_events
    assert isinstance(event.data, ev.CaseOpened)
    assert event.data.opened_by_organisation == REGION_ORG
    assert event.data.client.personal_identity_number == "191212121212"
    assert case.id == CASE_ID
    assert case.version == 1
    assert case.state.phase is Phase.MAPPING
    assert case.state.municipality.code == "1480"
    assert event.meta.prev_hash == GENESIS_HASH
    assert case.head_hash == event.meta.hash
    assert event.timestamp == NOW


def test_opening_a_case_dated_tomorrow_is_refused() -> None:
    with pytest.raises(errors.DateInFuture) as raised:
        Case.open(CONTEXT, open_case(on=TOMORROW))
    assert raised.value.rule == "date_in_future"


def test_closing_emits_case_closed_then_phase_changed_to_closed() -> None:
    case = given(*WORKING)

    closed, phase = then_events(when(case, close(ClosingReason.CLIENT_MOVED)), ev.CaseClosed, ev.PhaseChanged)

    assert closed.reason is ClosingReason.CLIENT_MOVED
    assert phase_change(phase) == (Phase.WORKING, Phase.CLOSED)
    assert phase.reason == "case_closed:client_moved"
    assert case.state.closed_on == TODAY
    assert case.state.phase is Phase.CLOSED


def test_a_case_can_be_closed_before_consent() -> None:
    events = then_events(
        when(given(assign(ANNA)), close(ClosingReason.CLIENT_DECLINED)), ev.CaseClosed, ev.PhaseChanged
    )
    assert phase_change(events[1]) == (Phase.MAPPING, Phase.CLOSED)


EVERY_COMMAND: dict[str, Step] = {
    "assign": assign(SARA),
    "unassign": unassign(ERIK.user_id),
    "consent": consent(),
    "withdraw": withdraw(),
    "worksheet": worksheet(Worksheet.CONTACT_DETAILS),
    "summarise": summarise(),
    "change_phase": change_phase(Phase.FOLLOW_UP),
    "set_goal": set_goal(None),
    "goal_status": goal_status(),
    "add_member": mother(),
    "remove_member": remove_member(),
    "meeting": meeting(),
    "plan": early_warning_plan(),
    "trigger_warning": trigger_warning("somnproblem"),
    "resolve_warning": resolve_warning(),
    "decide_sip": decide_sip(on=TODAY, follow_up=date(2025, 6, 13)),
    "complete_action": complete_action(ACTION_2),
    "close": close(),
}


# The client's withdrawal of consent is the one command a closed case still takes: the
# organisations the consent covers go on seeing it after the closing (ADR 0009).
AFTER_CLOSING = {name: step for name, step in EVERY_COMMAND.items() if name != "withdraw"}


@pytest.mark.parametrize("command", AFTER_CLOSING.values(), ids=AFTER_CLOSING.keys())
def test_a_closed_case_accepts_nothing_but_a_withdrawal(command: Step) -> None:
    case = given(*WORKING, early_warning_plan(), trigger_warning("somnproblem"), close())

    then_error(when(case, command), errors.CaseClosed, "case_closed")


def test_the_consent_can_be_withdrawn_after_the_closing() -> None:
    [entire] = then_events(when(given(*WORKING, close()), withdraw()), ev.ConsentWithdrawn)
    [one] = then_events(when(given(*WORKING, close()), withdraw(MUNICIPALITY_ORG.id)), ev.ConsentWithdrawn)

    assert entire.entire
    assert (one.entire, one.organisation_ids) == (False, [MUNICIPALITY_ORG.id])
    again = when(given(*WORKING, close(), withdraw()), withdraw())
    then_error(again, errors.NoConsentToWithdraw, "no_consent_to_withdraw")


# ========================================================================= dates in future

FUTURE_DATED: dict[str, tuple[tuple[Step, ...], Step, str]] = {
    "assign": ((), assign(ANNA, on=TOMORROW), "assigned_on"),
    "unassign": (COORDINATED, unassign(ERIK.user_id, on=TOMORROW), "unassigned_on"),
    "consent": ((), consent(on=TOMORROW), "signed_on"),
    "withdraw": (CONSENTED, withdraw(on=TOMORROW), "withdrawn_on"),
    "worksheet": (CONSENTED, worksheet(Worksheet.ORDINARY_DAY, on=TOMORROW), "completed_on"),
    "summarise": (CONSENTED, summarise(on=TOMORROW), "summarised_on"),
    "change_phase": (WORKING, change_phase(Phase.FOLLOW_UP, on=TOMORROW), "changed_on"),
    "set_goal": (MAPPED, set_goal(on=TOMORROW), "set_on"),
    "goal_status": (PLANNED, goal_status(on=TOMORROW), "changed_on"),
    "add_member": (
        MAPPED,
        add_member(CLIENT_MEMBER, MemberKind.CLIENT, CLIENT.name, on=TOMORROW),
        "added_on",
    ),
    "remove_member": (PLANNED, remove_member(on=TOMORROW), "removed_on"),
    "meeting": (PLANNED, meeting(on=TOMORROW), "held_on"),
    "plan": (CONSENTED, early_warning_plan(on=TOMORROW), "updated_on"),
    "trigger_warning": (
        (*CONSENTED, early_warning_plan()),
        trigger_warning("somnproblem", on=TOMORROW),
        "observed_on",
    ),
    "resolve_warning": (
        (*CONSENTED, early_warning_plan(), trigger_warning("somnproblem")),
        resolve_warning(on=TOMORROW),
        "resolved_on",
    ),
    "decide_sip": (PLANNED, decide_sip(on=TOMORROW, follow_up=date(2025, 6, 1)), "decided_on"),
    "complete_action": (WORKING, complete_action(on=TOMORROW), "completed_on"),
    "close": (WORKING, close(on=TOMORROW), "closed_on"),
}


@pytest.mark.parametrize(("history", "command", "field"), FUTURE_DATED.values(), ids=FUTURE_DATED.keys())
def test_the_date_of_something_that_happened_cannot_be_in_the_future(
    history: tuple[Step, ...], command: Step, field: str
) -> None:
    error = then_error(when(given(*history), command), errors.DateInFuture, "date_in_future")
    assert error.detail.startswith(f"{field} {TOMORROW} is after today ({TODAY})")


@pytest.mark.parametrize(("history", "command", "field"), FUTURE_DATED.values(), ids=FUTURE_DATED.keys())
def test_the_same_commands_are_accepted_once_their_day_has_come(
    history: tuple[Step, ...], command: Step, field: str
) -> None:
    outcome = when(given(*history), command, ctx=context(today=TOMORROW))

    assert outcome.error is None, f"{field}: {outcome.error!r}"
    assert outcome.events


def test_today_is_not_in_the_future() -> None:
    then_events(when(given(*CONSENTED), worksheet(Worksheet.ORDINARY_DAY, on=TODAY)), ev.WorksheetCompleted)


# ============================================================================== coordinators
def keys(*coordinators: Coordinator) -> set[str]:
    """The case's keys of these coordinators: each a person (organisation, user id)."""
    return {coordinator_key(c) for c in coordinators}


def test_assigning_a_coordinator_records_coordinator_assigned() -> None:
    case = given()

    [event] = then_events(when(case, assign(ANNA)), ev.CoordinatorAssigned)

    assert event.coordinator == ANNA
    assert event.assigned_on == ASSIGNED_ON
    assert set(case.state.coordinators) == keys(ANNA)


def test_a_third_coordinator_is_refused() -> None:
    error = then_error(
        when(given(*COORDINATED), assign(SARA)), errors.TooManyCoordinators, "too_many_coordinators"
    )
    assert ANNA.user_id in error.detail
    assert ERIK.user_id in error.detail


def test_a_third_coordinator_may_replace_an_unassigned_one() -> None:
    case = given(*COORDINATED, unassign(ERIK.user_id))

    then_events(when(case, assign(SARA)), ev.CoordinatorAssigned)
    assert set(case.state.coordinators) == keys(ANNA, SARA)


# ------------------------------------------------------------------ handover (ADR 0021)
KARIN = Coordinator(user_id="karin.berg", name="Karin Berg", organisation=REGION_ORG)


def test_an_incoming_coordinator_is_assigned_before_the_outgoing_one_leaves() -> None:
    case = given(*COORDINATED)

    [event] = then_events(when(case, hand_over(SARA, ANNA)), ev.CoordinatorAssigned)

    assert event.hands_over_from == ev.PersonRef(organisation_id=REGION_ORG.id, user_id=ANNA.user_id)
    assert set(case.state.coordinators) == keys(ANNA, ERIK, SARA)
    assert case.state.handover == (coordinator_key(ANNA), coordinator_key(SARA))


def test_the_handover_completes_when_the_outgoing_coordinator_is_unassigned() -> None:
    case = given(*COORDINATED, hand_over(SARA, ANNA), unassign(ANNA.user_id))

    assert set(case.state.coordinators) == keys(ERIK, SARA)
    assert case.state.handover is None
    then_error(when(case, assign(KARIN)), errors.TooManyCoordinators, "too_many_coordinators")
    then_events(when(case, hand_over(KARIN, SARA)), ev.CoordinatorAssigned)  # the next one may start


def test_unassigning_the_incoming_coordinator_calls_the_handover_off() -> None:
    case = given(*COORDINATED, hand_over(SARA, ANNA), unassign(SARA.user_id))

    assert set(case.state.coordinators) == keys(ANNA, ERIK)
    assert case.state.handover is None


def test_one_handover_at_a_time_and_no_fourth_coordinator_without_one() -> None:
    case = given(*COORDINATED, hand_over(SARA, ANNA))

    error = then_error(when(case, hand_over(KARIN, ANNA)), errors.HandoverInProgress, "handover_in_progress")
    assert SARA.user_id in error.detail
    then_error(when(case, assign(KARIN)), errors.TooManyCoordinators, "too_many_coordinators")


def test_a_handover_is_from_an_assigned_coordinator_of_the_same_organisation_to_another() -> None:
    then_error(when(given(*COORDINATED), hand_over(ANNA, ANNA)), errors.HandoverToSelf, "handover_to_self")
    then_error(
        when(given(*COORDINATED), hand_over(SARA, ERIK)),
        errors.HandoverOutsideOrganisation,
        "handover_within_organisation",
    )
    then_error(
        when(given(assign(ERIK)), hand_over(SARA, ANNA)),
        errors.CoordinatorNotAssigned,
        "coordinator_not_assigned",
    )
    # A user id of another organisation is another person: Anna of the municipality is not assigned.
    someone = Coordinator(user_id=ANNA.user_id, name=ANNA.name, organisation=MUNICIPALITY_ORG)
    then_error(
        when(
            given(*COORDINATED),
            hand_over(Coordinator(user_id="per.ek", name="Per Ek", organisation=MUNICIPALITY_ORG), someone),
        ),
        errors.CoordinatorNotAssigned,
        "coordinator_not_assigned",
    )


def test_the_same_coordinator_cannot_be_assigned_twice() -> None:
    then_error(
        when(given(assign(ANNA)), assign(ANNA)),
        errors.CoordinatorAlreadyAssigned,
        "coordinator_already_assigned",
    )


def test_unassigning_a_coordinator_records_coordinator_unassigned() -> None:
    case = given(*COORDINATED)

    [event] = then_events(when(case, unassign(ERIK.user_id)), ev.CoordinatorUnassigned)

    assert event.user_id == ERIK.user_id
    assert set(case.state.coordinators) == keys(ANNA)


def test_unassigning_someone_not_assigned_is_refused() -> None:
    then_error(
        when(given(assign(ANNA)), unassign(ERIK.user_id)),
        errors.CoordinatorNotAssigned,
        "coordinator_not_assigned",
    )


def test_a_coordinator_member_must_be_an_assigned_coordinator() -> None:
    case = given(*MAPPED)

    then_error(
        when(case, coordinator_member(SARA)), errors.CoordinatorNotAssigned, "coordinator_not_assigned"
    )
    then_events(when(case, coordinator_member(ANNA)), ev.ResourceGroupMemberAdded)


# -------------------------------------------- a coordinator is a person (ADR 0023)
def test_two_organisations_coordinators_with_one_user_id_both_coordinate() -> None:
    case = given(*TWO_ANNAS)

    assert set(case.state.coordinators) == keys(ANNA, ANNA_OF_MUNICIPALITY)
    error = then_error(when(case, assign(SARA)), errors.TooManyCoordinators, "too_many_coordinators")
    assert f"{ANNA.user_id} at {REGION_ORG.id}" in error.detail
    assert f"{ANNA.user_id} at {MUNICIPALITY_ORG.id}" in error.detail


def test_unassigning_by_user_id_alone_is_refused_when_two_coordinators_share_it() -> None:
    case = given(*TWO_ANNAS)

    error = then_error(
        when(case, unassign(ANNA.user_id)), errors.CoordinatorAmbiguous, "coordinator_ambiguous"
    )

    assert REGION_ORG.id in error.detail
    assert MUNICIPALITY_ORG.id in error.detail
    assert set(case.state.coordinators) == keys(ANNA, ANNA_OF_MUNICIPALITY)


def test_unassigning_a_person_leaves_the_other_with_the_same_user_id() -> None:
    case = given(*TWO_ANNAS)

    [event] = then_events(when(case, unassign_person(ANNA_OF_MUNICIPALITY)), ev.CoordinatorUnassigned)

    assert (event.organisation_id, event.user_id) == (MUNICIPALITY_ORG.id, ANNA.user_id)
    assert set(case.state.coordinators) == keys(ANNA)
    # the user id alone is unambiguous again; the organisation named must be hers
    then_error(
        when(case, unassign_person(ANNA_OF_MUNICIPALITY)),
        errors.CoordinatorNotAssigned,
        "coordinator_not_assigned",
    )
    then_events(when(case, unassign(ANNA.user_id)), ev.CoordinatorUnassigned)


def test_unassigning_by_user_id_alone_names_the_organisation_in_the_event() -> None:
    [event] = then_events(when(given(*COORDINATED), unassign(ERIK.user_id)), ev.CoordinatorUnassigned)
    assert (event.organisation_id, event.user_id) == (MUNICIPALITY_ORG.id, ERIK.user_id)


def test_a_v1_unassignment_read_again_unassigns_the_coordinator_with_that_user_id() -> None:
    case = given(*COORDINATED)
    last = case.pending_events[-1]
    assert isinstance(last, CaseEvent)
    payload = {"user_id": ERIK.user_id, "unassigned_on": str(ASSIGNED_ON)}
    v1 = CaseEvent(
        originator_id=case.id,
        originator_version=case.version + 1,
        timestamp=last.timestamp,
        data=decode_event(ev.CoordinatorUnassignedV1.TYPE, payload),
        meta=last.meta,
        state={},
    )

    replayed = Case.evolve(case, v1)

    assert set(replayed.state.coordinators) == keys(ANNA)


# The two Annas as participants: each a person (organisation, user id).
P_ANNA_OF_REGION = Participant(
    kind=MemberKind.COORDINATOR, name=ANNA.name, organisation_id=ANNA.organisation.id, user_id=ANNA.user_id
)
P_ANNA_OF_MUNICIPALITY = Participant(
    kind=MemberKind.COORDINATOR,
    name=ANNA_OF_MUNICIPALITY.name,
    organisation_id=ANNA_OF_MUNICIPALITY.organisation.id,
    user_id=ANNA_OF_MUNICIPALITY.user_id,
)


def test_attendance_counts_each_coordinator_sharing_a_user_id_as_a_person() -> None:
    case = given(*TWO_ANNAS, consent())
    both = worksheet(Worksheet.INTERVIEW, P_ANNA_OF_REGION, P_ANNA_OF_MUNICIPALITY, P_CLIENT)
    [sheet] = then_events(when(case, both), ev.WorksheetCompleted)
    assert [p.organisation_id for p in sheet.participants] == [REGION_ORG.id, MUNICIPALITY_ORG.id, None]

    # Not named: both are absent, each recorded.
    outcome = when(case, worksheet(Worksheet.INTERVIEW, P_CLIENT, reason="Båda sjuka"))
    deviation, _ = then_events(outcome, ev.MethodDeviationRecorded, ev.WorksheetCompleted)
    absent = [(c.organisation_id, c.user_id) for c in deviation.absent_coordinators]
    assert sorted(absent) == sorted([(REGION_ORG.id, ANNA.user_id), (MUNICIPALITY_ORG.id, ANNA.user_id)])


def test_one_of_two_namesake_coordinators_attends_alone_as_a_deviation() -> None:
    case = given(*TWO_ANNAS, consent())

    # Without a reason the absent Anna of the municipality is a refusal, naming her as a person.
    error = then_error(
        when(case, worksheet(Worksheet.INTERVIEW, P_CLIENT, P_ANNA_OF_REGION)),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
    )
    assert f"missing: {ANNA.user_id} at {MUNICIPALITY_ORG.id}" in str(error)

    outcome = when(case, worksheet(Worksheet.INTERVIEW, P_CLIENT, P_ANNA_OF_REGION, reason="Anna B. sjuk"))
    deviation, sheet = then_events(outcome, ev.MethodDeviationRecorded, ev.WorksheetCompleted)
    assert deviation.rule is PracticeRule.COORDINATORS_MUST_ATTEND
    # one absent, the other took part; named as the person, not by a user id both share
    assert [(c.organisation_id, c.user_id) for c in deviation.absent_coordinators] == [
        (MUNICIPALITY_ORG.id, ANNA.user_id)
    ]
    [anna] = [p for p in sheet.participants if p.kind is MemberKind.COORDINATOR]
    assert (anna.organisation_id, anna.user_id) == (REGION_ORG.id, ANNA.user_id)

    outcome = when(case, meeting(P_CLIENT, P_ANNA_OF_MUNICIPALITY, reason="Anna L. sjuk"))
    deviation, held = then_events(outcome, ev.MethodDeviationRecorded, ev.ResourceGroupMeetingHeld)
    assert deviation.rule is PracticeRule.MEETING_REQUIRES_COORDINATORS
    assert [p.organisation_id for p in held.participants] == [None, MUNICIPALITY_ORG.id]


def test_a_coordinator_participant_gets_the_organisation_of_the_only_assigned_namesake() -> None:
    case = given(*CONSENTED)

    [sheet] = then_events(
        when(case, worksheet(Worksheet.INTERVIEW, P_ANNA, P_ERIK, P_CLIENT)), ev.WorksheetCompleted
    )

    assert [(p.organisation_id, p.user_id) for p in sheet.participants] == [
        (ANNA.organisation.id, ANNA.user_id),
        (ERIK.organisation.id, ERIK.user_id),
        (None, None),
    ]


def test_a_corrected_meeting_names_each_namesake_coordinator_as_a_person() -> None:
    case = given(*TWO_ANNAS, consent(), meeting(P_ANNA_OF_REGION, P_ANNA_OF_MUNICIPALITY, P_CLIENT))

    def value(*participants: Participant) -> ev.CorrectedMeetingHeld:
        return ev.CorrectedMeetingHeld(
            kind="resource_group_meeting", held_on=TODAY, participants=list(participants), notes="Rättat."
        )

    outcome = when(case, correct(ev.ResourceGroupMeetingHeld, value(P_CLIENT, P_ANNA)))
    assert isinstance(outcome.error, errors.InvalidCommand)
    [problem] = outcome.error.errors
    assert (problem["field"], problem["rule"]) == (
        "value.participants.1.organisation_id",
        "coordinator_ambiguous",
    )

    outcome = when(case, correct(ev.ResourceGroupMeetingHeld, value(P_CLIENT, P_ANNA_OF_MUNICIPALITY)))
    [corrected] = then_events(outcome, ev.EntryCorrected)
    assert isinstance(corrected.value, ev.CorrectedMeetingHeld)
    assert [p.organisation_id for p in corrected.value.participants] == [None, MUNICIPALITY_ORG.id]


def test_a_user_id_alone_that_two_assigned_coordinators_share_is_refused() -> None:
    case = given(*TWO_ANNAS, consent())
    p_anna_m = Participant(kind=MemberKind.COORDINATOR, name=ANNA_OF_MUNICIPALITY.name, user_id=ANNA.user_id)

    for step in (
        worksheet(Worksheet.INTERVIEW, P_CLIENT, P_ANNA, reason="En av dem sjuk"),
        worksheet(Worksheet.INTERVIEW, P_CLIENT, P_ANNA, p_anna_m),  # named twice: still not a person
        meeting(P_CLIENT, P_ANNA, reason="En av dem sjuk"),
        summarise(P_CLIENT, P_ANNA),
    ):
        outcome = when(case, step)
        assert isinstance(outcome.error, errors.InvalidCommand)
        [problem] = outcome.error.errors
        assert problem["field"] == "participants.1.organisation_id"
        assert problem["rule"] == "coordinator_ambiguous"


def test_a_coordinator_member_is_the_assigned_person_not_a_user_id() -> None:
    case = given(*TWO_ANNAS, consent(), unassign_person(ANNA_OF_MUNICIPALITY))

    then_error(
        when(case, coordinator_member(ANNA_OF_MUNICIPALITY)),
        errors.CoordinatorNotAssigned,
        "coordinator_not_assigned",
    )
    then_events(when(case, coordinator_member(ANNA)), ev.ResourceGroupMemberAdded)


def test_a_handover_names_the_outgoing_person_among_two_sharing_a_user_id() -> None:
    case = given(*TWO_ANNAS)
    per = Coordinator(user_id="per.ek", name="Per Ek", organisation=MUNICIPALITY_ORG)

    then_events(when(case, hand_over(per, ANNA_OF_MUNICIPALITY)), ev.CoordinatorAssigned)
    assert case.state.handover == (coordinator_key(ANNA_OF_MUNICIPALITY), coordinator_key(per))

    then_events(when(case, unassign_person(ANNA_OF_MUNICIPALITY)), ev.CoordinatorUnassigned)
    assert case.state.handover is None  # completed: the outgoing Anna left, the region's stays
    assert set(case.state.coordinators) == keys(ANNA, per)


# ================================================================================= consent


def test_giving_consent_records_consent_given() -> None:
    case = given(*COORDINATED)

    [event] = then_events(when(case, consent(REGION_ORG, MUNICIPALITY_ORG, relatives=False)), ev.ConsentGiven)

    assert [org.id for org in event.organisations] == [REGION_ORG.id, MUNICIPALITY_ORG.id]
    assert event.covers_relatives is False
    assert case.state.consent is not None
    assert case.state.consent.consent_id == event.consent_id


BEFORE_CONSENT_REFUSED: dict[str, Step] = {
    "worksheet": worksheet(Worksheet.CONTACT_DETAILS),
    "summarise": summarise(),
    "change_phase": change_phase(Phase.FOLLOW_UP),
    "set_goal": set_goal(),
    "goal_status": goal_status(),
    "add_member": client_member(),
    "remove_member": remove_member(),
    "meeting": meeting(),
    "plan": early_warning_plan(),
    "trigger_warning": trigger_warning("somnproblem"),
    "resolve_warning": resolve_warning(),
    "decide_sip": decide_sip(),
    "complete_action": complete_action(),
}


@pytest.mark.parametrize("command", BEFORE_CONSENT_REFUSED.values(), ids=BEFORE_CONSENT_REFUSED.keys())
def test_nothing_about_the_client_before_consent(command: Step) -> None:
    then_error(when(given(*COORDINATED), command), errors.ConsentRequired, "consent_required")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (assign(ERIK), [ev.CoordinatorAssigned]),
        (unassign(ANNA.user_id), [ev.CoordinatorUnassigned]),
        (consent(), [ev.ConsentGiven]),
        (close(ClosingReason.CLIENT_DECLINED), [ev.CaseClosed, ev.PhaseChanged]),
    ],
    ids=["assign", "unassign", "consent", "close"],
)
def test_before_consent_only_assignment_unassignment_consent_and_closing(
    command: Step, expected: list[type[ev.CaseEventData]]
) -> None:
    then_events(when(given(assign(ANNA)), command), *expected)


def test_withdrawing_consent_entirely_records_consent_withdrawn() -> None:
    case = given(*MAPPED)

    [event] = then_events(when(case, withdraw()), ev.ConsentWithdrawn)

    assert event.entire is True
    assert case.state.consent is not None
    assert case.state.consent.withdrawn_on is not None


AFTER_WITHDRAWAL_REFUSED: dict[str, Step] = {
    "worksheet": worksheet(Worksheet.CONTACT_DETAILS, on=TODAY),
    "summarise": summarise(on=TODAY),
    "change_phase": change_phase(Phase.FOLLOW_UP),
    "set_goal": set_goal(None, on=TODAY),
    "goal_status": goal_status(),
    "add_member": mother(),
    "remove_member": remove_member(),
    "meeting": meeting(),
    "plan": early_warning_plan(on=TODAY),
    "trigger_warning": trigger_warning("somnproblem"),
    "resolve_warning": resolve_warning(),
    "decide_sip": decide_sip(on=TODAY, follow_up=date(2025, 6, 13)),
    "complete_action": complete_action(ACTION_2),
}


@pytest.mark.parametrize("command", AFTER_WITHDRAWAL_REFUSED.values(), ids=AFTER_WITHDRAWAL_REFUSED.keys())
def test_after_entire_withdrawal_nothing_about_the_client(command: Step) -> None:
    case = given(*WORKING, early_warning_plan(), trigger_warning("somnproblem"), withdraw(on=TODAY))

    then_error(when(case, command), errors.ConsentWithdrawnRule, "consent_withdrawn")


def test_after_entire_withdrawal_assignment_is_refused_until_new_consent() -> None:
    case = given(*MAPPED, unassign(ERIK.user_id), withdraw())

    then_error(when(case, assign(SARA)), errors.ConsentWithdrawnRule, "consent_withdrawn")
    then_events(when(case, consent()), ev.ConsentGiven)
    then_events(when(case, assign(SARA)), ev.CoordinatorAssigned)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (consent(on=TODAY), [ev.ConsentGiven]),
        (unassign(ERIK.user_id), [ev.CoordinatorUnassigned]),
        (close(ClosingReason.CLIENT_DECLINED), [ev.CaseClosed, ev.PhaseChanged]),
    ],
    ids=["new_consent", "unassign", "close"],
)
def test_after_entire_withdrawal_new_consent_unassignment_and_closing_remain(
    command: Step, expected: list[type[ev.CaseEventData]]
) -> None:
    then_events(when(given(*MAPPED, withdraw()), command), *expected)


def test_a_new_consent_after_withdrawal_lets_the_work_go_on() -> None:
    case = given(*MAPPED, withdraw(), consent(on=TODAY))

    then_events(when(case, set_goal()), ev.GoalSet)
    assert case.state.consent is not None
    assert case.state.consent.withdrawn_on is None


def test_a_withdrawn_consent_cannot_be_withdrawn_again() -> None:
    then_error(
        when(given(*MAPPED, withdraw()), withdraw(on=TODAY)),
        errors.NoConsentToWithdraw,
        "no_consent_to_withdraw",
    )


def test_there_is_nothing_to_withdraw_before_consent() -> None:
    then_error(when(given(*COORDINATED), withdraw()), errors.NoConsentToWithdraw, "no_consent_to_withdraw")


def test_partial_withdrawal_for_an_organisation_stops_new_professionals_from_it() -> None:
    case = given(*MAPPED, client_member())

    [event] = then_events(when(case, withdraw(MUNICIPALITY_ORG.id)), ev.ConsentWithdrawn)
    assert event.entire is False
    assert event.organisation_ids == [MUNICIPALITY_ORG.id]

    error = then_error(
        when(case, housing_support()),
        errors.ConsentDoesNotCoverOrganisation,
        "consent_does_not_cover_organisation",
    )
    assert MUNICIPALITY_ORG.id in error.detail
    then_events(when(case, psychiatrist()), ev.ResourceGroupMemberAdded)  # the region is still covered


def test_partial_withdrawal_keeps_the_rest_of_the_consent_in_force() -> None:
    case = given(*MAPPED, withdraw(MUNICIPALITY_ORG.id))

    then_events(when(case, set_goal()), ev.GoalSet)


def test_withdrawing_for_an_organisation_the_consent_does_not_cover_is_refused() -> None:
    then_error(
        when(given(*MAPPED), withdraw(OTHER_ORG.id)),
        errors.ConsentDoesNotCoverOrganisation,
        "consent_does_not_cover_organisation",
    )


def test_withdrawing_for_relatives_when_the_consent_does_not_cover_them_is_refused() -> None:
    case = given(*COORDINATED, consent(relatives=False))

    then_error(
        when(case, withdraw(relatives=True)),
        errors.ConsentDoesNotCoverRelatives,
        "consent_does_not_cover_relatives",
    )


def test_a_professional_joins_only_if_the_consent_covers_their_organisation() -> None:
    case = given(*MAPPED)

    then_error(
        when(case, employment_officer()),
        errors.ConsentDoesNotCoverOrganisation,
        "consent_does_not_cover_organisation",
    )
    then_events(when(case, psychiatrist()), ev.ResourceGroupMemberAdded)


def test_a_new_consent_replaces_the_previous_one_as_a_whole() -> None:
    case = given(*MAPPED, consent(REGION_ORG, relatives=False, on=TODAY))

    then_error(
        when(case, housing_support()),
        errors.ConsentDoesNotCoverOrganisation,
        "consent_does_not_cover_organisation",
    )
    then_error(when(case, mother()), errors.ConsentDoesNotCoverRelatives, "consent_does_not_cover_relatives")


def test_a_relative_joins_only_if_the_consent_covers_relatives() -> None:
    then_error(
        when(given(*COORDINATED, consent(relatives=False)), mother()),
        errors.ConsentDoesNotCoverRelatives,
        "consent_does_not_cover_relatives",
    )
    [event] = then_events(when(given(*CONSENTED), mother()), ev.ResourceGroupMemberAdded)
    assert event.member.kind is MemberKind.RELATIVE


def test_partial_withdrawal_for_relatives_stops_new_relatives() -> None:
    case = given(*CONSENTED, withdraw(relatives=True))

    then_error(when(case, mother()), errors.ConsentDoesNotCoverRelatives, "consent_does_not_cover_relatives")


def test_an_expired_consent_stops_the_work() -> None:
    case = given(*COORDINATED, consent(on=date(2024, 1, 10), valid_until=date(2025, 3, 13)))

    error = then_error(when(case, worksheet()), errors.ConsentExpired, "consent_expired")
    assert "2025-03-13" in error.detail


def test_a_consent_is_valid_through_its_last_day() -> None:
    case = given(*COORDINATED, consent(on=date(2024, 3, 14), valid_until=TODAY))

    then_events(when(case, worksheet()), ev.WorksheetCompleted)


def test_a_new_consent_cures_an_expired_one() -> None:
    case = given(*COORDINATED, consent(on=date(2024, 1, 10), valid_until=date(2025, 1, 10)))
    then_error(when(case, mother()), errors.ConsentExpired, "consent_expired")

    then_events(when(case, consent(on=TODAY, valid_until=date(2026, 3, 14))), ev.ConsentGiven)
    then_events(when(case, mother()), ev.ResourceGroupMemberAdded)


# ============================================================================= worksheets


@pytest.mark.parametrize("sheet", list(Worksheet), ids=[s.value for s in Worksheet])
def test_every_worksheet_with_both_coordinators_is_recorded(sheet: Worksheet) -> None:
    case = given(*CONSENTED)

    [event] = then_events(when(case, worksheet(sheet)), ev.WorksheetCompleted)

    assert event.worksheet is sheet
    assert case.state.worksheets[-1].worksheet is sheet
    assert case.state.phase is Phase.MAPPING  # a worksheet does not change the phase


@pytest.mark.parametrize("sheet", [Worksheet.INTERVIEW, Worksheet.NETWORK_MAP])
def test_interview_and_network_map_need_every_assigned_coordinator(sheet: Worksheet) -> None:
    case = given(*CONSENTED)

    error = then_error(
        when(case, worksheet(sheet, P_ANNA, P_CLIENT)),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
    )
    assert ERIK.user_id in error.detail


@pytest.mark.parametrize("sheet", sorted(set(Worksheet) - {Worksheet.INTERVIEW, Worksheet.NETWORK_MAP}))
def test_other_worksheets_do_not_need_the_coordinators(sheet: Worksheet) -> None:
    case = given(*CONSENTED)

    then_events(when(case, worksheet(sheet, P_ANNA, P_CLIENT)), ev.WorksheetCompleted)


def test_with_one_assigned_coordinator_the_interview_needs_only_that_one() -> None:
    case = given(assign(ANNA), consent())

    then_events(when(case, worksheet(Worksheet.INTERVIEW, P_ANNA, P_CLIENT)), ev.WorksheetCompleted)


def test_a_coordinator_from_a_professional_participant_does_not_count() -> None:
    # Erik named as a professional (not as a coordinator) does not satisfy the rule.
    erik_as_professional = Participant(kind=MemberKind.PROFESSIONAL, name=ERIK.name, user_id=ERIK.user_id)
    case = given(*CONSENTED)

    then_error(
        when(case, worksheet(Worksheet.INTERVIEW, P_ANNA, erik_as_professional, P_CLIENT)),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
    )


def test_the_interview_needs_an_assigned_coordinator_at_all() -> None:
    case = given(*CONSENTED, unassign(ANNA.user_id), unassign(ERIK.user_id))

    then_error(
        when(case, worksheet(Worksheet.INTERVIEW, P_CLIENT)),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
    )


# ========================================================================= mapping summary


def test_summarising_the_mapping_moves_the_case_to_planning_in_the_same_command() -> None:
    case = given(*CONSENTED)

    summary, phase = then_events(when(case, summarise()), ev.MappingSummarised, ev.PhaseChanged)

    assert summary.summarised_on == date(2025, 2, 17)
    assert phase_change(phase) == (Phase.MAPPING, Phase.PLANNING)
    assert phase.reason == "mapping_summarised"
    assert case.state.phase is Phase.PLANNING
    assert case.state.mapping_summarised_on == date(2025, 2, 17)


def test_a_revised_mapping_summary_does_not_change_the_phase() -> None:
    case = given(*WORKING)

    then_events(when(case, summarise(on=TODAY)), ev.MappingSummarised)
    assert case.state.phase is Phase.WORKING


def test_the_mapping_summary_needs_every_assigned_coordinator() -> None:
    case = given(*CONSENTED)

    error = then_error(
        when(case, summarise(P_ERIK, P_CLIENT)), errors.CoordinatorsMustAttend, "coordinators_must_attend"
    )
    assert ANNA.user_id in error.detail
    assert case.state.phase is Phase.MAPPING


def test_the_mapping_summary_needs_an_assigned_coordinator_at_all() -> None:
    case = given(assign(ANNA), consent(), unassign(ANNA.user_id))

    then_error(when(case, summarise(P_CLIENT)), errors.CoordinatorsMustAttend, "coordinators_must_attend")


def test_a_coordinator_who_is_not_assigned_does_not_stand_in() -> None:
    case = given(*CONSENTED)

    then_error(
        when(case, summarise(P_ANNA, P_SARA, P_CLIENT)),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
    )


# ==================================================================================== phases


@pytest.mark.parametrize(
    ("history", "to_phase", "from_phase"),
    [
        (WORKING, Phase.FOLLOW_UP, Phase.WORKING),
        ((*WORKING, change_phase(Phase.FOLLOW_UP)), Phase.WORKING, Phase.FOLLOW_UP),
    ],
    ids=["working->follow_up", "follow_up->working"],
)
def test_manual_phase_changes_between_working_and_follow_up(
    history: tuple[Step, ...], to_phase: Phase, from_phase: Phase
) -> None:
    case = given(*history)

    [event] = then_events(when(case, change_phase(to_phase)), ev.PhaseChanged)

    assert phase_change(event) == (from_phase, to_phase)
    assert event.reason == "Överenskommet på resursgruppsmöte"
    assert case.state.phase is to_phase


@pytest.mark.parametrize(
    ("history", "to_phase"),
    [
        (CONSENTED, Phase.PLANNING),
        (CONSENTED, Phase.WORKING),
        (MAPPED, Phase.WORKING),
        (MAPPED, Phase.MAPPING),
        (MAPPED, Phase.FOLLOW_UP),
        (WORKING, Phase.WORKING),
        (WORKING, Phase.MAPPING),
        (WORKING, Phase.PLANNING),
        (WORKING, Phase.CLOSED),
        ((*WORKING, change_phase(Phase.FOLLOW_UP)), Phase.CLOSED),
    ],
    ids=[
        "mapping->planning",
        "mapping->working",
        "planning->working",
        "planning->mapping",
        "planning->follow_up",
        "working->working",
        "working->mapping",
        "working->planning",
        "working->closed",
        "follow_up->closed",
    ],
)
def test_other_phase_changes_are_not_manual(history: tuple[Step, ...], to_phase: Phase) -> None:
    case = given(*history)
    phase = case.state.phase

    then_error(when(case, change_phase(to_phase)), errors.PhaseChangeNotAllowed, "phase_change_not_allowed")
    assert case.state.phase is phase


# ===================================================================================== goals


def test_setting_a_long_term_goal_and_a_sub_goal() -> None:
    case = given(*MAPPED)

    [goal] = then_events(when(case, set_goal()), ev.GoalSet)
    [sub] = then_events(when(case, sub_goal()), ev.GoalSet)

    assert goal.kind is GoalKind.LONG_TERM
    assert sub.kind is GoalKind.SUB_GOAL
    assert sub.parent_goal_id == LONG_TERM_GOAL
    assert set(case.state.goals) == {LONG_TERM_GOAL, SUB_GOAL}


def test_a_goal_without_an_id_gets_one() -> None:
    case = given(*MAPPED)
    outcome = when(case, set_goal(None))

    [goal] = then_events(outcome, ev.GoalSet)
    assert outcome.result == goal.goal_id
    assert goal.goal_id in case.state.goals


def test_goals_need_the_mapping_summarised() -> None:
    then_error(when(given(*CONSENTED), set_goal()), errors.MappingNotSummarised, "mapping_not_summarised")


def test_a_goal_id_is_used_once() -> None:
    then_error(when(given(*MAPPED, set_goal()), set_goal()), errors.GoalAlreadySet, "goal_already_set")


@pytest.mark.parametrize(
    ("history", "parent"),
    [
        (MAPPED, None),
        (MAPPED, LONG_TERM_GOAL),  # no such goal yet
        ((*MAPPED, set_goal(), sub_goal()), SUB_GOAL),  # the parent is itself a sub-goal
    ],
    ids=["no_parent", "unknown_parent", "sub_goal_parent"],
)
def test_a_sub_goal_belongs_to_an_existing_long_term_goal(
    history: tuple[Step, ...], parent: UUID | None
) -> None:
    new_sub = UUID("a9b3e0f2-5c61-4d8e-b1a7-2f9c4e6d0099")
    then_error(
        when(given(*history), sub_goal(new_sub, parent=parent)),
        errors.GoalParentInvalid,
        "goal_parent_invalid",
    )


def test_changing_a_goals_status() -> None:
    case = given(*PLANNED)

    outcome = when(case, goal_status(SUB_GOAL, GoalStatus.PARTIALLY_ACHIEVED))

    [event] = then_events(outcome, ev.GoalStatusChanged)

    assert event.status is GoalStatus.PARTIALLY_ACHIEVED
    assert case.state.goals[SUB_GOAL].status is GoalStatus.PARTIALLY_ACHIEVED


def test_changing_the_status_of_an_unknown_goal_is_refused() -> None:
    then_error(when(given(*MAPPED), goal_status()), errors.GoalNotFound, "goal_not_found")


# ============================================================================ resource group


def test_adding_members_of_every_kind() -> None:
    case = given(*MAPPED)

    for step, kind in [
        (client_member(), MemberKind.CLIENT),
        (psychiatrist(), MemberKind.PROFESSIONAL),
        (mother(), MemberKind.RELATIVE),
        (coordinator_member(ANNA), MemberKind.COORDINATOR),
    ]:
        [event] = then_events(when(case, step), ev.ResourceGroupMemberAdded)
        assert event.member.kind is kind
    assert len(case.state.members) == 4


def test_a_member_id_is_used_once() -> None:
    case = given(*MAPPED, psychiatrist())

    step = add_member(PSYCHIATRIST, MemberKind.PROFESSIONAL, "Mikael Berg", organisation=MUNICIPALITY_ORG)
    then_error(when(case, step), errors.MemberAlreadyInGroup, "member_already_in_group")


def test_the_client_joins_once() -> None:
    case = given(*MAPPED, client_member())

    then_error(
        when(case, client_member(UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0099"))),
        errors.MemberAlreadyInGroup,
        "member_already_in_group",
    )


def test_a_user_joins_once() -> None:
    case = given(*MAPPED, coordinator_member(ANNA))

    then_error(
        when(case, coordinator_member(ANNA, UUID("0d7c6a51-1d1e-4a55-8a56-6a3f7a8e0098"))),
        errors.MemberAlreadyInGroup,
        "member_already_in_group",
    )


def test_removing_a_member() -> None:
    case = given(*PLANNED)

    [event] = then_events(when(case, remove_member(HOUSING_SUPPORT)), ev.ResourceGroupMemberRemoved)

    assert event.member_id == HOUSING_SUPPORT
    assert HOUSING_SUPPORT not in case.state.members


def test_removing_someone_not_in_the_group_is_refused() -> None:
    then_error(when(given(*MAPPED), remove_member(MOTHER)), errors.MemberNotFound, "member_not_found")


def test_a_resource_group_meeting_with_both_coordinators() -> None:
    case = given(*WORKING)

    [event] = then_events(when(case, meeting()), ev.ResourceGroupMeetingHeld)

    assert event.held_on == TODAY
    assert case.state.meetings_held == [TODAY]


def test_a_resource_group_meeting_needs_both_coordinators() -> None:
    error = then_error(
        when(given(*WORKING), meeting(P_ANNA, P_CLIENT, P_PSYCHIATRIST)),
        errors.MeetingRequiresCoordinators,
        "meeting_requires_coordinators",
    )
    assert ERIK.user_id in error.detail


def test_a_resource_group_meeting_needs_an_assigned_coordinator_at_all() -> None:
    case = given(*WORKING, unassign(ANNA.user_id), unassign(ERIK.user_id))

    then_error(
        when(case, meeting(P_CLIENT, P_PSYCHIATRIST)),
        errors.MeetingRequiresCoordinators,
        "meeting_requires_coordinators",
    )


# ====================================================================================== SIP


def test_the_first_sip_is_decided_renews_consent_and_starts_the_working_phase() -> None:
    case = given(*PLANNED)
    outcome = when(case, decide_sip())

    sip, renewed, phase = then_events(outcome, ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged)

    assert outcome.result == 1
    assert sip.sip_version == 1
    assert [a.action_id for a in sip.actions] == [ACTION_1, ACTION_2]
    assert sip.next_follow_up_on == FOLLOW_UP_ON
    assert case.state.consent is not None
    assert renewed.consent_id == case.state.consent.consent_id
    assert renewed.sip_version == 1
    assert renewed.renewed_on == SIP_ON
    assert phase_change(phase) == (Phase.PLANNING, Phase.WORKING)
    assert phase.reason == "sip_decided"
    assert case.state.phase is Phase.WORKING
    assert case.state.consent.renewed_on == SIP_ON


def test_a_revised_sip_in_the_working_phase_does_not_change_the_phase() -> None:
    case = given(*WORKING)

    sip, renewed = then_events(
        when(case, decide_sip(on=TODAY, follow_up=date(2025, 6, 13))), ev.SipDecided, ev.ConsentRenewed
    )
    assert sip.sip_version == 2
    assert renewed.sip_version == 2
    assert case.state.sip is not None
    assert case.state.sip.version == 2


def test_a_revised_sip_at_follow_up_returns_the_case_to_working() -> None:
    case = given(*WORKING, change_phase(Phase.FOLLOW_UP))

    events = then_events(
        when(case, decide_sip(on=TODAY, follow_up=date(2025, 6, 13))),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    assert phase_change(events[2]) == (Phase.FOLLOW_UP, Phase.WORKING)


def test_a_sip_renews_a_time_limited_consent_for_its_original_period() -> None:
    signed, valid_until = CONSENT_ON, date(2026, 1, 20)  # 365 days
    case = given(*planned_with(consent(on=signed, valid_until=valid_until)))

    _, renewed, _ = then_events(when(case, decide_sip()), ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged)

    assert renewed.valid_until == SIP_ON + (valid_until - signed)
    assert renewed.valid_until == date(2026, 3, 3)
    assert case.state.consent is not None
    assert case.state.consent.valid_until == date(2026, 3, 3)


def test_a_sip_keeps_an_open_ended_consent_open_ended() -> None:
    case = given(*PLANNED)

    _, renewed, _ = then_events(when(case, decide_sip()), ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged)
    assert renewed.valid_until is None


def test_a_sip_renewal_never_shortens_the_consent() -> None:
    case = given(*planned_with(consent(on=CONSENT_ON, valid_until=date(2027, 1, 1))))
    # period = 711 days; renewed on 2025-03-03 -> 2027-02-12, later than 2027-01-01
    _, renewed, _ = then_events(when(case, decide_sip()), ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged)
    assert renewed.valid_until >= date(2027, 1, 1)


def test_every_sip_renews_the_consent_for_the_same_original_period() -> None:
    signed, valid_until = CONSENT_ON, date(2026, 1, 20)  # one year, 365 days
    period = valid_until - signed
    case = given(*planned_with(consent(on=signed, valid_until=valid_until)), decide_sip())
    assert case.state.consent is not None
    assert case.state.consent.valid_until == SIP_ON + period  # 2026-03-03, correct after one SIP

    _, renewed = then_events(
        when(case, decide_sip(on=TODAY, follow_up=date(2025, 6, 13))), ev.SipDecided, ev.ConsentRenewed
    )

    assert renewed.valid_until == TODAY + period  # 2026-03-14


def test_a_sip_needs_the_mapping_summarised() -> None:
    then_error(
        when(given(*CONSENTED, *GROUP), decide_sip()),
        errors.SipRequiresMappingSummary,
        "sip_requires_mapping_summary",
    )


def test_an_initial_sip_comes_before_the_mapping_may_set_no_goals_and_the_mapping_goes_on() -> None:
    """The manual: anyone may start by calling an initial SIP meeting (*inledande SIP-möte*)."""
    case = given(*CONSENTED, *GROUP)

    sip, renewed = then_events(
        when(
            case,
            decide_sip(initial=True, goal_ids=(), actions=[sip_action(ACTION_1, PSYCHIATRIST, goal_id=None)]),
        ),
        ev.SipDecided,
        ev.ConsentRenewed,
    )

    assert (sip.initial, sip.goal_ids, sip.sip_version) == (True, [], 1)
    assert renewed.sip_version == 1
    assert case.state.phase is Phase.MAPPING  # the mapping goes on; no working phase yet
    # The mapping summarised, the next SIP (not initial) starts the working phase.
    later = given(
        *CONSENTED,
        *GROUP,
        decide_sip(initial=True, goal_ids=(), actions=[sip_action(ACTION_1, PSYCHIATRIST, goal_id=None)]),
        worksheet(Worksheet.INTERVIEW),
        worksheet(Worksheet.NETWORK_MAP),
        summarise(),
        set_goal(),
    )
    second, _, phase = then_events(
        when(later, decide_sip()), ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged
    )
    assert (second.sip_version, second.initial) == (2, False)
    assert phase_change(phase) == (Phase.PLANNING, Phase.WORKING)


def test_only_the_first_sip_can_be_an_initial_sip() -> None:
    then_error(
        when(given(*WORKING), decide_sip(on=TODAY, follow_up=date(2025, 6, 13), initial=True)),
        errors.InitialSipNotFirst,
        "initial_sip_not_first",
    )


def test_an_initial_sip_comes_before_the_mapping_is_summarised() -> None:
    then_error(
        when(given(*PLANNED), decide_sip(initial=True)),
        errors.InitialSipAfterMapping,
        "initial_sip_after_mapping",
    )


def test_an_organisation_is_recorded_as_the_case_knows_it_not_as_the_caller_says() -> None:
    # A coordinating municipality's id, called a region: refused, not recorded as a region.
    disguised = MUNICIPALITY_ORG.model_copy(update={"principal": Principal.REGION})
    then_error(
        when(given(*PLANNED), decide_sip(overall_responsibility=disguised)),
        errors.SipResponsibilityNotAParty,
        "sip_responsibility_not_a_party",
    )
    # The name as the case knows it, whatever the caller wrote.
    renamed = MUNICIPALITY_ORG.model_copy(update={"name": "Något annat namn"})
    sip, _, _ = then_events(
        when(given(*PLANNED), decide_sip(overall_responsibility=renamed)),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    assert sip.overall_responsibility == MUNICIPALITY_ORG
    # An outside party likewise: its principal must be the consent's, its name is the consent's.
    party = OutsideParty(organisation=OTHER_ORG.model_copy(update={"name": "AF"}))
    outside = cmd.ProposedAction(what="Arbete", responsible_party=party, due_on=TODAY, how="Möte")
    case = given(*planned_with(consent(REGION_ORG, MUNICIPALITY_ORG, OTHER_ORG)))
    sip, _, _ = then_events(
        when(case, decide_sip(actions=[sip_action(ACTION_1, PSYCHIATRIST), outside])),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    assert sip.actions[1].responsible_party.organisation == OTHER_ORG
    as_region = OutsideParty(organisation=OTHER_ORG.model_copy(update={"principal": Principal.REGION}))
    then_error(
        when(
            given(*planned_with(consent(REGION_ORG, MUNICIPALITY_ORG, OTHER_ORG))),
            decide_sip(
                actions=[
                    sip_action(ACTION_1, PSYCHIATRIST),
                    outside.model_copy(update={"responsible_party": as_region}),
                ]
            ),
        ),
        errors.SipPartyNotCovered,
        "sip_party_not_covered",
    )


def test_a_sip_after_the_mapping_needs_goals() -> None:
    then_error(when(given(*PLANNED), decide_sip(goal_ids=())), errors.SipRequiresGoal, "sip_requires_goal")


def test_a_sip_names_the_principal_with_the_overall_responsibility() -> None:
    sip, _, _ = then_events(
        when(given(*PLANNED), decide_sip(overall_responsibility=REGION_ORG)),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    assert sip.overall_responsibility == REGION_ORG


def test_the_overall_responsibility_is_a_principal_of_the_case() -> None:
    # Not a principal (a region or a municipality) at all...
    then_error(
        when(
            given(*planned_with(consent(REGION_ORG, MUNICIPALITY_ORG, OTHER_ORG))),
            decide_sip(overall_responsibility=OTHER_ORG),
        ),
        errors.SipResponsibilityNotAParty,
        "sip_responsibility_not_a_party",
    )
    # ...or a municipality that neither coordinates the case nor is covered by the consent.
    then_error(
        when(given(*PLANNED), decide_sip(overall_responsibility=UNRELATED_ORG)),
        errors.SipResponsibilityNotAParty,
        "sip_responsibility_not_a_party",
    )


def test_an_action_may_be_an_outside_partys_that_the_consent_covers() -> None:
    """SoL 2 kap. 7 §: the plan names actions by others than the principals (e.g.
    Arbetsförmedlingen), who need not be in the resource group."""
    outside = cmd.ProposedAction(
        action_id=ACTION_2,
        what="Kartlägga vägar till arbete",
        responsible_party=OutsideParty(organisation=OTHER_ORG, contact_name="Arbetsförmedlare"),
        due_on=TODAY,
        how="Möte på Arbetsförmedlingen tillsammans med samordnaren",
    )
    case = given(*planned_with(consent(REGION_ORG, MUNICIPALITY_ORG, OTHER_ORG)))

    sip, _, _ = then_events(
        when(case, decide_sip(actions=[sip_action(ACTION_1, PSYCHIATRIST), outside])),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )

    party = sip.actions[1].responsible_party
    assert (sip.actions[1].responsible_member_id, party.organisation) == (None, OTHER_ORG)
    assert case.state.sip is not None
    then_error(
        when(given(*PLANNED), decide_sip(actions=[sip_action(ACTION_1, PSYCHIATRIST), outside])),
        errors.SipPartyNotCovered,
        "sip_party_not_covered",
    )
    with pytest.raises(ValueError, match="exactly one"):
        cmd.ProposedAction(what="x", due_on=TODAY, how="y")


def test_a_sip_needs_existing_goals() -> None:
    unknown = UUID("a9b3e0f2-5c61-4d8e-b1a7-2f9c4e6d0077")
    then_error(when(given(*MAPPED, *GROUP), decide_sip()), errors.SipRequiresGoal, "sip_requires_goal")
    then_error(
        when(given(*PLANNED), decide_sip(goal_ids=(LONG_TERM_GOAL, unknown))),
        errors.SipRequiresGoal,
        "sip_requires_goal",
    )


def test_a_sip_needs_the_client_in_the_resource_group() -> None:
    case = given(*MAPPED, set_goal(), psychiatrist(), housing_support())

    then_error(when(case, decide_sip()), errors.SipRequiresClientInGroup, "sip_requires_client_in_group")


def test_a_sip_needs_a_member_from_the_region() -> None:
    case = given(*MAPPED, set_goal(), client_member(), housing_support())

    then_error(
        when(case, decide_sip(actions=[sip_action(ACTION_2, HOUSING_SUPPORT)])),
        errors.SipRequiresRegionMember,
        "sip_requires_region_member",
    )


def test_a_coordinator_member_from_the_region_counts_as_the_region_member() -> None:
    case = given(*MAPPED, set_goal(), client_member(), coordinator_member(ANNA), housing_support())

    then_events(
        when(case, decide_sip(actions=[sip_action(ACTION_2, HOUSING_SUPPORT)])),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )


def test_a_sip_needs_a_member_from_the_municipality() -> None:
    case = given(*MAPPED, set_goal(), client_member(), psychiatrist())

    then_error(
        when(case, decide_sip(actions=[sip_action(ACTION_1, PSYCHIATRIST)])),
        errors.SipRequiresMunicipalityMember,
        "sip_requires_municipality_member",
    )


def test_a_removed_municipality_member_no_longer_counts() -> None:
    case = given(*PLANNED, remove_member(HOUSING_SUPPORT))

    then_error(
        when(case, decide_sip(actions=[sip_action(ACTION_1, PSYCHIATRIST)])),
        errors.SipRequiresMunicipalityMember,
        "sip_requires_municipality_member",
    )


def test_each_action_is_the_responsibility_of_a_current_member() -> None:
    error = then_error(
        when(given(*PLANNED), decide_sip(actions=[sip_action(ACTION_1, MOTHER)])),
        errors.SipResponsibleNotMember,
        "sip_responsible_not_member",
    )
    assert str(MOTHER) in error.detail


def test_a_removed_member_cannot_be_responsible() -> None:
    case = given(*PLANNED, mother(), remove_member(MOTHER))

    actions = [sip_action(ACTION_1, PSYCHIATRIST), sip_action(ACTION_2, MOTHER)]
    then_error(
        when(case, decide_sip(actions=actions)), errors.SipResponsibleNotMember, "sip_responsible_not_member"
    )


def test_a_responsible_member_from_an_organisation_no_longer_covered_is_refused() -> None:
    case = given(*PLANNED, withdraw(MUNICIPALITY_ORG.id))

    then_error(
        when(case, decide_sip()),
        errors.ConsentDoesNotCoverOrganisation,
        "consent_does_not_cover_organisation",
    )


def test_a_responsible_relative_needs_consent_for_relatives() -> None:
    case = given(*PLANNED, mother(), withdraw(relatives=True))

    then_error(
        when(case, decide_sip(actions=[sip_action(ACTION_1, MOTHER)])),
        errors.ConsentDoesNotCoverRelatives,
        "consent_does_not_cover_relatives",
    )


def test_the_clients_own_organisation_does_not_make_the_client_the_region_member() -> None:
    client_with_org = add_member(CLIENT_MEMBER, MemberKind.CLIENT, CLIENT.name, organisation=REGION_ORG)
    case = given(*MAPPED, set_goal(), client_with_org, housing_support())

    then_error(
        when(case, decide_sip(actions=[sip_action(ACTION_2, HOUSING_SUPPORT)])),
        errors.SipRequiresRegionMember,
        "sip_requires_region_member",
    )


def test_a_member_whose_organisation_is_no_longer_covered_is_not_the_region_member() -> None:
    case = given(*PLANNED, withdraw(REGION_ORG.id))

    then_error(
        when(case, decide_sip(actions=[sip_action(ACTION_2, HOUSING_SUPPORT)])),
        errors.SipRequiresRegionMember,
        "sip_requires_region_member",
    )


def test_the_client_takes_part_in_deciding_the_sip() -> None:
    then_error(
        when(given(*PLANNED), decide_sip(participants=(P_ANNA, P_ERIK, P_PSYCHIATRIST, P_HOUSING))),
        errors.SipRequiresClientParticipation,
        "sip_requires_client_participation",
    )


def test_the_client_agrees_to_the_sip() -> None:
    then_error(
        when(given(*PLANNED), decide_sip(client_agreed=False)),
        errors.SipRequiresClientAgreement,
        "sip_requires_client_agreement",
    )


@pytest.mark.parametrize(
    "follow_up",
    [SIP_ON - timedelta(days=1), SIP_ON, date(2025, 6, 4), date(2025, 12, 3)],
    ids=["before", "same_day", "3_months_and_a_day", "9_months"],
)
def test_the_follow_up_comes_after_the_decision_and_within_three_months(follow_up: date) -> None:
    error = then_error(
        when(given(*PLANNED), decide_sip(follow_up=follow_up)),
        errors.SipFollowUpInvalid,
        "sip_follow_up_invalid",
    )
    assert "2025-06-03" in error.detail  # the latest allowed date


@pytest.mark.parametrize(
    "follow_up",
    [date(2025, 3, 4), date(2025, 4, 14), date(2025, 6, 3)],
    ids=["next_day", "six_weeks", "exactly_3_months"],
)
def test_a_follow_up_within_three_months_is_accepted(follow_up: date) -> None:
    [sip, *_] = then_events(
        when(given(*PLANNED), decide_sip(follow_up=follow_up)),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    assert sip.next_follow_up_on == follow_up


def test_the_follow_up_interval_is_configurable() -> None:
    six_months = context(policy=CasePolicy(follow_up_max_months=6))
    one_month = context(policy=CasePolicy(follow_up_max_months=1))

    then_events(
        when(given(*PLANNED), decide_sip(follow_up=date(2025, 9, 3)), ctx=six_months),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    then_error(
        when(given(*PLANNED), decide_sip(follow_up=date(2025, 9, 4)), ctx=six_months),
        errors.SipFollowUpInvalid,
        "sip_follow_up_invalid",
    )
    then_error(
        when(given(*PLANNED), decide_sip(follow_up=date(2025, 4, 14)), ctx=one_month),
        errors.SipFollowUpInvalid,
        "sip_follow_up_invalid",
    )
    then_events(
        when(given(*PLANNED), decide_sip(follow_up=date(2025, 4, 3)), ctx=one_month),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )


def test_three_months_from_the_end_of_a_month_is_the_end_of_the_shorter_month() -> None:
    # 30 November + 3 months = 28 February (2025 is no leap year)
    case = given(*PLANNED)

    then_events(
        when(case, decide_sip(on=date(2024, 11, 30), follow_up=date(2025, 2, 28))),
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )
    then_error(
        when(given(*PLANNED), decide_sip(on=date(2024, 11, 30), follow_up=date(2025, 3, 1))),
        errors.SipFollowUpInvalid,
        "sip_follow_up_invalid",
    )


# ============================================================================= SIP actions


def test_completing_an_action_of_the_current_sip() -> None:
    case = given(*WORKING)

    [event] = then_events(when(case, complete_action(ACTION_1)), ev.ActionCompleted)

    assert event.sip_version == 1
    assert event.action_id == ACTION_1
    assert case.state.sip is not None
    assert case.state.sip.actions[ACTION_1].completed_on == TODAY


def test_completing_an_action_before_any_sip_is_refused() -> None:
    then_error(when(given(*PLANNED), complete_action()), errors.ActionNotFound, "action_not_found")


def test_completing_an_unknown_action_is_refused() -> None:
    unknown = UUID("c4e8d2a1-7f3b-4c9e-8d6a-5b1e3f7a0099")
    then_error(when(given(*WORKING), complete_action(unknown)), errors.ActionNotFound, "action_not_found")


def test_an_action_of_an_earlier_sip_version_is_not_in_the_current_sip() -> None:
    new_action = UUID("c4e8d2a1-7f3b-4c9e-8d6a-5b1e3f7a0003")
    case = given(
        *WORKING,
        decide_sip(on=TODAY, follow_up=date(2025, 6, 13), actions=[sip_action(new_action, PSYCHIATRIST)]),
    )

    then_error(when(case, complete_action(ACTION_1)), errors.ActionNotFound, "action_not_found")


def test_completing_an_action_twice_is_refused() -> None:
    then_error(
        when(given(*WORKING, complete_action(ACTION_1)), complete_action(ACTION_1)),
        errors.ActionAlreadyCompleted,
        "action_already_completed",
    )


# =========================================================================== early warning


def test_updating_the_early_warning_plan_numbers_its_versions() -> None:
    case = given(*CONSENTED)

    [first] = then_events(when(case, early_warning_plan()), ev.EarlyWarningPlanUpdated)
    outcome = when(case, early_warning_plan("somnproblem", "rostprat", on=TODAY))
    [second] = then_events(outcome, ev.EarlyWarningPlanUpdated)

    assert first.plan_version == 1
    assert second.plan_version == 2
    assert outcome.result == 2


def test_an_early_warning_is_triggered_only_against_a_plan() -> None:
    then_error(
        when(given(*WORKING), trigger_warning("somnproblem")),
        errors.EarlyWarningRequiresPlan,
        "early_warning_requires_plan",
    )
    then_error(
        when(given(*WORKING), trigger_warning(other_sign="Har slutat äta")),
        errors.EarlyWarningRequiresPlan,
        "early_warning_requires_plan",
    )


def test_an_early_warning_with_a_sign_from_the_plan() -> None:
    case = given(*WORKING, early_warning_plan())

    [event] = then_events(when(case, trigger_warning("somnproblem", "isolering")), ev.EarlyWarningTriggered)

    assert event.plan_version == 1
    assert event.sign_ids == ["somnproblem", "isolering"]
    assert WARNING_1 in case.state.early_warnings


def test_an_early_warning_with_an_explicit_other_sign() -> None:
    case = given(*WORKING, early_warning_plan())

    [event] = then_events(when(case, trigger_warning(other_sign="Har slutat äta")), ev.EarlyWarningTriggered)
    assert event.other_sign == "Har slutat äta"


def test_an_early_warning_sign_not_in_the_plan_is_refused() -> None:
    case = given(*WORKING, early_warning_plan())

    error = then_error(
        when(case, trigger_warning("somnproblem", "rostprat")),
        errors.EarlyWarningUnknownSign,
        "early_warning_unknown_sign",
    )
    assert "rostprat" in error.detail


def test_an_early_warning_names_some_sign() -> None:
    then_error(
        when(given(*WORKING, early_warning_plan()), trigger_warning()),
        errors.EarlyWarningUnknownSign,
        "early_warning_unknown_sign",
    )


def test_signs_are_judged_against_the_current_plan_version() -> None:
    case = given(
        *WORKING, early_warning_plan("somnproblem", "isolering"), early_warning_plan("rostprat", on=TODAY)
    )

    then_error(
        when(case, trigger_warning("isolering")), errors.EarlyWarningUnknownSign, "early_warning_unknown_sign"
    )
    [event] = then_events(when(case, trigger_warning("rostprat")), ev.EarlyWarningTriggered)
    assert event.plan_version == 2


def test_an_early_warning_id_is_used_once() -> None:
    then_error(
        when(
            given(*WORKING, early_warning_plan(), trigger_warning("somnproblem")),
            trigger_warning("isolering"),
        ),
        errors.EarlyWarningAlreadyTriggered,
        "early_warning_already_triggered",
    )


def test_resolving_an_open_early_warning() -> None:
    case = given(*WORKING, early_warning_plan(), trigger_warning("somnproblem"))

    [event] = then_events(when(case, resolve_warning()), ev.EarlyWarningResolved)

    assert event.warning_id == WARNING_1
    assert case.state.early_warnings[WARNING_1].resolved_on == TODAY


def test_a_warning_is_not_resolved_before_it_was_observed() -> None:
    case = given(*WORKING, early_warning_plan(), trigger_warning("somnproblem"))
    then_error(
        when(case, resolve_warning(on=TODAY - timedelta(days=400))),
        errors.DateOutOfOrder,
        "date_out_of_order",
    )


def test_resolving_an_unknown_early_warning_is_refused() -> None:
    then_error(
        when(given(*WORKING, early_warning_plan()), resolve_warning()),
        errors.EarlyWarningNotOpen,
        "early_warning_not_open",
    )


def test_resolving_a_resolved_early_warning_is_refused() -> None:
    case = given(*WORKING, early_warning_plan(), trigger_warning("somnproblem"), resolve_warning())

    then_error(when(case, resolve_warning()), errors.EarlyWarningNotOpen, "early_warning_not_open")


# ==================================================== commands whose payload the event refuses

SHAPE_REFUSED: dict[str, tuple[tuple[Step, ...], Step]] = {
    "change_rating_sheet_without_rating": (
        CONSENTED,
        lambda case: case.complete_worksheet(
            cmd.CompleteWorksheet(
                worksheet=Worksheet.CHANGE_RATING,
                completed_on=TODAY,
                participants=[P_CLIENT],
                summary="Skattning utan siffror",
            )
        ),
    ),
    "qls_without_areas": (
        CONSENTED,
        lambda case: case.complete_worksheet(
            cmd.CompleteWorksheet(
                worksheet=Worksheet.QLS_100,
                completed_on=TODAY,
                participants=[P_CLIENT],
                summary="QLS-100",
                qls_areas=[],
            )
        ),
    ),
    "consent_naming_an_organisation_twice": (COORDINATED, consent(REGION_ORG, REGION_ORG)),
    "consent_valid_until_before_signed": (COORDINATED, consent(valid_until=date(2025, 1, 1))),
    "entire_withdrawal_naming_an_organisation": (CONSENTED, withdraw(REGION_ORG.id, entire=True)),
    "partial_withdrawal_naming_nothing": (CONSENTED, withdraw(entire=False)),
    "long_term_goal_with_a_parent": (
        (*MAPPED, set_goal()),
        set_goal(UUID(int=0x1005), parent=LONG_TERM_GOAL),
    ),
    "professional_without_organisation": (
        MAPPED,
        add_member(UUID(int=0x4005), MemberKind.PROFESSIONAL, "Jonas Ek"),
    ),
    "sip_with_an_action_id_twice": (
        PLANNED,
        decide_sip(actions=[sip_action(ACTION_1, PSYCHIATRIST), sip_action(ACTION_1, HOUSING_SUPPORT)]),
    ),
    "plan_with_a_sign_twice": (CONSENTED, early_warning_plan("somnproblem", "somnproblem")),
}


@pytest.mark.parametrize(("history", "command"), SHAPE_REFUSED.values(), ids=SHAPE_REFUSED.keys())
def test_a_command_whose_event_would_be_invalid_is_refused_without_trace(
    history: tuple[Step, ...], command: Step
) -> None:
    outcome = when(given(*history), command)  # ``when`` checks that the case is unchanged

    assert outcome.error is not None
    assert outcome.events == []


@pytest.mark.parametrize(("history", "command"), SHAPE_REFUSED.values(), ids=SHAPE_REFUSED.keys())
def test_a_command_whose_event_would_be_invalid_is_refused_as_an_invalid_command(
    history: tuple[Step, ...], command: Step
) -> None:
    outcome = when(given(*history), command)

    assert isinstance(outcome.error, errors.InvalidCommand)
    assert outcome.error.errors, "the error names the fields"
    assert all(e["field"] and e["rule"] and e["message"] for e in outcome.error.errors)


# ============================================================================ who may write

UNRELATED_ACTOR = Actor(
    user_id="karin.svensson",
    organisation_id=UNRELATED_ORG.id,
    organisation_name=UNRELATED_ORG.name,
    principal=Principal.MUNICIPALITY,
)


def test_an_unrelated_organisation_may_not_write() -> None:
    case = given(*WORKING)

    with pytest.raises(errors.ActorNotInvolved) as raised:
        case.ensure_actor_may_write(UNRELATED_ACTOR)

    assert raised.value.rule == "actor_not_involved"
    assert isinstance(raised.value, errors.NotAllowed)
    assert UNRELATED_ORG.id in raised.value.detail


def test_the_opening_and_the_coordinators_organisations_may_write() -> None:
    case = given(*WORKING)
    erik = Actor(ERIK.user_id, MUNICIPALITY_ORG.id, MUNICIPALITY_ORG.name, Principal.MUNICIPALITY)

    case.ensure_actor_may_write(ACTOR)  # the opening organisation
    case.ensure_actor_may_write(erik)  # an assigned coordinator's organisation


def test_an_unassigned_coordinators_organisation_may_no_longer_write() -> None:
    case = given(*WORKING)
    erik = Actor(ERIK.user_id, MUNICIPALITY_ORG.id, MUNICIPALITY_ORG.name, Principal.MUNICIPALITY)
    case.ensure_actor_may_write(erik)

    then_events(when(case, unassign(ERIK.user_id)), ev.CoordinatorUnassigned)

    with pytest.raises(errors.ActorNotInvolved):
        case.ensure_actor_may_write(erik)


# ================================================================= deviations from the method
# A practice rule broken for a stated reason is a recorded deviation (ADR 0017): the
# MethodDeviationRecorded comes right before the fact, in the same command. Without a reason
# the command is refused as before, the rule named and the detail saying a reason may be given.

REASON = "Erik sjuk; Tolvan ville inte skjuta upp. Erik informeras på måndag."


@dataclass(frozen=True)
class Practice:
    history: tuple[Step, ...]
    breaking: Callable[[str | None], Step]  # the command that breaks the rule, with a reason or not
    error: type[errors.CaseRuleViolation]
    rule: str
    then: tuple[type[ev.CaseEventData], ...]  # the events after the deviation
    on: date
    absent: tuple[str, ...] = ()
    follow_up_due_by: date | None = None


PRACTICE_RULES: dict[str, Practice] = {
    "interview without a coordinator": Practice(
        CONSENTED,
        lambda r: worksheet(Worksheet.INTERVIEW, P_ANNA, P_CLIENT, reason=r),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
        (ev.WorksheetCompleted,),
        WORKSHEET_ON,
        absent=(ERIK.user_id,),
    ),
    "network map without a coordinator": Practice(
        CONSENTED,
        lambda r: worksheet(Worksheet.NETWORK_MAP, P_ERIK, P_CLIENT, reason=r),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
        (ev.WorksheetCompleted,),
        WORKSHEET_ON,
        absent=(ANNA.user_id,),
    ),
    "mapping summary without a coordinator": Practice(
        CONSENTED,
        lambda r: summarise(P_ANNA, P_CLIENT, reason=r),
        errors.CoordinatorsMustAttend,
        "coordinators_must_attend",
        (ev.MappingSummarised, ev.PhaseChanged),
        SUMMARISED_ON,
        absent=(ERIK.user_id,),
    ),
    "goal before the mapping summary": Practice(
        CONSENTED,
        lambda r: set_goal(reason=r),
        errors.MappingNotSummarised,
        "mapping_not_summarised",
        (ev.GoalSet,),
        PLANNED_ON,
    ),
    "meeting without a coordinator": Practice(
        WORKING,
        lambda r: meeting(P_ANNA, P_CLIENT, P_PSYCHIATRIST, reason=r),
        errors.MeetingRequiresCoordinators,
        "meeting_requires_coordinators",
        (ev.ResourceGroupMeetingHeld,),
        TODAY,
        absent=(ERIK.user_id,),
    ),
    "SIP before the mapping summary": Practice(
        (*CONSENTED, *GROUP, set_goal(reason=REASON)),
        lambda r: decide_sip(reason=r),
        errors.SipRequiresMappingSummary,
        "sip_requires_mapping_summary",
        (ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged),
        SIP_ON,
    ),
    "follow-up later than three months": Practice(
        PLANNED,
        lambda r: decide_sip(follow_up=date(2025, 7, 1), reason=r),
        errors.SipFollowUpInvalid,
        "sip_follow_up_invalid",
        (ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged),
        SIP_ON,
        follow_up_due_by=date(2025, 6, 3),
    ),
    "early warning without a plan": Practice(
        WORKING,
        lambda r: trigger_warning(other_sign="Har slutat äta och sover inte", reason=r),
        errors.EarlyWarningRequiresPlan,
        "early_warning_requires_plan",
        (ev.EarlyWarningTriggered,),
        TODAY,
    ),
}


@pytest.mark.parametrize("practice", PRACTICE_RULES.values(), ids=PRACTICE_RULES.keys())
def test_a_practice_rule_broken_without_a_reason_is_refused_naming_the_rule_and_the_way_out(
    practice: Practice,
) -> None:
    error = then_error(when(given(*practice.history), practice.breaking(None)), practice.error, practice.rule)

    assert error.deviation_allowed
    assert error.detail.endswith(errors.DEVIATION_HINT)
    assert "give deviation_reason" in str(error)


@pytest.mark.parametrize("practice", PRACTICE_RULES.values(), ids=PRACTICE_RULES.keys())
def test_a_practice_rule_broken_for_a_stated_reason_is_a_recorded_deviation(practice: Practice) -> None:
    case = given(*practice.history)

    deviation, fact, *_ = then_events(
        when(case, practice.breaking(REASON)), ev.MethodDeviationRecorded, *practice.then
    )

    assert isinstance(deviation, ev.MethodDeviationRecorded)
    assert deviation.rule.value == practice.rule
    assert deviation.reason == REASON
    assert deviation.deviates == type(fact).TYPE
    assert deviation.deviated_on == practice.on
    assert tuple(c.user_id for c in deviation.absent_coordinators) == practice.absent
    assert all(c.organisation_id for c in deviation.absent_coordinators)  # each a person
    assert deviation.follow_up_due_by == practice.follow_up_due_by


def test_an_early_warning_without_a_plan_is_judged_against_plan_version_0() -> None:
    case = given(*WORKING)

    _, warning = then_events(
        when(case, trigger_warning(other_sign="Har slutat äta", reason=REASON)),
        ev.MethodDeviationRecorded,
        ev.EarlyWarningTriggered,
    )

    assert warning.plan_version == 0
    assert case.state.early_warnings[WARNING_1].plan_version == 0
    # Without a plan there is no sign to name from it: the sign is described.
    error = then_error(
        when(given(*WORKING), trigger_warning("somnproblem", reason=REASON)),
        errors.EarlyWarningUnknownSign,
        "early_warning_unknown_sign",
    )
    assert "the case has none" in error.detail


def test_one_reason_covers_every_practice_rule_the_command_breaks_each_recorded() -> None:
    case = given(*CONSENTED, *GROUP, set_goal(reason=REASON))

    first, second, sip, *_ = then_events(
        when(case, decide_sip(follow_up=date(2025, 7, 1), reason=REASON)),
        ev.MethodDeviationRecorded,
        ev.MethodDeviationRecorded,
        ev.SipDecided,
        ev.ConsentRenewed,
        ev.PhaseChanged,
    )

    assert [first.rule.value, second.rule.value] == ["sip_requires_mapping_summary", "sip_follow_up_invalid"]
    assert {first.deviates, second.deviates} == {ev.SipDecided.TYPE}
    assert sip.next_follow_up_on == date(2025, 7, 1)


def test_a_reason_where_no_practice_rule_is_broken_records_no_deviation() -> None:
    then_events(when(given(*CONSENTED), worksheet(Worksheet.INTERVIEW, reason=REASON)), ev.WorksheetCompleted)
    then_events(when(given(*WORKING), meeting(reason=REASON)), ev.ResourceGroupMeetingHeld)


@pytest.mark.parametrize(
    "follow_up", [SIP_ON - timedelta(days=1), SIP_ON], ids=["before_the_decision", "on_the_decision_day"]
)
def test_a_follow_up_on_or_before_the_decision_stays_refused_whatever_the_reason(follow_up: date) -> None:
    error = then_error(
        when(given(*PLANNED), decide_sip(follow_up=follow_up, reason=REASON)),
        errors.SipFollowUpInvalid,
        "sip_follow_up_invalid",
    )
    assert not error.deviation_allowed
    assert errors.DEVIATION_HINT not in error.detail


def test_without_any_coordinator_assigned_there_is_no_deviation_to_record() -> None:
    """A deviation explains an absent coordinator; a case nobody coordinates is refused."""
    no_coordinator = given(*CONSENTED, unassign(ANNA.user_id), unassign(ERIK.user_id))
    for step, error_type, rule in (
        (
            worksheet(Worksheet.INTERVIEW, P_CLIENT, reason=REASON),
            errors.CoordinatorsMustAttend,
            "coordinators_must_attend",
        ),
        (summarise(P_CLIENT, reason=REASON), errors.CoordinatorsMustAttend, "coordinators_must_attend"),
    ):
        error = then_error(when(no_coordinator, step), error_type, rule)
        assert not error.deviation_allowed
    working = given(*WORKING, unassign(ANNA.user_id), unassign(ERIK.user_id))
    error = then_error(
        when(working, meeting(P_CLIENT, P_PSYCHIATRIST, reason=REASON)),
        errors.MeetingRequiresCoordinators,
        "meeting_requires_coordinators",
    )
    assert not error.deviation_allowed


PROTECTIVE_RULES: dict[str, tuple[tuple[Step, ...], Step, type[errors.CaseRuleViolation], str]] = {
    "consent before mapping": (
        COORDINATED,
        worksheet(Worksheet.INTERVIEW, P_ANNA, P_CLIENT, reason=REASON),
        errors.ConsentRequired,
        "consent_required",
    ),
    "consent before a meeting": (
        (*WORKING, withdraw()),
        meeting(P_ANNA, P_CLIENT, reason=REASON),
        errors.ConsentWithdrawnRule,
        "consent_withdrawn",
    ),
    "consent before a goal": (
        (*COORDINATED, consent(on=CONSENT_ON, valid_until=date(2025, 2, 1))),
        set_goal(reason=REASON),
        errors.ConsentExpired,
        "consent_expired",
    ),
    "the client's agreement to a SIP": (
        PLANNED,
        decide_sip(client_agreed=False, follow_up=date(2025, 7, 1), reason=REASON),
        errors.SipRequiresClientAgreement,
        "sip_requires_client_agreement",
    ),
    "the client's part in a SIP": (
        PLANNED,
        decide_sip(participants=(P_ANNA, P_ERIK), reason=REASON),
        errors.SipRequiresClientParticipation,
        "sip_requires_client_participation",
    ),
    "a closed case stays closed": (
        (*WORKING, close()),
        trigger_warning(other_sign="Har slutat äta", reason=REASON),
        errors.CaseClosed,
        "case_closed",
    ),
}


@pytest.mark.parametrize(
    ("history", "step", "error", "rule"), PROTECTIVE_RULES.values(), ids=PROTECTIVE_RULES.keys()
)
def test_rules_that_protect_the_client_are_not_bent_by_a_reason(
    history: tuple[Step, ...], step: Step, error: type[errors.CaseRuleViolation], rule: str
) -> None:
    refused = then_error(when(given(*history), step), error, rule)

    assert not refused.deviation_allowed
    assert errors.DEVIATION_HINT not in refused.detail


# ============================================================================ every error


def test_every_named_error_has_a_distinct_rule_and_is_covered_here() -> None:
    """A new rule in errors.py must get a spec in this module (corrections: test_corrections.py)."""

    rule_classes = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.CaseRuleViolation)
        and cls not in (errors.CaseRuleViolation, errors.NotAllowed)
    }
    rules = [cls.rule for cls in rule_classes]
    assert len(rules) == len(set(rules))
    here = Path(__file__)
    source = here.read_text(encoding="utf-8") + (here.parent / "test_corrections.py").read_text(
        encoding="utf-8"
    )
    untested = sorted(cls.__name__ for cls in rule_classes if f'"{cls.rule}"' not in source)
    assert untested == []


def test_the_story_of_a_whole_case() -> None:
    """One case from assignment to closing, with the event types of every command."""
    case = given()
    story: list[tuple[Step, list[type[ev.CaseEventData]]]] = [
        (assign(ANNA), [ev.CoordinatorAssigned]),
        (assign(ERIK), [ev.CoordinatorAssigned]),
        (consent(), [ev.ConsentGiven]),
        (worksheet(Worksheet.CHANGE_RATING, P_CLIENT), [ev.WorksheetCompleted]),
        (worksheet(Worksheet.INTERVIEW, *BOTH_COORDINATORS), [ev.WorksheetCompleted]),
        (summarise(), [ev.MappingSummarised, ev.PhaseChanged]),
        (set_goal(), [ev.GoalSet]),
        (sub_goal(), [ev.GoalSet]),
        (client_member(), [ev.ResourceGroupMemberAdded]),
        (psychiatrist(), [ev.ResourceGroupMemberAdded]),
        (housing_support(), [ev.ResourceGroupMemberAdded]),
        (early_warning_plan(), [ev.EarlyWarningPlanUpdated]),
        (decide_sip(), [ev.SipDecided, ev.ConsentRenewed, ev.PhaseChanged]),
        (meeting(P_ANNA, P_ERIK, P_CLIENT, P_HOUSING), [ev.ResourceGroupMeetingHeld]),
        (complete_action(ACTION_1), [ev.ActionCompleted]),
        (trigger_warning("isolering"), [ev.EarlyWarningTriggered]),
        (resolve_warning(), [ev.EarlyWarningResolved]),
        (change_phase(Phase.FOLLOW_UP), [ev.PhaseChanged]),
        (goal_status(LONG_TERM_GOAL, GoalStatus.ACHIEVED), [ev.GoalStatusChanged]),
        (remove_member(HOUSING_SUPPORT), [ev.ResourceGroupMemberRemoved]),
        (close(ClosingReason.GOALS_ACHIEVED), [ev.CaseClosed, ev.PhaseChanged]),
    ]
    for step, expected in story:
        then_events(when(case, step), *expected)
    assert case.version == 1 + sum(len(expected) for _, expected in story)
    assert case.state.phase is Phase.CLOSED
    assert [e.originator_version for e in case.pending_events] == list(range(1, case.version + 1))


# ============================================================================ the client's say


def test_the_client_withdraws_their_consent_in_their_own_name() -> None:
    case = given(*WORKING)
    case.ensure_actor_may_write(CLIENT_ACTOR)

    (event,) = then_events(when(case, withdraw(on=TODAY), ctx=AS_CLIENT), ev.ConsentWithdrawn)

    assert event.entire
    assert case.pending_events[-1].meta.actor_id == "191212121212"
    assert case.pending_events[-1].meta.principal is ActorPrincipal.CLIENT
    assert case.pending_events[-1].meta.actor_organisation == ""


def test_the_client_withdraws_their_consent_for_one_organisation() -> None:
    case = given(*WORKING)

    outcome = when(case, withdraw(MUNICIPALITY_ORG.id, on=TODAY), ctx=AS_CLIENT)
    (event,) = then_events(outcome, ev.ConsentWithdrawn)

    assert (event.entire, event.organisation_ids) == (False, [MUNICIPALITY_ORG.id])


def test_someone_else_signed_in_as_a_client_may_not_write_this_case() -> None:
    case = given(*WORKING)

    with pytest.raises(errors.NotTheClient) as refused:
        case.ensure_actor_may_write(SOMEONE_ELSE)
    assert refused.value.rule == "not_the_client"


@pytest.mark.parametrize(
    "step",
    [set_goal(), close(), assign(SARA), consent(), worksheet()],
    ids=["goal", "close", "assign", "consent", "worksheet"],
)
def test_a_client_records_nothing_but_their_withdrawal_and_confirmation(step: Step) -> None:
    case = given(*WORKING)

    then_error(when(case, step, ctx=AS_CLIENT), errors.ClientMayNotRecord, "client_may_not_record")


def test_a_case_is_not_opened_by_its_client() -> None:
    with pytest.raises(errors.ClientMayNotRecord):
        Case.open(AS_CLIENT, open_case())


def test_the_client_confirms_the_current_sip_in_their_own_name() -> None:
    case = given(*WORKING)

    (event,) = then_events(when(case, confirm(1), ctx=AS_CLIENT), ev.SipConfirmedByClient)

    assert (event.sip_version, event.confirmed_on) == (1, TODAY)
    assert case.state.sip is not None
    assert case.state.sip.confirmed_by_client_on == TODAY


def test_a_sip_is_confirmed_by_the_client_only_once() -> None:
    case = given(*WORKING)
    when(case, confirm(1), ctx=AS_CLIENT)

    then_error(when(case, confirm(1), ctx=AS_CLIENT), errors.SipAlreadyConfirmed, "sip_already_confirmed")


def test_only_the_current_sip_can_be_confirmed() -> None:
    then_error(when(given(*WORKING), confirm(2), ctx=AS_CLIENT), errors.NoSipToConfirm, "no_sip_to_confirm")
    then_error(when(given(*PLANNED), confirm(1), ctx=AS_CLIENT), errors.NoSipToConfirm, "no_sip_to_confirm")


def test_a_coordinator_does_not_confirm_a_sip_for_the_client() -> None:
    then_error(when(given(*WORKING), confirm(1)), errors.OnlyTheClientConfirms, "only_the_client_confirms")


def test_a_client_dates_what_they_record_today() -> None:
    """A coordinator records what happened (a consent withdrawn by letter last week); the client
    records what they do now."""
    then_events(when(given(*WORKING), withdraw(on=SIP_ON)), ev.ConsentWithdrawn)
    outcome = when(given(*WORKING), withdraw(on=SIP_ON), ctx=AS_CLIENT)
    then_error(outcome, errors.ClientDatesToday, "client_dates_today")
    outcome = when(given(*WORKING), confirm(1, on=SIP_ON), ctx=AS_CLIENT)
    then_error(outcome, errors.ClientDatesToday, "client_dates_today")


# ======================================================================= the contact logbook
def test_a_contact_on_a_saturday_evening_is_recorded_with_its_staff_as_persons() -> None:
    case = given(*COORDINATED)

    [contact] = then_events(when(case, record_contact()), ev.ClientContactRecorded)

    assert contact.occurred_at == SATURDAY_EVENING
    assert contact.mode is ContactMode.OUTREACH
    assert contact.duration_minutes == 45
    # No staff named: the one recording it, as the person the case knows.
    [anna] = contact.staff
    assert (anna.organisation, anna.user_id, anna.name) == (REGION_ORG, ANNA.user_id, ANNA.name)
    assert case.state.contacts[contact.contact_id] == date(2025, 3, 8)


def test_a_contact_names_each_member_of_staff_who_took_part_and_others_by_role() -> None:
    case = given(*COORDINATED, consent(), psychiatrist())
    staff = [
        cmd.StaffRef(organisation_id=MUNICIPALITY_ORG.id, user_id=ERIK.user_id),
        cmd.StaffRef(organisation_id=REGION_ORG.id, user_id="dr.berg"),  # a colleague at the region
    ]
    others = [ev.ContactOther(role="mamma")]

    [contact] = then_events(
        when(case, record_contact(mode=ContactMode.VISIT, staff=staff, others=others)),
        ev.ClientContactRecorded,
    )

    assert [(p.organisation.id, p.user_id, p.name) for p in contact.staff] == [
        (MUNICIPALITY_ORG.id, ERIK.user_id, ERIK.name),
        (REGION_ORG.id, "dr.berg", None),  # staff of an organisation that writes the case
    ]
    assert contact.others == others


def test_a_user_id_at_an_organisation_that_is_not_the_cases_names_nobody_involved() -> None:
    case = given(*COORDINATED)
    stranger = [cmd.StaffRef(organisation_id=UNRELATED_ORG.id, user_id=ANNA.user_id)]

    then_error(
        when(case, record_contact(staff=stranger)),
        errors.ContactStaffNotInvolved,
        "contact_staff_not_involved",
    )


def test_a_contact_needs_no_consent_and_a_withdrawn_consent_does_not_stop_the_logbook() -> None:
    then_events(when(given(*COORDINATED), record_contact()), ev.ClientContactRecorded)
    withdrawn = given(*CONSENTED, withdraw())
    then_events(when(withdrawn, record_contact()), ev.ClientContactRecorded)
    then_events(when(withdrawn, set_contact_period()), ev.ContactPeriodSet)


def test_a_contact_is_not_in_the_future_beyond_a_small_clock_skew() -> None:
    case = given(*COORDINATED)
    then_events(when(case, record_contact(at=SPEC_NOW + timedelta(minutes=4))), ev.ClientContactRecorded)
    then_error(
        when(case, record_contact(at=SPEC_NOW + timedelta(minutes=6))), errors.DateInFuture, "date_in_future"
    )


def test_a_contact_is_not_before_the_case_was_opened_on_its_day_in_stockholm() -> None:
    case = given(*COORDINATED)
    # 23:30 UTC on 12 January is 00:30 on the 13th in Stockholm: the day the case was opened.
    then_events(
        when(case, record_contact(at=datetime(2025, 1, 12, 23, 30, tzinfo=UTC_))), ev.ClientContactRecorded
    )
    then_error(
        when(case, record_contact(at=datetime(2025, 1, 12, 22, 30, tzinfo=UTC_))),
        errors.DateOutOfOrder,
        "date_out_of_order",
    )


def test_a_contact_id_is_recorded_once() -> None:
    contact_id = UUID("4a7c2e1b-9d3f-4b8a-a6e5-2c1d0f9e8b7a")
    case = given(*COORDINATED, record_contact(contact_id=contact_id))
    then_error(
        when(case, record_contact(contact_id=contact_id)),
        errors.ContactAlreadyRecorded,
        "contact_already_recorded",
    )


def test_a_closed_case_records_no_contact_and_no_period() -> None:
    case = given(*COORDINATED, close())
    then_error(when(case, record_contact()), errors.CaseClosed, "case_closed")
    then_error(when(case, set_contact_period()), errors.CaseClosed, "case_closed")


@pytest.mark.parametrize("step", [record_contact(), set_contact_period()], ids=["contact", "period"])
def test_the_client_records_no_contact_and_sets_no_period(step: Step) -> None:
    then_error(
        when(given(*COORDINATED), step, ctx=AS_CLIENT), errors.ClientMayNotRecord, "client_may_not_record"
    )


def test_the_coordinators_set_the_contact_period_from_a_date() -> None:
    case = given(*COORDINATED)

    [period_set] = then_events(
        when(case, set_contact_period(ContactPeriod.SOCIAL_RECOVERY, on=date(2025, 3, 10))),
        ev.ContactPeriodSet,
    )

    assert period_set.period is ContactPeriod.SOCIAL_RECOVERY
    assert period_set.applies_from == date(2025, 3, 10)
    assert (period_set.set_by.organisation, period_set.set_by.user_id) == (REGION_ORG, ANNA.user_id)
    assert period_set.set_by.name == ANNA.name
    assert (case.state.contact_period, case.state.contact_period_from) == (
        ContactPeriod.SOCIAL_RECOVERY,
        date(2025, 3, 10),
    )


def test_a_contact_period_keeps_its_order_and_changes_something() -> None:
    case = given(*COORDINATED, set_contact_period(ContactPeriod.ORIENTATION, on=date(2025, 3, 10)))
    then_error(
        when(case, set_contact_period(ContactPeriod.ORIENTATION, on=TODAY)),
        errors.ContactPeriodUnchanged,
        "contact_period_unchanged",
    )
    then_error(
        when(case, set_contact_period(ContactPeriod.ASSESSMENT, on=date(2025, 3, 9))),
        errors.DateOutOfOrder,
        "date_out_of_order",
    )
    then_error(
        when(case, set_contact_period(ContactPeriod.ASSESSMENT, on=TOMORROW)),
        errors.DateInFuture,
        "date_in_future",
    )
    then_events(when(case, set_contact_period(ContactPeriod.ASSESSMENT, on=TODAY)), ev.ContactPeriodSet)


def test_a_contact_outside_the_sane_range_of_minutes_is_refused() -> None:
    case = given(*COORDINATED)
    for minutes in (0, 721):
        with pytest.raises(ValidationError):
            record_contact(minutes=minutes)(case)
