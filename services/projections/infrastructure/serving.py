"""The query API's view of the read models: the current generation, one connection per thread."""

from __future__ import annotations

import threading
import time

import psycopg

from services.projections.application.ports import NoReadModels, Position
from services.projections.infrastructure.database import ReadModelLocation
from services.projections.infrastructure.readmodels import ReadModels


class ServedGenerations:
    """Implements the ServedReadModels port."""

    def __init__(self, location: ReadModelLocation) -> None:
        self.location = location
        self._local = threading.local()
        self._pointer_lock = threading.Lock()

    def current(self) -> ReadModels:
        """The serving generation's tables for this thread (re-opened after a switch)."""
        with self._pointer_lock:  # PostgreSQL: one pointer connection, shared
            try:
                generation = self.location.current()
            except psycopg.OperationalError:  # the server restarted: once more, on a new connection
                generation = self.location.current()
        if generation is None:
            raise NoReadModels(
                "the projections have not built any read model yet (is the projector running?)"
            )
        models: ReadModels | None = getattr(self._local, "models", None)
        if models is None or models.generation != generation or models.conn.closed:
            if models is not None:
                models.close()
            models = ReadModels(self.location.connect(generation))
            models.create_tables()
            self._local.models = models
        return models

    def _position(self) -> tuple[ReadModels, Position]:
        """This thread's read models and their position: the first statement of a request on
        the thread's connection. PostgreSQL: a connection the server ended since its last use
        (a restart, a failover) is only found dead by using it; it is then opened again and
        the statement sent once more, so the request does not fail. A second failure (the
        server still down) is raised: the query API answers 503 with Retry-After."""
        models = self.current()
        try:
            return models, models.position()
        except psycopg.OperationalError:
            if not models.conn.is_postgres:
                raise
            models.close()
            self._local.models = None
            models = self.current()
            return models, models.position()

    def wait_for(self, log_position: int, limit: float) -> tuple[ReadModels, Position, bool]:
        """The read models once they reflect ``log_position`` (or when ``limit`` seconds passed)."""
        deadline = time.monotonic() + limit
        delay = 0.002
        while True:
            models, position = self._position()
            if position.log_position >= log_position:
                return models, position, True
            if time.monotonic() >= deadline:
                return models, position, False
            time.sleep(delay)
            delay = min(0.02, delay * 1.5)
