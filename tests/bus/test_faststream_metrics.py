"""``/metrics`` of the kit's FastStream subscribers, read over HTTP against a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from faststream.nats import NatsBroker
from prometheus_client.parser import text_string_to_metric_families

from services.shared.bus.consumer import ConsumerSettings
from services.shared.bus.faststream_metrics import BusMetrics
from services.shared.bus.faststream_subscriber import FastStreamSubscriber
from services.shared.bus.names import BusNames
from services.shared.bus.streams import case_stream_config, declare_if_missing
from tests.bus.test_consumer import BatchTable
from tests.support.bus import read_stream
from tests.support.projection import EventTable


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


async def scrape(metrics: BusMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics through the ASGI app: {(sample name, sorted labels): value}."""
    transport = httpx.ASGITransport(app=metrics.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_report_the_consumer_lag_while_the_subscriber_is_stopped(
    nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    n = 7

    async def main() -> float:
        broker = NatsBroker(nats_url)
        await broker.connect()
        js = broker.config.connection_state.stream
        await declare_if_missing(js, case_stream_config(bus_names))  # as the relay would
        table = EventTable(tmp_path / "state.sqlite", "projection")
        kit = FastStreamSubscriber(broker, table, ConsumerSettings(durable="projection", names=bus_names))
        metrics = BusMetrics("projections")
        metrics.track(kit)
        await kit.prepare()  # the durable exists; the subscriber is never started
        for _ in range(n):
            await js.publish(bus_names.subject(uuid.uuid4(), "CaseOpened"), b"{}")
        samples = await scrape(metrics)
        await broker.stop()
        table.close()
        return samples[("vss_consumer_lag", (("consumer", "projection"), ("stream", bus_names.stream)))]

    assert asyncio.run(main()) == n


def test_metrics_count_handled_and_dead_lettered_messages_and_time_per_durable_not_per_subject(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(3)
    events = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))
    failing_case = events[20].event.subject
    failing = len([m for m in events if m.event.subject == failing_case])
    table = EventTable(tmp_path / "state.sqlite", "projection", fail_case=failing_case)
    settings = ConsumerSettings(durable="projection", names=bus_names, max_attempts=2, backoff=(0.01,))

    async def main() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        metrics = BusMetrics("projections")
        broker = NatsBroker(nats_url, middlewares=(metrics.middleware,))
        kit = FastStreamSubscriber(broker, table, settings)
        metrics.track(kit)
        await kit.prepare()
        await broker.start()
        for _ in range(1000):
            if kit.applied + kit.dead_lettered == total:
                break
            await asyncio.sleep(0.02)
        lag_key = ("vss_consumer_lag", (("consumer", "projection"), ("stream", bus_names.stream)))
        for _ in range(100):  # the last ack is on its way to the server
            samples = await scrape(metrics)
            if samples[lag_key] == 0:
                break
            await asyncio.sleep(0.02)
        await broker.stop()
        return samples

    samples = asyncio.run(main())
    handler = f"{bus_names.stream}/projection"
    labels = (("app_name", "projections"), ("broker", "nats"), ("handler", handler))

    def processed(status: str) -> float:
        return samples[
            ("faststream_received_processed_messages_total", tuple(sorted((*labels, ("status", status)))))
        ]

    assert processed("acked") == total - failing
    assert processed("rejected") == failing  # dead-lettered
    assert samples[("faststream_received_processed_messages_duration_seconds_count", labels)] == total
    assert samples[("vss_consumer_lag", (("consumer", "projection"), ("stream", bus_names.stream)))] == 0
    handlers = {dict(key[1]).get("handler") for key in samples if key[0].startswith("faststream_received")}
    assert handlers == {handler}  # one series per durable, not one per case subject
    table.close()


def test_metrics_count_each_message_of_a_pull_applied_in_one_transaction(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(3)
    table = BatchTable(tmp_path / "batched.sqlite", "batched")
    settings = ConsumerSettings(durable="batched", names=bus_names, fetch_batch=20)
    labels = (("app_name", "projections"), ("broker", "nats"), ("handler", f"{bus_names.stream}/batched"))
    acked = ("faststream_received_processed_messages_total", tuple(sorted((*labels, ("status", "acked")))))

    async def main() -> tuple[FastStreamSubscriber, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        metrics = BusMetrics("projections")
        broker = NatsBroker(nats_url, middlewares=(metrics.middleware,))
        kit = FastStreamSubscriber(broker, table, settings)
        await kit.prepare()
        await broker.start()
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for _ in range(1000):  # counted once the pull's handling has returned
            samples = await scrape(metrics)
            if samples.get(acked) == total:
                break
            await asyncio.sleep(0.02)
        await broker.stop()
        return kit, samples

    kit, samples = asyncio.run(main())
    assert kit.batched
    assert kit.applied == total
    assert samples[("faststream_received_messages_total", labels)] == total
    assert samples[acked] == total
    # One handling per pull: fewer observations than messages.
    assert 0 < samples[("faststream_received_processed_messages_duration_seconds_count", labels)] < total
    table.close()
