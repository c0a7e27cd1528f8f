"""The API's conventions: auth, problems, concurrency, idempotency, positions, reads."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.case.domain import commands as cmd
from services.case.infrastructure.store import CaseEventStore
from services.shared.access_log import AccessLogStore
from tests.api.conftest import TOKENS, Api, bearer
from tests.support.actors import (
    ACTORS,
    REGION_PSYCHIATRY,
    SOCIAL_INSURANCE_AGENCY,
    coordinator_for,
    make_actor,
)
from tests.support.scenario import CaseScenario, consent_command, open_case_command, worksheet_command

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def _open(api: Api, scenario: CaseScenario, **headers: str) -> Any:
    return api.post("", open_case_command(scenario.today), headers=headers)


# --------------------------------------------------------------------------------- auth
def test_without_token_401_with_problem_and_challenge(api: Api, scenario: CaseScenario) -> None:
    response = api.client.post("/v1/cases", json=open_case_command(scenario.today).model_dump(mode="json"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["type"] == "urn:vss:problem:unauthorized"


def test_token_signed_with_another_key_401(api: Api, scenario: CaseScenario) -> None:
    forged = jwt.encode(
        {
            "sub": "x",
            "org": "y",
            "principal": "region",
            "roles": ["coordinator"],
            "iss": "vss",
            "aud": "vss",
            "exp": 2**33,
        },
        "another-key-" + "z" * 40,
        algorithm="HS256",
    )
    response = api.client.get(f"/v1/cases/{uuid4()}", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["type"] == "urn:vss:problem:invalid_token"


def test_expired_token_401(api: Api) -> None:
    token = TOKENS.mint(
        user_id="a",
        organisation_id="org-a",
        principal="region",
        roles=["coordinator"],
        lifetime=timedelta(seconds=-5),
    )
    response = api.client.get(f"/v1/cases/{uuid4()}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_analyst_may_not_write_403(api: Api, scenario: CaseScenario) -> None:
    response = api.post(
        "", open_case_command(scenario.today), actor=make_actor("ulla.a", REGION_PSYCHIATRY, "analyst")
    )
    assert response.status_code == 403
    assert response.json()["rule"] == "role_required"


def test_the_actor_comes_from_the_token_not_the_body(api: Api, scenario: CaseScenario) -> None:
    body = open_case_command(scenario.today).model_dump(mode="json")
    body["actor_id"] = "someone.else"
    assert api.post("", body).status_code == 422  # unknown fields are refused, never trusted
    created = _open(api, scenario).json()
    history = api.get(f"/{created['case_id']}/history").json()["items"]
    assert history[0]["actor_id"] == ACTORS.region.user_id
    assert history[0]["actor_organisation"] == ACTORS.region.organisation_id
    assert history[0]["principal"] == "region"


# ------------------------------------------------------------------------ malformed input
def test_malformed_json_400(api: Api) -> None:
    response = api.client.post(
        "/v1/cases",
        content=b'{"client": ',
        headers={**bearer(ACTORS.region), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:vss:problem:malformed_json"


def test_invalid_fields_422_name_field_and_rule(api: Api, scenario: CaseScenario) -> None:
    body = open_case_command(scenario.today).model_dump(mode="json")
    body["client"]["personal_identity_number"] = "19121212-1213"  # wrong check digit
    body["municipality"]["code"] = "18"
    response = api.post("", body)
    assert response.status_code == 422
    problem = response.json()
    fields = {e["field"]: e for e in problem["errors"]}
    assert "Luhn" in fields["client.personal_identity_number"]["message"]
    assert fields["municipality.code"]["rule"] == "string_pattern_mismatch"


def test_unknown_case_404(api: Api, scenario: CaseScenario) -> None:
    missing = uuid4()
    assert api.get(f"/{missing}").status_code == 404
    response = api.post(f"/{missing}/worksheets", worksheet_command(scenario.today))
    assert response.status_code == 404
    assert response.json()["type"] == "urn:vss:problem:case_not_found"


def test_not_a_uuid_422(api: Api) -> None:
    response = api.get("/not-a-case")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.case_id"


# ------------------------------------------------------------------------------- writes
def test_open_returns_201_location_version_and_position(
    api: Api, scenario: CaseScenario, store: CaseEventStore
) -> None:
    response = _open(api, scenario)
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/cases/{body['case_id']}"
    assert response.headers["etag"] == '"1"'
    assert body["version"] == 1
    assert int(response.headers["vss-log-position"]) == body["position"] == store.max_position()


def test_opening_the_same_case_id_twice_409(api: Api, scenario: CaseScenario) -> None:
    case_id = str(uuid4())
    body = {**open_case_command(scenario.today).model_dump(mode="json"), "case_id": case_id}
    assert api.post("", body).status_code == 201
    again = api.post("", body)
    assert again.status_code == 409
    assert again.json()["rule"] == "case_already_exists"


def test_if_match_wrong_version_409_and_nothing_appended(
    api: Api, scenario: CaseScenario, store: CaseEventStore
) -> None:
    scenario.open()
    scenario.assign_coordinators()
    position = store.max_position()
    response = api.post(
        f"/{scenario.case_id}/consents", consent_command(scenario.today), headers={"If-Match": '"2"'}
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["rule"] == "version_conflict"
    assert (problem["expected_version"], problem["current_version"]) == (2, 3)
    assert store.max_position() == position
    ok = api.post(
        f"/{scenario.case_id}/consents", consent_command(scenario.today), headers={"If-Match": '"3"'}
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"4"'


def test_if_match_malformed_400(api: Api, scenario: CaseScenario) -> None:
    scenario.open()
    response = api.post(
        f"/{scenario.case_id}/consents", consent_command(scenario.today), headers={"If-Match": "v2"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "If-Match"


def test_two_concurrent_commands_same_expected_version_one_wins(
    api: Api, scenario: CaseScenario, store: CaseEventStore
) -> None:
    scenario.open()
    scenario.assign_coordinators()
    scenario.give_consent()
    version = scenario.version
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send(worksheet: str) -> None:
        body = worksheet_command(scenario.today).model_dump(mode="json")
        body["worksheet"] = worksheet
        barrier.wait()
        response = api.post(f"/{scenario.case_id}/worksheets", body, headers={"If-Match": f'"{version}"'})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(w,)) for w in ("interview", "ordinary_day")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    assert store.load(scenario.case_id).version == version + 1  # type: ignore[arg-type]


def test_idempotency_key_replays_first_result_and_appends_nothing(
    api: Api, scenario: CaseScenario, store: CaseEventStore
) -> None:
    scenario.open()
    scenario.assign_coordinators()
    headers = {"Idempotency-Key": "consent-2025-03-07-tolvan"}
    first = api.post(f"/{scenario.case_id}/consents", consent_command(scenario.today), headers=headers)
    position = store.max_position()
    again = api.post(f"/{scenario.case_id}/consents", consent_command(scenario.today), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert store.max_position() == position
    other = consent_command(scenario.today).model_copy(update={"covers_relatives": False})
    reused = api.post(f"/{scenario.case_id}/consents", other, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["rule"] == "idempotency_key_reused"
    assert (
        api.post(f"/{scenario.case_id}/consents", other, headers={"Idempotency-Key": "bad key"}).status_code
        == 400
    )


def test_idempotent_open_creates_one_case(api: Api, scenario: CaseScenario, store: CaseEventStore) -> None:
    first = _open(api, scenario, **{"Idempotency-Key": "open-1"})
    again = _open(api, scenario, **{"Idempotency-Key": "open-1"})
    assert first.status_code == 201
    assert again.json()["case_id"] == first.json()["case_id"]
    assert store.max_position() == 1


def test_an_idempotency_key_is_the_persons_not_the_user_ids(
    api: Api, scenario: CaseScenario, store: CaseEventStore
) -> None:
    """A person is (organisation, user id): the same user id at another organisation sending
    the same key makes its own request, not a replay of the first person's (nor a 422)."""
    headers = {"Idempotency-Key": "open-monday"}
    first = _open(api, scenario, **headers)
    namesake = make_actor(api.actor.user_id, SOCIAL_INSURANCE_AGENCY)
    second = api.post("", open_case_command(scenario.today), actor=namesake, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotency-replayed" not in second.headers
    assert second.json()["case_id"] != first.json()["case_id"]
    assert store.max_position() == 2


# -------------------------------------------------------------------------------- reads
def test_get_case_and_history_pages(api: Api, scenario: CaseScenario) -> None:
    scenario.to_first_sip()
    case = api.get(f"/{scenario.case_id}")
    assert case.status_code == 200
    assert case.headers["etag"] == f'"{scenario.version}"'
    state = case.json()["state"]
    assert state["phase"] == "working"
    assert state["sip"]["version"] == 1
    first = api.get(f"/{scenario.case_id}/history", limit=5).json()
    assert [e["version"] for e in first["items"]] == [1, 2, 3, 4, 5]
    assert first["next_after_version"] == 5
    rest = api.get(f"/{scenario.case_id}/history", after_version=5, limit=100).json()
    assert rest["next_after_version"] is None
    items = first["items"] + rest["items"]
    assert len(items) == scenario.version
    assert all(b["prev_hash"] == a["hash"] for a, b in pairwise(items))
    assert all(a["position"] < b["position"] for a, b in pairwise(items))


def test_reads_need_an_involved_organisation_or_the_operator_role(api: Api, scenario: CaseScenario) -> None:
    scenario.open()
    assert api.get(f"/{scenario.case_id}", actor=ACTORS.outsider).status_code == 403
    operator = make_actor("olle.drift", SOCIAL_INSURANCE_AGENCY, "operator")
    assert api.get(f"/{scenario.case_id}", actor=operator).status_code == 200
    manager = make_actor("maja.chef", REGION_PSYCHIATRY, "manager")
    assert api.get(f"/{scenario.case_id}", actor=manager).status_code == 403


def test_the_opening_organisation_reads_by_the_consent_once_one_is_given(
    api: Api, scenario: CaseScenario, access_log: AccessLogStore
) -> None:
    """The case API reads by the one access rule: the opener (here the municipality, whose
    people do not coordinate) reads what it opened until the client consents; then only while
    the consent covers it."""
    municipality, region = ACTORS.municipality, ACTORS.region
    scenario.open(municipality)
    path = f"/{scenario.case_id}"
    assert api.get(path, actor=municipality).status_code == 200  # no consent yet: the opener
    scenario.run(
        lambda c: c.assign_coordinator(
            cmd.AssignCoordinator(coordinator=coordinator_for(region), assigned_on=scenario.today)
        ),
        municipality,
    )
    scenario.run(lambda c: c.give_consent(consent_command(scenario.today)), municipality)
    assert api.get(path, actor=municipality).status_code == 200  # the consent covers it
    scenario.run(
        lambda c: c.withdraw_consent(
            cmd.WithdrawConsent(
                withdrawn_on=scenario.today, entire=False, organisation_ids=[municipality.organisation_id]
            )
        ),
        region,
    )
    for read, params in ((path, {}), (f"{path}/history", {}), (path, {"as_of": str(scenario.today)})):
        refused = api.get(read, actor=municipality, **params)
        assert refused.status_code == 403, refused.text
        assert refused.json()["rule"] == "no_consent"
    assert api.get(path, actor=region).status_code == 200  # its people coordinate
    denied = [r for _, r in access_log.for_case(str(scenario.case_id), 0, 100) if r.outcome == "denied"]
    assert {(r.organisation_id, r.resource) for r in denied} == {
        (municipality.organisation_id, "case"),
        (municipality.organisation_id, "history"),
        (municipality.organisation_id, "case_as_of"),
    }


# ---------------------------------------------------------------------------- robustness
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
ROUTES = [
    "",
    "/{id}/coordinators",
    "/{id}/consents",
    "/{id}/worksheets",
    "/{id}/sips",
    "/{id}/goals",
    "/{id}/closure",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=json_values)
def test_arbitrary_json_never_500(api: Api, route: str, body: Any) -> None:
    response = api.post(route.replace("/{id}", f"/{uuid4()}"), body)
    assert response.status_code in {400, 404, 409, 422}, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_the_case_as_it_stood_on_a_date_from_its_events_until_then(api: Api, scenario: CaseScenario) -> None:
    """Each scenario step moves the clock a day: the case as it stood at the end of each day."""
    scenario.to_first_sip()
    case_id = scenario.case_id
    now = api.get(f"/{case_id}").json()
    stored = {e["version"]: e for e in api.get(f"/{case_id}/history", limit=100).json()["items"]}
    opened = datetime.fromisoformat(stored[1]["recorded_at"])
    consent_day = datetime.fromisoformat(stored[4]["recorded_at"]).astimezone(STOCKHOLM).date()
    then = api.get(f"/{case_id}", as_of=consent_day.isoformat())
    assert then.status_code == 200, then.text
    body = then.json()
    assert body["version"] == max(v for v, e in stored.items() if e["recorded_at"] <= body["as_of"])
    assert body["version"] < now["version"]
    assert body["hash"] == stored[body["version"]]["hash"]  # the chain's head at that moment
    assert body["state"]["phase"] == "mapping"
    assert body["state"]["consent"] is not None
    # An exact moment works too; today gives the case as it stands.
    exact = api.get(f"/{case_id}", as_of=stored[2]["recorded_at"]).json()
    assert exact["version"] == 2
    assert api.get(f"/{case_id}", as_of="2029-01-01").json()["version"] == now["version"]
    # Before the case was opened: 404 naming the rule; a time without a zone: 422.
    before = api.get(f"/{case_id}", as_of=(opened - timedelta(days=1)).date().isoformat())
    assert before.status_code == 404
    assert before.json()["rule"] == "case_not_open_then"
    assert api.get(f"/{case_id}", as_of="2026-01-01T10:00:00").status_code == 422
    # Who may see it is decided as of now: an organisation not involved gets 403.
    outsider = api.get(f"/{case_id}", actor=ACTORS.outsider, as_of=consent_day.isoformat())
    assert outsider.status_code == 403
