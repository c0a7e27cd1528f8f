"""The command API over the real service and store (both backends), driven through HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.domain.events import Actor
from services.case.entrypoints.http import create_app
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario
from vss_contracts.types import ActorPrincipal

TOKENS = TokenService(key="test-secret-" + "k" * 40, algorithm="HS256", issuer="vss", audience="vss")


def bearer(actor: Actor) -> dict[str, str]:
    if actor.principal is ActorPrincipal.CLIENT:
        return {"Authorization": f"Bearer {TOKENS.mint_client(actor.user_id)}"}
    token = TOKENS.mint(
        user_id=actor.user_id,
        organisation_id=actor.organisation_id,
        organisation_name=actor.organisation_name,
        principal=actor.principal.value,
        roles=sorted(actor.roles),
    )
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A TestClient with a default actor, and JSON helpers for command models."""

    def __init__(self, client: TestClient, actor: Actor) -> None:
        self.client = client
        self.actor = actor

    def post(
        self,
        path: str,
        body: Any,
        *,
        actor: Actor | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> Any:
        payload = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
        return self.client.request(
            method,
            f"/v1/cases{path}",
            json=payload,
            headers={**bearer(actor or self.actor), **(headers or {})},
        )

    def get(self, path: str, *, actor: Actor | None = None, **params: Any) -> Any:
        return self.client.get(f"/v1/cases{path}", headers=bearer(actor or self.actor), params=params)


@pytest.fixture
def access_log(tmp_path: Path) -> AccessLogStore:
    return AccessLogStore(f"sqlite:///{tmp_path / 'access-log.sqlite'}")


@pytest.fixture
def api(service: CaseService, actor: Actor, access_log: AccessLogStore) -> Iterator[Api]:
    with TestClient(create_app(service, TOKENS, access_log), raise_server_exceptions=False) as client:
        yield Api(client, actor)


@pytest.fixture
def scenario(service: CaseService, clock: FixedClock) -> CaseScenario:
    return CaseScenario(service, clock)
