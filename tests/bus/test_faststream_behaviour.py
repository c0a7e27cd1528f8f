"""FastStream's own behaviour that would break a guarantee of the kit, against a real nats-server.

Each ``xfail(strict=True)`` test asserts the guarantee with FastStream's default (or the
obvious) configuration and fails: it shows why the kit configures or adds what it does
(docs/adr/0012). Strict: should a FastStream release change the behaviour, the test passes,
the run fails, and the kit's work-around can be reconsidered. Beside each, the same check
through the kit's configuration passes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.prometheus import NatsPrometheusMiddleware
from nats.js.api import ConsumerConfig, DiscardPolicy, StreamConfig
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.shared.bus.consumer import ConsumerSettings
from services.shared.bus.faststream_metrics import BusMetrics
from services.shared.bus.faststream_subscriber import FastStreamSubscriber
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, declare_if_missing
from tests.support.bus import read_stream
from tests.support.projection import EventTable
from vss_contracts.subjects import HEADER_DLQ_SEQUENCE

Body = Callable[[NatsBroker], Awaitable[None]]


async def with_stream(nats_url: str, names: BusNames, messages: int, body: Body) -> StreamConfig:
    """The case stream declared as its owner does, ``messages`` published on it (one subject
    each), then ``body(broker)``; the stream's configuration afterwards."""
    broker = NatsBroker(nats_url)
    await broker.connect()
    js = broker.config.connection_state.stream
    await declare_if_missing(js, case_stream_config(names))
    for i in range(messages):
        await js.publish(names.subject(uuid.uuid4(), "CaseOpened"), str(i + 1).encode())
    try:
        await body(broker)
    finally:
        await broker.stop()
    check = NatsBroker(nats_url)
    await check.connect()
    config = (await check.config.connection_state.stream.stream_info(names.stream)).config
    await check.stop()
    return config


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------- ack policy
@pytest.mark.xfail(
    strict=True,
    reason="FastStream's default ack policy (REJECT_ON_ERROR) terminates a message whose handler"
    " raised: JetStream never redelivers it, and the event is lost to this consumer",
)
def test_faststream_default_ack_policy_redelivers_a_message_whose_handler_failed(
    nats_url: str, bus_names: BusNames
) -> None:
    deliveries: list[int] = []

    async def body(broker: NatsBroker) -> None:
        @broker.subscriber(
            bus_names.subjects,
            stream=JStream(bus_names.stream, declare=False),
            durable="default-ack",
            pull_sub=PullSub(batch_size=1, timeout=0.2),
            config=ConsumerConfig(ack_wait=0.5),
        )
        async def handle(message: NatsMessage) -> None:
            deliveries.append(message.raw_message.metadata.num_delivered)
            if len(deliveries) == 1:
                raise RuntimeError("a passing failure (the database was busy)")

        await broker.start()
        await until(lambda: len(deliveries) >= 2, 3)

    asyncio.run(with_stream(nats_url, bus_names, 1, body))
    assert deliveries == [1, 2]


# --------------------------------------------------------------------- ordering
@pytest.mark.xfail(
    strict=True,
    reason="PullSub(batch_size>1) starts a task per message of the pulled batch: a slower"
    " handler call is overtaken by the next message's, and stream order is lost",
)
def test_faststream_pull_batch_handles_messages_in_stream_order(nats_url: str, bus_names: BusNames) -> None:
    order: list[int] = []

    async def body(broker: NatsBroker) -> None:
        @broker.subscriber(
            bus_names.subjects,
            stream=JStream(bus_names.stream, declare=False),
            durable="batched",
            pull_sub=PullSub(batch_size=10, timeout=0.5),
            ack_policy=AckPolicy.ACK,
        )
        async def handle(message: NatsMessage) -> None:
            sequence = message.raw_message.metadata.sequence.stream
            await asyncio.sleep((10 - sequence) * 0.005)  # earlier events take longer
            order.append(sequence)

        await broker.start()
        await until(lambda: len(order) == 10, 5)

    asyncio.run(with_stream(nats_url, bus_names, 10, body))
    assert order == list(range(1, 11))


@pytest.mark.parametrize("fetch_batch", [1, 10], ids=["one-in-flight", "in-order-batches"])
def test_the_kit_handles_one_message_at_a_time_in_stream_order(
    nats_url: str, bus_names: BusNames, tmp_path: Path, fetch_batch: int
) -> None:
    order: list[int] = []

    class Slow(EventTable):
        """Earlier messages take longer: handled concurrently, later ones would finish first."""

        def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
            time.sleep((10 - stream_sequence) * 0.005)
            order.append(stream_sequence)
            super().pass_over(stream_sequence, event_id)

    table = Slow(tmp_path / "state.sqlite", "ordered")

    async def body(broker: NatsBroker) -> None:
        settings = ConsumerSettings(durable="ordered", names=bus_names, fetch_batch=fetch_batch)
        kit = FastStreamSubscriber(broker, table, settings)
        await kit.prepare()
        await broker.start()
        await until(lambda: kit.dead_lettered == 10, 5)  # the bodies are no CloudEvents: parked

    asyncio.run(with_stream(nats_url, bus_names, 10, body))
    assert order == list(range(1, 11))
    dead = asyncio.run(_dead_letter_sequences(nats_url, bus_names))
    assert dead == list(range(1, 11))
    table.close()


async def _dead_letter_sequences(nats_url: str, names: BusNames) -> list[int]:
    letters = await read_stream(nats_url, names.dead_letter_stream, f"{names.dead_letter_prefix}.>")
    return [int(letter.headers[HEADER_DLQ_SEQUENCE]) for letter in letters]


# ------------------------------------------------------------- the stream's owner
@pytest.mark.xfail(
    strict=True,
    reason="broker.start() declares a JStream (declare=True by default) and, finding the stream"
    " with another configuration, updates it with the subscriber's: the owner's settings"
    " (discard new, the de-duplication window) are overwritten",
)
def test_faststream_default_jstream_leaves_the_owners_stream_configuration_alone(
    nats_url: str, bus_names: BusNames
) -> None:
    async def body(broker: NatsBroker) -> None:
        @broker.subscriber(
            bus_names.subjects,
            stream=JStream(bus_names.stream),
            durable="declaring",
            pull_sub=PullSub(batch_size=1),
            ack_policy=AckPolicy.MANUAL,
        )
        async def handle(message: NatsMessage) -> None:
            await message.ack()

        await broker.start()

    config = asyncio.run(with_stream(nats_url, bus_names, 0, body))
    owners = case_stream_config(bus_names)
    assert (config.discard, config.duplicate_window) == (DiscardPolicy.NEW, owners.duplicate_window)


def test_the_kit_binds_to_the_stream_without_declaring_it(
    nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    table = EventTable(tmp_path / "state.sqlite", "binding")

    async def body(broker: NatsBroker) -> None:
        kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable="binding", names=bus_names))
        await kit.prepare()
        await broker.start()

    config = asyncio.run(with_stream(nats_url, bus_names, 0, body))
    owners = case_stream_config(bus_names)
    assert (config.discard, config.duplicate_window, config.allow_atomic) == (
        DiscardPolicy.NEW,
        owners.duplicate_window,
        True,
    )
    table.close()


# ----------------------------------------------------------------------- metrics
def _handler_labels(text: str) -> set[str]:
    return {
        sample.labels["handler"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "faststream_received_messages_total"
    }


@pytest.mark.xfail(
    strict=True,
    reason="FastStream's NATS Prometheus provider labels a consumed message by its subject:"
    " on vss.case.<case id>.<type> that is one time series per case and event type",
)
def test_faststream_nats_metrics_label_a_subscriber_not_each_subject(
    nats_url: str, bus_names: BusNames
) -> None:
    registry = CollectorRegistry()
    seen: list[int] = []

    async def body(broker: NatsBroker) -> None:
        broker.add_middleware(NatsPrometheusMiddleware(registry=registry))

        @broker.subscriber(
            bus_names.subjects,
            stream=JStream(bus_names.stream, declare=False),
            durable="labelled",
            pull_sub=PullSub(batch_size=1, timeout=0.2),
            ack_policy=AckPolicy.ACK,
        )
        async def handle(message: NatsMessage) -> None:
            seen.append(1)

        await broker.start()
        await until(lambda: len(seen) == 3, 5)

    asyncio.run(with_stream(nats_url, bus_names, 3, body))
    assert len(_handler_labels(generate_latest(registry).decode())) == 1


def test_the_kits_metrics_label_a_subscriber_by_stream_and_durable(
    nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    metrics = BusMetrics("test")
    table = EventTable(tmp_path / "state.sqlite", "labelled")

    async def body(broker: NatsBroker) -> None:
        broker.add_middleware(metrics.middleware)
        kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable="labelled", names=bus_names))
        await kit.prepare()
        await broker.start()
        await until(lambda: kit.dead_lettered == 3, 5)
        transport = httpx.ASGITransport(app=metrics.asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            text = (await client.get("/metrics")).text
        assert _handler_labels(text) == {f"{bus_names.stream}/labelled"}

    asyncio.run(with_stream(nats_url, bus_names, 3, body))
    table.close()
