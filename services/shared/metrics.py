"""``/metrics`` of every VSS process, in the Prometheus text format (``prometheus_client``).

Per durable consumer (labels ``service``, ``stream``, ``consumer``): events applied,
redeliveries skipped, events dead-lettered, seconds in the handler, whether it found the
stream caught up at its last look, and its lag (``num_pending`` + ``num_ack_pending``).
Per relay (``service``, ``stream``): messages acknowledged, the log position the stream is
known to hold, and lease terms (more than one: it lost the lease meanwhile). Plus the
process's own CPU, memory and file descriptors.

The counters are the consumers' and relays' own, read at each scrape. The lag is asked of
the server every few seconds by :meth:`ProcessMetrics.refresh` (a task of the process, on
a connection of its own, so it is known while a consumer is stopped), never during a
scrape: a scrape answers at once even while NATS is away (then without a lag). An HTTP
service serves ``/metrics`` on its API port; a process without an API on its own metrics
port when one is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Protocol

import structlog
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.shared.bus.authorization import NatsAuth
from services.shared.bus.lag import Durable, LagReader

log = structlog.get_logger("vss.metrics")

REFRESH_INTERVAL = 5.0  # seconds between reads of the consumers' lag


class WatchedConsumer(Protocol):
    """What the metrics read of a durable consumer (the kit's
    :class:`.bus.faststream_subscriber.FastStreamSubscriber`, or :class:`.bus.consumer.DurableConsumer`)."""

    applied: int
    skipped: int
    dead_lettered: int
    handler_seconds: float
    caught_up: bool

    @property
    def stream(self) -> str: ...

    @property
    def settings(self) -> _Durable: ...


class _Durable(Protocol):
    @property
    def durable(self) -> str: ...


class WatchedRelay(Protocol):
    """What the metrics read of a relay (:class:`.bus.relay.Relay`)."""

    published: int
    position: int
    terms: int

    @property
    def settings(self) -> _RelayNames: ...


class _RelayNames(Protocol):
    @property
    def names(self) -> _Stream: ...


class _Stream(Protocol):
    @property
    def stream(self) -> str: ...


LagRead = Callable[[Sequence[Durable]], Awaitable[dict[Durable, int | None]]]


class BusReach(Protocol):
    """Where the bus is and who this process is to it (what :class:`.settings.BusSettings` says)."""

    def nats(self) -> str: ...
    def nats_auth(self) -> NatsAuth: ...


def server_lags(bus: BusReach) -> LagRead:
    """Lags asked of the server on a connection of the metrics' own (kept between reads), so a
    consumer's lag is known while it is stopped (or its process busy)."""
    return LagReader(bus.nats(), auth=bus.nats_auth()).read


class ProcessMetrics:
    """One process's registry; ``watch`` its consumers and relays."""

    def __init__(self, service: str, read_lags: LagRead | None = None) -> None:
        self.service = service
        self.read_lags = read_lags  # how the consumers' lag is read (None: not at all)
        self.consumers: list[WatchedConsumer] = []
        self.relays: list[WatchedRelay] = []
        self.lags: dict[tuple[str, str], int] = {}  # (stream, durable) -> last lag read
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(_PartsCollector(self))

    def watch(
        self, *, consumers: Sequence[WatchedConsumer] = (), relays: Sequence[WatchedRelay] = ()
    ) -> ProcessMetrics:
        self.consumers.extend(consumers)
        self.relays.extend(relays)
        return self

    async def refresh(self) -> None:
        """Read each consumer's lag (from the server: :func:`server_lags`); one that cannot be
        read has none."""
        if self.read_lags is None:
            return
        found = await self.read_lags([(c.stream, c.settings.durable) for c in self.consumers])
        self.lags = {key: lag for key, lag in found.items() if lag is not None}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def route(self, app: FastAPI) -> None:
        """Serve ``GET /metrics`` on ``app`` (not in its OpenAPI document)."""

        def metrics() -> Response:
            return Response(self.render(), media_type=CONTENT_TYPE_LATEST)

        app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)

    def app(self) -> FastAPI:
        """An app with ``/metrics`` only, for a process without an API of its own."""
        app = FastAPI(title=f"VSS {self.service} metrics", docs_url=None, redoc_url=None, openapi_url=None)
        self.route(app)
        return app


class _PartsCollector(Collector):
    def __init__(self, metrics: ProcessMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        labels = ["service", "stream", "consumer"]
        applied = CounterMetricFamily(
            "vss_consumer_applied", "Events applied to the service's state", labels=labels
        )
        skipped = CounterMetricFamily(
            "vss_consumer_skipped", "Redelivered events skipped (applied before)", labels=labels
        )
        dead = CounterMetricFamily(
            "vss_consumer_dead_lettered", "Events sent to the dead-letter stream", labels=labels
        )
        seconds = CounterMetricFamily(
            "vss_consumer_handler_seconds", "Time spent applying events (retries included)", labels=labels
        )
        caught_up = GaugeMetricFamily(
            "vss_consumer_caught_up", "1 if the last look found nothing left to apply", labels=labels
        )
        lag = GaugeMetricFamily(
            "vss_consumer_lag", "Messages of the stream the durable has not applied", labels=labels
        )
        for consumer in m.consumers:
            values = [m.service, consumer.stream, consumer.settings.durable]
            applied.add_metric(values, consumer.applied)
            skipped.add_metric(values, consumer.skipped)
            dead.add_metric(values, consumer.dead_lettered)
            seconds.add_metric(values, consumer.handler_seconds)
            caught_up.add_metric(values, 1.0 if consumer.caught_up else 0.0)
            with contextlib.suppress(KeyError):
                lag.add_metric(values, m.lags[(values[1], values[2])])
        yield from (applied, skipped, dead, seconds, caught_up, lag)
        relay_labels = ["service", "stream"]
        published = CounterMetricFamily(
            "vss_relay_published", "Messages the stream acknowledged to this relay", labels=relay_labels
        )
        position = GaugeMetricFamily(
            "vss_relay_position", "The log position the stream is known to hold", labels=relay_labels
        )
        terms = CounterMetricFamily(
            "vss_relay_lease_terms",
            "Times the relay took its lease (more than once: it lost it)",
            labels=relay_labels,
        )
        for relay in m.relays:
            values = [m.service, relay.settings.names.stream]
            published.add_metric(values, relay.published)
            position.add_metric(values, relay.position)
            terms.add_metric(values, relay.terms)
        yield from (published, position, terms)
