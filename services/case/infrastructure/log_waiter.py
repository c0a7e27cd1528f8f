"""How the relay learns of new events: PostgreSQL LISTEN/NOTIFY; on SQLite the commit's
wake datagram (:mod:`services.shared.bus.wake`), with polling as the fallback."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog

from services.case.infrastructure.store import LOG_CHANNEL, StoreConfig
from services.shared.bus.relay import LogWaiter
from services.shared.bus.wake import store_waiter

log = structlog.get_logger("vss.case.relay")


class PostgresLogWaiter:
    """Wakes on the NOTIFY every commit raises; falls back to the timeout if the listener is down."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def _listener(self) -> psycopg.AsyncConnection[tuple[object, ...]] | None:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                await self._conn.execute(f"LISTEN {LOG_CHANNEL}")
            except psycopg.Error as error:
                log.warning("relay.listen_failed", error=str(error))
                self._conn = None
        return self._conn

    async def wait(self, timeout: float) -> None:
        conn = await self._listener()
        if conn is None:
            await asyncio.sleep(timeout)
            return
        try:
            async for _ in conn.notifies(timeout=timeout, stop_after=1):
                break
        except psycopg.Error as error:
            log.warning("relay.listen_lost", error=str(error))
            with contextlib.suppress(Exception):
                await conn.close()
            self._conn = None

    def release(self) -> None:
        pass  # listening is harmless for a relay that does not lead (it never waits)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


def waiter_for(config: StoreConfig, *, wake: bool = True, wake_poll_interval: float = 0.1) -> LogWaiter:
    """PostgreSQL: LISTEN. SQLite: the wake socket (``wake``; polled every
    ``wake_poll_interval`` while bound, at the relay's interval otherwise), or polling alone."""
    if config.is_postgres:
        return PostgresLogWaiter(config.url)
    return store_waiter(config, wake=wake, bound_wait=wake_poll_interval)
