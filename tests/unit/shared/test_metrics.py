"""``/metrics``: the consumers' and relays' own counters, and the lag read beside the scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from services.shared.metrics import ProcessMetrics
from services.shared.serve import Service, _with_metrics
from services.shared.settings import CommonSettings


@dataclass
class Durable:
    durable: str


@dataclass
class FakeConsumer:
    stream: str
    settings: Durable
    applied: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    handler_seconds: float = 0.0
    caught_up: bool = False


@dataclass
class Server:
    """The lags the server would answer (None: it cannot be asked)."""

    lags: dict[tuple[str, str], int | None] = field(default_factory=dict)

    async def read(self, durables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        return {d: self.lags.get(d) for d in durables}


@dataclass
class Names:
    stream: str


@dataclass
class RelayConfig:
    names: Names


@dataclass
class FakeRelay:
    settings: RelayConfig
    published: int = 0
    position: int = 0
    terms: int = 1


def samples(metrics: ProcessMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name.startswith("vss_"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_scrape_shows_each_consumers_counters_and_the_lag_last_read() -> None:
    consumer = FakeConsumer("VSS_CASE", Durable("meetings"), applied=40, skipped=2, dead_lettered=1,
                            handler_seconds=0.5, caught_up=True)  # fmt: skip
    relay = FakeRelay(RelayConfig(Names("VSS_MEETINGS")), published=12, position=12, terms=2)
    server = Server({("VSS_CASE", "meetings"): 4})
    metrics = ProcessMetrics("meetings", server.read).watch(consumers=[consumer], relays=[relay])  # type: ignore[list-item]
    labels = (("consumer", "meetings"), ("service", "meetings"), ("stream", "VSS_CASE"))
    before = samples(metrics)
    assert ("vss_consumer_lag", labels) not in before  # not read yet: no figure, not a zero
    asyncio.run(metrics.refresh())
    found = samples(metrics)
    assert found[("vss_consumer_applied_total", labels)] == 40
    assert found[("vss_consumer_skipped_total", labels)] == 2
    assert found[("vss_consumer_dead_lettered_total", labels)] == 1
    assert found[("vss_consumer_handler_seconds_total", labels)] == 0.5
    assert found[("vss_consumer_caught_up", labels)] == 1
    assert found[("vss_consumer_lag", labels)] == 4
    relay_labels = (("service", "meetings"), ("stream", "VSS_MEETINGS"))
    assert found[("vss_relay_published_total", relay_labels)] == 12
    assert found[("vss_relay_position", relay_labels)] == 12
    assert found[("vss_relay_lease_terms_total", relay_labels)] == 2


def test_a_lag_that_cannot_be_read_is_dropped_not_kept_stale() -> None:
    consumer = FakeConsumer("VSS_CASE", Durable("projections"))
    server = Server({("VSS_CASE", "projections"): 5})
    metrics = ProcessMetrics("projector", server.read).watch(consumers=[consumer])  # type: ignore[list-item]
    asyncio.run(metrics.refresh())
    labels = (("consumer", "projections"), ("service", "projector"), ("stream", "VSS_CASE"))
    assert samples(metrics)[("vss_consumer_lag", labels)] == 5
    server.lags.clear()  # the server cannot be asked
    asyncio.run(metrics.refresh())
    assert ("vss_consumer_lag", labels) not in samples(metrics)


def test_metrics_are_served_on_the_api_without_entering_its_openapi_document() -> None:
    app = FastAPI()
    metrics = ProcessMetrics("case")
    metrics.route(app)
    client = TestClient(app)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "process_resident_memory_bytes" in response.text  # the process itself
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
    alone = TestClient(ProcessMetrics("relay").app())
    assert alone.get("/metrics").status_code == 200
    assert alone.get("/docs").status_code == 404


def test_a_part_without_an_api_serves_metrics_on_its_own_port_and_host() -> None:
    async def bus_tasks(stop: asyncio.Event) -> None:
        await stop.wait()

    settings = CommonSettings()
    metrics = ProcessMetrics("relay", Server().read).watch(
        consumers=[FakeConsumer("VSS_CASE", Durable("sharing"))]  # type: ignore[list-item]
    )
    alone = _with_metrics(
        Service(settings, lambda: None, run=bus_tasks, metrics=metrics, host="0.0.0.0", metrics_port=9464)
    )
    assert (alone.host, alone.port) == ("0.0.0.0", 9464)
    assert alone.app is not None
    assert TestClient(alone.app).get("/metrics").status_code == 200
    assert alone.run is not bus_tasks  # the lag is read beside the part's own tasks
    unset = Service(settings, lambda: None, run=bus_tasks, metrics=metrics)
    assert _with_metrics(unset) == unset  # no port: not served
    api = FastAPI()
    with_api = _with_metrics(
        Service(settings, lambda: None, app=api, port=8000, metrics=ProcessMetrics("case"))
    )
    assert (with_api.app, with_api.port) == (api, 8000)
    assert TestClient(api).get("/metrics").status_code == 200
