"""Corrections and retractions in the overview and the journal: the current value, the
original beside it, each correction with its reason, date and who; a retracted entry shown
as retracted, never removed (ADR 0018)."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.projections.application.projector import Projector
from services.projections.application.queries import Queries, Reader
from services.projections.domain import case_view, journal
from services.projections.domain.events import CaseEventRecord
from services.projections.presentation import render_my_plan_page
from tests.domain import specs
from tests.unit.projections.fakes import InMemoryAccessLog, InMemoryReadModels
from tests.unit.projections.plan_view import access_log, meetings
from tests.unit.projections.test_plan_pages import CLIENT, LINKS, text_of
from tests.unit.stories import Stream, story
from vss_contracts import case_events as ev
from vss_contracts.types import Worksheet

RATED = (*specs.CONSENTED, specs.worksheet(Worksheet.CHANGE_RATING, specs.P_CLIENT))
MET = (*specs.WORKING, specs.meeting(on=specs.MEETING_ON))
DONE = (*specs.WORKING, specs.complete_action(specs.ACTION_1))


def records_of(*steps: specs.Step) -> list[CaseEventRecord]:
    return Stream().records(story(*steps))


def view_from(records: list[CaseEventRecord]) -> dict[str, Any]:
    view, _ = case_view.start(records[0])
    for record in records[1:]:
        assert case_view.apply(view, record)
    return view


def entry_of(view: dict[str, Any], records: list[CaseEventRecord], type_name: str) -> dict[str, Any]:
    event_id = [r.event_id for r in records if r.type == type_name][-1]
    entry: dict[str, Any] = view["entries"][event_id]
    return entry


def test_a_corrected_change_rating_shows_the_new_value_and_the_original() -> None:
    records = records_of(*RATED, specs.correct(ev.WorksheetCompleted, specs.rating_value()))
    view = view_from(records)
    entry = entry_of(view, records, ev.WorksheetCompleted.TYPE)
    assert entry["original"]["change_rating"] == {
        "individually": 3,
        "interpersonally": 5,
        "socially": 2,
        "overall": 4,
    }
    assert entry["value"]["change_rating"]["socially"] == 4
    (correction,) = entry["corrections"]
    assert correction["reason"] == specs.CORRECTION_REASON
    assert correction["corrected_on"] == specs.TODAY.isoformat()
    assert correction["by"] == {
        "user_id": specs.ACTOR.user_id,
        "organisation_id": specs.ACTOR.organisation_id,
    }
    assert view["latest_change_rating"]["total"] == 16
    assert view["facts"]["latest_rating_total"] == 16  # statistics count the corrected value


def test_a_retracted_worksheet_stays_listed_and_leaves_the_checklist() -> None:
    records = records_of(*RATED, specs.retract(ev.WorksheetCompleted))
    view = view_from(records)
    entry = entry_of(view, records, ev.WorksheetCompleted.TYPE)
    assert entry["retracted"]["reason"] == specs.CORRECTION_REASON
    assert entry["value"]["completed_on"] == specs.WORKSHEET_ON.isoformat()  # what was written
    step = next(s for s in view["checklist"] if s["step"] == Worksheet.CHANGE_RATING.value)
    assert (step["done"], step["times"], step["completed_on"]) == (False, 0, None)
    assert view["latest_change_rating"] is None
    assert view["facts"]["rating_count"] == 0  # statistics no longer count it


def first_goal(step: Any) -> specs.Step:
    """``step`` (a correction or retraction maker) naming the case's first goal, the long-term one."""
    return lambda case: step(specs.entry_id(case, ev.GoalSet, 0))(case)


def test_a_corrected_goal_shows_its_new_text_and_keeps_the_original() -> None:
    correcting = first_goal(lambda event_id: specs.correct(ev.GoalSet, specs.goal_value(), event_id=event_id))
    view = view_from(records_of(*specs.PLANNED, correcting))
    goal = next(g for g in view["goals"] if g["goal_id"] == str(specs.LONG_TERM_GOAL))
    assert (goal["description"], goal["corrected"]) == ("Ha ett eget boende med stöd inom ett år", True)
    (entry,) = [e for e in view["entries"].values() if e["corrections"]]
    assert entry["original"]["description"] == "Ha ett eget boende"
    assert entry["value"]["description"] == goal["description"]


def test_a_retracted_goal_is_shown_as_retracted_not_removed() -> None:
    retracting = first_goal(lambda event_id: specs.retract(ev.GoalSet, event_id=event_id))
    view = view_from(records_of(*specs.PLANNED, retracting))
    goal = next(g for g in view["goals"] if g["goal_id"] == str(specs.LONG_TERM_GOAL))
    assert goal["description"] == "Ha ett eget boende"
    assert goal["retracted"]["reason"] == specs.CORRECTION_REASON


def test_a_meeting_corrected_twice_keeps_every_value_and_the_latest_wins() -> None:
    def again(case: Any) -> None:
        original = specs.entry_id(case, ev.ResourceGroupMeetingHeld)
        specs.correct(ev.ResourceGroupMeetingHeld, specs.meeting_value(date(2025, 3, 12)), event_id=original)(
            case
        )

    records = records_of(
        *MET, specs.correct(ev.ResourceGroupMeetingHeld, specs.meeting_value(date(2025, 3, 11))), again
    )
    view = view_from(records)
    entry = entry_of(view, records, ev.ResourceGroupMeetingHeld.TYPE)
    assert entry["original"]["held_on"] == specs.MEETING_ON.isoformat()
    assert [c["value"]["held_on"] for c in entry["corrections"]] == ["2025-03-11", "2025-03-12"]
    assert entry["value"]["held_on"] == "2025-03-12"
    assert view["meetings"] == {"count": 1, "last_held_on": "2025-03-12"}


def test_a_retracted_meeting_counts_no_more() -> None:
    view = view_from(records_of(*MET, specs.retract(ev.ResourceGroupMeetingHeld)))
    assert view["meetings"] == {"count": 0, "last_held_on": None}


def test_a_sip_actions_corrected_and_retracted_completion() -> None:
    corrected = view_from(records_of(*DONE, specs.correct(ev.ActionCompleted, specs.action_value())))
    action = next(a for a in corrected["sip"]["actions"] if a["action_id"] == str(specs.ACTION_1))
    assert action["done_on"] == "2025-03-12"
    retracted = view_from(records_of(*DONE, specs.retract(ev.ActionCompleted)))
    action = next(a for a in retracted["sip"]["actions"] if a["action_id"] == str(specs.ACTION_1))
    assert action["done_on"] is None
    assert case_view.overdue_actions(retracted, "2025-05-01")  # open again, and due


def test_the_journal_keeps_the_original_line_and_adds_the_correction() -> None:
    records = records_of(
        *MET,
        specs.correct(ev.ResourceGroupMeetingHeld, specs.meeting_value(date(2025, 3, 11))),
        specs.retract(ev.ResourceGroupMeetingHeld),
    )
    lines = [journal.summary(r) for r in records]
    original = next(r for r in records if r.type == ev.ResourceGroupMeetingHeld.TYPE)
    assert journal.summary(original).startswith(f"Resource group meeting held on {specs.MEETING_ON}")
    assert lines[-2] == (
        f"Correction on {specs.TODAY} of the resource group meeting recorded as event {original.event_id}:"
        " now held on 2025-03-11 with Anna Lindqvist, Erik Johansson, Tolvan Tolvansson; the original stays,"
        " reason given"
    )
    assert lines[-1].startswith(
        f"Retraction on {specs.TODAY} of the resource group meeting recorded as event"
    )
    assert specs.CORRECTION_REASON not in " ".join(lines)  # free text: the overview's, not the journal's


def test_a_view_stored_before_entries_were_kept_shows_the_correction_without_applying_it() -> None:
    records = records_of(*MET, specs.retract(ev.ResourceGroupMeetingHeld))
    view = view_from(records[:-1])
    del view["entries"]  # as stored before ADR 0018
    case_view.apply(view, records[-1])
    (entry,) = view["entries"].values()
    assert (entry["kind"], entry["value"], entry["retracted"]["reason"]) == (
        "resource_group_meeting",
        None,
        specs.CORRECTION_REASON,
    )
    assert view["meetings"]["count"] == 1  # a rebuild applies it


def test_the_clients_plan_shows_the_corrected_goal_with_a_note() -> None:
    correcting = first_goal(lambda event_id: specs.correct(ev.GoalSet, specs.goal_value(), event_id=event_id))
    view = view_from(records_of(*specs.WORKING, correcting))
    html = render_my_plan_page(
        case_view.mark_overdue(view, specs.TODAY.isoformat()),
        meetings(),
        access_log(),
        links=LINKS,
        client=CLIENT,
    )
    text = text_of(html)
    assert "Långsiktigt mål: Ha ett eget boende med stöd inom ett år" in text
    assert f"(Rättat 14 mars 2025: {specs.CORRECTION_REASON})" in text
    assert "Ha ett eget boende (till" not in text  # the client's plan shows the current text


def test_the_clients_plan_shows_a_struck_goal_as_struck() -> None:
    retracting = first_goal(lambda event_id: specs.retract(ev.GoalSet, event_id=event_id))
    view = view_from(records_of(*specs.WORKING, retracting))
    html = render_my_plan_page(
        case_view.mark_overdue(view, specs.TODAY.isoformat()),
        meetings(),
        access_log(),
        links=LINKS,
        client=CLIENT,
    )
    assert f"(Struket 14 mars 2025: {specs.CORRECTION_REASON})" in text_of(html)


def test_the_journal_marks_the_original_line_with_its_correction_and_retraction() -> None:
    records = records_of(
        *MET,
        specs.correct(ev.ResourceGroupMeetingHeld, specs.meeting_value(date(2025, 3, 11))),
        specs.retract(ev.ResourceGroupMeetingHeld),
    )
    view = view_from(records)
    items = [{"event_id": r.event_id, "summary": journal.summary(r)} for r in records]
    marked = journal.mark_corrections(items, view)
    original = next(
        i for i, r in zip(marked, records, strict=True) if r.type == ev.ResourceGroupMeetingHeld.TYPE
    )
    assert original["summary"].startswith(f"Resource group meeting held on {specs.MEETING_ON}")  # as written
    assert original["corrected_by"] == [records[-2].event_id]
    assert original["retracted_by"] == records[-1].event_id
    assert (marked[-1]["corrected_by"], marked[-1]["retracted_by"]) == ([], None)


def test_the_journal_query_marks_the_corrected_line_through_the_projector() -> None:
    models = InMemoryReadModels()
    queries = Queries(models, InMemoryAccessLog(), lambda: specs.TODAY)
    records = records_of(
        *MET, specs.correct(ev.ResourceGroupMeetingHeld, specs.meeting_value(date(2025, 3, 11)))
    )
    Projector(models).apply(records)
    reader = Reader(specs.ANNA.user_id, specs.REGION_ORG.id, frozenset({"coordinator"}))
    items = queries.journal(reader, str(specs.CASE_ID), 0, 100).items
    meeting = next(i for i in items if i["type"] == ev.ResourceGroupMeetingHeld.TYPE)
    assert meeting["corrected_by"] == [records[-1].event_id]
    assert meeting["retracted_by"] is None
    assert meeting["summary"].startswith(f"Resource group meeting held on {specs.MEETING_ON}")
