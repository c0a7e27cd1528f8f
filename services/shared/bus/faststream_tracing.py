"""Traces of the kit's subscribers: FastStream's OpenTelemetry middleware, exported over OTLP.

Off by default. ``VSS_OTLP_ENDPOINT`` (an OTLP/HTTP traces URL, e.g.
``http://collector:4318/v1/traces``) turns it on: each consumed message gets a consumer span,
a child of the trace whose W3C ``traceparent`` the message's headers carry, and the
handler runs with that span current (``asyncio.to_thread`` copies the context), so the
spans of the service's own work join the same trace.
"""

from __future__ import annotations

from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


def telemetry_middlewares(tracer_provider: TracerProvider | None) -> tuple[NatsTelemetryMiddleware, ...]:
    """The broker middlewares for tracing: none without a provider."""
    if tracer_provider is None:
        return ()
    # Message counters stay with the Prometheus middleware: traces only here.
    return (NatsTelemetryMiddleware(tracer_provider=tracer_provider, include_messages_counters=False),)
