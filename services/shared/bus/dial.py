"""Dialling NATS: the options every VSS process connects with, and the retry until a server answers.

Free of the kit's settings and logging (nats-py and the standard library only), so that a
process that must start fast, the rebuild's stream reader, dials as every service does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from nats.aio.client import Client

C = TypeVar("C", bound=Client)

# Once connected, nats-py reconnects by itself for ever, to any node it knows.
RECONNECTING: dict[str, Any] = {
    "connect_timeout": 2,
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": 0.5,  # seconds; nats-py annotates int, sleeps a float
    "allow_reconnect": True,
}


async def dial(
    client: Callable[[], C],
    *,
    retrying: Callable[[str, float], None],
    stopping: Callable[[], bool] = lambda: False,
    max_backoff: float = 5.0,
    **options: Any,
) -> C:
    """A ``client()`` connected with :data:`RECONNECTING` and ``options``, retrying with backoff
    until the server answers (it may start after us); ``retrying(reason, wait)`` is told of
    each retry. Raises the last error once ``stopping()``."""
    delay = 0.1
    while True:
        try:
            nc = client()
            await nc.connect(**RECONNECTING, **options)
            return nc
        except Exception as error:  # refused, DNS, TLS …: all mean "not yet"
            if stopping():
                raise
            retrying(str(error) or type(error).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(max_backoff, delay * 2)
