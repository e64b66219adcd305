"""Attack tests, issue 22 item 9: the viewer answers only to its own address, and a damaged, locked,
read-only or newer store is a one-line error naming the file and what to do - in every command and
on every viewer page - never a traceback or a 500. Real ``weighbridge`` processes, real SQLite files;
a fake upstream stands in for the model only to make runs quickly."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, write
from .fake_upstream import FakeUpstream, ok_stream


def _wb(*args: str, cwd: Path, prefix: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "weighbridge", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def _project(tmp_path: Path, base_url: str, cases: list[str]) -> None:
    write(tmp_path / "cases.yaml", json.dumps([{"id": c, "prompt": c, "scorers": [{"type": "contains", "value": "ok"}]}
                                               for c in cases]))
    write(tmp_path / "weighbridge.yaml", textwrap.dedent(f"""\
        models:
          - {{name: m, backend: openai, base_url: '{base_url}', model: fake-model, max_retries: 0}}
        suites: [cases.yaml]
        """))


class _View:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "view", "--port", str(self.port), *args],
                                     cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            try:
                httpx.get(self.url("/favicon.ico"), timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("view did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, host: str | None = None) -> httpx.Response:
        return httpx.get(self.url(path), headers={"host": host} if host is not None else {}, timeout=10)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture()
def two_runs(tmp_path):
    with FakeUpstream(lambda h, body, n: ok_stream(h, ["ok"])) as up:
        _project(tmp_path, up.base_url, ["a", "b"])
        first = _wb("bakeoff", "--json", "one.json", cwd=tmp_path)
        _project(tmp_path, up.base_url, ["c", "d"])  # the same model, other cases
        second = _wb("bakeoff", "--json", "two.json", cwd=tmp_path)
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        ids = [json.loads((tmp_path / f).read_text())["run_id"] for f in ("one.json", "two.json")]
        yield tmp_path, ids


def test_the_viewer_refuses_a_foreign_host_header_dns_rebinding(two_runs):
    tmp_path, (a, _) = two_runs
    view = _View(tmp_path, "--allowed-host", "wb.internal")
    try:
        port = view.port
        assert view.get("/", f"attacker.example:{port}").status_code == 421
        assert view.get(f"/run/{a}", "attacker.example").status_code == 421
        assert view.get("/", "").status_code == 421
        for ok in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"wb.internal:{port}", "LOCALHOST"):
            assert view.get("/", ok).status_code == 200, ok
        page = view.get(f"/run/{a}", "attacker.example")
        assert "m" not in page.text.split("refused")[0] and a not in page.text
    finally:
        view.close()


def test_comparing_two_runs_that_share_a_model_but_no_case_is_a_page_not_a_500(two_runs):
    tmp_path, (a, b) = two_runs
    view = _View(tmp_path)
    try:
        r = view.get(f"/compare?a={a}&b={b}")
    finally:
        view.close()
    assert r.status_code == 200 and "no cases in common" in r.text, r.text[:800]


@pytest.mark.parametrize("damage,says", [
    ("garbage", "the store is damaged"),
    ("newer", "made by a newer weighbridge"),
])
def test_a_damaged_or_newer_store_is_one_clear_line_everywhere(two_runs, damage, says):
    tmp_path, (a, _) = two_runs
    db = tmp_path / "weighbridge.db"
    if damage == "garbage":
        for f in tmp_path.glob("weighbridge.db-*"):
            f.unlink()
        db.write_bytes(b"this is not a database, it was overwritten" * 100)
    else:
        con = sqlite3.connect(db)
        con.execute("INSERT INTO weighbridge_migrations VALUES ('store', 99, 'from the future', 0)")
        con.commit()
        con.close()
    for args in (("runs",), ("report",), ("bakeoff",), ("check", "--baseline", a)):
        r = _wb(*args, cwd=tmp_path)
        out = r.stdout + r.stderr
        assert r.returncode == 2 and says in out and str(db) in out, (args, out)
        assert "Traceback" not in out
    view = _View(tmp_path)
    try:
        pages = [view.get(p) for p in ("/", f"/run/{a}", "/bench", "/trend?model=m")]
    finally:
        view.close()
    assert all(p.status_code == 503 and says in p.text for p in pages), [(p.status_code, p.text[:200]) for p in pages]


def test_a_locked_store_is_a_clear_error_not_a_traceback(two_runs):
    tmp_path, _ = two_runs
    con = sqlite3.connect(tmp_path / "weighbridge.db", isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")  # another process writing, and never finishing
    try:
        r = _wb("bakeoff", "--no-cache", cwd=tmp_path)
    finally:
        con.execute("ROLLBACK")
        con.close()
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "the store is locked by another process" in out and "Traceback" not in out, out


def test_a_read_only_store_is_a_clear_error_not_a_traceback(two_runs):
    tmp_path, _ = two_runs
    db = tmp_path / "weighbridge.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for f in [db, *tmp_path.glob("weighbridge.db-*")]:
        f.chmod(0o444)
    # root ignores file modes: drop the capability that lets it (CI runs as root)
    prefix = ("setpriv", "--bounding-set=-dac_override", "--inh-caps=-dac_override") if os.geteuid() == 0 else ()
    try:
        r = _wb("bakeoff", "--no-cache", cwd=tmp_path, prefix=prefix)
    finally:
        for f in [db, *tmp_path.glob("weighbridge.db-*")]:
            f.chmod(0o644)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "read-only" in out and str(db) in out and "Traceback" not in out, out
