"""Hash-chained audit log: one record per request, in SQLite (default) or Postgres.

Each record's hash is sha256(previous hash + "\\n" + the record's canonical JSON), and the record
carries its own sequence number, so editing a record breaks its hash, deleting one breaks the
sequence and the next record's link, and reordering breaks both. ``verify`` walks the chain and
names the first bad record. Truncating the newest records leaves a shorter valid chain: compare
the head hash ``verify`` prints with one kept elsewhere (``--expect-head``) to detect that.

Appends run under a database lock (SQLite ``BEGIN IMMEDIATE``, a Postgres advisory lock) that
covers reading the head and inserting, so two gateways sharing one Postgres cannot fork the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import state

GENESIS = "0" * 64
_PG_LOCK = 0x77656967  # "weig": the advisory lock id that serialises appends


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link(prev_hash: str, record_json: str) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + record_json.encode()).hexdigest()


class AuditSink(Protocol):
    where: str

    def append(self, records: list[dict[str, Any]]) -> None: ...
    def rows(self, last: int | None = None) -> Iterator[tuple[int, float, str, str, str]]: ...
    def close(self) -> None: ...


def _chain(records: list[dict[str, Any]], head: tuple[int, str] | None) -> list[tuple[int, float, str, str, str]]:
    seq, prev = head if head else (0, GENESIS)
    out = []
    for r in records:
        seq += 1
        body = canonical({**r, "seq": seq})
        digest = link(prev, body)
        out.append((seq, float(r["ts"]), body, prev, digest))
        prev = digest
    return out


class SqliteAuditSink:
    def __init__(self, path: str) -> None:
        self.where = path
        self.db = state.connect(path)

    def append(self, records: list[dict[str, Any]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for row in _chain(records, state.audit_head(self.db)):
                state.audit_insert(self.db, *row)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def rows(self, last: int | None = None) -> Iterator[tuple[int, float, str, str, str]]:
        return state.audit_rows(self.db, last)

    def close(self) -> None:
        self.db.close()


class PostgresAuditSink:
    """The same chain in a Postgres table ``weighbridge_audit`` (created on first use)."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the test extra installs it
            raise RuntimeError("a postgresql:// audit log needs psycopg: pip install 'weighbridge[postgres]'") from None
        self.where = _hide_password(url)
        self.conn = psycopg.connect(url, autocommit=False)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            self.conn.execute("CREATE TABLE IF NOT EXISTS weighbridge_audit (seq BIGINT PRIMARY KEY, "
                              "ts DOUBLE PRECISION NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, "
                              "hash TEXT NOT NULL)")

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            row = self.conn.execute("SELECT seq, hash FROM weighbridge_audit ORDER BY seq DESC LIMIT 1").fetchone()
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO weighbridge_audit (seq, ts, record, prev_hash, hash) "
                                "VALUES (%s, %s, %s, %s, %s)", _chain(records, (row[0], row[1]) if row else None))

    def rows(self, last: int | None = None) -> Iterator[tuple[int, float, str, str, str]]:
        with self.conn.transaction():
            if last is None:
                cur = self.conn.execute("SELECT seq, ts, record, prev_hash, hash FROM weighbridge_audit ORDER BY seq")
                rows = cur.fetchall()
            else:
                rows = self.conn.execute("SELECT seq, ts, record, prev_hash, hash FROM weighbridge_audit "
                                         "ORDER BY seq DESC LIMIT %s", (last,)).fetchall()[::-1]
        yield from rows

    def close(self) -> None:
        self.conn.close()


def _hide_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def open_sink(url: str) -> AuditSink:
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAuditSink(url)
    if "://" in url:
        raise ValueError(f"audit url {url!r}: use a SQLite path or postgresql://…")
    return SqliteAuditSink(url)


@dataclass
class Verdict:
    ok: bool
    records: int
    head: str
    problems: list[str] = field(default_factory=list)


def verify(sink: AuditSink, expect_head: str | None = None) -> Verdict:
    """Walk the whole chain; every broken link, bad hash or gap is reported with its sequence number."""
    prev, expected_seq, n, problems = GENESIS, 1, 0, []
    for seq, ts, body, prev_hash, digest in sink.rows():
        n += 1
        if seq != expected_seq:
            problems.append(f"record {expected_seq}" + (f"..{seq - 1}" if seq - 1 > expected_seq else "")
                            + " missing (deleted?)")
        if prev_hash != prev:
            problems.append(f"record {seq}: its link does not match the previous record's hash")
        if link(prev_hash, body) != digest:
            problems.append(f"record {seq}: content does not match its hash (edited?)")
        try:
            inner = json.loads(body)
            if inner.get("seq") != seq or abs(float(inner.get("ts", 0)) - ts) > 1e-3:
                problems.append(f"record {seq}: sequence or time column differs from the hashed record")
        except (ValueError, TypeError):
            problems.append(f"record {seq}: not valid JSON")
        prev, expected_seq = digest, seq + 1
    if expect_head is not None and prev != expect_head:
        problems.append(f"head is {prev[:16]}…, expected {expect_head[:16]}… (records removed from the end?)")
    return Verdict(not problems, n, prev, problems)
