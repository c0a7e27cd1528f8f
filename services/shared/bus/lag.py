"""Durable consumers' lag, read from the server on a connection of its own (bounded in time).

Asked of the server, not of the consumer: the lag is known while a consumer is stopped
or its process is busy, and reading it never waits on the consumer's own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import nats

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.streams import server_urls

Durable = tuple[str, str]  # (stream, durable consumer)


async def read_lags(
    nats_url: str, durables: Sequence[Durable], *, auth: NatsAuth | None = None, timeout: float = 3.0
) -> dict[Durable, int | None]:
    """Per durable: messages of its stream not yet applied (pending + unacknowledged); None
    where the server or the consumer cannot be asked within ``timeout`` seconds."""
    lags: dict[Durable, int | None] = dict.fromkeys(durables, None)
    with contextlib.suppress(TimeoutError):  # a server that does not answer: bounded here
        await asyncio.wait_for(_read(nats_url, auth, lags), timeout=timeout)
    return lags


async def _read(nats_url: str, auth: NatsAuth | None, lags: dict[Durable, int | None]) -> None:
    try:
        nc = await nats.connect(
            server_urls(nats_url), connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False,
            **(auth.options() if auth else {}),
        )  # fmt: skip
    except Exception:  # down or refused: the lag is unknown, not an error
        return
    try:
        js = nc.jetstream()
        for stream, durable in lags:
            with contextlib.suppress(Exception):  # a consumer not created yet: unknown
                info = await js.consumer_info(stream, durable)
                lags[(stream, durable)] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    finally:
        await nc.close()
