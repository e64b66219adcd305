"""The sandbox's own guarantees, each checked from inside a real bubblewrap sandbox (as root in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from weighbridge.scorers import sandbox
from weighbridge.scorers.sandbox import run_python


pytestmark = pytest.mark.usefixtures("need_bubblewrap")


def test_code_runs_unprivileged_without_capabilities_under_seccomp():
    r = run_python("status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
                   "import os\nprint(os.getuid(), os.getgid(), status['CapEff'].strip(), status['NoNewPrivs'].strip(), "
                   "status['Seccomp'].strip(), sorted(p for p in os.listdir('/proc') if p.isdigit()))\n")
    assert r.passed, r.reason
    uid, gid, caps, nnp, seccomp, pids = r.stdout.split(" ", 5)
    assert (uid, gid, caps, nnp, seccomp) == ("1000", "1000", "0000000000000000", "1", "2")
    assert str(os.getpid()) not in pids and len(eval(pids)) <= 3  # its own pid namespace: bwrap's init and itself


def test_environment_holds_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    r = run_python("import os, glob\nassert 'OPENAI_API_KEY' not in os.environ\n"
                   "assert not any(b'sk-should' in open(p, 'rb').read() for p in glob.glob('/proc/*/environ'))\n")
    assert r.passed, r.reason


def test_process_limit_binds_even_when_weighbridge_is_root():
    r = run_python("import os, time\nstarted = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n"
                   "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n"
                   "    started += 1\nprint(started)\n", timeout_s=8)
    assert r.passed, r.reason
    assert 0 < int(r.stdout) < sandbox.PROCESSES


def test_the_working_directory_is_a_size_capped_tmpfs():
    r = run_python("f = open('big', 'wb')\nchunk = b'x' * (1 << 20)\nfor _ in range(200):\n    f.write(chunk)\n    f.flush()\n",
                   timeout_s=8)
    assert not r.passed and ("File too large" in r.reason or "No space left" in r.reason), r.reason


def test_wall_clock_limit_kills_the_whole_namespace_grandchildren_included():
    t0 = time.monotonic()
    r = run_python("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                   "        os.execv('/bin/sleep', ['sleep', '4343'])\n    os._exit(0)\ntime.sleep(60)\n", timeout_s=1.5)
    took = time.monotonic() - t0
    assert r.timed_out and not r.passed and "timed out" in r.reason
    assert took < 4
    assert "sleep 4343" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_a_sandbox_cannot_see_another_running_beside_it():
    results = {}

    def writer() -> None:
        results["w"] = run_python("open('marker-7c1e', 'w').write('x')\nimport time\ntime.sleep(1.5)\n", timeout_s=5)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)
    results["r"] = run_python("import os\nhits = [os.path.join(d, f) for d, _, fs in os.walk('/') for f in fs "
                              "if f == 'marker-7c1e']\nassert hits == [], hits\n", timeout_s=10)
    t.join()
    assert results["w"].passed and results["r"].passed, results["r"].reason


def test_kill_all_ends_running_sandboxes_at_once():
    out = {}
    t = threading.Thread(target=lambda: out.update(r=run_python("while True:\n    pass\n", timeout_s=60)))
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert sandbox.kill_all() >= 1
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 2
    assert not out["r"].passed


def test_exit_code_zero_is_not_a_pass():
    for code in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n",
                 "import atexit, os\natexit.register(os._exit, 0)\nraise SystemExit\n"):
        r = run_python(code, tests="assert True\n")
        assert not r.passed and "exited before the tests ran" in r.reason, (code, r.reason)
    r = run_python("x = 1\n", tests="assert x == 1\nimport sys\nsys.exit(0)\n")
    assert not r.passed and "exited during the tests" in r.reason


def test_model_code_may_use_processes_and_files_inside_its_sandbox():
    r = run_python("import subprocess\nout = subprocess.run(['/bin/echo', 'hi'], capture_output=True, text=True).stdout\n",
                   tests="assert out == 'hi\\n'\n")
    assert r.passed, r.reason


@pytest.mark.no_bwrap_needed
def test_without_bubblewrap_code_cases_fail_with_the_package_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(sandbox, "_cache", {})
    r = run_python("x = 1\n", tests="assert x == 1\n")
    assert not r.passed and "apt-get install bubblewrap" in r.reason and "unsafe-local" in r.reason
    d = sandbox.describe("bubblewrap")
    assert d["isolated"] is False and "apt-get install bubblewrap" in d["problem"]


@pytest.mark.no_bwrap_needed
def test_unsafe_local_runs_the_same_harness_and_says_it_is_unisolated():
    r = run_python("def add(a, b):\n    return a + b\n", tests="assert add(1, 2) == 3\n", mode="unsafe-local")
    assert r.passed and r.isolation == "unsafe-local"
    assert not run_python("import sys\nsys.exit(0)\n", tests="assert True\n", mode="unsafe-local").passed
    assert sandbox.describe("unsafe-local")["isolated"] is False
