"""Corrections and retractions over HTTP, one of each per kind of entry (ADR 0018).

Each entry is recorded through the API, then corrected and retracted through the API; the
case's history keeps the original event as stored, and its chain still verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.case.infrastructure.store import CaseEventStore
from tests.api.conftest import Api
from tests.api.test_api_rules import TOLVAN
from tests.support.scenario import CaseScenario, coordinator_participant, meeting_command
from vss_contracts.types import Worksheet

REASON = "Fel datum infördes; rättat efter kontroll i kalendern."


def _post(api: Api, scenario: CaseScenario, path: str, body: Any) -> dict[str, Any]:
    response = api.post(f"/{scenario.case_id}{path}", body)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def _participants(scenario: CaseScenario) -> list[dict[str, Any]]:
    return [coordinator_participant(a).model_dump(mode="json") for a in scenario.actors.coordinators]


def worksheet_entry(api: Api, s: CaseScenario) -> tuple[str, dict[str, Any]]:
    body = {
        "worksheet": Worksheet.ORDINARY_DAY.value,
        "completed_on": str(s.today),
        "participants": _participants(s),
        "summary": "En vanlig dag gicks igenom.",
    }
    created = _post(api, s, "/worksheets", body)
    value = {"kind": "worksheet", **{k: v for k, v in body.items() if k != "worksheet"}}
    return created["events"][-1]["id"], {**value, "summary": "En vanlig dag gicks igenom; kvällen saknades."}


def goal_entry(api: Api, s: CaseScenario) -> tuple[str, dict[str, Any]]:
    body = {"kind": "long_term", "description": "Eget boende", "set_on": str(s.today)}
    created = _post(api, s, "/goals", body)
    return created["events"][-1]["id"], {
        "kind": "goal",
        "description": "Eget boende med stöd",
        "set_on": str(s.today),
    }


def meeting_entry(api: Api, s: CaseScenario) -> tuple[str, dict[str, Any]]:
    body = meeting_command(s.today, s.actors).model_dump(mode="json")
    created = _post(api, s, "/resource-group/meetings", body)
    return created["events"][-1]["id"], {
        "kind": "resource_group_meeting",
        "held_on": str(s.today),
        "participants": body["participants"],
        "notes": "Rättade anteckningar.",
    }


def action_entry(api: Api, s: CaseScenario) -> tuple[str, dict[str, Any]]:
    case = s.service.get(s.case_id)  # type: ignore[arg-type]
    assert case.state.sip is not None
    action_id = next(iter(case.state.sip.actions))
    created = _post(api, s, f"/sips/current/actions/{action_id}/completion", {"completed_on": str(s.today)})
    return created["events"][-1]["id"], {
        "kind": "sip_action",
        "completed_on": str(s.today),
        "comment": "Klar.",
    }


ENTRIES: dict[str, tuple[str, Callable[[Api, CaseScenario], tuple[str, dict[str, Any]]]]] = {
    "worksheet": ("se.vss.case.WorksheetCompleted.v2", worksheet_entry),
    "goal": ("se.vss.case.GoalSet.v1", goal_entry),
    "resource_group_meeting": ("se.vss.case.ResourceGroupMeetingHeld.v2", meeting_entry),
    "sip_action": ("se.vss.case.ActionCompleted.v1", action_entry),
}


@pytest.mark.parametrize("kind", ENTRIES)
def test_an_entry_is_corrected_then_retracted_and_its_original_stays(
    api: Api, scenario: CaseScenario, store: CaseEventStore, kind: str
) -> None:
    scenario.to_first_sip()
    entry_type, record = ENTRIES[kind]
    event_id, value = record(api, scenario)

    corrected = _post(
        api,
        scenario,
        "/corrections",
        {
            "corrects_event_id": event_id,
            "reason": REASON,
            "corrected_on": str(scenario.today),
            "value": value,
        },
    )
    assert [e["type"] for e in corrected["events"]] == ["se.vss.case.EntryCorrected.v2"]
    retracted = _post(
        api,
        scenario,
        "/retractions",
        {"corrects_event_id": event_id, "reason": REASON, "retracted_on": str(scenario.today)},
    )
    assert [e["type"] for e in retracted["events"]] == ["se.vss.case.EntryRetracted.v1"]

    history = api.get(f"/{scenario.case_id}/history", after_version=0, limit=500).json()["items"]
    by_id = {e["event_id"]: e for e in history}
    assert by_id[event_id]["type"] == entry_type  # the original, as stored
    correction = by_id[corrected["events"][0]["id"]]["data"]
    assert correction["corrects_event_id"] == event_id
    assert correction["corrects_type"] == entry_type
    assert correction["value"]["kind"] == kind
    assert store.verify(scenario.case_id) is None  # type: ignore[arg-type]

    again = api.post(
        f"/{scenario.case_id}/corrections",
        {
            "corrects_event_id": event_id,
            "reason": REASON,
            "corrected_on": str(scenario.today),
            "value": value,
        },
    )
    assert (again.status_code, again.json()["rule"]) == (409, "entry_retracted")
    state = api.get(f"/{scenario.case_id}").json()["state"]
    assert state["entries"][event_id]["retracted_on"] == str(scenario.today)
    assert state["entries"][event_id]["corrections"] == 1


def test_a_correction_value_outside_its_rules_is_a_422_naming_the_field(
    api: Api, scenario: CaseScenario
) -> None:
    scenario.to_first_sip()
    event_id, value = meeting_entry(api, scenario)
    response = api.post(
        f"/{scenario.case_id}/corrections",
        {
            "corrects_event_id": event_id,
            "reason": "x" * 501,
            "corrected_on": str(scenario.today),
            "value": {**value, "participants": []},
        },
    )
    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"reason", "value.resource_group_meeting.participants"} <= fields, fields


def test_a_client_may_not_correct(api: Api, scenario: CaseScenario) -> None:
    """The route needs the coordinator role; the aggregate's own guard is a domain spec."""
    scenario.to_first_sip()
    event_id, _ = meeting_entry(api, scenario)
    before = len(api.get(f"/{scenario.case_id}/history", after_version=0, limit=500).json()["items"])
    response = api.post(
        f"/{scenario.case_id}/retractions",
        {"corrects_event_id": event_id, "reason": REASON, "retracted_on": str(scenario.today)},
        actor=TOLVAN,
    )
    assert (response.status_code, response.json()["rule"]) == (403, "role_required"), response.text
    assert len(api.get(f"/{scenario.case_id}/history", after_version=0, limit=500).json()["items"]) == before


def test_a_correction_takes_if_match_and_an_idempotency_key_like_every_command(
    api: Api, scenario: CaseScenario
) -> None:
    scenario.to_first_sip()
    event_id, value = meeting_entry(api, scenario)
    version = api.get(f"/{scenario.case_id}").json()["version"]
    body = {
        "corrects_event_id": event_id,
        "reason": REASON,
        "corrected_on": str(scenario.today),
        "value": value,
    }
    stale = api.post(f"/{scenario.case_id}/corrections", body, headers={"If-Match": f'"{version - 1}"'})
    assert (stale.status_code, stale.json()["rule"]) == (409, "version_conflict")
    key = {"Idempotency-Key": "correct-meeting-1", "If-Match": f'"{version}"'}
    first = api.post(f"/{scenario.case_id}/corrections", body, headers=key)
    again = api.post(f"/{scenario.case_id}/corrections", body, headers=key)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json()["version"] == first.json()["version"] == version + 1
