"""The query API's read-model connections after a PostgreSQL restart: opened again, not
failing every request of a thread until the process restarts."""

from __future__ import annotations

import psycopg
import pytest

from services.projections.infrastructure.database import ReadModelLocation, new_generation
from services.projections.infrastructure.readmodels import ReadModels
from services.projections.infrastructure.serving import ServedGenerations

pytestmark = pytest.mark.postgres


def test_connections_a_restart_ended_are_opened_again(postgres_url: str) -> None:
    location = ReadModelLocation(postgres_url)
    generation = new_generation()
    ReadModels(location.connect(generation)).create_tables()
    location.point_to(generation)
    served = ServedGenerations(location)
    try:
        before = served.current().position()
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # as a restart does
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        models = served.current()  # the shared pointer: found dead, opened again at once
        with pytest.raises(psycopg.OperationalError):  # this thread's connection: fails once
            models.position()
        assert served.current().position() == before  # then opened again
    finally:
        location.close()
