"""One trace from a coordinator's request to every consumer that applied its events (OpenTelemetry).

Off by default. ``VSS_OTLP_ENDPOINT`` (an OTLP/HTTP traces URL, e.g.
``http://collector:4318/v1/traces``) turns it on for a process (:func:`run_service`
configures it at start). The W3C trace context travels with the events:

- each API request has a server span (the child of the caller's ``traceparent``, if any);
- the events a request stores keep that span's ``traceparent`` beside their hashed state
  (never hashed, never in the CloudEvent body: operational, not part of the fact);
- the relay puts it on each message's ``traceparent`` header;
- each consumer applies a message inside a consumer span, the child of that header's context.

Without a configured provider nothing is recorded and nothing is stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TRACEPARENT = "traceparent"  # the W3C header, and the stored state's key
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: Tracer | None = None  # None: tracing is off in this process
_provider: trace.TracerProvider | None = None


class TracingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSS_", extra="ignore")

    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint the services' traces are exported to; unset: no tracing",
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with each export (e.g. an API key)"
    )


def otlp_tracer_provider(service_name: str, settings: TracingSettings) -> TracerProvider | None:
    """A tracer provider exporting in batches to the configured endpoint; None when tracing is off."""
    if not settings.otlp_endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, headers=settings.otlp_headers or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configure(provider: trace.TracerProvider | None) -> None:
    """Trace this process's requests and consumers with ``provider`` (None: stop tracing)."""
    global _tracer, _provider  # noqa: PLW0603 - one setting per process, made once at start (tests reset it)
    _tracer = provider.get_tracer("vss") if provider is not None else None
    _provider = provider


def provider() -> trace.TracerProvider | None:
    """The provider :func:`configure` was given (for FastStream's tracing middleware)."""
    return _provider


def enabled() -> bool:
    return _tracer is not None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span current here (None: tracing off, or no span)."""
    if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def span(name: str, kind: SpanKind, parent: Mapping[str, str] | None = None) -> Iterator[Span | None]:
    """A span current for the block, the child of ``parent``'s ``traceparent`` (if it has one)."""
    if _tracer is None:
        yield None
        return
    context = _PROPAGATOR.extract(dict(parent)) if parent else None
    with _tracer.start_as_current_span(name, context=context, kind=kind) as current:
        yield current


Scope = MutableMapping[str, Any]


class TraceRequests:
    """ASGI middleware: each HTTP request in a server span (when tracing is on)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status: list[int] = []

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        with span(scope["method"], SpanKind.SERVER, headers) as current:
            await self.app(scope, receive, sending)
            if current is not None:
                # Named by the route's template, never the path: ids stay out of the trace store.
                template = getattr(scope.get("route"), "path", None)
                if template is not None:
                    current.update_name(f"{scope['method']} {template}")
                    current.set_attribute("http.route", template)
                if status:
                    current.set_attribute("http.response.status_code", status[0])
