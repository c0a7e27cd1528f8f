"""``connect`` hands nats-py every server a URL setting names (a cluster's nodes, comma-separated)."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.streams import connect, server_urls


class RecordingClient(Client):
    """nats-py's client, stopped short of the network: it records what it was asked to reach."""

    servers_asked: Any = None

    async def connect(self, servers: Any = "", **options: Any) -> None:  # type: ignore[override]
        RecordingClient.servers_asked = servers


def test_a_comma_separated_url_is_a_list_of_servers() -> None:
    assert server_urls("nats://a:4222, nats://b:4223,nats://c:4224") == [
        "nats://a:4222",
        "nats://b:4223",
        "nats://c:4224",
    ]
    assert server_urls("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_connect_gives_nats_py_every_node_of_a_cluster() -> None:
    url = "nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
    asyncio.run(connect(url, name="test", client=RecordingClient, auth=NatsAuth()))
    assert RecordingClient.servers_asked == [
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        "nats://127.0.0.1:4224",
    ]
