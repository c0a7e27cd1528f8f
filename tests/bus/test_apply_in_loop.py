"""Where a handler's apply runs: a worker thread by default, the event loop when it asks."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from services.shared.bus.consumer import ConsumerSettings, Delivery, apply_in_place
from services.shared.bus.names import BusNames
from vss_contracts.envelope import CloudEvent


class Recording:
    def __init__(self, *, in_loop: bool | None) -> None:
        if in_loop is not None:
            self.applies_in_loop = in_loop
        self.threads: list[int] = []
        self.failures_left = 1

    def applied_through(self) -> int:
        return 0

    def apply(self, delivery: Delivery) -> bool:
        self.threads.append(threading.get_ident())
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("once")  # retried in place, where the first attempt ran
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        pass


@pytest.mark.parametrize(("in_loop", "in_the_loop"), [(None, False), (False, False), (True, True)])
def test_apply_runs_in_the_loop_only_for_a_handler_that_asks(in_loop: bool | None, in_the_loop: bool) -> None:
    handler = Recording(in_loop=in_loop)
    delivery = Delivery(
        event=cast(CloudEvent, None), data=None, stream_sequence=1, subject="s", headers={}, delivered=1
    )
    settings = ConsumerSettings(durable="d", names=BusNames(), backoff=(0.0,))

    async def main() -> bool | object:
        async def in_progress() -> None:
            pass

        return await apply_in_place(handler, delivery, settings, 1, in_progress)

    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    assert asyncio.run(main()) is True
    assert len(handler.threads) == 2
    assert all((thread == loop_thread) is in_the_loop for thread in handler.threads)
