"""The kit's FastStream subscriber through faults: NATS stopped and restarted mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from faststream.nats import NatsBroker

from services.case.application.service import CaseService
from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore
from services.shared.bus.consumer import ConsumerSettings, Delivery
from services.shared.bus.faststream_subscriber import FastStreamSubscriber
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings
from tests.bus.test_consumer import BatchTable
from tests.support.bus import read_stream
from tests.support.clock import FixedClock
from tests.support.nats import private_nats_server
from tests.support.projection import EventTable
from tests.support.scenario import drive_to_first_sip

pytestmark = pytest.mark.faults


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


async def until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


class SlowBatchTable(BatchTable):
    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        time.sleep(0.05)
        return super().apply_batch(deliveries)


@pytest.mark.parametrize(
    ("fetch_batch", "batch_handler"),
    [(1, False), (20, False), (5, True)],
    ids=["one-in-flight", "in-order-batches", "batch-handler"],
)
def test_every_event_is_applied_once_in_order_across_a_nats_restart(
    service: CaseService,
    store: CaseEventStore,
    clock: FixedClock,
    tmp_path: Path,
    fetch_batch: int,
    batch_handler: bool,
) -> None:
    for _ in range(6):
        drive_to_first_sip(service, clock)
    total = len(store.read_log(0, 100_000))
    names = BusNames.unique()
    path = tmp_path / "state.sqlite"
    table = SlowBatchTable(path, "projection") if batch_handler else EventTable(path, "projection", slow=0.01)

    with private_nats_server() as server:
        assert server.embedded is not None

        async def relay_everything() -> None:
            stop = asyncio.Event()
            relay = Relay(
                CaseEventLog(store, names),
                server.url,
                settings=RelaySettings(names=names, lease_ttl=1.0, ack_timeout=2.0),
            )
            task = asyncio.create_task(relay.run(stop))
            await until(lambda: relay.published == total, 20)
            stop.set()
            await task

        async def consume_through_a_restart() -> FastStreamSubscriber:
            broker = NatsBroker(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            settings = ConsumerSettings(durable="projection", names=names, fetch_batch=fetch_batch)
            kit = FastStreamSubscriber(broker, table, settings)
            await kit.prepare()
            await broker.start()
            try:
                assert await until(lambda: len(table.rows()) > 20, 20)
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.embedded.start)  # type: ignore[union-attr]
                assert await until(lambda: len(table.rows()) == total, 60), len(table.rows())
                await asyncio.sleep(0.3)  # anything delivered twice now would show
            finally:
                await broker.stop()
            return kit

        asyncio.run(relay_everything())
        assert len(asyncio.run(read_stream(server.url, names.stream, names.subjects))) == total
        kit = asyncio.run(consume_through_a_restart())

    rows = table.rows()
    assert [r[4] for r in rows] == list(range(1, total + 1))  # each once, in stream order
    assert kit.dead_lettered == 0  # nothing out of order (the table refuses a version gap)
    assert table.applied_through() == total
    table.close()
