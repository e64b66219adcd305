"""Attack tests, issue 22 items 3 and 4: an upstream's numbers move money only within bounds, every
request that reached an upstream leaves an audit record and a settled reservation, and an upstream
cannot exhaust the gateway's memory or stall its event loop. A real ``weighbridge serve`` process
against fake upstreams that inject each fault (raw sockets where the fault is in the bytes)."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli

from .conftest import write
from .raw_upstream import RawUpstream, chat_body, response
from .serve_process import audit_records, health_probe, serve

runner = CliRunner(env={"COLUMNS": "250"})
ASK = [{"role": "user", "content": "Say hi"}]


def _plan(tmp_path, base_url: str, extra: str = "") -> str:
    return str(write(tmp_path / "plan.yaml", f"""audit: {{store_text: true}}
{extra}
routes:
  chat:
    upstreams: [{{name: u, base_url: '{base_url}', model: m, price: {{input_per_mtok: 1000, output_per_mtok: 1000}}}}]
"""))


def _key(plan: str, *args: str) -> tuple[str, str]:
    r = runner.invoke(cli, ["keys", "create", "team", "--plan", plan, *args])
    assert r.exit_code == 0, r.output
    return r.output.strip().splitlines()[-1], r.output.split("created ")[1].split()[0]


def _spend(tmp_path, key_id: str) -> tuple[int, float, int]:
    db = sqlite3.connect(tmp_path / "gateway.db")
    try:
        row = db.execute("SELECT sum(tokens), sum(usd), sum(requests) FROM spend WHERE key_id=?", (key_id,)).fetchone()
        return (row[0] or 0, row[1] or 0.0, row[2] or 0)
    finally:
        db.close()


def _post(base: str, key: str, **body) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "chat", "max_tokens": 20, "messages": ASK, **body})


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": -1_000_000, "completion_tokens": 2}, {"prompt_tokens": 10 ** 15, "completion_tokens": 2},
    {"prompt_tokens": 3, "completion_tokens": 2.5}, {"prompt_tokens": "3", "completion_tokens": 2},
    {"prompt_tokens": 10 ** 30, "completion_tokens": 2}, [1, 2], "lots"], ids=lambda u: str(u)[:30])
def test_fake_upstream_usage_out_of_bounds_settles_at_the_bound_and_is_audited(tmp_path, usage):
    with RawUpstream(lambda conn, n, body: conn.sendall(response(chat_body("hi", usage)))) as up:
        plan = _plan(tmp_path, up.base_url)
        key, key_id = _key(plan, "--max-tokens", "2000")
        with serve(plan) as (base, _):
            answers = [_post(base, key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text  # never locked out
    assert all("usage" not in a.json() for a in answers)  # a refused count is not passed on as if true
    records = audit_records(tmp_path)
    assert len(records) == 3 and all(r["safety"].get("usage_invalid") == 1 for r in records)
    bound = records[0]["settled"]["tokens"]
    assert 0 < bound < 400  # the request's own bound: its bytes + overhead + max_tokens
    tokens, usd, requests = _spend(tmp_path, key_id)
    assert (tokens, requests) == (3 * bound, 3) and 0 < usd <= 3 * 400 * 1000 / 1e6
    listing = runner.invoke(cli, ["keys", "list", "--plan", plan]).output
    assert f"{3 * bound:,} tok · $" in listing and "$-" not in listing and "-1," not in listing


def test_fake_upstream_a_plausible_count_above_the_request_bound_is_capped(tmp_path):
    usage = {"prompt_tokens": 5_000_000, "completion_tokens": 2}  # a whole count, but more than this request could use
    with RawUpstream(lambda conn, n, body: conn.sendall(response(chat_body("hi", usage)))) as up:
        plan = _plan(tmp_path, up.base_url)
        key, key_id = _key(plan, "--max-tokens", "2000")
        with serve(plan) as (base, _):
            a, b = _post(base, key), _post(base, key)
    assert a.status_code == b.status_code == 200
    rec = audit_records(tmp_path)[0]
    assert rec["prompt_tokens"] == 5_000_000 and rec["safety"]["usage_over_bound"] == 1
    assert rec["settled"]["tokens"] < 400 and _spend(tmp_path, key_id)[0] == 2 * rec["settled"]["tokens"]


def _stream(usage_json: bytes):
    def script(conn, n, body):
        events = [b'{"choices":[{"index":0,"delta":{"role":"assistant","content":"hel"},"finish_reason":null}]}',
                  b'{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}',
                  b'{"choices":[],"usage":' + usage_json + b"}", b"[DONE]"]
        sse = b"".join(b"data: " + e + b"\n\n" for e in events)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" + sse)
        conn.close()
    return script


@pytest.mark.parametrize("usage", [b'"lots"', b"[3,2]", b'{"prompt_tokens":-5,"completion_tokens":2}',
                                   b'{"prompt_tokens":1e308,"completion_tokens":2}',
                                   b'{"prompt_tokens":123456789012345678901234567890,"completion_tokens":2}'])
def test_fake_upstream_a_stream_with_malformed_usage_is_relayed_audited_and_settled(tmp_path, usage):
    with RawUpstream(_stream(usage)) as up:
        plan = _plan(tmp_path, up.base_url)
        key, key_id = _key(plan, "--max-tokens", "2000")
        with serve(plan) as (base, _):
            with httpx.stream("POST", base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                              json={"model": "chat", "stream": True, "max_tokens": 20, "messages": ASK,
                                    "stream_options": {"include_usage": True}}, timeout=30) as s:
                text = s.read().decode()
            again = _post(base, key, stream=True)
    assert '"hel"' in text and '"lo"' in text and text.rstrip().endswith("data: [DONE]")
    assert '"usage"' not in text  # the refused count never reaches the client
    assert again.status_code == 200
    records = audit_records(tmp_path)
    assert len(records) == 2 and all(r["status"] == 200 and r["safety"]["usage_invalid"] == 1 for r in records)
    assert records[0]["response"] == "hello"
    assert _spend(tmp_path, key_id)[2] == 2  # both settled: nothing left held


MALFORMED = {
    "choices of numbers": b'{"choices":[1]}',
    "message a string": b'{"choices":[{"index":0,"message":"s","finish_reason":"stop"}]}',
    "content an object": b'{"choices":[{"index":0,"message":{"role":"assistant","content":{"a":1}}}]}',
    "tool name a number": b'{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":'
                          b'[{"id":"c","type":"function","function":{"name":7,"arguments":"{}"}}]}}]}',
    "NaN usage": b'{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],'
                 b'"usage":{"prompt_tokens":NaN,"completion_tokens":1}}',
    "100k deep": b"[" * 100_000 + b"]" * 100_000,
    "not JSON": b"<html>oops</html>",
    "a list": b"[]",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_fake_upstream_a_malformed_answer_is_a_502_with_an_audit_record_and_its_reservation_released(tmp_path, name):
    with RawUpstream(lambda conn, n, body: conn.sendall(response(MALFORMED[name]))) as up:
        plan = _plan(tmp_path, up.base_url)
        key, key_id = _key(plan, "--max-tokens", "300")  # room for one request's bound at a time
        with serve(plan) as (base, _):
            answers = [_post(base, key) for _ in range(3)]
            alive = httpx.get(base + "/healthz", timeout=5)
    assert [a.status_code for a in answers] == [502, 502, 502], answers[0].text  # never a 500, never locked
    assert alive.status_code == 200
    assert "malformed response" in answers[0].json()["error"]["message"]
    records = audit_records(tmp_path)
    assert [r["status"] for r in records] == [502, 502, 502]
    assert "malformed response" in records[0]["failures"][0]
    assert _spend(tmp_path, key_id)[0] == 0  # nothing was answered: nothing charged


def test_audit_verify_reports_settled_spend_the_log_does_not_hold(tmp_path):
    with RawUpstream(lambda conn, n, body: conn.sendall(response(chat_body("hi")))) as up:
        plan = _plan(tmp_path, up.base_url)
        key, key_id = _key(plan)
        with serve(plan) as (base, _):
            assert _post(base, key).status_code == 200
    ok = runner.invoke(cli, ["audit", "verify", "--plan", plan])
    assert ok.exit_code == 0 and "spend agrees for 1 key(s)" in ok.output, ok.output
    db = sqlite3.connect(tmp_path / "gateway.db")  # a request settled whose record never reached the log
    db.execute("UPDATE spend SET tokens=tokens+50, requests=requests+1 WHERE key_id=?", (key_id,))
    db.commit()
    db.close()
    broken = runner.invoke(cli, ["audit", "verify", "--plan", plan])
    assert broken.exit_code == 1
    assert f"key {key_id}: the spend table holds 2 settled requests and" in broken.output, broken.output
    assert "the audit log 1" in broken.output


# -- item 4: resource exhaustion -----------------------------------------------------------------

def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _huge_body(conn, n, body):
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n")
    piece = b" " * (1 << 20)
    try:
        for _ in range(1000):  # a gigabyte, as fast as the gateway takes it
            conn.sendall(piece)
    except OSError:
        pass


def test_fake_upstream_a_gigabyte_body_is_refused_at_the_bound_in_bounded_memory(tmp_path):
    with RawUpstream(_huge_body) as up:
        plan = _plan(tmp_path, up.base_url)
        with serve(plan) as (base, proc):
            r = httpx.post(base + "/v1/chat/completions", json={"model": "chat", "messages": ASK}, timeout=60)
            peak = _peak_rss_mb(proc.pid)
    print(f"gateway peak resident memory while an upstream sent a 1 GB body: {peak:.0f} MB")
    assert r.status_code == 502 and "16,777,216 bytes" in r.json()["error"]["message"]
    assert peak < 200
    assert audit_records(tmp_path)[0]["status"] == 502


def _endless_line(conn, n, body):
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ")
    piece = b"x" * (1 << 16)
    try:
        for _ in range(4096):  # 256 MB without a newline
            conn.sendall(piece)
    except OSError:
        pass


def test_fake_upstream_an_endless_sse_line_neither_stalls_other_clients_nor_grows_memory(tmp_path):
    with RawUpstream(_endless_line) as up:
        plan = _plan(tmp_path, up.base_url)
        with serve(plan) as (base, proc):
            with health_probe(base, pause_s=0.01, min_probes=100) as latencies:
                rs = [httpx.post(base + "/v1/chat/completions", timeout=60, json={
                    "model": "chat", "stream": True, "messages": ASK}) for _ in range(10)]
            peak = _peak_rss_mb(proc.pid)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"/healthz p99 {p99:.1f} ms over {len(latencies)} probes while an upstream streamed endless lines; "
          f"peak {peak:.0f} MB")
    assert all(r.status_code == 502 and "4,194,304 bytes" in r.text for r in rs), rs[0].text
    assert p99 < 50 and peak < 200


def test_slow_clients_from_one_address_exhaust_only_their_own_share(tmp_path):
    with RawUpstream(lambda conn, n, body: conn.sendall(response(chat_body("hi")))) as up:
        plan = _plan(tmp_path, up.base_url, "http: {max_connections: 300, max_connections_per_client: 20, "
                                            "header_timeout_s: 30}")
        with serve(plan) as (base, _):
            port = int(base.rsplit(":", 1)[1])
            slow: list[socket.socket] = []
            for _ in range(400):  # a slowloris from 127.0.0.2: more connections than the whole gateway takes
                s = socket.socket()
                s.bind(("127.0.0.2", 0))
                try:
                    s.connect(("127.0.0.1", port))
                    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    pass
                slow.append(s)
            time.sleep(0.5)
            try:
                answers = [httpx.post(base + "/v1/chat/completions", json={"model": "chat", "messages": ASK},
                                      timeout=10) for _ in range(20)]
            finally:
                for s in slow:
                    s.close()
    assert [a.status_code for a in answers] == [200] * 20


def test_one_key_cannot_hold_more_than_its_share_of_requests_in_flight(tmp_path):
    release = threading.Event()

    def slow(conn, n, body):
        release.wait(20)
        conn.sendall(response(chat_body("hi")))

    with RawUpstream(slow) as up:
        plan = _plan(tmp_path, up.base_url, "http: {max_in_flight_per_key: 3}")
        key, _ = _key(plan)
        other, _ = _key(plan)
        with serve(plan) as (base, _):
            results: list[int] = []

            def go(k):
                results.append(_post(base, k).status_code)

            threads = [threading.Thread(target=go, args=(key,)) for _ in range(6)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            refused = list(results)
            release.set()
            other_answer = _post(base, other)
            for t in threads:
                t.join()
    assert refused == [429, 429, 429] and sorted(results) == [200, 200, 200, 429, 429, 429]
    assert other_answer.status_code == 200
