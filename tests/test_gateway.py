"""The gateway on a real loopback port in front of real and fault-injecting upstreams."""

import json
import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.core.errors import ConfigError
from weighbridge.gateway.plan import load_plan

from .conftest import free_port, write
from .gateway_server import Gateway
from .fake_upstream import FakeUpstream, chunk, ok_stream

runner = CliRunner()


def plan_file(tmp_path, routes: str):
    return write(tmp_path / "plan.yaml", routes)


def test_routes_to_a_real_llama_cpp_server_streaming_and_not(tmp_path, llama_server):
    p = plan_file(tmp_path, f"routes:\n  chat:\n    upstreams:\n      - {{name: smol, base_url: '{llama_server}', model: smollm2}}\n")
    with Gateway(p) as gw:
        r = httpx.post(gw + "/chat/completions", json={"model": "chat", "max_tokens": 8,
                                                       "messages": [{"role": "user", "content": "Say hi"}]}, timeout=60)
        assert r.status_code == 200 and r.headers["x-weighbridge-upstream"] == "smol"
        assert r.json()["choices"][0]["message"]["content"]
        events = []
        with httpx.stream("POST", gw + "/chat/completions", timeout=60,
                          json={"model": "chat", "max_tokens": 8, "stream": True,
                                "messages": [{"role": "user", "content": "Say hi"}]}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            for line in s.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
        assert len(events) > 2  # passed through chunk by chunk
        models = httpx.get(gw + "/models").json()
        assert [m["id"] for m in models["data"]] == ["chat"]


def test_fake_upstream_failure_falls_back_in_order(tmp_path):
    with FakeUpstream(lambda h, body, n: h.send_json(503, {"error": "down"})) as bad, \
            FakeUpstream(lambda h, body, n: ok_stream(h, ["fine"])) as good:
        p = plan_file(tmp_path, f"""routes:
  chat:
    upstreams: [{{name: primary, base_url: '{bad.base_url}', model: big}}]
    fallback:
      - {{name: dead, base_url: 'http://127.0.0.1:{free_port()}/v1', model: x}}
      - {{name: backup, base_url: '{good.base_url}', model: small}}
""")
        with Gateway(p) as gw:
            with httpx.stream("POST", gw + "/chat/completions", json={"model": "chat", "stream": True, "messages": []}) as s:
                assert s.headers["x-weighbridge-upstream"] == "backup"
                text = s.read().decode()
        assert '"fine"' in text and good.posts[0]["model"] == "small" and bad.posts[0]["model"] == "big"


def test_fake_upstream_all_failing_gives_an_openai_style_error(tmp_path):
    with FakeUpstream(lambda h, body, n: h.send_json(500, {"error": "boom"})) as bad:
        p = plan_file(tmp_path, f"routes:\n  chat:\n    upstreams: [{{name: only, base_url: '{bad.base_url}', model: m}}]\n")
        with Gateway(p) as gw:
            r = httpx.post(gw + "/chat/completions", json={"model": "chat", "messages": []})
            assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_failed"
            r = httpx.post(gw + "/chat/completions", json={"model": "nope", "messages": []})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            r = httpx.post(gw + "/chat/completions", content=b"not json")
            assert r.status_code == 400 and "error" in r.json()


def test_fake_upstream_stream_breaking_after_first_byte_ends_with_an_error_event(tmp_path):
    def script(h, body, n):
        h.start_stream()
        h.event(chunk("partial"))
        h.connection.shutdown(2)

    with FakeUpstream(script) as up:
        p = plan_file(tmp_path, f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', model: m}}]\n")
        with Gateway(p) as gw:
            with httpx.stream("POST", gw + "/chat/completions", json={"model": "chat", "stream": True, "messages": []}) as s:
                text = s.read().decode()
    assert "partial" in text and "upstream stream broke" in text


def test_only_plan_upstreams_are_called_and_max_tokens_is_capped(tmp_path):
    with FakeUpstream(lambda h, body, n: ok_stream(h, ["x"])) as up:
        p = plan_file(tmp_path, f"routes:\n  chat:\n    max_tokens: 16\n    upstreams: [{{name: u, base_url: '{up.base_url}', model: real-model}}]\n")
        with Gateway(p) as gw:
            httpx.post(gw + "/chat/completions", json={"model": "chat", "max_tokens": 999, "base_url": "http://evil/v1",
                                                        "stream": True, "messages": []})
            httpx.post(gw + "/chat/completions", json={"model": "chat", "stream": True, "messages": []})
            httpx.post(gw + "/chat/completions", json={"model": "chat", "max_tokens": 5, "stream": True, "messages": []})
        assert up.posts[0]["model"] == "real-model" and [b["max_tokens"] for b in up.posts] == [16, 16, 5]


def test_plan_errors_name_file_line_field(tmp_path):
    p = write(tmp_path / "plan.yaml", "routes:\n  chat:\n    upstreams:\n      - {name: u, base_url: 'ftp://x', model: m}\n")
    with pytest.raises(ConfigError) as e:
        load_plan(p)
    assert e.value.line == 4 and "base_url" in e.value.field


def test_serve_refuses_to_bind_beyond_loopback_without_keys(tmp_path):
    p = plan_file(tmp_path, "routes:\n  chat:\n    upstreams: [{name: u, base_url: 'http://127.0.0.1:1/v1', model: m}]\n")
    r = runner.invoke(cli, ["serve", "--plan", str(p), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "loopback" in r.output


def test_serve_smoke_starts_bundled_upstreams_and_verifies_the_audit(tmp_path):
    p = write(tmp_path / "plan.yaml", """routes:
  chat:
    upstreams: [{name: smol, bundled: smollm2-135m}]
    cache: {ttl_s: 60}
filters: {prompt_block: ['forbidden']}
""")
    reqs = write(tmp_path / "requests.yaml", """- {route: chat, max_tokens: 4, temperature: 0, messages: [{role: user, content: hi}]}
- {route: chat, max_tokens: 4, temperature: 0, messages: [{role: user, content: hi}]}
- {route: chat, messages: [{role: user, content: a forbidden word}]}
""")
    r = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["serve", "--plan", str(p), "--smoke", str(reqs)])
    assert r.exit_code == 0, r.output
    assert "started llama.cpp server: SmolLM2-135M" in r.output and "chain intact" in r.output and "3 records" in r.output
    rows = [line for line in r.output.splitlines() if line.startswith("│ chat")]
    assert [row.split("│")[3].strip() for row in rows] == ["200", "200", "400"]
    assert [row.split("│")[6].strip() for row in rows][:2] == ["miss", "hit"]
    bad = write(tmp_path / "bad.yaml", "- {endpoint: chat}\n")
    r = runner.invoke(cli, ["serve", "--plan", str(p), "--smoke", str(bad)])
    assert r.exit_code == 2 and "bad.yaml:1: field '0.route'" in r.output and "started" not in r.output
