"""One trace from a coordinator's HTTP request to the consumer that applied its event.

The real case API (its ASGI app), the real store, the real relay on a real nats-server and a
real ``DurableConsumer``; spans kept by the SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.case.application.service import CaseService
from services.case.entrypoints.http import create_app
from services.case.infrastructure.store import CaseEventStore
from services.shared import tracing
from services.shared.access_log import AccessLogStore
from services.shared.auth import TokenService
from services.shared.bus.consumer import ConsumerSettings, DurableConsumer
from services.shared.bus.names import BusNames
from tests.support.clock import FixedClock
from tests.support.projection import EventTable

TOKENS = TokenService(key="trace-secret-" + "t" * 40, algorithm="HS256", issuer="vss", audience="vss")


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        yield exporter
    finally:
        tracing.configure(None)


CALLER_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # the caller's own trace


def open_case_over_http(
    store: CaseEventStore, clock: FixedClock, tmp_path: Path, *, traceparent: str
) -> Response:
    """POST /v1/cases to the real case API, as a coordinator whose own trace is ``traceparent``."""
    app = create_app(
        CaseService(store, clock), TOKENS, AccessLogStore(f"sqlite:///{tmp_path / 'access.sqlite'}")
    )
    token = TOKENS.mint(
        user_id="anna.k", organisation_id="vgr-psykiatri", principal="region", roles=["coordinator"]
    )
    response: Response = TestClient(app).post(
        "/v1/cases",
        json={
            "client": {"personal_identity_number": "19121212-1212", "name": "Tolvan Tolvansson"},
            "municipality": {"code": "1480", "name": "Göteborg"},
            "region": {"code": "14", "name": "Västra Götalandsregionen"},
            "opened_on": clock.today().isoformat(),
        },
        headers={"Authorization": f"Bearer {token}", "traceparent": traceparent},
    )
    return response


def test_one_trace_spans_the_request_the_store_the_relay_and_the_consumer(
    spans: InMemorySpanExporter,
    store: CaseEventStore,
    clock: FixedClock,
    nats_url: str,
    bus_names: BusNames,
    run_relay: Callable[..., AbstractContextManager[object]],
    tmp_path: Path,
) -> None:
    opened = open_case_over_http(store, clock, tmp_path, traceparent=CALLER_TRACE)
    assert opened.status_code == 201, opened.text
    table = EventTable(tmp_path / "state.sqlite", "traced")
    consumer = DurableConsumer(nats_url, table, ConsumerSettings(durable="traced", names=bus_names))

    async def consume() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        for _ in range(200):
            if table.rows():
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)

    with run_relay(store):
        asyncio.run(consume())
    assert len(table.rows()) == 1
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.kind is SpanKind.SERVER]
    [applied] = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert request.name == "POST /v1/cases"
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["http.route"] == "/v1/cases"  # the template: ids stay out of names
    # One trace: the caller's, through the request, the stored event and the relay's message.
    assert format(request.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert applied.context.trace_id == request.context.trace_id
    assert applied.parent is not None
    assert applied.parent.span_id == request.context.span_id
    assert applied.name == "apply traced"
    table.close()


def test_without_tracing_nothing_is_recorded_and_nothing_stored(
    store: CaseEventStore, clock: FixedClock, tmp_path: Path
) -> None:
    tracing.configure(None)
    opened = open_case_over_http(store, clock, tmp_path, traceparent=CALLER_TRACE)
    assert opened.status_code == 201
    [event] = store.published_log(0)
    assert "traceparent" not in store.log_rows(0, 10)[0][4].decode()
    assert event.traceparent is None
