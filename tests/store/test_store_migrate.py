"""migrate(): idempotent, safe when run concurrently, and required before use."""

from __future__ import annotations

import pytest

from services.case.application.service import CaseService
from services.case.infrastructure.store import CaseEventStore, StoreConfig, StoreNotMigrated, migrate
from tests.support.clock import FixedClock
from tests.support.concurrency import barrier, run_concurrently
from tests.support.scenario import CaseScenario
from tests.support.stores import StoreFactory, raw_query


def test_migrating_twice_is_harmless_and_keeps_the_data(
    store_url: str, open_store: StoreFactory, clock: FixedClock
) -> None:
    migrate(StoreConfig(store_url))
    store = open_store()
    store.check_migrated()
    scenario = CaseScenario(CaseService(store, clock), clock)
    scenario.open()
    scenario.assign_coordinators()
    assert scenario.case_id is not None
    log = list(store.read_log(0))

    migrate(StoreConfig(store_url))

    store.check_migrated()
    assert list(store.read_log(0)) == log
    assert store.case_ids() == [scenario.case_id]
    assert open_store().load(scenario.case_id).version == 3


def test_an_unmigrated_store_fails_the_check(store_url: str, open_store: StoreFactory) -> None:
    store = open_store()

    with pytest.raises(StoreNotMigrated, match="vss migrate"):
        store.check_migrated()

    migrate(StoreConfig(store_url))
    store.check_migrated()  # the same instance works once the tables exist
    assert store.max_position() == 0


@pytest.mark.postgres
def test_concurrent_migrations_of_a_fresh_postgres_database_all_succeed(
    postgres_url: str, clock: FixedClock
) -> None:
    racers = 3
    meet = barrier(racers)

    def run() -> None:
        meet.wait()
        migrate(StoreConfig(postgres_url))

    outcomes = run_concurrently(*[run] * racers)

    assert outcomes == [None] * racers
    tables = {
        row[0]
        for row in raw_query(
            postgres_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    assert {"case_events", "case_heads", "idempotency_keys"} <= tables
    store = CaseEventStore(StoreConfig(postgres_url))
    try:
        store.check_migrated()
        result = CaseScenario(CaseService(store, clock), clock).open()
        assert (result.version, result.position) == (1, 1)
    finally:
        store.close()
