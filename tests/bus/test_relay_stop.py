"""The relay stops when asked, even if its lease keeper swallows a cancellation.

Python 3.11's ``asyncio.wait_for`` (inside nats-py's requests) loses a cancel that lands
as the awaited reply arrives; the lease keeper, cancelled during a renewal, then went on
renewing, and the relay's thread never ended (seen once in CI). No server needed: the
publishing step only waits, and the lease is a stand-in with the keeper's behaviour.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.shared.bus.relay import Relay


class _SwallowingLease:
    """Renews every 10 ms; the first cancel is lost, as 3.11's wait_for can lose it."""

    def __init__(self) -> None:
        self.swallowed = 0

    async def keep(self) -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1


class _WaitingRelay(Relay):
    async def _publish_from_tail(self, nc: Any, js: Any) -> None:
        await asyncio.Event().wait()  # nothing to publish: waits until cancelled


def test_the_leader_stops_even_when_its_keeper_swallows_a_cancel() -> None:
    async def scenario() -> tuple[bool, int]:
        relay = _WaitingRelay(log_=None, nats_url="nats://unused")  # type: ignore[arg-type]
        lease = _SwallowingLease()
        stop = asyncio.Event()
        leading = asyncio.create_task(relay._run_leader(None, None, lease, stop))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        stop.set()
        done, _ = await asyncio.wait({leading}, timeout=3)  # before the fix: never done
        return leading in done, lease.swallowed

    assert asyncio.run(scenario()) == (True, 1)
