"""Corrections through ``CaseService`` over an in-memory store (ADR 0018): the original event
stays as stored, the chain still verifies, and a case folded again from the store knows what
was corrected and retracted as the case that recorded it did."""

from __future__ import annotations

from datetime import date

from services.case.application.service import CaseService, Request
from services.case.domain.events import RawEvent, verify_chain
from tests.domain import specs
from tests.support.clock import FixedClock
from vss_contracts import case_events as ev

from .fakes import InMemoryCaseStore


def _request() -> Request:
    return Request(actor=specs.ACTOR, correlation_id="req-1", expected_version=None, idempotency_key=None)


def test_a_correction_and_a_retraction_leave_the_original_and_the_chain_intact() -> None:
    store = InMemoryCaseStore()
    service = CaseService(store, FixedClock(specs.NOW))
    service.open_case(_request(), specs.open_case())
    for step in (*specs.WORKING, specs.meeting(on=specs.MEETING_ON), specs.complete_action(specs.ACTION_1)):
        service.execute(_request(), specs.CASE_ID, step)
    stored_before = [dict(e.state) for e in store.log.events(specs.CASE_ID)]

    service.execute(
        _request(),
        specs.CASE_ID,
        specs.correct(ev.ResourceGroupMeetingHeld, specs.meeting_value(date(2025, 3, 11))),
    )
    service.execute(_request(), specs.CASE_ID, specs.retract(ev.ActionCompleted))

    events = store.log.events(specs.CASE_ID)
    assert [dict(e.state) for e in events[: len(stored_before)]] == stored_before
    assert [e.data.event_name() for e in events[len(stored_before) :]] == ["EntryCorrected", "EntryRetracted"]
    raw = [RawEvent(specs.CASE_ID, e.originator_version, e.type, e.state) for e in events]
    head = (events[-1].originator_version, events[-1].meta.hash)
    assert verify_chain(specs.CASE_ID, raw, head=head) is None

    recorded = service.get(specs.CASE_ID).state
    store.forget(specs.CASE_ID)
    folded = service.get(specs.CASE_ID).state  # from the stored events alone
    assert folded.entries == recorded.entries
    assert folded.meetings_held == [date(2025, 3, 11)]
    assert folded.sip is not None
    assert folded.sip.actions[specs.ACTION_1].completed_on is None
