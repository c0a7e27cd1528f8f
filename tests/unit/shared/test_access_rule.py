"""The one access rule every service applies: the coordinators' organisations, those the
consent in force covers until its last day, and the opener until a consent is given."""

from __future__ import annotations

from collections.abc import Sequence

from services.shared.access import AccessRecord, coordinator_id, grants, may_see, record_access, unassigns


def test_coordinating_organisations_may_see_the_case_open_endedly() -> None:
    case_grants = grants(["region"], ["region", "city"], "2025-06-30")
    assert case_grants == [("city", "2025-06-30"), ("region", None)]
    assert may_see("region", case_grants, "2030-01-01")


def test_a_consented_organisation_may_see_the_case_until_the_consents_last_day_only() -> None:
    case_grants = grants(["region"], ["city"], "2025-06-30")
    assert may_see("city", case_grants, "2025-06-30")
    assert not may_see("city", case_grants, "2025-07-01")


def test_an_organisation_neither_coordinating_nor_consented_may_not() -> None:
    assert not may_see("housing", grants(["region"], ["city"]), "2025-03-14")
    assert not may_see("city", grants(["region"]), "2025-03-14")  # no consent in force


def test_the_opener_may_see_the_case_open_endedly_before_any_consent() -> None:
    case_grants = grants([], opened_by="city", consent_given=False)
    assert case_grants == [("city", None)]
    assert may_see("city", case_grants, "2030-01-01")
    assert not may_see("housing", case_grants, "2025-03-14")
    both = grants(["region"], opened_by="city", consent_given=False)
    assert both == [("city", None), ("region", None)]


def test_once_a_consent_is_given_it_governs_the_opener_as_anyone() -> None:
    # Given, not naming the opener: the opener is refused.
    assert not may_see("city", grants(["region"], ["fk"], opened_by="city", consent_given=True), "2025-03-14")
    # Given, naming it: until the consent's last day, like any covered organisation.
    covered = grants(["region"], ["city"], "2025-06-30", opened_by="city", consent_given=True)
    assert covered == [("city", "2025-06-30"), ("region", None)]
    # Withdrawn (no consent in force, but one was given): the opener is refused.
    assert not may_see("city", grants(["region"], opened_by="city", consent_given=True), "2025-03-14")
    # Coordinating: open-ended whatever the consent says.
    assert may_see("city", grants(["city"], opened_by="city", consent_given=True), "2030-01-01")


def test_an_opener_not_passed_gets_no_grant() -> None:
    assert grants(["region"], consent_given=False) == [("region", None)]
    assert grants(["region"], opened_by="city") == [("region", None)]  # consent given, by default


class Reader:
    user_id = "anna"
    organisation_id = "region"
    principal = "region"
    roles = frozenset({"manager", "coordinator"})


class Recorder:
    def __init__(self) -> None:
        self.records: list[AccessRecord] = []

    def record(self, records: Sequence[AccessRecord]) -> None:
        self.records.extend(records)


def test_each_read_is_recorded_with_who_read_what_and_the_outcome() -> None:
    recorder = Recorder()
    record_access(recorder, Reader(), "case-1", "meetings", "denied", "no_consent")
    [record] = recorder.records
    assert (record.user_id, record.organisation_id, record.case_id) == ("anna", "region", "case-1")
    assert (record.resource, record.outcome, record.reason) == ("meetings", "denied", "no_consent")
    assert record.roles == ("coordinator", "manager")
    assert record.principal == "region"


def test_an_unassignment_names_the_person_and_a_v1_one_the_user_id() -> None:
    v2 = {"organisation_id": "kommun-soc", "user_id": "anna.k", "unassigned_on": "2026-03-02"}
    assert unassigns(v2, ("kommun-soc", "anna.k"))
    assert not unassigns(v2, ("region-psyk", "anna.k"))  # the same user id elsewhere: someone else
    v1 = {"organisation_id": None, "user_id": "anna.k", "unassigned_on": "2026-03-02"}  # upcast
    assert unassigns(v1, ("region-psyk", "anna.k"))
    assert not unassigns(v1, ("region-psyk", "omar.s"))


def test_a_coordinators_id_is_qualified_only_when_a_namesake_holds_the_plain_one() -> None:
    assert coordinator_id(("region-psyk", "anna.k"), []) == "coordinator:anna.k"
    assert coordinator_id(("kommun-soc", "anna.k"), ["coordinator:anna.k"]) == "coordinator:kommun-soc/anna.k"
    assert coordinator_id(("kommun-soc", "omar.s"), ["coordinator:anna.k"]) == "coordinator:omar.s"
    long = coordinator_id(("o" * 64, "u" * 120), ["coordinator:" + "u" * 120])
    assert long.startswith("coordinator:" + "o" * 64 + "/#")
    assert len(long) <= 160  # the invitee and recipient ids' limit
