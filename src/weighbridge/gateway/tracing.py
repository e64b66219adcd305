"""OpenTelemetry traces of the gateway: one span per request with its route, upstream, escalation,
cache hit, tokens and cost, beside the Prometheus metrics. Off unless ``OTEL_TRACES_EXPORTER`` is
set (``otlp`` – OTLP over HTTP/protobuf, configured by the standard ``OTEL_EXPORTER_OTLP_*``
variables – or ``console``); ``OTEL_SDK_DISABLED=true`` turns it off again. A ``traceparent``
header from the client makes the span a child of the caller's trace (W3C Trace Context).

Span attributes follow OpenTelemetry's GenAI conventions where one exists (``gen_ai.usage.*``,
``gen_ai.request.model``) and are named ``weighbridge.*`` otherwise. Only figures and names go
into a span – never prompt or answer text."""

from __future__ import annotations

import os
import time
from typing import Any
from ..core.errors import ConfigError, MissingDependency


class Tracing:
    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("weighbridge.gateway")
        self.propagator = TraceContextTextMapPropagator()

    def request_span(self, call: Any, *, prompt_tokens: int, completion_tokens: int, usd: float, latency_s: float) -> None:
        """Record the finished request as a span that started when it arrived."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        end = time.time_ns()
        start = end - int(latency_s * 1e9)
        parent = self.propagator.extract({"traceparent": call.traceparent}) if call.traceparent else None
        span = self.tracer.start_span(f"POST /v1{call.path}", context=parent, kind=SpanKind.SERVER, start_time=start)
        attrs: dict[str, Any] = {
            "http.request.method": "POST", "http.route": f"/v1{call.path}", "http.response.status_code": call.status,
            "weighbridge.route": call.route_name, "weighbridge.upstream": call.upstream or "",
            "weighbridge.escalated": bool(call.escalated), "weighbridge.cache_hit": bool(call.cache_hit),
            "weighbridge.tiers": [t["upstream"] for t in call.tiers], "weighbridge.stream": bool(call.stream),
            "weighbridge.cost_usd": float(usd), "gen_ai.request.model": call.route_name,
            "gen_ai.usage.input_tokens": int(prompt_tokens), "gen_ai.usage.output_tokens": int(completion_tokens)}
        if call.key_id:
            attrs["weighbridge.key_id"] = call.key_id
        if call.code:
            attrs["error.type"] = call.code
        span.set_attributes(attrs)
        if call.status >= 500:
            span.set_status(Status(StatusCode.ERROR, call.code or str(call.status)))
        span.end(end_time=end)

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what the batch processor still holds


def from_env() -> Tracing | None:
    """The exporter the standard environment variables name, or None (the default: no tracing)."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not exporter or exporter == "none" or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise MissingDependency("OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed: "
                           "pip install 'weighbridge[otel]'") from None
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter: Any = OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_(TRACES_)*
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter()
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={exporter!r}: weighbridge exports otlp (HTTP/protobuf), console or none")
    attrs = {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "weighbridge-gateway"}
    provider = TracerProvider(resource=Resource.create(attrs))  # OTEL_RESOURCE_ATTRIBUTES are merged in
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return Tracing(provider)
