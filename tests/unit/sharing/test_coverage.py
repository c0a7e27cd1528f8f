"""Who may see a case after each of its events, and why sharing ends: the sharing domain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.sharing.domain.coverage import CaseAccess, day_of, decide, end_reason
from vss_contracts import case_events as ev
from vss_contracts.sharing_events import SharingEndReason

REGION, CITY, HOUSING = "region-psykiatri", "kommun-soc", "boendestod-ab"


def assigned(user_id: str, organisation: str) -> tuple[str, dict[str, Any]]:
    return ev.CoordinatorAssigned.TYPE, {
        "coordinator": {"user_id": user_id, "organisation": {"id": organisation}}
    }


def consent(*organisations: str, valid_until: str | None = None) -> tuple[str, dict[str, Any]]:
    return ev.ConsentGiven.TYPE, {
        "organisations": [{"id": o} for o in organisations],
        "valid_until": valid_until,
    }


def withdrawn(*organisations: str) -> tuple[str, dict[str, Any]]:
    return ev.ConsentWithdrawn.TYPE, {"entire": not organisations, "organisation_ids": list(organisations)}


def access_after(*events: tuple[str, dict[str, Any]]) -> CaseAccess:
    access = CaseAccess()
    for type_name, data in events:
        access.apply(type_name, data)
    return access


def test_the_coordinators_organisations_always_and_the_consented_ones_while_in_force() -> None:
    access = access_after(assigned("anna", REGION), consent(CITY, HOUSING, valid_until="2025-06-30"))
    assert access.covered("2025-06-30") == {REGION, CITY, HOUSING}
    assert access.covered("2025-07-01") == {REGION}


def test_a_consent_for_one_organisation_limits_coverage_to_it() -> None:
    access = access_after(assigned("anna", REGION), consent(HOUSING))
    assert access.covered("2025-03-14") == {REGION, HOUSING}


def test_a_withdrawal_entire_or_for_one_organisation_narrows_coverage() -> None:
    assert access_after(consent(CITY, HOUSING), withdrawn(HOUSING)).covered("2025-03-14") == {CITY}
    assert access_after(assigned("anna", REGION), consent(CITY), withdrawn()).covered("2025-03-14") == {
        REGION
    }


def test_a_new_consent_replaces_the_last_one_as_a_whole() -> None:
    access = access_after(consent(CITY, HOUSING), withdrawn(), consent(HOUSING))
    assert access.covered("2025-03-14") == {HOUSING}
    assert not access.withdrawn


def test_a_newly_covered_organisation_gets_the_history_and_one_no_longer_covered_an_end() -> None:
    access = access_after(assigned("anna", REGION))
    first = decide(3, *consent(HOUSING), "2025-03-14", access, {REGION: (2, True)})
    assert first.share == {REGION: 3, HOUSING: 1}
    assert first.ended == {}
    second = decide(4, *withdrawn(HOUSING), "2025-03-14", access, {REGION: (3, True), HOUSING: (3, True)})
    assert second.share == {REGION: 4}
    assert second.ended == {HOUSING: SharingEndReason.CONSENT_WITHDRAWN_FOR_ORGANISATION}


def test_a_withdrawal_after_the_closing_ends_the_share_of_a_closed_case() -> None:
    closing = (ev.CaseClosed.TYPE, {"closed_on": "2025-03-14", "reason": "client_moved"})
    access = access_after(assigned("anna", REGION), consent(HOUSING))
    shared = decide(5, *closing, "2025-03-14", access, {REGION: (4, True), HOUSING: (4, True)})
    assert (shared.share, shared.ended) == ({REGION: 5, HOUSING: 5}, {})
    ended = decide(6, *withdrawn(), "2025-03-15", access, {REGION: (5, True), HOUSING: (5, True)})
    assert ended.share == {REGION: 6}
    assert ended.ended == {HOUSING: SharingEndReason.CONSENT_WITHDRAWN}


def test_the_reason_sharing_ends_names_the_event_that_ended_it() -> None:
    after = access_after(consent(CITY))
    assert end_reason(CITY, *withdrawn(), after) is SharingEndReason.CONSENT_WITHDRAWN
    assert end_reason(HOUSING, *consent(CITY), after) is SharingEndReason.CONSENT_REPLACED
    unassigned = (ev.CoordinatorUnassigned.TYPE, {"user_id": "anna"})
    assert end_reason(REGION, *unassigned, after) is SharingEndReason.COORDINATOR_UNASSIGNED
    assert end_reason(CITY, *unassigned, access_after(consent(CITY, valid_until="2025-01-01"))) is (
        SharingEndReason.CONSENT_EXPIRED
    )


def test_an_event_is_dated_as_the_case_service_dates_it_in_stockholm() -> None:
    assert day_of(datetime(2025, 3, 14, 23, 30, tzinfo=UTC)) == "2025-03-15"


def test_the_access_state_survives_its_stored_form() -> None:
    access = access_after(assigned("anna", REGION), consent(CITY, valid_until="2025-06-30"), withdrawn(CITY))
    assert CaseAccess.from_json(access.to_json()) == access


def test_a_handover_within_an_organisation_keeps_its_sight_of_the_case() -> None:
    handover = (
        ev.CoordinatorAssigned.TYPE,
        {
            "coordinator": {"user_id": "karin", "organisation": {"id": REGION}},
            "hands_over_from": {"organisation_id": REGION, "user_id": "anna"},
        },
    )
    access = access_after(assigned("anna", REGION), handover)
    assert access.covered("2025-03-01") == {REGION}
    access.apply(ev.CoordinatorUnassigned.TYPE, {"user_id": "anna"})
    assert access.covered("2025-03-01") == {REGION}  # the incoming coordinator is the region's too


def test_unassigning_one_of_two_coordinators_sharing_a_user_id_keeps_the_others_organisation() -> None:
    # "anna" at the region and "anna" at the city: two people (ADR 0023).
    access = access_after(assigned("anna", REGION), assigned("anna", CITY))
    assert access.covered("2025-03-01") == {REGION, CITY}

    access.apply(
        ev.CoordinatorUnassigned.TYPE,
        {"organisation_id": CITY, "user_id": "anna", "unassigned_on": "2025-03-01"},
    )

    assert access.coordinators == {(REGION, "anna")}
    assert access.covered("2025-03-01") == {REGION}  # the region's Anna still coordinates: covered
    assert CaseAccess.from_json(access.to_json()) == access


def test_an_upcast_v1_unassignment_names_the_coordinator_with_that_user_id() -> None:
    access = access_after(assigned("anna", REGION), assigned("omar", CITY))
    access.apply(ev.CoordinatorUnassigned.TYPE, {"organisation_id": None, "user_id": "omar"})
    assert access.coordinators == {(REGION, "anna")}


def test_an_access_state_stored_by_user_id_reads_as_persons() -> None:
    stored = {
        "opened_by": REGION,
        "coordinators": {"anna": REGION, "omar": CITY},  # as stored before persons were kept
        "consent": None,
        "withdrawn": False,
        "valid_until": None,
    }
    assert CaseAccess.from_json(stored).coordinators == {(REGION, "anna"), (CITY, "omar")}
