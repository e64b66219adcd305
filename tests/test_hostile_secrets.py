"""Attack tests, issue 22 item 2: an upstream that echoes our own API key - as a model id, a version
value, a dict key of its usage or of a tool call's arguments, in an error body or in its answer -
never puts it in the store, a report, the JSON output, the terminal, the audit log or a gateway
client's answer. Fake upstreams: only they can echo the key on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from .conftest import write
from .fake_upstream import FakeUpstream
from .serve_process import serve

KEY = "sk-echoed-" + "Q7r2Zp9Lw4" * 4


def _echo_stream(h, body, n) -> None:
    h.start_stream()
    h.event({"id": KEY, "model": KEY, "choices": [{"index": 0, "delta": {"role": "assistant", "content": f"ok {KEY}"},
                                                   "finish_reason": None}]})
    h.event({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                                "function": {"name": "f", "arguments": json.dumps(
                                                                    {KEY: KEY})}}]}, "finish_reason": "stop"}]})
    h.event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, KEY: 1,
                                      "completion_tokens_details": {KEY: 1}}})
    h.event("[DONE]")
    h.close_connection = True


def _files(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}


def test_fake_upstream_echoing_our_key_in_every_channel_never_reaches_store_report_json_or_terminal(tmp_path):
    gets = {"/version": {"version": KEY, KEY: "build", "server": "vllm"}, "/props": {KEY: {KEY: KEY}}}
    with FakeUpstream(_echo_stream, models=("fake-model", KEY), gets=gets) as up:
        write(tmp_path / "cases.yaml", json.dumps([{"id": "q", "prompt": "hi", "scorers": [
            {"type": "contains", "value": "ok"}]}]))
        cfg = write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
            models:
              - {{name: m, backend: openai, base_url: '{up.base_url}', model: fake-model, api_key_env: WB_ECHO_KEY}}
            suites: [cases.yaml]
            """))
        r = subprocess.run([sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(cfg), "--json", "out.json",
                            "--report", "report.html"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "WB_ECHO_KEY": KEY, "COLUMNS": "200"})
        shown = subprocess.run([sys.executable, "-m", "weighbridge", "report", "--json", "again.json"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert up.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # the key was really sent
    files = _files(tmp_path)
    assert {"out.json", "report.html", "weighbridge.db", "again.json"} <= set(files)
    leaks = {name: data.count(KEY.encode()) for name, data in files.items() if KEY.encode() in data}
    assert leaks == {}, leaks
    assert KEY not in r.stdout + r.stderr + shown.stdout + shown.stderr
    manifest = json.loads(files["out.json"])  # the facts are still there, masked
    assert "***" in json.dumps(manifest)


def test_fake_upstream_echoing_our_key_never_reaches_a_gateway_client_or_the_audit_log(tmp_path):
    def script(h, body, n):
        text = json.dumps(body)
        if "refuse" in text:
            h.send_json(400, {"error": {"message": "bad", KEY: f"Bearer {KEY}"}, KEY: KEY})
        elif body.get("stream"):
            _echo_stream(h, body, n)
        else:
            h.send_json(200, {"id": KEY, "choices": [{"index": 0, "message": {"role": "assistant", "content": f"k {KEY}",
                                                                            "tool_calls": [{"id": "c", "type": "function",
                                                                                            "function": {"name": "f",
                                                                                                         "arguments": json.dumps({KEY: 1})}}]},
                                                      "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 3, "completion_tokens": 2, KEY: 5}})

    with FakeUpstream(script) as up:
        plan = write(tmp_path / "plan.yaml", f"""audit: {{store_text: true}}
routes:
  chat:
    upstreams: [{{name: u, base_url: '{up.base_url}', model: fake-model, api_key_env: WB_ECHO_KEY}}]
""")
        with serve(str(plan), env={**os.environ, "WB_ECHO_KEY": KEY}) as (base, _):
            ask = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            answers = [httpx.post(base + "/v1/chat/completions", json=ask, timeout=30),
                       httpx.post(base + "/v1/chat/completions", json={**ask, "stream": True}, timeout=30),
                       httpx.post(base + "/v1/chat/completions", timeout=30, json={
                           "model": "chat", "messages": [{"role": "user", "content": "refuse"}]})]
    assert up.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert [a.status_code for a in answers] == [200, 200, 400]
    for a in answers:
        assert KEY not in a.text, a.text
    assert "***" in answers[0].text and "***" in answers[1].text
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    assert KEY.encode() not in stored
    audit = [json.loads(r) for r in subprocess.run(
        [sys.executable, "-m", "weighbridge", "audit", "show", "--plan", str(plan), "--jsonl"], capture_output=True,
        text=True, timeout=60).stdout.splitlines()]
    assert len(audit) == 3 and all(KEY not in json.dumps(a) for a in audit)
    assert "***" in audit[0]["response"]
