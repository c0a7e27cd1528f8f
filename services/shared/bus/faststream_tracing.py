"""Traces of the kit's subscribers: FastStream's OpenTelemetry middleware, exported over OTLP.

Off by default. ``VSS_OTLP_ENDPOINT`` (an OTLP/HTTP traces URL, e.g.
``http://collector:4318/v1/traces``) turns it on: each consumed message gets a consumer span,
a child of the trace whose W3C ``traceparent`` the message's headers carry, and the
handler runs with that span current (``asyncio.to_thread`` copies the context), so the
spans of the service's own work join the same trace.
"""

from __future__ import annotations

from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from opentelemetry.trace import TracerProvider

from services.shared.tracing import TracingSettings, otlp_tracer_provider

__all__ = ["TracingSettings", "otlp_tracer_provider", "telemetry_middlewares"]


def telemetry_middlewares(tracer_provider: TracerProvider | None) -> tuple[NatsTelemetryMiddleware, ...]:
    """The broker middlewares for tracing: none without a provider."""
    if tracer_provider is None:
        return ()
    # Message counters stay with the Prometheus middleware: traces only here.
    return (NatsTelemetryMiddleware(tracer_provider=tracer_provider, include_messages_counters=False),)
