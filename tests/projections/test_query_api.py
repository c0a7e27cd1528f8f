"""The query API against the real pipeline: case service -> store -> relay -> NATS -> projector.

Access control, the access log (durable and on the bus) and read-your-writes, each
over HTTP with real bearer tokens.
"""

from __future__ import annotations

import asyncio
import csv as csv_module
import io
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.domain import commands as cmd
from services.case.domain.events import Actor
from services.case.infrastructure.store import CaseEventStore
from services.projections.bootstrap import bootstrap_query_api
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.settings import ProjectionsSettings
from services.shared.auth import TokenService
from services.shared.bus.names import BusNames
from services.shared.settings import AuthSettings
from tests.projections.conftest import ProjectorThread
from tests.support.actors import ACTORS, SOCIAL_INSURANCE_AGENCY, coordinator_for, make_actor, organisation_of
from tests.support.bus import read_stream, wait_until
from tests.support.clock import FixedClock
from tests.support.http import serving
from tests.support.nats import delete_streams
from tests.support.scenario import CaseScenario
from vss_contracts.access_events import CaseDataAccessed
from vss_contracts.case_events import PersonRef
from vss_contracts.types import OrganisationRef, PracticeRule, Principal

JWT_KEY = "test-key-" + "x" * 40
OTHER_MUNICIPALITY = OrganisationRef(
    id="goteborg-sof", name="Göteborgs stad", principal=Principal.MUNICIPALITY
)


@dataclass
class Pipeline:
    client: TestClient
    tokens: TokenService
    service: CaseService
    clock: FixedClock
    access_stream: str
    access_prefix: str
    nats_url: str

    def token(self, actor: Actor, *roles: str) -> dict[str, str]:
        token = self.tokens.mint(
            user_id=actor.user_id,
            organisation_id=actor.organisation_id,
            principal=actor.principal.value,
            roles=list(roles or actor.roles),
        )
        return {"Authorization": f"Bearer {token}"}

    def read_when_reached(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> Any:
        """GET with ``?position=``, asked again while the read models are behind (the query
        API waits 1 s here; a loaded machine's projector may need longer for many events)."""
        deadline = time.monotonic() + 30
        while True:
            response = self.client.get(path, params=params, headers=headers)
            behind = response.status_code == 503 and response.json()["type"].endswith("position_not_reached")
            if not behind or time.monotonic() > deadline:
                return response


@pytest.fixture
def pipeline(
    tmp_path: Path,
    store: CaseEventStore,
    service: CaseService,
    clock: FixedClock,
    run_relay,  # type: ignore[no-untyped-def]
    nats_url: str,
    bus_names: BusNames,
) -> Iterator[Pipeline]:
    location = ReadModelLocation(f"sqlite:///{tmp_path}/readmodels")
    tag = bus_names.stream.split("_")[0]
    settings = ProjectionsSettings(
        data_dir=tmp_path,
        read_model_url=f"sqlite:///{tmp_path}/readmodels",
        access_log_url=f"sqlite:///{tmp_path}/access.sqlite",
        nats_url=nats_url,
        access_stream=f"{tag}_ACCESS",
        access_subject_prefix=f"{tag.lower()}.vss.access",
        query_wait_limit=1.0,
    )
    auth = AuthSettings(jwt_key=JWT_KEY)
    parts = bootstrap_query_api(settings, auth=auth, today=clock.today)
    with run_relay(store):
        projector = ProjectorThread(location, nats_url, bus_names).start()
        try:
            with TestClient(parts.app) as client:
                yield Pipeline(
                    client,
                    parts.tokens,
                    service,
                    clock,
                    settings.access_stream,
                    settings.access_subject_prefix,
                    nats_url,
                )
        finally:
            projector.stop()
            location.close()
            asyncio.run(delete_streams(nats_url, [settings.access_stream]))


REGION, MUNICIPALITY, AGENCY = ACTORS.region, ACTORS.municipality, ACTORS.outsider
STRANGER = make_actor("sara.ek", OTHER_MUNICIPALITY)


def open_shared_case(p: Pipeline) -> CaseScenario:
    """A case coordinated by the region and the municipality; consent also covers Försäkringskassan."""
    scenario = CaseScenario(p.service, p.clock)
    scenario.open()
    scenario.assign_coordinators()
    scenario.run(
        lambda case: case.give_consent(
            cmd.GiveConsent(
                organisations=[
                    organisation_of(REGION),
                    organisation_of(MUNICIPALITY),
                    SOCIAL_INSURANCE_AGENCY,
                ],
                covers_relatives=False,
                signed_on=scenario.today,
                valid_until=scenario.today + timedelta(days=365),
            )
        ),
        MUNICIPALITY,
    )
    return scenario


def test_a_coordinator_reads_the_overview_and_the_read_is_logged(pipeline: Pipeline) -> None:
    scenario = open_shared_case(pipeline)
    position = scenario.results[-1].position
    response = pipeline.client.get(
        f"/v1/cases/{scenario.case_id}", params={"position": position}, headers=pipeline.token(REGION)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["position"]["log_position"] >= position
    assert int(response.headers["Vss-Log-Position"]) >= position
    case = body["case"]
    assert {c["user_id"] for c in case["coordinators"]} == {REGION.user_id, MUNICIPALITY.user_id}
    assert {o["id"] for o in case["consent"]["organisations"]} == {
        REGION.organisation_id,
        MUNICIPALITY.organisation_id,
        SOCIAL_INSURANCE_AGENCY.id,
    }
    assert case["checklist"][0]["step"] == "contact_details"

    log = pipeline.client.get(
        f"/v1/cases/{scenario.case_id}/access-log", headers=pipeline.token(MUNICIPALITY)
    )
    assert log.status_code == 200, log.text
    reads = [e for e in log.json()["items"] if e["read"] == "overview"]
    assert len(reads) == 1
    assert reads[0]["user_id"] == REGION.user_id
    assert reads[0]["organisation_id"] == REGION.organisation_id
    assert reads[0]["outcome"] == "granted"
    assert reads[0]["at"]

    journal = pipeline.client.get(
        f"/v1/cases/{scenario.case_id}/journal",
        params={"position": position},
        headers=pipeline.token(MUNICIPALITY),
    )
    assert journal.status_code == 200
    assert [e["version"] for e in journal.json()["items"]] == [1, 2, 3, 4]
    assert journal.json()["chain_verifies"] is True


def test_an_organisation_outside_consent_gets_403_and_the_attempt_is_logged_and_published(
    pipeline: Pipeline,
) -> None:
    scenario = open_shared_case(pipeline)
    position = scenario.results[-1].position
    denied = pipeline.client.get(
        f"/v1/cases/{scenario.case_id}", params={"position": position}, headers=pipeline.token(STRANGER)
    )
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["rule"] == "no_consent"
    assert "case" not in denied.json()

    own = pipeline.client.get(f"/v1/users/{STRANGER.user_id}/access-log", headers=pipeline.token(STRANGER))
    attempts = own.json()["items"]
    assert [(a["case_id"], a["outcome"], a["read"]) for a in attempts] == [
        (str(scenario.case_id), "denied", "overview")
    ]

    def published() -> list[dict[str, object]]:
        messages = asyncio.run(
            read_stream(pipeline.nats_url, pipeline.access_stream, f"{pipeline.access_prefix}.>")
        )
        return [orjson.loads(m.body) for m in messages]

    assert wait_until(lambda: any(e["data"]["outcome"] == "denied" for e in published()), 10)
    event = next(e for e in published() if e["data"]["outcome"] == "denied")
    assert event["type"] == CaseDataAccessed.TYPE
    record = CaseDataAccessed.model_validate(event["data"])
    assert (record.user_id, record.organisation_id, record.case_id) == (
        STRANGER.user_id,
        STRANGER.organisation_id,
        str(scenario.case_id),
    )


def test_withdrawn_consent_removes_access_for_the_others_at_once(pipeline: Pipeline) -> None:
    scenario = open_shared_case(pipeline)
    url = f"/v1/cases/{scenario.case_id}"
    before = pipeline.client.get(
        url, params={"position": scenario.results[-1].position}, headers=pipeline.token(AGENCY)
    )
    assert before.status_code == 200, before.text

    withdrawn = scenario.run(
        lambda case: case.withdraw_consent(
            cmd.WithdrawConsent(
                withdrawn_on=scenario.today, entire=False, organisation_ids=[SOCIAL_INSURANCE_AGENCY.id]
            )
        ),
        MUNICIPALITY,
    )
    after = pipeline.client.get(url, params={"position": withdrawn.position}, headers=pipeline.token(AGENCY))
    assert after.status_code == 403
    assert (
        pipeline.client.get(
            url, params={"position": withdrawn.position}, headers=pipeline.token(REGION)
        ).status_code
        == 200
    )

    entire = scenario.run(
        lambda case: case.withdraw_consent(cmd.WithdrawConsent(withdrawn_on=scenario.today)), MUNICIPALITY
    )
    # The coordinators' organisations keep access; no one else has any.
    assert (
        pipeline.client.get(
            url, params={"position": entire.position}, headers=pipeline.token(MUNICIPALITY)
        ).status_code
        == 200
    )
    assert (
        pipeline.client.get(
            url, params={"position": entire.position}, headers=pipeline.token(STRANGER)
        ).status_code
        == 403
    )

    log = pipeline.client.get(f"{url}/access-log", headers=pipeline.token(REGION)).json()["items"]
    assert [(e["user_id"], e["outcome"]) for e in log if e["read"] == "overview"] == [
        (AGENCY.user_id, "granted"),
        (AGENCY.user_id, "denied"),
        (REGION.user_id, "granted"),
        (MUNICIPALITY.user_id, "granted"),
        (STRANGER.user_id, "denied"),
    ]


def test_the_opener_reads_its_new_case_at_once_until_a_consent_not_naming_it(pipeline: Pipeline) -> None:
    """The municipality opens the case (its people coordinate nothing): it reads it at once,
    before anyone coordinates or consents; once the client consents without naming it, it may not."""
    scenario = CaseScenario(pipeline.service, pipeline.clock)
    opened = scenario.open(MUNICIPALITY)
    url = f"/v1/cases/{scenario.case_id}"
    read = pipeline.client.get(
        url, params={"position": opened.position}, headers=pipeline.token(MUNICIPALITY)
    )
    assert read.status_code == 200, read.text
    case = read.json()["case"]
    assert (case["opened_by_organisation"]["id"], case["coordinators"], case["consent"]) == (
        MUNICIPALITY.organisation_id,
        [],
        None,
    )
    refused = pipeline.client.get(url, params={"position": opened.position}, headers=pipeline.token(STRANGER))
    assert (refused.status_code, refused.json()["rule"]) == (403, "no_consent")

    scenario.run(
        lambda case: case.assign_coordinator(
            cmd.AssignCoordinator(coordinator=coordinator_for(REGION), assigned_on=scenario.today)
        ),
        MUNICIPALITY,
    )
    consented = scenario.run(
        lambda case: case.give_consent(
            cmd.GiveConsent(
                organisations=[organisation_of(REGION), SOCIAL_INSURANCE_AGENCY],
                covers_relatives=False,
                signed_on=scenario.today,
                valid_until=scenario.today + timedelta(days=365),
            )
        ),
        MUNICIPALITY,
    )
    after = pipeline.client.get(
        url, params={"position": consented.position}, headers=pipeline.token(MUNICIPALITY)
    )
    assert (after.status_code, after.json()["rule"]) == (403, "no_consent")
    coordinating = pipeline.client.get(
        url, params={"position": consented.position}, headers=pipeline.token(REGION)
    )
    assert coordinating.status_code == 200, coordinating.text

    log = pipeline.client.get(f"{url}/access-log", headers=pipeline.token(REGION)).json()["items"]
    assert [(e["organisation_id"], e["outcome"]) for e in log if e["read"] == "overview"] == [
        (MUNICIPALITY.organisation_id, "granted"),
        (STRANGER.organisation_id, "denied"),
        (MUNICIPALITY.organisation_id, "denied"),
        (REGION.organisation_id, "granted"),
    ]


def test_the_coordinator_filter_names_a_person_not_a_user_id(pipeline: Pipeline) -> None:
    region_coordinates = CaseScenario(pipeline.service, pipeline.clock)
    region_coordinates.open()
    region_coordinates.assign_coordinators()  # REGION's anna.lindqvist, MUNICIPALITY's coordinator
    namesake = make_actor(REGION.user_id, organisation_of(MUNICIPALITY))  # another anna.lindqvist
    namesake_coordinates = CaseScenario(pipeline.service, pipeline.clock)
    namesake_coordinates.open()
    namesake_coordinates.assign_coordinator(MUNICIPALITY)
    last = namesake_coordinates.assign_coordinator(namesake)

    def listed(**params: str) -> list[str]:
        answer = pipeline.client.get(
            "/v1/cases",
            params={"position": last.position, "coordinator": REGION.user_id, **params},
            headers=pipeline.token(MUNICIPALITY),
        )
        assert answer.status_code == 200, answer.text
        return [item["case_id"] for item in answer.json()["items"]]

    # By default the coordinator is of the reader's organisation: the namesake, not the region's.
    assert listed() == [str(namesake_coordinates.case_id)]
    assert listed(coordinator_organisation=REGION.organisation_id) == [str(region_coordinates.case_id)]
    documented = pipeline.client.get("/openapi.json").json()["paths"]["/v1/cases"]["get"]["parameters"]
    assert "coordinator_organisation" in {p["name"] for p in documented}


def test_a_query_naming_a_commands_position_always_sees_the_change(pipeline: Pipeline) -> None:
    scenario = open_shared_case(pipeline)
    headers = pipeline.token(REGION)
    for round_ in range(15):
        result = scenario.run(
            lambda case, round_=round_: case.complete_worksheet(
                cmd.CompleteWorksheet(
                    worksheet="ordinary_day",
                    completed_on=scenario.today,
                    participants=[{"kind": "client", "name": "Tolvan Tolvansson"}],
                    summary=f"round {round_}",
                )
            )
        )
        response = pipeline.client.get(
            f"/v1/cases/{scenario.case_id}", params={"position": result.position}, headers=headers
        )
        assert response.status_code == 200
        assert response.json()["case"]["version"] == result.version
        step = next(s for s in response.json()["case"]["checklist"] if s["step"] == "ordinary_day")
        assert step["times"] == round_ + 1


def test_a_position_not_reached_in_time_is_503_and_bad_input_is_a_problem(pipeline: Pipeline) -> None:
    headers = pipeline.token(REGION)
    scenario = open_shared_case(pipeline)
    far = scenario.results[-1].position + 1000
    slow = pipeline.client.get(f"/v1/cases/{scenario.case_id}", params={"position": far}, headers=headers)
    assert slow.status_code == 503
    assert slow.json()["type"].endswith("position_not_reached")
    assert slow.json()["position"] < far
    bad = pipeline.client.get("/v1/cases", params={"municipality": "Stockholm"}, headers=headers)
    assert bad.status_code == 422
    assert any(e["field"] == "query.municipality" for e in bad.json()["errors"])
    assert pipeline.client.get(f"/v1/cases/{scenario.case_id}").status_code == 401
    analyst = pipeline.token(REGION, "analyst")
    refused = pipeline.client.get(f"/v1/cases/{scenario.case_id}", headers=analyst)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "role_required"
    stats = pipeline.client.get("/v1/statistics", params={"format": "csv"}, headers=analyst)
    assert stats.status_code == 200
    assert stats.text.startswith("level,key,month")
    assert pipeline.client.get("/v1/statistics", headers=headers).status_code == 403


def test_the_overview_shows_a_coordinator_handover_in_progress(pipeline: Pipeline) -> None:
    scenario = open_shared_case(pipeline)
    incoming = make_actor("karin.berg", organisation_of(REGION))
    result = scenario.run(
        lambda case: case.assign_coordinator(
            cmd.AssignCoordinator(
                coordinator=coordinator_for(incoming),
                assigned_on=scenario.today,
                hands_over_from=PersonRef(organisation_id=REGION.organisation_id, user_id=REGION.user_id),
            )
        )
    )
    response = pipeline.client.get(
        f"/v1/cases/{scenario.case_id}", params={"position": result.position}, headers=pipeline.token(REGION)
    )
    assert response.status_code == 200, response.text
    case = response.json()["case"]
    assert len(case["coordinators"]) == 3
    assert case["handover"] == {
        "outgoing": {"organisation_id": REGION.organisation_id, "user_id": REGION.user_id},
        "incoming": {"organisation_id": REGION.organisation_id, "user_id": "karin.berg"},
        "started_on": str(scenario.today),
    }


def test_the_statistics_answer_method_fidelity_and_age_groups_in_json_and_csv(pipeline: Pipeline) -> None:
    scenarios = [open_shared_case(pipeline) for _ in range(6)]
    analyst = pipeline.token(REGION, "analyst")
    position = scenarios[-1].results[-1].position
    month = f"{scenarios[-1].today:%Y-%m}"
    params = {"from": month, "to": month, "position": position}
    answer = pipeline.read_when_reached("/v1/statistics", params, analyst)
    assert answer.status_code == 200, answer.text
    [group] = answer.json()["groups"]
    assert group["months"][0]["opened"] == 6
    # Six adults opened (Tolvan is born in 1912), no child: nothing to suppress, nothing derived.
    by_age = group["by_age_group"]
    assert by_age["adults"]["months"][0]["opened"] == 6
    assert by_age["children_and_young_people"]["months"][0]["opened"] == 0
    assert group["method_fidelity"]["joint_steps"]["held"] == 0  # consent given, no step taken yet
    assert set(group["method_fidelity"]) == {
        "joint_steps",
        "consent_to_mapping_summary",
        "follow_ups_met_by_meeting_or_sip",
    }
    assert "personal_identity_number" not in answer.text
    csv = pipeline.client.get("/v1/statistics", params={**params, "format": "csv"}, headers=analyst)
    header, *rows = csv.text.splitlines()
    assert header.startswith("level,key,month")
    assert header.endswith(",age_group")
    assert [row.rsplit(",", 1)[1] for row in rows] == ["all", "adults", "children_and_young_people"]
    # The deviations' columns: the count and one per practice rule, as the JSON has them.
    [whole, *_] = list(csv_module.DictReader(io.StringIO(csv.text)))
    deviations = group["deviations"]
    assert whole["deviations"] == ("" if deviations["count"] is None else str(deviations["count"]))
    for rule in PracticeRule:
        count = deviations["by_rule"][rule.value]
        assert whole[f"deviations_{rule.value}"] == ("" if count is None else str(count)), rule
    documented = pipeline.client.get("/openapi.json").json()["components"]["schemas"]["Statistics"]
    assert "method_fidelity" in documented["properties"]["groups"]["description"]


# ------------------------------------------------------------------ waits under load, over real HTTP


def send_raw(address: str, path: str, headers: dict[str, str], count: int) -> list[socket.socket]:
    """``count`` GET requests, each on its own connection, sent and not yet read: all in flight."""
    host, port = address.split(":")
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {address}\r\n{lines}Connection: close\r\n\r\n".encode()
    connections = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=30)
        connection.sendall(request)
        connections.append(connection)
    return connections


def statuses(connections: list[socket.socket]) -> list[int]:
    """Each connection's response status (each read to its end)."""
    found = []
    for connection in connections:
        with connection:
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
        found.append(int(data.split(b" ", 2)[1]))
    return found


def timed_read(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(url, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def test_waits_need_a_token_are_bounded_and_leave_ordinary_reads_alone(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    scenario = open_shared_case(pipeline)
    reached = {"position": scenario.results[-1].position}
    answer = pipeline.client.get("/v1/position", params=reached, headers=pipeline.token(REGION))
    assert answer.status_code == 200, answer.text
    assert pipeline.client.get("/v1/position").status_code == 401
    # A second query API over the same read models, with a wait long enough to hold while we measure.
    settings = ProjectionsSettings(
        data_dir=tmp_path,
        read_model_url=f"sqlite:///{tmp_path}/readmodels",
        access_log_url=f"sqlite:///{tmp_path}/access.sqlite",
        query_wait_limit=4.0,
        query_max_waits=16,
    )
    app = bootstrap_query_api(settings, auth=AuthSettings(jwt_key=JWT_KEY), publish=False).app
    headers = pipeline.token(REGION)
    far = "/v1/position?position=999999999"
    with (
        serving(app, backlog=1024) as address,
        httpx.Client(base_url=f"http://{address}", timeout=30) as client,
    ):
        ordinary = f"/v1/cases/{scenario.case_id}"
        timed_read(client, ordinary, headers)  # connected, warm

        # 200 waits without a token: each is refused at once and holds nothing.
        started = time.perf_counter()
        anonymous = send_raw(address, far, {}, 200)
        during = timed_read(client, ordinary, headers)
        assert statuses(anonymous) == [401] * 200
        assert time.perf_counter() - started < 2.0, "the refusals must not wait for the position"
        # Far below the 4 s a held wait would take; loose enough for a suite on two busy cores.
        assert during < 0.5, f"an ordinary read took {during * 1000:.0f} ms beside 200 anonymous waits"

        # 200 waits with a token: 16 wait (the bound), the rest are 503 with Retry-After at once.
        waiting = send_raw(address, far, headers, 16)
        time.sleep(0.2)  # the 16 are waiting
        refused = client.get(far, headers=headers)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("too_many_waits")
        more = send_raw(address, far, headers, 183)
        assert statuses(more) == [503] * 183
        readings = [timed_read(client, ordinary, headers) for _ in range(5)]
        assert max(readings) < 0.5, f"ordinary reads beside 16 waits: {readings}"
        timed_out = statuses(waiting)
        assert timed_out == [503] * 16  # position_not_reached, after the wait limit
        assert time.perf_counter() - started >= 4.0
        # The slots are given back: a wait that can be met is answered.
        met = client.get(f"/v1/position?position={scenario.results[-1].position}", headers=headers)
        assert met.status_code == 200


def test_two_coordinators_sharing_a_user_id_each_have_the_case_in_their_caseload(pipeline: Pipeline) -> None:
    # The municipality hands over to its own coordinator with the region's coordinator's user id:
    # two people (ADR 0023); the caseload table keys a case's coordinators by person.
    scenario = open_shared_case(pipeline)
    namesake = make_actor(REGION.user_id, organisation_of(MUNICIPALITY))
    outgoing = PersonRef(organisation_id=MUNICIPALITY.organisation_id, user_id=MUNICIPALITY.user_id)
    handed = scenario.run(
        lambda case: case.assign_coordinator(
            cmd.AssignCoordinator(
                coordinator=coordinator_for(namesake), assigned_on=scenario.today, hands_over_from=outgoing
            )
        ),
        MUNICIPALITY,
    )

    def caseload(actor: Actor, position: int) -> list[str]:
        path = f"/v1/coordinators/{actor.user_id}/caseload"
        response = pipeline.read_when_reached(path, {"position": position}, pipeline.token(actor))
        assert response.status_code == 200, response.text
        return [c["case_id"] for c in response.json()["cases"]]

    case_id = str(scenario.case_id)
    assert caseload(REGION, handed.position) == caseload(namesake, handed.position) == [case_id]

    gone = scenario.run(
        lambda case: case.unassign_coordinator(
            namesake.user_id, cmd.UnassignCoordinator(unassigned_on=scenario.today), namesake.organisation_id
        ),
        MUNICIPALITY,
    )

    assert caseload(REGION, gone.position) == [case_id]  # the region's coordinator still coordinates
    assert caseload(namesake, gone.position) == []
    view = pipeline.read_when_reached(
        f"/v1/cases/{case_id}", {"position": gone.position}, pipeline.token(REGION)
    )
    assert sorted(
        (c["organisation"]["id"], c["user_id"]) for c in view.json()["case"]["coordinators"]
    ) == sorted(
        [(REGION.organisation_id, REGION.user_id), (MUNICIPALITY.organisation_id, MUNICIPALITY.user_id)]
    )
