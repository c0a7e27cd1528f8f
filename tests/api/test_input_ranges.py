"""Input ranges in the case API: every date and number a client sends has a range.

An input out of range (one that would give a 500 or flood the system) gets a 422 problem
naming the field and the rule, and the store is as it was: the same log position and case
version.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from services.case.application.service import CaseService
from services.case.entrypoints.http import create_app
from services.case.infrastructure.store import CaseEventStore
from services.shared.access_log import AccessLogStore
from services.shared.inputs import DateWindow
from tests.api.conftest import TOKENS, Api
from tests.support.actors import organisation_of
from tests.support.scenario import (
    CaseScenario,
    consent_command,
    meeting_command,
    open_case_command,
    summarise_mapping_command,
)


def _log(store: CaseEventStore) -> tuple[int, int]:
    """What the store holds: its last log position and number of events."""
    return store.max_position(), len(store.read_log(0, limit=100_000))


def refused(
    api: Api, store: CaseEventStore, request: Callable[[], Any], field: str, rule: str
) -> dict[str, Any]:
    """Send ``request``; assert a 422 naming ``field`` and ``rule`` and an unchanged store."""
    before = _log(store)
    response = request()
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert (field, rule) in {(e["field"], e["rule"]) for e in problem["errors"]}, problem
    assert _log(store) == before
    return problem


# ------------------------------------------------------------------------- dates of events
def test_a_case_opened_on_year_one_is_refused_and_nothing_stored(
    api: Api, store: CaseEventStore, scenario: CaseScenario
) -> None:
    """It once made the meetings service emit 105,707 "contact cadence missed" events."""
    body = open_case_command(scenario.today).model_copy(update={"opened_on": date(1, 1, 1)})
    problem = refused(api, store, lambda: api.post("", body), "opened_on", "date_window")
    assert "VSS_DATE_WINDOW_PAST_DAYS" in problem["errors"][0]["message"]
    assert _log(store) == (0, 0)


def test_held_on_9999_12_31_is_refused_and_the_case_unchanged(
    api: Api, store: CaseEventStore, scenario: CaseScenario
) -> None:
    scenario.to_first_sip()
    body = meeting_command(scenario.today).model_copy(update={"held_on": date(9999, 12, 31)})
    path = f"/{scenario.case_id}/resource-group/meetings"
    refused(api, store, lambda: api.post(path, body), "held_on", "date_window")
    assert api.get(f"/{scenario.case_id}").json()["version"] == scenario.version


@pytest.mark.parametrize(
    ("field", "days"),
    [("signed_on", -3654), ("valid_until", 1828)],
    ids=["more-than-ten-years-ago", "more-than-five-years-ahead"],
)
def test_a_date_just_outside_the_default_window_is_refused(
    api: Api, store: CaseEventStore, scenario: CaseScenario, field: str, days: int
) -> None:
    scenario.open()
    body = consent_command(scenario.today).model_copy(update={field: scenario.today + timedelta(days=days)})
    refused(api, store, lambda: api.post(f"/{scenario.case_id}/consents", body), field, "date_window")


def test_a_date_at_the_edge_of_the_window_is_accepted(api: Api, scenario: CaseScenario) -> None:
    scenario.open()
    edge = scenario.today + timedelta(days=DateWindow().future_days)
    body = consent_command(scenario.today).model_copy(update={"valid_until": edge})
    assert api.post(f"/{scenario.case_id}/consents", body).status_code == 200


def test_nested_dates_are_checked_too(api: Api, store: CaseEventStore, scenario: CaseScenario) -> None:
    scenario.to_first_sip()
    body = {
        "decided_on": scenario.today.isoformat(),
        "overall_responsibility": organisation_of(scenario.actors.municipality).model_dump(mode="json"),
        "goal_ids": [str(scenario.goal_ids[0])],
        "actions": [
            {
                "what": "Söka boende",
                "responsible_member_id": str(scenario.member_ids["client"]),
                "due_on": "9999-12-31",
                "how": "Med stöd av socialsekreteraren",
            }
        ],
        "next_follow_up_on": (scenario.today + timedelta(days=60)).isoformat(),
        "participants": [{"kind": "client", "name": "Tolvan"}],
        "client_agreed": True,
    }
    refused(
        api, store, lambda: api.post(f"/{scenario.case_id}/sips", body), "actions.0.due_on", "date_window"
    )


@pytest.mark.parametrize(
    ("path", "field", "body"),
    [
        ("/retractions", "retracted_on", {"retracted_on": "0001-01-01"}),
        ("/corrections", "corrected_on", {"corrected_on": "9999-12-31", "value": None}),
        ("/corrections", "value.held_on", {"corrected_on": None, "value": "9999-12-31"}),
    ],
    ids=["retracted_on", "corrected_on", "value.held_on"],
)
def test_the_dates_of_a_correction_lie_in_the_window(
    api: Api, store: CaseEventStore, scenario: CaseScenario, path: str, field: str, body: dict[str, Any]
) -> None:
    """A correction's own date and the dates of its value (ADR 0018)."""
    scenario.to_first_sip()
    meeting = scenario.hold_meeting()
    today = scenario.today.isoformat()
    value = {
        "kind": "resource_group_meeting",
        "held_on": body.get("value") or today,
        "participants": [{"kind": "client", "name": "Tolvan"}],
    }
    sent: dict[str, Any] = {"corrects_event_id": str(meeting.events[-1]["id"]), "reason": "Fel datum."}
    if path == "/retractions":
        sent["retracted_on"] = body["retracted_on"]
    else:
        sent.update(corrected_on=body.get("corrected_on") or today, value=value)
    refused(api, store, lambda: api.post(f"/{scenario.case_id}{path}", sent), field, "date_window")


def test_the_window_is_configurable(
    service: CaseService, store: CaseEventStore, scenario: CaseScenario, access_log: AccessLogStore
) -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415 - only this test builds its own app

    narrow = Api(
        TestClient(create_app(service, TOKENS, access_log, DateWindow(past_days=0, future_days=0))),
        scenario.actors.region,
    )
    yesterday = open_case_command(scenario.today - timedelta(days=1))
    refused(narrow, store, lambda: narrow.post("", yesterday), "opened_on", "date_window")
    assert narrow.post("", open_case_command(scenario.today)).status_code == 201


# ---------------------------------------------------------------------------------- text
@pytest.mark.parametrize("name", ["Tolvan\nTolvansson", "Tolvan\rTolvansson", "Tol\x00van"])
def test_a_name_with_a_line_break_or_nul_is_refused(
    api: Api, store: CaseEventStore, scenario: CaseScenario, name: str
) -> None:
    command = open_case_command(scenario.today)
    body = command.model_dump(mode="json")
    body["client"]["name"] = name
    refused(api, store, lambda: api.post("", body), "client.name", "control_character")


def test_long_text_may_have_lines_but_no_nul(api: Api, store: CaseEventStore, scenario: CaseScenario) -> None:
    scenario.open()
    scenario.assign_coordinators()
    scenario.give_consent()
    path = f"/{scenario.case_id}/mapping-summary"
    body = summarise_mapping_command(scenario.today).model_dump(mode="json")
    refused(
        api,
        store,
        lambda: api.post(path, {**body, "obstacles": "Första raden\nAndra\x00raden"}),
        "obstacles",
        "control_character",
    )
    accepted = api.post(path, {**body, "obstacles": "Första raden\r\nAndra raden\tmed tabb"})
    assert accepted.status_code == 200, accepted.text


# ------------------------------------------------------------------------ numbers, headers
def test_if_match_of_5000_digits_is_422_naming_the_header(
    api: Api, store: CaseEventStore, scenario: CaseScenario
) -> None:
    scenario.open()
    path = f"/{scenario.case_id}/consents"
    body = consent_command(scenario.today)
    problem = refused(
        api,
        store,
        lambda: api.post(path, body, headers={"If-Match": "9" * 5000}),
        "header.If-Match",
        "version_range",
    )
    assert problem["field"] == "If-Match"
    # 18 digits is a version (another than the case's: 409), 19 is not one.
    assert api.post(path, body, headers={"If-Match": "9" * 18}).status_code == 409
    refused(
        api,
        store,
        lambda: api.post(path, body, headers={"If-Match": "1" + "0" * 18}),
        "header.If-Match",
        "version_range",
    )


@pytest.mark.parametrize("header", ["X-Correlation-ID", "X-Causation-ID"])
@pytest.mark.parametrize("value", ["x" * 129, "mit mellanslag", "r\u00e4tt"])
def test_a_long_or_odd_request_id_is_400_naming_the_header_and_nothing_stored(
    api: Api, store: CaseEventStore, scenario: CaseScenario, header: str, value: str
) -> None:
    """Both ids are stored with every event the request records: short, visible ASCII."""
    scenario.open()
    before = _log(store)
    response = api.post(
        f"/{scenario.case_id}/consents",
        consent_command(scenario.today),
        headers={header: value.encode()},  # bytes: httpx sends them as they are
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == header
    assert response.headers["x-correlation-id"]  # the refusal has one to quote
    assert _log(store) == before
    ok = api.post(
        f"/{scenario.case_id}/consents",
        consent_command(scenario.today),
        headers={"X-Correlation-ID": "a" * 128, "X-Causation-ID": "b" * 128},
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("after_version", [2**63, 2**64, 10**30])
def test_after_version_of_2_to_the_63_or_more_is_422(
    api: Api, store: CaseEventStore, scenario: CaseScenario, after_version: int
) -> None:
    scenario.open()
    path = f"/{scenario.case_id}/history"
    refused(
        api,
        store,
        lambda: api.get(path, after_version=after_version),
        "query.after_version",
        "less_than_equal",
    )
    assert api.get(path, after_version=2**63 - 1).json() == {"items": [], "next_after_version": None}


@pytest.mark.parametrize(
    "as_of", ["9999-12-31", "0001-01-01", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
)
def test_as_of_far_from_today_is_422(
    api: Api, store: CaseEventStore, scenario: CaseScenario, as_of: str
) -> None:
    scenario.open()
    refused(api, store, lambda: api.get(f"/{scenario.case_id}", as_of=as_of), "query.as_of", "date_window")


def test_every_problem_status_is_in_the_openapi_document(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"400", "401", "403", "404", "409", "422"} <= documented, (method, path)
            assert "application/problem+json" in operation["responses"]["422"]["content"], (method, path)


# ------------------------------------------------------------------- the contact logbook
def _contact(scenario: CaseScenario, **fields: Any) -> dict[str, Any]:
    body = {
        "mode": "visit",
        "occurred_at": scenario.clock.now().isoformat(),
        "duration_minutes": 30,
        "note": "Hembesök",
    }
    return {**body, **fields}


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("duration_minutes", 0, "greater_than_equal"),
        ("duration_minutes", 721, "less_than_equal"),  # twelve hours at most
        ("occurred_at", "0001-01-01T21:30:00+01:00", "date_window"),
        ("occurred_at", "2025-03-08T21:30:00", "timezone_aware"),  # a time needs its UTC offset
        ("note", "x" * 501, "string_too_long"),  # a short note: 500 characters
        ("note", "rad ett\nrad två", "control_character"),  # one line
        ("staff", [{"organisation_id": "vgr", "user_id": f"u{i}"} for i in range(11)], "too_long"),
        ("others", [{"role": "granne"}] * 21, "too_long"),
    ],
    ids=[
        "no-minutes",
        "over-twelve-hours",
        "year-one",
        "no-offset",
        "long-note",
        "two-lines",
        "staff",
        "others",
    ],
)
def test_a_contact_out_of_range_is_refused_and_nothing_stored(
    api: Api, store: CaseEventStore, scenario: CaseScenario, field: str, value: Any, rule: str
) -> None:
    scenario.open()
    body = _contact(scenario, **{field: value})
    refused(api, store, lambda: api.post(f"/{scenario.case_id}/contacts", body), field, rule)


def test_a_contact_at_the_edges_of_its_ranges_is_accepted(api: Api, scenario: CaseScenario) -> None:
    scenario.open()
    for minutes, note in ((1, "x"), (720, "x" * 500)):
        body = _contact(scenario, duration_minutes=minutes, note=note)
        assert api.post(f"/{scenario.case_id}/contacts", body).status_code == 200


def test_a_contact_period_from_year_one_is_refused(
    api: Api, store: CaseEventStore, scenario: CaseScenario
) -> None:
    scenario.open()
    body = {"period": "assessment", "applies_from": "0001-01-01"}
    refused(
        api,
        store,
        lambda: api.post(f"/{scenario.case_id}/contact-period", body),
        "applies_from",
        "date_window",
    )
