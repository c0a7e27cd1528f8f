"""The contact logbook over HTTP (ADR 0019): recording contacts and setting the contact period."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.api.conftest import Api
from tests.api.test_api_rules import TOLVAN, assigned, consented, contact_body, withdraw_entirely
from tests.support.actors import ACTORS
from tests.support.scenario import CaseScenario

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def last_saturday_evening(s: CaseScenario) -> datetime:
    """21:30 on the last Saturday before today, in Stockholm."""
    day = s.today - timedelta(days=(s.today.weekday() - 5) % 7 or 7)
    return datetime(day.year, day.month, day.day, 21, 30, tzinfo=STOCKHOLM)


def test_a_coordinator_records_a_saturday_evenings_outreach_with_a_colleague(
    api: Api, scenario: CaseScenario
) -> None:
    assigned(scenario)
    scenario.clock.advance(timedelta(days=7))  # a week on: a Saturday since the case was opened
    saturday = last_saturday_evening(scenario)
    body = contact_body(
        scenario,
        mode="outreach",
        occurred_at=saturday.isoformat(),
        duration_minutes=90,
        staff=[
            {"organisation_id": ACTORS.region.organisation_id, "user_id": ACTORS.region.user_id},
            {"organisation_id": ACTORS.municipality.organisation_id, "user_id": ACTORS.municipality.user_id},
        ],
        others=[{"role": "granne"}],
    )

    response = api.post(f"/{scenario.case_id}/contacts", body)

    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()["events"]] == ["se.vss.case.ClientContactRecorded.v1"]
    history = api.get(f"/{scenario.case_id}/history", after_version=0, limit=500).json()["items"]
    data = history[-1]["data"]
    assert datetime.fromisoformat(data["occurred_at"]) == saturday
    assert [(p["organisation"]["id"], p["user_id"]) for p in data["staff"]] == [
        (ACTORS.region.organisation_id, ACTORS.region.user_id),
        (ACTORS.municipality.organisation_id, ACTORS.municipality.user_id),
    ]
    assert data["others"] == [{"role": "granne", "name": None}]


def test_a_contact_is_recorded_after_the_consent_was_withdrawn(api: Api, scenario: CaseScenario) -> None:
    consented(scenario)
    withdraw_entirely(scenario)
    response = api.post(f"/{scenario.case_id}/contacts", contact_body(scenario))
    assert response.status_code == 200, response.text


def test_the_coordinators_set_the_contact_period(api: Api, scenario: CaseScenario) -> None:
    assigned(scenario)
    body = {
        "period": "social_recovery",
        "applies_from": str(scenario.today),
        "reason": "Arbetsträning börjar",
    }

    response = api.post(f"/{scenario.case_id}/contact-period", body)

    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()["events"]] == ["se.vss.case.ContactPeriodSet.v1"]
    state = api.get(f"/{scenario.case_id}").json()["state"]
    assert (state["contact_period"], state["contact_period_from"]) == ("social_recovery", str(scenario.today))


def test_an_unknown_period_or_mode_is_a_422_naming_the_field(api: Api, scenario: CaseScenario) -> None:
    assigned(scenario)
    period = api.post(
        f"/{scenario.case_id}/contact-period", {"period": "crisis", "applies_from": str(scenario.today)}
    )
    mode = api.post(f"/{scenario.case_id}/contacts", contact_body(scenario, mode="letter"))
    assert (period.status_code, mode.status_code) == (422, 422)
    assert {e["field"] for e in period.json()["errors"]} == {"period"}
    assert {e["field"] for e in mode.json()["errors"]} == {"mode"}


def test_a_contact_in_the_future_is_refused(api: Api, scenario: CaseScenario) -> None:
    assigned(scenario)
    later = (scenario.clock.now() + timedelta(hours=2)).isoformat()
    response = api.post(f"/{scenario.case_id}/contacts", contact_body(scenario, occurred_at=later))
    assert response.status_code == 409
    assert response.json()["rule"] == "date_in_future"


def test_the_client_records_no_contact(api: Api, scenario: CaseScenario) -> None:
    assigned(scenario)
    response = api.post(f"/{scenario.case_id}/contacts", contact_body(scenario), actor=TOLVAN)
    assert response.status_code == 403
    assert response.json()["rule"] == "role_required"


def test_an_outsider_records_no_contact(api: Api, scenario: CaseScenario) -> None:
    assigned(scenario)
    response = api.post(f"/{scenario.case_id}/contacts", contact_body(scenario), actor=ACTORS.outsider)
    assert response.status_code == 403
    assert response.json()["rule"] == "actor_not_involved"


def test_a_closed_case_records_no_contact(api: Api, scenario: CaseScenario) -> None:
    assigned(scenario)
    closed: dict[str, Any] = {"closed_on": str(scenario.today), "reason": "client_moved"}
    assert api.post(f"/{scenario.case_id}/closure", closed).status_code == 200
    response = api.post(f"/{scenario.case_id}/contacts", contact_body(scenario))
    assert response.status_code == 409
    assert response.json()["rule"] == "case_closed"
