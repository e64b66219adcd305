"""One migration runner for every database weighbridge keeps: the run store, the gateway's state file,
its keys and spend in Postgres, and the audit log and its head in Postgres.

Each schema is an ordered list of named migrations. What has been applied is recorded in one table
per database, ``weighbridge_migrations`` (schema, number, name, when), so several schemas can share
one database (a team's Postgres often holds the gateway's keys and its audit log together). A
database whose record for a schema is ahead of this code was written by a newer weighbridge: it is
refused with what to do, never written to.

Each migration runs in one transaction with its record (SQLite ``BEGIN IMMEDIATE``; in Postgres
under an advisory lock, so two gateways starting together do not both migrate). A crash
mid-migration leaves the previous schema intact. Databases from before this runner kept their
number elsewhere (SQLite ``PRAGMA user_version``, Postgres ``weighbridge_state_version``); a schema
that names that place adopts the number once.

The same pattern as simonw/llm's ``migrations.py`` (named functions, one table of what ran), with SQL
text instead of functions so each migration is one reviewable statement list.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ..core.errors import WeighbridgeError

TABLE = "weighbridge_migrations"
_PG_LOCK = 0x77624D47  # "wbMG": the advisory lock that serialises migrations in one Postgres database


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


@dataclass(frozen=True)
class Schema:
    """One database schema: its name in the record, its migrations in order, and what to tell a user
    whose file is newer than this code."""

    name: str
    migrations: tuple[Migration, ...]
    newer_hint: str = "upgrade weighbridge"
    legacy_user_version: bool = False  # SQLite: adopt PRAGMA user_version from before the record
    legacy_pg_table: str | None = None  # Postgres: adopt max(version) of this table

    @property
    def latest(self) -> int:
        return len(self.migrations)


class SchemaTooNew(WeighbridgeError):
    """The database was migrated by a newer weighbridge than this one."""


def statements(sql: str) -> list[str]:
    """The complete SQL statements of a script, split where SQLite's own tokenizer says a statement
    ends (a ';' inside a string or a trigger body does not split)."""
    out: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().strip(";").strip():
                out.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:80]!r}")
    return out


def _too_new(schema: Schema, where: str, current: int) -> SchemaTooNew:
    return SchemaTooNew(f"{where}: made by a newer weighbridge (schema {schema.name} {current}, this one knows "
                        f"{schema.latest}); {schema.newer_hint}")


def _create_table(real: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {TABLE} (schema TEXT NOT NULL, number INTEGER NOT NULL, "
            f"name TEXT NOT NULL, applied {real} NOT NULL, PRIMARY KEY (schema, number))")


# -- SQLite --------------------------------------------------------------------------------------

def _recorded(db: sqlite3.Connection, schema: Schema) -> int:
    """How many of the schema's migrations the record lists (0 where there is no record yet)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone():
        return 0
    return int(db.execute(f"SELECT count(*) FROM {TABLE} WHERE schema = ?", (schema.name,)).fetchone()[0])


def _sqlite_current(db: sqlite3.Connection, schema: Schema) -> int | None:
    """The applied number recorded for the schema; None when nothing is recorded for it yet."""
    if _recorded(db, schema):
        row = db.execute(f"SELECT max(number) FROM {TABLE} WHERE schema = ?", (schema.name,)).fetchone()
        if row[0] is not None:
            return int(row[0])
    if schema.legacy_user_version:
        legacy = int(db.execute("PRAGMA user_version").fetchone()[0])
        return legacy if legacy else None
    return None


def migrate_sqlite(db: sqlite3.Connection, schema: Schema, where: str) -> int:
    """Bring ``db`` (opened with ``isolation_level=None``) to the schema's latest migration; the number
    it is at. A database already current is only read, so a read-only file at the latest schema opens."""
    current = _sqlite_current(db, schema) or 0
    if current > schema.latest:
        raise _too_new(schema, where, current)
    if current == schema.latest and _recorded(db, schema) == current:  # nothing to write: a read-only file opens
        return current
    db.execute("BEGIN IMMEDIATE")
    try:
        current = _sqlite_current(db, schema) or 0  # again, under the lock: another process may have migrated
        if current > schema.latest:
            raise _too_new(schema, where, current)
        db.execute(_create_table("REAL"))
        recorded = {r[0] for r in db.execute(f"SELECT number FROM {TABLE} WHERE schema = ?", (schema.name,))}
        for number in range(1, current + 1):  # adopted from before the record
            if number not in recorded:
                db.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)",
                           (schema.name, number, schema.migrations[number - 1].name + " (adopted)", time.time()))
        for number in range(current + 1, schema.latest + 1):
            migration = schema.migrations[number - 1]
            for statement in statements(migration.sql):
                db.execute(statement)
            db.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", (schema.name, number, migration.name, time.time()))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return schema.latest


def applied_sqlite(db: sqlite3.Connection, schema: Schema) -> int:
    """The number of the schema's last applied migration (0 for none)."""
    return _sqlite_current(db, schema) or 0


# -- Postgres ------------------------------------------------------------------------------------

def migrate_postgres(conn: Any, schema: Schema, where: str) -> int:
    """Bring a psycopg connection's database to the schema's latest migration, under an advisory lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        conn.execute(_create_table("DOUBLE PRECISION"))
        row = conn.execute(f"SELECT max(number) FROM {TABLE} WHERE schema = %s", (schema.name,)).fetchone()
        current = int(row[0]) if row[0] is not None else 0
        if row[0] is None and schema.legacy_pg_table:
            exists = conn.execute("SELECT to_regclass(%s)", (schema.legacy_pg_table,)).fetchone()[0]
            if exists is not None:
                legacy = conn.execute(f"SELECT max(version) FROM {schema.legacy_pg_table}").fetchone()[0]
                current = int(legacy or 0)
                for number in range(1, current + 1):
                    conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s)",
                                 (schema.name, number, schema.migrations[min(number, schema.latest) - 1].name
                                  + " (adopted)", time.time()))
        if current > schema.latest:
            raise _too_new(schema, where, current)
        for number in range(current + 1, schema.latest + 1):
            migration = schema.migrations[number - 1]
            for statement in statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s)",
                         (schema.name, number, migration.name, time.time()))
    return schema.latest
