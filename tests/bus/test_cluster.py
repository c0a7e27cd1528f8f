"""The relay and a durable consumer on a three-node JetStream cluster, everything at three
replicas: production's topology (deploy/README.md) on loopback.

While commands are written, the node leading the case stream is killed with SIGKILL. It is
made to lead the consumer and the relay's lease bucket too (the stream's and the bucket's
leaders are moved to the consumer's), so the kill takes every leader the relay and the
consumer use. The other two nodes elect new leaders and the relay and the consumer go on
through them; the node is started again and catches up. At the end the stream holds every
stored event once, in log order, the consumer has applied each exactly once in order, and
the relay's position is the stream's.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerInfo, StreamInfo

from services.case.infrastructure.outbox import CaseEventLog
from services.case.infrastructure.store import CaseEventStore, StoreConfig, migrate
from services.shared.bus.consumer import ConsumerSettings, DurableConsumer
from services.shared.bus.embedded import EmbeddedNatsCluster
from services.shared.bus.faststream_subscriber import FastStreamSubscriber, run_subscribers, service_broker
from services.shared.bus.names import BusNames
from services.shared.bus.relay import Relay, RelaySettings, lease_bucket
from services.shared.bus.streams import server_urls
from tests.bus.conftest import RelayThread
from tests.bus.test_relay_faults import assert_exactly_once_in_order, write_events
from tests.support.bus import read_stream, wait_until
from tests.support.projection import EventTable

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REPLICAS = 3
# Four writers, paced so that writing outlasts the leader's loss and the election after it.
EVENTS = 2400
PAUSE = 0.012


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedNatsCluster]:
    with EmbeddedNatsCluster(tmp_path / "nats") as nodes:
        yield nodes


async def _stream_info(url: str, stream: str) -> StreamInfo:
    nc = await nats.connect(server_urls(url), connect_timeout=2)
    try:
        return await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()


async def _consumer_info(url: str, stream: str, durable: str) -> ConsumerInfo:
    nc = await nats.connect(server_urls(url), connect_timeout=2)
    try:
        return await nc.jetstream().consumer_info(stream, durable)
    finally:
        await nc.close()


async def _gather_leaders(url: str, stream: str, durable: str, lease: str) -> str | None:
    """Move the stream's and the lease bucket's leaders to the node leading the consumer (a
    step-down with a preferred successor); that node once it leads all three, else None.

    Not the consumer to the stream's leader: the consumer meets the step-down as a lost
    leader and may re-create its durable, which lands anywhere.
    """
    nc = await nats.connect(server_urls(url), connect_timeout=2)
    try:
        js = nc.jetstream()
        consumer = (await js.consumer_info(stream, durable)).cluster
        node = consumer.leader if consumer is not None else None
        if node is None:
            return None
        preferred = json.dumps({"placement": {"preferred": node}}).encode()
        gathered = True
        for name in (stream, lease):
            group = (await js.stream_info(name)).cluster
            if group is None or group.leader != node:
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{name}", preferred, timeout=5)
                gathered = False
        return node if gathered else None
    finally:
        await nc.close()


def gather_leaders(url: str, stream: str, durable: str, lease: str) -> str | None:
    try:
        return asyncio.run(_gather_leaders(url, stream, durable, lease))
    except (nats.errors.Error, TimeoutError, OSError):  # a leader being elected: ask again
        return None


def stream_leader(url: str, stream: str) -> str | None:
    """The server name of the stream's leader; None while there is none to answer."""
    try:
        info = asyncio.run(_stream_info(url, stream))
    except (nats.errors.Error, TimeoutError, OSError):
        return None
    return info.cluster.leader if info.cluster is not None else None


@dataclass
class KitRun:
    """The kit's subscriber, run as a service runs it (a ``run(stop)`` part for RelayThread)."""

    subscriber: FastStreamSubscriber

    async def run(self, stop: asyncio.Event) -> None:
        await run_subscribers(self.subscriber.broker, [self.subscriber], stop)


@pytest.mark.parametrize("faststream", [False, True], ids=["DurableConsumer", "FastStream-kit"])
def test_the_stream_leaders_node_killed_mid_publishing_loses_and_duplicates_nothing(
    cluster: EmbeddedNatsCluster, sqlite_url: str, tmp_path: Path, faststream: bool
) -> None:
    names = BusNames.unique()
    url = cluster.url  # every node, comma-separated, as VSS_NATS_URL
    migrate(StoreConfig(sqlite_url))
    store = CaseEventStore(StoreConfig(sqlite_url))
    table = EventTable(tmp_path / "projection.sqlite", "projection")
    relay = Relay(CaseEventLog(store, names), url, settings=RelaySettings(names=names, replicas=REPLICAS))
    settings = ConsumerSettings(durable="projection", names=names, replicas=REPLICAS)
    consumer: DurableConsumer | FastStreamSubscriber = DurableConsumer(url, table, settings)
    if faststream:
        consumer = FastStreamSubscriber(service_broker(url, name="projection"), table, settings)
    stop_writing = threading.Event()
    outcome: list[list[BaseException]] = []
    writers = threading.Thread(
        target=lambda: outcome.append(write_events(sqlite_url, EVENTS, pause=PAUSE, stop=stop_writing))
    )
    relay_thread = RelayThread(relay).start()
    consumer_thread = RelayThread(
        KitRun(consumer) if isinstance(consumer, FastStreamSubscriber) else consumer
    )
    consumer_thread.start()
    writers.start()
    try:
        assert wait_until(lambda: relay.position >= EVENTS // 4, 60), f"relay at {relay.position}"
        lease = f"KV_{lease_bucket(names)}"
        gathered: list[str] = []

        def one_node_leads_all() -> bool:
            node = gather_leaders(url, names.stream, "projection", lease)
            gathered[:] = [node] if node is not None else []
            return node is not None

        assert wait_until(one_node_leads_all, 30, 0.5), "the leaders did not gather on one node"
        leader = stream_leader(url, names.stream)
        assert leader == gathered[0]
        assert writers.is_alive(), "the leader must be lost while events are written"
        victim = cluster.node_named(leader)
        victim.kill()
        at_kill = relay.position

        # The two nodes left elect a leader among them and the relay publishes through it.
        assert wait_until(lambda: stream_leader(url, names.stream) not in (None, leader), 30, 0.2)
        assert wait_until(lambda: relay.position > at_kill + 100, 30), (
            f"the relay stayed at {relay.position} (killed at {at_kill}) with one node down"
        )
        cluster.start_node(victim, timeout=60)  # returns once its replicas have caught up
        writers.join(120)
        assert outcome == [[]], outcome
        assert wait_until(lambda: relay.position == EVENTS, 60), f"relay at {relay.position}"
        assert wait_until(lambda: table.applied_through() == EVENTS, 60), (
            f"consumer at {table.applied_through()}"
        )
    finally:
        stop_writing.set()
        writers.join(30)
        consumer_thread.stop()
        relay_thread.stop()
        store.close()

    # The stream: each event once, in log order (positions and sequences 1..N).
    messages = asyncio.run(read_stream(url, names.stream, names.subjects))
    assert [m.position for m in messages] == list(range(1, EVENTS + 1))
    assert [m.sequence for m in messages] == list(range(1, EVENTS + 1))
    check = CaseEventStore(StoreConfig(sqlite_url))
    try:
        assert check.max_position() == EVENTS
        assert_exactly_once_in_order(messages, check)
    finally:
        check.close()

    # The relay ends where the stream ends.
    info = asyncio.run(_stream_info(url, names.stream))
    assert info.state.messages == info.state.last_seq == EVENTS
    assert relay.position == messages[-1].position

    # Three replicas, the restarted one caught up; the relay's lease replicated as the stream.
    assert info.config.num_replicas == REPLICAS
    assert info.cluster is not None
    assert info.cluster.replicas is not None
    assert len(info.cluster.replicas) == REPLICAS - 1

    def replicas_current() -> bool:
        # A peer reports current once it has applied the leader's last entries: read again,
        # the last writes may still be on their way to it.
        replicas = asyncio.run(_stream_info(url, names.stream)).cluster
        peers = replicas.replicas if replicas is not None else None
        return bool(peers) and all(peer.current and not peer.offline for peer in peers or ())

    assert wait_until(replicas_current, 30, 0.2), asyncio.run(_stream_info(url, names.stream)).cluster
    assert asyncio.run(_stream_info(url, lease)).config.num_replicas == REPLICAS

    # The consumer: each event applied exactly once, in stream order, and nothing left for it.
    rows = table.rows()
    table.close()
    assert [row[4] for row in rows] == list(range(1, EVENTS + 1))
    assert [row[0] for row in rows] == [m.event.id for m in messages]
    assert consumer.applied == EVENTS
    assert consumer.dead_lettered == 0
    durable = asyncio.run(_consumer_info(url, names.stream, "projection"))
    assert durable.num_pending == 0
    assert durable.config.num_replicas in (0, REPLICAS)  # 0: as many as the stream
    assert durable.cluster is not None
    assert durable.cluster.replicas is not None
    assert len(durable.cluster.replicas) == REPLICAS - 1
