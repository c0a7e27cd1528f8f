"""The case store's pooled connections after a PostgreSQL restart: every command after it is
accepted, none answered with an error because the pool handed out a connection the restart ended."""

from __future__ import annotations

import psycopg
import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.store import StoreConfig, migrate
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario
from tests.support.stores import open_case_store

pytestmark = pytest.mark.postgres
POOL_SIZE = 4


def _as_a_restart_does(url: str) -> None:
    """Every other connection to the database ended by the server."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_every_command_after_a_restart_is_accepted(postgres_url: str) -> None:
    migrate(StoreConfig(postgres_url))
    store = open_case_store(postgres_url, pool_size=POOL_SIZE)
    try:
        clock = FixedClock()
        scenario = CaseScenario(CaseService(store, clock), clock)
        scenario.open()
        scenario.assign_coordinators()
        scenario.give_consent()
        before = scenario.version
        _as_a_restart_does(postgres_url)
        # More commands than the pool holds connections: each would take one the restart ended.
        for _ in range(POOL_SIZE * 3):
            scenario.complete_worksheet()
        assert scenario.version == before + POOL_SIZE * 3
    finally:
        store.close()
