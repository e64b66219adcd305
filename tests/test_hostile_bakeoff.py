"""Attack tests, issue 22 item 5: one bad answer is that job's error, never the run's. A real
``weighbridge bakeoff`` process against a fake upstream that answers each case with one malformed
stream shape (only a fake can send them on purpose); then ``report`` and ``view`` over what was
stored, including figures an older version let through (NaN, infinity, negative usage)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from .conftest import free_port, write
from .fake_upstream import FakeUpstream

GOOD = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
SHAPES: dict[str, list] = {
    "event a list": [[1, 2]],
    "choices of numbers": [{"choices": [1]}],
    "delta a string": [{"choices": [{"index": 0, "delta": "s"}]}],
    "usage a list": [GOOD, {"choices": [], "usage": [1]}],
    "usage a string": [GOOD, {"choices": [], "usage": "lots"}],
    "usage negative": [GOOD, {"choices": [], "usage": {"prompt_tokens": -5, "completion_tokens": 2}}],
    "usage 1e308": [GOOD, {"choices": [], "usage": {"prompt_tokens": 1e308, "completion_tokens": 2}}],
    "usage NaN": [GOOD, '{"choices": [], "usage": {"prompt_tokens": NaN, "completion_tokens": 2}}'],
    "usage 30 digits": [GOOD, '{"choices":[],"usage":{"prompt_tokens":123456789012345678901234567890,'
                              '"completion_tokens":2}}'],
    "tool name a number": [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
        "name": 5, "arguments": "{}"}}]}}]}],
    "content an object": [{"choices": [{"index": 0, "delta": {"content": {"a": 1}}}]}],
    "100k deep": ["[" * 100_000 + "]" * 100_000],
    "finish_reason a list": [{"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": ["stop"]}]}],
    "tool index huge": [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 10 ** 12, "function": {
        "name": "f"}}]}}]}],
    "error a number": [{"error": 7}],
    "reasoning an object": [{"choices": [{"index": 0, "delta": {"reasoning_content": {"x": 1}}}]}],
    "tool_calls a dict": [{"choices": [{"index": 0, "delta": {"tool_calls": {"0": {}}}}]}],
}


def _script(h, body, n):
    prompt = body["messages"][-1]["content"]
    if prompt == "fine":
        events = [GOOD]
    elif prompt == "endless":
        h.start_stream()
        try:
            while True:  # ignores max_tokens, never stops
                h.event({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]})
        except OSError:
            return
    else:
        events = SHAPES[prompt]
    h.start_stream()
    for e in events:
        h.event(e)
    h.event("[DONE]")
    h.close_connection = True


def _wb(*args: str, cwd, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weighbridge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    cases = [{"id": name.replace(" ", "_"), "prompt": name, "scorers": [{"type": "contains", "value": "ok"}]}
             for name in SHAPES] + [{"id": "fine", "prompt": "fine", "scorers": [{"type": "contains", "value": "ok"}]},
                                    {"id": "endless", "prompt": "endless",
                                     "scorers": [{"type": "contains", "value": "ok"}]}]
    write(tmp / "cases.yaml", json.dumps(cases))
    with FakeUpstream(_script) as up:
        write(tmp / "weighbridge.yaml", textwrap.dedent(f"""\
            models:
              - {{name: m, backend: openai, base_url: '{up.base_url}', model: fake-model, max_retries: 0,
                 deadline_s: 20, params: {{max_tokens: 16}}}}
            suites: [cases.yaml]
            max_error_rate: 1.0
            """))
        r = _wb("bakeoff", "--json", "out.json", cwd=tmp)
    return tmp, r


def test_fake_upstream_every_malformed_stream_shape_is_one_jobs_error_and_the_run_finishes(hostile_run):
    tmp, r = hostile_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    db = sqlite3.connect(tmp / "weighbridge.db")
    rows = dict(db.execute("SELECT case_id, error FROM generations").fetchall())
    assert rows.pop("fine") is None
    assert rows.pop("endless").startswith("runaway:")
    assert len(rows) == len(SHAPES)
    for case, error in rows.items():
        assert error is not None and error.startswith(("malformed_response: malformed response:", "stream_error:")), (
            case, error)
    assert "choices[0].delta" in rows["delta_a_string"] and "usage.prompt_tokens" in rows["usage_negative"]
    assert "function.name" in rows["tool_name_a_number"]
    out = json.loads((tmp / "out.json").read_text())
    assert out["models"][0]["errors"] == len(SHAPES) + 1


def _poison(tmp) -> None:
    """Figures an older weighbridge stored without checking them."""
    db = sqlite3.connect(tmp / "weighbridge.db")
    row = db.execute("SELECT rowid, generation_json FROM generations WHERE case_id='fine'").fetchone()
    gen = json.loads(row[1])
    gen.update(prompt_tokens=-1000000, completion_tokens=float("inf"), latency_ms=float("nan"))
    db.execute("UPDATE generations SET prompt_tokens=-1000000, completion_tokens=1e999, latency_ms=NULL, "
               "generation_json=? WHERE rowid=?", (json.dumps(gen), row[0]))
    db.commit()
    db.close()


def test_stored_nan_infinite_or_negative_figures_never_crash_report_or_view(hostile_run):
    tmp, _ = hostile_run
    _poison(tmp)
    r = _wb("report", "--json", "again.json", "--report", "again.html", cwd=tmp)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    text = (tmp / "again.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    assert "$-" not in r.stdout and "-1,000,000" not in r.stdout
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "view", "--port", str(port)], cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                runs = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        run_id = json.loads(text)["run_id"]
        page = httpx.get(f"http://127.0.0.1:{port}/run/{run_id}", timeout=10)
    finally:
        proc.terminate()
        proc.wait(10)
    assert runs.status_code == 200 and page.status_code == 200, page.text[:500]


def test_fake_upstream_a_stream_that_trickles_forever_is_cut_at_the_deadline(tmp_path):
    def trickle(h, body, n):
        h.start_stream()
        try:
            while True:  # a piece every 0.3 s: never silent long enough for timeout_s, never done
                h.event({"choices": [{"index": 0, "delta": {"content": "."}, "finish_reason": None}]}, delay=0.3)
        except OSError:
            return

    write(tmp_path / "cases.yaml", json.dumps([{"id": "slow", "prompt": "x", "scorers": [
        {"type": "contains", "value": "ok"}]}]))
    with FakeUpstream(trickle) as up:
        write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
            models:
              - {{name: m, backend: openai, base_url: '{up.base_url}', model: fake-model, max_retries: 0,
                 timeout_s: 5, deadline_s: 2, params: {{max_tokens: 4096}}}}
            suites: [cases.yaml]
            max_error_rate: 1.0
            """))
        t = time.monotonic()
        r = _wb("bakeoff", cwd=tmp_path)
    assert r.returncode == 0 and time.monotonic() - t < 30, r.stdout + r.stderr
    error = sqlite3.connect(tmp_path / "weighbridge.db").execute("SELECT error FROM generations").fetchone()[0]
    assert error.startswith("deadline: no whole answer within 2 s"), error
