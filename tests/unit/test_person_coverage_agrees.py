"""Messages, invitations and plan links cover the same people: the notifications service's audience and
the query API's plan-link rule, folded from the same case events, answer alike for everyone
the plan names (both by ``services.shared.access.person_covered``)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

import pytest

from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import MeetingSchedule, Rules, ScheduleState
from services.notifications.domain.audience import Audience, local_day
from services.notifications.domain.decisions import on_case_event
from services.projections.domain import plan_links
from services.projections.domain.case_view import View, apply, start
from services.shared.plan_links import LinkKind, plan_contact_holder
from tests.domain import specs
from tests.unit.projections.plan_link_story import plan
from tests.unit.stories import Stream, story
from vss_contracts.case_events import PlanContact
from vss_contracts.registry import decode_event

FRIEND = PlanContact(name="Göran Granne", relation="granne", phone="070-123 45 67")
NAMED = {
    "mother": PlanContact(
        name="Birgitta Tolvansson", relation="mamma", phone="070-1", member_id=specs.MOTHER
    ),
    # A member of the region, which coordinates (Anna), who is not a coordinator.
    "psychiatrist": PlanContact(
        name="Leila Haddad", relation="psykiater", phone="070-2", member_id=specs.PSYCHIATRIST
    ),
    "housing": PlanContact(
        name="Mikael Berg", relation="boendestöd", phone="070-3", member_id=specs.HOUSING_SUPPORT
    ),
    "officer": PlanContact(
        name="Jonas Ek", relation="arbetsförmedlare", phone="070-4", member_id=specs.EMPLOYMENT_OFFICER
    ),
    "client": PlanContact(
        name=specs.CLIENT.name, relation="jag", phone="070-5", member_id=specs.CLIENT_MEMBER
    ),
    "friend": FRIEND,
}
ALL = (specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG)
BEFORE = (
    *specs.COORDINATED,
    specs.consent(*ALL),
    specs.client_member(),
    specs.psychiatrist(),
    specs.housing_support(),
    specs.employment_officer(),
    specs.mother(),
)

CASES: dict[str, tuple[tuple[specs.Step, ...], set[str]]] = {
    "in force": ((), set(NAMED)),
    "withdrawn": ((specs.withdraw(),), {"client"}),
    "relatives withdrawn": ((specs.withdraw(relatives=True),), set(NAMED) - {"mother", "friend"}),
    # The region coordinates, but the new consent does not name it: its psychiatrist is not told.
    "coordinating organisation not consented": (
        (specs.consent(specs.MUNICIPALITY_ORG, specs.OTHER_ORG, on=specs.SIP_ON),),
        set(NAMED) - {"psychiatrist"},
    ),
    "expired": (
        (specs.consent(*ALL, on=specs.SIP_ON, valid_until=specs.TODAY - timedelta(days=1)),),
        {"client"},
    ),
}


def _plan() -> specs.Step:
    return plan(*NAMED.values())


def _both(*steps: specs.Step) -> tuple[View, Audience]:
    records = Stream().records(story(*steps))
    view, _ = start(records[0])
    audience = Audience(case_id=UUID(records[0].case_id))
    for n, record in enumerate(records):
        if n:
            apply(view, record)
        recorded_at = datetime.fromisoformat(record.time)
        on_case_event(audience, decode_event(record.type, record.data), recorded_at, local_day(recorded_at))
    return view, audience


@pytest.mark.parametrize("case", list(CASES))
def test_messages_and_plan_links_cover_the_same_people(case: str) -> None:
    after, expected = CASES[case]
    view, audience = _both(*BEFORE, _plan(), *after)
    today: date = specs.TODAY
    told = {}
    let_in = {}
    for who, contact in NAMED.items():
        [person] = [p for p in audience.plan_contacts if p.name == contact.name]
        told[who] = audience.covered(person, today)
        key = plan_contact_holder(contact.member_id, contact.name, contact.phone, contact.email)
        decision = plan_links.decide(view, key, LinkKind.EARLY_WARNING_PLAN, today.isoformat())
        assert decision.refused in (None, plan_links.NOT_COVERED), (who, decision)
        let_in[who] = decision.allowed
    assert {who for who, yes in told.items() if yes} == expected
    assert let_in == told


def _schedule(*steps: specs.Step) -> MeetingSchedule:
    schedule = MeetingSchedule(ScheduleState(case_id=UUID(int=1)), Rules(), WorkingDays())
    for record in Stream().records(story(*steps)):
        data = decode_event(record.type, record.data)
        schedule.on_case_event(UUID(record.event_id), datetime.fromisoformat(record.time), data)
    return schedule


@pytest.mark.parametrize("case", list(CASES))
def test_invitations_and_messages_cover_the_same_members(case: str) -> None:
    """A resource group member the meetings service invites is one the notifications service
    may tell, and the other way round: both ask ``services.shared.access.person_covered``."""
    after, _ = CASES[case]
    steps = (*BEFORE, _plan(), *after)
    _, audience = _both(*steps)
    schedule = _schedule(*steps)
    today: date = specs.TODAY
    invited = {
        member_id: schedule.covered(invitee, today) for member_id, invitee in schedule.state.members.items()
    }
    told = {
        f"member:{member_id}": audience.covered(person, today)
        for member_id, person in audience.members.items()
    }
    told = {key: yes for key, yes in told.items() if key in invited}
    assert set(told) == set(invited), "both fold the same members"
    assert invited == told
    assert any(invited.values()) == (case not in ("withdrawn", "expired"))
