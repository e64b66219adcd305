"""Attack tests, issue 22 item 7: text from outside never drives the terminal, never crashes a command
through Rich markup, and never makes an output file ill-formed. Real ``bakeoff``, ``report``, ``check``
and ``serve`` + ``audit show`` processes; the fake upstream sends the escape sequences (only a fake
can send them on purpose)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import httpx

from .conftest import write
from .fake_upstream import FakeUpstream, ok_stream
from .serve_process import serve

# clear screen + home, a forged result line, the window title, a clipboard write (OSC 52), CSI in C1
ATTACK = "\x1b[2J\x1b[H all cases PASSED \x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07 \x9b31m red"
ESCAPES = ("\x1b[2J", "\x1b[H", "\x1b]", "\x9b", "\x07")  # the attack's own; Rich styles with other codes


def _wb(*args: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weighbridge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200", **(env or {})})


def _script(h, body, n):
    prompt = body["messages"][-1]["content"]
    if prompt == "fail":  # raw bytes, as a hostile server sends them (JSON would escape them)
        data = f"upstream says: {ATTACK}".encode()
        h.send_response(400)
        h.send_header("content-type", "text/plain")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    else:  # right the first time, wrong afterwards: the case flips, so check and its JUnit name it
        ok_stream(h, [f"ok {ATTACK}" if not _SEEN else "nope"])
        _SEEN.append(n)


_SEEN: list[int] = []


def test_fake_upstream_escape_sequences_and_markup_never_reach_the_terminal_or_crash_a_command(tmp_path):
    cases = [{"id": "good\x1b[2J", "prompt": "hi", "tags": ["[/]"], "scorers": [{"type": "contains", "value": "ok"}]},
             {"id": "bad[/]", "prompt": "fail", "tags": ["[bold]x"], "scorers": [{"type": "contains", "value": "ok"}]}]
    write(tmp_path / "cases.yaml", json.dumps(cases))
    _SEEN.clear()
    with FakeUpstream(_script) as up:
        write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
            models:
              - {{name: m, backend: openai, base_url: '{up.base_url}', model: fake-model, max_retries: 0}}
            suites: [cases.yaml]
            """))
        runs = [_wb("bakeoff", "--json", "base.json", cwd=tmp_path, env={"FORCE_COLOR": "1"}),
                _wb("bakeoff", "--no-cache", cwd=tmp_path)]
        base = json.loads((tmp_path / "base.json").read_text())["run_id"]
        runs.append(_wb("report", cwd=tmp_path))
        runs.append(_wb("check", "--baseline", base, "--junit", "junit.xml", cwd=tmp_path))
    for r in runs:
        out = r.stdout + r.stderr
        assert "Traceback" not in out and "MarkupError" not in out, out
        assert not any(e in out for e in ESCAPES), repr(out)
    assert runs[0].returncode == 3 and runs[3].returncode in (0, 1)  # 1 of 2 errored: not a result
    assert "all cases PASSED" in runs[2].stdout and "␛[2J" in runs[2].stdout  # shown, not acted on
    ET.parse(tmp_path / "junit.xml")  # well-formed although a case id holds ESC
    assert "good\\x1b[2J" in (tmp_path / "junit.xml").read_text()


def test_markup_and_escapes_in_audited_requests_never_break_audit_show(tmp_path):
    with FakeUpstream(lambda h, body, n: h.send_json(200, {"choices": [{"index": 0, "message": {
            "role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})) as up:
        plan = write(tmp_path / "plan.yaml", f"""routes:
  chat:
    upstreams: [{{name: u, base_url: '{up.base_url}', model: m}}]
""")
        with serve(str(plan)) as (base, _):
            for model in ("[/]", "[bold red]x\x1b[2J", "\x1b]52;c;ZXZpbA==\x07"):
                httpx.post(base + "/v1/chat/completions", json={"model": model, "messages": "not a list"}, timeout=10)
    r = _wb("audit", "show", "--plan", str(plan), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[/]" in r.stdout and "␛" in r.stdout
    assert not any(e in r.stdout + r.stderr for e in ESCAPES), repr(r.stdout)
    j = _wb("audit", "show", "--plan", str(plan), "--jsonl", cwd=tmp_path)
    assert all(json.loads(line)["route"] for line in j.stdout.splitlines())
    assert all(r["route"] for r in json.loads(_wb("audit", "show", "--plan", str(plan), "--json", cwd=tmp_path).stdout))
