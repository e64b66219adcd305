"""What a new user meets first: a mostly-errored run is not shown as a result, a wrong model id is
refused, progress shows off a terminal, the interrupt hint continues the same run, and no server
weighbridge started outlives it. Fake upstreams here inject dropped connections and delays; the
llama.cpp server tests use the real ``llama_cpp.server``."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import free_port, write
from .fake_upstream import FakeUpstream, ok_stream

CASES = [{"id": f"q{i}", "prompt": f"say {i}", "scorers": [{"type": "contains", "value": str(i)}]} for i in range(5)]


def wb(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weighbridge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def config(tmp_path: Path, base_url: str, model: str = "fake-model", extra: str = "") -> Path:
    write(tmp_path / "cases.json.yaml", json.dumps(CASES))
    return write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
        models:
          - name: m
            backend: openai
            base_url: {base_url}
            model: {model}
            max_retries: 0
            concurrency: 1
        suites: [cases.json.yaml]
        """) + extra)


def test_fake_upstream_dropped_connections_make_a_banner_exit_3_and_retry_errors_recalls_only_them(tmp_path):
    state = {"healthy": False}

    def script(h, body, n):
        prompt = body["messages"][-1]["content"]
        if not state["healthy"] and prompt in ("say 1", "say 2", "say 3"):
            h.close_connection = True  # hang up without a response, as llama_cpp.server does
            h.connection.close()
            return
        ok_stream(h, [prompt.removeprefix("say ")])

    with FakeUpstream(script) as up:
        cfg = config(tmp_path, up.base_url)
        r = wb("bakeoff", "-c", str(cfg), "--json", "out.json", cwd=tmp_path)
        out = " ".join((r.stdout + r.stderr).split())
        assert r.returncode == 3, out
        assert "NOT A RESULT" in out and "m: 3 of 5 jobs failed: connection" in out
        assert "fix: the server dropped connections mid-request" in out and "--interrupt_requests False" in out
        assert "pass rate, answered" in out and "100% (2/2)" in out
        assert re.search(r"progress m: started 0/5 jobs", r.stdout) and "progress m: done 5/5 jobs" in r.stdout
        data = json.loads((tmp_path / "out.json").read_text())
        assert data["unreliable_models"] == ["m"] and data["error_banner"][0].startswith("m: 3 of 5 jobs failed")
        assert data["models"][0]["answered_pass_rate"] == 1.0 and data["models"][0]["pass_rate"] == 0.4
        assert 'id=error-banner' in (tmp_path / "weighbridge-report.html").read_text()
        calls_before = len(up.posts)
        state["healthy"] = True
        again = wb("bakeoff", "-c", str(cfg), "--retry-errors", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(up.posts) - calls_before == 3, "only the errored jobs were called again"
        assert "NOT A RESULT" not in again.stdout
    db = sqlite3.connect(tmp_path / "weighbridge.db")
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM generations WHERE error IS NULL AND passed = 1").fetchone()[0] == 5


def test_fake_upstream_a_model_id_the_server_does_not_serve_is_refused(tmp_path):
    with FakeUpstream(lambda h, b, n: ok_stream(h, ["0 1 2 3 4"])) as up:
        cfg = config(tmp_path, up.base_url, model="llama3")
        r = wb("bakeoff", "-c", str(cfg), cwd=tmp_path)
        out = " ".join(r.stderr.split())
        assert r.returncode == 2 and "does not serve model 'llama3' (it serves: fake-model)" in out, r.stdout + r.stderr
        assert "--no-model-check" in out and not (tmp_path / "weighbridge.db").exists()
        assert wb("bakeoff", "-c", str(cfg), "--no-model-check", cwd=tmp_path).returncode == 0


def test_fake_upstream_the_interrupt_hint_continues_the_same_run_verbatim(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    with FakeUpstream(lambda h, b, n: ok_stream(h, [b["messages"][-1]["content"][4:]], delay=0.4)) as up:
        cfg = config(tmp_path, up.base_url)
        cfg = cfg.rename(tmp_path / "other.yaml")
        store = tmp_path / "int.db"
        proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(cfg), "--store", str(store)],
                                cwd=other, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "300"})
        while len(up.posts) < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        hint = re.search(r"Continue with: (.+)", err).group(1).strip()
        args = shlex.split(hint)
        assert args[:2] == ["weighbridge", "bakeoff"] and "--run" in args and str(cfg) in args and str(store) in args
        r = wb(*args[1:], cwd=other)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "resuming run" in r.stderr
    db = sqlite3.connect(store)
    assert db.execute("SELECT COUNT(*), MIN(status) FROM runs").fetchone() == (1, "finished")


@pytest.mark.slow
def test_two_models_on_a_default_llama_cpp_server_and_ten_prompts_give_no_errors(tmp_path, smollm_path):
    """The README's "my server + my prompts" path with its own example files: llama_cpp.server as a
    new user starts it (so it interrupts a running request when the next arrives), ten prompts in a
    CSV, and a config that sets nothing but the models."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    port = free_port()
    server = json.loads((examples / "llama-server-two-models.json").read_text())
    server["port"] = port
    for m in server["models"]:
        m["model"] = str(smollm_path)
    server_cfg = write(tmp_path / "server.json", json.dumps(server))
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(server_cfg)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        write(tmp_path / "ten-prompts.csv", (examples / "ten-prompts.csv").read_text())
        write(tmp_path / "weighbridge.yaml", (examples / "my-server.yaml").read_text().replace(":8000/", f":{port}/"))
        r = wb("bakeoff", "--json", "out.json", cwd=tmp_path, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        data = json.loads((tmp_path / "out.json").read_text())
        assert [m["errors"] for m in data["models"]] == [0, 0] and [m["jobs"] for m in data["models"]] == [10, 10]
        assert data["manifest"]["models"]["smol-a"]["server_kind"] == "llama-cpp-python"
        assert any("one request at a time" in w for w in data["manifest"]["warnings"])
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.mark.slow
def test_sigterm_to_bench_leaves_no_server_behind(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "bench", "smollm2-135m", "--requests", "200",
                             "--output-tokens", "64", "--threads", "1", "--store", str(tmp_path / "b.db"),
                             "--report", str(tmp_path / "b.html")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    deadline = time.time() + 120
    children: list[int] = []
    while not children and time.time() < deadline:
        ps = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
        children = [int(line.split()[0]) for line in ps.splitlines()[1:]
                    if line.split()[1] == str(proc.pid) and "llama_cpp.server" in line]
        time.sleep(0.2)
    assert children, "bench started its llama.cpp server"
    time.sleep(8)  # the server is up and the sweep is running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    time.sleep(0.5)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), \
            "the llama.cpp server outlived its bench"


def test_help_shows_words_not_python_types(tmp_path):
    import typer

    from weighbridge.cli import app

    def paths(cmd, prefix=()):
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield (*prefix, name)
            yield from paths(sub, (*prefix, name))

    every = list(paths(typer.main.get_command(app)))
    assert ("license", "check") in every and ("bakeoff",) in every
    for path in every:
        out = wb(*path, "--help", cwd=tmp_path).stdout
        for python_type in ("<bool>", "<path>", "<list[str]>", "<str>", "<int>", "<float", "<list[Path]>"):
            assert python_type not in out, f"weighbridge {' '.join(path)} --help shows {python_type}"
    assert "--config          -c      FILE" in wb("bakeoff", "--help", cwd=tmp_path).stdout


def test_fake_upstream_runs_and_report_read_the_store_the_config_names(tmp_path):
    with FakeUpstream(lambda h, b, n: ok_stream(h, [b["messages"][-1]["content"][4:]])) as up:
        cfg = config(tmp_path, up.base_url, extra="store: results/custom.db\n")
        assert wb("bakeoff", "-c", str(cfg), cwd=tmp_path).returncode == 0
    assert (tmp_path / "results" / "custom.db").exists() and not (tmp_path / "weighbridge.db").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = wb("runs", "-c", str(cfg), cwd=elsewhere)
    assert listed.returncode == 0 and "custom.db" in listed.stdout and "finished" in listed.stdout
    shown = wb("report", "-c", str(cfg), "--report", str(tmp_path / "again.html"), cwd=elsewhere)
    assert shown.returncode == 0 and "100% (5/5)" in shown.stdout and (tmp_path / "again.html").exists()
    here = wb("runs", cwd=tmp_path)  # ./weighbridge.yaml names the store
    assert here.returncode == 0 and "custom.db" in here.stdout


def test_progress_rate_counts_from_the_first_finished_job(monkeypatch):
    """A model waiting for its lane is not slow: its rate and ETA start with its first answer."""
    import io

    from rich.console import Console

    from weighbridge.cli import progress as prog

    clock = [100.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    p = prog.BakeoffProgress(Console(file=out, width=200), every_s=0, bars=False)
    p.update("gemma", 0, 10, False)
    clock[0] += 60  # a minute in the lane behind another model
    p.update("gemma", 1, 10, True)
    clock[0] += 2
    p.update("gemma", 2, 10, False)
    clock[0] += 2
    p.update("gemma", 3, 10, True, errored=False)
    last = out.getvalue().splitlines()[-1]
    assert "running 3/10 jobs · pass 2 · errors 0 · 0.50 jobs/s · ETA 14s · 1m04s" in last, last
