"""The access rule is implemented once (services.shared.access), and every door agrees on it.

Each service keeps its own state of a case (the case API its aggregate, the query API its
view, meetings its schedule, notifications its audience, sharing its case access); each
passes that state to the one rule. Here the same case events go through every one of them,
event by event, and every one names the same organisations, until the same day.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import pytest

from services.case.domain.case import Case
from services.case.domain.events import Actor
from services.case.entrypoints.http import case_grants
from services.meetings.domain.calendar import WorkingDays
from services.meetings.domain.schedule import MeetingSchedule, Rules, ScheduleState, restore, snapshot
from services.notifications.domain.audience import Audience
from services.notifications.domain.decisions import on_case_event
from services.projections.domain import access as view_access
from services.projections.domain import case_view
from services.shared.access import Grant, grants, may_see
from services.sharing.domain.coverage import CaseAccess
from tests.domain import specs
from tests.unit.stories import Stream
from vss_contracts.registry import decode_event
from vss_contracts.types import OrganisationRef


def _view(coordinating: list[str], consent: dict[str, Any] | None, opened_by: str = "kommun") -> Any:
    return {
        "coordinators": [{"organisation": {"id": org}} for org in coordinating],
        "consent": consent,
        "opened_by_organisation": {"id": opened_by},
    }


@pytest.mark.parametrize(
    ("coordinating", "consent"),
    [
        ([], None),
        (["region"], None),
        (["region", "kommun"], {"withdrawn": False, "valid_until": None, "organisations": [{"id": "fk"}]}),
        (
            ["region"],
            {
                "withdrawn": False,
                "valid_until": "2026-06-30",
                "organisations": [{"id": "region"}, {"id": "fk"}],
            },
        ),
        (["region"], {"withdrawn": True, "valid_until": None, "organisations": [{"id": "fk"}]}),
    ],
)
def test_the_query_apis_grants_are_the_shared_rules(
    coordinating: list[str], consent: dict[str, Any] | None
) -> None:
    in_force = consent is not None and not consent["withdrawn"]
    shared = grants(
        coordinating,
        [o["id"] for o in consent["organisations"]] if consent and in_force else (),
        consent["valid_until"] if consent else None,
        opened_by="kommun",
        consent_given=consent is not None,
    )
    assert view_access.grants(_view(coordinating, consent)) == shared


def test_a_consent_grant_ends_with_its_valid_until_a_coordinators_does_not() -> None:
    case = grants(["region"], ["region", "fk"], "2026-06-30")
    assert may_see("fk", case, "2026-06-30")
    assert not may_see("fk", case, "2026-07-01")
    assert may_see("region", case, "2027-01-01")
    assert not may_see("annan-kommun", case, "2026-01-01")


# ----------------------------------------------------------------- every door, event by event
OPENER = specs.UNRELATED_ORG  # opens the case; its people coordinate nothing
REGION, MUNICIPALITY, OTHER = specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG
UNTIL = date(2025, 12, 31)
DAYS = ("2025-03-14", "2025-12-31", "2026-01-01")  # today, the consent's last day, the day after


STORIES: dict[str, tuple[OrganisationRef, tuple[specs.Step, ...]]] = {
    # The opener sees the case until the consent, which does not name it, is given; not after
    # that, nor after it is withdrawn; a later consent naming it covers it until its end.
    "opener not coordinating": (
        OPENER,
        (
            specs.assign(specs.ANNA),
            specs.consent(REGION, OTHER, valid_until=UNTIL),
            specs.withdraw(OTHER.id),
            specs.withdraw(),
            specs.consent(REGION, OPENER, valid_until=UNTIL),
            specs.withdraw(),
        ),
    ),
    # A consent naming the opener: it sees the case by the consent, until its end.
    "opener named by the consent": (
        OPENER,
        (specs.consent(OPENER, REGION, valid_until=UNTIL), specs.assign(specs.ANNA), specs.withdraw()),
    ),
    # An opener whose people coordinate: open-ended while they do, by the consent after.
    "opener coordinating": (
        REGION,
        (
            specs.assign(specs.ANNA),
            specs.assign(specs.ERIK),
            specs.unassign(specs.ANNA.user_id),
            specs.consent(MUNICIPALITY, valid_until=UNTIL),
            specs.assign(specs.SARA),
            specs.withdraw(),
        ),
    ),
}


def _actor_of(organisation: OrganisationRef) -> Actor:
    return Actor(
        user_id="opener",
        organisation_id=organisation.id,
        organisation_name=organisation.name,
        principal=organisation.principal,
        roles=frozenset({"coordinator"}),
    )


class Doors:
    """Every service's state of one case, each fed the case's events as it is fed them live."""

    def __init__(self, case_id: UUID) -> None:
        self.view: dict[str, Any] | None = None
        self.schedule = MeetingSchedule(ScheduleState(case_id=case_id), Rules(), WorkingDays())
        self.audience = Audience(case_id=case_id)
        self.access = CaseAccess()

    def apply(self, record: Any) -> None:
        if self.view is None:
            self.view, _ = case_view.start(record)
        else:
            case_view.apply(self.view, record)
        data = decode_event(record.type, record.data)
        recorded_at = datetime.fromisoformat(record.time)
        self.schedule.on_case_event(UUID(record.event_id), recorded_at, data)
        on_case_event(self.audience, data, recorded_at, recorded_at.date())
        self.access.apply(record.type, record.data)
        # What each keeps is stored between events: the rule's facts survive the round trip.
        self.schedule = restore(snapshot(self.schedule), Rules(), WorkingDays())
        self.audience = Audience.from_json(self.audience.to_json())
        self.access = CaseAccess.from_json(self.access.to_json())

    def grants(self) -> dict[str, list[Grant]]:
        assert self.view is not None
        return {
            "query": view_access.grants(self.view),
            "meetings": self.schedule.grants(),
            "notifications": self.audience.grants(),
        }


@pytest.mark.parametrize("name", STORIES)
def test_every_door_grants_the_same_after_each_event(name: str) -> None:
    opener, steps = STORIES[name]
    context = specs.context(actor=_actor_of(opener))
    case = Case.open(context, specs.open_case())
    doors = Doors(specs.CASE_ID)
    stream = Stream()
    seen: list[list[Grant]] = []
    for step in (None, *steps):
        if step is not None:
            step(case.handling(context))
        for record in stream.records(case):
            doors.apply(record)
        expected = case_grants(case.state)  # the case API's
        assert doors.grants() == dict.fromkeys(("query", "meetings", "notifications"), expected)
        for day in DAYS:
            assert doors.access.covered(day) == {o for o, _ in expected if may_see(o, expected, day)}
        seen.append(expected)
    if name == "opener not coordinating":
        opened, assigned, consented, *_, reconsented, withdrawn = seen
        assert opened == [(OPENER.id, None)]  # at once, open-ended
        assert assigned == [(OPENER.id, None), (REGION.id, None)]
        assert OPENER.id not in dict(consented)
        assert dict(reconsented)[OPENER.id] == UNTIL.isoformat()
        assert withdrawn == [(REGION.id, None)]
