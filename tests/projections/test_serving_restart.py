"""The query API's read-model connections after a PostgreSQL restart: opened again, without
failing a request, and not failing every request of a thread until the process restarts."""

from __future__ import annotations

import threading

import psycopg
import pytest

from services.projections.infrastructure.database import ReadModelLocation, new_generation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.serving import ServedGenerations
from services.shared.bus.embedded import free_port
from tests.support.stores import end_other_connections

pytestmark = pytest.mark.postgres


def _served_empty_generation(url: str) -> tuple[ReadModelLocation, ServedGenerations]:
    """An empty generation of read models on ``url``, pointed to and served as the query API serves it."""
    location = ReadModelLocation(url)
    generation = new_generation()
    ReadModels(location.connect(generation)).create_tables()
    location.point_to(generation)
    return location, ServedGenerations(location)


def test_connections_a_restart_ended_are_opened_again(postgres_url: str) -> None:
    location, served = _served_empty_generation(postgres_url)
    try:
        before = served.wait_for(0, 0.0)[1]
        end_other_connections(postgres_url)
        # The first read after the restart, the pointer's and this thread's connection both
        # dead: each opened again once, and the read answers (no failed request).
        models, position, reached = served.wait_for(0, 0.0)
        assert reached
        assert position == before
        assert models.position() == before  # the connection it handed out is the new one
        # In another thread too (each has a connection of its own), and again after a second restart.
        end_other_connections(postgres_url)
        seen: list[object] = []
        reader = threading.Thread(target=lambda: seen.append(served.wait_for(0, 0.0)[1]))
        reader.start()
        reader.join(10)
        assert seen == [before]
        assert served.wait_for(0, 0.0)[1] == before
    finally:
        location.close()


def test_a_database_that_stays_unreachable_fails_the_read(postgres_url: str) -> None:
    """Opened again once, not for ever: while the server is down the read fails (the query API
    answers 503 with Retry-After, tests/api/test_unexpected_errors.py)."""
    location, served = _served_empty_generation(postgres_url)
    try:
        served.wait_for(0, 0.0)
        location.url = f"postgresql://vss:vss@127.0.0.1:{free_port()}/vss"  # where no server listens
        end_other_connections(postgres_url)
        with pytest.raises(psycopg.OperationalError):
            served.wait_for(0, 0.0)
    finally:
        location.close()
