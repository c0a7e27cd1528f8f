"""Input ranges in the query API: cursors within 64 bits, statistics periods of at most ten
years in 2000–2099. An input out of range is a 422 naming the parameter and the rule, with
the read models and the access log as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.projections.application.queries import QueryPolicy
from services.projections.entrypoints.http import QueryDependencies, create_app
from services.projections.infrastructure.serving import ServedGenerations
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.support.actors import ACTORS
from tests.support.clock import FixedClock
from tests.support.readmodels import project
from tests.support.scenario import CaseScenario

TOKENS = TokenService(key="test-secret-" + "q" * 40, algorithm="HS256", issuer="vss", audience="vss")
REGION = ACTORS.region


@dataclass
class QueryApi:
    client: TestClient
    case_id: str
    served: ServedGenerations
    access_log: AccessLogStore

    def get(self, path: str, **params: Any) -> Any:
        token = TOKENS.mint(
            user_id=REGION.user_id,
            organisation_id=REGION.organisation_id,
            principal=REGION.principal.value,
            roles=["coordinator", "analyst"],
        )
        return self.client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    def state(self) -> tuple[int, int]:
        """The read models' log position and the number of access-log records of the case."""
        position = self.served.current().position().log_position
        return position, len(self.access_log.for_case(self.case_id, 0, 100_000))


@pytest.fixture
def query_api(tmp_path: Path) -> Iterator[QueryApi]:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    migrate(StoreConfig(url))
    store = CaseEventStore(StoreConfig(url))
    clock = FixedClock()
    scenario = CaseScenario(CaseService(store, clock), clock)
    scenario.to_first_sip()
    location, _ = project(store, tmp_path)
    served = ServedGenerations(location)
    access_log = AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")
    deps = QueryDependencies(
        served=served,
        access_log=access_log,
        tokens=TOKENS,
        today=clock.today,
        wait_limit=0.05,
        policy=QueryPolicy(),
        association_of=lambda organisation_id: None,
    )
    yield QueryApi(TestClient(create_app(deps)), str(scenario.case_id), served, access_log)
    location.close()
    store.close()


def refused(api: QueryApi, path: str, field: str, rule: str, **params: Any) -> None:
    before = api.state()
    response = api.get(path, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = {(e["field"], e["rule"]) for e in response.json()["errors"]}
    assert (field, rule) in errors, errors
    assert api.state() == before


@pytest.mark.parametrize("value", [2**63, 2**64, 10**30])
@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/cases/{case}/journal", "after_version"),
        ("/v1/cases/{case}/journal", "after_delivery"),
        ("/v1/cases/{case}/access-log", "after"),
        ("/v1/users/anna.lindqvist/access-log", "after"),
        ("/v1/cases/{case}", "position"),
        ("/v1/overdue", "position"),
    ],
)
def test_a_cursor_of_2_to_the_63_or_more_is_422(
    query_api: QueryApi, path: str, parameter: str, value: int
) -> None:
    refused(
        query_api,
        path.format(case=query_api.case_id),
        f"query.{parameter}",
        "less_than_equal",
        **{parameter: value},
    )


def test_the_largest_cursor_is_answered(query_api: QueryApi) -> None:
    journal = query_api.get(
        f"/v1/cases/{query_api.case_id}/journal", after_version=2**63 - 1, after_delivery=2**63 - 1
    )
    assert journal.status_code == 200, journal.text
    assert journal.json()["items"] == []


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"from": "0001-01", "to": "2025-01"}, "query.from", "string_pattern_mismatch"),
        ({"from": "2025-01", "to": "9999-12"}, "query.to", "string_pattern_mismatch"),
        ({"to": "0001-01"}, "query.to", "string_pattern_mismatch"),
        ({"from": "2025-13"}, "query.from", "string_pattern_mismatch"),
        ({"from": "2000-01", "to": "2099-12"}, "query.from", "period_at_most_ten_years"),
        ({"from": "2015-02", "to": "2025-02"}, "query.from", "period_at_most_ten_years"),
    ],
    ids=["from-year-1", "to-year-9999", "to-year-1", "month-13", "a-century", "ten-years-and-a-month"],
)
def test_a_statistics_period_out_of_range_is_422(
    query_api: QueryApi, params: dict[str, str], field: str, rule: str
) -> None:
    refused(query_api, "/v1/statistics", field, rule, **params)


def test_a_ten_year_statistics_period_is_answered(query_api: QueryApi) -> None:
    response = query_api.get("/v1/statistics", **{"from": "2015-03", "to": "2025-02"})
    assert response.status_code == 200, response.text
    assert (response.json()["from_month"], response.json()["to_month"]) == ("2015-03", "2025-02")


def test_every_problem_status_is_in_the_openapi_document(query_api: QueryApi) -> None:
    document = query_api.client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        # A plan link (ADR 0016) takes no token and names no case to look up: never 401 or 404.
        token = not path.startswith("/v1/plan-links/")
        expected = {"401", "403", "404", "422", "503"} if token else {"403", "422", "503"}
        for method, operation in operations.items():
            assert expected <= set(operation["responses"]), (method, path)
            assert "application/problem+json" in operation["responses"]["503"]["content"], (method, path)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/users/a%00b/access-log", {}, "path.user_id"),
        ("/v1/coordinators/anna%0Ak/caseload", {}, "path.user_id"),
        ("/v1/users/" + "x" * 121 + "/access-log", {}, "path.user_id"),
        ("/v1/coordinators/anna.k/caseload", {"organisation": "a\x00b"}, "query.organisation"),
        ("/v1/users/anna.k/access-log", {"organisation": "o" * 65}, "query.organisation"),
        ("/v1/cases", {"coordinator": "anna\rk"}, "query.coordinator"),
        (
            "/v1/cases",
            {"coordinator": "anna.k", "coordinator_organisation": "Not An Id"},
            "query.coordinator_organisation",
        ),
    ],
)
def test_a_person_in_a_path_or_query_is_checked_before_anything_is_logged(
    query_api: QueryApi, path: str, params: dict[str, str], field: str
) -> None:
    """Control characters or a megabyte in a user id once went into the access log (on
    PostgreSQL, a NUL was a 500): a 422 now, and the access log is as it was."""
    before = query_api.access_log.count()
    response = query_api.get(path, **params)
    assert response.status_code == 422, response.text
    assert field in {e["field"] for e in response.json()["errors"]}
    assert query_api.access_log.count() == before
