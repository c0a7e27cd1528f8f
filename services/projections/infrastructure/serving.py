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

    def wait_for(self, log_position: int, limit: float) -> tuple[ReadModels, Position, bool]:
        """The read models once they reflect ``log_position`` (or when ``limit`` seconds passed)."""
        deadline = time.monotonic() + limit
        delay = 0.002
        while True:
            models = self.current()
            position = models.position()
            if position.log_position >= log_position:
                return models, position, True
            if time.monotonic() >= deadline:
                return models, position, False
            time.sleep(delay)
            delay = min(0.02, delay * 1.5)
