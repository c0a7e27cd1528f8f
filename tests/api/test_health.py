"""The case API's health check says whether the process can take a command: its store answers.

A case API whose database cannot be reached answers every command 503; its health says so
too, so `vss status` (and a load balancer) does not count it ready until the store answers.
"""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.case.application.service import CaseService
from services.case.entrypoints.http import create_app
from services.case.infrastructure.store import CaseEventStore
from services.shared.access_log import AccessLogStore
from tests.api.conftest import TOKENS


def test_health_names_the_store_when_it_answers(service: CaseService, access_log: AccessLogStore) -> None:
    with TestClient(create_app(service, TOKENS, access_log)) as client:
        answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "store": "ok"}


def test_health_is_503_with_retry_after_while_the_store_cannot_be_reached(
    service: CaseService, store: CaseEventStore, access_log: AccessLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> None:
        raise psycopg.OperationalError("connection failed: the database system is starting up")

    monkeypatch.setattr(store, "ping", unreachable)
    with TestClient(create_app(service, TOKENS, access_log), raise_server_exceptions=False) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["type"].endswith("store_unavailable")
