"""A durable's state lives in the server's memory: a server restart forgets it, and the
consumer points a new one at its own stored state, so every event is still applied once,
in order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from services.shared.bus.embedded import EmbeddedNatsServer
from services.shared.bus.names import BusNames
from tests.bus.test_consumer import rows, start_consumer
from tests.support.bus import wait_until


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    """A server of this test's own (the session's is shared), restarted on the same port and store."""
    server = EmbeddedNatsServer(tmp_path / "jetstream", log_file=tmp_path / "nats-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(restartable: EmbeddedNatsServer) -> str:
    return restartable.url


async def _durable_in_memory(url: str, stream: str, durable: str) -> bool:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return bool(info.config.mem_storage)
    finally:
        await nc.close()


@pytest.mark.parametrize("faststream", [False, True], ids=["DurableConsumer", "FastStream-kit"])
def test_a_server_restart_forgets_the_durable_and_the_consumer_points_a_new_one(
    published: Callable[[int], int],
    restartable: EmbeddedNatsServer,
    bus_names: BusNames,
    tmp_path: Path,
    faststream: bool,
) -> None:
    first = published(2)
    db = tmp_path / "state.sqlite"
    log = tmp_path / "consumer.log"
    process = start_consumer(restartable.url, bus_names, db, "projection", log, faststream=faststream)
    try:
        assert wait_until(lambda: len(rows(db)) == first, 30), log.read_text()[-3000:]
        assert asyncio.run(_durable_in_memory(restartable.url, bus_names.stream, "projection"))
        restartable.stop()
        restartable.start()
        total = published(2)  # events the forgotten durable never knew of
        assert total > first
        assert wait_until(lambda: len(rows(db)) == total, 30), log.read_text()[-3000:]
        assert asyncio.run(_durable_in_memory(restartable.url, bus_names.stream, "projection"))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert [r[4] for r in rows(db)] == list(range(1, total + 1))  # each once, in stream order
