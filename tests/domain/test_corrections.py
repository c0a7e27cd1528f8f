"""Corrections and retractions of earlier entries, keeping the original (ADR 0018).

Each correctable kind (a worksheet, a goal, a resource group meeting held, a SIP action's
completion) is corrected and retracted, and every refusal is shown with its named rule.
"""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from services.case.domain import commands as cmd
from services.case.domain import errors
from services.case.domain.case import WorksheetRecord
from vss_contracts import case_events as ev
from vss_contracts.types import GoalStatus, Worksheet

from .specs import (
    ACTION_1,
    AS_CLIENT,
    CORRECTION_REASON,
    LONG_TERM_GOAL,
    MEETING_ON,
    OPENED_ON,
    P_CLIENT,
    PLANNED,
    SIP_ON,
    TODAY,
    TOMORROW,
    WORKING,
    WORKSHEET_ON,
    action_value,
    close,
    complete_action,
    correct,
    decide_sip,
    entry_id,
    given,
    goal_status,
    goal_value,
    meeting,
    meeting_value,
    rating_value,
    retract,
    sub_goal,
    then_error,
    then_events,
    when,
    withdraw,
    worksheet,
)

RATED = (*WORKING[:3], worksheet(Worksheet.CHANGE_RATING, P_CLIENT))
MET = (*WORKING, meeting(on=MEETING_ON))
DONE = (*WORKING, complete_action(ACTION_1))


# =========================================================================== worksheets
def test_a_worksheet_corrected_records_the_new_value_naming_the_entry() -> None:
    case = given(*RATED)
    original = entry_id(case, ev.WorksheetCompleted)
    (event,) = then_events(when(case, correct(ev.WorksheetCompleted, rating_value())), ev.EntryCorrected)
    assert event.corrects_event_id == original
    assert event.corrects_type == ev.WorksheetCompleted.TYPE
    assert event.reason == CORRECTION_REASON
    assert event.value == rating_value()
    assert case.state.worksheets == [WorksheetRecord(Worksheet.CHANGE_RATING, WORKSHEET_ON, [P_CLIENT])]
    assert case.state.entries[original].corrections == 1


def test_a_corrected_worksheet_still_matches_its_sheet() -> None:
    outcome = when(given(*RATED), correct(ev.WorksheetCompleted, rating_value(rating=None)))
    assert isinstance(outcome.error, errors.InvalidCommand)
    assert "the change_rating worksheet requires change_rating" in str(outcome.error)


def test_a_corrected_worksheet_date_is_neither_tomorrow_nor_before_the_case() -> None:
    case = given(*RATED)
    then_error(
        when(case, correct(ev.WorksheetCompleted, rating_value(on=TOMORROW))),
        errors.DateInFuture,
        "date_in_future",
    )
    refused = then_error(
        when(case, correct(ev.WorksheetCompleted, rating_value(on=date(2025, 1, 1)))),
        errors.DateOutOfOrder,
        "date_out_of_order",
    )
    assert "value.completed_on" in refused.detail


def test_a_worksheet_retracted_counts_no_more() -> None:
    case = given(*RATED)
    original = entry_id(case, ev.WorksheetCompleted)
    (event,) = then_events(when(case, retract(ev.WorksheetCompleted)), ev.EntryRetracted)
    assert (event.corrects_event_id, event.corrects_type) == (original, ev.WorksheetCompleted.TYPE)
    assert event.retracted_on == TODAY
    assert case.state.worksheets == []
    assert case.state.entries[original].retracted_on == TODAY


# ================================================================================ goals
def test_a_goal_corrected_keeps_its_id_kind_and_status() -> None:
    case = given(*PLANNED, goal_status(LONG_TERM_GOAL, GoalStatus.PARTIALLY_ACHIEVED))
    then_events(
        when(case, correct(ev.GoalSet, goal_value(), event_id=entry_id(case, ev.GoalSet, 0))),
        ev.EntryCorrected,
    )
    goal = case.state.goals[LONG_TERM_GOAL]
    assert goal.description == "Ha ett eget boende med stöd inom ett år"
    assert goal.status is GoalStatus.PARTIALLY_ACHIEVED


def test_a_goal_retracted_can_no_longer_be_named() -> None:
    case = given(*PLANNED)
    then_events(when(case, retract(ev.GoalSet, event_id=entry_id(case, ev.GoalSet, 0))), ev.EntryRetracted)
    assert LONG_TERM_GOAL not in case.state.goals
    then_error(
        when(case, goal_status(LONG_TERM_GOAL, GoalStatus.ACHIEVED)), errors.GoalNotFound, "goal_not_found"
    )
    then_error(when(case, decide_sip()), errors.SipRequiresGoal, "sip_requires_goal")
    then_error(when(case, sub_goal(UUID(int=3))), errors.GoalParentInvalid, "goal_parent_invalid")


# =============================================================== resource group meetings
def test_a_meeting_held_corrected_moves_its_date() -> None:
    case = given(*MET)
    then_events(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value(date(2025, 3, 11)))), ev.EntryCorrected
    )
    assert case.state.meetings_held == [date(2025, 3, 11)]


def test_a_meeting_held_is_not_corrected_into_the_future() -> None:
    then_error(
        when(given(*MET), correct(ev.ResourceGroupMeetingHeld, meeting_value(TOMORROW))),
        errors.DateInFuture,
        "date_in_future",
    )


def test_a_meeting_held_retracted_counts_no_more() -> None:
    case = given(*MET)
    then_events(when(case, retract(ev.ResourceGroupMeetingHeld)), ev.EntryRetracted)
    assert case.state.meetings_held == []


# ========================================================================== SIP actions
def test_a_sip_actions_completion_corrected_moves_its_date() -> None:
    case = given(*DONE)
    then_events(when(case, correct(ev.ActionCompleted, action_value())), ev.EntryCorrected)
    assert case.state.sip is not None
    assert case.state.sip.actions[ACTION_1].completed_on == date(2025, 3, 12)


def test_a_sip_actions_completion_is_not_corrected_to_before_its_sip() -> None:
    refused = then_error(
        when(given(*DONE), correct(ev.ActionCompleted, action_value(date(2025, 3, 1)))),
        errors.DateOutOfOrder,
        "date_out_of_order",
    )
    assert str(SIP_ON) in refused.detail


def test_a_sip_actions_completion_retracted_opens_the_action_again() -> None:
    case = given(*DONE)
    then_events(when(case, retract(ev.ActionCompleted)), ev.EntryRetracted)
    assert case.state.sip is not None
    assert case.state.sip.actions[ACTION_1].completed_on is None
    then_events(when(case, complete_action(ACTION_1)), ev.ActionCompleted)


# ======================================================================= corrected again
def test_a_correction_is_corrected_by_naming_the_entry_again_and_the_latest_wins() -> None:
    case = given(*MET)
    original = entry_id(case, ev.ResourceGroupMeetingHeld)
    when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value(date(2025, 3, 11))))
    then_events(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value(date(2025, 3, 12)), event_id=original)),
        ev.EntryCorrected,
    )
    assert case.state.meetings_held == [date(2025, 3, 12)]
    assert case.state.entries[original].corrections == 2


def test_a_correction_itself_is_not_named() -> None:
    case = given(*MET, correct(ev.ResourceGroupMeetingHeld, meeting_value()))
    refused = then_error(
        when(
            case,
            correct(ev.ResourceGroupMeetingHeld, meeting_value(), event_id=entry_id(case, ev.EntryCorrected)),
        ),
        errors.EntryNotCorrectable,
        "entry_not_correctable",
    )
    assert "names the entry's own event" in refused.detail


# ============================================================================= refusals
def test_an_event_of_another_case_or_none_is_not_found() -> None:
    then_error(
        when(given(*MET), retract(ev.ResourceGroupMeetingHeld, event_id=UUID(int=7))),
        errors.EntryNotFound,
        "entry_not_found",
    )


@pytest.mark.parametrize("data_type", [ev.ConsentGiven, ev.CoordinatorAssigned, ev.SipDecided, ev.CaseOpened])
def test_only_the_four_kinds_of_entry_are_corrected_or_retracted(data_type: type[ev.CaseEventData]) -> None:
    case = given(*WORKING)
    event_id = next(iter(case.state.event_types)) if data_type is ev.CaseOpened else entry_id(case, data_type)
    then_error(
        when(case, retract(data_type, event_id=event_id)), errors.EntryNotCorrectable, "entry_not_correctable"
    )
    then_error(
        when(case, correct(data_type, meeting_value(), event_id=event_id)),
        errors.EntryNotCorrectable,
        "entry_not_correctable",
    )


def test_a_retracted_entry_is_neither_corrected_nor_retracted_again() -> None:
    case = given(*MET, retract(ev.ResourceGroupMeetingHeld))
    original = entry_id(case, ev.ResourceGroupMeetingHeld)
    then_error(
        when(case, retract(ev.ResourceGroupMeetingHeld, event_id=original)),
        errors.EntryRetracted,
        "entry_retracted",
    )
    then_error(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value(), event_id=original)),
        errors.EntryRetracted,
        "entry_retracted",
    )


def test_a_value_of_another_kind_is_refused() -> None:
    refused = then_error(
        when(given(*MET), correct(ev.ResourceGroupMeetingHeld, goal_value(), event_id=None)),
        errors.CorrectionKindMismatch,
        "correction_kind_mismatch",
    )
    assert "resource_group_meeting" in refused.detail


def test_a_closed_case_stays_closed() -> None:
    case = given(*MET, close())
    then_error(when(case, retract(ev.ResourceGroupMeetingHeld)), errors.CaseClosed, "case_closed")
    then_error(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value())), errors.CaseClosed, "case_closed"
    )


def test_a_client_records_no_correction() -> None:
    case = given(*MET)
    then_error(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value()), ctx=AS_CLIENT),
        errors.ClientMayNotRecord,
        "client_may_not_record",
    )
    then_error(
        when(case, retract(ev.ResourceGroupMeetingHeld), ctx=AS_CLIENT),
        errors.ClientMayNotRecord,
        "client_may_not_record",
    )


def test_after_consent_is_withdrawn_an_entry_is_retracted_but_not_corrected() -> None:
    case = given(*MET, withdraw(on=TODAY))
    then_error(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value())),
        errors.ConsentWithdrawnRule,
        "consent_withdrawn",
    )
    then_events(when(case, retract(ev.ResourceGroupMeetingHeld)), ev.EntryRetracted)


def test_the_correction_date_is_neither_tomorrow_nor_before_the_case() -> None:
    case = given(*MET)
    then_error(
        when(case, retract(ev.ResourceGroupMeetingHeld, on=TOMORROW)), errors.DateInFuture, "date_in_future"
    )
    then_error(
        when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value(), on=OPENED_ON - timedelta(days=1))),
        errors.DateOutOfOrder,
        "date_out_of_order",
    )


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_correction_gives_a_reason_of_1_to_500_characters(reason: str) -> None:
    with pytest.raises(ValidationError, match="reason"):
        cmd.RetractEntry(corrects_event_id=UUID(int=1), reason=reason, retracted_on=TODAY)
    with pytest.raises(ValidationError, match="reason"):
        cmd.CorrectEntry(
            corrects_event_id=UUID(int=1), reason=reason, corrected_on=TODAY, value=meeting_value()
        )


def test_the_original_entrys_event_stays_as_it_was() -> None:
    case = given(*MET)
    stored = [(e.meta.event_id, e.meta.hash, e.data) for e in case.pending_events]  # type: ignore[attr-defined]
    when(case, correct(ev.ResourceGroupMeetingHeld, meeting_value(date(2025, 3, 11))))
    when(case, retract(ev.ResourceGroupMeetingHeld))
    after = [(e.meta.event_id, e.meta.hash, e.data) for e in case.pending_events]  # type: ignore[attr-defined]
    assert after[: len(stored)] == stored


def test_a_corrected_worksheets_mismatch_names_the_value() -> None:
    outcome = when(given(*RATED), correct(ev.WorksheetCompleted, rating_value(rating=None)))
    assert isinstance(outcome.error, errors.InvalidCommand)
    assert [e["field"] for e in outcome.error.errors] == ["value"]
