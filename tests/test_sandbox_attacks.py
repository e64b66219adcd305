"""The attack suite: a fake upstream (exact hostile answers must be injected) answers every
python_tests case with code that tries to escape, cheat or end the run. A real bakeoff runs them
all through the real CLI in a child process, as root in CI, and every attack must fail its case,
leave no file outside the sandbox, open no connection, leak no secret and leave the run finished.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .conftest import write
from .fake_upstream import FakeUpstream, ok_stream

SECRET = "sk-live-7f3a9c1e5b2d4068aa11"
ECHO_SECRET = "sk-echo-0b9e8d7c6a5f4e3d2c1b"


def attacks(host: Path, port: int, unix_path: str, abstract: str, store: Path, parent_pid: int) -> dict[str, str]:
    """name -> the answer's code. ``host`` is a directory on the host no attack may write into."""
    h = str(host)
    return {
        # --- cheat the verdict -------------------------------------------------------------------
        "sys_exit_0": "import sys\nsys.exit(0)\n",
        "main_guard_exit": "import sys\ndef main():\n    return 0\nif __name__ == '__main__':\n    sys.exit(main())\n",
        "os_exit_0": "import os\nos._exit(0)\n",
        "atexit_exit_0": "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
        "excepthook_exit_0": "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\nraise RuntimeError('boom')\n",
        "forge_record": textwrap.dedent("""\
            import os, json
            for fd in range(3, 64):
                try:
                    os.write(fd, (json.dumps({"nonce": "guess", "passed": True, "reason": "forged", "steps": []}) + "\\n").encode())
                except OSError:
                    pass
            """),
        "redefine_assert": "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n",
        # --- reach the host's files ------------------------------------------------------------------
        "write_host_file": f"open({h + '/open.txt'!r}, 'w').write('x')\n",
        "dir_fd_write": f"import os\nfd = os.open({h!r}, os.O_RDONLY)\nos.open('dirfd.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd)\n",
        "mknod_mkfifo": f"import os\nos.mkfifo({h + '/fifo'!r})\nos.mknod({h + '/node'!r})\n",
        "zeroed_flags": f"import os\nos.O_WRONLY = os.O_RDWR = os.O_CREAT = 0\nos.write(os.open({h + '/zero.txt'!r}, 0o101), b'x')\n",
        "symlink_out": f"import os\nos.symlink({h!r}, 'out')\nopen('out/link.txt', 'w').write('x')\n",
        "dev_shm": "open('/dev/shm/wb-attack', 'w').write('x')\nimport os\nassert not os.path.exists('/dev/shm/host-marker')\n",
        "write_store": f"open({str(store)!r}, 'ab').write(b'garbage')\n",
        "read_other_tmp": "import glob\nprint(glob.glob('/tmp/*') + glob.glob('/sandbox/../*/*'))\nopen('/etc/passwd').read()\n",
        "subprocess_shell": f"import subprocess\nsubprocess.run(['/bin/sh', '-c', 'echo pwned > {h}/shell.txt'], check=True)\n",
        "posixsubprocess": textwrap.dedent(f"""\
            import _posixsubprocess, os
            r, w = os.pipe()
            _posixsubprocess.fork_exec([b'/bin/sh'], [b'/bin/sh'], True, (), None, None, -1, -1, -1, -1, -1, -1,
                                        r, w, True, False, None, None, None, -1, None, False)
            open({h + '/fork_exec.txt'!r}, 'w')
            """),
        # --- reach the network -----------------------------------------------------------------------
        "tcp_loopback": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "unix_socket_path": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({unix_path!r})\n",
        "unix_socket_abstract": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({abstract!r})\n",
        "setns_parent_net": "import ctypes, os\nfd = os.open('/proc/1/ns/net', os.O_RDONLY)\n"
                            "assert ctypes.CDLL(None).setns(fd, 0) == 0, 'setns refused'\nimport socket\n"
                            f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "raw_packet_socket": "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n",
        "netlink_socket": "import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\n",
        # --- end or outlive the run ------------------------------------------------------------------
        "pidfd_kill_parent": "import os, signal\nfd = os.pidfd_open(os.getppid())\nsignal.pidfd_send_signal(fd, 9)\n",
        "kill_weighbridge": f"import os\nos.kill({parent_pid}, 9)\n",
        "kill_everything": "import os\nos.kill(-1, 9)\n",
        "signal_siblings": "import os\nfor pid in range(2, 4000):\n    try:\n        os.kill(pid, 9)\n    except OSError:\n        pass\n",
        "setsid_grandchild": textwrap.dedent("""\
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv('/bin/sleep', ['sleep', '4242'])
                os._exit(0)
            time.sleep(30)
            """),
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "raise_rlimits": "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))\n",
        "setuid_root": "import os\nos.setuid(0)\n",
        "ptrace_init": "import ctypes\nassert ctypes.CDLL(None).ptrace(16, 1, 0, 0) == 0\n",
        "unshare_user": "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) == 0, 'unshare refused'\n",
        "unshare_net": "import ctypes\nassert ctypes.CDLL(None).unshare(0x40000000) == 0, 'unshare refused'\n",
        "mount_proc": "import ctypes\nassert ctypes.CDLL(None).mount(b'proc', b'/sandbox', b'proc', 0, None) == 0\n",
        "flood_stdout": "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 1_000_000)\n",
        "memory_hog": "x = bytearray(3 * 1024**3)\n",
        # --- read secrets ----------------------------------------------------------------------------
        "read_environ": textwrap.dedent("""\
            import os, glob
            found = [open(p, 'rb').read() for p in glob.glob('/proc/*/environ') if os.access(p, os.R_OK)]
            print(os.environ, found)
            raise RuntimeError(repr(found)[-150:] + repr(dict(os.environ))[-150:])
            """),
    }


def test_fake_upstream_attack_suite_fails_every_attack_and_the_run_finishes(tmp_path, monkeypatch):
    host = tmp_path / "host"
    host.mkdir()
    (tmp_path / "host-marker").write_text("x")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    unix_path = str(tmp_path / "host.sock")
    unix_listener = socket.socket(socket.AF_UNIX)
    unix_listener.bind(unix_path)
    unix_listener.listen()
    abstract = "\0wb-attack-" + os.urandom(4).hex()
    abstract_listener = socket.socket(socket.AF_UNIX)
    abstract_listener.bind(abstract)
    abstract_listener.listen()
    connections: list[str] = []
    stop = threading.Event()

    def accept_all() -> None:
        for s in (listener, unix_listener, abstract_listener):
            s.settimeout(0.05)
        while not stop.is_set():
            for s in (listener, unix_listener, abstract_listener):
                try:
                    conn, _ = s.accept()
                    connections.append(str(s))
                    conn.close()
                except OSError:
                    pass

    acceptor = threading.Thread(target=accept_all, daemon=True)
    acceptor.start()
    store = tmp_path / "wb.db"
    code_by_name = attacks(host, port, unix_path, abstract, store, os.getpid())
    cases = [{"id": name, "prompt": f"attack: {name}", "scorers": [
        {"type": "python_tests", "tests": "assert solved() == 42\n", "timeout_s": 3, "memory_mb": 256}]}
        for name in code_by_name]
    write(tmp_path / "attacks.yaml", json.dumps(cases))

    def hostile(h, body, n) -> None:
        name = body["messages"][-1]["content"].removeprefix("attack: ")
        ok_stream(h, ["```python\n", code_by_name[name], "```\n"])

    def echo_headers(h, body, n) -> None:  # an upstream 4xx that echoes the request, key and all
        h.send_json(400, {"error": {"message": f"bad request; you sent {dict(h.headers)}"}})

    with FakeUpstream(hostile) as up, FakeUpstream(echo_headers) as echo:
        write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
            models:
              - name: attacker
                backend: openai
                base_url: {up.base_url}
                model: fake-model
                api_key_env: WB_ATTACK_KEY
                concurrency: 4
              - name: echo
                backend: openai
                base_url: {echo.base_url}
                model: fake-model
                api_key_env: WB_ECHO_KEY
                max_retries: 0
            suites: [attacks.yaml]
            store: wb.db
            report: report.html
            max_error_rate: 1.0   # the echo model errors on every job by design

            """))
        env = {**os.environ, "WB_ATTACK_KEY": SECRET, "WB_ECHO_KEY": ECHO_SECRET, "COLUMNS": "200"}
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(tmp_path / "weighbridge.yaml"),
                               "--json", str(tmp_path / "results.json")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        took = time.monotonic() - t0
    stop.set()
    acceptor.join()
    for s in (listener, unix_listener, abstract_listener):
        s.close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    db = sqlite3.connect(store)
    (status,) = db.execute("SELECT status FROM runs").fetchone()
    assert status == "finished"
    rows = db.execute("SELECT g.case_id, g.passed, s.reason FROM generations g JOIN scores s ON s.generation_id = g.id "
                      "WHERE g.model = 'attacker'").fetchall()
    reasons = {case: reason for case, _, reason in rows}
    assert set(reasons) == set(code_by_name), "every attack was scored"
    assert [case for case, passed, _ in rows if passed] == [], "no attack passed its case"
    for name in ("sys_exit_0", "main_guard_exit", "atexit_exit_0"):
        assert "exited before the tests ran" in reasons[name], reasons[name]
    assert "exited before the tests ran" in reasons["os_exit_0"]
    assert "forged" in reasons["forge_record"] or "NameError" in reasons["forge_record"]
    assert "timed out" in reasons["setsid_grandchild"]
    assert "MemoryError" in reasons["memory_hog"]
    for name in ("setns_parent_net", "unshare_user", "unshare_net"):
        assert "refused" in reasons[name], reasons[name]
    assert "Operation not permitted" in reasons["pidfd_kill_parent"]
    assert "Address family not supported" in reasons["tcp_loopback"]
    assert list(host.iterdir()) == [], "nothing was written outside the sandbox"
    assert not Path("/dev/shm/wb-attack").exists()
    assert connections == [], "no connection reached a listener on the host"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 4242" not in ps, "no grandchild outlived its case"
    assert took < 120
    for path in (store, tmp_path / "report.html", tmp_path / "results.json"):
        data = path.read_bytes()
        assert SECRET.encode() not in data and ECHO_SECRET.encode() not in data, f"a secret reached {path.name}"
    assert SECRET not in proc.stdout + proc.stderr and ECHO_SECRET not in proc.stdout + proc.stderr
    (echo_error,) = db.execute("SELECT error FROM generations WHERE model = 'echo' LIMIT 1").fetchone()
    assert "***" in echo_error and "Authorization" in echo_error
    manifest = json.loads(db.execute("SELECT manifest_json FROM runs").fetchone()[0])
    assert manifest["sandbox"]["mode"] == "bubblewrap" and manifest["sandbox"]["isolated"]
    assert "bubblewrap" in (tmp_path / "report.html").read_text()


@pytest.fixture(autouse=True)
def _need_bubblewrap():
    from weighbridge.scorers.sandbox import SandboxUnavailable, check

    try:
        check()
    except SandboxUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_fake_upstream_signal_during_scoring_interrupts_within_2s_and_resume_finishes(tmp_path, sig):
    import signal

    answers = {"code": "import time\ntime.sleep(120)\n"}
    write(tmp_path / "cases.yaml", json.dumps([{"id": "slow", "prompt": "write f", "scorers": [
        {"type": "python_tests", "tests": "assert f() == 1\n", "timeout_s": 100}]}]))

    def script(h, body, n) -> None:
        ok_stream(h, ["```python\n", answers["code"], "```\n"])

    with FakeUpstream(script) as up:
        cfg = write(tmp_path / "weighbridge.yaml", f"models:\n  - name: m\n    backend: openai\n    base_url: {up.base_url}\n"
                                                   "    model: fake-model\nsuites: [cases.yaml]\nstore: wb.db\n")
        cmd = [sys.executable, "-m", "weighbridge", "bakeoff", "-c", str(cfg), "--no-cache"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not up.posts and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the answer is in; its sandbox is sleeping
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
        assert took < 2.0, f"took {took:.1f}s to stop"
        assert proc.returncode == 130, err
        assert "interrupted" in err
        db = sqlite3.connect(tmp_path / "wb.db")
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
        assert "/.wb/harness.py" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        answers["code"] = "def f():\n    return 1\n"
        done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "finished"
        assert db.execute("SELECT passed FROM generations").fetchall() == [(1,)]
