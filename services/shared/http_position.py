"""Read-your-writes over HTTP: ``?position=`` waits until a service has applied the case log that far.

A command's response names the log position of its events. A service that follows the
case stream (the query API's read models, the meetings schedule) lags it by a moment; a
client that passes the position waits, at most the service's wait limit, until the
service has applied the log through it, and gets 503 with ``Retry-After`` if it has not.
The answer says how far the service had applied the log (``Vss-Log-Position``).

A wait needs a valid token (the caller checks it first), sleeps on the event loop (not
in a worker thread that ordinary requests need) and only ``max_waits`` wait at once: one
more is refused with 503 and ``Retry-After``, not queued.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import Query

from services.shared.problems import ProblemException

POSITION_HEADER = "Vss-Log-Position"
MAX_POSITION = 2**63 - 1  # log positions fit in 64 bits

PositionQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_POSITION,
        description="Wait until this service reflects this log position (from a command's response)",
    ),
]


class WaitSlots:
    """How many requests may wait for ``?position=`` at once; one more is refused, not queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._taken >= self.limit:
                return False
            self._taken += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._taken -= 1


async def wait_until(reached: Callable[[], bool], *, limit: float, slots: WaitSlots) -> bool:
    """Whether ``reached()`` (a quick look, run in a worker thread) held within ``limit`` seconds.

    Raises a 503 problem (``too_many_waits``) when ``slots`` are all taken.
    """
    if not slots.take():
        raise ProblemException(
            503,
            "Service Unavailable",
            f"{slots.limit} requests are already waiting for a log position; retry",
            code="too_many_waits",
            headers={"Retry-After": "1"},
        )
    try:
        deadline = time.monotonic() + limit
        delay = 0.002
        while True:
            if await anyio.to_thread.run_sync(reached):
                return True
            if time.monotonic() >= deadline:
                return False
            await anyio.sleep(delay)
            delay = min(0.02, delay * 1.5)
    finally:
        slots.give_back()


def position_not_reached(reached: int, asked: int, limit: float, what: str) -> ProblemException:
    """The 503 for a service that had not applied the log through ``asked`` within the limit."""
    return ProblemException(
        503,
        "Service Unavailable",
        f"the {what} reached log position {reached}, not {asked}, within {limit:g} s; retry",
        code="position_not_reached",
        headers={"Retry-After": "1", POSITION_HEADER: str(reached)},
        position=reached,
    )
