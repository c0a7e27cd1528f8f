"""What the consumers that ignore corrections do with them: nothing (ADR 0018).

The meetings schedule keeps what the entry started (its reminders and contact periods were
published); nobody is notified; who may see the case does not change.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from uuid import UUID, uuid4

from services.meetings.domain.schedule import snapshot
from services.notifications.domain.audience import Audience
from services.notifications.domain.decisions import on_case_event
from services.sharing.domain.coverage import CaseAccess
from tests.meetings.feed import CLIENT, COORDINATOR
from tests.unit.meetings.test_schedule import Schedule
from vss_contracts import case_events as ce

DAY = date(2026, 3, 2)
MEETING = ce.ResourceGroupMeetingHeld(meeting_id=uuid4(), held_on=DAY, participants=[CLIENT, COORDINATOR])
CORRECTED = ce.EntryCorrected(
    corrects_event_id=uuid4(),
    corrects_type=ce.ResourceGroupMeetingHeld.TYPE,
    reason="Mötet hölls dagen före.",
    corrected_on=DAY,
    value=ce.CorrectedMeetingHeld(
        kind="resource_group_meeting", held_on=date(2026, 3, 1), participants=[CLIENT, COORDINATOR]
    ),
)
RETRACTED = ce.EntryRetracted(
    corrects_event_id=uuid4(),
    corrects_type=ce.ResourceGroupMeetingHeld.TYPE,
    reason="Registrerat två gånger.",
    retracted_on=DAY,
)


def test_the_meeting_schedule_stays_as_the_meeting_left_it() -> None:
    schedule = Schedule().started(date(2026, 1, 5))
    schedule.consent(date(2026, 1, 5))
    schedule.sip(date(2026, 2, 2), 1, follow_up=date(2026, 5, 4))
    schedule.on(DAY, MEETING)
    before = snapshot(schedule.schedule)
    assert schedule.on(DAY, CORRECTED) == []
    assert schedule.on(DAY, RETRACTED) == []
    assert snapshot(schedule.schedule) == before


def test_nobody_is_notified_of_a_correction() -> None:
    audience = Audience(case_id=UUID(int=5))
    at = datetime.combine(DAY, time(9), UTC)
    for data in (CORRECTED, RETRACTED):
        outcome = on_case_event(audience, data, at, DAY)
        assert (outcome.notices, outcome.recheck_pending) == ([], False)


def test_a_correction_changes_nobodys_access() -> None:
    access = CaseAccess(opened_by="goteborg-sdf-nordost", consent=["vgr-psykiatri-nordost"])
    before = access.to_json()
    for data in (CORRECTED, RETRACTED):
        access.apply(data.TYPE, data.model_dump(mode="json"))
    assert access.to_json() == before
    assert access.covered(DAY.isoformat()) == {"vgr-psykiatri-nordost"}  # the consent names it
