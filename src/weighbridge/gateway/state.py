"""The gateway's SQLite file: API keys (hashed), spend per budget period, the default response cache
and the default audit log. The only gateway module with SQLite SQL; its schema migrates through the one runner
(``migrations.py``). WAL mode, so the CLI can create keys while a gateway is serving.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage.migrations import Migration, Schema, migrate_sqlite


def keys_and_spend(prefix: str = "", real: str = "REAL", bigint: str = "INTEGER") -> str:
    """The keys and spend tables - one definition for the SQLite state file (no prefix) and for
    Postgres (``weighbridge_`` tables, its own number types)."""
    return f"""
    CREATE TABLE IF NOT EXISTS {prefix}keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created {real} NOT NULL,
        revoked {real}, rpm INTEGER, max_tokens {bigint}, max_usd {real}, period TEXT NOT NULL DEFAULT 'total',
        routes TEXT
    );
    CREATE TABLE IF NOT EXISTS {prefix}spend (
        key_id TEXT NOT NULL, period TEXT NOT NULL, tokens {bigint} NOT NULL DEFAULT 0,
        usd {real} NOT NULL DEFAULT 0, requests {bigint} NOT NULL DEFAULT 0, PRIMARY KEY (key_id, period)
    );
    """


SCHEMA = Schema("gateway", (
    Migration("keys, spend, response cache, audit log", keys_and_spend() + """
    CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY, ts REAL NOT NULL, record TEXT NOT NULL,
        prev_hash TEXT NOT NULL, hash TEXT NOT NULL
    );
    """),
), newer_hint="upgrade weighbridge, or point the plan's state: at another file", legacy_user_version=True)


def connect(path: str) -> sqlite3.Connection:
    """Open (and migrate) the state file. ``check_same_thread`` is off: the writer thread owns writes."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed row survives a process crash
    migrate_sqlite(db, SCHEMA, path)
    return db


@dataclass
class KeyRow:
    id: str
    name: str
    hash: str
    created: float
    revoked: float | None
    rpm: int | None
    max_tokens: int | None
    max_usd: float | None
    period: str
    routes: list[str] | None


def key_row(row: tuple[Any, ...]) -> KeyRow:
    id_, name, hash_, created, revoked, rpm, max_tokens, max_usd, period = row[:9]
    return KeyRow(id_, name, hash_, created, revoked, rpm, max_tokens, max_usd, period,
                  routes=json.loads(row[9]) if row[9] else None)


KEY_COLS = "id, name, hash, created, revoked, rpm, max_tokens, max_usd, period, routes"


def insert_key(db: sqlite3.Connection, row: KeyRow) -> None:
    db.execute(f"INSERT INTO keys ({KEY_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
               (row.id, row.name, row.hash, row.created, row.revoked, row.rpm, row.max_tokens, row.max_usd,
                row.period, json.dumps(row.routes) if row.routes else None))


def all_keys(db: sqlite3.Connection) -> list[KeyRow]:
    return [key_row(r) for r in db.execute(f"SELECT {KEY_COLS} FROM keys ORDER BY created")]


def revoke_key(db: sqlite3.Connection, key_id: str) -> bool:
    cur = db.execute("UPDATE keys SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), key_id))
    return cur.rowcount == 1


def spend_of(db: sqlite3.Connection, key_id: str, period: str) -> tuple[int, float, int]:
    row = db.execute("SELECT tokens, usd, requests FROM spend WHERE key_id=? AND period=?", (key_id, period)).fetchone()
    return (row[0], row[1], row[2]) if row else (0, 0.0, 0)


def spend_totals(db: sqlite3.Connection) -> dict[str, tuple[int, float, int]]:
    """Per key, over every period: tokens, dollars and requests settled."""
    return {r[0]: (int(r[1]), float(r[2]), int(r[3])) for r in
            db.execute("SELECT key_id, sum(tokens), sum(usd), sum(requests) FROM spend GROUP BY key_id")}


def add_spend(db: sqlite3.Connection, key_id: str, period: str, tokens: int, usd: float) -> None:
    db.execute("INSERT INTO spend (key_id, period, tokens, usd, requests) VALUES (?,?,?,?,1) "
               "ON CONFLICT (key_id, period) DO UPDATE SET tokens=tokens+excluded.tokens, usd=usd+excluded.usd, "
               "requests=requests+1", (key_id, period, tokens, usd))


def cache_get(db: sqlite3.Connection, key: str, now: float) -> str | None:
    row = db.execute("SELECT value FROM cache WHERE key=? AND expires>?", (key, now)).fetchone()
    return row[0] if row else None


def cache_put(db: sqlite3.Connection, key: str, value: str, expires: float) -> None:
    db.execute("INSERT OR REPLACE INTO cache (key, value, expires) VALUES (?,?,?)", (key, value, expires))


def cache_expire(db: sqlite3.Connection, now: float) -> int:
    return db.execute("DELETE FROM cache WHERE expires<=?", (now,)).rowcount


def audit_head(db: sqlite3.Connection) -> tuple[int, str] | None:
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def audit_insert(db: sqlite3.Connection, seq: int, ts: float, record: str, prev_hash: str, digest: str) -> None:
    db.execute("INSERT INTO audit (seq, ts, record, prev_hash, hash) VALUES (?,?,?,?,?)",
               (seq, ts, record, prev_hash, digest))


def audit_rows(db: sqlite3.Connection, last: int | None = None) -> Iterator[tuple[int, float, str, str, str]]:
    if last is None:
        yield from db.execute("SELECT seq, ts, record, prev_hash, hash FROM audit ORDER BY seq")
    else:
        rows = db.execute("SELECT seq, ts, record, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?",
                          (last,)).fetchall()
        yield from reversed(rows)
