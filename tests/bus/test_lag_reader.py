"""The metrics' lag reads: one connection kept from read to read, replaced when it cannot serve."""

from __future__ import annotations

import asyncio

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from services.shared.bus.lag import LagReader, read_lags
from services.shared.bus.names import BusNames


async def _stream_with_a_durable(url: str, names: BusNames, messages: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=names.stream, subjects=[names.subjects])
        await js.add_consumer(
            names.stream, ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT)
        )
        for number in range(messages):
            await js.publish(f"{names.subject_prefix}.c.{number}", b"{}")
    finally:
        await nc.close()


def test_reads_share_one_connection_and_a_new_event_loop_gets_its_own(
    nats_url: str, bus_names: BusNames
) -> None:
    asyncio.run(_stream_with_a_durable(nats_url, bus_names, 3))
    reader = LagReader(nats_url)
    durables = [(bus_names.stream, "reader"), (bus_names.stream, "missing")]

    async def twice() -> object:
        first = await reader.read(durables)
        connection = reader._nc
        second = await reader.read(durables)
        assert reader._nc is connection is not None  # kept, not opened again
        assert first == second
        return connection

    before = asyncio.run(twice())
    assert asyncio.run(reader.read(durables)) == {durables[0]: 3, durables[1]: None}
    assert reader._nc is not before  # the old loop's connection cannot serve this one
    asyncio.run(reader.close())


def test_a_server_that_cannot_be_reached_leaves_every_lag_unknown() -> None:
    lags = asyncio.run(read_lags("nats://127.0.0.1:1", [("S", "d")], timeout=2.0))
    assert lags == {("S", "d"): None}
