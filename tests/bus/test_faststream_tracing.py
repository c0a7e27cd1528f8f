"""Traces through the kit's FastStream subscriber, seen by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import nats
import pytest
from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.shared.bus.consumer import ConsumerSettings, Delivery
from services.shared.bus.faststream_subscriber import FastStreamSubscriber
from services.shared.bus.faststream_tracing import (
    TracingSettings,
    otlp_tracer_provider,
    telemetry_middlewares,
)
from services.shared.bus.names import BusNames
from tests.support.bus import read_stream
from vss_contracts.subjects import HEADER_MSG_ID


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


class TraceRecorder:
    """A handler that keeps, per stream sequence, the trace and span current while it applies."""

    def __init__(self) -> None:
        self.position = 0
        self.seen: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def applied_through(self) -> int:
        return self.position

    def apply(self, delivery: Delivery) -> bool:
        context = trace.get_current_span().get_span_context()
        with self._lock:
            self.seen[delivery.stream_sequence] = (context.trace_id, context.span_id)
            self.position = delivery.stream_sequence
        return True

    def pass_over(self, stream_sequence: int, event_id: str | None) -> None:
        self.position = stream_sequence


def test_tracing_is_off_unless_an_otlp_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VSS_OTLP_ENDPOINT", raising=False)
    assert otlp_tracer_provider("projections", TracingSettings()) is None
    assert telemetry_middlewares(None) == ()
    monkeypatch.setenv("VSS_OTLP_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    provider = otlp_tracer_provider("projections", TracingSettings())
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "projections"
    assert len(telemetry_middlewares(provider)) == 1
    provider.shutdown()


def test_the_consumer_span_joins_the_trace_carried_in_the_message_headers(
    published, nats_url: str, bus_names: BusNames, tmp_path: Path
) -> None:
    total = published(1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    first = asyncio.run(read_stream(nats_url, bus_names.stream, bus_names.subjects))[0]

    async def main() -> tuple[int, int, TraceRecorder]:
        # A command's trace, carried to the consumer in the message's headers (as the relay will).
        with tracer.start_as_current_span("command") as span:
            own = {k: v for k, v in first.headers.items() if not k.startswith("Nats-")}  # not the batch's
            headers = {**own, HEADER_MSG_ID: "traced-copy"}
            TraceContextTextMapPropagator().inject(headers)
            parent = span.get_span_context()
        nc = await nats.connect(nats_url)
        ack = await nc.jetstream().publish(first.subject, first.body, headers=headers)
        await nc.close()

        recorder = TraceRecorder()
        broker = NatsBroker(nats_url, middlewares=telemetry_middlewares(provider))
        kit = FastStreamSubscriber(broker, recorder, ConsumerSettings(durable="traced", names=bus_names))
        await kit.prepare()
        await broker.start()
        for _ in range(500):
            if kit.applied == total + 1:
                break
            await asyncio.sleep(0.02)
        await broker.stop()
        assert parent.trace_id
        assert ack.seq == total + 1
        return parent.trace_id, parent.span_id, recorder

    trace_id, parent_span_id, recorder = asyncio.run(main())
    consumer_spans = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.CONSUMER]
    traced = [s for s in consumer_spans if s.context.trace_id == trace_id]
    assert len(traced) == 1  # the consumer's span of that one message, in the command's trace
    [span] = traced
    assert span.parent is not None
    assert span.parent.span_id == parent_span_id
    assert span.name == f"{first.subject} process"
    # The handler ran with the consumer span current: its own spans would join the trace too.
    assert recorder.seen[total + 1] == (trace_id, span.context.span_id)
    # The relayed messages carried no trace: each consumer span started its own.
    assert all(s.context.trace_id != trace_id for s in consumer_spans if s is not span)
