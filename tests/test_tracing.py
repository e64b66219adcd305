"""OpenTelemetry traces from a real `weighbridge serve` process to a real OTLP/HTTP receiver on
loopback (the protobuf the exporter sends, decoded with OpenTelemetry's own proto classes): one
span per request with its route, upstream, tokens and cost, a child of the caller's traceparent;
nothing is exported unless the OTEL_* variables ask for it."""

from __future__ import annotations

import http.server
import os
import threading
import time

import httpx
import pytest

from .conftest import free_port, write
from .serve_process import serve


@pytest.fixture()
def receiver():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                for ss in rs.scope_spans:
                    spans.extend((service, s) for s in ss.spans)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/v1/traces", spans
    server.shutdown()


def _attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = (v.string_value if v.HasField("string_value") else v.int_value if v.HasField("int_value")
                      else v.bool_value if v.HasField("bool_value") else v.double_value if v.HasField("double_value")
                      else [x.string_value for x in v.array_value.values])
    return out


def test_a_span_per_request_reaches_the_collector_as_a_child_of_the_callers_trace(tmp_path, llama_server, receiver):
    endpoint, spans = receiver
    plan = write(tmp_path / "p.yaml", f"routes:\n  chat:\n    upstreams: [{{name: smol, base_url: '{llama_server}', "
                                      "model: smollm2, price: {input_per_mtok: 1, output_per_mtok: 2}}]\n")
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "gw-test"}
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with serve(str(plan), env) as (base, _):
        r = httpx.post(base + "/v1/chat/completions", timeout=60, headers={
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            json={"model": "chat", "max_tokens": 3, "messages": [{"role": "user", "content": "say zebrafish"}]})
        assert r.status_code == 200
        deadline = time.time() + 10
        while not spans and time.time() < deadline:
            time.sleep(0.1)
    assert len(spans) == 1
    service, span = spans[0]
    a = _attrs(span)
    assert service == "gw-test" and span.name == "POST /v1/chat/completions"
    assert span.trace_id.hex() == trace_id and span.parent_span_id.hex() == "00f067aa0ba902b7"
    usage = r.json()["usage"]
    assert a["weighbridge.route"] == "chat" and a["weighbridge.upstream"] == "smol" and a["weighbridge.tiers"] == ["smol"]
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"] and a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["weighbridge.cost_usd"] == pytest.approx((usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1e6)
    assert a["http.response.status_code"] == 200 and a["weighbridge.cache_hit"] is False
    assert "zebrafish" not in str(a) and "zebrafish" not in span.name  # figures and names only, never text


def test_no_tracing_unless_asked(tmp_path, llama_server, receiver):
    endpoint, spans = receiver
    plan = write(tmp_path / "p.yaml", f"routes:\n  chat:\n    upstreams: [{{name: smol, base_url: '{llama_server}', "
                                      "model: smollm2}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint  # an endpoint alone turns nothing on
    with serve(str(plan), env) as (base, _):
        assert httpx.post(base + "/v1/chat/completions", timeout=60, json={
            "model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
        time.sleep(1.0)
    assert spans == []
