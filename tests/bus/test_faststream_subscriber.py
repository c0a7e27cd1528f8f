"""The kit's FastStream subscriber against a real nats-server and the real relay."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from faststream.nats import NatsBroker
from nats.js.api import AckPolicy, ConsumerInfo, DeliverPolicy

from services.case.domain.events import CaseEventData
from services.shared.bus import faststream_subscriber as kit_module
from services.shared.bus.consumer import ConsumerSettings, Delivery
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, run_subscribers, service_broker
from services.shared.bus.names import BusNames
from tests.bus.test_consumer import BatchTable, BlockingTable, lose_a_pull_while_applying
from tests.support.bus import read_stream
from tests.support.projection import EventTable
from vss_contracts.subjects import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ORIGINAL_MSG_ID,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SEQUENCE,
    HEADER_MSG_ID,
)


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    """The bus is what is tested here: the case store on SQLite only."""
    return sqlite_url


class TypedTable(EventTable):
    """The test projection, also checking that the kit's decoder gave the typed payload."""

    def apply(self, delivery: Delivery) -> bool:
        assert isinstance(delivery.data, CaseEventData), type(delivery.data)
        return super().apply(delivery)


async def run_until(
    nats_url: str,
    table: EventTable,
    settings: ConsumerSettings,
    done: Callable[[FastStreamSubscriber], bool],
    *,
    middlewares: Sequence[Any] = (),
    timeout: float = 20,
) -> FastStreamSubscriber:
    """The kit's subscriber on a broker of its own until ``done``; the broker stopped after."""
    broker = NatsBroker(nats_url, middlewares=tuple(middlewares))
    subscriber = FastStreamSubscriber(broker, table, settings)
    await subscriber.prepare()
    await broker.start()
    try:
        for _ in range(int(timeout / 0.02)):
            if done(subscriber):
                break
            await asyncio.sleep(0.02)
    finally:
        await broker.stop()
    return subscriber


@pytest.mark.parametrize("fetch_batch", [1, 20], ids=["one-in-flight", "in-order-batches"])
def test_every_event_is_applied_once_in_stream_order_and_a_restart_resumes_after_the_stored_sequence(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, fetch_batch: int
) -> None:
    total = published(4)
    table = TypedTable(tmp_path / "state.sqlite", "projection", slow=0.001)
    settings = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=fetch_batch)
    half = total // 2

    first = asyncio.run(run_until(nats_url, table, settings, lambda s: s.applied >= half))
    assert first.applied >= half
    second = asyncio.run(run_until(nats_url, table, settings, lambda _: len(table.rows()) == total))

    rows = table.rows()
    assert [r[4] for r in rows] == list(range(1, total + 1))  # each once, in stream order
    assert first.applied + second.applied == total
    assert second.skipped == 0  # resumed after the stored sequence: nothing delivered twice
    assert table.applied_through() == total
    table.close()


def test_the_durable_is_repointed_at_the_stored_sequence_when_the_server_holds_unacknowledged_ones(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    """A killed process leaves a message delivered but not acknowledged (and with
    max_ack_pending=1 the server would hold everything back until ack_wait): the kit
    re-creates the durable at the stored sequence + 1 before FastStream binds to it."""
    total = published(1)
    table = EventTable(tmp_path / "state.sqlite", "projection")
    settings = ConsumerSettings(durable="projection", names=bus_names, ack_wait=60)
    broker = NatsBroker(nats_url)
    kit = FastStreamSubscriber(broker, table, settings)

    async def take_one_and_vanish() -> None:
        await kit.prepare()  # creates the durable
        nc = await nats.connect(nats_url)
        sub = await nc.jetstream().pull_subscribe_bind(settings.durable, bus_names.stream)
        [msg] = await sub.fetch(1, timeout=5)
        assert msg.metadata.sequence.stream == 1  # fetched, never acknowledged
        await nc.close()
        await broker.stop()

    asyncio.run(take_one_and_vanish())
    after = asyncio.run(
        run_until(nats_url, table, settings, lambda _: len(table.rows()) == total, timeout=10)
    )
    assert after.applied == total  # at once, not after ack_wait
    assert [r[4] for r in table.rows()] == list(range(1, total + 1))
    table.close()


@pytest.mark.parametrize("handler", [EventTable, BatchTable], ids=["per-event", "batch-handler"])
def test_a_redelivered_message_is_acknowledged_and_skipped_by_its_stored_sequence(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, handler: type[EventTable]
) -> None:
    total = published(1)
    table = handler(tmp_path / "state.sqlite", "projection")
    settings = ConsumerSettings(durable="projection", names=bus_names)
    asyncio.run(run_until(nats_url, table, settings, lambda s: s.applied == total))
    before = table.rows()

    async def redeliver_all() -> FastStreamSubscriber:
        # The durable rewound to the start and the in-memory position forgotten: only the
        # position stored with the state can refuse them now.
        broker = NatsBroker(nats_url)
        kit = FastStreamSubscriber(broker, table, settings)
        await kit.prepare()
        js = broker.config.connection_state.stream
        await js.delete_consumer(bus_names.stream, settings.durable)
        config = kit.consumer_config()
        config.deliver_policy = DeliverPolicy.ALL
        await js.add_consumer(bus_names.stream, config)
        kit._position = 0
        await broker.start()
        for _ in range(500):
            if kit.skipped == total:
                break
            await asyncio.sleep(0.02)
        await broker.stop()
        return kit

    kit = asyncio.run(redeliver_all())
    assert kit.skipped == total
    assert kit.applied == 0
    assert table.rows() == before
    assert table.applied_through() == total
    table.close()


def test_undecodable_and_always_failing_messages_are_dead_lettered_with_the_reason_and_the_consumer_goes_on(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(3)
    events = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
    failing_case = events[20].event.subject
    failing = [m for m in events if m.event.subject == failing_case]

    async def publish_malformed() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().publish(
            bus_names.subject(uuid.uuid4(), "CaseOpened"), b"{not json", headers={HEADER_MSG_ID: "bad-1"}
        )
        await nc.close()

    asyncio.run(publish_malformed())
    table = EventTable(tmp_path / "state.sqlite", "projection", fail_case=failing_case)
    settings = ConsumerSettings(durable="projection", names=bus_names, max_attempts=3, backoff=(0.01,))

    async def run_and_read_lag() -> tuple[FastStreamSubscriber, int]:
        kit = await run_until(nats_url, table, settings, lambda s: s.dead_lettered == len(failing) + 1)
        broker = NatsBroker(nats_url)
        await broker.connect()
        info = await broker.config.connection_state.stream.consumer_info(bus_names.stream, "projection")
        await broker.stop()
        return kit, (info.num_pending or 0) + (info.num_ack_pending or 0)

    kit, lag = asyncio.run(run_and_read_lag())
    assert lag == 0  # a rejected (terminated) message is past the ack floor too
    assert len(table.rows()) == total - len(failing)
    assert table.applied_through() == total + 1
    assert all(table.attempts[m.event.id] == 3 for m in failing)
    assert kit.retries == 2 * len(failing)
    dead = asyncio.run(
        read_stream(nats_url, bus_names.dead_letter_stream, f"{bus_names.dead_letter_prefix}.>")
    )
    assert len(dead) == len(failing) + 1
    for letter, original in zip(dead[:-1], failing, strict=True):
        assert letter.body == original.body
        assert letter.subject == bus_names.dead_letter_subject("projection", original.subject)
        assert letter.headers[HEADER_DLQ_REASON].startswith(
            "failed 3 times, last: RuntimeError: cannot apply"
        )
        assert letter.headers[HEADER_DLQ_SEQUENCE] == str(original.sequence)
        assert letter.headers[HEADER_DLQ_CONSUMER] == "projection"
        assert letter.headers[HEADER_DLQ_ORIGINAL_MSG_ID] == original.headers[HEADER_MSG_ID]
    assert dead[-1].body == b"{not json"
    assert dead[-1].headers[HEADER_DLQ_REASON].startswith("undecodable: ValidationError")
    table.close()


def test_a_batch_handler_applies_each_pull_in_one_call_and_a_failed_pull_goes_one_by_one(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(6)
    table = BatchTable(tmp_path / "batched.sqlite", "batched", fail_batches=1)
    settings = ConsumerSettings(durable="batched", names=bus_names, fetch_batch=20)
    kit = asyncio.run(run_until(nats_url, table, settings, lambda _: len(table.rows()) == total))
    assert kit.batched
    assert [r[4] for r in table.rows()] == list(range(1, total + 1))  # each once, in stream order
    assert table.batches, "the batch path was used"
    assert max(table.batches) > 1
    assert sum(table.batches) < total  # the failed pull's messages went one by one
    assert kit.applied == total
    again = asyncio.run(run_until(nats_url, table, settings, lambda _: True, timeout=0.3))
    assert again.applied == again.skipped == 0  # resumed after the stored sequence
    table.close()


class ThreadNoting(BatchTable):
    """A batch table that notes the thread each pull is applied in."""

    def __init__(self, path: Path, consumer: str, *, in_loop: bool) -> None:
        super().__init__(path, consumer)
        self.applies_in_loop = in_loop
        self.threads: set[int] = set()

    def apply_batch(self, deliveries: Sequence[Delivery]) -> int:
        self.threads.add(threading.get_ident())
        return super().apply_batch(deliveries)


@pytest.mark.parametrize("in_loop", [False, True], ids=["worker-thread", "in-the-loop"])
def test_a_pull_is_applied_in_the_loop_only_for_a_handler_that_asks(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, in_loop: bool
) -> None:
    total = published(5)
    table = ThreadNoting(tmp_path / "noted.sqlite", "noted", in_loop=in_loop)
    settings = ConsumerSettings(durable="noted", names=bus_names, fetch_batch=20)
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    kit = asyncio.run(run_until(nats_url, table, settings, lambda _: len(table.rows()) == total))
    assert kit.applied == total
    assert [r[4] for r in table.rows()] == list(range(1, total + 1))
    assert table.threads, "the batch path was used"
    assert (table.threads == {loop_thread}) is in_loop
    table.close()


def test_a_pull_is_acknowledged_by_its_last_message_and_a_durable_made_before_is_recreated(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    """With pulls of more than one message the durable acknowledges all before the one acked
    (AckAll): the kit acks a pull once, after its transaction. A durable created with explicit
    acks (one in flight, or a kit before this) is recreated where the handler's state is, so
    nothing is applied twice or passed over."""
    total = published(4)
    table = BatchTable(tmp_path / "state.sqlite", "projection")
    one_by_one = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=1)
    half = total // 2
    first = asyncio.run(run_until(nats_url, table, one_by_one, lambda s: s.applied >= half))

    assert _durable(nats_url, bus_names).config.ack_policy == AckPolicy.EXPLICIT
    pulls = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=20)
    second = asyncio.run(run_until(nats_url, table, pulls, lambda _: len(table.rows()) == total))

    assert [r[4] for r in table.rows()] == list(range(1, total + 1))  # each once, in stream order
    assert first.applied + second.applied == total
    assert second.skipped == 0
    assert table.batches  # the second run applied whole pulls
    info = _settled_durable(nats_url, bus_names)
    assert info.config.ack_policy == AckPolicy.ALL
    assert info.ack_floor.stream_seq == total


def test_a_pull_applied_one_by_one_is_acknowledged_once_each_of_its_messages_is_applied(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    """A per-event handler with pulls: the pull's messages are acknowledged together, after
    each was applied (the durable acks all before the one acked)."""
    total = published(2)
    table = EventTable(tmp_path / "state.sqlite", "projection")
    settings = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=20)
    kit = asyncio.run(run_until(nats_url, table, settings, lambda _: len(table.rows()) == total))

    assert [r[4] for r in table.rows()] == list(range(1, total + 1))
    assert kit.applied == total
    assert kit.skipped == 0  # nothing sent again
    assert _settled_durable(nats_url, bus_names).ack_floor.stream_seq == total
    table.close()


def _durable(nats_url: str, bus_names: BusNames) -> ConsumerInfo:
    """The durable ``projection`` as the server holds it now."""

    async def info() -> ConsumerInfo:
        nc = await nats.connect(nats_url)
        try:
            return await nc.jetstream().consumer_info(bus_names.stream, "projection")
        finally:
            await nc.close()

    return asyncio.run(info())


def _settled_durable(nats_url: str, bus_names: BusNames) -> ConsumerInfo:
    """The durable ``projection`` once the server has taken in the acks sent to it."""
    info = _durable(nats_url, bus_names)
    for _ in range(100):  # the server takes acks in on its own time
        if info.num_ack_pending == 0:
            break
        time.sleep(0.02)
        info = _durable(nats_url, bus_names)
    assert info.num_ack_pending == 0
    return info


def test_a_repoint_that_fails_is_tried_again_and_the_subscriber_runs_on(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a reconnect the server may not answer yet: pointing the durable fails, is
    tried again with backoff, and the subscriber is started again, not left stopped."""
    total = published(1)
    table = EventTable(tmp_path / "state.sqlite", "projection")
    settings = ConsumerSettings(durable="projection", names=bus_names, backoff=(0.01,))
    real = kit_module.point_durable_at
    failures = [RuntimeError("JetStream not ready"), RuntimeError("JetStream not ready")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    async def repoint_through_failures() -> FastStreamSubscriber:
        broker = NatsBroker(nats_url)
        kit = FastStreamSubscriber(broker, table, settings)
        await kit.prepare()
        await broker.start()
        monkeypatch.setattr(kit_module, "point_durable_at", flaky)
        await kit.repoint()
        assert failures == []  # both failures were met, and retried past
        assert kit.subscriber.running
        for _ in range(500):
            if kit.applied == total:
                break
            await asyncio.sleep(0.02)
        await broker.stop()
        return kit

    kit = asyncio.run(repoint_through_failures())
    assert kit.applied == total
    assert [r[4] for r in table.rows()] == list(range(1, total + 1))
    table.close()


@pytest.mark.parametrize("fetch_batch", [1, 20], ids=["one-in-flight", "batch-handler"])
def test_a_services_subscribers_run_on_one_broker_until_stop_and_know_when_they_caught_up(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path, fetch_batch: int
) -> None:
    total = published(2)
    path = tmp_path / "state.sqlite"
    handler = BatchTable(path, "projection") if fetch_batch > 1 else EventTable(path, "projection")
    settings = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=fetch_batch)
    broker = service_broker(nats_url, name="projections")
    kit = FastStreamSubscriber(broker, handler, settings)
    assert (kit.caught_up, kit.reached_end) == (False, False)  # not known before the first look

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_subscribers(broker, [kit], stop))
        for _ in range(500):
            if kit.caught_up and handler.applied_through() == total:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    assert handler.applied_through() == total
    assert (kit.caught_up, kit.reached_end) == (True, True)
    assert kit.handler_seconds > 0
    assert not kit.subscriber.running  # the broker stopped with the service
    handler.close()


def test_a_service_stopped_while_the_server_is_away_stops_at_once(tmp_path: Path) -> None:
    broker = service_broker("nats://127.0.0.1:1", name="projections")
    table = EventTable(tmp_path / "state.sqlite", "projection")
    kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable="projection"))

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_subscribers(broker, [kit], stop))
        await asyncio.sleep(0.5)  # still connecting: nothing answers
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(run())
    assert not kit.reached_end
    table.close()


def test_a_subscriber_waiting_for_its_stream_holds_no_other_of_the_service_back(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(1)
    table = EventTable(tmp_path / "state.sqlite", "projection")
    waiting = EventTable(tmp_path / "other.sqlite", "deliveries")
    broker = service_broker(nats_url, name="projections")
    kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable="projection", names=bus_names))
    unpublished = BusNames.unique()  # its owner never ran: no stream
    other = FastStreamSubscriber(broker, waiting, ConsumerSettings(durable="deliveries", names=unpublished))

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_subscribers(broker, [kit, other], stop))
        for _ in range(500):
            if table.applied_through() == total:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)  # the wait for the missing stream ends too

    asyncio.run(run())
    assert table.applied_through() == total
    assert not other.reached_end
    table.close()
    waiting.close()


def test_messages_a_pull_lost_on_the_way_are_applied_in_order_not_passed_over(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    """As ``DurableConsumer`` (``tests/bus/test_consumer.py``): a message the server handed out
    and the subscriber never got (a node killed with a pull in flight) would come back only
    after ack_wait, behind later ones, and look applied. The kit sees the jump in the stream
    sequences, re-points and applies every event once, in order."""
    total = published(1)
    table = BlockingTable(tmp_path / "state.sqlite", "projection", at=3)
    settings = ConsumerSettings(durable="projection", names=bus_names, fetch_batch=2)  # pulls 1-2, 3-4, …
    broker = service_broker(nats_url, name="projection")
    kit = FastStreamSubscriber(broker, table, settings)

    async def run(stop: asyncio.Event) -> None:
        await run_subscribers(broker, [kit], stop)

    # Applying 3 with 4 in hand, no pull in flight: sequence 5 is the one lost.
    asyncio.run(lose_a_pull_while_applying(nats_url, bus_names.stream, table, run, 5, total))
    assert [row[4] for row in table.rows()] == list(range(1, total + 1))
    assert kit.dead_lettered == 0
    table.close()


class StoreGone(EventTable):
    """A table whose store went away: every apply fails, and so does passing a message over."""

    def apply(self, delivery: Delivery) -> bool:
        raise RuntimeError("the connection is lost")

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        raise RuntimeError("the connection is closed")


def test_a_handler_whose_store_is_gone_ends_the_service_rather_than_retrying_for_ever(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    """As DurableConsumer's run raised: the service ends, and its supervisor starts it again
    with fresh connections (the kit's retries are for the bus, not for the handler's store)."""
    published(1)
    table = StoreGone(tmp_path / "state.sqlite", "projection")
    settings = ConsumerSettings(durable="projection", names=bus_names, max_attempts=1)
    broker = service_broker(nats_url, name="projection")
    kit = FastStreamSubscriber(broker, table, settings)

    async def run() -> None:
        await asyncio.wait_for(run_subscribers(broker, [kit], asyncio.Event()), 20)

    with pytest.raises(RuntimeError, match="the connection is closed"):
        asyncio.run(run())
    assert table.applied_through() == 0  # nothing passed over
    table.close()
