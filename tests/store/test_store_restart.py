"""The case store's pooled connections after a PostgreSQL restart: every command after it is
accepted, none answered with an error because the pool handed out a connection the restart ended."""

from __future__ import annotations

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.store import StoreConfig, migrate
from tests.support.clock import FixedClock
from tests.support.scenario import CaseScenario
from tests.support.stores import end_other_connections, open_case_store

pytestmark = pytest.mark.postgres
POOL_SIZE = 4


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
        end_other_connections(postgres_url)
        # More commands than the pool holds connections: each would take one the restart ended.
        for _ in range(POOL_SIZE * 3):
            scenario.complete_worksheet()
        assert scenario.version == before + POOL_SIZE * 3
    finally:
        store.close()
