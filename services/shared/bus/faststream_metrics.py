"""``/metrics`` for a service's FastStream subscribers: FastStream's Prometheus middleware and lag.

- **handled, failed, handler time** come from FastStream's own middleware
  (``faststream_received_processed_messages_total{status}``: ``acked`` applied or skipped,
  ``rejected`` dead-lettered; ``…_exceptions_total``; ``…_duration_seconds``), with one
  change: its NATS provider labels a message by its subject, one series per case, so here
  the label is the JetStream stream and consumer the message came through.
- **consumer lag** (``vss_consumer_lag``: ``num_pending`` + ``num_ack_pending`` of the
  durable, as :meth:`.faststream_subscriber.FastStreamSubscriber.lag`) is read from the server at each scrape,
  so it is right while the subscriber is stopped too.

Mount :meth:`BusMetrics.asgi_app` at ``/metrics`` on the service's HTTP app (or serve it alone).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import structlog
from faststream.message import StreamMessage
from faststream.nats.prometheus.provider import NatsMetricsSettingsProvider
from faststream.prometheus import ConsumeAttrs
from faststream.prometheus.middleware import PrometheusMiddleware
from nats.aio.msg import Msg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from services.shared.bus.consumer import Lag

log = structlog.get_logger("vss.bus.metrics")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LagSource(Protocol):
    """A durable whose lag can be read (the kit's :class:`FastStreamSubscriber`)."""

    @property
    def stream(self) -> str: ...

    @property
    def durable(self) -> str: ...

    async def lag(self) -> Lag: ...


class ConsumerMetricsProvider(NatsMetricsSettingsProvider):
    """FastStream's NATS metrics, labelled by ``<stream>/<consumer>`` rather than the subject.

    A pull handled as one message (the kit's batch mode) counts as its messages.
    """

    def get_consume_attrs_from_message(self, msg: StreamMessage[Msg]) -> ConsumeAttrs:
        raw: Msg | list[Msg] = msg.raw_message
        messages = raw if isinstance(raw, list) else [raw]
        try:
            metadata = messages[0].metadata
            destination = f"{metadata.stream}/{metadata.consumer}"
        except Exception:  # not a JetStream message (no ack reply to read it from)
            destination = "core"
        return {
            "destination_name": destination,
            "message_size": sum(len(m.data) for m in messages),
            "messages_count": len(messages),
        }


def _provider(msg: Msg | list[Msg] | None) -> ConsumerMetricsProvider | None:
    # None for what is not NATS messages (key-value and object store watches).
    return ConsumerMetricsProvider() if isinstance(msg, Msg | list) or msg is None else None


class BusMetrics:
    """One service's metrics: the middleware to give its broker, and the ``/metrics`` app."""

    def __init__(self, app_name: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.middleware = PrometheusMiddleware[Any, Any](
            settings_provider_factory=_provider, registry=self.registry, app_name=app_name
        )
        self._lag = Gauge(
            "vss_consumer_lag",
            "Messages of the stream the durable has not applied (pending + unacknowledged)",
            ["stream", "consumer"],
            registry=self.registry,
        )
        self._sources: list[LagSource] = []

    def track(self, source: LagSource) -> None:
        self._sources.append(source)

    async def refresh(self) -> None:
        """Read each tracked durable's lag from the server (one consumer info each)."""
        for source in self._sources:
            try:
                lag = await source.lag()
            except Exception as error:  # not connected, or the durable is gone: no figure
                log.info(
                    "metrics.lag_unknown", consumer=source.durable, error=str(error) or type(error).__name__
                )
                with contextlib.suppress(KeyError):
                    self._lag.remove(source.stream, source.durable)
                continue
            self._lag.labels(source.stream, source.durable).set(lag.total)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def asgi_app(self) -> AsgiApp:
        """A plain ASGI app answering every GET with the registry (lag refreshed first)."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            await self.refresh()
            body = self.render()
            headers = [
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return app
