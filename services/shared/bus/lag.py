"""Durable consumers' lag, read from the server on a connection of its own (bounded in time).

Asked of the server, not of the consumer: the lag is known while a consumer is stopped
or its process is busy, and reading it never waits on the consumer's own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import nats
from nats.aio.client import Client

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.streams import server_urls

Durable = tuple[str, str]  # (stream, durable consumer)


async def read_lags(
    nats_url: str, durables: Sequence[Durable], *, auth: NatsAuth | None = None, timeout: float = 3.0
) -> dict[Durable, int | None]:
    """Per durable: messages of its stream not yet applied (pending + unacknowledged); None
    where the server or the consumer cannot be asked within ``timeout`` seconds. A one-off
    read on a connection of its own (a process reading every few seconds keeps a
    :class:`LagReader`)."""
    reader = LagReader(nats_url, auth=auth, timeout=timeout)
    try:
        return await reader.read(durables)
    finally:
        await reader.close()


class LagReader:
    """Reads lags as :func:`read_lags` does, on one connection kept from read to read: a new
    connection for each read cost every process with consumers a handshake every few seconds.
    A connection that failed, or was opened in another event loop, is replaced at the next read.
    """

    def __init__(self, nats_url: str, *, auth: NatsAuth | None = None, timeout: float = 3.0) -> None:
        self.nats_url = nats_url
        self.auth = auth
        self.timeout = timeout
        self._nc: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self, durables: Sequence[Durable]) -> dict[Durable, int | None]:
        lags: dict[Durable, int | None] = dict.fromkeys(durables, None)
        try:
            # A server that does not answer: bounded here.
            await asyncio.wait_for(self._read(lags), timeout=self.timeout)
        except TimeoutError:
            await self.close()
        return lags

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await nc.close()

    async def _read(self, lags: dict[Durable, int | None]) -> None:
        nc = await self._connection()
        if nc is None:  # down or refused: the lag is unknown, not an error
            return
        js = nc.jetstream()
        for stream, durable in lags:
            try:
                info = await js.consumer_info(stream, durable)
            except Exception:  # a consumer not created yet: unknown
                if not nc.is_connected:
                    await self.close()
                    return
                continue
            lags[(stream, durable)] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def _connection(self) -> Client | None:
        loop = asyncio.get_running_loop()
        if self._nc is not None and (self._loop is not loop or not self._nc.is_connected):
            await self.close()
        if self._nc is None:
            try:
                self._nc = await nats.connect(
                    server_urls(self.nats_url), connect_timeout=1, max_reconnect_attempts=0,
                    allow_reconnect=False, **(self.auth.options() if self.auth else {}),
                )  # fmt: skip
            except Exception:
                return None
            self._loop = loop
        return self._nc
