"""``Queries`` over in-memory read models and access log: who may read what, and the record of it."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest

from services.projections.application.projector import Projector
from services.projections.application.queries import AccessDenied, CaseNotFound, Queries, Reader
from services.projections.domain.statistics import Period
from tests.domain import specs
from tests.unit.stories import Stream, story

from .fakes import AccessLogUnavailable, InMemoryAccessLog, InMemoryReadModels

CASE = str(specs.CASE_ID)
OTHER_CASE = UUID("6f1c2a9e-3b7d-4e15-9a40-1c8e5d2b7f02")

ANNA = Reader(specs.ANNA.user_id, specs.REGION_ORG.id, frozenset({"coordinator"}))
ERIK = Reader(specs.ERIK.user_id, specs.MUNICIPALITY_ORG.id, frozenset({"coordinator"}))
EMPLOYMENT = Reader("jonas.ek", specs.OTHER_ORG.id, frozenset({"coordinator"}))
OUTSIDER = Reader("maria.holm", specs.UNRELATED_ORG.id, frozenset({"coordinator", "manager"}))
MANAGER = Reader("chef", specs.REGION_ORG.id, frozenset({"manager"}))
ANALYST = Reader("analytiker", specs.REGION_ORG.id, frozenset({"analyst"}))


class World:
    def __init__(self, today: date = specs.TODAY) -> None:
        self.models = InMemoryReadModels()
        self.log = InMemoryAccessLog()
        self.stream = Stream()
        self.today = today
        self.queries = Queries(self.models, self.log, lambda: self.today)

    def project(self, *steps: specs.Step, case_id: UUID = specs.CASE_ID) -> None:
        Projector(self.models).apply(self.stream.records(story(*steps, case_id=case_id)))


def test_a_coordinating_organisation_reads_the_overview_and_the_read_is_recorded() -> None:
    world = World()
    world.project(*specs.WORKING)
    overview = world.queries.overview(ANNA, CASE)
    assert overview["phase"] == "working"
    assert "facts" not in overview
    assert world.log.outcomes() == [("overview", CASE, "granted")]


def test_an_organisation_neither_coordinating_nor_covered_is_refused_and_the_refusal_recorded() -> None:
    world = World()
    world.project(*specs.WORKING)
    with pytest.raises(AccessDenied) as denied:
        world.queries.overview(OUTSIDER, CASE)
    assert denied.value.rule == "no_consent"
    assert world.log.outcomes() == [("overview", CASE, "denied")]


def test_a_consent_covering_one_more_organisation_lets_it_read_until_it_is_withdrawn_for_it() -> None:
    covered = specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG)
    world = World()
    world.project(*specs.COORDINATED, covered)
    assert world.queries.overview(EMPLOYMENT, CASE)["case_id"] == CASE
    withdrawn = World()
    withdrawn.project(*specs.COORDINATED, covered, specs.withdraw(specs.OTHER_ORG.id))
    with pytest.raises(AccessDenied):
        withdrawn.queries.overview(EMPLOYMENT, CASE)
    assert withdrawn.queries.overview(ERIK, CASE)["case_id"] == CASE  # still covered


def test_a_consent_past_its_last_day_no_longer_grants_access() -> None:
    world = World()
    world.project(
        *specs.COORDINATED,
        specs.consent(specs.REGION_ORG, specs.MUNICIPALITY_ORG, specs.OTHER_ORG, valid_until=specs.TODAY),
    )
    assert world.queries.overview(EMPLOYMENT, CASE)
    world.today = date(2025, 3, 15)
    with pytest.raises(AccessDenied):
        world.queries.overview(EMPLOYMENT, CASE)


def test_without_the_access_log_nothing_is_returned() -> None:
    world = World()
    world.project(*specs.WORKING)
    world.log.failing = True
    with pytest.raises(AccessLogUnavailable):
        world.queries.overview(ANNA, CASE)
    with pytest.raises(AccessLogUnavailable):
        world.queries.journal(ANNA, CASE, 0, 10)


def test_roles_decide_what_may_be_read_at_all() -> None:
    world = World()
    world.project(*specs.WORKING)
    with pytest.raises(AccessDenied) as denied:
        world.queries.overview(ANALYST, CASE)
    assert denied.value.rule == "role_required"
    with pytest.raises(AccessDenied):
        world.queries.statistics(
            ANNA, "municipality", Period(date(2025, 1, 1), date(2025, 3, 1)), lambda _: None
        )
    assert world.queries.statistics(
        ANALYST, "municipality", Period(date(2025, 1, 1), date(2025, 3, 1)), lambda _: None
    )


def test_an_unknown_case_is_not_found_not_refused() -> None:
    with pytest.raises(CaseNotFound):
        World().queries.overview(ANNA, CASE)


def test_the_journal_pages_the_cases_events_in_version_order() -> None:
    world = World()
    world.project(*specs.CONSENTED)
    journal = world.queries.journal(ANNA, CASE, after_version=1, limit=2)
    assert [(e["version"], e["summary"]) for e in journal.items] == [
        (
            2,
            "Coordinator Anna Lindqvist (Psykiatri Nordost, Västra Götalandsregionen) assigned on 2025-01-13",
        ),
        (
            3,
            "Coordinator Erik Johansson (Göteborgs Stad, socialförvaltningen Nordost) assigned on 2025-01-13",
        ),
    ]
    assert journal.deliveries == []
    assert world.log.outcomes() == [("journal", CASE, "granted")]


def test_the_case_list_asks_for_the_readers_cases_and_records_each_one_listed() -> None:
    """Which cases an organisation may see is the read models' query (SQL over the grants,
    tests/projections/test_query_api.py); here: the reader is passed on and each case listed
    is recorded in the access log."""
    world = World()
    world.project(*specs.WORKING)
    world.project(specs.assign(specs.SARA), case_id=OTHER_CASE)  # the region's alone
    listed = world.queries.cases(
        ERIK, coordinator=None, phase=None, municipality=None, overdue=None, after=None, limit=10
    )
    assert [c["case_id"] for c in listed] == [CASE]
    both = world.queries.cases(
        ANNA, coordinator=None, phase=None, municipality=None, overdue=None, after=None, limit=10
    )
    assert sorted(c["case_id"] for c in both) == sorted([CASE, str(OTHER_CASE)])
    assert ("case_list", CASE, "granted") in world.log.outcomes()


def test_a_caseload_counts_follow_ups_due_and_overdue_and_is_the_coordinators_or_their_managers() -> None:
    world = World(today=date(2025, 5, 25))  # the follow-up on 2 June is due within two weeks
    world.project(*specs.WORKING)
    caseload = world.queries.caseload(ANNA, specs.ANNA.user_id)
    assert (caseload["active_cases"], caseload["follow_ups_due"], caseload["follow_ups_overdue"]) == (1, 1, 0)
    assert caseload["by_phase"] == {"working": 1}
    assert caseload["cases"][0]["overdue_actions"] == 2  # both actions were due on 30 April
    world.today = date(2025, 6, 3)
    assert world.queries.caseload(MANAGER, specs.ANNA.user_id)["follow_ups_overdue"] == 1
    with pytest.raises(AccessDenied) as denied:
        world.queries.caseload(ERIK, specs.ANNA.user_id, specs.REGION_ORG.id)
    assert denied.value.rule == "not_own_caseload"


def test_the_overdue_list_names_the_actions_the_readers_organisation_is_responsible_for() -> None:
    world = World(today=date(2025, 6, 3))
    world.project(*specs.WORKING, specs.complete_action(specs.ACTION_2))
    region = world.queries.overdue(ANNA, 10)
    assert [a["action_id"] for a in region["actions"]] == [str(specs.ACTION_1)]  # the psychiatrist's
    assert [f["case_id"] for f in region["follow_ups"]] == [CASE]
    municipality = world.queries.overdue(ERIK, 10)
    assert municipality["actions"] == []  # the housing support's action is done


def test_a_reader_sees_who_read_the_case_and_a_manager_their_organisations_reads() -> None:
    world = World()
    world.project(*specs.WORKING)
    world.queries.overview(ANNA, CASE)
    with pytest.raises(AccessDenied):
        world.queries.overview(OUTSIDER, CASE)
    log = world.queries.case_access_log(ERIK, CASE, 0, 10)
    assert [(e["user_id"], e["outcome"]) for e in log] == [
        (ANNA.user_id, "granted"),
        (OUTSIDER.user_id, "denied"),
    ]
    history = world.queries.user_access_history(MANAGER, ANNA.user_id, 0, 10)
    assert [e["read"] for e in history] == ["overview"]
    with pytest.raises(AccessDenied):
        world.queries.user_access_history(ERIK, ANNA.user_id, 0, 10, specs.REGION_ORG.id)
