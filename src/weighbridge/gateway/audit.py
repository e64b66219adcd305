"""Hash-chained audit log: one record per request, in SQLite (default) or Postgres, with its head
anchored in a second place.

Each record's digest covers the previous digest and the record's canonical JSON, and the record
carries its own sequence number, so editing a record breaks its digest, deleting one breaks the
sequence and the next record's link, and reordering breaks both. Two things a chain alone cannot
show are caught by anchoring it:

- **Truncation** (the newest records, or all of them, deleted): after every commit the head
  (sequence number and digest of the last record) is written to a second place — a JSON file, or a
  Postgres table — so ``verify`` knows how long the chain was and what it ended with.
- **A re-hashed log** (records edited and every digest after them recomputed): with a key in the
  environment (``audit.hmac_key_env``, default ``WEIGHBRIDGE_AUDIT_KEY``) each digest is an
  HMAC-SHA256 and so is the head's signature; without the key nobody can compute them.

Threat model. The gateway process holds the key (from its environment, never stored) and writes the
log and the head. Someone who can write the log's database but not the head's place cannot
truncate or edit it unnoticed, key or no key. Someone who can write both but lacks the key cannot
either, when the log is signed. Someone with the key can forge anything: keep it in the gateway's
and the verifier's environment only. The head is written just after the log's commit, so a crash
between the two leaves the head one batch behind: ``verify`` reports records newer than the head as
not yet anchored (a warning), never as tampering.

Appends run under a database lock (SQLite ``BEGIN IMMEDIATE``, a Postgres advisory lock) that
covers reading the head and inserting, so two gateways sharing one Postgres cannot fork the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import MissingDependency
from ..storage.migrations import Migration, Schema, migrate_postgres
from ..core.scrub import secret_env
from . import state

GENESIS = "0" * 64
_PG_LOCK = 0x77656967  # "weig": the advisory lock id that serialises appends
HMAC_ALG = "hmac-sha256"
DEFAULT_KEY_ENV = "WEIGHBRIDGE_AUDIT_KEY"
# The Postgres tables (a SQLite log lives in the gateway's state schema, state.py).
LOG_SCHEMA = Schema("audit", (Migration("the hash-chained log", """
    CREATE TABLE IF NOT EXISTS weighbridge_audit (seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,
        record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
    """),))
HEAD_SCHEMA = Schema("audit-head", (Migration("the anchored head of the log", """
    CREATE TABLE IF NOT EXISTS weighbridge_audit_head (id INT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL, mac TEXT);
    """),))


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link(prev_hash: str, record_json: str, key: bytes | None = None) -> str:
    """The record's digest: sha256 of the previous digest and the record, or its HMAC under ``key``."""
    data = prev_hash.encode() + b"\n" + record_json.encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def audit_key(env_name: str | None) -> bytes | None:
    """The signing key from its environment variable (registered as a secret: never logged)."""
    value = secret_env(env_name) if env_name else None
    return value.encode() if value else None


# -- the anchored head ------------------------------------------------------------------------------
def _head_mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, f"weighbridge-audit-head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


class HeadStore(Protocol):
    where: str

    def write(self, seq: int, digest: str) -> None: ...
    def read(self) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class FileHead:
    """The head as a small JSON record of a fixed size, overwritten in place by one ``pwrite``.

    The gateway writes it after every audit batch - at one request a batch, once a request - and
    replacing a file (a temporary file, then a rename) cost ~230 µs of CPU on this machine, a third of
    the gateway's whole request; one write to a file held open costs ~7 µs. A reader could in
    principle meet a write half done, so the record carries the digest of its own fields (``check``)
    and ``read`` tries again when it does not match; a head without one (written by hand, or by an
    older gateway) is read as it is. A file deleted or replaced while held open is noticed at the next
    write (its link count is zero) and the head is written again at its path."""

    SIZE = 512  # bytes on disk: the record padded with spaces (seq, two 64-hex digests and a time use ~230)
    RETRIES = 5

    def __init__(self, path: str, key: bytes | None) -> None:
        self.where, self.path, self.key = path, Path(path), key
        self._fd: int | None = None

    @staticmethod
    def _check(head: dict[str, Any]) -> str:
        fields = {k: v for k, v in head.items() if k != "check"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def write(self, seq: int, digest: str) -> None:
        head: dict[str, Any] = {"seq": seq, "hash": digest, "ts": time.time(),
                                "mac": _head_mac(self.key, seq, digest) if self.key else None}
        head["check"] = self._check(head)
        data = json.dumps(head).encode()
        if len(data) >= self.SIZE:  # our own fields: never, unless the record grows a field
            raise ValueError(f"audit head record of {len(data)} bytes does not fit its {self.SIZE}")
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:  # deleted, or renamed over, since: ~1 µs
            os.close(self._fd)
            self._fd = None
        first = self._fd is None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.pwrite(self._fd, data.ljust(self.SIZE - 1) + b"\n", 0)
        if first:  # a file found there (written by hand, or by another tool) keeps no tail and no wider mode
            os.ftruncate(self._fd, self.SIZE)
            os.fchmod(self._fd, 0o600)

    def read(self) -> dict[str, Any] | None:
        problem = ""
        for attempt in range(self.RETRIES):
            if attempt:
                time.sleep(0.01)  # a write in progress: it takes microseconds
            try:
                with open(self.path, "rb") as f:
                    head = json.loads(f.read(self.SIZE * 2))  # bounded: a head is SIZE bytes
            except FileNotFoundError:
                return None
            except (ValueError, OSError) as e:
                problem = str(e)
                continue
            if not isinstance(head, dict):
                return {"unreadable": "not a JSON object"}
            if "check" in head and head["check"] != self._check(head):
                problem = "its own check digest does not match its fields"
                continue
            return head
        return {"unreadable": problem}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PostgresHead:
    """The head as the one row of a Postgres table ``weighbridge_audit_head``."""

    def __init__(self, url: str, key: bytes | None) -> None:
        import psycopg

        self.where, self.key = hide_password(url) + " (table weighbridge_audit_head)", key
        self.conn = psycopg.connect(url, autocommit=True)
        migrate_postgres(self.conn, HEAD_SCHEMA, self.where)

    def write(self, seq: int, digest: str) -> None:
        # GREATEST: two gateways sharing one log each anchor what they wrote; the head only moves forward
        self.conn.execute("INSERT INTO weighbridge_audit_head (id, seq, hash, ts, mac) VALUES (1, %s, %s, %s, %s) "
                          "ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, ts = EXCLUDED.ts, "
                          "mac = EXCLUDED.mac WHERE weighbridge_audit_head.seq < EXCLUDED.seq",
                          (seq, digest, time.time(), _head_mac(self.key, seq, digest) if self.key else None))

    def read(self) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT seq, hash, ts, mac FROM weighbridge_audit_head WHERE id = 1").fetchone()
        return {"seq": row[0], "hash": row[1], "ts": row[2], "mac": row[3]} if row else None

    def close(self) -> None:
        self.conn.close()


def default_head(audit_url: str) -> str:
    """Where the head goes unless the plan says: beside a SQLite log, or a table in the log's Postgres."""
    return audit_url if audit_url.startswith(("postgresql://", "postgres://")) else audit_url + ".head.json"


def open_head(url: str, key: bytes | None) -> HeadStore:
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresHead(url, key)
    return FileHead(url, key)


class AuditSink(Protocol):
    where: str

    def append(self, records: list[dict[str, Any]]) -> None: ...
    def rows(self, last: int | None = None) -> Iterator[tuple[int, float, str, str, str]]: ...
    def close(self) -> None: ...


def _chain(records: list[dict[str, Any]], head: tuple[int, str] | None,
           key: bytes | None = None) -> list[tuple[int, float, str, str, str]]:
    seq, prev = head if head else (0, GENESIS)
    out = []
    for r in records:
        seq += 1
        body = canonical({**r, "seq": seq, "alg": HMAC_ALG} if key else {**r, "seq": seq})
        digest = link(prev, body, key)
        out.append((seq, float(r["ts"]), body, prev, digest))
        prev = digest
    return out


class SqliteAuditSink:
    def __init__(self, path: str, key: bytes | None = None, head: HeadStore | None = None) -> None:
        self.where, self.key, self.head = path, key, head
        self.db = state.connect(path)

    def append(self, records: list[dict[str, Any]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            rows = _chain(records, state.audit_head(self.db), self.key)
            for row in rows:
                state.audit_insert(self.db, *row)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if self.head is not None and rows:
            self.head.write(rows[-1][0], rows[-1][4])

    def rows(self, last: int | None = None) -> Iterator[tuple[int, float, str, str, str]]:
        return state.audit_rows(self.db, last)

    def close(self) -> None:
        self.db.close()
        if self.head is not None:
            self.head.close()


class PostgresAuditSink:
    """The same chain in a Postgres table ``weighbridge_audit`` (created on first use)."""

    def __init__(self, url: str, key: bytes | None = None, head: HeadStore | None = None) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the test extra installs it
            raise MissingDependency("a postgresql:// audit log needs psycopg: pip install 'weighbridge[postgres]'") from None
        self.where, self.key, self.head = hide_password(url), key, head
        self.conn = psycopg.connect(url, autocommit=False)
        migrate_postgres(self.conn, LOG_SCHEMA, self.where)

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            row = self.conn.execute("SELECT seq, hash FROM weighbridge_audit ORDER BY seq DESC LIMIT 1").fetchone()
            rows = _chain(records, (row[0], row[1]) if row else None, self.key)
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO weighbridge_audit (seq, ts, record, prev_hash, hash) "
                                "VALUES (%s, %s, %s, %s, %s)", rows)
        if self.head is not None and rows:
            self.head.write(rows[-1][0], rows[-1][4])

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
        if self.head is not None:
            self.head.close()


def hide_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def open_sink(url: str, key: bytes | None = None, head: str | None = None) -> AuditSink:
    """The log at ``url``; records signed with ``key`` when given; the head anchored at ``head``
    (a file path or postgresql://…) when given."""
    store = open_head(head, key) if head else None
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAuditSink(url, key, store)
    if "://" in url:
        raise ValueError(f"audit url {url!r}: use a SQLite path or postgresql://…")
    return SqliteAuditSink(url, key, store)


@dataclass
class Verdict:
    ok: bool
    records: int
    head: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signed: bool = False
    anchored: str | None = None  # where the head was found and checked


def verify(sink: AuditSink, expect_head: str | None = None, key: bytes | None = None,
           head: HeadStore | None = None) -> Verdict:
    """Walk the whole chain; every broken link, bad digest or gap is reported with its sequence
    number; then the chain is held against its anchored head (truncation) and, with the key, every
    digest must be its HMAC (a re-hashed log)."""
    prev, expected_seq, n, problems, warnings = GENESIS, 1, 0, [], []
    signed_seen = unsigned_after_signed = 0
    digests: dict[int, str] = {}
    head_row = head.read() if head is not None else None
    want_seq = head_row.get("seq") if isinstance(head_row, dict) else None
    for seq, ts, body, prev_hash, digest in sink.rows():
        n += 1
        if seq != expected_seq:
            problems.append(f"record {expected_seq}" + (f"..{seq - 1}" if seq - 1 > expected_seq else "")
                            + " missing (deleted?)")
        if prev_hash != prev:
            problems.append(f"record {seq}: its link does not match the previous record's hash")
        try:
            inner = json.loads(body)
        except (ValueError, TypeError):
            inner = None
            problems.append(f"record {seq}: not valid JSON")
        alg = inner.get("alg") if isinstance(inner, dict) else None
        if alg == HMAC_ALG:
            signed_seen += 1
            if key is None:
                if signed_seen == 1:
                    problems.append("the log is signed (HMAC): set its key's environment variable to verify it")
            elif not hmac.compare_digest(link(prev_hash, body, key), digest):
                problems.append(f"record {seq}: its HMAC does not match (edited, re-hashed, or another key?)")
        else:
            if signed_seen:
                unsigned_after_signed += 1
                if unsigned_after_signed == 1:
                    problems.append(f"record {seq}: unsigned after signed records (re-hashed without the key?)")
            if link(prev_hash, body) != digest:
                problems.append(f"record {seq}: content does not match its hash (edited?)")
        if isinstance(inner, dict) and (inner.get("seq") != seq or abs(float(inner.get("ts", 0)) - ts) > 1e-3):
            problems.append(f"record {seq}: sequence or time column differs from the hashed record")
        if want_seq is not None and seq == want_seq:
            digests[seq] = digest
        prev, expected_seq = digest, seq + 1
    last_seq = expected_seq - 1
    if key is not None and n and not signed_seen:
        warnings.append("no record is signed: the gateway ran without the key, so a re-hashed log would verify")
    anchored = None
    if head is not None:
        anchored = head.where
        if head_row is None:
            if n:
                problems.append(f"no anchored head at {head.where} for a log of {n} records (deleted?)")
        elif "unreadable" in head_row:
            problems.append(f"the anchored head at {head.where} cannot be read: {head_row['unreadable']}")
        else:
            hseq, hdigest, mac = int(head_row["seq"]), str(head_row["hash"]), head_row.get("mac")
            if key is not None:
                if not mac or not hmac.compare_digest(_head_mac(key, hseq, hdigest), str(mac)):
                    problems.append(f"the anchored head at {head.where} is not signed with this key (forged?)")
            elif mac and not signed_seen:
                problems.append("the anchored head is signed but the log is not (re-hashed without the key?)")
            if last_seq < hseq:
                problems.append(f"records {last_seq + 1}..{hseq} missing from the end: the anchored head says the log "
                                f"held {hseq} (truncated?)")
            elif digests.get(hseq) != hdigest:
                problems.append(f"record {hseq}: its hash differs from the anchored head's (re-hashed?)")
            elif last_seq > hseq:
                warnings.append(f"{last_seq - hseq} newest record(s) not yet anchored (a crash between the log's "
                                "commit and the head's write, or a gateway still running)")
    if expect_head is not None and prev != expect_head:
        problems.append(f"head is {prev[:16]}…, expected {expect_head[:16]}… (records removed from the end?)")
    return Verdict(not problems, n, prev, problems, warnings, signed=bool(signed_seen), anchored=anchored)
