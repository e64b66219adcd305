"""The audit chain against someone who can write its database: records deleted from the end (or
all of them), and a log edited and re-hashed, are caught by ``weighbridge audit verify`` alone —
the head anchored beside the log after every commit, and each record and the head signed with a
key from the environment. Traffic goes through a real ``weighbridge serve`` process; the fake
upstream only answers."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli

from .conftest import write
from .fake_upstream import FakeUpstream
from .serve_process import serve
from .test_gateway_limits import _answer

KEY = "test-audit-key-7f3a"
runner = CliRunner()


def _serve(tmp_path, n: int, key: str | None, extra: str = "") -> str:
    with FakeUpstream(_answer) as up:
        plan = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', "
                                             f"model: fake-model}}]\n{extra}")
        env = {k: v for k, v in os.environ.items() if k != "WEIGHBRIDGE_AUDIT_KEY"}
        if key:
            env["WEIGHBRIDGE_AUDIT_KEY"] = key
        with serve(str(plan), env) as (base, _):
            for i in range(n):
                r = httpx.post(f"{base}/v1/chat/completions", timeout=10,
                               json={"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]})
                assert r.status_code == 200
    return str(plan)


def _verify(plan: str, key: str | None):
    env = {"WEIGHBRIDGE_AUDIT_KEY": key} if key else {"WEIGHBRIDGE_AUDIT_KEY": ""}
    return runner.invoke(cli, ["audit", "verify", "--plan", plan], env=env)


def _edit_and_rehash(tmp_path, seq: int) -> sqlite3.Connection:
    """Change one record's status and recompute the plain chain after it, as someone without the key would."""
    db = sqlite3.connect(tmp_path / "gateway.db")
    body = db.execute("SELECT record FROM audit WHERE seq=?", (seq,)).fetchone()[0]
    db.execute("UPDATE audit SET record=? WHERE seq=?", (body.replace('"status":200', '"status":404'), seq))
    _rehash(db)
    return db


def _rehash(db: sqlite3.Connection) -> None:
    """What someone without the key can do: recompute every plain sha256 link after an edit."""
    prev = "0" * 64
    for seq, body in db.execute("SELECT seq, record FROM audit ORDER BY seq").fetchall():
        rec = json.loads(body)
        rec.pop("alg", None)
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()
        db.execute("UPDATE audit SET record=?, prev_hash=?, hash=? WHERE seq=?", (body, prev, digest, seq))
        prev = digest
    db.commit()


@pytest.mark.parametrize("key", [None, KEY])
def test_fake_upstream_deleting_the_newest_records_or_all_of_them_is_caught(tmp_path, key):
    plan = _serve(tmp_path, 5, key)
    ok = _verify(plan, key)
    assert ok.exit_code == 0, ok.output
    assert "5 records" in ok.output and ("signed (HMAC-SHA256)" if key else "unsigned") in ok.output
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.execute("DELETE FROM audit WHERE seq > 3")
    db.commit()
    bad = _verify(plan, key)
    assert bad.exit_code == 1 and "records 4..5 missing from the end" in bad.output, bad.output
    db.execute("DELETE FROM audit")
    db.commit()
    bad = _verify(plan, key)
    assert bad.exit_code == 1 and "records 1..5 missing from the end" in bad.output, bad.output


def test_fake_upstream_a_signed_log_edited_and_re_hashed_is_caught(tmp_path):
    plan = _serve(tmp_path, 4, KEY)
    unkeyed = _verify(plan, None)  # a verifier without the key cannot vouch for a signed log: it says so
    assert unkeyed.exit_code == 1 and "set its key" in unkeyed.output
    db = _edit_and_rehash(tmp_path, 2)
    bad = _verify(plan, KEY)
    assert bad.exit_code == 1 and "re-hashed" in bad.output, bad.output
    # and rewriting the head file to match, without the key to sign it, is caught too
    head_file = tmp_path / "gateway.db.head.json"
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    head_file.write_text(json.dumps({"seq": last[0], "hash": last[1], "ts": 0, "mac": None}))
    bad = _verify(plan, KEY)
    assert bad.exit_code == 1 and "not signed with this key" in bad.output, bad.output


def test_fake_upstream_an_unsigned_log_re_hashed_is_caught_by_its_head_unless_the_head_is_rewritten_too(tmp_path):
    plan = _serve(tmp_path, 3, None)
    db = _edit_and_rehash(tmp_path, 1)
    bad = _verify(plan, None)
    assert bad.exit_code == 1 and "differs from the anchored head" in bad.output, bad.output
    # the documented limit: whoever can write both places, with no key in play, can forge both
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    (tmp_path / "gateway.db.head.json").write_text(json.dumps({"seq": last[0], "hash": last[1], "ts": 0, "mac": None}))
    forged = _verify(plan, None)
    assert forged.exit_code == 0 and "unsigned (set WEIGHBRIDGE_AUDIT_KEY to sign)" in forged.output


def test_fake_upstream_the_head_can_live_in_postgres_and_a_deleted_head_is_caught(tmp_path, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS weighbridge_audit_head, weighbridge_migrations")  # a blank database
    plan = _serve(tmp_path, 3, KEY, extra=f"audit: {{head: '{postgres_url}'}}\n")
    ok = _verify(plan, KEY)
    assert ok.exit_code == 0 and "weighbridge_audit_head" in ok.output, ok.output
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.execute("DELETE FROM audit WHERE seq = 3")
    db.commit()
    bad = _verify(plan, KEY)
    assert bad.exit_code == 1 and "records 3..3 missing from the end" in bad.output
    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute("DELETE FROM weighbridge_audit_head")
    bad = _verify(plan, KEY)
    assert bad.exit_code == 1 and "no anchored head" in bad.output


def test_the_key_never_reaches_the_log_or_the_head(tmp_path):
    plan = _serve(tmp_path, 2, KEY)
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("gateway.db*"))
    assert KEY.encode() not in stored and b"hmac-sha256" in stored
    assert _verify(plan, KEY).exit_code == 0


def test_the_file_head_is_one_record_overwritten_in_place_and_a_half_written_one_is_read_again(tmp_path, monkeypatch):
    """The head is rewritten after every audit batch: in place, at a fixed size (a rename per request
    cost a third of the gateway's CPU). A reader meeting a write half done sees a record whose own
    check digest does not match, and reads again instead of calling the head forged."""
    from weighbridge.gateway.audit import FileHead

    path = tmp_path / "gateway.db.head.json"
    path.write_text(json.dumps({"seq": 0, "hash": "0" * 64, "ts": 0, "mac": None, "note": "x" * 2000}))  # longer
    head = FileHead(str(path), KEY.encode())
    head.write(1, "a" * 64)
    assert head.read()["seq"] == 1  # the longer file found there left no tail behind the record
    inode = path.stat().st_ino
    head.write(2, "b" * 64)
    assert path.stat().st_ino == inode and path.stat().st_size == FileHead.SIZE  # the same file, one fixed size
    assert (path.stat().st_mode & 0o777) == 0o600
    got = head.read()
    assert got is not None and got["seq"] == 2 and got["hash"] == "b" * 64
    # a torn record: the start of seq 3 over the end of seq 2 - parses, but its check does not match
    torn = json.loads(path.read_bytes())
    torn["seq"] = 3
    path.write_text(json.dumps(torn))
    reads = []
    real_sleep = __import__("time").sleep
    monkeypatch.setattr("weighbridge.gateway.audit.time.sleep", lambda s: (reads.append(s), real_sleep(0)))
    got = head.read()
    assert got == {"unreadable": "its own check digest does not match its fields"} and len(reads) == FileHead.RETRIES - 1
    head.write(4, "c" * 64)  # the writer finishes: the next read is whole
    got = head.read()
    assert got is not None and got["seq"] == 4
    path.write_bytes(b"{" * 10_000_000)  # a hostile head file: read bounded, said unreadable
    assert "unreadable" in head.read()
    head.close()


def test_a_file_head_deleted_or_replaced_under_a_running_gateway_is_written_again_at_its_path(tmp_path):
    """The head is held open between writes; a file deleted (or renamed over) while it is open would
    take every later head with it into an inode no path names, and ``audit verify`` would find no
    head - or a stale one - until the gateway restarted."""
    from weighbridge.gateway.audit import FileHead

    path = tmp_path / "gateway.db.head.json"
    head = FileHead(str(path), KEY.encode())
    head.write(1, "a" * 64)
    path.unlink()
    head.write(2, "b" * 64)
    got = head.read()
    assert got is not None and got["seq"] == 2  # back at its path
    stale = tmp_path / "old.json"
    stale.write_text(json.dumps({"seq": 1, "hash": "a" * 64, "ts": 0, "mac": None}))
    os.replace(stale, path)  # someone puts an older head in its place
    head.write(3, "c" * 64)
    got = head.read()
    assert got is not None and got["seq"] == 3 and (path.stat().st_mode & 0o777) == 0o600
    head.close()
