"""A comma-separated VSS_NATS_URL (a cluster's nodes) in the one-off connections too."""

from __future__ import annotations

import asyncio

import nats
from nats.js.api import ConsumerConfig

from services.shared.bus.embedded import free_port
from services.shared.bus.lag import read_lags
from services.shared.bus.lease import Lease, current_holder
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, declare_if_missing


def test_the_one_off_connections_reach_a_node_when_another_in_the_list_is_down(
    nats_url: str, bus_names: BusNames
) -> None:
    nodes = f"nats://127.0.0.1:{free_port()},{nats_url}"  # the first node is down

    async def main() -> tuple[str | None, dict[tuple[str, str], int | None]]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await declare_if_missing(js, case_stream_config(bus_names))
            lease = Lease(js, bucket=f"{bus_names.stream}_RELAY", key="leader", owner="relay-urls", ttl=5)
            assert await lease.acquire()
            holder = await current_holder(nodes, bucket=f"{bus_names.stream}_RELAY", key="leader")
            await lease.release()
            await js.add_consumer(bus_names.stream, ConsumerConfig(durable_name="urls"))
            lags = await read_lags(nodes, [(bus_names.stream, "urls")])
            return holder, lags
        finally:
            await nc.close()

    holder, lags = asyncio.run(main())
    assert holder == "relay-urls"
    assert lags == {(bus_names.stream, "urls"): 0}  # asked of the node that is up
